"""Divergence: a too-large learning rate stops training with one clear error and keeps the last
good checkpoint (issue 11, item 5)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from conftest import snakemake

from spikerbm import io
from spikerbm.rbm import RBM
from spikerbm.training import MAX_ABS_PARAMETER, DivergenceGuard, TrainingDivergedError

TARGET = "results/s1/hidden~5/model.nc"


def _rbm(W: float = 0.1, a: float = 0.0, b: float = 0.0, device: str = "cpu") -> RBM:
    return RBM(torch.full((7, 5), W, device=device), torch.full((7,), a, device=device),
               torch.full((5,), b, device=device))


def test_guard_reports_first_bad_update_and_parameter():
    guard = DivergenceGuard(torch.device("cpu"), lr=3.0)
    for update in range(1, 5):
        guard.record(update, _rbm())
    guard.check(4, _rbm(), last_checkpoint=4)  # all good: no error
    guard.record(5, _rbm(b=2 * MAX_ABS_PARAMETER))  # finite but blown up
    guard.record(6, _rbm(W=float("nan")))  # later updates do not move the first bad one
    with pytest.raises(TrainingDivergedError) as err:
        guard.check(6, _rbm(W=float("nan")), last_checkpoint=4)
    msg = str(err.value)
    assert msg.startswith("training diverged at update 5: parameter W has 35 value(s) NaN/inf")
    assert "train.lr = 3 is too large" in msg and "train.lr: 0.03" in msg
    assert "last good checkpoint (update 4) is kept in resume.nc" in msg
    # an inf is caught too, and the limit is inclusive
    guard = DivergenceGuard(torch.device("cpu"), lr=1.0)
    guard.record(1, _rbm(a=MAX_ABS_PARAMETER))
    guard.check(1, _rbm(), last_checkpoint=0)
    guard.record(2, _rbm(a=-float("inf")))
    with pytest.raises(TrainingDivergedError, match="at update 2: parameter a has 7 value"):
        guard.check(2, _rbm(a=-float("inf")), last_checkpoint=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_guard_record_never_synchronises_on_cuda():
    """record() runs every update: under sync-debug mode "error" any host sync would raise."""
    guard = DivergenceGuard(torch.device("cuda"), lr=1.0)
    good, bad = _rbm(device="cuda"), _rbm(W=float("nan"), device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        for update in range(1, 50):
            guard.record(update, good if update < 30 else bad)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    with pytest.raises(TrainingDivergedError, match="at update 30:"):
        guard.check(49, bad, last_checkpoint=20)


@pytest.mark.reliability
@pytest.mark.workflow
def test_huge_learning_rate_stops_with_clear_error_and_keeps_last_good_checkpoint(
        workflow_dir):
    wf = workflow_dir({"train": {"n_hidden": [5], "lr": 1.0e4, "n_updates": 300,
                                 "n_checkpoints": 12}},
                      sessions="session_id\tsource\tparams\ns1\tsynthetic\tseed=1\n")
    proc = snakemake(wf, "--cores", "1", TARGET)
    assert proc.returncode != 0
    log = (wf / "results/logs/train/s1/hidden~5.log").read_text()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in log, log
    m = re.search(r"training diverged at update (\d+): parameter (W|a|b) has \d+ value\(s\) "
                  r"NaN/inf or beyond 10000 .*train\.lr = 10000 is too large for this data: "
                  r"lower it .* last good checkpoint \(update (\d+)\) is kept in resume\.nc",
                  errors[0])
    assert m, errors[0]
    assert errors[0].split(" ERROR ", 1)[1] in proc.stderr
    bad_update, kept_update = int(m[1]), int(m[3])
    assert not (wf / TARGET).exists()
    kept = io.read_netcdf(wf / TARGET.replace("model.nc", "resume.nc"))
    assert int(kept.attrs["n_updates_done"]) == kept_update == int(kept["checkpoint"][-1])
    assert 0 <= kept_update < bad_update
    for name in ("W", "a", "b"):  # every stored checkpoint is finite and within the limit
        assert np.all(np.abs(kept[name].values) <= MAX_ABS_PARAMETER), name
    # lowering lr as the message says, the rerun starts fresh (config changed) and succeeds
    cfg = (wf / "config/config.yaml").read_text().replace("lr: 10000.0", "lr: 0.1")
    (wf / "config/config.yaml").write_text(cfg)
    assert snakemake(wf, "--cores", "1", TARGET).returncode == 0
    assert "starting fresh: resume state not usable because the training config" in (
        wf / "results/logs/train/s1/hidden~5.log").read_text()
    assert not (wf / TARGET.replace("model.nc", "resume.nc")).exists()
