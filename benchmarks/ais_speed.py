"""Cost of AIS log Z estimates at paper scale (seconds per checkpoint), per product precision.

Pure torch + numpy. A random RBM with realistic-scale weights stands in for a trained model;
AIS runs ``n_repeats x n_chains`` chains over ``n_betas`` inverse temperatures (energies and
log-weights in float64), so the time per checkpoint of the ``loglik`` rule (or per anchor of
trajectory AIS) is this number. ``--products`` compares the samplers' products in one process,
each after a short warm-up, from the same seed:

* ``split`` (the default of AIS on a GPU with bfloat16 tensor cores): the sweeps and the
  pre-activations ``x = b + v W`` of the weights as split bfloat16 products of float32
  accuracy (``spikerbm.rbm.binary_mm``);
* ``float32``: float32 sweeps without TF32, ``x`` in float64 (AIS's default on the CPU);
* ``tf32``: TF32 sweeps (``W`` rounded to 11 significant bits: the chains sample a slightly
  different model), ``x`` in float64.

Each row gives log Z with its stated error and its difference to the ``float32`` row in units of
their combined error. With ``split`` a second table measures ``x`` from split, float32 and TF32
products against float64 on states of the independent-site model and of density 1/2: the
largest error, the bound it puts on a log-weight (``1.1 sum_mu max |dx_mu|``,
``spikerbm.partition.ais_log_weights``) and the mean log-weight shift it would cause
(:func:`x_errors`).

    python benchmarks/ais_speed.py --device cuda --chains 500 --repeats 4 --betas 1000  # anchor
    python benchmarks/ais_speed.py --device cuda --betas 1000 3000 --products float32  # loglik
    OMP_NUM_THREADS=1 python benchmarks/ais_speed.py --n-visible 160 --n-hidden 48 --device cpu
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import time

import torch

from spikerbm.partition import ais_log_z
from spikerbm.rbm import RBM, binary_mm, resolve_device, split_bf16, tf32_matmul
from spikerbm.sampling import Sampler

PRODUCTS = ("float32", "split", "tf32")


def sampler_of(products: str, device: torch.device) -> Sampler:
    return {"float32": Sampler(device), "split": Sampler(device, split_bf16=True),
            "tf32": Sampler(device, tf32=True)}[products]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-visible", type=int, default=1560)
    p.add_argument("--n-hidden", type=int, default=1024)
    p.add_argument("--chains", type=int, default=2000)
    p.add_argument("--betas", type=int, nargs="+", default=[1000, 3000])
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--products", nargs="+", choices=PRODUCTS, default=None,
                   help="samplers to compare (default: all three on CUDA, float32 on the CPU)")
    args = p.parse_args()
    device = resolve_device(args.device)
    products = args.products or (list(PRODUCTS) if device.type == "cuda" else ["float32"])
    gen = torch.Generator(device=device).manual_seed(0)
    n, m = args.n_visible, args.n_hidden
    rbm = RBM(torch.randn(n, m, device=device, generator=gen) * (2.0 / n) ** 0.5 * 2,
              torch.full((n,), -3.0, device=device), torch.full((m,), -1.0, device=device))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    print("| date | device | torch | N | Nh | chains x repeats | betas | products | log Z | "
          "log_z_std | vs float32 (combined errors) | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n_betas in args.betas:
        ref = None
        for prod in products:
            sampler = sampler_of(prod, device)
            ais_log_z(rbm, n_chains=args.chains, n_betas=10, n_repeats=args.repeats,
                      generator=torch.Generator(device=device).manual_seed(1), sampler=sampler)
            sync()
            t0 = time.perf_counter()
            est = ais_log_z(rbm, n_chains=args.chains, n_betas=n_betas, n_repeats=args.repeats,
                            generator=torch.Generator(device=device).manual_seed(0),
                            sampler=sampler)
            sync()
            sec = time.perf_counter() - t0
            vs = ""
            if prod == "float32":
                ref = est
            elif ref is not None:
                combined = math.hypot(est.log_z_std, ref.log_z_std)
                vs = f"{est.log_z - ref.log_z:+.4f} ({(est.log_z - ref.log_z) / combined:+.2f})"
            print(f"| {dt.date.today()} | {name} | {torch.__version__} | {n} | {m} | "
                  f"{args.chains} x {args.repeats} | {n_betas} | {prod} | {est.log_z:.4f} | "
                  f"{est.log_z_std:.4f} | {vs} | {sec:.3f} |", flush=True)
    if "split" in products:
        x_errors(rbm, n_states=args.chains * args.repeats, generator=gen)


def x_errors(rbm: RBM, *, n_states: int, generator: torch.Generator) -> None:
    """Errors of the pre-activations ``x = b + v W`` of AIS's weights against float64, on
    states of the independent-site model and of density 1/2: split products, float32 (no
    TF32) and TF32 products. Per product: the largest ``|dx|``, the bound it puts on a
    log-weight (``1.1 sum_mu max_c |dx_cμ|``, partition.ais_log_weights) and the mean over the
    states of ``sum_mu sigma(x_μ) dx_μ``, the shift of a log-weight that the annealing from
    beta 0 to 1 at fixed ``v`` would get (``softplus(x + dx) - softplus(x)`` summed): a
    systematic error (e.g. tensor cores truncating in their additions) shows there."""
    parts = split_bf16(rbm.W)
    W64, b64 = rbm.W.double(), rbm.b.double()
    print("\n| states | products for x | max abs dx | bound 1.1 sum_mu max abs dx (nats) | "
          "mean shift sum_mu sigma(x) dx (nats) |")
    print("|---|---|---|---|---|")
    for label, prob in (("independent-site", torch.sigmoid(rbm.a)),
                        ("density 1/2", torch.full_like(rbm.a, 0.5))):
        v = (torch.rand(n_states, rbm.n_visible, device=rbm.device, generator=generator)
             < prob).float()
        exact = b64 + v.double() @ W64
        with tf32_matmul(False):
            f32 = torch.mm(v, rbm.W)
        with tf32_matmul(True):
            tf32 = torch.mm(v, rbm.W)
        for prod, y in (("split", binary_mm(v, parts)), ("float32", f32), ("tf32", tf32)):
            dx = (y.double() + b64) - exact
            shift = (torch.sigmoid(exact) * dx).sum(1).mean()
            print(f"| {label} | {prod} | {float(dx.abs().max()):.2e} | "
                  f"{1.1 * float(dx.abs().amax(0).sum()):.2e} | {float(shift):+.2e} |")

if __name__ == "__main__":
    main()
