"""The autocorrelation estimator and THE integrated autocorrelation time (docs/methods.md §9).

Exact references: brute-force double loops, the two-state Markov chain (C(tau) = lambda^tau),
AR(1) processes (C = phi^tau, tau = (1 + phi) / (1 - phi)), and the exact block-Gibbs sweep
transition matrix of a tiny RBM (spikerbm.exact).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_dynamics import N_VIS, tiny_rbm

from spikerbm import diagnostics as D
from spikerbm import exact
from spikerbm.dynamics import equilibrium_autocorrelation
from spikerbm.rbm import rbm_from_numpy
from spikerbm.statistics import sample_equilibrium


def brute_autocorrelation(x: np.ndarray, segments: np.ndarray, max_lag: int) -> np.ndarray:
    idx = np.concatenate([np.arange(s, e) for s, e in segments])
    m = x[idx].mean()
    acov = []
    for tau in range(max_lag + 1):
        num, cnt = 0.0, 0
        for s, e in segments:
            for t in range(s, e - tau):
                num += (x[t] - m) * (x[t + tau] - m)
                cnt += 1
        acov.append(num / cnt if cnt else np.nan)
    acov = np.array(acov)
    return acov / acov[0]


def test_autocorrelation_equals_brute_force_with_segments():
    rng = np.random.default_rng(0)
    x = rng.normal(size=83).cumsum()
    segments = np.array([[0, 11], [11, 40], [45, 52], [52, 83]])
    c, se = D.autocorrelation(x, max_lag=13, segments=segments, n_blocks=5)
    np.testing.assert_allclose(c, brute_autocorrelation(x, segments, 13), rtol=0, atol=1e-10)
    assert c[0] == 1.0 and np.all(se[1:] > 0)
    # a lag longer than every segment has no pair: NaN, never a value from across a boundary
    c_long, _ = D.autocorrelation(x, max_lag=35, segments=segments, n_blocks=0)
    assert np.isnan(c_long[31:]).all() and np.isfinite(c_long[:29]).all()


def test_autocorrelation_2d_equals_1d_segments():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 31)).cumsum(1)
    segs = np.stack([np.arange(9) * 31, np.arange(1, 10) * 31], 1)
    c2, _ = D.autocorrelation(x, max_lag=12)
    c1, _ = D.autocorrelation(x.reshape(-1), max_lag=12, segments=segs)
    np.testing.assert_allclose(c2, c1, atol=1e-12)


def test_two_state_markov_chain():
    # P(0->1) = p01, P(1->0) = p10: C(tau) = lambda^tau, lambda = 1 - p01 - p10 = 0.6
    p01, p10, n_chains, n_t = 0.1, 0.3, 150, 400
    rng = np.random.default_rng(2)
    x = np.empty((n_chains, n_t))
    x[:, 0] = rng.random(n_chains) < p01 / (p01 + p10)  # stationary start
    for t in range(1, n_t):
        u = rng.random(n_chains)
        x[:, t] = np.where(x[:, t - 1] == 1, u >= p10, u < p01)
    lam = 1 - p01 - p10
    exact = lam ** np.arange(11)
    segs = np.stack([np.arange(n_chains) * n_t, np.arange(1, n_chains + 1) * n_t], 1)
    c, se = D.autocorrelation(x.reshape(-1), max_lag=10, segments=segs, n_blocks=20)
    # 60,000 samples: s.e. ~0.005; 4.5 s.e. + 0.005 floor is a few-in-10^5 false alarm
    assert np.all(se[1:] > 0.001) and np.all(se[1:] < 0.02)
    assert np.all(np.abs(c - exact) <= 4.5 * se + 0.005), (c, exact, se)


def test_ar1_process():
    phi, n_t = 0.85, 30_000
    rng = np.random.default_rng(4)
    eps = rng.normal(size=n_t)
    x = np.empty(n_t)
    x[0] = eps[0] / np.sqrt(1 - phi**2)
    for t in range(1, n_t):
        x[t] = phi * x[t - 1] + eps[t]
    c, se = D.autocorrelation(x, max_lag=15, n_blocks=30)
    exact = phi ** np.arange(16)
    assert np.all(np.abs(c - exact) <= 4.5 * se + 0.01)


def test_autocorrelation_time_of_ar1():
    # AR(1) with coefficient phi has tau_int = (1 + phi) / (1 - phi) = 9 for phi = 0.8
    rng = np.random.default_rng(0)
    phi, n, chains = 0.8, 4000, 50
    x = np.zeros((n, chains))
    x[0] = rng.normal(size=chains) / math.sqrt(1 - phi**2)
    noise = rng.normal(size=(n, chains))
    for t in range(1, n):
        x[t] = phi * x[t - 1] + noise[t]
    tau, ok = D.integrated_autocorr_time(x)
    # relative s.d. of tau over 2e5 points is ~ sqrt(2 (2M+1) / 2e5) ~ 3 % (Sokal); 10 % = 3 s.d.
    assert ok and tau == pytest.approx(9.0, rel=0.1)
    tau_short, ok_short = D.integrated_autocorr_time(np.cumsum(noise[:30], axis=0))
    assert not ok_short  # a random walk over 30 steps: no reliable estimate

def test_integrated_time_of_exponential():
    """C(t) = lam^t: tau = 1 + 2 sum lam^t = (1 + lam) / (1 - lam) = 9 for lam = 0.8. Sokal's
    window (M >= c tau) stops at M = 45 (c = 5) or 54 (c = 6): the neglected tail
    2 lam^(M+1) / (1 - lam) is < 4e-4, i.e. < 5e-5 of tau."""
    lam = 0.8
    c = lam ** np.arange(200.0)
    for window in (5.0, 6.0):
        assert D.integrated_time(c, c=window) == pytest.approx(9.0, rel=1e-4)
    # NaN lags end the sum; no window inside the finite part: the partial sum (a lower bound)
    assert D.integrated_time(np.array([1.0, 0.5, np.nan, 0.4])) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        D.integrated_time(c, c=0.0)


def test_both_estimators_agree_on_an_ar1_process_of_known_tau():
    """The trace estimator (standard 1/n autocorrelation about the global mean, used by the
    statistics stage) and integrated_time of the per-lag estimator (used by the dynamics stage)
    measure the same tau on one AR(1) process, tau = (1 + phi) / (1 - phi) = 5.67 for
    phi = 0.7: 100 chains x 3000 steps give a relative s.d. of
    sqrt(2 (2M + 1) / 3e5) ~ 1.5 % (M ~ 30, Sokal), so 8 % is > 5 s.d."""
    rng = np.random.default_rng(7)
    phi, n, chains = 0.7, 3000, 100
    x = np.zeros((n, chains))
    x[0] = rng.normal(size=chains) / math.sqrt(1 - phi**2)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + rng.normal(size=chains)
    want = (1 + phi) / (1 - phi)
    tau_trace, ok = D.integrated_autocorr_time(x)
    c, _ = D.autocorrelation(x.T, max_lag=200)
    tau_acf = D.integrated_time(c)
    assert ok and tau_trace == pytest.approx(want, rel=0.08)
    assert tau_acf == pytest.approx(want, rel=0.08)
    assert tau_acf == pytest.approx(tau_trace, rel=0.02)  # same data: only the estimators differ


def test_statistics_and_dynamics_report_one_tau_of_k():
    """statistics.nc tau_k_sweeps and dynamics.nc tau_int_model_sweeps are the same observable
    (K = sum_i v_i of equilibrium Gibbs chains) in the same convention: on a tiny RBM both equal
    the exact tau from the sweep transition matrix (~9.6 sweeps) within 15 % (their relative
    s.d. is ~4 % for the statistics traces, 120,000 points, and ~2 % for the dynamics chains),
    where the former conventions differed by a factor of 2."""
    W, a, b = tiny_rbm()
    exact_tau = D.integrated_time(exact.relaxation(W, a, b, max_lag=400)["C"])
    rbm = rbm_from_numpy(W, a, b)
    init = (np.random.default_rng(0).random((50, N_VIS)) < 0.3).astype(np.uint8)
    eq = sample_equilibrium(rbm, init_data=init, n_samples=20000, n_chains=200,
                            burn_in_sweeps=1000, thin_sweeps=1, seed=1)
    g = torch.Generator().manual_seed(2)
    dyn = equilibrium_autocorrelation(rbm, torch.as_tensor(init[np.arange(200) % 50]),
                                      burn_in_sweeps=300, record_sweeps=2000, max_lag=200,
                                      generator=g)
    tau_dyn = D.integrated_time(dyn["C"], c=6.0)  # as dynamics_dataset (tau_int_window 6)
    assert exact_tau == pytest.approx(9.6, rel=0.1)
    assert eq.attrs["tau_k_sweeps"] == pytest.approx(exact_tau, rel=0.15)
    assert tau_dyn == pytest.approx(exact_tau, rel=0.15)
