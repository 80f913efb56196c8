"""Where the time of online trajectory AIS goes at paper scale (issue 19 item 4), one GPU.

``spikerbm.training.train`` at the paper-scale settings of ``config/vbn.yaml`` (batch = chains =
2000, k = 100, lr 0.01, weight s.d. 1e-4, ``precision: bf16``, 2000 trajectory-AIS chains in 10
groups) on the 1,560-neuron synthetic session of ``benchmarks/compare_rbms.py``, early stopping
off, in one process, interleaved variants (so drifts of the card hit all alike):

- ``off``: no trajectory AIS (the bare training loop);
- ``tais``: trajectory AIS with the adaptive stages (docs/methods.md §4), no test data;
- ``tais_1stage``: the same with ``partition.MAX_STAGES = 1`` (the one-stage estimator);
- ``tais_eval``: ``tais`` plus the online train/test log-likelihood every ``eval_every``.

Printed: wall ms per update of the whole call (set-up cancels in the difference of a long and
a short run), the overhead against ``off``, and the histogram of stages per update chosen by
``TrajectoryAIS.adapt_stages``.

    python benchmarks/tais_overhead.py --out $OUT/tais_overhead.json   # ~3 min on an H200
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import torch
from compare_rbms import session_split

from spikerbm import partition, training


def run(train_v: Any, test_v: Any, *, variant: str, updates: int, args: Any) -> dict[str, Any]:
    """One ``train`` call; returns wall seconds and the stages histogram."""
    cfg = training.TrainConfig(
        n_hidden=args.n_hidden, n_updates=updates, n_checkpoints=2, n_chains=args.chains,
        batch_size=args.chains, k=args.k, lr=args.lr, weight_std=args.weight_std,
        precision="bf16", tais_chains=0 if variant == "off" else args.chains, tais_groups=10,
        eval_every=args.eval_every, patience=0, device="cuda")
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-neurons", type=int, default=1560)
    p.add_argument("--n-hidden", type=int, default=1024)
    p.add_argument("--chains", type=int, default=2000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-std", type=float, default=1e-4)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--updates", type=int, nargs=2, default=[100, 600],
                   help="short and long run (ms/update from their difference)")
    p.add_argument("--variants", nargs="+",
                   default=["off", "tais", "tais_1stage", "tais_eval"])
    p.add_argument("--cache", type=Path,
                   help="the session's train/test split as bit-packed .npz: read when present, "
                   "else generated and written (generation takes minutes on one core)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    split = session_split(args.n_neurons, args.cache)
    name = torch.cuda.get_device_name()
    print(f"{dt.date.today()}, {name}, torch {torch.__version__}: Nv = {split['train'].shape[1]},"
          f" Nh = {args.n_hidden}, {split['train'].shape[0]} train bins, batch = chains = "
          f"{args.chains}, k = {args.k}, lr {args.lr}, init s.d. {args.weight_std}", flush=True)
    run(split["train"], split["test"], variant="tais", updates=3, args=args)  # compile, tune
    short, long = args.updates
    res: dict[str, Any] = {"device": name, "date": str(dt.date.today()), "args": vars(args)
                           | {"out": None, "cache": str(args.cache)}, "variants": {}}
    for variant in args.variants:
        a = run(split["train"], split["test"], variant=variant, updates=short, args=args)
        b = run(split["train"], split["test"], variant=variant, updates=long, args=args)
        ms = 1e3 * (b["wall_s"] - a["wall_s"]) / (long - short)
        res["variants"][variant] = {"ms_per_update": ms, "short": a, "long": b}
        print(f"{variant}: {ms:.2f} ms/update (whole calls {a['wall_s']:.1f} s / "
              f"{b['wall_s']:.1f} s); stages per check (long run): {b['stages']}", flush=True)
    base = res["variants"].get("off", {}).get("ms_per_update")
    if base:
        for variant, v in res["variants"].items():
            v["overhead"] = v["ms_per_update"] / base - 1
            print(f"| {variant} | {v['ms_per_update']:.2f} | {100 * v['overhead']:+.1f} % |")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
