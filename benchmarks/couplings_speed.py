"""Timing of the couplings stage: fields + all pairs, and the streamed 3-body pass.

Pure torch + numpy (no netCDF). A random RBM with realistic-scale weights (per-hidden-unit input
width s_mu ~ 2, hidden biases ~ -1, visible biases ~ -3) stands in for a trained model.

    python benchmarks/couplings_speed.py                       # N=1560, Nh=1024, device auto
    python benchmarks/couplings_speed.py --n-visible 160 --n-hidden 48 --device cpu
    python benchmarks/couplings_speed.py --i-range 0 100       # time 100 of 1560 slabs and
                                                               # extrapolate the full stream
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from spikerbm import couplings as C
from spikerbm.rbm import RBM, resolve_device


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n-visible", type=int, default=1560)
    p.add_argument("--n-hidden", type=int, default=1024)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--nodes", type=int, default=40, help="Gauss-Hermite nodes (fields, pairs)")
    p.add_argument("--pair-method", default="both", choices=["quadrature", "spectral", "both"])
    p.add_argument("--log-tol", type=float, default=34.0, help="spectral accuracy exp(-x)")
    p.add_argument("--memory-budget-mb", type=float, default=8000.0)
    p.add_argument("--i-range", type=int, nargs=2, default=None, metavar=("START", "STOP"),
                   help="stream only first indices in [START, STOP) and extrapolate")
    p.add_argument("--no-pair-sums", action="store_true",
                   help="skip sum_k |J_ijk| (norm/histogram only: ~3x fewer flops)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    dev = resolve_device(args.device)
    n, m = args.n_visible, args.n_hidden
    budget = int(args.memory_budget_mb * 2**20)
    g = torch.Generator().manual_seed(args.seed)
    sigma = 4.0 / math.sqrt(n)  # s_mu = sqrt(sum_i W_imu^2 / 4) ~ 2
    rbm = RBM(sigma * torch.randn(n, m, generator=g, dtype=torch.float64),
              -3.0 + torch.randn(n, generator=g, dtype=torch.float64),
              -1.0 + torch.randn(m, generator=g, dtype=torch.float64)).to(device=dev)
    print(f"device: {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"N = {n} visible, Nh = {m} hidden, float64, GH nodes {args.nodes}, "
          f"log_tol {args.log_tol}, budget {args.memory_budget_mb:.0f} MB")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    _sync(dev)
    t0 = time.perf_counter()
    H = C.fields(rbm, n_nodes=args.nodes, memory_budget_bytes=budget)
    _sync(dev)
    t_fields = time.perf_counter() - t0
    print(f"fields H ({tuple(H.shape)}): {t_fields:.3f} s")
    if args.pair_method in ("quadrature", "both"):
        t0 = time.perf_counter()
        J = C.pair_couplings(rbm, n_nodes=args.nodes, memory_budget_bytes=budget)
        _sync(dev)
        print(f"pairs J ({tuple(J.shape)}), Gauss-Hermite: {time.perf_counter() - t0:.3f} s")
    if args.pair_method in ("spectral", "both"):
        t0 = time.perf_counter()
        Js = C.pair_couplings_spectral(rbm, log_tol=args.log_tol)
        _sync(dev)
        print(f"pairs J ({tuple(Js.shape)}), spectral: {time.perf_counter() - t0:.3f} s")
        if args.pair_method == "both":
            err = float((J - Js).abs().max() / Js.abs().max())
            print(f"  max |GH - spectral| / max|J| = {err:.2e}")

    t0 = time.perf_counter()
    f3 = C.spectral_factors(rbm, order=3, log_tol=args.log_tol)
    _sync(dev)
    t_fac = time.perf_counter() - t0
    print(f"3-body factors: rank R = {f3.rank} ({f3.rank / m:.1f} per hidden unit), "
          f"{t_fac:.3f} s")
    sub = C.sample_triplets(n, 1000, seed=args.seed)
    lim = 1.5 * float(C.triplet_couplings(f3, sub).abs().max())
    edges = np.linspace(-lim, lim, 102)
    start, stop = args.i_range if args.i_range else (0, n)
    _sync(dev)
    t0 = time.perf_counter()
    st = C.stream_triplets(f3, edges=edges, n_strongest=1000, pair_sums=not args.no_pair_sums,
                           memory_budget_bytes=budget, i_range=(start, stop))
    _sync(dev)
    t_stream = time.perf_counter() - t0
    if args.no_pair_sums:  # slab i costs (N - i)^2
        done = sum((n - i) ** 2 for i in range(start, stop))
        total = sum((n - i) ** 2 for i in range(n))
    else:  # slab i costs N^2
        done, total = stop - start, n
    full = t_stream * total / max(done, 1)
    print(f"3-body stream over first indices [{start}, {stop}) of {n}: {t_stream:.3f} s "
          f"(full pass, extrapolated: {full:.1f} s; {st.n_triplets:,} triplets in all)")
    print(f"  ||J3||_F over the streamed part = {math.sqrt(st.sum_sq):.4g}, "
          f"strongest |J3| = {abs(st.top_value[0]) if st.top_value.size else float('nan'):.3g}")
    if dev.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB")
    print(f"TOTAL (fields + pairs + factors + full stream): "
          f"{t_fields + t_fac + full:.1f} s (+ pair time above)")


if __name__ == "__main__":
    main()
