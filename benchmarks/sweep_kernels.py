"""Time one Gibbs sweep at paper shapes: library GEMMs (the floor) vs the fused kernels.

Run on a GPU box::

    python benchmarks/sweep_kernels.py --n-hidden 256 1024

Prints, per hidden size, microseconds per sweep (two half sweeps) for: the two bare matrix
products in TF32 and bf16 (eager and inside a CUDA graph: the 'GEMM-only floor'), the torch
sampler (:class:`spikerbm.sampling.PersistentChains`, TF32), and the fused kernels
(:class:`spikerbm.sampling.FusedChains`, bf16) inside a CUDA graph; plus the
fraction of the bf16 tensor-core peak each reaches (2 products of 2*C*N*M flop per sweep).
"""

from __future__ import annotations

import argparse

import torch

from spikerbm.rbm import RBM, tf32_matmul
from spikerbm.sampling import FusedChains, PersistentChains


def timed(fn, *, reps: int, graph: bool) -> float:
    """Microseconds per call of ``fn`` (median of 5 timings of ``reps`` calls)."""
    fn()
    torch.cuda.synchronize()
    if graph:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(reps):
                fn()
        run = g.replay
    else:
        def run():
            for _ in range(reps):
                fn()
    run()
    torch.cuda.synchronize()
    times = []
    for _ in range(5):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        run()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / reps)
    return sorted(times)[2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n-visible", type=int, default=1560)
    p.add_argument("--n-hidden", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--chains", type=int, default=2000)
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="dense bf16 tensor-core peak of the card (H100 SXM 989, H200 989)")
    args = p.parse_args()
    dev = torch.device("cuda")
    print(f"device {torch.cuda.get_device_name(dev)}, torch {torch.__version__}, "
          f"N={args.n_visible}, chains={args.chains}, {args.reps} sweeps per timing")
    print("| Nh | variant | us/sweep | % of bf16 peak |\n|---|---|---|---|")
    g = torch.Generator(device=dev).manual_seed(0)
    for m in args.n_hidden:
        n, c = args.n_visible, args.chains
        flop = 2 * 2 * c * n * m
        r = RBM(0.05 * torch.randn(n, m, device=dev, generator=g),
                -2 + 0.1 * torch.randn(n, device=dev, generator=g),
                torch.zeros(m, device=dev))
        v0 = (torch.rand(c, n, device=dev, generator=g) < 0.1).float()
        rows = {}
        for dtype, name in ((torch.float32, "tf32"), (torch.bfloat16, "bf16")):
            v, w, h = v0.to(dtype), r.W.to(dtype), torch.zeros(c, m, device=dev, dtype=dtype)
            wt = w.T.contiguous()
            out_h, out_v = torch.empty_like(h), torch.empty_like(v)

            def gemms(v=v, w=w, h=h, wt=wt, out_h=out_h, out_v=out_v):
                torch.mm(v, w, out=out_h)
                torch.mm(h, wt, out=out_v)
            with tf32_matmul(True):
                for graph in (False, True):
                    rows[f"GEMM floor {name} ({'graph' if graph else 'eager'})"] = timed(
                        gemms, reps=args.reps, graph=graph)
        rows.update(samplers(r, v0, reps=args.reps))
        for name, us in rows.items():
            pct = 100 * flop / (us * 1e-6) / 1e12 / args.peak_tflops
            print(f"| {m} | {name} | {us:.1f} | {pct:.0f} |", flush=True)


def samplers(r: RBM, v0: torch.Tensor, *, reps: int) -> dict[str, float]:
    """Microseconds per sweep of the torch sampler (TF32) and the fused kernels (graph)."""
    rows = {}
    gen = torch.Generator(device=v0.device).manual_seed(1)
    pc = PersistentChains(v0, n_hidden=r.n_hidden, generator=gen, tf32=True)
    with tf32_matmul(True):
        rows["torch sampler tf32 (eager)"] = timed(lambda: pc.sweep(r), reps=reps, graph=False)
    from spikerbm import kernels

    fc = FusedChains(v0, n_hidden=r.n_hidden, seed=3)
    fc.load(r)
    default = kernels.PHILOX_ROUNDS
    for rounds in (default, 7):
        kernels.PHILOX_ROUNDS = rounds
        rows[f"fused bf16, Philox-{rounds} (graph)"] = timed(
            lambda: fc.sweep(r, k=1, load=False), reps=reps, graph=True)
    kernels.PHILOX_ROUNDS = default
    rows["fused hidden means only (graph)"] = timed(lambda: fc.hidden_means(r), reps=reps,
                                                    graph=True)
    return rows

if __name__ == "__main__":
    main()
