"""Do the stated errors of AIS and trajectory AIS cover their actual errors? (issue 17 item 3)

Both estimators are run on RBMs trained by the pipeline's own PCD (``spikerbm.training.train``)
on data from a planted model (``spikerbm.synthetic.generate_session``), at sizes where the exact
``log Z`` is known by enumeration (``min(N, n_hidden) <= 22``):

* ``ais``: at early, middle and late checkpoints of one training run, AIS
  (``spikerbm.partition.ais_log_z``) is repeated with ``--seeds`` seeds at the given settings;
  reported per checkpoint: the bias (mean of ``log_z - exact`` over seeds), the spread of the
  error, the mean stated ``log_z_std`` and the fraction of seeds with ``|error| <= 1, 2, 3``
  stated standard deviations.
* ``tais``: long training runs (``--updates``, several seeds) with trajectory AIS in
  ``--groups`` chain groups; at every checkpoint ``log_z_tais`` and its ``log_z_tais_std`` are
  compared with the exact value; reported: the largest drift ``|log_z_tais - exact|``, the
  coverage fractions as above and the stated error at the end. ``--groups 1`` (no error) shows
  the drift the groups have to cover. ``--anchor-every K`` anchors trajectory AIS every K-th
  evaluation, 100 updates apart (docs/methods.md §4, "Anchors"; 0, the default, reproduces
  the unanchored table).

    OMP_NUM_THREADS=1 python benchmarks/logz_uncertainty.py ais
    OMP_NUM_THREADS=1 python benchmarks/logz_uncertainty.py tais --groups 10
    OMP_NUM_THREADS=1 python benchmarks/logz_uncertainty.py tais --groups 1
    OMP_NUM_THREADS=1 python benchmarks/logz_uncertainty.py tais --anchor-every 10

Prints markdown tables (docs/methods.md §4 quotes them). CPU, float32 sampling, float64 energies.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import numpy as np
import torch

from spikerbm.partition import ais_log_z, exact_log_z
from spikerbm.rbm import rbm_from_dataset
from spikerbm.synthetic import generate_session
from spikerbm.training import TrainConfig, train

#: The training step these measurements were made with (the default until 2026-12-01):
#: constant-rate SGD at lr 0.1 (docs/benchmarks.md "Uncertainty of log Z").
SGD = {"optimizer": "sgd", "lr": 0.1, "lr_final": 1.0, "decay_start": 0.0}


def planted_data(n_neurons: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train (first 70 %) and test (last 30 %) bins of a planted 30-minute session."""
    areas = 2 if n_neurons < 60 else 4
    size = min(12, max(4, n_neurons // (2 * areas)))
    _, _, raster = generate_session(n_neurons=n_neurons, n_areas=areas, assembly_size=size,
                                    n_cross_assemblies=1, seed=seed, return_raster=True)
    cut = int(0.7 * raster.shape[0])
    return raster[:cut], raster[cut:]


def coverage(err: np.ndarray, std: np.ndarray) -> str:
    """Fractions within 1, 2, 3 stated errors; an exact anchor (error and stated error 0)
    counts as within."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(np.abs(err) < 1e-9, 0.0, np.abs(err) / std)
    return " | ".join(f"{np.mean(z <= k):.2f}" for k in (1, 2, 3))


def run_ais(args: argparse.Namespace) -> None:
    train_v, test_v = planted_data(args.n_visible, seed=1)
    cfg = TrainConfig(n_hidden=args.n_hidden, n_updates=args.updates, n_checkpoints=30,
                      patience=0, anchor_every=0, device="cpu", precision="float32", **SGD)
    model = train(train_v, cfg=cfg, seed=1, test_data=test_v)
    ck = model["checkpoint"].values
    picks = sorted({int(ck[len(ck) // 2]), int(ck[(4 * len(ck)) // 5]), int(ck[-1])})
    print(f"AIS, {dt.date.today()}, CPU, torch {torch.__version__}: N={args.n_visible}, "
          f"n_hidden={args.n_hidden}, {args.chains} chains x {args.repeats} repeats, "
          f"{args.betas} betas, {args.seeds} seeds per checkpoint\n")
    print("| update | exact log Z | bias | sd of error | mean log_z_std | "
          "frac <= 1 sd | <= 2 sd | <= 3 sd | s per estimate |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in picks:
        rbm = rbm_from_dataset(model, checkpoint=c)
        exact = exact_log_z(rbm)
        err, std = [], []
        t0 = time.perf_counter()
        for s in range(args.seeds):
            est = ais_log_z(rbm, n_chains=args.chains, n_betas=args.betas,
                            n_repeats=args.repeats,
                            generator=torch.Generator().manual_seed(1000 + s))
            err.append(est.log_z - exact)
            std.append(est.log_z_std)
        sec = (time.perf_counter() - t0) / args.seeds
        err, std = np.array(err), np.array(std)
        print(f"| {c} | {exact:.3f} | {err.mean():+.4f} | {err.std():.4f} | {std.mean():.4f} "
              f"| {coverage(err, std)} | {sec:.1f} |", flush=True)


def run_tais(args: argparse.Namespace) -> None:
    train_v, test_v = planted_data(args.n_visible, seed=2)
    print(f"Trajectory AIS, {dt.date.today()}, CPU, torch {torch.__version__}: "
          f"N={args.n_visible}, n_hidden={args.n_hidden}, {args.updates} updates, "
          f"{args.tais_chains} chains in {args.groups} groups, anchors every "
          f"{args.anchor_every or 'never'}\n")
    print("| seed | max abs drift | final drift | final log_z_tais_std | "
          "frac <= 1 sd | <= 2 sd | <= 3 sd | train s | final exact log Z |")
    print("|---|---|---|---|---|---|---|---|---|")
    all_err, all_std = [], []
    for seed in range(args.first_seed - 100, args.first_seed - 100 + args.runs):
        cfg = TrainConfig(n_hidden=args.n_hidden, n_updates=args.updates, n_checkpoints=60,
                          patience=0, tais_chains=args.tais_chains, tais_groups=args.groups,
                          anchor_every=args.anchor_every, device="cpu", precision="float32",
                          **SGD)
        t0 = time.perf_counter()
        model = train(train_v, cfg=cfg, seed=100 + seed, test_data=test_v)
        sec = time.perf_counter() - t0
        exact = np.array([exact_log_z(rbm_from_dataset(model, checkpoint=int(c)))
                          for c in model["checkpoint"].values])
        err = model["log_z_tais"].values - exact
        std = model["log_z_tais_std"].values
        all_err.append(err[1:])
        all_std.append(std[1:])
        cov = coverage(err[1:], std[1:]) if args.groups > 1 else "- | - | -"
        print(f"| {100 + seed} | {np.abs(err).max():.4f} | {err[-1]:+.4f} | {std[-1]:.4f} | "
              f"{cov} | {sec:.0f} | {exact[-1]:.3f} |", flush=True)
    if args.groups > 1:
        err, std = np.concatenate(all_err), np.concatenate(all_std)
        print(f"| all | {np.abs(err).max():.4f} | | {np.median(std):.4f} (median) | "
              f"{coverage(err, std)} | | |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="part", required=True)
    a = sub.add_parser("ais", help="AIS coverage at checkpoints of one training run")
    a.add_argument("--n-visible", type=int, default=160)
    a.add_argument("--n-hidden", type=int, default=20)
    a.add_argument("--updates", type=int, default=2000)
    a.add_argument("--chains", type=int, default=50)
    a.add_argument("--betas", type=int, default=1000)
    a.add_argument("--repeats", type=int, default=4)
    a.add_argument("--seeds", type=int, default=30)
    t = sub.add_parser("tais", help="trajectory-AIS drift and coverage along long runs")
    t.add_argument("--n-visible", type=int, default=20)
    t.add_argument("--n-hidden", type=int, default=48)
    t.add_argument("--updates", type=int, default=20000)
    t.add_argument("--tais-chains", type=int, default=500)
    t.add_argument("--groups", type=int, default=10)
    t.add_argument("--runs", type=int, default=3)
    t.add_argument("--first-seed", type=int, default=100)
    t.add_argument("--anchor-every", type=int, default=0,
                   help="train.anchor_every, evaluations (100 updates) between anchors (0: "
                   "no anchors, the table of docs/benchmarks.md)")
    args = p.parse_args()
    torch.set_num_threads(1)
    (run_ais if args.part == "ais" else run_tais)(args)


if __name__ == "__main__":
    main()
