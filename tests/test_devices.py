"""GPU assignment of concurrent jobs (spikerbm.devices): real processes and real file locks.

The GPUs themselves are named by strings here (as their UUIDs are on a GPU machine): the lock
logic is the same, and tests/test_devices.py::test_resolve_device_claims_a_gpu (cuda) runs it
on real devices. benchmarks/multi_gpu.py shows two training jobs on two GPUs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spikerbm import devices
from spikerbm.rbm import resolve_device

IDS = ["GPU-5f1c0a2e-aaaa", "GPU-77d0b9c4-bbbb"]
#: A job: select a GPU among IDS, print the index, hold the claim until stdin closes.
JOB = ("import sys; from spikerbm.devices import select; "
       "print(select(sys.argv[1].split(','), sys.argv[2]), flush=True); sys.stdin.read()")


def start_job(folder: Path, ids: list[str] = IDS) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", JOB, ",".join(ids), str(folder)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def end_job(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=60)


def test_concurrent_jobs_get_different_gpus_and_claims_end_with_the_job(tmp_path):
    """Two jobs running at once take the two GPUs; a third (more jobs than GPUs) shares GPU 0
    instead of waiting; a job killed with SIGKILL leaves no stale claim (the kernel drops its
    lock), so the next job gets its GPU."""
    folder = tmp_path / "locks"
    first, a = start_job(folder)
    second, b = start_job(folder)
    assert {a, b} == {0, 1}
    third, c = start_job(folder)
    assert c == 0  # all claimed: shares GPU 0 (and holds no claim)
    end_job(third)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    fourth, d = start_job(folder)
    assert d == a
    end_job(fourth)
    end_job(second)
    # one lock file per GPU, named after its UUID, in a folder every user's jobs can use
    assert sorted(p.name for p in folder.iterdir()) == [f"gpu-{i}.lock" for i in IDS]
    assert folder.stat().st_mode & 0o7777 == 0o1777


def test_one_gpu_and_no_gpu_need_no_claim(tmp_path, monkeypatch):
    """A machine with one GPU uses it without any lock (two jobs share it, as today); without a
    GPU, device auto is the CPU and no lock folder is touched."""
    one, i = start_job(tmp_path / "locks", ids=["GPU-only"])
    two, j = start_job(tmp_path / "locks", ids=["GPU-only"])
    assert i == j == 0
    end_job(one)
    end_job(two)
    assert not (tmp_path / "locks").exists()
    if not torch.cuda.is_available():
        monkeypatch.setenv(devices.LOCK_DIR_ENV, str(tmp_path / "cpu"))
        assert resolve_device("auto") == torch.device("cpu")
        assert not (tmp_path / "cpu").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resolve_device_claims_a_gpu(tmp_path):
    """On a GPU machine two processes resolving ``cuda`` at once get different GPUs when there
    are several (the same one when there is one), and each makes its GPU the current device."""
    code = ("import sys, torch; from spikerbm.rbm import resolve_device; d = resolve_device("
            "'cuda'); assert torch.cuda.current_device() == d.index; print(d.index, flush=True);"
            " sys.stdin.read()")
    env = dict(os.environ, **{devices.LOCK_DIR_ENV: str(tmp_path)})
    procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    got = [int(p.stdout.readline()) for p in procs]
    for p in procs:
        end_job(p)
    expected = {0, 1} if torch.cuda.device_count() > 1 else {0}
    assert set(got) == expected, got
