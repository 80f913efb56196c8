"""Pairwise maximum-entropy baseline (spikerbm.pairwise) against exact enumeration: the
{0,1} -> spin identity, pseudo-likelihood recovery of a planted Ising model within its
asymptotic (Godambe) error, Boltzmann refinement to moment matching, the Gibbs sampler's state
distribution, AIS log Z within its stated error, likelihood and the disk format."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from spikerbm import pairwise as P
from spikerbm.exact import binary_states

F64 = torch.float64


def planted(n: int, seed: int, *, j_scale: float = 0.6, h_mean: float = -1.0) -> P.IsingModel:
    rng = np.random.default_rng(seed)
    J = np.triu(rng.normal(0.0, j_scale, (n, n)), 1)
    return P.IsingModel.from_numpy(rng.normal(h_mean, 0.5, n), J + J.T)


def exact_probs(m: P.IsingModel) -> torch.Tensor:
    return torch.softmax(-P.energy(m, binary_states(m.n_neurons)), 0)


def exact_sample(m: P.IsingModel, n_samples: int, seed: int) -> np.ndarray:
    """Independent draws from P(v) by enumeration (the planted 'recording')."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.multinomial(exact_probs(m), n_samples, replacement=True, generator=g)
    return binary_states(m.n_neurons)[idx].to(torch.uint8).numpy()


def theta(m: P.IsingModel) -> np.ndarray:
    iu = np.triu_indices(m.n_neurons, 1)
    return np.concatenate([m.h.numpy(), m.J.numpy()[iu]])


def pl_sandwich(m: P.IsingModel, n_samples: int) -> np.ndarray:
    """Exact asymptotic covariance of the pseudo-likelihood estimate, H^-1 V H^-1 / T.

    Per state, x_i = a_i . theta with the design a_i (1 at h_i, v_j at J_ij); the PL score is
    sum_i (v_i - sigmoid(x_i)) a_i and its Hessian -sum_i sigmoid'(x_i) a_i a_i^T. H and V are
    their exact expectations under the model (Godambe, Ann. Math. Stat. 31, 1208, 1960; Besag 1975).
    """
    n = m.n_neurons
    v = binary_states(n)
    p = exact_probs(m)
    iu = np.triu_indices(n, 1)
    n_par = n + len(iu[0])
    A = torch.zeros(v.shape[0], n, n_par, dtype=F64)
    A[:, torch.arange(n), torch.arange(n)] = 1.0
    for q, (i, j) in enumerate(zip(*iu, strict=True)):
        A[:, i, n + q] = v[:, j]
        A[:, j, n + q] = v[:, i]
    xs = m.h + v @ m.J  # (S, N)
    r = v - torch.sigmoid(xs)
    score = torch.einsum("sn,snp->sp", r, A)
    w = torch.sigmoid(xs) * torch.sigmoid(-xs)
    H = torch.einsum("s,sn,snp,snq->pq", p, w, A, A)
    V = torch.einsum("s,sp,sq->pq", p, score, score)
    Hi = torch.linalg.inv(H)
    return (Hi @ V @ Hi).numpy() / n_samples


# ------------------------------------------------------------------ conventions


def test_spin_conversion_is_an_exact_identity():
    m = planted(7, 1, j_scale=1.5)
    v = binary_states(7)
    s = (2 * v - 1).numpy()
    H, K, const = P.spin_couplings(m)
    e_spin = const - s @ H - 0.5 * np.einsum("si,ij,sj->s", s, K, s)
    # float64 sums of ~50 terms of size O(1): round-off ~1e-14
    np.testing.assert_allclose(e_spin, P.energy(m, v).numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(K, K.T, atol=0)
    assert np.all(np.diag(K) == 0)


def test_energy_and_exact_log_z_by_brute_force():
    m = planted(5, 2)
    h, J = m.h.numpy(), m.J.numpy()
    z = 0.0
    for x in range(32):
        v = np.array([(x >> i) & 1 for i in range(5)], dtype=float)
        e = -h @ v - sum(J[i, j] * v[i] * v[j] for i in range(5) for j in range(i + 1, 5))
        assert P.energy(m, torch.as_tensor(v[None])).item() == pytest.approx(e, abs=1e-12)
        z += math.exp(-e)
    assert P.exact_log_z(m) == pytest.approx(math.log(z), abs=1e-12)


# ------------------------------------------------------------------ fit


def test_pseudolikelihood_recovers_a_planted_ising_model_within_its_error():
    # N = 11, T = 20000 exact samples. The PL estimate is asymptotically normal with the
    # Godambe covariance Sigma = H^-1 V H^-1 / T (computed exactly by enumeration), so
    # d^2 = (est - truth)^T Sigma^-1 (est - truth) ~ chi^2 with 66 degrees of freedom; accept
    # below its 99.9% quantile (~106). The independent-site model must fail the same test.
    m = planted(11, 0)
    x = exact_sample(m, 20000, seed=1)
    fit = P.fit_pseudolikelihood(x, l2=0.0, tol=1e-8)
    assert fit.converged and fit.grad_max < 1e-6
    sigma = pl_sandwich(m, 20000)
    prec = np.linalg.inv(sigma)
    err = theta(fit.model) - theta(m)
    d2 = float(err @ prec @ err)
    limit = stats.chi2.ppf(0.999, err.size)
    assert d2 < limit, (d2, limit)
    # every single parameter within 4.5 of its own standard error (66 params: P(any) ~ 5e-4)
    assert np.all(np.abs(err) < 4.5 * np.sqrt(np.diag(sigma)))
    r = x.mean(0)
    ind = theta(P.IsingModel.from_numpy(np.log(r) - np.log1p(-r), np.zeros((11, 11))))
    assert float((ind - theta(m)) @ prec @ (ind - theta(m))) > 10 * limit
    # the stationarity condition of PL: <v_i> equals the mean conditional probability
    xt = torch.as_tensor(x, dtype=F64)
    cond = torch.sigmoid(fit.model.h + xt @ fit.model.J).mean(0).numpy()
    np.testing.assert_allclose(cond, r, atol=1e-6)


def test_l2_penalty_shrinks_couplings_and_silent_neurons_are_refused():
    m = planted(9, 3)
    x = exact_sample(m, 3000, seed=2)
    j0 = np.abs(P.fit_pseudolikelihood(x, l2=0.0).model.J.numpy()).sum()
    j1 = np.abs(P.fit_pseudolikelihood(x, l2=0.05).model.J.numpy()).sum()
    assert j1 < 0.8 * j0
    bad = x.copy()
    bad[:, 4] = 0
    with pytest.raises(ValueError, match=r"neurons \[4\] are silent in the train data"):
        P.fit_pseudolikelihood(bad)
    with pytest.raises(ValueError, match="only 0 and 1"):
        P.fit_pseudolikelihood(x * 2)


def test_boltzmann_refinement_reaches_moment_matching():
    # From the independent-site model (J = 0), persistent-chain Boltzmann learning must reach
    # the maximum-likelihood condition <v_i v_j>_model = <v_i v_j>_data (exact model moments by
    # enumeration). Chain noise per step ~ sqrt(.25 / 2000) = 0.011, averaged over the second
    # half of 400 steps: the residual is a few 1e-3; J = 0 starts 0.1 away.
    m = planted(9, 4)
    x = exact_sample(m, 20000, seed=5)
    xd = x.astype(np.float64)
    pair_d = xd.T @ xd / len(xd)
    r = xd.mean(0)
    start = P.PairwiseFit(P.IsingModel.from_numpy(np.log(r) - np.log1p(-r), np.zeros((9, 9))),
                          objective=math.nan, n_iter=0, converged=True, grad_max=math.nan,
                          seconds=0.0, rates=r, info={"l2": 0.0})
    _, pair_0 = P.exact_moments(start.model)
    assert np.abs(pair_0 - pair_d).max() > 0.05
    ref = P.refine_boltzmann(start, x, n_steps=400, n_chains=2000, lr=0.05,
                             generator=torch.Generator().manual_seed(0))
    mean_m, pair_m = P.exact_moments(ref.model)
    assert np.abs(mean_m - r).max() < 0.01
    assert np.abs(pair_m - pair_d).max() < 0.01
    assert ref.info["method"] == "pseudolikelihood+boltzmann"


# ------------------------------------------------------------------ sampling


def test_gibbs_sampler_draws_the_exact_distribution():
    # 20000 independent chains (one sample each after 30 sweeps) of a 7-neuron model with
    # strong couplings: chi-square goodness of fit of the 128 state counts against the exact
    # probabilities (cells with expected count < 5 pooled); reject only below p = 1e-3.
    m = planted(7, 6, j_scale=1.2, h_mean=-0.5)
    s = P.sample_model(m, n_samples=20000, n_chains=20000, burn_in_sweeps=30, thin_sweeps=1,
                       seed=0, dtype=F64)
    assert s.shape == (20000, 7) and s.dtype == np.uint8
    idx = (s.astype(np.int64) << np.arange(7)).sum(1)
    obs = np.bincount(idx, minlength=128).astype(float)
    exp = exact_probs(m).numpy() * len(s)
    small = exp < 5
    obs = np.append(obs[~small], obs[small].sum())
    exp = np.append(exp[~small], exp[small].sum())
    p = stats.chisquare(obs, exp).pvalue
    assert p > 1e-3, p
    # the same test rejects a sampler that is one sweep short of equilibrium from a bad start
    bad = P.sample_model(m, n_samples=20000, n_chains=20000, burn_in_sweeps=0, thin_sweeps=1,
                         seed=0, init=np.ones((1, 7), dtype=np.uint8), dtype=F64)
    obs_b = np.bincount((bad.astype(np.int64) << np.arange(7)).sum(1), minlength=128)
    obs_b = np.append(obs_b[~small], obs_b[small].sum())
    assert stats.chisquare(obs_b, exp).pvalue < 1e-6


def test_blocked_sweeps_equal_the_plain_sequential_scan():
    # The block bookkeeping (fields from one product per block, rank-one updates inside) must
    # not change the chain: the noise is drawn site after site whatever the block size, so a
    # sweep with blocks of 1 (plain sequential Gibbs), 3 (several blocks, a ragged last one)
    # and 64 (one block) gives the same states, bit for bit in float64 on this small model.
    m = planted(11, 13, j_scale=1.0)
    out = []
    for block in (1, 3, 64):
        g = torch.Generator().manual_seed(4)
        v0 = (torch.rand(500, 11, generator=g, dtype=F64) < 0.3).to(F64)
        c = P.IsingChains(v0, generator=g, block=block)
        c.sweep(m, k=5)
        out.append(c.v.numpy())
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])


def test_chains_restart_bitwise_from_their_state_dict():
    m = planted(9, 14)
    g = torch.Generator().manual_seed(5)
    c = P.IsingChains(torch.zeros(50, 9, dtype=F64), generator=g, block=4)
    c.sweep(m, k=3)
    state = c.state_dict()
    c.sweep(m, k=4)
    other = P.IsingChains(torch.ones(50, 9, dtype=F64), generator=torch.Generator())
    other.load_state_dict(state)
    other.sweep(m, k=4)
    np.testing.assert_array_equal(other.v.numpy(), c.v.numpy())
    with pytest.raises(ValueError, match="chain state has"):
        P.IsingChains(torch.zeros(5, 9), generator=torch.Generator()).load_state_dict(state)


def test_thinned_samples_match_exact_moments_and_are_seeded():
    # 200 chains x 50 samples, thinned by 3 sweeps: the rates agree with the exact ones within
    # 4 standard errors computed from the per-chain means (independent chains).
    m = planted(13, 7, j_scale=0.5)
    s = P.sample_model(m, n_samples=10000, n_chains=200, burn_in_sweeps=50, thin_sweeps=3,
                       seed=11, dtype=F64)
    mean_m, _ = P.exact_moments(m)
    per_chain = s.reshape(50, 200, 13).mean(0)
    se = per_chain.std(0, ddof=1) / math.sqrt(200)
    assert np.all(np.abs(s.mean(0) - mean_m) < 4 * se)
    again = P.sample_model(m, n_samples=10000, n_chains=200, burn_in_sweeps=50, thin_sweeps=3,
                           seed=11, dtype=F64)
    np.testing.assert_array_equal(s, again)


# ------------------------------------------------------------------ log Z and likelihood


def test_ais_log_z_within_its_stated_error_over_seeds():
    # 12 models of 13 neurons; 6 repeats each. z = (AIS - exact) / (log_z_std / sqrt(6)) is
    # ~ t with 5 d.o.f. when the stated error is right: each |z| <= 2.57 with prob. 0.95, so at
    # least 9 of 12 (P(fewer) ~ 0.02 under Binomial(12, 0.95)) and none beyond 8 (P ~ 5e-4).
    z = []
    for seed in range(12):
        m = planted(13, 100 + seed, j_scale=0.5)
        exact = P.exact_log_z(m)
        est = P.ais_log_z(m, n_chains=200, n_betas=200, n_repeats=6,
                          generator=torch.Generator().manual_seed(seed))
        assert est.method == "ais" and len(est.repeats) == 6
        z.append((est.log_z - exact) / (est.log_z_std / math.sqrt(6)))
    z = np.abs(np.array(z))
    assert (z <= 2.57).sum() >= 9 and z.max() < 8, z
    # a poor base model (rates 1/2) still converges to the same value
    m = planted(13, 100, j_scale=0.5)
    est = P.ais_log_z(m, n_chains=200, n_betas=300, n_repeats=4,
                      base_rates=np.full(13, 0.5), generator=torch.Generator().manual_seed(1))
    assert abs(est.log_z - P.exact_log_z(m)) < 5 * est.log_z_std / 2 + 1e-3


def test_log_likelihood_matches_enumeration():
    m = planted(9, 8)
    x = exact_sample(m, 500, seed=3)
    lz = P.estimate_log_z(m, method="exact")
    ll = P.log_likelihood(m, x, lz)
    logp = torch.log(exact_probs(m)).numpy()
    idx = (x.astype(np.int64) << np.arange(9)).sum(1)
    assert ll["ll"] == pytest.approx(logp[idx].mean(), abs=1e-10)
    assert ll["ll_std"] == 0.0 and ll["ll_per_neuron"] == pytest.approx(ll["ll"] / 9)


# ------------------------------------------------------------------ comparison and disk


def test_compare_couplings_and_dataset_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(9, 9))
    a = a + a.T
    out = P.compare_couplings(a, 2 * a + 0.1)
    assert out["pearson_r"] == pytest.approx(1.0) and out["slope"] == pytest.approx(2.0)
    assert out["intercept"] == pytest.approx(0.1) and out["n_pairs"] == 36
    m = planted(9, 9)
    x = exact_sample(m, 2000, seed=4)
    fit = P.fit_pseudolikelihood(x, l2=1e-3)
    lz = P.estimate_log_z(fit.model, method="exact")
    ds = P.model_dataset(fit, unit_id=np.arange(100, 109), area=np.array(["VISp"] * 9),
                         log_z=lz, ll_test=P.log_likelihood(fit.model, x, lz))
    path = tmp_path / "pairwise.nc"
    ds.to_netcdf(path)
    import xarray as xr

    with xr.open_dataset(path) as back:
        m2 = P.model_from_dataset(back)
        assert back.attrs["log_z_method"] == "exact" and "ll_test_std" in back.attrs
        np.testing.assert_array_equal(back["J"].values, back["J01"].values / 4)
    np.testing.assert_array_equal(m2.J.numpy(), fit.model.J.numpy())
    np.testing.assert_array_equal(m2.h.numpy(), fit.model.h.numpy())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_sampler_and_ais_agree_with_enumeration():
    # the same exact references on the GPU, sampling in float32 (energies stay float64)
    m_cpu = planted(9, 12, j_scale=0.8)
    m = m_cpu.to(device="cuda")
    fit = P.fit_pseudolikelihood(exact_sample(m_cpu, 20000, seed=1), l2=0.0, device="cuda")
    assert fit.model.device.type == "cuda"
    # the chi-square(45) test of the CPU recovery test, with the exact Godambe covariance
    err = theta(fit.model.to(device="cpu")) - theta(m_cpu)
    d2 = float(err @ np.linalg.inv(pl_sandwich(m_cpu, 20000)) @ err)
    assert d2 < stats.chi2.ppf(0.999, err.size), d2
    s = P.sample_model(m, n_samples=20000, n_chains=20000, burn_in_sweeps=30, thin_sweeps=1,
                       seed=0)
    obs = np.bincount((s.astype(np.int64) << np.arange(9)).sum(1), minlength=512)
    exp = exact_probs(m_cpu).numpy() * len(s)
    small = exp < 5
    p = stats.chisquare(np.append(obs[~small], obs[small].sum()),
                        np.append(exp[~small], exp[small].sum())).pvalue
    assert p > 1e-3, p
    est = P.ais_log_z(m.to(dtype=torch.float32), n_chains=500, n_betas=300, n_repeats=4,
                      generator=torch.Generator(device="cuda").manual_seed(0))
    exact = P.exact_log_z(m)
    assert abs(est.log_z - exact) < 5 * est.log_z_std / 2 + 2e-3


# ------------------------------------------------------------------ workflow stage (issue 20)


def test_effective_fields_are_the_exact_conditional_log_odds():
    m = planted(9, 11)
    v = binary_states(9)[::7].to(torch.uint8).numpy()  # 74 states
    x = P.effective_fields(m, v)
    for i in (0, 4, 8):
        on, off = v.copy(), v.copy()
        on[:, i], off[:, i] = 1, 0
        # logit P(v_i = 1 | v_-i) = E(v_i = 0) - E(v_i = 1), by the energy itself
        ref = (P.energy(m, off) - P.energy(m, on)).numpy()
        np.testing.assert_allclose(x[:, i], ref, rtol=0, atol=1e-12)


def test_equilibrium_sampling_matches_enumeration_and_its_check_can_fail():
    # 7 neurons, strong couplings: 4000 chains, one sample each after 200 sweeps, against the
    # exact distribution (chi-square, as the sampler test); the check passes (tau ~ a few
    # sweeps, 200 >= 20 tau) and fails when tau_factor demands more burn-in than was run.
    m = planted(7, 6, j_scale=1.2, h_mean=-0.5)
    data = exact_sample(m, 3000, seed=1)
    eq = P.sample_equilibrium(m, init_data=data, n_samples=4000, n_chains=4000,
                              burn_in_sweeps=200, thin_sweeps=1, seed=3, dtype=F64)
    s = eq["samples"].values
    assert s.shape == (4000, 7) and eq.attrs["equilibrated"] == 1, eq.attrs
    assert eq.attrs["n_chains_data"] == eq.attrs["n_chains_random"] == 2000
    obs = np.bincount((s.astype(np.int64) << np.arange(7)).sum(1), minlength=128).astype(float)
    exp = exact_probs(m).numpy() * len(s)
    small = exp < 5
    obs = np.append(obs[~small], obs[small].sum())
    exp = np.append(exp[~small], exp[small].sum())
    assert stats.chisquare(obs, exp).pvalue > 1e-3
    strict = P.sample_equilibrium(m, init_data=data, n_samples=400, n_chains=400,
                                  burn_in_sweeps=5, thin_sweeps=1, seed=3, tau_factor=1e3)
    assert strict.attrs["equilibrated"] == 0 and "burn-in 5 sweeps" in strict.attrs[
        "equilibration_reason"]
    again = P.sample_equilibrium(m, init_data=data, n_samples=400, n_chains=400,
                                 burn_in_sweeps=5, thin_sweeps=1, seed=3, tau_factor=1e3)
    np.testing.assert_array_equal(strict["samples"].values, again["samples"].values)


def test_fit_session_beats_the_independent_model_with_exact_log_z():
    # planted 12-neuron model, 6000 train / 3000 test exact samples: N <= exact_max_neurons, so
    # log Z is exact, and the test LL equals -<E>_test - log Z by enumeration; the fitted model
    # beats the independent-site floor on test data by far more than its sampling error
    m = planted(12, 4, j_scale=0.5)
    train, test = exact_sample(m, 6000, seed=5), exact_sample(m, 3000, seed=6)
    model, ds = P.fit_session(train, test, unit_id=np.arange(12) + 100,
                              area=np.array(["A"] * 6 + ["B"] * 6), seed=1, refine_steps=30,
                              refine_chains=200, exact_max_neurons=20)
    assert ds.attrs["log_z_method"] == "exact" and ds.attrs["log_z_std"] == 0.0
    assert ds.attrs["method"] == "pseudolikelihood+boltzmann" and ds.attrs["pl_converged"] == 1
    e_test = P.energy(model, test).numpy()
    assert ds.attrs["ll_test"] == pytest.approx(-e_test.mean() - P.exact_log_z(model), abs=1e-9)
    gain = ds.attrs["ll_test"] - ds.attrs["floor_test"]
    assert gain > 10 * ds.attrs["ll_test_sem"] and gain > 0.05, ds.attrs
    assert ds.attrs["ll_test_per_neuron"] == pytest.approx(ds.attrs["ll_test"] / 12)
    np.testing.assert_array_equal(ds["unit_id"].values, np.arange(12) + 100)


def _comparison_inputs(n: int = 6):
    import xarray as xr

    rng = np.random.default_rng(0)
    K = np.triu(rng.normal(0, 0.1, (n, n)), 1)
    K = K + K.T
    coords = {"unit_id": ("neuron", np.arange(n)), "area": ("neuron", np.array(["A"] * n))}
    coup = xr.Dataset({"J": (("neuron", "neuron2"), 0.5 * K + 0.01)}, coords=coords)
    pw = xr.Dataset({"J": (("neuron", "neuron2"), K)}, coords=coords,
                    attrs={"ll_test_per_neuron": -0.30, "ll_test_std": 0.06, "floor_test": -1.92,
                           "ll_test_sem": 0.012, "log_z_method": "ais"})
    selected = {"ll_test": -1.74, "ll_test_std": 0.0, "floor_test": -1.92, "n_hidden": 5,
                "log_z_method": "exact"}
    return coup, pw, selected


def test_model_comparison_row():
    coup, pw, selected = _comparison_inputs()
    row = P.model_comparison(session="s", selected=selected,
                             statistics={"score_corr3": 0.8, "equilibrated": 1}, couplings=coup,
                             pairwise=pw, pairwise_statistics={"score_corr3": 0.3,
                                                               "equilibrated": 0})
    assert row["ll_test_rbm"] == pytest.approx(-0.29) and row["ll_test_independent"] == \
        pytest.approx(-0.32)
    assert row["rbm_minus_pairwise"] == pytest.approx(0.01)
    assert row["rbm_minus_pairwise_std"] == pytest.approx(0.01)  # hypot(0, 0.06 / 6)
    # the RBM's J is 0.5 K + 0.01 off the diagonal: r = 1, slope 0.5, intercept 0.01
    assert row["j_pearson_r"] == pytest.approx(1.0) and row["j_slope"] == pytest.approx(0.5)
    assert row["j_intercept"] == pytest.approx(0.01) and row["j_n_pairs"] == 15
    assert (row["score_corr3_rbm"], row["score_corr3_pairwise"]) == (0.8, 0.3)
    assert math.isnan(row["score_covariance_rbm"]) and row["equilibrated_pairwise"] == 0
    assert math.isnan(row["rbm_minus_pairwise_sem"])  # no per-bin energies given
    # paired test-set error: per-bin LL difference = E_pw - F_rbm + const, sd 1 over 400 bins
    rng = np.random.default_rng(1)
    f_rbm = rng.normal(5.0, 2.0, 400)
    e_pw = f_rbm + rng.normal(0.0, 1.0, 400)
    paired = P.model_comparison(session="s", selected=selected, statistics={}, couplings=coup,
                                pairwise=pw, pairwise_statistics={},
                                test_energies=(f_rbm, e_pw))
    sem = np.std(e_pw - f_rbm, ddof=1) / 20 / 6  # / sqrt(400) / N
    assert paired["rbm_minus_pairwise_sem"] == pytest.approx(sem)
    other = pw.assign_coords(unit_id=("neuron", np.arange(6) + 1))
    with pytest.raises(ValueError, match="different neurons"):
        P.model_comparison(session="s", selected=selected, statistics={}, couplings=coup,
                           pairwise=other, pairwise_statistics={})
