"""Tests of spikerbm.statistics (docs/methods.md §5): estimators against brute force, h_eff against
exact enumeration, the equilibration check, and the normalised score on planted data."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from spikerbm import io, plotting
from spikerbm import statistics as st
from spikerbm.exact import binary_states
from spikerbm.provenance import provenance_attrs
from spikerbm.rbm import RBM, energy, free_energy

# distinct odd sizes so swapped axes fail
N, M, T = 7, 5, 13


def random_binary(t: int, n: int, seed: int, p: float = 0.35) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((t, n)) < rng.uniform(0.1, 0.7, size=n) * p / 0.35).astype(np.uint8)


def random_rbm(n: int, m: int, seed: int, w_std: float = 1.0, a_mean: float = -0.5) -> RBM:
    g = torch.Generator().manual_seed(seed)
    return RBM(w_std * torch.randn(n, m, generator=g),
               a_mean + 0.5 * torch.randn(n, generator=g),
               0.5 * torch.randn(m, generator=g))


def all_states(n: int) -> np.ndarray:
    """All states, most significant bit first (the order the seeded exact samples are drawn in)."""
    return binary_states(n, dtype=torch.uint8).flip(1).numpy()


def exact_distribution(rbm: RBM) -> tuple[np.ndarray, np.ndarray]:
    """All visible states and their exact probabilities (enumeration)."""
    states = all_states(rbm.n_visible)
    logp = -free_energy(rbm, torch.as_tensor(states, dtype=torch.float64)).numpy()
    p = np.exp(logp - logp.max())
    return states, p / p.sum()


def exact_samples(states: np.ndarray, p: np.ndarray, n: int, rng) -> np.ndarray:
    return states[rng.choice(len(p), size=n, p=p)]


# ------------------------------------------------------------------ estimators vs brute force
@pytest.mark.parametrize("t", [T, 130])  # 130: several 64-bit words, not a multiple of 64
def test_moments_match_brute_force_loops(t):
    v = random_binary(t, N, seed=t)
    x = v.astype(float)
    m_ref = np.array([sum(x[s, i] for s in range(t)) / t for i in range(N)])
    cov_ref = np.zeros((N, N))
    for i in range(N):
        for j in range(N):
            cov_ref[i, j] = sum(x[s, i] * x[s, j] for s in range(t)) / t - m_ref[i] * m_ref[j]
    np.testing.assert_allclose(st.firing_rates(v), m_ref, rtol=0, atol=1e-14)
    np.testing.assert_allclose(st.covariances(v), cov_ref, rtol=0, atol=1e-14)

    trip = np.array(list(itertools.combinations(range(N), 3)))
    c3_ref = np.array([
        sum((x[s, i] - m_ref[i]) * (x[s, j] - m_ref[j]) * (x[s, k] - m_ref[k])
            for s in range(t)) / t  # normalised by the number of samples, own means
        for i, j, k in trip
    ])
    c3 = st.connected_corr3(v, trip)
    np.testing.assert_allclose(c3, c3_ref, rtol=0, atol=1e-14)
    # precomputed moments give the same result, in any triplet order
    perm = np.random.default_rng(0).permutation(len(trip))
    np.testing.assert_allclose(
        st.connected_corr3(v, trip[perm], moments2=st.second_moments(v)), c3_ref[perm],
        rtol=0, atol=1e-14)
    assert np.abs(c3_ref).max() > 1e-3  # the check is not vacuous

    k_ref = np.zeros(N + 1)
    for s in range(t):
        k_ref[int(x[s].sum())] += 1 / t
    np.testing.assert_allclose(st.activity_histogram(v), k_ref, atol=1e-14)


def test_upper_pairs_order_and_count():
    i, j = st.upper_pairs(N)
    assert len(i) == N * (N - 1) // 2
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == list(
        itertools.combinations(range(N), 2))


def test_sample_triplets():
    assert st.sample_triplets(N, 1000, seed=1).tolist() == [
        list(c) for c in itertools.combinations(range(N), 3)]
    n = 31
    t = st.sample_triplets(n, 501, seed=4)
    assert t.shape == (501, 3)
    assert ((t[:, 0] < t[:, 1]) & (t[:, 1] < t[:, 2])).all() and t.min() >= 0 and t.max() < n
    assert len({tuple(r) for r in t.tolist()}) == 501  # distinct
    assert np.array_equal(t, st.sample_triplets(n, 501, seed=4))  # seeded
    assert not np.array_equal(t, st.sample_triplets(n, 501, seed=5))
    with pytest.raises(ValueError, match="at least 3 neurons"):
        st.sample_triplets(2, 10, seed=0)


def test_pca_matches_svd():
    train = random_binary(53, N, seed=3)
    axes, mean, explained = st.pca_axes(train, n_components=2)
    xc = train - train.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    for c in range(2):  # same axis up to sign
        assert abs(abs(axes[:, c] @ vt[c]) - 1) < 1e-10
    np.testing.assert_allclose(explained, (s**2 / (s**2).sum())[:2], rtol=1e-10)
    np.testing.assert_allclose(np.abs((train - mean) @ axes), np.abs(xc @ vt[:2].T), atol=1e-10)
    # sign convention: the largest-magnitude component of every axis is positive
    assert (axes[np.abs(axes).argmax(0), [0, 1]] > 0).all()


def test_compare_statistic_and_score():
    rng = np.random.default_rng(2)
    x = rng.normal(size=41)
    y = 0.7 * x + 0.3 * rng.normal(size=41) + 0.1
    res = st.compare_statistic(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    assert res["slope"] == pytest.approx(slope, rel=1e-12)
    assert res["intercept"] == pytest.approx(intercept, rel=1e-10)
    assert res["r"] == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
    assert res["msd"] == pytest.approx(np.mean((x - y) ** 2), rel=1e-12)
    assert st.normalised_score(4.0, 2.5, 1.0) == pytest.approx(0.5)
    assert st.normalised_score(4.0, 1.0, 1.0) == pytest.approx(1.0)
    assert st.normalised_score(4.0, 4.0, 1.0) == pytest.approx(0.0)
    assert math.isnan(st.normalised_score(1.0, 0.5, 1.0))  # zero gap
    assert math.isnan(st.normalised_score(1.0, 0.5, 1.2))  # test worse than the floor
    assert math.isnan(st.normalised_score(1.0, 0.5, 0.95))  # gap below MIN_SCORE_GAP
    with pytest.raises(ValueError, match="equal-length"):
        st.compare_statistic(x, y[:-1])


def test_bad_input_is_rejected_with_clear_errors():
    v = random_binary(T, N, seed=1)
    bad = v.astype(int)
    bad[0, 0] = 2
    with pytest.raises(ValueError, match="binary"):
        st.firing_rates(bad)
    with pytest.raises(ValueError, match="2-D"):
        st.covariances(v[0])
    rbm = random_rbm(N, M, seed=0)
    with pytest.raises(ValueError, match="visible units"):
        st.compute_statistics(rbm, train=v[:, :5], test=v[:, :5], n_samples=20, n_chains=8,
                              burn_in_sweeps=2, thin_sweeps=1, n_triplets=10, heff_bins=3,
                              energy_bins=4, seed=0)
    with pytest.raises(ValueError, match="n_chains"):
        st.sample_equilibrium(rbm, init_data=v, n_samples=10, n_chains=2, burn_in_sweeps=2,
                              thin_sweeps=1, seed=0)


# ------------------------------------------------------------------ h_eff vs enumeration
def test_effective_fields_match_exact_conditional():
    rbm = random_rbm(N, M, seed=11, w_std=1.5)
    v = random_binary(11, N, seed=12)
    heff = st.effective_fields(rbm, v, max_elements=N * M * 3)  # several chunks
    assert heff.shape == (11, N)
    hs = torch.as_tensor(all_states(M), dtype=torch.float64)
    for s in range(v.shape[0]):
        for i in range(N):
            both = np.repeat(v[s][None], 2, axis=0).astype(float)
            both[0, i], both[1, i] = 0, 1
            vt = torch.as_tensor(both, dtype=torch.float64)
            # marginal energies of the two states by brute-force enumeration of h
            e = [-torch.logsumexp(-energy(rbm, vt[c].expand(len(hs), N), hs), 0).item()
                 for c in (0, 1)]
            p1 = 1 / (1 + math.exp(e[1] - e[0]))  # P(v_i = 1 | v_-i)
            assert 1 / (1 + math.exp(-heff[s, i])) == pytest.approx(p1, rel=1e-10, abs=1e-13)
            assert heff[s, i] == pytest.approx(e[0] - e[1], abs=1e-10)


def test_heff_calibration_matches_loops():
    rng = np.random.default_rng(5)
    h = {"test": rng.normal(size=(23, N)), "generated": rng.normal(size=(17, N))}
    v = {k: (rng.random(x.shape) < 1 / (1 + np.exp(-x))).astype(np.uint8) for k, x in h.items()}
    cal = st.heff_calibration(h, v, n_bins=5)
    edges = cal["edges"]
    assert len(edges) == 6
    for s, name in enumerate(h):
        for b in range(5):
            lo, hi = edges[b], edges[b + 1]
            inside = [(hh, vv) for hh, vv in zip(h[name].ravel(), v[name].ravel(), strict=True)
                      if (lo <= hh < hi) or (b == 4 and hh == hi)]
            n = len(inside)
            assert cal["count"][s, b] == n
            f = sum(vv for _, vv in inside) / n
            assert cal["fraction"][s, b] == pytest.approx(f)
            assert cal["sem"][s, b] == pytest.approx(math.sqrt(f * (1 - f) / n))
            assert cal["sigma"][s, b] == pytest.approx(
                sum(1 / (1 + math.exp(-hh)) for hh, _ in inside) / n)
    assert cal["count"].sum() == 23 * N + 17 * N


# ------------------------------------------------------------------ equilibration check


def bimodal_rbm(n: int = 16) -> RBM:
    """One hidden unit couples all visibles strongly: modes 'mostly off' (v_i ~ B(0.12)) and
    'mostly on' (v_i ~ B(0.88)) of equal weight (b = -n (softplus(2) - softplus(-2)) = -2n);
    leaving a mode needs K to cross n/2, probability ~1e-4 per sweep for n = 16."""
    return RBM(torch.cat([torch.full((n, 1), 4.0), torch.zeros(n, 1)], 1),
               torch.full((n,), -2.0), torch.tensor([-2.0 * n, 0.0]))


def test_equilibrium_check_flags_short_run_and_stuck_chains():
    rbm = bimodal_rbm()
    states, p = exact_distribution(rbm)
    data = exact_samples(states, p, 2000, np.random.default_rng(1))
    assert 0.3 < (data.sum(1) > 8).mean() < 0.7  # both modes present in the data
    zeros = np.zeros((1, rbm.n_visible), dtype=np.uint8)
    short = st.sample_equilibrium(rbm, init_data=data, init_random=zeros, n_samples=400,
                                  n_chains=200, burn_in_sweeps=2, thin_sweeps=1, seed=3)
    assert short.attrs["equilibrated"] == 0
    assert "burn-in 2 sweeps" in short.attrs["equilibration_reason"]
    # long burn-in, but the zero-started chains never leave the 'off' mode
    stuck = st.sample_equilibrium(rbm, init_data=data, init_random=zeros, n_samples=400,
                                  n_chains=200, burn_in_sweeps=300, thin_sweeps=2, seed=3)
    assert stuck.attrs["equilibrated"] == 0
    assert "disagree on mean K" in stuck.attrs["equilibration_reason"]
    # expected z ~ 6 / sqrt(36/100) = 10 (half the data chains sit ~12 active units higher)
    assert abs(stuck.attrs["z_k"]) > 5


def test_equilibrium_check_passes_long_run_with_correct_samples():
    rbm = random_rbm(13, 5, seed=2, w_std=0.8)
    states, p = exact_distribution(rbm)
    data = exact_samples(states, p, 3000, np.random.default_rng(0))
    zeros = np.zeros((1, 13), dtype=np.uint8)
    eq = st.sample_equilibrium(rbm, init_data=data, init_random=zeros, n_samples=6000,
                               n_chains=400, burn_in_sweeps=400, thin_sweeps=4, seed=7)
    a = eq.attrs
    assert a["equilibrated"] == 1, a["equilibration_reason"]
    assert a["tau_converged"] == 1 and a["tau_energy_sweeps"] < 20 and a["tau_k_sweeps"] < 20
    assert eq["samples"].shape == (6000, 13) and eq["samples"].dtype == np.uint8
    # the samples follow the exact distribution: rates within 5 s.e. (s.e. inflated x2 for the
    # correlation of thinned samples along a chain)
    m_exact = p @ states
    se = 2 * np.sqrt(m_exact * (1 - m_exact) / 6000)
    assert np.all(np.abs(eq["samples"].values.mean(0) - m_exact) < 5 * se)
    # the same run with a 2-sweep burn-in is flagged
    short = st.sample_equilibrium(rbm, init_data=data, init_random=zeros, n_samples=400,
                                  n_chains=400, burn_in_sweeps=2, thin_sweeps=1, seed=7)
    assert short.attrs["equilibrated"] == 0


# ------------------------------------------------------------------ planted ground truth
def _scores(train, test, gen, indep, triplets):
    out = {}
    for name, fn in (("covariance", lambda v: st.covariances(v)[st.upper_pairs(v.shape[1])]),
                     ("corr3", lambda v: st.connected_corr3(v, triplets))):
        x = fn(train)
        d = [np.mean((x - fn(y)) ** 2) for y in (test, gen, indep)]
        out[name] = st.normalised_score(d[2], d[1], d[0])
    return out


def test_samples_of_the_planted_rbm_score_near_one():
    n_vis, n_samples = 9, 10000
    truth = random_rbm(n_vis, 3, seed=21, w_std=2.0, a_mean=-1.0)
    states, p = exact_distribution(truth)
    rng = np.random.default_rng(8)
    train = exact_samples(states, p, 15000, rng)
    test = exact_samples(states, p, n_samples, rng)
    ds = st.compute_statistics(truth, train=train, test=test, n_samples=n_samples,
                               n_chains=500, burn_in_sweeps=300, thin_sweeps=3,
                               n_triplets=1000, heff_bins=11, energy_bins=17, seed=4)
    assert ds.attrs["equilibrated"] == 1, ds.attrs["equilibration_reason"]

    # finite-sample noise of the score: replicate the whole comparison with exact samples
    trip = np.array(list(itertools.combinations(range(n_vis), 3)))
    reps, wrong = [], []
    weak = random_rbm(n_vis, 3, seed=21, w_std=1.0, a_mean=-1.0)  # same seed, weaker couplings
    states_w, p_w = exact_distribution(weak)
    for _ in range(12):
        tr, te, ge = (exact_samples(states, p, n_samples, rng) for _ in range(3))
        ind = (rng.random(tr.shape) < tr.mean(0)).astype(np.uint8)
        reps.append(_scores(tr, te, ge, ind, trip))
        wrong.append(_scores(tr, te, exact_samples(states_w, p_w, n_samples, rng), ind, trip))
    for stat in ("covariance", "corr3"):
        r = np.array([x[stat] for x in reps])
        sd = r.std(ddof=1)
        assert sd < 0.15, (stat, r)  # the planted model is correlated enough to be informative
        assert abs(r.mean() - 1) < 4 * sd / math.sqrt(len(r)) + 0.02  # score unbiased near 1
        # the Gibbs-sampled generated set scores like an exact sample: within 4 s.d. of 1
        score = float(ds["score"].sel(stat=stat))
        assert abs(score - 1) < 4 * sd, (stat, score, sd)
        # and a wrong model (weaker couplings) is clearly told apart
        assert np.mean([x[stat] for x in wrong]) < 1 - 6 * sd
    assert math.isnan(float(ds["score"].sel(stat="rate")))
    assert float(ds["pearson_r"].sel(stat="covariance", comparison="train_generated")) > 0.95
    # h_eff calibration of the true model: observed fraction = sigma(h_eff) within 5 s.e.m.
    frac, sig, sem = (ds[v].sel(heff_set="generated").values
                      for v in ("heff_fraction", "heff_sigma", "heff_sem"))
    assert np.all(np.abs(frac - sig) < 5 * sem + 1e-3)


# ------------------------------------------------------------------ score reasons, split shift
def test_score_reasons_name_the_cause():
    # (d_ind, d_gen, d_test): the score is (d_ind - d_gen) / (d_ind - d_test)
    cases = {
        (1.0, 0.5, 0.95): ("undefined: the floor-to-ceiling gap", "5.0% of d(train, indep)"),
        (1.0, 0.5, 1.2): ("undefined: the test set is no closer", "data-limited"),
        (1.0, 1.5, 0.5): ("negative: generated samples are further", "d(train, gen) = 1.5"),
        (1.0, 0.25, 0.5): ("above 1: generated samples are closer", "10000 vs 3000"),
        (1.0, 0.75, 0.5): ("in range", "in range"),
    }
    for (d_ind, d_gen, d_test), (start, part) in cases.items():
        score = st.normalised_score(d_ind, d_gen, d_test)
        reason = st.score_reason(d_ind, d_gen, d_test, score=score, n_test=3000,
                                 n_generated=10000)
        assert reason.startswith(start) and part in reason, (d_ind, d_gen, d_test, reason)
    # with as many test as generated samples, sample size is not offered as the cause
    reason = st.score_reason(1.0, 0.25, 0.5, score=1.5, n_test=10000, n_generated=10000)
    assert "more samples" not in reason and "overfitting" in reason


def test_split_comparison_detects_a_shift_in_activity():
    rbm = random_rbm(12, 4, seed=5, w_std=1.0, a_mean=-1.0)
    states, p = exact_distribution(rbm)
    rng = np.random.default_rng(11)
    train, test = exact_samples(states, p, 6000, rng), exact_samples(states, p, 3000, rng)
    same = st.split_comparison(rbm, train, test)
    assert abs(same["k_shift_z"]) < 4 and abs(same["ll_gap_z"]) < 4
    # i.i.d. bins: the s.e. is the plain s.d. / sqrt(n) (tau = 1 up to its estimation noise)
    k = train.sum(1)
    assert same["k_mean_train_se"] == pytest.approx(k.std() / np.sqrt(k.size), rel=0.15)
    # each bin repeated 9 times: 9x the bins, same information, the same s.e. (tau ~ 9)
    slow = st.split_comparison(rbm, np.repeat(train, 9, axis=0), test)
    assert slow["k_mean_train"] == pytest.approx(same["k_mean_train"])
    assert slow["k_mean_train_se"] == pytest.approx(same["k_mean_train_se"], rel=0.25)
    # a sparser test split (its bins with the fewest spikes): K drops far beyond its s.e.
    k_test = test.sum(1)
    sparse = st.split_comparison(rbm, train, test[k_test <= np.quantile(k_test, 0.3)])
    assert sparse["k_shift_z"] < -10
    # a test split of the model's likelier bins (free energy below the median): test LL > train
    f_test = free_energy(rbm.to(dtype=torch.float64), torch.as_tensor(test)).numpy()
    likely = test[f_test < np.median(f_test)]
    shifted = st.split_comparison(rbm, train, likely)
    assert shifted["ll_test_minus_train"] > 0 and shifted["ll_gap_z"] > 10
    # the gap is the difference of the mean free energies (log Z cancels)
    f_train = free_energy(rbm.to(dtype=torch.float64), torch.as_tensor(train)).numpy()
    assert shifted["ll_test_minus_train"] == pytest.approx(
        f_train.mean() - f_test[f_test < np.median(f_test)].mean())


# ------------------------------------------------------------------ effective sample size
def _finite_chain_tau(rho: np.ndarray) -> float:
    """Var(mean of L correlated samples) / (Var / L) = 1 + 2 sum_k (1 - k/L) rho(k), k < L."""
    k = np.arange(1, rho.size + 1)
    return 1 + 2 * float(np.sum((1 - k / (rho.size + 1)) * rho))


def test_effective_samples_of_a_lazy_chain_give_the_variance_of_the_mean():
    # every step the whole state is kept with probability phi, else redrawn: any observable
    # has rho(k) = phi^k exactly; 10 samples per chain as the statistics stage's defaults
    phi, length, chains, reps = 0.7, 10, 200, 400
    rng = np.random.default_rng(0)
    fresh = rng.random((reps, length, chains)) < 0.3
    keep = rng.random((reps, length, chains)) < phi
    x = fresh.astype(float)
    for t in range(1, length):
        x[:, t] = np.where(keep[:, t], x[:, t - 1], x[:, t])
    exact = _finite_chain_tau(phi ** np.arange(1, length))
    taus = np.array([st.effective_samples(xr_)[0] for xr_ in x[:40]])
    # 40 estimates from 2000 samples each: s.d. of one ~0.12 (measured), of the mean ~0.02
    assert abs(taus.mean() - exact) < 0.1, (taus.mean(), exact)
    n_eff = st.effective_samples(x[0])[1]
    assert n_eff == pytest.approx(length * chains / st.effective_samples(x[0])[0])
    # the defining property: Var(mean) = Var(x) / n_eff, over 400 independent replicates (the
    # variance of 400 means is known to sqrt(2/399) = 7 %: 3.5 s.d. is 25 %)
    ratio = x.mean((1, 2)).var(ddof=1) / (0.3 * 0.7 / (length * chains / exact))
    assert 0.75 < ratio < 1.25, ratio
    # independent chains with one sample each need no correction; bad shapes are refused
    assert st.effective_samples(x[0, :1]) == (1.0, float(chains))
    with pytest.raises(ValueError, match="n_per_chain, n_chains"):
        st.effective_samples(x[0, 0])


def test_element_terms_match_brute_force():
    # per-element terms y of every statistic formed explicitly (x = v - <v>)
    v = random_binary(T * 5, N, seed=11)
    x = v - v.mean(0)
    pairs, trip = st.upper_pairs(N), st.sample_triplets(N, 17, seed=2)
    terms = {"rate": (x, {}), "covariance": (x[:, pairs[0]] * x[:, pairs[1]], {"pairs": pairs}),
             "corr3": (x[:, trip[:, 0]] * x[:, trip[:, 1]] * x[:, trip[:, 2]],
                       {"triplets": trip})}
    rng = np.random.default_rng(3)
    for name, (y, kw) in terms.items():
        yc, w = y - y.mean(0), rng.normal(size=y.shape[1])
        np.testing.assert_allclose(st.element_variances(v, name, **kw), y.var(0), atol=1e-15)
        np.testing.assert_allclose(st.element_terms_dot(v, name, w, **kw), y @ w, atol=1e-12)
        np.testing.assert_allclose(st.element_gram(v, name, **kw), yc @ yc.T, atol=1e-14)
    sums = st.summed_terms(v)
    for name, (y, _) in terms.items():
        if name != "corr3":  # corr3 above is a subset; the sum runs over all triplets
            np.testing.assert_allclose(sums[name], y.sum(1), atol=1e-12)
    every = np.array(list(itertools.combinations(range(N), 3)))
    np.testing.assert_allclose(sums["corr3"], (x[:, every[:, 0]] * x[:, every[:, 1]]
                                               * x[:, every[:, 2]]).sum(1), atol=1e-12)


def test_n_eff_and_score_error_against_an_exactly_enumerated_coupled_rbm():
    # 6 visible units on one strong hidden unit: bistable, so the population activity
    # decorrelates over several sweeps. The exact block-Gibbs transition matrix gives the
    # autocorrelation of every summed statistic, and with it the exact tau of the stage's
    # 10 samples per chain (1 sweep apart)
    from spikerbm.exact import sweep_transition

    n, w = 6, 2.5
    weights, a, b = np.full((n, 1), w), np.full(n, -w / 2 - 0.4), np.array([-n * w / 2 + 1.0])
    states, t, pi = sweep_transition(weights, a, b)
    x = states - pi @ states
    p1, p2, p3 = ((x**k).sum(1) for k in (1, 2, 3))
    summed = {"rate": p1, "covariance": (p1**2 - p2) / 2,
              "corr3": (p1**3 - 3 * p1 * p2 + 2 * p3) / 6}
    exact = {}
    for name, f in summed.items():
        g = f - pi @ f
        h, rho = g, []
        for _ in range(9):
            h = t @ h
            rho.append((pi * g) @ h / (pi @ g**2))
        exact[name] = _finite_chain_tau(np.array(rho))
    assert exact["rate"] > 4.5  # the case is worth testing: a tenth of the samples are useful
    rbm = RBM(*(torch.as_tensor(p) for p in (weights, a, b)))
    rng = np.random.default_rng(0)
    train, test = (states[rng.choice(len(pi), size=4000, p=pi)].astype(np.uint8)
                   for _ in range(2))
    runs = [st.compute_statistics(rbm, train=train, test=test, n_samples=10000, n_chains=1000,
                                  burn_in_sweeps=100, thin_sweeps=1, n_triplets=20,
                                  heff_bins=5, energy_bins=10, seed=seed) for seed in range(8)]
    for name in st.STATS:
        tau = np.array([r.attrs[f"tau_samples_{name}"] for r in runs])
        # one estimate from 1000 chains has s.d. 0.09 (rate), 0.14 (covariance), 0.09 (corr3)
        # over these 8 seeds; their mean (s.d. <= 0.05) is within 0.15 of the exact value at
        # >= 3 s.d.
        assert abs(tau.mean() - exact[name]) < 0.15, (name, tau.mean(), exact[name])
        assert runs[0].attrs[f"n_eff_{name}"] == pytest.approx(
            10000 / max(runs[0].attrs[f"tau_samples_{name}"], 1.0))
        np.testing.assert_array_equal(runs[0]["n_eff"].sel(stat=name),
                                      runs[0].attrs[f"n_eff_{name}"])
    # per-element errors: rate s.e. = sqrt(m (1 - m) / n_eff)
    m = runs[0]["rate"].sel(set="generated").values
    np.testing.assert_allclose(runs[0]["rate_se_generated"],
                               np.sqrt(m * (1 - m) / runs[0].attrs["n_eff_rate"]))
    # the spread of the generated mean rate over seeds is what n_eff says it is (not what
    # 10000 independent samples would say): 8 seeds give the s.d. within a factor 1.6
    spread = np.std([r["rate"].sel(set="generated").values.mean() for r in runs], ddof=1)
    predicted = math.sqrt((pi @ p1**2) / n**2 / (10000 / exact["rate"]))
    assert 0.6 < spread / predicted < 1.6, (spread, predicted)
    # the scores' Monte Carlo error against their spread over seeds (train and test fixed):
    # measured spread / mean stated error 0.69 (covariance) and 1.38 (corr3) over these 8
    # seeds, 0.80 and 1.26 over 16; the spread of 8 values is known to ~27 %, so [0.5, 1.6]
    # leaves about 2 s.d. of room on each side
    for name in ("covariance", "corr3"):
        scores = np.array([r.attrs[f"score_{name}"] for r in runs])
        stated = np.mean([r.attrs[f"score_{name}_std"] for r in runs])
        assert 0.5 < scores.std(ddof=1) / stated < 1.6, (name, scores.std(ddof=1), stated)


# ------------------------------------------------------------------ dataset, netCDF, figure
def test_compute_statistics_dataset_roundtrip_and_figure(tmp_path):
    rbm = random_rbm(11, 5, seed=3, w_std=1.0)
    states, p = exact_distribution(rbm)
    rng = np.random.default_rng(3)
    train, test = exact_samples(states, p, 900, rng), exact_samples(states, p, 170, rng)
    ds = st.compute_statistics(rbm, train=train, test=test, n_samples=300, n_chains=60,
                               burn_in_sweeps=100, thin_sweeps=2, n_triplets=40, heff_bins=9,
                               energy_bins=13, seed=1)
    assert list(ds["set"].values) == list(st.SETS)
    assert ds["n_used"].values.tolist() == [300, 170, 300, 300]  # test has fewer bins
    assert ds.sizes["pair"] == 55 and ds.sizes["triplet"] == 40 and ds.sizes["k"] == 12
    assert ds["covariance"].dtype == np.float32
    # stored statistics agree with the estimators applied to the stored sets' own samples
    assert np.isnan(ds["pca"].sel(set="test").values[170:]).all()
    np.testing.assert_allclose(ds["p_k"].sum("k"), 1.0)
    widths = ds["energy_hi"] - ds["energy_lo"]
    np.testing.assert_allclose((ds["energy_density"] * widths).sel(set="train").sum(), 1.0)
    assert ds["heff_count"].sum("heff_bin").values.tolist() == [170 * 11, 300 * 11]
    # every score carries its reason; the split comparison uses the full splits
    for stat in ("covariance", "corr3"):
        score, reason = ds.attrs[f"score_{stat}"], ds.attrs[f"score_{stat}_reason"]
        assert (reason == "in range") == (0 <= score <= 1), (score, reason)
    assert ds.attrs["k_mean_train"] == pytest.approx(train.sum(1).mean())
    assert ds.attrs["k_mean_test"] == pytest.approx(test.sum(1).mean())
    # same seed, same result
    ds2 = st.compute_statistics(rbm, train=train, test=test, n_samples=300, n_chains=60,
                                burn_in_sweeps=100, thin_sweeps=2, n_triplets=40, heff_bins=9,
                                energy_bins=13, seed=1)
    np.testing.assert_array_equal(ds["corr3"], ds2["corr3"])
    # effective sample sizes: at most the samples drawn; unknown for samples of unknown chains
    assert np.all((ds["n_eff"] > 0) & (ds["n_eff"] <= 300))
    assert np.isfinite(ds["corr3_se_generated"]).all()
    given = st.compute_statistics(rbm, train=train, test=test, n_samples=300, n_chains=60,
                                  burn_in_sweeps=100, thin_sweeps=2, n_triplets=40,
                                  heff_bins=9, energy_bins=13, seed=1,
                                  generated=exact_samples(states, p, 300, rng))
    assert np.isnan(given["n_eff"]).all() and np.isnan(given.attrs["n_eff_energy"])
    with pytest.raises(ValueError, match="stat must be one of"):
        st.element_variances(train, "pairs")
    path = io.write_netcdf(ds, tmp_path / "statistics.nc",
                           attrs=provenance_attrs(config={"x": 1}, seed=1, session_id="s"))
    back = io.read_netcdf(path)
    assert back.attrs["session_id"] == "s" and back.attrs["equilibrated"] in (0, 1)
    np.testing.assert_array_equal(back["covariance"], ds["covariance"])
    fig = plotting.fig_statistics(back)
    assert isinstance(fig, Figure)
    labels = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert set("abcdefg") <= labels


def test_scoring_takes_samples_and_functions_of_any_model():
    """score_statistics (the scoring half) is model-agnostic: fed an RBM's samples, free energy
    and effective fields it gives exactly compute_statistics' result on those samples; fed a
    pairwise model's, the same data sets (train, test, independent, triplets) come out, and
    the model enters only through the generated set, its energy and its conditional fields."""
    from spikerbm import pairwise as P

    rbm = random_rbm(9, 4, seed=5)
    states, p = exact_distribution(rbm)
    rng = np.random.default_rng(5)
    train, test, gen = (exact_samples(states, p, n, rng) for n in (600, 200, 400))
    kw = dict(n_samples=400, n_triplets=30, heff_bins=7, energy_bins=11, seed=2)
    ref = st.compute_statistics(rbm, train=train, test=test, generated=gen, n_chains=8,
                                burn_in_sweeps=1, thin_sweeps=1, **kw)
    r64 = rbm.to(dtype=torch.float64)
    got = st.score_statistics(
        train=train, test=test, generated=gen,
        energy=lambda v: free_energy(r64, torch.as_tensor(v, dtype=torch.float64)).numpy(),
        effective_field=lambda v: st.effective_fields(rbm, v), **kw)
    for name in ref.data_vars:
        np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)
    ising = P.IsingModel.from_numpy(np.full(9, -1.0), 0.2 * np.ones((9, 9)))
    gen_r = gen[::-1].copy()  # other samples: the same rows in reverse order
    pw = st.score_statistics(train=train, test=test, generated=gen_r,
                             energy=lambda v: P.energy(ising, v).numpy(),
                             effective_field=lambda v: P.effective_fields(ising, v), **kw)
    for stat in ("rate", "covariance", "corr3"):
        for split in ("train", "test", "independent"):
            np.testing.assert_array_equal(pw[stat].sel(set=split), ref[stat].sel(set=split))
    np.testing.assert_allclose(pw["mean_energy"].sel(set="generated"),
                               P.energy(ising, gen_r).numpy().mean(), rtol=1e-12)
    assert pw.attrs["equilibrated"] == -1
    with pytest.raises(ValueError, match="generated has 8 neurons"):
        st.score_statistics(train=train, test=test, generated=gen[:, :8],
                            energy=lambda x: x.sum(1), effective_field=lambda x: x, **kw)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    rbm = random_rbm(13, 5, seed=2, w_std=0.8)
    states, p = exact_distribution(rbm)
    rng = np.random.default_rng(0)
    train, test = exact_samples(states, p, 2000, rng), exact_samples(states, p, 1000, rng)
    gen = exact_samples(states, p, 1500, rng)
    kw = dict(train=train, test=test, n_samples=1500, n_chains=100, burn_in_sweeps=50,
              thin_sweeps=2, n_triplets=100, heff_bins=7, energy_bins=9, seed=0, generated=gen)
    cpu = st.compute_statistics(rbm, **kw)
    gpu = st.compute_statistics(rbm.to("cuda"), **kw)
    for var in ("rate", "covariance", "corr3", "p_k", "mean_energy", "heff_sigma"):
        np.testing.assert_allclose(gpu[var], cpu[var], rtol=1e-6, atol=1e-9)
    eq = st.sample_equilibrium(rbm.to("cuda"), init_data=train, n_samples=4000, n_chains=400,
                               burn_in_sweeps=400, thin_sweeps=4, seed=7)
    assert eq.attrs["equilibrated"] == 1, eq.attrs["equilibration_reason"]


def test_gibbs_settings_are_compute_statistics_arguments():
    """The shipped ``statistics:`` section minus the workflow's sampler keys binds to
    compute_statistics (what direct library callers pass); PTT is refused with the fix."""
    import inspect
    from pathlib import Path

    import yaml

    cfg = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    kwargs = st.gibbs_settings(cfg["statistics"])
    assert set(st.SAMPLER_KEYS) <= set(cfg["statistics"]) and not set(st.SAMPLER_KEYS) & set(kwargs)
    inspect.signature(st.compute_statistics).bind(None, train=None, test=None, seed=0, **kwargs)
    with pytest.raises(ValueError, match="statistics.sampler: gibbs"):
        st.gibbs_settings({**cfg["statistics"], "sampler": "ptt"})
