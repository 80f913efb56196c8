"""Exact resume: a training process killed with SIGKILL and rerun ends bitwise equal (CPU)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SGD_RECIPE

from spikerbm import io
from spikerbm.likelihood import ONLINE_VARS
from spikerbm.train_state import data_hash, resume_mismatch
from spikerbm.training import TrainConfig, train

NV, NH = 21, 5
#: model.nc: the trajectory; the final sampler state (chains and every generator) is compared
#: through the last resume state of the in-process runs (_assert_same_final_state)
VARS = ("W", "a", "b", "log_z_tais", "log_z_tais_std", *ONLINE_VARS)
#: the stop state: part of what must resume exactly
STOP_ATTRS = ("stop_reason", "best_update", "still_improving", "n_updates_done",
              "ll_test_online_gain", "best_ll_test_online")
STATE_VARS = ("chains__v", "chains__rng", "batches__rng", "batches__perm", "batches__pos",
              "tais__chains", "tais__rng", "tais__log_w")

DRIVER = '''
import logging, sys
import numpy as np
from spikerbm.training import TrainConfig, train_to_files
logging.basicConfig(filename=sys.argv[4], level=logging.INFO)
cfg = TrainConfig(n_hidden={nh}, n_updates={n_updates}, n_checkpoints=25, n_chains=201,
                  batch_size=101, k=5, lr=0.05, weight_std=0.1, tais_chains=100, eval_every=20,
                  patience=400, min_delta=0.002, device="cpu")
data = np.load(sys.argv[1])
train_to_files(data[:1201], test_data=data[1201:], cfg=cfg, seed=7, model_path=sys.argv[2],
               resume_path=sys.argv[3], attrs={{"session_id": "test"}})
'''


def _data(n: int = 1501, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.random((n, 1)) < 0.3  # a shared latent: correlated data
    return (rng.random((n, NV)) < np.where(z, 0.6, 0.1)).astype(np.uint8)


def _run(tmp: Path, name: str, n_updates: int) -> subprocess.Popen:
    script = tmp / "driver.py"
    script.write_text(DRIVER.format(nh=NH, n_updates=n_updates))
    out = tmp / name
    out.mkdir(exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp / "data.npy"), str(out / "model.nc"),
         str(out / "resume.nc"), str(out / "log.txt")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _assert_equal(a, b):
    for name in VARS:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert a["checkpoint"].values.tolist() == b["checkpoint"].values.tolist()
    assert a["eval_update"].values.tolist() == b["eval_update"].values.tolist()
    for name in STOP_ATTRS:
        np.testing.assert_array_equal(a.attrs[name], b.attrs[name], err_msg=name)  # NaN == NaN


def _assert_same_final_state(a: list, b: list) -> None:
    """The last resume states of two runs: every variable equal (chains, generators, AIS)."""
    assert set(a[-1].data_vars) == set(b[-1].data_vars) and set(STATE_VARS) <= set(a[-1])
    for name in a[-1].data_vars:
        np.testing.assert_array_equal(a[-1][name].values, b[-1][name].values, err_msg=name)


def test_sigkill_and_rerun_is_bitwise_identical(tmp_path):
    n_updates = 800
    np.save(tmp_path / "data.npy", _data())
    ref = _run(tmp_path, "ref", n_updates)
    victim = _run(tmp_path, "victim", n_updates)
    resume = tmp_path / "victim" / "resume.nc"
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and victim.poll() is None:
        if resume.exists():
            try:
                done = int(io.read_netcdf(resume).attrs["n_updates_done"])
            except (OSError, KeyError, ValueError):
                done = 0
            if done >= 50:
                break
        time.sleep(0.05)
    time.sleep(0.13)  # land anywhere: mid-update or mid-write
    assert victim.poll() is None, "training finished before it could be killed; make it longer"
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(30) == -signal.SIGKILL
    assert not (tmp_path / "victim" / "model.nc").exists()
    assert resume.exists()
    killed_at = int(io.read_netcdf(resume).attrs["n_updates_done"])
    assert 0 < killed_at < n_updates
    # a leftover temporary file of a killed writer is cleaned up by the rerun
    stale = tmp_path / "victim" / ".resume.nc.dead1234.nc.tmp"
    stale.write_bytes(b"half-written")

    rerun = _run(tmp_path, "victim", n_updates)
    assert rerun.wait(120) == 0, rerun.stdout.read()
    assert ref.wait(120) == 0, ref.stdout.read()
    log = (tmp_path / "victim" / "log.txt").read_text()
    assert f"resuming from update {killed_at}" in log
    assert not resume.exists() and not stale.exists()
    assert not list((tmp_path / "victim").glob(".*tmp"))
    a = io.read_netcdf(tmp_path / "ref" / "model.nc")
    b = io.read_netcdf(tmp_path / "victim" / "model.nc")
    _assert_equal(a, b)
    assert a.attrs["session_id"] == "test"
    assert np.isfinite(a["log_z_tais"].values).all()


def _cfg(**kw) -> TrainConfig:
    base = dict(n_hidden=NH, n_updates=120, n_checkpoints=9, n_chains=31, batch_size=37, k=3,
                lr=0.05, weight_std=0.1, tais_chains=30, device="cpu")
    return TrainConfig(**{**base, **kw})


def test_resume_from_every_checkpoint_in_process():
    data = _data(301)
    states = []
    full = train(data, cfg=_cfg(), seed=3, on_checkpoint=states.append)
    assert [int(s.attrs["n_updates_done"]) for s in states] == full.checkpoint.values.tolist()
    for state in states[1:-1:2] + [states[-1]]:
        again: list = []
        _assert_equal(full, train(data, cfg=_cfg(), seed=3, resume=state,
                                  on_checkpoint=again.append))
        if again:  # a run resumed at the last checkpoint has nothing left to do
            _assert_same_final_state(states, again)
    # a different seed must give a different trajectory (the comparison can fail)
    other = train(data, cfg=_cfg(), seed=4)
    assert not np.array_equal(other["W"].values, full["W"].values)


def test_resume_with_early_stopping_from_every_checkpoint_is_bitwise():
    """The stopping state (online curve, best so far and its parameters, the stop decision) is
    part of the resume state: a run stopped early (301 train bins overfit), restarted from any
    of its checkpoints, ends with the same model, curve, best checkpoint and stop attributes;
    the test split changes the resume hash (early stopping reads it)."""
    data, test = _data(301), _data(700, seed=5)
    cfg = _cfg(n_updates=3000, n_checkpoints=12, eval_every=25, patience=150, min_delta=0.01,
               **SGD_RECIPE)
    states: list = []
    full = train(data, test_data=test, cfg=cfg, seed=3, on_checkpoint=states.append)
    assert full.attrs["stop_reason"] == "early_stop"
    assert full.attrs["best_update"] < full.attrs["n_updates_done"] < 3000
    assert states[-1].attrs["stop_reason"] == "early_stop"  # the decision is in the state
    assert "best__W" in states[-1] and "best__W" not in full
    for state in (states[2], states[-3], states[-1]):  # early, after the best, at the stop
        again: list = []
        _assert_equal(full, train(data, test_data=test, cfg=cfg, seed=3, resume=state,
                                  on_checkpoint=again.append))
        if again:
            _assert_same_final_state(states, again)
    hashes = {"config_hash": states[3].attrs["config_hash"],
              "data_hash": data_hash(data, test[:-1])}
    assert "training data" in resume_mismatch(states[3], hashes)  # another test split


@pytest.mark.parametrize("change", ["config", "data", "seed"])
def test_mismatched_resume_starts_fresh(change, caplog):
    data = _data(301)
    states = []
    train(data, cfg=_cfg(), seed=3, on_checkpoint=states.append)
    cfg, seed = (_cfg(lr=0.02), 3) if change == "config" else (_cfg(), 4 if change == "seed"
                                                                 else 3)
    if change == "data":
        data = _data(301, seed=1)
    with caplog.at_level(logging.INFO, logger="spikerbm.training"):
        got = train(data, cfg=cfg, seed=seed, resume=states[4])
    assert "starting fresh: resume state not usable because" in caplog.text
    what = "training data" if change == "data" else "training config/seed/device"
    assert what in caplog.text
    _assert_equal(got, train(data, cfg=cfg, seed=seed))


def test_float_state_roundtrips_through_netcdf(tmp_path):
    """resume.nc written and read back (netCDF, zlib) gives the same continuation."""
    data = _data(301)
    states = []
    full = train(data, cfg=_cfg(), seed=3, on_checkpoint=states.append)
    io.write_netcdf(states[5], tmp_path / "resume.nc")
    back = io.read_netcdf(tmp_path / "resume.nc")
    assert back["tais__log_w"].dtype == np.float64 and back["W"].dtype == np.float32
    again: list = []
    _assert_equal(full, train(data, cfg=_cfg(), seed=3, resume=back, on_checkpoint=again.append))
    _assert_same_final_state(states, again)
    assert torch.get_default_dtype() == torch.float32


@pytest.mark.parametrize(("kw", "moment"), [
    ({"optimizer": "adam", "lr": 0.02}, "optimizer__s_W"),
    ({"optimizer": "sgd", "lr": 0.02, "momentum": 0.9}, "optimizer__v_W")])
def test_adam_or_momentum_with_decay_resumes_bitwise_through_netcdf(tmp_path, kw, moment):
    """The Adam moments (``optimizer__m_W`` ...) and the Nesterov momentum buffers
    (``optimizer__v_W`` ...) are part of the resume state: a run resumed from a checkpoint
    written to netCDF ends bitwise equal; resumed with them zeroed it does not (so they matter
    and the comparison can fail)."""
    data = _data(301)
    cfg = _cfg(lr_final=0.05, decay_start=0.3, **kw)
    states: list = []
    full = train(data, cfg=cfg, seed=3, on_checkpoint=states.append)
    io.write_netcdf(states[5], tmp_path / "resume.nc")
    back = io.read_netcdf(tmp_path / "resume.nc")
    assert back[moment].dtype == np.float32 and float(abs(back[moment]).max()) > 0
    again: list = []
    _assert_equal(full, train(data, cfg=cfg, seed=3, resume=back, on_checkpoint=again.append))
    _assert_same_final_state(states, again)
    zeroed = back.copy(deep=True)
    for name in zeroed.data_vars:
        if name.startswith("optimizer__"):
            zeroed[name].values[...] = 0
    other = train(data, cfg=cfg, seed=3, resume=zeroed)
    assert not np.array_equal(other["W"].values, full["W"].values)


def test_anchored_run_resumes_bitwise_through_netcdf(tmp_path):
    """The anchors (docs/methods.md §4) are part of the resume state: the re-anchored
    trajectory-AIS offsets (``tais__offset``) and the anchors on the eval axis, from which the
    drift allowance of later errors is computed. A run resumed between anchors from a state
    written to netCDF ends bitwise equal (anchors at 20, 40, 80, 120); resumed with the
    recorded gaps zeroed its later stated errors differ (so the comparison can fail)."""
    data = _data(301)
    cfg = _cfg(optimizer="adam", lr=0.02, lr_final=0.05, decay_start=0.3, eval_every=20,
               anchor_every=2, n_checkpoints=25)
    states: list = []
    full = train(data, cfg=cfg, seed=3, on_checkpoint=states.append)
    assert full["eval_update"].values[np.isfinite(full["log_z_anchor"].values)].tolist() == [
        20, 40, 80, 120]
    assert full.attrs["log_z_anchor_method"] == "exact"
    mid = next(s for s in states if 80 < int(s.attrs["n_updates_done"]) < 120)
    io.write_netcdf(mid, tmp_path / "resume.nc")
    back = io.read_netcdf(tmp_path / "resume.nc")
    again: list = []
    _assert_equal(full, train(data, cfg=cfg, seed=3, resume=back, on_checkpoint=again.append))
    _assert_same_final_state(states, again)
    zeroed = back.copy(deep=True)
    zeroed["log_z_anchor_gap"].values[...] = np.where(
        np.isfinite(zeroed["log_z_anchor_gap"].values), 0.0, np.nan)
    other = train(data, cfg=cfg, seed=3, resume=zeroed)
    np.testing.assert_array_equal(other["W"].values, full["W"].values)
    assert not np.array_equal(other["log_z_online_std"].values, full["log_z_online_std"].values)
