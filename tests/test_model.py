"""The model API (spikerbm.load_model) on a tiny trained run, against exact enumeration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from model_run import N_HIDDEN, N_NEURONS, UNIT_IDS
from scipy.stats import chi2

import spikerbm
from spikerbm import couplings as cp
from spikerbm import io
from spikerbm import rbm as R
from spikerbm.exact import binary_states
from spikerbm.partition import exact_log_z

CODE = 2 ** np.arange(N_NEURONS)


def exact_p(rbm: R.RBM) -> np.ndarray:
    return torch.softmax(-R.free_energy(rbm, binary_states(rbm.n_visible)), 0).numpy()


def chi2_ok(states: np.ndarray, p: np.ndarray, level: float = 0.999) -> tuple[bool, float]:
    """Pearson chi-square of i.i.d. states against p (rare states pooled: expected >= 5)."""
    n = states.shape[0]
    counts = np.bincount(states @ CODE[: states.shape[1]], minlength=p.size)
    keep = p * n >= 5
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(p[keep], p[~keep].sum()) * n
    obs, exp = obs[exp > 0], exp[exp > 0]
    stat = float(((obs - exp) ** 2 / exp).sum())
    return stat < chi2.ppf(level, obs.size - 1), stat


def test_load_selected_and_trajectory_agree(tiny_model_run):
    sel = spikerbm.load_model(tiny_model_run["selected"])
    traj = spikerbm.load_model(tiny_model_run["model"])  # checkpoint="selected": ../selected.nc
    assert sel.checkpoint == traj.checkpoint == int(io.read_attrs(tiny_model_run["selected"])
                                                    ["checkpoint"])
    assert "selected" in traj.checkpoint_rule
    assert torch.equal(sel.rbm.W, traj.rbm.W)
    assert (sel.n_neurons, sel.n_hidden) == (N_NEURONS, N_HIDDEN)
    assert list(sel.unit_id) == list(UNIT_IDS)
    last = spikerbm.load_model(tiny_model_run["model"], checkpoint="last")
    assert last.checkpoint == 600
    first = spikerbm.load_model(tiny_model_run["model"], checkpoint=0)
    assert first.checkpoint == 0 and not torch.equal(first.rbm.W, last.rbm.W)
    best = spikerbm.load_model(tiny_model_run["model"], checkpoint="best")
    assert best.checkpoint == sel.checkpoint  # one hidden size: its best is the selected


def test_load_errors(tiny_model_run, tmp_path):
    with pytest.raises(io.InputError, match="no checkpoint at update 7"):
        spikerbm.load_model(tiny_model_run["model"], checkpoint=7)
    with pytest.raises(io.InputError, match="holds one model"):
        spikerbm.load_model(tiny_model_run["selected"], checkpoint="last")
    with pytest.raises(io.InputError, match="not written by spikerbm"):
        xr.Dataset({"W": (("neuron", "hidden"), np.zeros((3, 2)))}).to_netcdf(tmp_path / "x.nc")
        spikerbm.load_model(tmp_path / "x.nc")
    (tmp_path / "bad.nc").write_bytes(b"\x80\x04not netcdf")  # e.g. a pickle: never loaded
    with pytest.raises(io.InputError, match="cannot be read as netCDF"):
        spikerbm.load_model(tmp_path / "bad.nc")
    with pytest.raises(io.InputError, match="not a model|parameter"):
        spikerbm.load_model(tiny_model_run["raster"])
    with pytest.raises(FileNotFoundError):
        spikerbm.load_model(tmp_path / "absent.nc")


def test_sample_matches_enumeration_gibbs_and_ptt(tiny_model_run):
    """4001 independent chains (final states) vs exact p(v) over 2^9 states, chi-square at the
    99.9 % quantile (the fixed seed makes the outcome reproducible); the model mixes in a few
    sweeps (its integrated autocorrelation time of E is ~3 sweeps), so 150 sweeps give exact
    samples. PTT runs over 5 of the 8 saved checkpoints (ptt_models)."""
    model = spikerbm.load_model(tiny_model_run["model"])
    p = exact_p(model.rbm.to(dtype=torch.float64))
    gibbs = model.sample(4001, sweeps=150, seed=1)
    assert gibbs["samples"].dims == ("sample", "neuron")
    assert list(gibbs["unit_id"].values) == list(UNIT_IDS)
    ok, stat = chi2_ok(gibbs["samples"].values, p)
    assert ok, stat
    ptt = model.sample(4001, sweeps=50, seed=2, sampler="ptt", ptt_models=5)
    ok, stat = chi2_ok(ptt["samples"].values, p)
    assert ok, stat
    acc = ptt["ptt_acceptance"].values
    assert ptt.attrs["ptt_n_models"] == 5
    assert acc.shape == (4,) and np.all((acc > 0) & (acc <= 1))
    assert ptt["ptt_update_hi"].values[-1] == model.checkpoint
    # determinism: the same seed gives the same samples
    one, two = (model.sample(50, sweeps=5, seed=1)["samples"].values for _ in range(2))
    assert np.array_equal(one, two)


def test_clamp_respects_values_and_samples_the_exact_conditional(tiny_model_run):
    """Clamped neurons keep their values; the free ones follow p(v_free | v_clamped) by
    enumeration (chi-square as above)."""
    model = spikerbm.load_model(tiny_model_run["selected"])
    clamp = {int(UNIT_IDS[1]): 1, int(UNIT_IDS[6]): 0}
    out = model.sample(3001, sweeps=150, seed=3, clamp=clamp)["samples"].values
    assert np.all(out[:, 1] == 1) and np.all(out[:, 6] == 0)
    states = binary_states(N_NEURONS).numpy().astype(np.uint8)
    p = exact_p(model.rbm.to(dtype=torch.float64))
    cond = (states[:, 1] == 1) & (states[:, 6] == 0)
    p_cond = np.where(cond, p, 0.0) / p[cond].sum()
    ok, stat = chi2_ok(out, p_cond)
    assert ok, stat
    # power: the unconditional distribution is rejected
    assert not chi2_ok(out, p)[0]
    traj = spikerbm.load_model(tiny_model_run["model"])
    ptt = traj.sample(3001, sweeps=50, seed=4, clamp=clamp, sampler="ptt",
                      ptt_models=4)["samples"].values
    assert np.all(ptt[:, 1] == 1) and np.all(ptt[:, 6] == 0)
    assert chi2_ok(ptt, p_cond)[0]
    with pytest.raises(ValueError, match="unit id 7 is not a neuron"):
        model.sample(3, clamp={7: 1})
    with pytest.raises(ValueError, match="0 or 1"):
        model.sample(3, clamp={int(UNIT_IDS[0]): 2})


def test_log_likelihood_free_energy_and_stored_log_z(tiny_model_run):
    model = spikerbm.load_model(tiny_model_run["selected"])
    lz = exact_log_z(model.rbm.to(dtype=torch.float64))
    assert model.log_z.method == "exact"
    assert model.log_z.log_z == pytest.approx(lz, abs=1e-9)  # the value stored by selection
    raster = io.read_netcdf(tiny_model_run["raster"])
    test = raster["raster"].values[raster["split"].values == "test"]
    score = model.log_likelihood(tiny_model_run["raster"], split="test")
    states = binary_states(N_NEURONS)
    p = exact_p(model.rbm.to(dtype=torch.float64))
    exact_ll = float(np.log(p[test.astype(np.int64) @ CODE]).mean())  # sum_t log p(v_t) / T
    assert score.ll == pytest.approx(exact_ll, abs=1e-9)
    assert score.ll_std == 0.0 and score.n_samples == test.shape[0]
    assert score.ll_per_neuron == pytest.approx(exact_ll / N_NEURONS)
    assert score.ll == pytest.approx(float(model.attrs["ll_test"]), abs=1e-6)
    f = model.free_energy(states.numpy())
    assert np.allclose(np.exp(-f - lz), p, rtol=1e-9, atol=0)
    # a trajectory file takes log Z from the loglik.nc beside it
    traj = spikerbm.load_model(tiny_model_run["model"], checkpoint=0)
    assert traj.log_z.method == "exact"
    assert traj.log_likelihood(test, log_z="exact").ll == pytest.approx(
        traj.log_likelihood(test).ll, abs=1e-9)


def test_raster_alignment_by_unit_id(tiny_model_run):
    model = spikerbm.load_model(tiny_model_run["selected"])
    raster = io.read_netcdf(tiny_model_run["raster"])["raster"]
    perm = raster.isel(neuron=np.random.default_rng(0).permutation(N_NEURONS))
    assert np.allclose(model.free_energy(perm), model.free_energy(raster.values))
    with pytest.raises(ValueError, match="1 model unit"):
        model.free_energy(raster.isel(neuron=slice(1, None)))
    with pytest.raises(ValueError, match="0/1"):
        model.free_energy(np.full((2, N_NEURONS), 2))


def test_conditional_activity_matches_enumeration(tiny_model_run):
    model = spikerbm.load_model(tiny_model_run["selected"])
    states = binary_states(N_NEURONS).numpy().astype(np.uint8)
    p = exact_p(model.rbm.to(dtype=torch.float64))
    probe = states[::37]
    got = model.conditional_activity(probe)
    for i in range(N_NEURONS):
        on, off = probe.copy(), probe.copy()
        on[:, i], off[:, i] = 1, 0
        p_on, p_off = p[on.astype(np.int64) @ CODE], p[off.astype(np.int64) @ CODE]
        assert np.allclose(got[:, i], p_on / (p_on + p_off), atol=1e-12)


def test_couplings_match_the_couplings_module(tiny_model_run):
    model = spikerbm.load_model(tiny_model_run["selected"])
    r64 = model.rbm.to(dtype=torch.float64)
    full = model.couplings(order=3)
    assert np.allclose(full["H"].values, cp.fields(r64).numpy(), atol=1e-12)
    # spectral pairs agree with the Gauss-Hermite pairs of the workflow's default
    assert np.allclose(full["J"].values, cp.pair_couplings(r64).numpy(), atol=1e-6)
    trip = np.stack([full[k].values for k in ("triplet_i", "triplet_j", "triplet_k")], 1)
    assert trip.shape == (84, 3)  # C(9, 3)
    assert np.allclose(full["triplet_J3"].values, cp.triplet_couplings(r64, trip).numpy(),
                       atol=1e-12)
    sub = model.couplings(neurons=["CA1", int(UNIT_IDS[0])], order=2)
    idx = [4, 5, 6, 0]
    assert list(sub["unit_id"].values) == [int(UNIT_IDS[i]) for i in idx]
    assert np.allclose(sub["J"].values, full["J"].values[np.ix_(idx, idx)], atol=1e-12)
    with pytest.raises(ValueError, match="no neuron in area"):
        model.couplings(neurons=["V1"])


def test_to_xarray(tiny_model_run):
    model = spikerbm.load_model(tiny_model_run["model"], checkpoint="last")
    ds = model.to_xarray()
    ref = io.read_netcdf(tiny_model_run["model"]).isel(checkpoint=-1)
    assert np.array_equal(ds["W"].values, ref["W"].values)
    assert ds["W"].dims == ("neuron", "hidden") and ds.attrs["checkpoint"] == 600
    assert list(ds["unit_id"].values) == list(UNIT_IDS)


@pytest.mark.cuda
def test_cuda_sampling_and_scores_agree_with_cpu(tiny_model_run):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = spikerbm.load_model(tiny_model_run["selected"])
    gpu = spikerbm.load_model(tiny_model_run["selected"], device="cuda")
    v = cpu.sample(2001, sweeps=200, seed=1)["samples"].values
    assert np.allclose(gpu.free_energy(v), cpu.free_energy(v), atol=1e-9)
    ok, stat = chi2_ok(gpu.sample(4001, sweeps=300, seed=2)["samples"].values,
                       exact_p(cpu.rbm.to(dtype=torch.float64)))
    assert ok, stat
