"""kill -9 of a real snakemake training run, then reruns (issue 11, item 1).

A reference workflow trains one model uninterrupted. A second copy of the same workflow (same
config and seed, CPU, one thread) is started, and the whole process tree (snakemake and the
training job) is SIGKILLed three times at random points drawn from a seeded RNG (each after the
run's first new checkpoint and before the end), with a plain rerun after each kill, as a user
would do after a node failure (kills 1 and 3: snakemake and the job, then `snakemake --unlock`,
which Snakemake itself asks for) or a preemption (kill 2: only the job; snakemake reports it).
Every rerun must resume from the last checkpoint (the log says so and the update matches
resume.nc), the final model.nc must equal the uninterrupted one bitwise,
and nothing partial may survive under results/.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import xarray as xr
from conftest import SNAKEMAKE, copy_workflow, snakemake

from spikerbm import io

pytestmark = [pytest.mark.reliability, pytest.mark.workflow]

SHEET = "session_id\tsource\tparams\ns1\tsynthetic\tseed=1\n"
N_UPDATES = 6000
# many checkpoints (log-spaced; the late ones ~150 updates apart) so every run checkpoints soon
OVERRIDES = {"train": {"n_hidden": [5], "n_updates": N_UPDATES, "n_checkpoints": 120, "k": 5,
                       "n_chains": 64, "batch_size": 64, "tais_chains": 64,
                       "tais_groups": 8, "patience": 0}}  # runs all N_UPDATES (kill timing)
TARGET = "results/s1/hidden~5/model.nc"
LOG = "results/logs/train/s1/hidden~5.log"
KILL_SEED, N_KILLS = 20261126, 3


def _done(resume: Path) -> int:
    """Updates done according to resume.nc (-1 while it does not exist / is being replaced)."""
    try:
        return int(io.read_netcdf(resume).attrs["n_updates_done"])
    except (FileNotFoundError, ValueError, KeyError, OSError):
        return -1


def _start(wf: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([SNAKEMAKE, "--cores", "1", TARGET], cwd=wf, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill(proc: subprocess.Popen, *, job_only: bool) -> None:
    """SIGKILL snakemake and every descendant (a node failure), or only the training job (a
    preempted or OOM-killed job: snakemake survives, reports the failure and exits)."""
    parent = psutil.Process(proc.pid)
    jobs = [p for p in parent.children(recursive=True) if "train" in " ".join(p.cmdline())]
    assert jobs, "no training job running"
    children = jobs if job_only else parent.children(recursive=True)
    if not job_only:
        parent.send_signal(signal.SIGKILL)
    for p in children:
        p.send_signal(signal.SIGKILL)
    code = proc.wait(60)  # reap snakemake through Popen (psutil would take its exit status)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive
    assert code != 0 if job_only else code == -signal.SIGKILL


def _compare(a: xr.Dataset, b: xr.Dataset) -> None:
    assert sorted(a.variables) == sorted(b.variables)
    for name in a.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    differ = {k for k in a.attrs if a.attrs[k] != b.attrs.get(k)} | (set(b.attrs) - set(a.attrs))
    assert differ <= {"created_utc"}, differ


def test_kill9_of_snakemake_training_then_rerun_resumes_bitwise(tmp_path):
    ref = copy_workflow(tmp_path / "ref", OVERRIDES, SHEET)
    proc = snakemake(ref, "--cores", "1", TARGET)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ms_per_update = float(re.search(r"\(([\d.]+) ms/update", (ref / LOG).read_text())[1])

    wf = tmp_path / "victim"  # the same workflow and data, its model deleted
    shutil.copytree(ref, wf)
    (wf / TARGET).unlink()
    resume = wf / TARGET.replace("model.nc", "resume.nc")
    rng = np.random.default_rng(KILL_SEED)
    killed_at = []
    for n in range(N_KILLS):
        before = _done(resume)
        run = _start(wf)
        deadline = time.time() + 120
        while _done(resume) <= before and run.poll() is None and time.time() < deadline:
            time.sleep(0.02)  # wait for this run's first new checkpoint
        now = _done(resume)
        assert run.poll() is None and now > before, "training ended or stalled before the kill"
        # a random point between here and the end: a fraction of the expected time left
        delay = rng.uniform(0.05, 0.35) * (N_UPDATES - now) * ms_per_update / 1e3
        time.sleep(delay)
        assert run.poll() is None, f"training finished within {delay:.2f} s; make it longer"
        job_only = n == 1
        _kill(run, job_only=job_only)
        assert not (wf / TARGET).exists()
        killed_at.append(_done(resume))
        assert 0 < killed_at[-1] < N_UPDATES
        if n:  # the run before this one resumed from the previous kill's checkpoint
            assert killed_at[-1] >= killed_at[-2]
        if not job_only:  # after a kill -9 of snakemake itself, its lock stays: --unlock
            unlock = snakemake(wf, "--unlock")
            assert unlock.returncode == 0, unlock.stderr[-2000:]
        log = (wf / LOG).read_text()
        if n:
            assert f"resuming from update {killed_at[-2]} " in log, log[-2000:]

    final = snakemake(wf, "--cores", "1", TARGET)
    assert final.returncode == 0, final.stderr[-3000:]
    log = (wf / LOG).read_text()
    # resumed, not restarted: the last run started at the last kill's checkpoint
    assert f"resuming from update {killed_at[-1]} " in log, log[-3000:]
    assert "starting fresh" not in log, log[-3000:]
    assert re.search(rf"training done: {N_UPDATES - killed_at[-1]} updates this run", log)
    with xr.open_dataset(ref / TARGET) as a, xr.open_dataset(wf / TARGET) as b:
        _compare(a.load(), b.load())
    # nothing partial anywhere under results/: no resume state, no temporary file
    files = [p for p in (wf / "results").rglob("*") if p.is_file()]
    assert not [p for p in files if ".tmp" in p.name or p.name == "resume.nc"]
    assert not [s for p in files for s in io.stale_temporaries(p)]
    dry = snakemake(wf, "-n", "--cores", "1", TARGET)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    print(f"killed at updates {killed_at} (seed {KILL_SEED}); {ms_per_update} ms/update")


def test_atomic_write_removes_stale_temporaries_of_its_target(tmp_path):
    """A killed writer's temporary files (netCDF, text and figure patterns) are found and
    removed by the next atomic write of the same path; other files are left alone."""
    target = tmp_path / "fig2_loglik.png"
    stale = [tmp_path / ".fig2_loglik.png.ab12cd34.tmp.png",  # save_figure pattern
             tmp_path / ".fig2_loglik.png.zz99yy88.png.tmp"]  # atomic_path default pattern
    keep = [tmp_path / ".fig2_loglik.png.notes", tmp_path / ".other.png.ab12cd34.tmp.png",
            tmp_path / "fig2_loglik.png.bak"]
    for p in stale + keep:
        p.write_bytes(b"half-written")
    assert io.stale_temporaries(target) == sorted(stale)
    with io.atomic_path(target) as tmp:
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)
    assert io.stale_temporaries(target) == []
