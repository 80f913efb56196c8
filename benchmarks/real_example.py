"""The real example (config/steinmetz.yaml) end to end, timed stage by stage.

Two ways, same stages and settings:

* through Snakemake (default): runs the workflow on the committed Steinmetz et al. (2019)
  session, then reads the wall time of every job from Snakemake's ``benchmark:`` files
  (``{results_dir}/benchmarks/{rule}/...tsv``, column ``s``), summed per rule;
* ``--library``: no Snakemake (for a GPU machine without it): the library calls the workflow's
  scripts make (``scripts/*.py``), with the merged config (``config/config.yaml`` under the
  ``--configfile``), the same derived seeds and the same inputs, each stage timed in process
  (CUDA synchronised), artifacts written under ``--out``.

Both print a markdown table with the device, the date and the load average, then the key
results (selected size, training stop, test log-likelihood vs the independent-site floor,
scores) and every finding of ``spikerbm.findings``.

    # 2 CPU cores, the README command:
    python benchmarks/real_example.py --cores 2
    # one GPU (CUDA torch in the venv; no Snakemake needed):
    python benchmarks/real_example.py --library --device cuda --out "$OUT/real"
    # the same, trained until the online test log-likelihood levels off:
    python benchmarks/real_example.py --library --device cuda --out "$OUT/long" \\
        --set train.n_updates=20000
    # training recipes compared: only train, log-likelihoods and selection (per size: exact
    # or AIS peak, online best update, online_disagrees):
    python benchmarks/real_example.py --library --device cpu --out /tmp/x \
        --stop-after select_model --set 'train.n_hidden=[16]' train.optimizer=adam train.lr=0.003
    # only read an existing Snakemake run:
    python benchmarks/real_example.py --collect-only
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import xarray as xr
import yaml

REPO = Path(__file__).resolve().parents[1]
#: Rules in pipeline order (README stages).
RULES = ("import_raster", "train", "loglik", "select_model", "statistics", "couplings",
         "dynamics", "fig_loglik", "fig_statistics", "fig_couplings", "fig_dynamics", "summary",
         "report_tables")


def device_name(device: str = "auto") -> str:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return (f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores "
            f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")


def merged_config(configfile: str) -> dict:
    """``config/config.yaml`` with ``configfile`` merged over it, key by key (as Snakemake's
    ``--configfile`` does; config.yaml states every default of the schema)."""
    def merge(base: dict, over: dict) -> dict:
        return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and isinstance(
            base.get(k), dict) else v for k, v in over.items()}}

    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return merge(base, yaml.safe_load((REPO / configfile).read_text()))


def sessions_of(cfg: dict) -> list[dict[str, str]]:
    with open(REPO / cfg["sessions"]) as f:
        return [r for r in csv.DictReader(f, delimiter="\t")
                if not r["session_id"].startswith("#")]


def stage_seconds(results: Path) -> dict[str, tuple[float, int]]:
    """Per rule: (summed wall seconds of its jobs, number of jobs), from the benchmark files."""
    out: dict[str, list[float]] = defaultdict(list)
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(results / "benchmarks").parts[0]
        with open(tsv) as f:
            out[rule] += [float(r["s"]) for r in csv.DictReader(f, delimiter="\t")]
    return {rule: (sum(v), len(v)) for rule, v in out.items()}


def run_library(cfg: dict, session: dict[str, str], out: Path, device_arg: str,
                stop_after: str = "") -> dict[str, tuple[float, int]]:
    """Every stage of one raster session through the library, as scripts/*.py call it (same
    params, seeds and inputs); artifacts in the workflow's layout under ``out``; with
    ``stop_after="select_model"`` only training, log-likelihoods and selection (the training
    recipe comparison of docs/benchmarks.md). Returns the seconds per stage."""
    from spikerbm import findings, io, report
    from spikerbm.areas import areas_of
    from spikerbm.binarize import split_arrays, validate_raster
    from spikerbm.couplings import compute_couplings
    from spikerbm.dynamics import dynamics_dataset
    from spikerbm.likelihood import checkpoint_loglik, combine_loglik
    from spikerbm.provenance import derive_seed
    from spikerbm.rbm import rbm_from_dataset, resolve_device
    from spikerbm.selection import select_model, selected_dataset
    from spikerbm.statistics import compute_statistics, gibbs_settings
    from spikerbm.training import TrainConfig, train_to_files

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from stage_timer import StageTimer

    sid, base_seed = session["session_id"], cfg["seed"]
    device = resolve_device(device_arg)
    res = out / sid
    timed = StageTimer(device)

    path = REPO / dict(kv.split("=", 1) for kv in session["params"].split(";"))["path"]
    binz = cfg["binarize"]
    raster = timed("import_raster", validate_raster, io.read_netcdf(path, raw=True),
                   n_blocks=binz["n_blocks"], n_test_blocks=binz["n_test_blocks"],
                   seed=derive_seed(base_seed, "binarize", sid), session_id=sid)
    splits = split_arrays(raster)
    coords = {k: raster[k].values for k in ("unit_id", "area")}
    train_section = {k: v for k, v in cfg["train"].items() if k != "n_hidden"}
    models, lls = {}, []
    for n_hidden in cfg["train"]["n_hidden"]:
        tcfg = TrainConfig.from_config({**train_section, "n_hidden": n_hidden},
                                       n_hidden=n_hidden, device=device.type)
        d = res / f"hidden~{n_hidden}"
        d.mkdir(parents=True, exist_ok=True)
        models[n_hidden] = timed(
            "train", train_to_files, splits["train"], test_data=splits["test"], cfg=tcfg,
            seed=derive_seed(base_seed, "train", sid, n_hidden), model_path=d / "model.nc",
            resume_path=d / "resume.nc", neuron_coords=coords)
        lls.append(timed("loglik", checkpoint_loglik, models[n_hidden], splits["train"],
                         splits["test"], seed=derive_seed(base_seed, "loglik", sid, n_hidden),
                         device=device, **cfg["likelihood"]))
    ll = combine_loglik(lls)
    selection = timed("select_model", select_model, ll)
    n_hidden = int(selection.attrs["n_hidden"])
    selected = selected_dataset(models[n_hidden], selection, rate_hz=raster["rate_hz"].values)
    io.write_netcdf(ll, res / "loglik.nc")
    io.write_netcdf(selected, res / "selected.nc")
    if stop_after == "select_model":
        return {stage: (sec, timed.calls[stage]) for stage, sec in timed.seconds.items()}
    stats = timed("statistics", compute_statistics, rbm_from_dataset(selected, device=device),
                  train=splits["train"], test=splits["test"],
                  seed=derive_seed(base_seed, "statistics", sid, n_hidden),
                  neuron_coords=coords, **gibbs_settings(cfg["statistics"]))
    coup = timed("couplings", compute_couplings, selected, areas=areas_of(selected, raster),
                 model=models[n_hidden], truth=None, device=device,
                 seed=derive_seed(base_seed, "couplings", sid, n_hidden), **cfg["couplings"])
    dyn = timed("dynamics", dynamics_dataset, raster, selected, truth=None, device=device,
                seed=derive_seed(base_seed, "dynamics", sid, n_hidden), **cfg["dynamics"])
    for name, ds in (("statistics", stats), ("couplings", coup), ("dynamics", dyn)):
        io.write_netcdf(ds, res / f"{name}.nc")
    artifacts = {"selected": selection, "loglik": ll, "statistics": stats, "couplings": coup,
                 "dynamics": dyn, "model": models[n_hidden]}
    found = findings.session_findings(
        {**artifacts, "models": {h: m.attrs for h, m in models.items()}})
    table = report.session_summary({k: v.attrs for k, v in artifacts.items()}, found)
    io.write_text(table.to_csv(sep="\t", index=False), res / "summary.tsv")
    return {stage: (sec, timed.calls[stage]) for stage, sec in timed.seconds.items()}


def selection_results(res: Path) -> dict[str, str]:
    """Per size: test LL at the best checkpoint, and the exact/AIS peak against the online one
    (``model.nc`` ``best_update``), stop reason; the selection's ``online_disagrees``."""
    sel = xr.open_dataset(res / "selected.nc")
    ll = xr.open_dataset(res / "loglik.nc")
    out = {}
    for h in sel["n_hidden"].values:
        m = xr.open_dataset(res / f"hidden~{int(h)}" / "model.nc").attrs
        t = ll["ll_test"].sel(n_hidden=h)
        ok = t.notnull()
        c = t["checkpoint"].values[ok.values]
        v, s = t.values[ok.values], ll["ll_test_std"].sel(n_hidden=h).values[ok.values]
        best = int(v.argmax())
        out[f"M = {int(h)}"] = (
            f"best {v[best]:.3f} +- {s[best]:.2g} at {int(c[best])}; last {v[-1]:.3f} at "
            f"{int(c[-1])}; online best {m.get('best_update')}, {m.get('stop_reason')} at "
            f"{m.get('n_updates_done')} (still improving {m.get('still_improving')}); curve "
            + ", ".join(f"{int(a)}:{b:.2f}" for a, b in zip(c, v, strict=True)))
    a = sel.attrs
    out["selected (tied with)"] = f"{a['n_hidden']} ({a.get('tied_with') or 'none'})"
    out["selected test LL vs floor"] = (f"{a['ll_test']:.3f} +- {a['ll_test_std']:.2g} vs "
                                        f"{a['floor_test']:.3f}")
    out["online_disagrees"] = str(a.get("online_disagrees", "")) or "none"
    return out


def session_results(res: Path) -> dict[str, str]:
    sel = xr.open_dataset(res / "selected.nc")
    stats = xr.open_dataset(res / "statistics.nc")
    ll = xr.open_dataset(res / "loglik.nc")
    a = sel.attrs
    model = xr.open_dataset(res / f"hidden~{int(a['n_hidden'])}" / "model.nc")
    with open(res / "summary.tsv") as f:
        found = [r for r in csv.DictReader(f, delimiter="\t") if r["artifact"] == "finding"]
    m = model.attrs
    return {
        "neurons x train/test bins": f"{ll.attrs['n_neurons']} x {ll.attrs['n_train']}/"
                                     f"{ll.attrs['n_test']}",
        "hidden sizes: test LL at best checkpoint (stop reason, updates done)": "; ".join(
            f"{int(h)}: {float(t):.3f} at {int(c)} ({r}, {int(u)})" for h, t, c, r, u in zip(
                sel["n_hidden"].values, sel["ll_test"].values, sel["checkpoint"].values,
                sel["stop_reason"].values, sel["n_updates_done"].values, strict=True)),
        "selected size (tied with)": f"{a['n_hidden']} ({a.get('tied_with') or 'none'})",
        "selected checkpoint / best online update / updates done": (
            f"{a['checkpoint']} / {m.get('best_update', 'n/a')} / "
            f"{m.get('n_updates_done', 'n/a')}"),
        "stop reason (still improving)": f"{m.get('stop_reason', 'n/a')} "
                                         f"({m.get('still_improving', 'n/a')})",
        "test LL vs floor (nats/sample)": (
            f"{a['ll_test']:.3f} +- {a['ll_test_std']:.2g} vs {a['floor_test']:.3f} "
            f"({a['ll_test'] - a['floor_test']:+.3f}, log Z {a['log_z_method']})"),
        "score covariance / 3-point": f"{stats.attrs['score_covariance']:.3g} / "
                                      f"{stats.attrs['score_corr3']:.3g}",
        "r(train, test) covariance / 3-point": f"{stats.attrs['covariance_r_train_test']:.3g} / "
                                               f"{stats.attrs['corr3_r_train_test']:.3g}",
        "r(train, generated) covariance / 3-point": (
            f"{stats.attrs['covariance_r_train_generated']:.3g} / "
            f"{stats.attrs['corr3_r_train_generated']:.3g}"),
        "equilibrated": str(stats.attrs["equilibrated"]),
        **{f"finding {i + 1} [{r['value']}] {r['quantity']}": r["description"]
           for i, r in enumerate(found)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configfile", default="config/steinmetz.yaml")
    p.add_argument("--cores", default="all")
    p.add_argument("--resources", nargs="*", default=[],
                   help="passed to snakemake --resources (e.g. gpu=2 on a CPU-only machine)")
    p.add_argument("--collect-only", action="store_true", help="do not run, only read")
    p.add_argument("--library", action="store_true",
                   help="run the stages through the library, without Snakemake")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="--library only (the workflow takes the config's device)")
    p.add_argument("--out", default=None, help="--library only: artifact folder "
                   "(default: the config's results_dir + '-library')")
    p.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                   help="--library only: override config values (YAML values), e.g. "
                   "train.n_updates=20000 'train.n_hidden=[16, 32, 64, 128]'")
    p.add_argument("--stop-after", default="", choices=["", "select_model"],
                   help="--library only: stop after selection (training recipe comparisons)")
    args = p.parse_args()
    if args.set and not args.library:
        p.error("--set needs --library (with Snakemake, use --configfile)")
    cfg = merged_config(args.configfile)
    for item in args.set:
        key, sep, value = item.partition("=")
        section, _, name = key.partition(".")
        if not sep or section not in cfg or not isinstance(cfg[section], dict) or not name:
            p.error(f"--set {item!r}: expected SECTION.KEY=VALUE with a config section, "
                    f"e.g. train.n_updates=20000")
        cfg[section][name] = yaml.safe_load(value)
    sessions = sessions_of(cfg)
    wall, load0 = None, os.getloadavg()
    if args.library:
        results = Path(args.out or REPO / f"{cfg['results_dir']}-library")
        t0 = time.perf_counter()
        seconds: dict[str, tuple[float, int]] = {}
        for session in sessions:
            for stage, (sec, n) in run_library(cfg, session, results, args.device,
                                               args.stop_after).items():
                s0, n0 = seconds.get(stage, (0.0, 0))
                seconds[stage] = (s0 + sec, n0 + n)
        wall = time.perf_counter() - t0
    else:
        results = REPO / cfg["results_dir"]
        if not args.collect_only:
            cmd = [str(Path(sys.executable).with_name("snakemake")), "--configfile",
                   args.configfile, "--cores", str(args.cores)]
            if args.resources:
                cmd += ["--resources", *args.resources]
            print("running:", " ".join(cmd), flush=True)
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=REPO, check=True)
            wall = time.perf_counter() - t0
        seconds = stage_seconds(results)
    load = os.getloadavg()
    how = "library, no Snakemake" if args.library else "Snakemake"
    print(f"\n{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
          f"{device_name(args.device if args.library else cfg['device'])}, {how}, config "
          f"{args.configfile} {' '.join(args.set)}; load average (1/5/15 min) before "
          f"{load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, after "
          f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}\n")
    print("| stage (rule) | jobs | wall s (sum over jobs) |\n|---|---|---|")
    for rule in [*RULES, *sorted(set(seconds) - set(RULES))]:
        if rule in seconds:
            print(f"| {rule} | {seconds[rule][1]} | {seconds[rule][0]:.1f} |")
    print(f"| sum of jobs | | {sum(s for s, _ in seconds.values()):.1f} |")
    if wall is not None:
        print(f"| wall time, end to end | | {wall:.1f} |")
    for session in sessions:
        print(f"\n{session['session_id']}:\n\n| quantity | value |\n|---|---|")
        what = selection_results if args.stop_after else session_results
        for key, value in what(results / session["session_id"]).items():
            print(f"| {key} | {value} |")


if __name__ == "__main__":
    main()
