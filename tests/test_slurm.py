"""The workflow (every rule, tiny scale) on a real single-node SLURM cluster equals a local
run, file by file.

tests/cluster/start_slurm.sh installs slurm-wlm + munge (apt) if missing, writes
/etc/slurm/slurm.conf and starts munged, slurmctld and slurmd; the finalizer runs
tests/cluster/stop_slurm.sh, which stops only what the start script started. The workflow runs
with the repository's profiles/slurm and only the overrides this local cluster needs (below).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import REPO, SNAKEMAKE, copy_workflow

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

CLUSTER = REPO / "tests" / "cluster"
#: Overrides on top of `--profile profiles/slurm --workflow-profile none` (the README command):
#: poll after 2 s instead of the plugin's 40 s (a local node has no queue wait), and keep the
#: SLURM logs of successful jobs so the test can read which jobs ran in which SLURM job.
LOCAL_CLUSTER_ARGS = ("--slurm-init-seconds-before-status-checks", "2",
                      "--slurm-keep-successful-logs")
#: Provenance attributes that legitimately differ between two runs: the creation time. (The
#: commit is compared without its "-dirty" suffix: editing the checkout during the test flips it.)
VOLATILE_ATTRS = {"created_utc"}


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the SLURM test starts system daemons and needs root"
    installed = subprocess.run(["dpkg", "-s", "slurm-wlm", "munge"], capture_output=True)
    if installed.returncode != 0 and shutil.which("apt-get") is None:
        return "slurm-wlm/munge are not installed and there is no apt-get to install them"
    return None


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running single-node SLURM cluster; stopped again after the module's tests."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    env = dict(os.environ, SLURM_LOCAL_BASE=str(tmp_path_factory.mktemp("slurm-state")))
    start = subprocess.run(["bash", str(CLUSTER / "start_slurm.sh")], capture_output=True,
                           text=True, env=env, timeout=600)
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        assert "idle" in start.stdout, start.stdout
        yield env
    finally:
        stop = subprocess.run(["bash", str(CLUSTER / "stop_slurm.sh")], capture_output=True,
                              text=True, env=env, timeout=120)
        assert stop.returncode == 0, stop.stdout + stop.stderr


def _run(cwd: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    env = dict(env or os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               USER=os.environ.get("USER", "root"))  # the plugin needs $USER (unset here)
    return subprocess.Popen([SNAKEMAKE, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


#: Pending reasons that never resolve on a one-node cluster (the job does not fit the node).
STUCK_REASONS = {"PartitionConfig", "BadConstraints", "PartitionNodeLimit", "ReqNodeNotAvail",
                 "PartitionTimeLimit", "InvalidAccount", "InvalidQOS"}


def _watch(run: subprocess.Popen, env: dict, *, limit_s: float = 900) -> dict[str, int]:
    """Wait for ``run``; fail fast (and stop it) if a SLURM job can never start. Returns the CPUs
    each SLURM job asked for, as seen while it was queued or running (finished jobs leave squeue
    MinJobAge = 300 s after they end)."""
    start = time.monotonic()
    cpus: dict[str, int] = {}
    while run.poll() is None:
        queue = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%T|%r|%C"],
                               capture_output=True, text=True, env=env)
        rows = [line.split("|") for line in queue.stdout.split()]
        cpus.update({job: int(n) for job, _, _, n in rows})
        stuck = [job for job, state, reason, _ in rows
                 if state == "PENDING" and reason in STUCK_REASONS]
        if stuck or time.monotonic() - start > limit_s:
            run.kill()
            subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
            pytest.fail(f"SLURM jobs cannot start ({stuck}) or the run took > {limit_s} s; "
                        "see `scontrol show job <id>` and the node's CPUs/memory/gres")
        time.sleep(5)
    return cpus


def _slurm_job_rules(wf: Path) -> dict[int, set[str]]:
    """{SLURM job id: rules that finished inside it}, from the kept per-job SLURM logs."""
    jobs: dict[int, set[str]] = {}
    for log in (wf / ".snakemake" / "slurm_logs").rglob("*.log"):
        rules = set(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", log.read_text()))
        jobs[int(log.stem)] = rules
    return jobs


def _assert_same_netcdf(a: Path, b: Path) -> None:
    da, db = xr.open_dataset(a), xr.open_dataset(b)
    try:
        assert set(da.variables) == set(db.variables), a.name
        for name in da.variables:
            x, y = da[name].values, db[name].values
            assert x.dtype == y.dtype and x.shape == y.shape, f"{a}: {name}"
            if x.dtype.kind in "fc":
                assert np.array_equal(x, y, equal_nan=True), f"{a}: {name} differs"
            else:
                assert np.array_equal(x, y), f"{a}: {name} differs"
        keys = set(da.attrs) - VOLATILE_ATTRS
        assert keys == set(db.attrs) - VOLATILE_ATTRS, a.name
        for key in keys:
            va, vb = da.attrs[key], db.attrs[key]
            if key == "git_commit":
                va, vb = va.removesuffix("-dirty"), vb.removesuffix("-dirty")
            same = (np.array_equal(va, vb, equal_nan=True) if isinstance(va, float | np.floating)
                    else np.array_equal(va, vb))
            assert same, f"{a}: attribute {key}: {va!r} != {vb!r}"
    finally:
        da.close()
        db.close()


def test_workflow_through_slurm_equals_local_run(slurm_cluster, tiny_base_run, tmp_path):
    # the local reference: the session's tiny run (conftest tiny_base_run: every rule of the
    # workflow at the tiny scale, --cores 2); the default scale is the determinism test's
    local = tiny_base_run
    cluster = copy_workflow(tmp_path / "cluster",
                            sessions=(local / "config" / "sessions.tsv").read_text())
    slurm_run = _run(cluster, "--profile", "profiles/slurm", "--workflow-profile", "none",
                     *LOCAL_CLUSTER_ARGS, env=slurm_cluster)
    cpus = _watch(slurm_run, slurm_cluster)
    slurm_out, _ = slurm_run.communicate(timeout=60)
    assert slurm_run.returncode == 0, slurm_out[-6000:]
    assert "SLURM run ID" in slurm_out

    # Every job (but the target rule `all`) ran inside a SLURM job, each SLURM job was
    # submitted by this run and completed; the small CPU rules ran as grouped jobs.
    submitted = {int(j) for j in re.findall(r"submitted with SLURM jobid (\d+)", slurm_out)}
    jobs = _slurm_job_rules(cluster)
    assert set(jobs) == submitted and submitted, (sorted(jobs), sorted(submitted))
    finished = re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", slurm_out)
    assert set().union(*jobs.values()) == set(finished) - {"all"}
    groups = [rules for rules in jobs.values() if len(rules) > 1]
    assert {"synthetic_session", "binarize"} in groups
    assert {"fig_loglik", "fig_statistics", "fig_couplings", "fig_dynamics", "summary"} in groups
    assert len(submitted) < len(finished) - 1  # grouping saved submissions
    queue = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T"],
                           capture_output=True, text=True, env=slurm_cluster, check=True)
    states = dict(line.split("|") for line in queue.stdout.split())
    # still listed: COMPLETED; gone: ended more than MinJobAge (300 s) ago, which a slow run
    # reaches (its rules' "Finished" lines in its own log are checked above)
    assert all(states.get(str(j), "COMPLETED") == "COMPLETED" for j in submitted), states
    # A grouped SLURM job asks for one CPU (profile cores: 1) and runs its jobs one after
    # another: plugin 2.8 runs a group with an inner `snakemake --jobs 1`. Each figure job's run
    # is [its log's last timestamp - its benchmark seconds, that timestamp] (file mtimes are no
    # use: Snakemake touches a group's files when the group ends); in one group these never
    # overlap (if a plugin version runs them in parallel, this fails: then give groups CPUs).
    for job, rules in jobs.items():
        if len(rules) > 1:
            assert cpus.get(str(job)) == 1, (job, rules, cpus)
    intervals = []
    for rule in ("fig_loglik", "fig_statistics", "fig_couplings", "fig_dynamics", "summary"):
        bench = next((cluster / "results" / "benchmarks" / rule).glob("*.tsv"))
        seconds = float(bench.read_text().splitlines()[1].split("\t")[0])
        log = (cluster / "results" / "logs" / rule / bench.name).with_suffix(".log")
        stamp = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", log.read_text(),
                           re.MULTILINE)[-1]
        end = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        intervals.append((end - seconds, end, rule))
    intervals.sort()
    for (_, end, first), (start, _, second) in zip(intervals, intervals[1:], strict=False):
        # 1 s: the log line precedes the process end by a few ms, and jobs of a group start
        # seconds apart (each is a nested snakemake under srun)
        assert start >= end - 1.0, f"{first} and {second} overlap in one group job"

    # Same outputs: every netCDF identical (numeric data and attributes but the creation time),
    # every table identical, every figure present.
    nc = sorted(p.relative_to(local) for p in (local / "results").rglob("*.nc"))
    assert len(nc) >= 10
    assert nc == sorted(p.relative_to(cluster) for p in (cluster / "results").rglob("*.nc"))
    for rel in nc:
        _assert_same_netcdf(local / rel, cluster / rel)
    tables = sorted(p.relative_to(local) for p in (local / "results").rglob("*.tsv")
                    if "benchmarks" not in p.parts)
    assert any(p.name == "selected_models.tsv" for p in tables)
    for rel in tables:
        assert (local / rel).read_text() == (cluster / rel).read_text(), rel
    figures = sorted(p.relative_to(local) for p in (local / "results").rglob("*.png"))
    n_sessions = len((local / "config" / "sessions.tsv").read_text().strip().splitlines()) - 1
    # per session Figs. 2-6, Fig. 3's equilibration and raster, Fig. 4's coupling structure and
    # hidden units, the pairwise baseline's Fig. 3; the atlas and the comparison
    assert len(figures) == 10 * n_sessions + 2, figures
    for rel in figures:
        assert (cluster / rel).stat().st_size > 10_000, rel


def test_workstation_profile_under_slurm_stops_before_submitting(slurm_cluster, workflow_dir):
    """Forgetting `--workflow-profile none` would layer profiles/default (gpu=1 cap, its default
    resources) onto the cluster run: the workflow refuses before any sbatch."""
    wf = workflow_dir()
    run = _run(wf, "--profile", "profiles/slurm", env=slurm_cluster)
    out, _ = run.communicate(timeout=300)
    assert run.returncode != 0
    assert "--workflow-profile none" in out, out[-3000:]
    assert "submitted with SLURM" not in out and not (wf / "results").exists()
