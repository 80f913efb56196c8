"""Time Snakemake's DAG build (`snakemake -n`) at the scale of the whole Allen dataset.

Copies the workflow into a scratch folder, writes a sessions sheet of VBN-like rows (``source:
vbn``; the dry run needs neither allensdk nor data: ``vbn_extract`` has no input files) and a
config (config/vbn.yaml + ``train.n_hidden`` with the requested number of sizes), then times
``snakemake -n`` wall-clock (the whole command: start-up, parsing, validation, DAG) and prints
a markdown row for docs/benchmarks.md.

    python benchmarks/dag_scale.py                       # 153 sessions x 8 hidden sizes
    python benchmarks/dag_scale.py --sessions 20 --hidden 2 --repeats 1
    python benchmarks/dag_scale.py --profile slurm       # the cluster dry run (groups applied)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW_PARTS = ("workflow", "scripts", "config", "profiles", "envs")
#: Hidden sizes used at scale (the first `--hidden` of them).
HIDDEN_SIZES = (64, 128, 256, 384, 512, 768, 1024, 1536)
FIRST_VBN_ID = 1_043_752_325  # VBN ecephys session ids are ten-digit integers like this one


def sessions_sheet(n_sessions: int) -> str:
    """A sessions sheet of ``n_sessions`` VBN rows with distinct ten-digit ecephys ids."""
    if n_sessions < 1:
        raise ValueError(f"n_sessions={n_sessions}: need at least one session")
    rows = ["session_id\tsource\tparams"]
    for k in range(n_sessions):
        eid = FIRST_VBN_ID + 7919 * k
        rows.append(f"vbn-{eid}\tvbn\tecephys_session_id={eid};epochs=active")
    return "\n".join(rows) + "\n"


def write_scale_workflow(dest: Path, *, n_sessions: int, n_hidden: int) -> Path:
    """Copy the workflow into ``dest`` with the scale sheet and config; return the config path."""
    if not 1 <= n_hidden <= len(HIDDEN_SIZES):
        raise ValueError(f"n_hidden={n_hidden}: choose 1..{len(HIDDEN_SIZES)} hidden sizes")
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_PARTS:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest / name)
    (dest / "config" / "sessions-scale.tsv").write_text(sessions_sheet(n_sessions))
    cfg = yaml.safe_load((REPO / "config" / "vbn.yaml").read_text())
    cfg["sessions"] = "config/sessions-scale.tsv"
    cfg["train"]["n_hidden"] = list(HIDDEN_SIZES[:n_hidden])
    path = dest / "config" / "scale.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dry_run(wf: Path, config: Path, *, profile: str | None) -> tuple[float, int, str]:
    """Run ``snakemake -n`` once in ``wf``; return (seconds, total jobs, stdout)."""
    seconds, _, jobs, out = timed_dry_run(wf, config, profile=profile)
    return seconds, jobs, out


def timed_dry_run(wf: Path, config: Path, *,
                  profile: str | None) -> tuple[float, float, int, str]:
    """Run ``snakemake -n`` once in ``wf``; return (wall s, CPU s, total jobs, stdout)."""
    cmd = [SNAKEMAKE, "-n", "--configfile", str(config)]
    if profile == "slurm":
        cmd += ["--profile", "profiles/slurm", "--workflow-profile", "none"]
    else:
        cmd += ["--cores", "1"]
    env = dict(os.environ, USER=os.environ.get("USER", "root"))
    cpu0, t0 = _children_cpu_s(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=wf, capture_output=True, text=True, env=env)
    seconds, cpu = time.perf_counter() - t0, _children_cpu_s() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake -n failed in {wf}:\n{proc.stderr[-3000:]}")
    m = re.search(r"^total\s+(\d+)\s*$", proc.stdout, re.M)
    if m is None:
        raise RuntimeError(f"no job total in the dry-run output:\n{proc.stdout[-2000:]}")
    return seconds, cpu, int(m[1]), proc.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=153)
    p.add_argument("--hidden", type=int, default=8, help="number of hidden sizes (1-8)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", choices=["default", "slurm"], default="default",
                   help="default: plain `snakemake -n`; slurm: with the cluster profile")
    p.add_argument("--keep", type=Path, default=None,
                   help="build the scratch workflow here and keep it (default: a temp folder)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="dag_scale_") as tmp:
        wf = args.keep or Path(tmp) / "wf"
        config = write_scale_workflow(wf, n_sessions=args.sessions, n_hidden=args.hidden)
        times, cpus, jobs = [], [], 0
        for _ in range(args.repeats):
            seconds, cpu, jobs, _ = timed_dry_run(wf, config, profile=args.profile)
            times.append(seconds)
            cpus.append(cpu)
            print(f"snakemake -n: {seconds:.2f} s wall, {cpu:.2f} s CPU, {jobs} jobs",
                  file=sys.stderr)
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0]
    print("| date | machine | profile | sessions x sizes | jobs | wall s (median of "
          f"{args.repeats}) | min | CPU s (median) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {dt.date.today()} | {cpu}, {os.cpu_count()} cores, load {load:.1f} | "
          f"{args.profile} | {args.sessions} x {args.hidden} | {jobs} | "
          f"{statistics.median(times):.2f} | {min(times):.2f} | {statistics.median(cpus):.2f} |")


if __name__ == "__main__":
    main()
