"""Recovery benchmark (issue 17): does the pipeline recover a planted model within the data's noise?

Data are sampled exactly (enumeration of the 2^N states, N <= 20) from planted models, in Ising
spins ``s = 2v - 1`` (the convention of the pipeline's couplings, docs/methods.md §6): Ising
models with fields, pairs and triplets in two areas (cross-area coupling zero or positive,
several strengths and seeds) and small planted RBMs. The pipeline's own training
(``spikerbm.training.train`` with a config's ``train`` section), exact-log-likelihood selection
over checkpoints and sizes (``spikerbm.selection.select_model``) and coupling extraction
(Gaussian formulas, as the couplings stage) run on them; the recovered fields H, pair couplings
J (all, within, across areas), 3-body couplings J3 (planted triplets, and the null distribution
of the others) and the area matrix are scored against the truth (Pearson r, least-squares slope
of learned on true, RMS), beside the **noise floor**: the maximum-likelihood fit of the true
model family on the same train split, exact by enumeration. Results: docs/benchmarks.md,
"Recovery of a planted model".

Targets (column ``targets``, letters where met): J r >= 0.95 with slope in [0.85, 1.15] (J),
H r >= 0.95 (H), every area-matrix entry within 2 floor standard errors (A), cross-area mean of
the right sign (S: within 2 s.e. of a zero truth, positive for a positive one), planted
triplets r >= 0.8 (3).

Subcommands (all print markdown tables; ``--out`` writes JSON with every number):

``table``   the benchmark table, cases x training configs (:func:`configs`).
            ``--quick``: 3 cases (two 16-neuron Ising, one 16-neuron RBM), 200,000 samples,
            configs sgd-2k / current / adam-10k; ~15 CPU-minutes on one core.
            Full (no ``--quick``): 8 cases (N 16 and 20, strengths 1 and 2), 20,000 and
            200,000 samples, five configs; a few CPU-hours. ``--device cuda`` trains on the
            GPU (config precision, e.g. fused bf16) for the GPU timing column.
``sweep``   one factor at a time around a base config on one case, through the benchmark's
            loop :mod:`recovery_train` (chain schemes, exact model moments, penalties, ...).
``session`` the default 160-neuron synthetic session (4 areas) through the same steps.

``--configs`` takes names of :func:`configs` or one with overrides,
``<config>+<key>=<value>+...`` (e.g. ``adam-10k+lr=0.003``, ``sgd-2k+precision=bf16`` for the
fused kernels with ``--device cuda``; :func:`config_by_name`).

Run with ``OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/recovery.py table
--quick``; every subcommand takes ``--threads`` (torch threads, default 1), ``--seed``,
``--out``. Needs torch, numpy, xarray, pyyaml and spikerbm, not Snakemake.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import recovery_core as rc  # noqa: E402
import recovery_models as rm  # noqa: E402
from recovery_train import Variant  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------
# training configurations compared
# --------------------------------------------------------------------------------------------
#: keys of config.yaml's train section that TrainConfig takes (n_hidden is the size list)
_TRAIN_KEYS = ("n_updates", "n_checkpoints", "n_chains", "batch_size", "k", "lr", "optimizer",
               "lr_final", "decay_start", "momentum", "centered", "weight_std")


def yaml_train(name: str) -> dict:
    """The ``train`` section of ``config/<name>.yaml`` (sizes separately), as the repo has it."""
    t = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())["train"]
    return {k: t[k] for k in _TRAIN_KEYS if k in t}


#: Configs trained with the library's ``train`` (the benchmark's loop only for ``sweep``).
#: ``adam-*``: Adam in the centered parametrisation, lr 0.03 held for the first half, then
#: decayed geometrically to 1% of it (``train.optimizer``, ``train.lr_final``,
#: ``train.decay_start``; the opt-in before 2026-12-01); ``SGD``: the quick start's step before
#: that; ``current``: config.yaml's default recipe (Adam 0.003, the same decay).
ADAM = {"optimizer": "adam", "lr": 0.03, "lr_final": 0.01, "decay_start": 0.5}
SGD = {"optimizer": "sgd", "lr": 0.1, "lr_final": 1.0, "decay_start": 0.0}


def configs() -> dict[str, dict]:
    """name -> train keys (``current``/``paper``: config/config.yaml / config/vbn.yaml as the
    repo has them)."""
    cur = yaml_train("config")
    quick = {**cur, **ADAM, "n_updates": 10000}
    return {
        "current": cur,
        "paper": yaml_train("vbn"),
        "sgd-2k": {**cur, **SGD},
        "adam-2k": {**cur, **ADAM},
        "adam-10k": quick,
        "adam-10k-b2000": {**quick, "batch_size": 2000},
        "sgd-decay-10k": {**cur, "optimizer": "sgd", "n_updates": 10000, "lr": 1.0,
                          "lr_final": 0.01, "decay_start": 0.5},
    }


def config_by_name(name: str) -> dict:
    """A config of :func:`configs`, or one with overrides: ``<config>+<key>=<value>+...``
    (YAML values), e.g. ``adam-10k+lr=0.003`` or ``sgd-2k+momentum=0.9+n_updates=10000``."""
    base, *overrides = name.split("+")
    cfgs = configs()
    if base not in cfgs:
        raise SystemExit(f"unknown config {base!r} in {name!r}; known: {', '.join(cfgs)}")
    cfg = dict(cfgs[base])
    for item in overrides:
        key, sep, value = item.partition("=")
        keys = (*_TRAIN_KEYS, "precision")  # precision: float32 unless set (--device cuda)
        if not sep or key not in keys:
            raise SystemExit(f"config override {item!r} in {name!r}: expected KEY=VALUE with "
                             f"KEY one of {', '.join(keys)}")
        cfg[key] = yaml.safe_load(value)
    return cfg


# --------------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------------
def make_case(name: str) -> rm.Truth:
    """``ising<N>-<zero|positive>-s<strength>-seed<k>`` or ``rbm<N>-seed<k>``."""
    parts = name.split("-")
    kind = parts[0]
    seed = int(parts[-1].removeprefix("seed"))
    if kind.startswith("ising"):
        n = int(kind.removeprefix("ising"))
        strength = float(parts[2].removeprefix("s"))
        return rm.planted_ising(n=n, seed=seed, cross=parts[1], strength=strength, name=name)
    if kind.startswith("rbm"):
        return rm.planted_rbm_truth(n=int(kind.removeprefix("rbm")), seed=seed, name=name)
    raise ValueError(f"unknown case {name!r}")


QUICK_CASES = ["ising16-zero-s1-seed1", "ising16-positive-s1-seed2", "rbm16-seed1"]
FULL_CASES = QUICK_CASES + ["ising16-zero-s1-seed3", "ising16-zero-s2-seed4",
                            "ising16-positive-s2-seed5", "ising20-zero-s1-seed6",
                            "rbm20-seed2"]


# --------------------------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------------------------
def _row(label: str, sc: dict, extra: dict | None = None) -> dict:
    a = sc["area"]
    row = {"row": label,
           "H r": sc["H"]["r"], "H slope": sc["H"]["slope"],
           "J r": sc["J"]["r"], "J slope": sc["J"]["slope"], "J rms": sc["J"]["rms"],
           "Jw r": sc["J_within"]["r"], "Jw slope": sc["J_within"]["slope"],
           "Jx mean": sc["J_across"]["mean_est"], "Jx true": sc["J_across"]["mean_true"],
           "Jx rms": sc["J_across"]["rms"],
           "J3p r": sc["J3_planted"]["r"], "J3p slope": sc["J3_planted"]["slope"],
           "J3 null sd": sc["J3_null"]["rms"],
           "area max|z|": a["max_abs_z"], "area max|z| all3": a.get("max_abs_z_all3", np.nan),
           "cross": a["cross_est"], "cross true": a["cross_true"], "cross se": a["cross_se"]}
    row.update(extra or {})
    return row


def targets(row: dict) -> str:
    """Which of the issue's targets a row meets (J r/slope, H r, area, cross sign, J3)."""
    ok = []
    ok.append("J" if row["J r"] >= 0.95 and 0.85 <= row["J slope"] <= 1.15 else "-")
    ok.append("H" if row["H r"] >= 0.95 else "-")
    ok.append("A" if row["area max|z|"] <= 2.0 else "-")
    ok.append("S" if _sign_ok(row) else "-")
    ok.append("3" if row["J3p r"] >= 0.8 else "-")
    return "".join(ok)


def _sign_ok(row: dict) -> bool:
    """Right sign of the cross-area mean: within 2 floor s.e. of a zero truth; positive (and
    not significantly below the truth... i.e. > 0) for a positive truth."""
    if abs(row["cross true"]) < 1e-12:
        return abs(row["cross"]) <= 2 * row["cross se"]
    return np.sign(row["cross"]) == np.sign(row["cross true"])


def run_table(args: argparse.Namespace) -> dict:
    cases = args.cases or (QUICK_CASES if args.quick else FULL_CASES)
    sizes_list = args.samples or ([200000] if args.quick else [20000, 200000])
    names = args.configs or (["sgd-2k", "current", "adam-10k"] if args.quick else
                             ["sgd-2k", "current", "adam-10k", "adam-10k-b2000",
                              "sgd-decay-10k"])
    out = {"cases": {}, "meta": meta(args)}
    for case in cases:
        truth = make_case(case)
        for n_samples in sizes_list:
            ds = rc.sample_dataset(truth, n_samples=n_samples, seed=args.seed)
            fl = rc.noise_floor(ds)
            key = f"{case}/{n_samples}"
            rows = []
            for k, fit in fl.fits.items():
                rows.append(_row(f"floor ({'true family' if k == 'true' else 'all triplets'})",
                                 rc.score(rc.fit_estimate(fit), truth, fl.area_se,
                                          fl.area_se_all3)))
            for cname in names:
                res = rc.run_pipeline(ds, train_cfg=config_by_name(cname), sizes=args.sizes,
                                      seed=args.seed, device=args.device)
                info = {"selected": f"M={res.n_hidden}@{res.checkpoint}",
                        "train cpu s": sum(res.cpu_seconds.values()),
                        "train wall s": sum(res.train_seconds.values()),
                        "ms/update": {m: 1e3 * res.cpu_seconds[m] / res.n_updates
                                      for m in args.sizes},
                        "test LL gap": res.ll_gap(truth, ds)}
                sel = res.rbm()
                rows.append(_row(f"{cname}: selected", rc.score(
                    rc.extract(sel, truth.basis), truth, fl.area_se, fl.area_se_all3), info))
                rows.append(_row(f"{cname}: selected, exact Walsh", rc.score(
                    rc.extract(sel, truth.basis, method="exact"), truth, fl.area_se,
                    fl.area_se_all3)))
                if res.checkpoint != res.n_updates:
                    rows.append(_row(f"{cname}: last checkpoint", rc.score(
                        rc.extract(res.rbm(res.n_hidden), truth.basis), truth, fl.area_se,
                        fl.area_se_all3)))
            for r in rows:
                r["targets"] = targets(r)
            out["cases"][key] = {"rows": rows, "floor_seconds": fl.seconds,
                                 "truth": {"rates": truth.rates().tolist(),
                                           "params": truth.params}}
            print_rows(key, rows)
    return out


TABLE_COLS = ["row", "H r", "J r", "J slope", "Jw r", "Jx mean", "Jx true", "J3p r",
              "J3p slope", "J3 null sd", "area max|z|", "area max|z| all3", "cross", "cross se",
              "targets"]


def fmt(v: object) -> str:
    if isinstance(v, float):
        if np.isnan(v):
            return "-"
        return f"{v:+.4f}" if abs(v) < 0.01 and v != 0 else f"{v:.3f}"
    return str(v)


def print_rows(title: str, rows: list[dict], cols: list[str] | None = None) -> None:
    cols = cols or TABLE_COLS
    print(f"\n### {title}\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |")
    for r in rows:
        if "selected" in r:
            print(f"- {r['row']}: {r['selected']}, train CPU {r['train cpu s']:.0f} s "
                  f"(wall {r.get('train wall s', float('nan')):.0f} s), "
                  f"ms/update {({m: round(v, 2) for m, v in r['ms/update'].items()})}, "
                  f"test LL gap to truth {r['test LL gap']:.4f} nats")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------
# sweep: one factor at a time
# --------------------------------------------------------------------------------------------
#: base of the sweep: the current quick-start config run 10x longer (10^4 updates), one size
SWEEP_BASE = {"n_updates": 10000, "n_checkpoints": 20, "n_chains": 500, "batch_size": 500,
              "k": 10, "lr": 0.1, "centered": True, "weight_std": 0.01}
_DECAY = dict(lr_schedule="exp", lr_final=0.01, decay_start=0.5)


def sweep_factors() -> dict[str, tuple[dict, Variant, int | None]]:
    """name -> (config overrides, variant, hidden size or None for the base size)."""
    v = Variant()
    return {
        "base": ({}, v, None),
        "updates 2000": ({"n_updates": 2000}, v, None),
        "updates 40000": ({"n_updates": 40000}, v, None),
        "lr 0.03": ({"lr": 0.03}, v, None),
        "lr 0.3": ({"lr": 0.3}, v, None),
        "lr 1": ({"lr": 1.0}, v, None),
        "lr 3": ({"lr": 3.0}, v, None),
        "lr decay (exp, 2nd half)": ({}, Variant(**_DECAY), None),
        "k 1": ({"k": 1}, v, None),
        "k 50": ({"k": 50}, v, None),
        "chains 100": ({"n_chains": 100}, v, None),
        "chains 2000": ({"n_chains": 2000}, v, None),
        "restart chains (Rdm)": ({}, Variant(chains="restart"), None),
        "CD (chains from data)": ({}, Variant(chains="data"), None),
        "uncentered": ({"centered": False}, v, None),
        "M 16": ({}, v, 16),
        "M 100": ({}, v, 100),
        "weight_std 1e-4": ({"weight_std": 1e-4}, v, None),
        "weight_std 0.1": ({"weight_std": 0.1}, v, None),
        "L2 1e-3": ({}, Variant(l2=1e-3), None),
        "L1 1e-4": ({}, Variant(l1=1e-4), None),
        "batch 100": ({"batch_size": 100}, v, None),
        "batch 2000": ({"batch_size": 2000}, v, None),
        "exact negative phase": ({}, Variant(negative="exact"), None),
        "lr 1 + decay": ({"lr": 1.0}, Variant(**_DECAY), None),
        "lr 3 + decay": ({"lr": 3.0}, Variant(**_DECAY), None),
        "lr 1 + decay, 40000": ({"lr": 1.0, "n_updates": 40000}, Variant(**_DECAY), None),
        "Adam 0.01 + decay": ({"lr": 0.01}, Variant(optimizer="adam", **_DECAY), None),
        "Adam 0.03 + decay": ({"lr": 0.03}, Variant(optimizer="adam", **_DECAY), None),
        "Adam 0.03 + decay, M 16": ({"lr": 0.03}, Variant(optimizer="adam", **_DECAY), 16),
        "Adam 0.01 + decay, 40000": ({"lr": 0.01, "n_updates": 40000},
                                     Variant(optimizer="adam", **_DECAY), None),
        "Adam 0.03 + decay, 5000": ({"lr": 0.03, "n_updates": 5000},
                                    Variant(optimizer="adam", **_DECAY), None),
        "Adam 0.03 + decay, k 2": ({"lr": 0.03, "k": 2}, Variant(optimizer="adam", **_DECAY),
                                   None),
        "Adam 0.03 + decay, chains 100": ({"lr": 0.03, "n_chains": 100},
                                          Variant(optimizer="adam", **_DECAY), None),
        "Adam 0.03 + decay, L1 1e-4": ({"lr": 0.03}, Variant(optimizer="adam", l1=1e-4,
                                                             **_DECAY), None),
        "Adam 0.03 + decay, batch 2000": ({"lr": 0.03, "batch_size": 2000},
                                          Variant(optimizer="adam", **_DECAY), None),
        "Adam 0.1 + decay": ({"lr": 0.1}, Variant(optimizer="adam", **_DECAY), None),
    }


def run_sweep(args: argparse.Namespace) -> dict:
    truth = make_case(args.case)
    ds = rc.sample_dataset(truth, n_samples=args.samples, seed=args.seed)
    fl = rc.noise_floor(ds)
    factors = sweep_factors()
    names = args.factors or list(factors)
    rows = [_row(f"floor ({'true family' if k == 'true' else 'all triplets'})",
                 rc.score(rc.fit_estimate(f), truth, fl.area_se, fl.area_se_all3))
            for k, f in fl.fits.items()]
    for name in names:
        over, variant, m = factors[name]
        m = m or args.size
        res = rc.run_pipeline(ds, train_cfg={**SWEEP_BASE, **over}, sizes=[m], seed=args.seed,
                              variant=variant)
        info = {"selected": f"M={m}@{res.checkpoint}", "train cpu s": res.cpu_seconds[m],
                "ms/update": {m: 1e3 * res.cpu_seconds[m] / res.n_updates},
                "test LL gap": res.ll_gap(truth, ds), "variant": variant.label(),
                "overrides": over}
        rows.append(_row(name, rc.score(rc.extract(res.rbm(), truth.basis), truth, fl.area_se,
                                        fl.area_se_all3), info))
        hu = rc.hidden_unit_area_contributions(res.rbm(), truth.areas)
        rows[-1]["unit cross contributions"] = hu["cross"].tolist()
        print(f"{name}: J r {rows[-1]['J r']:.3f} slope {rows[-1]['J slope']:.2f} cross "
              f"{rows[-1]['cross']:+.4f} LL gap {rows[-1]['test LL gap']:.4f}", flush=True)
    for r in rows:
        r["targets"] = targets(r)
    key = f"{args.case}/{args.samples}/M{args.size}"
    print_rows(key, rows, TABLE_COLS + ["test LL gap", "train cpu s"])
    return {"sweep": {key: rows}, "meta": meta(args)}


# --------------------------------------------------------------------------------------------
# session: the default 160-neuron synthetic session
# --------------------------------------------------------------------------------------------
def run_session(args: argparse.Namespace) -> dict:
    import recovery_session as rs

    over = {k: v for k, v in (("n_neurons", args.neurons), ("n_areas", args.areas),
                              ("duration_s", args.duration)) if v}
    sess = rs.default_session(overrides=over)
    lik = yaml.safe_load((ROOT / "config" / "vbn.yaml").read_text())["likelihood"] \
        if args.paper_likelihood else None
    out = {"session": {}, "meta": meta(args)}
    rows = []
    for cname in args.configs or ["sgd-2k", "current"]:
        train_cfg, variant = config_by_name(cname), None
        if args.updates:
            train_cfg = {**train_cfg, "n_updates": args.updates}
        res = rs.run_session(sess, train_cfg=train_cfg, sizes=args.sizes, variant=variant,
                             lik=lik, device=args.device)
        out["session"][cname] = res
        for lbl in ("selected", "last"):
            sc = res[lbl]
            a = sc["area"]
            rows.append({"row": f"{cname}: {lbl}", "model": f"M={res['n_hidden']}@"
                         f"{res['checkpoint'] if lbl == 'selected' else 'last'}",
                         "H r": sc["H"]["r"], "H slope": sc["H"]["slope"],
                         "J r": sc["J"]["r"], "J slope": sc["J"]["slope"],
                         "Jw r": sc["J_within"]["r"], "Jw slope": sc["J_within"]["slope"],
                         "within": a["within_est"], "within true": a["within_true"],
                         "cross": a["cross_est"], "cross min": a["cross_est_min"],
                         "cross max": a["cross_est_max"], "cross true": a["cross_true"],
                         "test LL": max(max(v) for v in res["ll_test"].values()),
                         "ms/update": res["ms_per_update"]})
    print_rows("default synthetic session (160 neurons, 4 areas)", rows,
               ["row", "model", "H r", "H slope", "J r", "J slope", "Jw r", "within",
                "within true", "cross", "cross min", "cross max", "cross true", "test LL"])
    out["rows"] = rows
    out["truth_test_ll"] = rs.truth_test_ll(sess)
    print(f"truth test LL {out['truth_test_ll']:.4f}")
    return out


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def meta(args: argparse.Namespace) -> dict:
    import subprocess

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"date": dt.datetime.now().isoformat(timespec="seconds"), "argv": sys.argv,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "commit": commit,
            "args": {k: v for k, v in vars(args).items() if k != "func"}}


def _json_default(x: object) -> object:
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd")
    p.add_argument("--quick", action="store_true", help="table --quick (default subcommand)")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--out", type=Path, default=None, help="JSON output")
        q.add_argument("--threads", type=int, default=1)
        q.add_argument("--seed", type=int, default=1)

    t = sub.add_parser("table", help="the benchmark table")
    common(t)
    t.add_argument("--quick", action="store_true")
    t.add_argument("--cases", nargs="*")
    t.add_argument("--samples", nargs="*", type=int)
    t.add_argument("--configs", nargs="*")
    t.add_argument("--sizes", nargs="*", type=int, default=[16, 48])
    t.add_argument("--device", default="cpu", help="training device (cpu | cuda)")
    t.set_defaults(func=run_table)

    w = sub.add_parser("sweep", help="one factor at a time around the base config")
    common(w)
    w.add_argument("--case", default="ising16-zero-s1-seed1")
    w.add_argument("--samples", type=int, default=200000)
    w.add_argument("--size", type=int, default=48)
    w.add_argument("--factors", nargs="*", help=f"subset of: {', '.join(sweep_factors())}")
    w.set_defaults(func=run_sweep)

    q = sub.add_parser("session", help="the default 160-neuron synthetic session")
    common(q)
    q.add_argument("--configs", nargs="*")
    q.add_argument("--sizes", nargs="*", type=int, default=[16, 48])
    q.add_argument("--updates", type=int, default=0, help="override n_updates")
    q.add_argument("--neurons", type=int, default=0, help="override synthetic n_neurons")
    q.add_argument("--areas", type=int, default=0, help="override synthetic n_areas")
    q.add_argument("--duration", type=float, default=0, help="override synthetic duration_s")
    q.add_argument("--paper-likelihood", action="store_true",
                   help="AIS settings of config/vbn.yaml instead of config/config.yaml")
    q.add_argument("--device", default="cpu")
    q.set_defaults(func=run_session)

    args = p.parse_args(argv)
    if args.cmd is None:
        args = p.parse_args(["table", "--quick"] if args.quick else ["table"])
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out = args.func(args)
    out["meta"]["wall_seconds"] = time.perf_counter() - t0
    print(f"\ntotal wall time {out['meta']['wall_seconds']:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1, default=_json_default))


if __name__ == "__main__":
    main()
