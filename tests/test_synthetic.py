"""Synthetic generator: exact references on tiny RBMs, planted structure on real sessions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit

from spikerbm import synthetic as syn
from spikerbm.binarize import binarize, split_arrays
from spikerbm.exact import binary_states


# ------------------------------------------------------------------ exact references
def _states(n: int) -> np.ndarray:
    return binary_states(n).numpy()


def _brute_force(W, a, b):
    """Full joint enumeration: probabilities over (v, h), marginals, covariance of s=(v,h)."""
    n, m = W.shape
    V, H = _states(n), _states(m)
    logp = (V @ a)[:, None] + (H @ b)[None, :] + V @ W @ H.T
    log_z = np.log(np.exp(logp - logp.max()).sum()) + logp.max()
    P = np.exp(logp - log_z)
    S = np.concatenate([np.repeat(V[:, None], len(H), 1), np.repeat(H[None], len(V), 0)], 2)
    S, p = S.reshape(-1, n + m), P.reshape(-1)
    mean = p @ S
    cov = (S * p[:, None]).T @ S - np.outer(mean, mean)
    return {"log_z": log_z, "v": mean[:n], "h": mean[n:], "cov": cov, "pv": P.sum(1), "V": V}


@pytest.fixture
def tiny_rbm():
    rng = np.random.default_rng(7)
    n, m = 7, 5  # distinct odd sizes so swapped axes fail
    return rng.normal(0, 1.0, (n, m)), rng.normal(-1, 1, n), rng.normal(0, 1, m)


def test_exact_marginals_match_full_enumeration(tiny_rbm):
    W, a, b = tiny_rbm
    ref = _brute_force(W, a, b)
    got = syn.exact_marginals(W, a, b)
    # both are exact float64 sums over <= 4096 terms: agreement to round-off
    np.testing.assert_allclose(got["v"], ref["v"], atol=1e-12)
    np.testing.assert_allclose(got["h"], ref["h"], atol=1e-12)
    assert got["log_z"] == pytest.approx(ref["log_z"], abs=1e-10)


def test_hessian_vector_product_is_the_exact_covariance(tiny_rbm):
    W, a, b = tiny_rbm
    ref = _brute_force(W, a, b)
    state = syn._enumerate(W, a, b, keep_sigma=True)
    x = np.random.default_rng(3).normal(size=12)
    hidden = torch.from_numpy(syn._hidden_states(5, 0, 32))
    ha, hb = syn._hessian_vector(state, x[:7], x[7:], hidden)
    # sigma is stored in float32 (relative error ~1e-7), the rest is float64
    np.testing.assert_allclose(np.concatenate([ha, hb]), ref["cov"] @ x, atol=1e-5)


def test_calibrate_biases_hits_targets_exactly():
    rng = np.random.default_rng(11)
    W = np.abs(rng.normal(0, 1.5, (9, 3)))  # strong positive couplings, like the planted model
    p_star, q_star = rng.uniform(0.02, 0.4, 9), np.array([0.1, 0.3, 0.5])
    a, b = syn.calibrate_biases(W, p_target=p_star, q_target=q_star, tol=1e-9)
    ref = _brute_force(W, a, b)  # independent check by joint enumeration
    np.testing.assert_allclose(ref["v"], p_star, rtol=1e-7)
    np.testing.assert_allclose(ref["h"], q_star, rtol=1e-7)


def test_equilibrium_sample_has_the_exact_distribution(tiny_rbm):
    W, a, b = tiny_rbm
    ref = _brute_force(W, a, b)
    v = syn.equilibrium_sample(W, a, b, n_samples=40_001, rng=np.random.default_rng(5))
    assert v.dtype == np.uint8 and v.shape == (40_001, 7)
    # mean of Bernoulli over 40k independent draws: s.e. <= 0.0025, 5 s.e. = 0.0125
    np.testing.assert_allclose(v.mean(0), ref["v"], atol=0.0125)


def test_simulate_chain_follows_the_exact_gibbs_kernel():
    rng = np.random.default_rng(9)
    W, a, b = rng.normal(0, 1.2, (3, 2)), rng.normal(0, 1, 3), rng.normal(0, 1, 2)
    V, H = _states(3), _states(2)
    # exact one-sweep kernel T[v, v'] = sum_h p(h|v) p(v'|h)
    ph_v = np.prod(np.where(H[None] == 1, expit(V @ W + b)[:, None], 1 - expit(V @ W + b)[:, None]),
                   axis=2)
    pv_h = np.prod(np.where(V[None] == 1, expit(H @ W.T + a)[:, None],
                            1 - expit(H @ W.T + a)[:, None]), axis=2)
    T = ph_v @ pv_h
    v0 = np.array([1.0, 0.0, 1.0])
    out = syn.simulate_chain(W, a, b, n_bins=2, sweeps_per_bin=3, n_chains=30_001, rng=rng,
                             v0=v0)
    assert out.shape == (30_001, 2, 3) and out.dtype == np.uint8
    codes = out @ np.array([1, 2, 4])  # state codes in the order of _states
    row = int(v0 @ np.array([1, 2, 4]))
    for t, power in ((0, 3), (1, 6)):  # recorded state t = after (t+1) * 3 sweeps
        expected = np.linalg.matrix_power(T, power)[row]
        freq = np.bincount(codes[:, t], minlength=8) / codes.shape[0]
        # multinomial frequencies over 30k chains: s.e. <= 0.003; 5 s.e. tolerance
        np.testing.assert_allclose(freq, expected, atol=0.015)


def test_simulate_chain_rejects_bad_arguments(tiny_rbm):
    W, a, b = tiny_rbm
    with pytest.raises(ValueError, match="shapes disagree"):
        syn.simulate_chain(W, b, a, n_bins=3, sweeps_per_bin=1, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="sweeps_per_bin"):
        syn.simulate_chain(W, a, b, n_bins=3, sweeps_per_bin=0, rng=np.random.default_rng(0))


# ------------------------------------------------------------------ sessions
@pytest.fixture(scope="module")
def session():
    """Default structure (160 neurons, 4 areas), 20 min: the planted ground truth at full size."""
    return syn.generate_session(duration_s=1200, seed=3, session_id="t", return_raster=True)


def test_session_contracts(session):
    spikes, truth, raster = session
    n_bins = 1200 * 1000 // 20
    assert raster.shape == (n_bins, 160) and raster.dtype == np.uint8
    assert spikes["spike_time"].dtype == np.float64 and spikes["spike_unit"].dtype == np.int32
    assert np.all(np.diff(spikes["spike_time"].values) >= 0)
    assert spikes.sizes["spike"] == int(raster.sum())  # one spike per active bin
    assert spikes["unit_id"].dtype == np.int64 and spikes.sizes["unit"] == 160
    assert list(spikes["epoch_name"].values) == ["active"]
    assert spikes["epoch_stop"].values[0] == pytest.approx(1200.0)
    n_hidden = 4 * 3 + 2 + 1
    assert truth["W"].shape == (160, n_hidden) and truth["W"].dtype == np.float64
    assert list(truth["hidden_kind"].values).count("assembly") == 12
    assert list(truth["hidden_kind"].values).count("cross") == 2
    assert truth.attrs["sweeps_per_bin"] == 1 and truth.attrs["bin_ms"] == 20
    assert truth.attrs["ms_per_sweep"] == 20
    # membership: assemblies sit inside their own area; cross units span exactly two areas
    area = truth["area"].values
    for k, kind in enumerate(truth["hidden_kind"].values):
        members = truth["membership"].values[:, k] == 1
        if kind == "assembly":
            assert set(area[members]) == {truth["hidden_area"].values[k]}
            assert members.sum() == 12
        elif kind == "cross":
            assert len(set(area[members])) == 2
        else:
            assert members.all()


def test_rates_land_in_the_configured_range(session):
    spikes, truth, raster = session
    # the planted model's exact rates equal the targets (calibration tol 1e-6 in logit) ...
    np.testing.assert_allclose(truth["rate_hz"], truth["target_rate_hz"], rtol=1e-5)
    assert truth["rate_hz"].min() >= 1.0 and truth["rate_hz"].max() <= 20.0
    # ... and the hidden units are on the calibrated fraction of the time
    kinds = truth["hidden_kind"].values
    np.testing.assert_allclose(truth["hidden_activity"].values[kinds != "drive"], 0.1, rtol=1e-5)
    np.testing.assert_allclose(truth["hidden_activity"].values[kinds == "drive"], 0.5, rtol=1e-5)
    # sampled rates of the 20-min path: the targets sit >= 10% inside the range and the slowest
    # neuron has ~1300 spikes (relative s.e. ~3%, x~3 for the slow correlations), so every
    # sampled rate is inside [rate_min, rate_max] and within 25% of its model rate.
    rate = raster.mean(0) / 0.02
    assert rate.min() >= 1.0 and rate.max() <= 20.0
    np.testing.assert_allclose(rate, truth["rate_hz"], rtol=0.25)


def test_area_structure_in_pairwise_correlations(session):
    _, truth, raster = session
    c = np.corrcoef(raster.T.astype(float))
    area = truth["area"].values
    same = area[:, None] == area[None, :]
    off = ~np.eye(area.size, dtype=bool)
    within, cross = c[same & off].mean(), c[~same].mean()
    assert within > 2 * cross > 0, (within, cross)
    # pairs sharing an assembly are far more correlated than other same-area pairs
    member = truth["membership"].values[:, truth["hidden_kind"].values == "assembly"]
    shared = (member @ member.T) > 0
    assert c[shared & off].mean() > 3 * c[same & ~shared].mean()


def test_population_activity_has_slow_autocorrelation(session):
    _, _, raster = session
    k = raster.sum(1).astype(float)
    k -= k.mean()
    ac = np.array([np.mean(k[:-lag] * k[lag:]) / k.var() for lag in range(1, 61)])
    # measured (seed 3): C(1) ~ 0.65, C(5) ~ 0.25, C(10) ~ 0.08; 60k bins give s.e. ~0.02
    assert ac[0] > 0.4  # strongly correlated neighbours
    assert ac[4] > 0.1  # still correlated after several bins (slow drive switching)
    assert np.all(np.diff(ac[:10]) < 0)  # decaying
    assert abs(ac[40:].mean()) < 0.05  # decorrelated after 40+ bins


def test_same_seed_same_session_different_seed_different():
    kw = dict(n_neurons=45, n_areas=3, assemblies_per_area=2, assembly_size=7,
              n_cross_assemblies=1, duration_s=31)
    s1, t1 = syn.generate_session(seed=5, **kw)
    s2, t2 = syn.generate_session(seed=5, **kw)
    s3, t3 = syn.generate_session(seed=6, **kw)
    assert s1.identical(s2) and t1.identical(t2)
    assert not np.array_equal(t1["W"].values, t3["W"].values)
    assert not (s1.sizes["spike"] == s3.sizes["spike"]
                and np.array_equal(s1["spike_time"].values, s3["spike_time"].values))


def test_binarize_recovers_the_planted_raster_exactly():
    spikes, truth, raster = syn.generate_session(
        n_neurons=45, n_areas=3, assemblies_per_area=2, assembly_size=7, n_cross_assemblies=1,
        duration_s=63.3, bin_ms=7, sweeps_per_bin=2, epochs=["active", "spontaneous"], seed=2,
        return_raster=True,
    )
    n_bins = int(63.3 * 1000 // 7)
    assert raster.shape == (n_bins, 45)
    # spikes sit on every ms offset of the bin, including exactly on the bin's start edge
    offsets = np.round(spikes["spike_time"].values * 1000).astype(int) % 7
    assert set(offsets) == set(range(7))
    ds = binarize(spikes, bin_ms=7, epochs="all", n_blocks=5, n_test_blocks=2, seed=1,
                  session_id="t")
    keep = np.isin(truth["unit_id"].values, ds["unit_id"].values)
    np.testing.assert_array_equal(ds["raster"].values, raster[:, keep])
    assert ds.attrs["n_spikes_ignored"] == 0
    half = n_bins // 2
    assert list(np.unique(ds["epoch"].values[:half])) == ["active"]
    second = binarize(spikes, bin_ms=7, epochs=["spontaneous"], n_blocks=5, n_test_blocks=2,
                      seed=1, session_id="t")
    keep = np.isin(truth["unit_id"].values, second["unit_id"].values)
    np.testing.assert_array_equal(second["raster"].values, raster[half:, keep])
    parts = split_arrays(second)
    assert parts["train"].shape[0] + parts["test"].shape[0] == n_bins - half


def test_sweeps_per_bin_and_time_rescale_recorded():
    _, truth = syn.generate_session(n_neurons=21, n_areas=2, assemblies_per_area=1,
                                    assembly_size=5, n_cross_assemblies=1, duration_s=3,
                                    bin_ms=10, sweeps_per_bin=4, seed=0)
    assert truth.attrs["sweeps_per_bin"] == 4 and truth.attrs["ms_per_sweep"] == 2.5


@pytest.mark.parametrize(
    ("kw", "pieces"),
    [
        ({"n_areas": 1, "n_cross_assemblies": 2}, ["n_cross_assemblies", "n_areas >= 2"]),
        ({"assemblies_per_area": 5}, ["hidden units", "at most 16"]),
        ({"bin_ms": 2.5}, ["bin_ms", "whole number"]),
        ({"rate_min_hz": 30.0}, ["rate_min_hz < rate_max_hz"]),
        ({"rate_max_hz": 60.0}, ["rate_max_hz", "< 1"]),
        ({"duration_s": 0.01}, ["duration_s", "bins"]),
        ({"epochs": ["a", "a"]}, ["epochs", "distinct"]),
        ({"n_neurons": 5}, ["n_neurons", "two neurons"]),
    ],
)
def test_bad_parameters_raise_clear_errors(kw, pieces):
    with pytest.raises(ValueError) as err:
        syn.generate_session(**{"duration_s": 2, "seed": 0, **kw})
    for piece in pieces:
        assert piece in str(err.value)


def test_unknown_parameter_names_listed():
    assert syn.check_params({"seed": 1, "n_neurons": 60}) == {"seed": 1, "n_neurons": 60}
    with pytest.raises(ValueError) as err:
        syn.check_params({"n_neuron": 60, "seed": 1})
    msg = str(err.value)
    assert "n_neuron" in msg and "n_neurons" in msg and "drive_weight" in msg

