"""The real example (config/steinmetz.yaml) end to end through Snakemake, timed stage by stage.

Runs (unless ``--collect-only``) the real workflow on the committed Steinmetz et al. (2019)
session, then reads what the run wrote: the wall time of every job from Snakemake's
``benchmark:`` files (``{results_dir}/benchmarks/{rule}/...tsv``, column ``s``), summed per rule,
and the key results (selected size, training stop, test log-likelihood vs the independent-site
floor, scores, findings). Prints a markdown table with the device, the date and the load.

    # one GPU (CUDA torch in .venv; the lead's command on the device machine):
    python benchmarks/real_example.py --cores 16
    # 2 CPU cores (the quick-start machine; `gpu=2` lets two CPU jobs train at once):
    python benchmarks/real_example.py --cores 2 --resources gpu=2
    # only read an existing run:
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


def device_name() -> str:
    try:
        import torch
    except ImportError:
        return "unknown (no torch)"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores " \
           f"(torch {torch.__version__})"


def stage_seconds(results: Path) -> dict[str, tuple[float, int]]:
    """Per rule: (summed wall seconds of its jobs, number of jobs), from the benchmark files."""
    out: dict[str, list[float]] = defaultdict(list)
    for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(results / "benchmarks").parts[0]
        with open(tsv) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        out[rule] += [float(r["s"]) for r in rows]
    return {rule: (sum(v), len(v)) for rule, v in out.items()}


def session_results(results: Path, session: str) -> dict[str, str]:
    res = results / session
    sel = xr.open_dataset(res / "selected.nc")
    stats = xr.open_dataset(res / "statistics.nc")
    ll = xr.open_dataset(res / "loglik.nc")
    model = xr.open_dataset(res / f"hidden~{int(sel.attrs['n_hidden'])}" / "model.nc")
    with open(res / "summary.tsv") as f:
        found = [r for r in csv.DictReader(f, delimiter="\t") if r["artifact"] == "finding"]
    a = sel.attrs
    return {
        "neurons x train/test bins": f"{ll.attrs['n_neurons']} x {ll.attrs['n_train']}/"
                                     f"{ll.attrs['n_test']}",
        "hidden sizes (test LL at best checkpoint)": ", ".join(
            f"{int(h)}: {float(t):.3f}" for h, t in zip(sel["n_hidden"].values,
                                                         sel["ll_test"].values, strict=True)),
        "selected size": str(a["n_hidden"]),
        "selected checkpoint / updates done": f"{a['checkpoint']} / "
                                              f"{model.attrs.get('n_updates_done', 'n/a')}",
        "stop reason (still improving)": f"{model.attrs.get('stop_reason', 'n/a')} "
                                         f"({model.attrs.get('still_improving', 'n/a')})",
        "test LL vs floor (nats/sample)": f"{a['ll_test']:.3f} vs {a['floor_test']:.3f} "
                                          f"({a['ll_test'] - a['floor_test']:+.3f}, log Z "
                                          f"{a['log_z_method']})",
        "score covariance / 3-point": f"{stats.attrs['score_covariance']:.3g} / "
                                      f"{stats.attrs['score_corr3']:.3g}",
        "r(train, test) covariance / 3-point": f"{stats.attrs['covariance_r_train_test']:.3g} / "
                                               f"{stats.attrs['corr3_r_train_test']:.3g}",
        "equilibrated": str(stats.attrs["equilibrated"]),
        "findings (problem, caution)": ", ".join(
            f"{r['quantity']} ({r['value']})" for r in found if r["value"] != "ok") or "none",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configfile", default="config/steinmetz.yaml")
    p.add_argument("--cores", default="all")
    p.add_argument("--resources", nargs="*", default=[],
                   help="passed to snakemake --resources (e.g. gpu=2 on a CPU-only machine)")
    p.add_argument("--collect-only", action="store_true", help="do not run, only read")
    args = p.parse_args()
    cfg = yaml.safe_load((REPO / args.configfile).read_text())
    results = REPO / cfg["results_dir"]
    wall = None
    load = os.getloadavg()
    if not args.collect_only:
        cmd = [str(Path(sys.executable).with_name("snakemake")), "--configfile", args.configfile,
               "--cores", str(args.cores)]
        if args.resources:
            cmd += ["--resources", *args.resources]
        print("running:", " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True)
        wall = time.perf_counter() - t0
        load = os.getloadavg()
    sessions = [r["session_id"] for r in csv.DictReader(
        open(REPO / cfg["sessions"]), delimiter="\t") if not r["session_id"].startswith("#")]
    print(f"\n{dt.date.today()}, {device_name()}, load average {load[0]:.1f} / {load[1]:.1f} / "
          f"{load[2]:.1f} (1/5/15 min), config {args.configfile}\n")
    print("| stage (rule) | jobs | wall s (sum over jobs) |\n|---|---|---|")
    seconds = stage_seconds(results)
    for rule in [*RULES, *sorted(set(seconds) - set(RULES))]:
        if rule in seconds:
            print(f"| {rule} | {seconds[rule][1]} | {seconds[rule][0]:.1f} |")
    print(f"| sum of jobs | | {sum(s for s, _ in seconds.values()):.1f} |")
    if wall is not None:
        print(f"| snakemake wall time | | {wall:.1f} |")
    for session in sessions:
        print(f"\n{session}:\n\n| quantity | value |\n|---|---|")
        for key, value in session_results(results, session).items():
            print(f"| {key} | {value} |")


if __name__ == "__main__":
    main()
