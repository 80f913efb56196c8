"""Relaxation dynamics (docs/methods.md §7): estimators vs exact references, rescale fit, the
stage (the autocorrelation estimator itself: tests/test_diagnostics.py).

Exact references: brute force double loops, and the exact block-Gibbs sweep transition matrix of
a tiny RBM (N = 7 visible, M = 5 hidden; 2^7 states; spikerbm.exact), from which C(tau),
<K>(tau) and q(tau) follow by matrix powers. Statistical tolerances are multiples of the
estimator's own standard error (jackknife for C, s.d./sqrt(n) for chain means) plus a small
floor, with fixed seeds, so a wrong estimator (e.g. one that correlates across segment
boundaries, or a biased per-lag normalisation) fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from spikerbm import dynamics as dyn
from spikerbm.diagnostics import autocorrelation
from spikerbm.exact import relaxation
from spikerbm.rbm import rbm_from_numpy
from spikerbm.sampling import Sampler, random_states

N_VIS, N_HID = 7, 5


def tiny_rbm(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tiny RBM with a 'drive' hidden unit: C(tau) of K decays over ~5 sweeps (tau 9.6)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 0.5, (N_VIS, N_HID))
    W[:, 0] = 2.5
    a = rng.normal(-1.5, 0.3, N_VIS)
    b = rng.normal(-1, 0.5, N_HID)
    b[0] = -8.0
    return W, a, b


def gibbs_raster(W, a, b, *, n_chains: int, n_bins: int, sweeps_per_bin: int, burn_in: int,
                 seed: int) -> np.ndarray:
    """(n_chains, n_bins, N) uint8 states of block-Gibbs chains, sampled every sweeps_per_bin."""
    rbm = rbm_from_numpy(W, a, b, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    v0 = random_states(n_chains=n_chains, n_visible=W.shape[0], generator=g,
                       dtype=torch.float64)
    chains = Sampler.for_model(rbm).chains(v0, n_hidden=W.shape[1], generator=g)
    chains.sweep(rbm, k=burn_in)
    out = np.empty((n_chains, n_bins, W.shape[0]), dtype=np.uint8)
    for t in range(n_bins):
        chains.sweep(rbm, k=sweeps_per_bin if t else 0)
        out[:, t] = chains.v.numpy().astype(np.uint8)
    return out


def make_raster(chains: np.ndarray, *, bin_ms: float = 20.0) -> xr.Dataset:
    """raster.nc-like dataset: the chains one after another in time; chains 0 and 1 share epoch
    'active' with a time gap between them, chain 2 ('passive') follows chain 1 without a gap,
    chain 3 ('passive') follows chain 2 after a gap. So segments = chains."""
    n_c, n_t, n = chains.shape
    assert n_c == 4
    dt = bin_ms / 1e3
    starts = [0.0, n_t * dt + 5.0, 2 * n_t * dt + 5.0, 3 * n_t * dt + 17.0]
    time = np.concatenate([s + dt * np.arange(n_t) for s in starts])
    epoch = np.repeat(["active", "active", "passive", "passive"], n_t)
    ds = xr.Dataset(
        {"raster": (("time_bin", "neuron"), chains.reshape(-1, n))},
        coords={
            "time": ("time_bin", time),
            "epoch": ("time_bin", epoch),
            "unit_id": ("neuron", np.arange(100, 100 + n, dtype=np.int64)),
        },
        attrs={"bin_ms": bin_ms, "session_id": "test"},
    )
    return ds


# ------------------------------------------------------------------ estimators, exact references


def test_decay_times_of_exponential():
    lam = 0.8
    c = lam ** np.arange(200.0)
    # (the integrated time of the same curve: tests/test_diagnostics.py)
    # 1/e crossing of lam^tau is at -1/ln(lam) = 4.48; linear interpolation between lags 4 and 5
    # of a convex curve overshoots by < 0.05 lag
    assert dyn.decay_time_1e(c) == pytest.approx(-1 / np.log(lam), abs=0.05)
    assert np.isnan(dyn.decay_time_1e(np.ones(10)))


def test_overlap_equals_brute_force():
    rng = np.random.default_rng(5)
    v = (rng.random((61, 13)) < 0.3).astype(np.uint8)
    segments = np.array([[0, 20], [20, 41], [44, 61]])
    q = dyn.overlap_autocorrelation(v, max_lag=9, segments=segments)
    s = 2.0 * v - 1
    for tau in range(10):
        vals = [s[t] @ s[t + tau] / 13 for a, e in segments for t in range(a, e - tau)]
        assert q[tau] == pytest.approx(np.mean(vals), abs=1e-12)


def test_contiguous_segments_split_at_gaps_and_epochs():
    dt = 0.02
    time = np.concatenate([np.arange(5) * dt, 1.0 + np.arange(4) * dt, 1.08 + np.arange(3) * dt])
    epoch = np.array(["a"] * 5 + ["a"] * 4 + ["b"] * 3)
    seg = dyn.contiguous_segments(time, bin_s=dt, epoch=epoch)
    np.testing.assert_array_equal(seg, [[0, 5], [5, 9], [9, 12]])
    with pytest.raises(ValueError, match="time-ordered"):
        dyn.contiguous_segments(time[::-1], bin_s=dt)


def test_raster_estimator_matches_exact_planted_chain():
    # raster = block-Gibbs chains of a tiny planted RBM advancing 2 sweeps per bin: the data-side
    # C(tau bins) must equal the exact C(2 tau sweeps) from the sweep transition matrix T^tau.
    W, a, b = tiny_rbm()
    chains = gibbs_raster(W, a, b, n_chains=4, n_bins=4000, sweeps_per_bin=2, burn_in=200,
                          seed=11)
    ds = make_raster(chains)
    segs = dyn.raster_segments(ds)
    np.testing.assert_array_equal(segs[:, 0], [0, 4000, 8000, 12000])
    k = ds["raster"].values.sum(1).astype(float)
    c, se = autocorrelation(k, max_lag=12, segments=segs, n_blocks=20)
    exact = relaxation(W, a, b, max_lag=24)["C"][::2]
    assert np.all(se[1:] < 0.03)
    # 16,000 bins: s.e. ~0.01; 4.5 s.e. + 0.005 floor
    assert np.all(np.abs(c - exact) <= 4.5 * se + 0.005), (c, exact, se)


def test_raster_estimator_on_synthetic_simulate_chain():
    synthetic = pytest.importorskip("spikerbm.synthetic")
    W, a, b = tiny_rbm()
    rng = np.random.default_rng(12)
    chains = synthetic.simulate_chain(W, a, b, n_bins=4200, sweeps_per_bin=3, n_chains=4, rng=rng)
    chains = np.asarray(chains)[:, 200:]  # drop the first bins: chains start off-equilibrium
    assert chains.shape == (4, 4000, N_VIS)
    ds = make_raster(chains)
    k = ds["raster"].values.sum(1).astype(float)
    c, se = autocorrelation(k, max_lag=8, segments=dyn.raster_segments(ds), n_blocks=20)
    exact = relaxation(W, a, b, max_lag=24)["C"][::3]
    assert np.all(np.abs(c - exact) <= 4.5 * se + 0.005), (c, exact, se)


def test_equilibrium_chains_match_exact():
    W, a, b = tiny_rbm()
    exact = relaxation(W, a, b, max_lag=20)
    rbm = rbm_from_numpy(W, a, b, dtype=torch.float32)
    g = torch.Generator().manual_seed(5)
    v0 = torch.zeros(301, N_VIS)
    eq = dyn.equilibrium_autocorrelation(rbm, v0, burn_in_sweeps=300, record_sweeps=401,
                                         max_lag=20, n_blocks=20, generator=g)
    assert np.all(np.abs(eq["C"] - exact["C"]) <= 4.5 * eq["se"] + 0.005)
    assert eq["K_mean"] == pytest.approx(exact["pi"] @ exact["states"].sum(1), abs=0.05)


def test_relaxation_from_states_matches_exact():
    # start states: 400 draws from a fixed non-equilibrium distribution; exact: p0 T^tau
    W, a, b = tiny_rbm()
    rng = np.random.default_rng(6)
    v0 = (rng.random((400, N_VIS)) < 0.7).astype(np.float32)
    code = (v0.astype(int) * (1 << np.arange(N_VIS))).sum(1)  # spikerbm.exact state order
    p0 = np.bincount(code, minlength=2**N_VIS) / len(code)
    exact = relaxation(W, a, b, max_lag=15, p0=p0)
    rel = dyn.relaxation_from_states(rbm_from_numpy(W, a, b), torch.as_tensor(v0), n_sweeps=15,
                                     generator=torch.Generator().manual_seed(8))
    assert rel["K"][0] == pytest.approx(exact["K"][0]) and rel["q"][0] == 1.0
    # chain means: 4.5 standard errors (+ 1e-6 for tau=0 where the s.e. is 0)
    assert np.all(np.abs(rel["K"] - exact["K"]) <= 4.5 * rel["K_se"] + 1e-6)
    assert np.all(np.abs(rel["q"] - exact["q"]) <= 4.5 * rel["q_se"] + 1e-6)
    assert exact["K"][0] - exact["K"][-1] > 1.0  # the test actually sees relaxation


# ------------------------------------------------------------------ rescale fit


@pytest.mark.parametrize("r_true", [7.3, 20.0, 43.0])
def test_fit_recovers_known_rescale(r_true):
    bin_ms = 20.0
    sweeps = np.arange(301.0)
    c_model = 0.6 * np.exp(-sweeps / 12.0) + 0.4 * np.exp(-sweeps / 70.0)  # not one exponential
    t_ms = np.arange(61) * bin_ms
    s = t_ms / r_true
    c_data = 0.6 * np.exp(-s / 12.0) + 0.4 * np.exp(-s / 70.0)
    fit = dyn.fit_time_rescale(c_data, c_model, bin_ms=bin_ms, fit_lag_range=[1, 25])
    # linear interpolation of a smooth curve between sweeps: error in C < 1e-3, in r < 0.5 %
    assert fit.ms_per_sweep == pytest.approx(r_true, rel=5e-3)
    assert not fit.at_bound
    assert fit.n_sub_sweep == int(np.sum(np.arange(1, 26) * bin_ms < r_true))
    assert fit.max_dev_fit < 2e-3
    assert fit.baseline_max_dev_fit == pytest.approx(np.max(c_data[1:26]))
    assert fit.baseline_max_dev_fit > 10 * fit.max_dev_fit


@pytest.mark.parametrize(("c_data_lam", "c_model_lam", "bound"),
                         [(0.99, 0.3, "hi"), (0.05, 0.999, "lo")])
def test_fit_flags_grid_bound(c_data_lam, c_model_lam, bound):
    # data decorrelates far slower than the model at one sweep per fitted range (r at the top of
    # the grid), or far faster than the model does within its 40 sweeps (bottom): only a bound
    c_data, c_model = c_data_lam ** np.arange(31.0), c_model_lam ** np.arange(41.0)
    fit = dyn.fit_time_rescale(c_data, c_model, bin_ms=20.0, fit_lag_range=[1, 20])
    expected = 20 * 20.0 / 40 if bound == "lo" else 20 * 20.0
    assert fit.at_bound and fit.ms_per_sweep == pytest.approx(expected)
    assert np.isfinite(fit.max_dev_fit) and np.isfinite(fit.max_dev_all)


def test_fit_rejects_bad_range():
    c = 0.9 ** np.arange(30.0)
    with pytest.raises(ValueError, match="fit_lag_range"):
        dyn.fit_time_rescale(c, c, bin_ms=20.0, fit_lag_range=[0, 10])
    with pytest.raises(ValueError, match="fit_lag_range"):
        dyn.fit_time_rescale(c, c, bin_ms=20.0, fit_lag_range=[5, 40])


# ------------------------------------------------------------------ the stage


def _selected_and_truth(W, a, b, unit_id, *, bin_ms, sweeps_per_bin):
    sel = xr.Dataset(
        {"W": (("neuron", "hidden"), W.astype(np.float32)),
         "a": ("neuron", a.astype(np.float32)), "b": ("hidden", b.astype(np.float32))},
        coords={"unit_id": ("neuron", unit_id)}, attrs={"n_hidden": W.shape[1]},
    )
    truth = xr.Dataset(
        {"W": (("neuron", "hidden_true"), W), "a": ("neuron", a), "b": ("hidden_true", b)},
        coords={"unit_id": ("neuron", unit_id)},
        attrs={"bin_ms": bin_ms, "sweeps_per_bin": sweeps_per_bin},
    )
    return sel, truth


@pytest.fixture(scope="module")
def planted_dynamics():
    """Stage output for data = planted chain at 2 sweeps per 20 ms bin, model = the planted RBM."""
    W, a, b = tiny_rbm()
    chains = gibbs_raster(W, a, b, n_chains=4, n_bins=3000, sweeps_per_bin=2, burn_in=200,
                          seed=21)
    ds = make_raster(chains)
    sel, truth = _selected_and_truth(W, a, b, ds["unit_id"].values, bin_ms=20.0,
                                     sweeps_per_bin=2)
    out = dyn.dynamics_dataset(ds, sel, truth=truth, max_lag_bins=20, max_lag_sweeps=40,
                               n_chains=201, n_starts=151, burn_in_sweeps=100,
                               record_sweeps=301, fit_lag_range=[1, 8], n_se_blocks=10,
                               seed=3)
    return out, (W, a, b), (ds, sel, truth)


def test_dynamics_dataset_recovers_planted_rescale(planted_dynamics):
    # the fitted rescale must be the known 10 ms/sweep (data noise: C s.e. ~0.01 -> r within 10 %)
    out, (W, a, b), _ = planted_dynamics
    assert set(out.dims) == {"lag_bin", "sweep", "rescale"}
    assert out.sizes["lag_bin"] == 21 and out.sizes["sweep"] == 41
    for name in ("C_data", "C_model", "q_data", "q_model", "K_model_from_data",
                 "C_model_rescaled", "C_truth", "C_truth_bins"):
        assert name in out and "units" in out[name].attrs
    assert out.attrs["truth_ms_per_sweep"] == 10.0
    assert out.attrs["ms_per_sweep"] == pytest.approx(10.0, rel=0.1)
    assert out.attrs["n_segments"] == 4
    assert out.attrs["fit_max_abs_dev"] < 0.05 < out.attrs["baseline_max_abs_dev_fit"]
    exact = relaxation(W, a, b, max_lag=40)
    np.testing.assert_allclose(out["C_truth"].values, exact["C"], atol=0.03)
    assert out["q_model"].values[0] == 1.0 and out["q_data"].values[0] == 1.0
    # relaxation from data states starts at the data's mean K
    assert out["K_model_from_data"].values[0] == pytest.approx(out.attrs["K_mean_data"], abs=0.4)


def test_relaxation_from_high_activity_matches_exact(planted_dynamics):
    """Fig. 6b's observable: <K> after top-decile bins. With data = the planted chain and model =
    the planted RBM, both must follow the exact relaxation from p0 ∝ pi(v) 1[K(v) >= threshold]
    (sweep transition matrix; the data at 2 sweeps per bin), and it must relax (the exact
    curve drops by > 0.5 neurons). Model: 5 s.e. (over chains) + 0.05; data: ~1,200 correlated
    start bins, conditional-mean s.e. ~0.05, tolerance 0.25."""
    out, (W, a, b), _ = planted_dynamics
    thr = out.attrs["high_k_threshold"]
    eq = relaxation(W, a, b, max_lag=40)
    p0 = eq["pi"] * (eq["states"].sum(1) >= thr)
    exact = relaxation(W, a, b, max_lag=40, p0=p0 / p0.sum())["K"]
    assert exact[0] - exact[-1] > 0.5
    model, se = out["K_model_from_high"].values, out["K_model_from_high_se"].values
    assert np.all(np.abs(model - exact) <= 5 * se + 0.05), (model, exact)
    data = out["K_data_from_high"].values
    assert np.all(np.abs(data - exact[::2][: data.size]) < 0.25), (data, exact[::2])
    k = np.array([0, 5, 1, 6, 0, 7, 2, 2.0])
    mean, count = dyn.conditional_relaxation(k, threshold=5, max_lag=2,
                                             segments=np.array([[0, 4], [4, 8]]))
    np.testing.assert_allclose(mean, [(5 + 6 + 7) / 3, (1 + 2) / 2, (6 + 2) / 2])
    np.testing.assert_array_equal(count, [3, 2, 2])


def test_dynamics_dataset_rejects_mismatched_model():
    W, a, b = tiny_rbm()
    chains = gibbs_raster(W, a, b, n_chains=4, n_bins=60, sweeps_per_bin=1, burn_in=5, seed=1)
    ds = make_raster(chains)
    sel, _ = _selected_and_truth(W[:-1], a[:-1], b, ds["unit_id"].values[:-1], bin_ms=20.0,
                                 sweeps_per_bin=1)
    with pytest.raises(ValueError, match="visible units"):
        dyn.dynamics_dataset(ds, sel, max_lag_bins=10, max_lag_sweeps=10, record_sweeps=20,
                             fit_lag_range=[1, 5])
    sel, _ = _selected_and_truth(W, a, b, ds["unit_id"].values, bin_ms=20.0, sweeps_per_bin=1)
    with pytest.raises(ValueError, match="record_sweeps"):
        dyn.dynamics_dataset(ds, sel, max_lag_bins=10, max_lag_sweeps=10, record_sweeps=10,
                             fit_lag_range=[1, 5])
    with pytest.raises(ValueError, match="fit_lag_range"):
        dyn.dynamics_dataset(ds, sel, max_lag_bins=10, max_lag_sweeps=10, record_sweeps=20,
                             fit_lag_range=[3, 11])


def test_clamp_lags_to_the_longest_segment():
    keep = dyn.clamp_lags(30, [1, 20], longest_segment_bins=40)
    assert (keep.max_lag_bins, keep.fit_lag_range, keep.clamped, keep.reason) == (
        30, (1, 20), False, "")
    c = dyn.clamp_lags(100, [1, 20], longest_segment_bins=40)
    assert (c.max_lag_bins, c.fit_lag_range, c.clamped) == (39, (1, 20), True)
    assert "max_lag_bins = 100 exceeds the longest contiguous segment (40 bins)" in c.reason
    c = dyn.clamp_lags(100, [2, 60], longest_segment_bins=40)
    assert c.fit_lag_range == (2, 39) and "[2, 60] clamped to [2, 39]" in c.reason
    with pytest.raises(ValueError, match=r"fit_lag_range = \[45, 60\].*hi <= 39"):
        dyn.clamp_lags(100, [45, 60], longest_segment_bins=40)
    with pytest.raises(ValueError, match="longest contiguous segment of the raster has 2 bin"):
        dyn.clamp_lags(10, [1, 5], longest_segment_bins=2)


def test_trial_structured_raster_clamps_lags_instead_of_nan():
    """Trials of 13 bins separated by gaps: lags >= 13 have no pair. The stage clamps
    max_lag_bins to 12 and says so; every stored lag is finite and equals the estimator's value
    on those segments."""
    W, a, b = tiny_rbm()
    chains = gibbs_raster(W, a, b, n_chains=60, n_bins=13, sweeps_per_bin=2, burn_in=100,
                          seed=5)
    n_c, n_t, n = chains.shape
    dt = 0.02
    time = np.concatenate([k * 1.0 + dt * np.arange(n_t) for k in range(n_c)])  # 0.74 s gaps
    ds = xr.Dataset({"raster": (("time_bin", "neuron"), chains.reshape(-1, n))},
                    coords={"time": ("time_bin", time),
                            "unit_id": ("neuron", np.arange(n, dtype=np.int64))},
                    attrs={"bin_ms": 20.0})
    sel, _ = _selected_and_truth(W, a, b, ds["unit_id"].values, bin_ms=20.0, sweeps_per_bin=2)
    out = dyn.dynamics_dataset(ds, sel, max_lag_bins=30, max_lag_sweeps=30, n_chains=50,
                               n_starts=20, burn_in_sweeps=50, record_sweeps=100,
                               fit_lag_range=[1, 20], n_se_blocks=10, seed=1)
    a_ = out.attrs
    assert (a_["lag_clamped"], a_["longest_segment_bins"], a_["max_lag_bins"]) == (1, 13, 12)
    assert (a_["max_lag_bins_requested"], a_["fit_lag_hi_requested"]) == (30, 20)
    assert (a_["fit_lag_lo"], a_["fit_lag_hi"]) == (1, 12) and "clamped to [1, 12]" in a_[
        "lag_clamp_reason"]
    assert out.sizes["lag_bin"] == 13 and np.isfinite(out["C_data"].values).all()
    segments = dyn.raster_segments(ds)
    c, _ = autocorrelation(ds["raster"].values.sum(1).astype(float), max_lag=12,
                           segments=segments, n_blocks=10)
    np.testing.assert_allclose(out["C_data"].values, c)
    # the first fitted lag in sweeps is stored (data: 2 sweeps per 20 ms bin -> about 2)
    assert a_["fit_first_lag_sweeps"] == pytest.approx(20.0 / a_["ms_per_sweep"])


def test_rescale_longer_than_the_first_lag_is_flagged(planted_dynamics):
    out, (W, a, b), (ds, sel, _) = planted_dynamics
    # planted: 10 ms per sweep, 20 ms bins: the first fitted lag is two sweeps, no interpolation
    assert out.attrs["lag_clamped"] == 0 and out.attrs["lag_clamp_reason"] == ""
    assert out.attrs["fit_first_lag_sweeps"] == pytest.approx(2.0, rel=0.1)
    # the same chains with every bin repeated 4 times as 5 ms bins: still 10 ms per sweep, but
    # a data bin is now half a sweep, so the first fitted lags fall below one sweep
    chains = gibbs_raster(W, a, b, n_chains=4, n_bins=750, sweeps_per_bin=2, burn_in=200,
                          seed=21)
    fine = make_raster(np.repeat(chains, 4, axis=1), bin_ms=5.0)
    out2 = dyn.dynamics_dataset(fine, sel, max_lag_bins=24, max_lag_sweeps=40, n_chains=101,
                                n_starts=51, burn_in_sweeps=100, record_sweeps=201,
                                fit_lag_range=[1, 16], n_se_blocks=10, seed=3)
    assert out2.attrs["ms_per_sweep"] == pytest.approx(10.0, rel=0.3)
    assert out2.attrs["fit_first_lag_sweeps"] == pytest.approx(
        5.0 / out2.attrs["ms_per_sweep"]) and out2.attrs["fit_first_lag_sweeps"] < 1
    assert out2.attrs["fit_n_sub_sweep_lags"] >= 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_chains_on_cuda_match_exact():
    W, a, b = tiny_rbm()
    exact = relaxation(W, a, b, max_lag=20)
    rbm = rbm_from_numpy(W, a, b, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(5)
    eq = dyn.equilibrium_autocorrelation(rbm, torch.zeros(2001, N_VIS, device="cuda"),
                                         burn_in_sweeps=300, record_sweeps=401, max_lag=20,
                                         generator=g)
    assert np.all(np.abs(eq["C"] - exact["C"]) <= 4.5 * eq["se"] + 0.005)


def test_fig_dynamics_shows_fit_and_baseline(planted_dynamics):
    from matplotlib.figure import Figure

    from spikerbm.plotting import fig_dynamics

    out = planted_dynamics[0]
    fig = fig_dynamics(out, title="planted")
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"model, {out.attrs['ms_per_sweep']:.3g} ms/sweep" in labels
    assert any(lbl.startswith("independent") for lbl in labels)
    assert any(lbl.startswith("planted, 10 ms/sweep") for lbl in labels)
    import matplotlib.pyplot as plt

    plt.close(fig)


@pytest.mark.workflow
def test_dynamics_rules_run_in_snakemake(workflow_dir, planted_dynamics, tmp_path):
    from conftest import snakemake

    from spikerbm import io

    _, _, (ds, sel, truth) = planted_dynamics
    (tmp_path / "wf").mkdir(exist_ok=True)  # workflow_dir copies Snakefile into tmp_path/wf
    wf = workflow_dir({"dynamics": {"max_lag_bins": 20, "max_lag_sweeps": 40, "n_chains": 61,
                                    "n_starts": 41, "burn_in_sweeps": 50, "record_sweeps": 101,
                                    "fit_lag_range": [1, 8]}},
                      sessions="session_id\tsource\tparams\ns1\tsynthetic\tseed=1\n")
    sel = sel.assign_attrs(n_hidden=N_HID)
    for name, data in (("raster", ds), ("selected", sel), ("truth", truth)):
        io.write_netcdf(data, wf / "results" / "s1" / f"{name}.nc")
    proc = snakemake(wf, "results/s1/figures/fig6_dynamics.png", "--cores", "1",
                     "--allowed-rules", "dynamics", "fig_dynamics")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = io.read_netcdf(wf / "results" / "s1" / "dynamics.nc")
    assert out.attrs["session_id"] == "s1" and out.attrs["seed"] >= 0
    assert out.attrs["truth_ms_per_sweep"] == 10.0 and out.sizes["lag_bin"] == 21
    assert (wf / "results" / "s1" / "figures" / "fig6_dynamics.png").stat().st_size > 10_000
    assert (wf / "results" / "logs" / "dynamics" / "s1.log").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_dynamics_dataset_on_cuda(planted_dynamics):
    _, _, (ds, sel, truth) = planted_dynamics
    out = dyn.dynamics_dataset(ds, sel, truth=truth, max_lag_bins=20, max_lag_sweeps=40,
                               n_chains=201, n_starts=151, burn_in_sweeps=100,
                               record_sweeps=301, fit_lag_range=[1, 8], n_se_blocks=10,
                               seed=3, device="cuda")
    assert out.attrs["ms_per_sweep"] == pytest.approx(10.0, rel=0.1)
