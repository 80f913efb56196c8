"""Where the time of online trajectory AIS goes at paper scale (issue 19 item 4), one GPU.

``spikerbm.training.train`` at the paper-scale settings of ``config/vbn.yaml`` (batch = chains =
2000, k = 100, lr 0.01, weight s.d. 1e-4, ``precision: bf16``, 2000 trajectory-AIS chains in 10
groups) on the 1,560-neuron synthetic session of ``benchmarks/compare_rbms.py``, early stopping
off, in one process, interleaved variants (so drifts of the card hit all alike):

- ``off``: no trajectory AIS (the bare training loop);
- ``tais``: trajectory AIS with the adaptive stages (docs/methods.md §4), no test data;
- ``tais_1stage``: the same with ``partition.MAX_STAGES = 1`` (the one-stage estimator);
- ``tais_eval``: ``tais`` plus the online train/test log-likelihood every ``eval_every``.

The timed variants run without anchors (``anchor_every: 0``), so their difference is trajectory
AIS itself; the anchors' share is printed per shape in its own row: one anchor at
``config/vbn.yaml``'s settings timed on a model of that shape, times the anchors of a run of
that config's length, over that run's bare training time.

Printed: wall ms per update of the whole call (set-up cancels in the difference of a long and
a short run; with ``--repeats`` the median over interleaved repeats), the overhead against
``off``, and the histogram of stages per update chosen by ``TrajectoryAIS.adapt_stages``.

``--shapes NVxNH ...`` measures several shapes in one call (one table row per shape and
variant, the JSON rewritten after every shape); ``--data random`` trains on random Bernoulli
rasters (rates 0.02-0.12, ``--n-bins`` train rows, a quarter as many test rows) instead of the
synthetic session, whose generation takes minutes per ``Nv`` on one core (the issue's 5,000 and
10,000 neurons): the time per update depends on the shapes and the number of stages, not on
the data.

    python benchmarks/tais_overhead.py --out $OUT/tais_overhead.json   # ~3 min on an H200
    python benchmarks/tais_overhead.py --data random --variants off tais --repeats 3 \
        --updates 50 350 --shapes 1560x256 1560x1024 1560x4096 --out $OUT/tais_shapes.json
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from compare_rbms import session_split

from spikerbm import partition, training
from spikerbm.rbm import RBM


def run(train_v: Any, test_v: Any, *, variant: str, updates: int, args: Any) -> dict[str, Any]:
    """One ``train`` call; returns wall seconds and the stages histogram."""
    cfg = training.TrainConfig(
        n_hidden=args.n_hidden, n_updates=updates, n_checkpoints=2, n_chains=args.chains,
        batch_size=args.chains, k=args.k, lr=args.lr, optimizer="sgd", lr_final=1.0,
        decay_start=0.0, weight_std=args.weight_std,
        precision="bf16", tais_chains=0 if variant == "off" else args.chains, tais_groups=10,
        eval_every=args.eval_every, anchor_every=0, patience=0, device="cuda")
    stages: collections.Counter = collections.Counter()
    original = partition.TrajectoryAIS.adapt_stages

    def counted(self: partition.TrajectoryAIS, **kw: Any) -> int:
        s = original(self, **kw)
        stages[s] += 1
        return s

    partition.TrajectoryAIS.adapt_stages = counted
    old_max = partition.MAX_STAGES
    if variant == "tais_1stage":
        partition.MAX_STAGES = 1
    try:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        training.train(train_v, cfg=cfg, seed=0,
                       test_data=test_v if variant == "tais_eval" else None)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    finally:
        partition.TrajectoryAIS.adapt_stages = original
        partition.MAX_STAGES = old_max
    return {"wall_s": wall, "stages": dict(sorted(stages.items()))}


def anchor_cost(n_visible: int, n_hidden: int, *, ms_off: float) -> dict[str, Any]:
    """Wall time of one anchor of trajectory AIS at ``config/vbn.yaml``'s settings (AIS as
    ``training`` runs it: :func:`spikerbm.partition.estimate_log_z`, median of 3) on a model
    of this shape, and its share of a run of ``vbn.yaml``'s length: anchors at the first
    evaluation, every ``anchor_every``-th one and the last update (``training._anchor_due``),
    against ``ms_off`` ms per bare update."""
    t = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "vbn.yaml")
                       .read_text())["train"]
    g = torch.Generator(device="cuda").manual_seed(0)
    rbm = RBM(0.03 * torch.randn(n_visible, n_hidden, device="cuda", generator=g),
              torch.full((n_visible,), -2.5, device="cuda"),
              torch.zeros(n_hidden, device="cuda"))
    times = []
    for _ in range(3):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        partition.estimate_log_z(rbm, method="ais", ais_chains=t["anchor_chains"],
                                 ais_betas=t["anchor_betas"],
                                 ais_repeats=partition.ANCHOR_REPEATS, generator=g)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    cfg = training.TrainConfig(n_hidden=n_hidden, n_updates=t["n_updates"],
                               eval_every=t["eval_every"], anchor_every=t["anchor_every"])
    evals = range(cfg.eval_every, cfg.n_updates + 1, cfg.eval_every)
    n_anchors = sum(training._anchor_due(u, cfg) for u in evals)
    seconds = float(np.median(times))
    return {"seconds": seconds, "chains": t["anchor_chains"], "betas": t["anchor_betas"],
            "repeats": partition.ANCHOR_REPEATS, "n_anchors": n_anchors,
            "n_updates": cfg.n_updates,
            "overhead": n_anchors * seconds / (cfg.n_updates * ms_off * 1e-3)}


def random_split(n_visible: int, n_bins: int, seed: int = 0) -> dict[str, Any]:
    """Random Bernoulli train/test rasters (uint8, on the CPU): rates 0.02-0.12 per unit."""
    g = torch.Generator().manual_seed(seed)
    rates = 0.02 + 0.1 * torch.rand(n_visible, generator=g)
    return {name: (torch.rand(rows, n_visible, generator=g) < rates).to(torch.uint8).numpy()
            for name, rows in (("train", n_bins), ("test", max(n_bins // 4, 1)))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-neurons", type=int, default=1560)
    p.add_argument("--n-hidden", type=int, default=1024)
    p.add_argument("--shapes", nargs="+",
                   help="shapes as NVxNH, e.g. 1560x1024 5000x1024 (default: --n-neurons x "
                   "--n-hidden)")
    p.add_argument("--data", choices=["session", "random"], default="session",
                   help="the synthetic session of compare_rbms.py, or random rasters")
    p.add_argument("--n-bins", type=int, default=20000, help="random data: train rows")
    p.add_argument("--chains", type=int, default=2000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-std", type=float, default=1e-4)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--updates", type=int, nargs=2, default=[100, 600],
                   help="short and long run (ms/update from their difference)")
    p.add_argument("--repeats", type=int, default=1,
                   help="interleaved repeats of every variant (the median is reported)")
    p.add_argument("--variants", nargs="+",
                   default=["off", "tais", "tais_1stage", "tais_eval"])
    p.add_argument("--cache", type=Path,
                   help="session data: the train/test split as bit-packed .npz, read when "
                   "present, else generated and written (generation takes minutes on one core);"
                   " with several Nv one file per Nv, named with -NV before the suffix")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    shapes = ([tuple(int(x) for x in sh.lower().split("x")) for sh in args.shapes]
              if args.shapes else [(args.n_neurons, args.n_hidden)])
    several = len({n for n, _ in shapes}) > 1
    name = torch.cuda.get_device_name()
    res: dict[str, Any] = {"device": name, "date": str(dt.date.today()),
                           "torch": torch.__version__, "args": vars(args)
                           | {"out": None, "cache": str(args.cache)}, "shapes": []}
    print(f"{dt.date.today()}, {name}, torch {torch.__version__}: {args.data} data, batch = "
          f"chains = {args.chains}, k = {args.k}, lr {args.lr}, init s.d. {args.weight_std}, "
          f"updates {args.updates[0]} and {args.updates[1]}, median of {args.repeats}",
          flush=True)
    print("| Nv | Nh | variant | ms / update | overhead | stages per check (last long run) |\n"
          "|---|---|---|---|---|---|", flush=True)
    short, long = args.updates
    for n_visible, n_hidden in shapes:
        if args.data == "random":
            split = random_split(n_visible, args.n_bins)
        else:
            cache = args.cache
            if cache is not None and several:
                cache = cache.with_name(f"{cache.stem}-{n_visible}{cache.suffix}")
            split = session_split(n_visible, cache)
        args.n_hidden = n_hidden
        row: dict[str, Any] = {"n_visible": int(split["train"].shape[1]), "n_hidden": n_hidden,
                               "train_bins": int(split["train"].shape[0]), "variants": {}}
        run(split["train"], split["test"], variant="tais", updates=3, args=args)  # compile
        times: dict[str, list[float]] = {v: [] for v in args.variants}
        for _ in range(args.repeats):
            for variant in args.variants:
                a = run(split["train"], split["test"], variant=variant, updates=short, args=args)
                b = run(split["train"], split["test"], variant=variant, updates=long, args=args)
                times[variant].append(1e3 * (b["wall_s"] - a["wall_s"]) / (long - short))
                row["variants"].setdefault(variant, {"runs": []})["runs"].append(
                    {"short": a, "long": b})
        base = float(np.median(times["off"])) if "off" in times else None
        for variant, ms_list in times.items():
            v = row["variants"][variant]
            v["ms_per_update"], v["ms_all"] = float(np.median(ms_list)), ms_list
            v["overhead"] = v["ms_per_update"] / base - 1 if base else None
            over = f"{100 * v['overhead']:+.1f} %" if base else "-"
            print(f"| {n_visible} | {n_hidden} | {variant} | {v['ms_per_update']:.2f} "
                  f"({min(ms_list):.2f}-{max(ms_list):.2f}) | {over} | "
                  f"{v['runs'][-1]['long']['stages']} |", flush=True)
        if base:
            row["anchor"] = anchor_cost(n_visible, n_hidden, ms_off=base)
            a = row["anchor"]
            print(f"| {n_visible} | {n_hidden} | + anchors of config/vbn.yaml | "
                  f"{a['seconds']:.3f} s per anchor ({a['chains']} x {a['repeats']} chains x "
                  f"{a['betas']} betas), {a['n_anchors']} per {a['n_updates']} updates | "
                  f"{100 * a['overhead']:+.1f} % | |", flush=True)
        res["shapes"].append(row)
        del split
        torch.cuda.empty_cache()
        if args.out:
            args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
