"""Time one Gibbs sweep at paper shapes: library GEMMs (the floor) vs the fused kernels, for one
model and for R replicas swept together, and the random-number variants of the kernel.

Run on a GPU box::

    python benchmarks/sweep_kernels.py --n-hidden 256 1024 --replicas 1 4

Prints, per hidden size and number of replicas R, microseconds per sweep (two half sweeps) PER
REPLICA for: the two bare bf16 matrix products inside a CUDA graph (``torch.mm`` for R = 1,
``torch.bmm`` over the replicas otherwise: the 'GEMM-only floor'; TF32 too for R = 1), the
torch sampler (:class:`spikerbm.sampling.PersistentChains`, TF32, R = 1 only), and the fused
kernels (:class:`spikerbm.sampling.FusedChains`, bf16) inside a CUDA graph with the default
uniforms (32 random bits, Philox-4x32-10) and the measured options (16-bit uniforms, 7 Philox
rounds, both: ``kernels.UNIFORM_BITS``, ``kernels.PHILOX_ROUNDS``); plus the fraction of the
bf16 tensor-core peak each reaches (2 products of 2*C*N*M flop per sweep and replica).
"""

from __future__ import annotations

import argparse
import datetime as dt

import torch

from spikerbm import kernels
from spikerbm.rbm import RBM, tf32_matmul
from spikerbm.sampling import FusedChains, PersistentChains

#: (uniform bits, Philox rounds) of the fused kernel, the default first.
VARIANTS = [(32, 10), (16, 10), (32, 7), (16, 7)]


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


def gemm_floor(v0: torch.Tensor, w: torch.Tensor, *, dtype: torch.dtype, reps: int) -> float:
    """us per sweep (all replicas) of the two bare products ``v W`` and ``h W^T`` in ``dtype``,
    in a CUDA graph: ``mm`` for 2-d operands, ``bmm`` for a leading replica axis."""
    v, w = v0.to(dtype), w.to(dtype)
    wt = w.transpose(-1, -2).contiguous()
    h = torch.zeros(*v.shape[:-1], w.shape[-1], device=v.device, dtype=dtype)
    out_h, out_v = torch.empty_like(h), torch.empty_like(v)
    mm = torch.mm if v.ndim == 2 else torch.bmm

    def gemms():
        mm(v, w, out=out_h)
        mm(h, wt, out=out_v)
    with tf32_matmul(True):
        return timed(gemms, reps=reps, graph=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n-visible", type=int, default=1560)
    p.add_argument("--n-hidden", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 4])
    p.add_argument("--chains", type=int, default=2000)
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--extra-tiles", nargs="*", default=[], metavar="BMxBNxBKxWxS",
                   help="also time the fused kernel with these tiles added to the autotuner's "
                   "set (e.g. 128x256x64x8x4), and print the tiles it picks")
    p.add_argument("--no-variants", action="store_true",
                   help="time only the default uniforms (32 bits, Philox-4x32-10)")
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="dense bf16 tensor-core peak of the card (H100 SXM 989, H200 989)")
    args = p.parse_args()
    dev = torch.device("cuda")
    print(f"{dt.date.today()}, device {torch.cuda.get_device_name(dev)}, torch "
          f"{torch.__version__}, N={args.n_visible}, chains={args.chains} per replica, "
          f"{args.reps} sweeps per timing (median of 5), microseconds per sweep per replica")
    print("| Nh | R | variant | us/sweep/replica | % of bf16 peak |\n|---|---|---|---|---|")
    g = torch.Generator(device=dev).manual_seed(0)
    for m in args.n_hidden:
        for n_rep in args.replicas:
            n, c = args.n_visible, args.chains
            flop = 2 * 2 * c * n * m  # per sweep and replica
            shape = () if n_rep == 1 else (n_rep,)
            r = RBM(0.05 * torch.randn(*shape, n, m, device=dev, generator=g),
                    -2 + 0.1 * torch.randn(*shape, n, device=dev, generator=g),
                    torch.zeros(*shape, m, device=dev))
            v0 = (torch.rand(*shape, c, n, device=dev, generator=g) < 0.1).float()
            rows = {"GEMM floor bf16 (graph)": gemm_floor(v0, r.W, dtype=torch.bfloat16,
                                                          reps=args.reps)}
            if n_rep == 1:
                rows["GEMM floor tf32 (graph)"] = gemm_floor(v0, r.W, dtype=torch.float32,
                                                             reps=args.reps)
                gen = torch.Generator(device=dev).manual_seed(1)
                pc = PersistentChains(v0, n_hidden=m, generator=gen, tf32=True)
                with tf32_matmul(True):
                    rows["torch sampler tf32 (eager)"] = timed(
                        lambda pc=pc, r=r: pc.sweep(r), reps=args.reps, graph=False)
            rows.update(fused(r, v0, reps=args.reps, variants=not args.no_variants))
            if args.extra_tiles:
                kernels.EXTRA_TILES = [tuple(int(x) for x in t.split("x"))
                                       for t in args.extra_tiles]
                kernels._kernels.cache_clear()
                rows.update({f"{k} + extra tiles": t for k, t in
                             fused(r, v0, reps=args.reps, variants=True).items()})
                print("tiles picked:", {str(key): str(cfg) for key, cfg in
                                        kernels._kernels(False)[0].cache.items()}, flush=True)
                kernels.EXTRA_TILES = []
                kernels._kernels.cache_clear()
            for name, us in rows.items():
                us = us / n_rep
                pct = 100 * flop / (us * 1e-6) / 1e12 / args.peak_tflops
                print(f"| {m} | {n_rep} | {name} | {us:.1f} | {pct:.0f} |", flush=True)


def fused(r: RBM, v0: torch.Tensor, *, reps: int, variants: bool) -> dict[str, float]:
    """Microseconds per sweep (all replicas) of the fused kernels in a CUDA graph, per
    random-number variant, and of the hidden means alone."""
    rows = {}
    seed = 3 if v0.ndim == 2 else [3 + i for i in range(v0.shape[0])]
    fc = FusedChains(v0, n_hidden=r.n_hidden, seed=seed)
    fc.load(r)
    default = kernels.UNIFORM_BITS, kernels.PHILOX_ROUNDS
    try:
        for bits, rounds in VARIANTS if variants else VARIANTS[:1]:
            kernels.UNIFORM_BITS, kernels.PHILOX_ROUNDS = bits, rounds
            rows[f"fused bf16, {bits}-bit uniforms, Philox-{rounds} (graph)"] = timed(
                lambda: fc.sweep(r, k=1, load=False), reps=reps, graph=True)
    finally:
        kernels.UNIFORM_BITS, kernels.PHILOX_ROUNDS = default
    rows["fused hidden means only (graph)"] = timed(lambda: fc.hidden_means(r), reps=reps,
                                                    graph=True)
    return rows


if __name__ == "__main__":
    main()
