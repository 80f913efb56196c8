"""Trajectory AIS along SGD and Adam trajectories: one stage per update, adaptive stages, and
adaptive stages with periodic anchors (issue 17 item 3; docs/methods.md §4, docs/benchmarks.md
"Uncertainty of log Z").

The quick start's default synthetic session (``synth-a`` of ``config/config.yaml``: 160
neurons, seeds as the workflow derives them), M = 16 hidden units (exact ``log Z`` by
enumerating 2^16 hidden states), the quick-start training section with early stopping off, and
either SGD (``lr`` 0.1) or Adam + decay (``lr 0.03, lr_final 0.01, decay_start 0.5``). Each
run is trained once per variant in this process: ``one-stage`` (``partition.MAX_STAGES = 1``,
no anchors: the estimator of earlier versions), ``stages`` (adaptive stages,
:meth:`spikerbm.partition.TrajectoryAIS.adapt_stages`, no anchors) and ``anchored`` (stages and
anchors every ``--anchor-every`` evaluations, docs/methods.md §4 "Anchors"). Printed per run: CPU
(and wall) ms per update, mean and largest stages per update, the anchors' time, and at every
checkpoint ``log_z_tais - exact`` with ``log_z_tais_std``; then a summary table (largest
|error|, largest |error| / stated error, coverage at 2 stated errors).

``--emulate-bf16`` (CPU): the trajectory-AIS chains sweep with ``W`` rounded to bfloat16 while
energies stay float64, as the fused bf16 kernels do on the GPU, to show that drift on a CPU.

    OMP_NUM_THREADS=1 python benchmarks/tais_stages.py [--updates 2000] [--optimizer sgd adam]
    OMP_NUM_THREADS=1 python benchmarks/tais_stages.py --emulate-bf16 --variants stages anchored
    python benchmarks/tais_stages.py --device cuda --precision bf16   # the fused GPU path
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from spikerbm import binarize, partition, synthetic
from spikerbm.provenance import derive_seed
from spikerbm.rbm import rbm_from_dataset
from spikerbm.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
ADAM = {"optimizer": "adam", "lr": 0.03, "lr_final": 0.01, "decay_start": 0.5}
#: The SGD step the quick start used before Adam became its default (stated, since
#: config.yaml's train section is now Adam).
SGD = {"optimizer": "sgd", "lr": 0.1, "lr_final": 1.0, "decay_start": 0.0}


def session(cfg: dict, name: str = "synth-a") -> dict:
    """Train and test splits of the quick start's synthetic session, seeded as the workflow."""
    spikes, _ = synthetic.generate_session(
        **cfg["synthetic"], seed=derive_seed(cfg["seed"], "synthetic", name, 1),
        session_id=name)
    b = cfg["binarize"]
    raster = binarize.binarize(spikes, bin_ms=b["bin_ms"], epochs=b["epochs"],
                               n_blocks=b["n_blocks"], n_test_blocks=b["n_test_blocks"],
                               seed=derive_seed(cfg["seed"], "binarize", name), session_id=name)
    return binarize.split_arrays(raster)


def bf16_rounded_sweeps(tais_class: type) -> type:
    """A trajectory-AIS class whose chains sweep with ``W`` rounded to bfloat16 (energies and
    log-weights unchanged, float64): the fused bf16 kernels' rounding, emulated on a CPU."""

    class Bf16Sweeps(tais_class):
        def _sweep(self, rbm):
            rounded = type(rbm)(rbm.W.to(torch.bfloat16).to(rbm.W.dtype), rbm.a, rbm.b)
            super()._sweep(rounded)

    return Bf16Sweeps


def run(split: dict, train_cfg: dict, *, n_hidden: int, seed: int, max_stages: int,
        device: str, emulate_bf16: bool = False) -> dict:
    """One training run; trajectory-AIS errors against exact log Z at every checkpoint."""
    from spikerbm import training

    chosen: list[tuple[int, int]] = [(0, 1)]  # (update, stages used from there on)
    adapt = partition.TrajectoryAIS.adapt_stages
    tais_class, anchor = partition.TrajectoryAIS, training._Replica.anchor
    anchor_s: list[float] = []

    def counting(self, **kw):  # record the stages chosen at each synchronisation point
        chosen.append((self.n_steps, adapt(self, **kw)))
        return chosen[-1][1]

    def timed(self, *a, **kw):  # the anchors' wall time
        t0 = time.perf_counter()
        anchor(self, *a, **kw)
        anchor_s.append(time.perf_counter() - t0)

    old_max = partition.MAX_STAGES
    partition.MAX_STAGES, partition.TrajectoryAIS.adapt_stages = max_stages, counting
    training._Replica.anchor = timed
    if emulate_bf16:
        partition.TrajectoryAIS = bf16_rounded_sweeps(tais_class)
    try:
        cfg = TrainConfig.from_config(train_cfg, n_hidden=n_hidden, device=device)
        t0, w0 = time.process_time(), time.perf_counter()
        model = train(split["train"], cfg=cfg, seed=seed, test_data=split["test"])
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    finally:
        partition.MAX_STAGES, tais_class.adapt_stages = old_max, adapt
        partition.TrajectoryAIS, training._Replica.anchor = tais_class, anchor
    ck = model["checkpoint"].values
    exact = np.array([partition.exact_log_z(rbm_from_dataset(model, checkpoint=int(c)))
                      for c in ck])
    err = model["log_z_tais"].values - exact
    std = model["log_z_tais_std"].values
    n_done = int(model.attrs["n_updates_done"])
    starts = [u for u, _ in chosen] + [n_done]
    per_update = sum((b - a) * s for (a, s), b in zip(chosen, starts[1:], strict=True))
    return {"checkpoint": ck, "exact": exact, "err": err, "std": std,
            "ms": 1e3 * cpu / n_done, "ms_wall": 1e3 * wall / n_done,
            "stages": per_update / n_done, "stages_max": max(s for _, s in chosen),
            "anchor_s": sum(anchor_s), "n_anchors": len(anchor_s), "wall_s": wall,
            "gaps": model["log_z_anchor_gap"].values[np.isfinite(model["log_z_anchor_gap"])],
            "online": online_coverage(model)}


def online_coverage(model) -> float:
    """Fraction of the evaluations that are checkpoints (after update 0) whose online
    ``log_z_online`` lies within 2 ``log_z_online_std`` of exact log Z."""
    ck = model["checkpoint"].values
    eu = model["eval_update"].values
    at = np.isin(eu, ck) & (eu > 0)
    if not at.any():
        return float("nan")
    exact = np.array([partition.exact_log_z(rbm_from_dataset(model, checkpoint=int(u)))
                      for u in eu[at]])
    err = np.abs(model["log_z_online"].values[at] - exact)
    return float(np.mean(err <= 2 * model["log_z_online_std"].values[at] + 1e-9))


def stage_cost(split: dict, train_cfg: dict, *, n_hidden: int, seed: int, device: str,
               n: int = 100, rounds: int = 3) -> dict[int, float]:
    """ms per PCD update (``PCDEngine.step``, trajectory AIS included) with 1, 2, 4 and 8
    trajectory-AIS stages held fixed, interleaved over ``rounds`` rounds of ``n`` updates,
    best round each (robust to other jobs' load); the marginal cost of one stage is the slope."""
    from spikerbm.pcd import DivergenceGuard, PCDEngine
    from spikerbm.sampling import Sampler
    from spikerbm.train_state import TrainingState

    cfg = TrainConfig.from_config(train_cfg, n_hidden=n_hidden, device=device)
    dev = torch.device(device)
    state = TrainingState.start(split["train"], cfg=cfg, seed=seed,
                                sampler=Sampler.from_precision(cfg.precision, dev),
                                hashes={})
    engine = PCDEngine(state.rbm, chains=state.chains, data=torch.from_numpy(
        split["train"]).to(dev), k=cfg.k, optimizer=state.optimizer, centered=cfg.centered,
        tf32=cfg.precision != "float32", guard=DivergenceGuard(dev, lr=cfg.lr),
        first_update=1, batch_size=cfg.batch_size, tais=state.tais)
    best: dict[int, float] = {}
    for _ in range(rounds):
        for stages in (1, 2, 4, 8):
            state.tais.n_stages = stages
            rows = state.batches.next_rows(n + 1, dev)
            engine.step(rows[0])  # warm-up (captures a graph on the fused CUDA path)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter() if dev.type == "cuda" else time.process_time()
            for idx in rows[1:]:
                engine.step(idx)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = (time.perf_counter() if dev.type == "cuda" else time.process_time()) - t0
            best[stages] = min(best.get(stages, np.inf), 1e3 * t / n)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=2000)
    ap.add_argument("--n-hidden", type=int, default=16)
    ap.add_argument("--optimizer", nargs="+", default=["sgd", "adam"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="float32", help="train.precision (bf16: fused "
                    "CUDA kernels and graphs)")
    ap.add_argument("--variants", nargs="+", default=["one-stage", "stages", "anchored"],
                    choices=["one-stage", "stages", "anchored"])
    ap.add_argument("--anchor-every", type=int, default=5,
                    help="train.anchor_every of the anchored variant (evaluations, 100 "
                    "updates apart)")
    ap.add_argument("--emulate-bf16", action="store_true",
                    help="CPU: trajectory-AIS sweeps with W rounded to bfloat16")
    ap.add_argument("--skip-cost", action="store_true", help="skip the per-stage timing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    split = session(cfg)
    seed = derive_seed(cfg["seed"], "train", "synth-a", args.n_hidden)
    dev = (torch.cuda.get_device_name() if args.device == "cuda" else "CPU, 1 thread")
    print(f"trajectory AIS vs exact log Z, {dt.date.today()}, {dev}, torch {torch.__version__}, "
          f"{args.precision}; synth-a: {split['train'].shape[0]} train bins x "
          f"{split['train'].shape[1]} neurons, M = {args.n_hidden}, {args.updates} updates, "
          f"{cfg['train']['tais_chains']} chains in {cfg['train']['tais_groups']} groups"
          + (", trajectory-AIS sweeps with W rounded to bf16 (emulated)" if args.emulate_bf16
             else "") + "\n")
    if args.skip_cost:
        return _runs(args, cfg, split, seed)
    cost = stage_cost(split, {**cfg["train"], "precision": args.precision},
                      n_hidden=args.n_hidden, seed=seed, device=args.device)
    print("ms per update with s trajectory-AIS stages held fixed (best of 3 interleaved rounds "
          "of 100 updates; CPU time on CPU, wall on CUDA): "
          + ", ".join(f"s={k}: {v:.2f}" for k, v in cost.items())
          + f"; one stage adds {(cost[8] - cost[1]) / 7:.2f} ms\n")
    _runs(args, cfg, split, seed)


def _runs(args: argparse.Namespace, cfg: dict, split: dict, seed: int) -> None:
    """Train every (optimizer, variant); print the errors and the summary table."""
    rows = []
    for opt in args.optimizer:
        for label in args.variants:
            tc = {**cfg["train"], "n_updates": args.updates, "n_checkpoints": 30,
                  "patience": 0, "precision": args.precision,
                  "anchor_every": args.anchor_every if label == "anchored" else 0,
                  **(ADAM if opt == "adam" else SGD)}
            max_stages = 1 if label == "one-stage" else partition.MAX_STAGES
            r = run(split, tc, n_hidden=args.n_hidden, seed=seed, max_stages=max_stages,
                    device=args.device, emulate_bf16=args.emulate_bf16)
            print(f"{opt} {label}: {r['ms']:.2f} CPU ms/update ({r['ms_wall']:.2f} wall), "
                  f"stages per update mean {r['stages']:.2f}, max {r['stages_max']}; "
                  f"{r['n_anchors']} anchors, {r['anchor_s']:.2f} s of {r['wall_s']:.1f} s "
                  f"wall; gaps at the anchors " + ", ".join(f"{g:+.3f}" for g in r["gaps"]))
            print("  update: log_z_tais - exact (log_z_tais_std)")
            print("  " + "; ".join(f"{int(c)}: {e:+.3f} ({s:.3f})" for c, e, s in
                                   zip(r["checkpoint"], r["err"], r["std"], strict=True)))
            err, std = np.abs(r["err"][1:]), r["std"][1:]
            z = np.where(err < 1e-9, 0.0, err / np.maximum(std, 1e-300))  # exact anchors: 0/0
            rows.append((opt, label, r["ms"], r["stages"], r["stages_max"],
                         float(np.abs(r["err"]).max()), float(z.max()), float(np.mean(z <= 2)),
                         float(r["std"][-1]), float(r["err"][-1]), r["online"],
                         100 * r["anchor_s"] / r["wall_s"]))
    print("\n| optimizer | trajectory AIS | CPU ms/update | stages per update (mean, max) | "
          "max abs error | max abs error / stated | within 2 stated | final stated | "
          "final error | online within 2 stated | anchors % of wall |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for opt, label, ms, st, stm, emax, zmax, cov, sfin, efin, onl, anc in rows:
        print(f"| {opt} | {label} | {ms:.2f} | {st:.2f}, {stm} | {emax:.3f} | {zmax:.1f} | "
              f"{cov:.2f} | {sfin:.3f} | {efin:+.3f} | {onl:.2f} | {anc:.1f} |")


if __name__ == "__main__":
    main()
