"""Cost of AIS log Z estimates at paper scale (seconds per checkpoint).

Pure torch + numpy. A random RBM with realistic-scale weights stands in for a trained model;
AIS runs ``n_repeats x n_chains`` chains over ``n_betas`` inverse temperatures (energies in
float64, sampling in float32), so the time per checkpoint of the ``loglik`` rule is this number.

    python benchmarks/ais_speed.py --device cuda                      # N=1560, Nh=1024
    OMP_NUM_THREADS=1 python benchmarks/ais_speed.py --n-visible 160 --n-hidden 48 --device cpu
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import torch

from spikerbm.partition import ais_log_z
from spikerbm.rbm import RBM, resolve_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-visible", type=int, default=1560)
    p.add_argument("--n-hidden", type=int, default=1024)
    p.add_argument("--chains", type=int, default=2000)
    p.add_argument("--betas", type=int, nargs="+", default=[1000, 3000])
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = p.parse_args()
    device = resolve_device(args.device)
    gen = torch.Generator(device=device).manual_seed(0)
    n, m = args.n_visible, args.n_hidden
    rbm = RBM(torch.randn(n, m, device=device, generator=gen) * (2.0 / n) ** 0.5 * 2,
              torch.full((n,), -3.0, device=device), torch.full((m,), -1.0, device=device))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print("| date | device | torch | N | Nh | chains x repeats | betas | log Z | spread | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n_betas in args.betas:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        est = ais_log_z(rbm, n_chains=args.chains, n_betas=n_betas, generator=gen,
                        n_repeats=args.repeats)
        if device.type == "cuda":
            torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        print(f"| {dt.date.today()} | {name} | {torch.__version__} | {n} | {m} | "
              f"{args.chains} x {args.repeats} | {n_betas} | {est.log_z:.3f} | "
              f"{est.log_z_std:.3f} | {sec:.1f} |")


if __name__ == "__main__":
    main()
