"""Training speed: milliseconds per PCD update (k sweeps of the chains + gradient + SGD step).

Pure torch + numpy (no netCDF): runs on a bare GPU box. Defaults are paper scale
(Nv = 1560, batch = chains = 2000, k = 100, Nh in {256, 1024}); shrink with flags on CPU:

    python benchmarks/train_speed.py                       # paper scale, device auto, TF32 off+on
    python benchmarks/train_speed.py --n-visible 61 --hidden 15 33 --batch 101 --chains 101 \
        --k 5 --updates 5 --device cpu                     # tiny, seconds on CPU

Prints a markdown table (header + one row per configuration) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time

import torch

from spikerbm.pcd import pcd_step
from spikerbm.rbm import RBM, resolve_device
from spikerbm.sampling import Sampler, random_states

HEADER = ("| date | device | torch | Nv | Nh | batch | chains | k | TF32 | ms/update | "
          "updates/s |\n|---|---|---|---|---|---|---|---|---|---|---|")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(*, n_visible: int, n_hidden: int, batch: int, chains: int, k: int, updates: int,
          warmup: int, device: torch.device, tf32: bool, seed: int = 0) -> float:
    """Mean milliseconds per update over ``updates`` timed updates (after ``warmup``)."""
    g = torch.Generator(device=device).manual_seed(seed)
    data = (torch.rand(batch * 4, n_visible, generator=g, device=device) < 0.05).float()
    rbm = RBM(0.01 * torch.randn(n_visible, n_hidden, generator=g, device=device),
              torch.full((n_visible,), -3.0, device=device),
              torch.zeros(n_hidden, device=device))
    pc = Sampler(device, tf32=tf32).chains(
        random_states(n_chains=chains, n_visible=n_visible, generator=g), n_hidden=n_hidden,
        generator=g)
    mb = torch.empty(batch, n_visible, device=device)
    times = []
    for i in range(warmup + updates):
        idx = torch.randint(0, data.shape[0], (batch,), generator=g, device=device)
        _sync(device)
        t0 = time.perf_counter()
        torch.index_select(data, 0, idx, out=mb)
        rbm, _ = pcd_step(rbm, mb, pc, k=k, lr=0.01, centered=True, tf32=tf32)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return 1e3 * sum(times) / len(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-visible", type=int, default=1560)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--chains", type=int, default=2000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--updates", type=int, default=20, help="timed updates")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--tf32", default="both", choices=["off", "on", "both"],
                   help="TF32 in sampling matmuls (CUDA only; ignored on CPU)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.tf32]
    if device.type != "cuda":
        modes = [False]
    date = dt.date.today().isoformat()
    print(HEADER)
    for n_hidden in args.hidden:
        for tf32 in modes:
            ms = bench(n_visible=args.n_visible, n_hidden=n_hidden, batch=args.batch,
                       chains=args.chains, k=args.k, updates=args.updates,
                       warmup=args.warmup, device=device, tf32=tf32)
            print(f"| {date} | {device_name(device)} | {torch.__version__} | {args.n_visible} "
                  f"| {n_hidden} | {args.batch} | {args.chains} | {args.k} | "
                  f"{'on' if tf32 else 'off'} | {ms:.2f} | {1e3 / ms:.1f} |", flush=True)


if __name__ == "__main__":
    main()
