"""log Z estimators against exact enumeration (docs/methods.md §4): exact, AIS, trajectory AIS.

References: brute force over BOTH layers on tiny RBMs (N=7, M=5 and the transpose), exact
enumeration of the smaller layer on N=61 visible, M<=13 hidden models (random, and trained with
exact gradients on data from a planted RBM), and the planted independent-site model.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import xarray as xr
from scipy import stats

from spikerbm.exact import binary_states
from spikerbm.likelihood import log_likelihood, mean_free_energy
from spikerbm.partition import (
    TrajectoryAIS,
    ais_log_weights,
    ais_log_z,
    anchor_bias_rate,
    anchored_log_z_std,
    combine_log_z,
    estimate_log_z,
    exact_log_z,
    jensen_covering_std,
    log_z_from_log_weights,
    log_z_independent,
)
from spikerbm.rbm import RBM, energy, free_energy, independent_site, init_rbm
from spikerbm.sampling import Sampler

# AIS / trajectory-AIS tolerance on log Z (the brief's target). Justification: the observed
# spread of one 1000-chain AIS run on these models is ~0.005-0.02 nats (checked by the repeats
# below), and log Z from AIS is biased low by about var/2 (< 1e-3 here); 0.05 nats is > 3 sigma
# of a single run, so the test fails only if the estimator is wrong (a wrong sign or a missing
# term shifts log Z by >> 0.1 nats on these models), not by chance.
TOL_LOGZ = 0.05

N_VIS, N_HID = 61, 13
N_HID_TRAIN = 9  # exact gradients enumerate 2**9 hidden states per update (keeps the file fast)


def brute_force_log_z(rbm: RBM) -> float:
    """log Z summing exp(-E(v, h)) over every (v, h) pair (tiny sizes only)."""
    vs, hs = binary_states(rbm.n_visible), binary_states(rbm.n_hidden)
    v = vs.repeat_interleave(hs.shape[0], 0)
    h = hs.repeat(vs.shape[0], 1)
    return float(torch.logsumexp(-energy(rbm, v, h), 0))


def random_rbm(n: int, m: int, *, seed: int, scale: float = 1.0,
               dtype: torch.dtype = torch.float64) -> RBM:
    g = torch.Generator().manual_seed(seed)
    return RBM(scale * torch.randn(n, m, generator=g, dtype=torch.float64).to(dtype),
               (torch.randn(n, generator=g, dtype=torch.float64) - 1.0).to(dtype),
               (0.5 * torch.randn(m, generator=g, dtype=torch.float64)).to(dtype))


@functools.cache
def hidden_states(m: int) -> torch.Tensor:
    """All hidden states, most significant bit first (the order the seeded samples of
    exact_sample were drawn in)."""
    return binary_states(m).flip(1)


def exact_sample(rbm: RBM, n: int, *, generator: torch.Generator) -> torch.Tensor:
    """Exact samples of v: h from its enumerated marginal, then v | h."""
    r = rbm.to(dtype=torch.float64)
    hs = hidden_states(r.n_hidden)
    neg_f = hs @ r.b + torch.nn.functional.softplus(r.a + hs @ r.W.T).sum(-1)
    idx = torch.multinomial(torch.softmax(neg_f, 0), n, replacement=True, generator=generator)
    pv = torch.sigmoid(r.a + hs[idx] @ r.W.T)
    return (torch.rand(pv.shape, generator=generator, dtype=torch.float64) < pv).to(torch.uint8)


def planted_rbm() -> RBM:
    """5 hidden 'assemblies' of 12 neurons each (weight 3): an assembly is on ~20% of the time
    and then fires its neurons at p ~ 0.6 (background p ~ 0.08)."""
    W = torch.zeros(N_VIS, 5, dtype=torch.float64)
    for mu in range(5):
        W[12 * mu: 12 * mu + 12, mu] = 3.0
    return RBM(W, torch.full((N_VIS,), -2.5, dtype=torch.float64),
               torch.full((5,), -8.6, dtype=torch.float64))


def exact_gradient(rbm: RBM, data: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Exact log-likelihood gradient (model averages by enumerating the hidden layer)."""
    hs = hidden_states(rbm.n_hidden)
    neg_f = hs @ rbm.b + torch.nn.functional.softplus(rbm.a + hs @ rbm.W.T).sum(-1)
    ph = torch.softmax(neg_f, 0)
    ev_h = torch.sigmoid(rbm.a + hs @ rbm.W.T)  # E[v | h]
    m_vh = (ev_h * ph[:, None]).T @ hs
    m_v, m_h = ph @ ev_h, ph @ hs
    v = data.to(torch.float64)
    d_h = torch.sigmoid(rbm.b + v @ rbm.W)
    d_vh = v.T @ d_h / v.shape[0]
    return d_vh - m_vh, v.mean(0) - m_v, d_h.mean(0) - m_h


@functools.cache
def planted_data() -> dict[str, torch.Tensor]:
    """Exact samples of the planted RBM: 2001 train, 1003 test (cached for the session)."""
    g = torch.Generator().manual_seed(11)
    return {"train": exact_sample(planted_rbm(), 2001, generator=g),
            "test": exact_sample(planted_rbm(), 1003, generator=g)}


@functools.cache
def trained_trajectory() -> dict:
    """A real short training (exact-gradient SGD, float64 master copy, float32 snapshots as in
    training) with trajectory AIS run online; checkpoints log-spaced over 800 updates. The
    learning rate keeps the trajectory smooth (max |dW| per update ~0.004), as PCD training at
    lr 0.01 is; log Z moves by ~10 nats over it. A second trajectory AIS runs along with the
    increments of the fused bf16 path (split bfloat16 products, ``split_bf16``) in 10 groups,
    so it states an error."""
    n_updates, lr = 800, 0.25
    ckpts = sorted({0, *np.unique(np.geomspace(1, n_updates, 12).astype(int)).tolist()})
    g_init = torch.Generator().manual_seed(5)
    train = planted_data()["train"].to(torch.float64)
    rbm = init_rbm(train.mean(0), n_hidden=N_HID_TRAIN, weight_std=1e-3, generator=g_init)
    start = independent_site(rbm.a, N_HID_TRAIN).to(dtype=torch.float32)
    g = torch.Generator().manual_seed(123)
    tais = TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=1000, generator=g)
    split = TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=1000, n_groups=10,
                          generator=torch.Generator().manual_seed(124), split_bf16=True)
    snaps, tais_lz, split_est = [], [], []
    est = tais.step(rbm.to(dtype=torch.float32))
    split.step(rbm.to(dtype=torch.float32))
    for t in range(n_updates + 1):
        if t > 0:
            gw, ga, gb = exact_gradient(rbm, train)
            rbm = RBM(rbm.W + lr * gw, rbm.a + lr * ga, rbm.b + lr * gb)
            est = tais.step(rbm.to(dtype=torch.float32))
            split.step(rbm.to(dtype=torch.float32))
        if t in ckpts:
            snaps.append(rbm.to(dtype=torch.float32))
            tais_lz.append(est)
            split_est.append(split.estimate())
    model = xr.Dataset(
        {
            "W": (("checkpoint", "neuron", "hidden"), np.stack([s.W.numpy() for s in snaps])),
            "a": (("checkpoint", "neuron"), np.stack([s.a.numpy() for s in snaps])),
            "b": (("checkpoint", "hidden"), np.stack([s.b.numpy() for s in snaps])),
            "log_z_tais": ("checkpoint", np.array(tais_lz)),
        },
        coords={"checkpoint": np.array(ckpts, dtype=np.int64)},
    )
    return {"model": model, "snaps": snaps, "tais": tais_lz, "ckpts": ckpts,
            "n_resamples": tais.n_resamples, "split": split_est}


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    return planted_data()


@pytest.fixture(scope="module")
def trajectory() -> dict:
    return trained_trajectory()


# ---------------------------------------------------------------------------- exact


@pytest.mark.parametrize(("n", "m"), [(7, 5), (5, 7)])
def test_exact_log_z_matches_brute_force_both_layers(n: int, m: int) -> None:
    rbm = random_rbm(n, m, seed=n * 10 + m)
    ref = brute_force_log_z(rbm)
    for layer in ("auto", "visible", "hidden"):
        for chunk in (3, 1 << 14):  # odd chunk: partial last chunk must be handled
            assert exact_log_z(rbm, layer=layer, chunk_size=chunk) == pytest.approx(
                ref, rel=0, abs=1e-11)


def test_log_z_independent_is_exact() -> None:
    a = torch.randn(7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ind = independent_site(a, 5)
    assert log_z_independent(ind) == pytest.approx(brute_force_log_z(ind), abs=1e-11)
    # only a and the hidden count matter
    assert log_z_independent(random_rbm(7, 5, seed=3)) != pytest.approx(
        log_z_independent(ind), abs=1e-3)


def test_exact_log_z_is_float64_for_float32_models() -> None:
    r32 = random_rbm(N_VIS, 11, seed=4, scale=0.3, dtype=torch.float32)
    r64 = r32.to(dtype=torch.float64)
    # a float32 model is cast to float64 before every product: bitwise-equal results
    assert exact_log_z(r32) == exact_log_z(r64)
    data = (torch.rand(17, N_VIS, generator=torch.Generator().manual_seed(1)) < 0.2)
    assert mean_free_energy(r32, data) == mean_free_energy(r64, data)
    assert free_energy(r32, data).dtype == torch.float64


def test_exact_log_z_rejects_huge_and_bad_layer() -> None:
    big = RBM(torch.zeros(31, 32), torch.zeros(31), torch.zeros(32))
    with pytest.raises(ValueError, match="2\\*\\*31"):
        exact_log_z(big)
    with pytest.raises(ValueError, match="layer"):
        exact_log_z(random_rbm(3, 2, seed=0), layer="both")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- AIS


def test_ais_matches_exact_random_model() -> None:
    rbm = random_rbm(N_VIS, N_HID, seed=7, scale=0.35, dtype=torch.float32)
    ref = exact_log_z(rbm)
    est = ais_log_z(rbm, n_chains=250, n_betas=1000, n_repeats=4,
                    generator=torch.Generator().manual_seed(1))
    assert est.method == "ais" and len(est.repeats) == 4
    assert abs(est.log_z - ref) < TOL_LOGZ
    assert 0 < est.log_z_std < TOL_LOGZ
    # starting point is non-trivial: the independent model is far from the answer
    assert abs(log_z_independent(rbm) - ref) > 1.0


def test_ais_matches_exact_trained_model(trajectory) -> None:
    rbm = trajectory["snaps"][-1]
    ref = exact_log_z(rbm)
    assert abs(log_z_independent(rbm) - ref) > 1.0
    est = ais_log_z(rbm, n_chains=1000, n_betas=1000, n_repeats=1,
                    generator=torch.Generator().manual_seed(2))
    assert abs(est.log_z - ref) < TOL_LOGZ
    # one repeat: no spread, but the importance-sampling error of its 1000 weights
    assert 0 < est.log_z_std < TOL_LOGZ and len(est.repeats) == 1


def test_log_z_from_log_weights_formulas() -> None:
    """Pooled estimate, ESS error and repeat spread on hand-made log-weights."""
    lw = torch.tensor([[0.0, math.log(3.0)], [math.log(2.0), math.log(2.0)]],
                      dtype=torch.float64)
    est = log_z_from_log_weights(lw, 1.5)
    assert est.log_z == pytest.approx(1.5 + math.log(2.0))  # mean weight (1+3+2+2)/4 = 2
    w = np.array([1.0, 3.0, 2.0, 2.0])
    s_w = math.sqrt(1 / (w.sum() ** 2 / (w**2).sum()) - 1 / 4)
    reps = 1.5 + np.log([2.0, 2.0])  # equal repeats: no spread, the ESS error decides
    assert est.repeats == pytest.approx(tuple(reps))
    assert est.log_z_std == pytest.approx(s_w + s_w**2 / 2)
    # equal weights inside each repeat: no ESS error, the spread of the repeats decides
    flat = torch.log(torch.tensor([[1.0, 1.0], [4.0, 4.0]], dtype=torch.float64))
    s_rep = np.std(np.log([1.0, 4.0]), ddof=1) / math.sqrt(2)
    assert log_z_from_log_weights(flat, 0.0).log_z_std == pytest.approx(s_rep + s_rep**2 / 2)
    assert jensen_covering_std(0.1) == pytest.approx(0.105)
    pooled = combine_log_z(np.log([1.0, 3.0]), method="tais")
    assert pooled.log_z == pytest.approx(math.log(2.0)) and pooled.method == "tais"
    c = stats.t.ppf(0.975, 1) / stats.norm.ppf(0.975)
    sigma = c * np.std(np.log([1.0, 3.0]), ddof=1) / math.sqrt(2)
    assert pooled.log_z_std == pytest.approx(sigma + sigma**2 / 2)
    assert math.isnan(combine_log_z(np.array([2.0]), method="tais").log_z_std)


def test_ais_error_covers_its_bias_over_seeds() -> None:
    """The stated log_z_std covers AIS's actual error against exact log Z (issue 17).

    A deliberately cheap AIS (2 x 25 chains, 100 betas) on a random N=61, M=13 model, so the
    error (~0.08 nats) is well above round-off, over 40 seeds. Required: the bias (mean error;
    AIS is biased low) is inside the mean stated error, and |error| <= 2 log_z_std for at least
    90 % of the seeds (observed 95 %; an honest 1-sigma error gives 95.4 %, and 4 misses of 40
    are within the binomial spread, 7 would be a 0.4 % event). The test can fail: the former
    definition (the spread of the 2 repeats) covers only ~78 % (asserted below 90 %).
    """
    rbm = random_rbm(N_VIS, N_HID, seed=7, scale=0.5, dtype=torch.float32)
    ref = exact_log_z(rbm)
    err, std, spread = [], [], []
    for seed in range(40):
        est = ais_log_z(rbm, n_chains=25, n_betas=100, n_repeats=2,
                        generator=torch.Generator().manual_seed(seed))
        err.append(est.log_z - ref)
        std.append(est.log_z_std)
        spread.append(np.std(est.repeats, ddof=1))
    err, std, spread = np.array(err), np.array(std), np.array(spread)
    assert 0.02 < err.std() < 0.3  # the case has a real error to cover
    assert abs(err.mean()) <= std.mean()
    assert np.mean(np.abs(err) <= 2 * std) >= 0.9, (err, std)
    assert np.mean(np.abs(err) <= 2 * spread) < 0.9


def test_ais_deterministic_and_bad_options() -> None:
    rbm = random_rbm(9, 5, seed=1, dtype=torch.float32)
    a = ais_log_z(rbm, n_chains=31, n_betas=20, generator=torch.Generator().manual_seed(4))
    b = ais_log_z(rbm, n_chains=31, n_betas=20, generator=torch.Generator().manual_seed(4))
    assert a.repeats == b.repeats
    with pytest.raises(ValueError, match="n_betas"):
        ais_log_z(rbm, n_chains=3, n_betas=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="method"):
        estimate_log_z(rbm, method="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Generator"):
        estimate_log_z(rbm, method="ais")


def test_ais_with_split_products_is_float32_ais() -> None:
    """AIS on the CPU samples in float32 whatever the default (split products need CUDA:
    no sampler gives bitwise the float32 sampler's weights), and a split-product sampler
    (on the CPU emulated in float32) gives the same log-weights to float32 accuracy: the
    same chains (a flip needs a uniform within ~1e-7 of a probability: ~0.01 expected over
    these ~4e5 draws) and pre-activations x within ~1e-6, which move a log-weight by at most
    1.1 sum_mu max_k |dx| ~ 2e-5 (partition.ais_log_weights); a wrong layout or bias in the
    split x changes them by >> 0.01."""
    rbm = random_rbm(N_VIS, N_HID, seed=7, scale=0.35, dtype=torch.float32)
    kw = dict(n_chains=51, n_betas=100, n_repeats=1)
    ref, lz0 = ais_log_weights(rbm, generator=torch.Generator().manual_seed(5), **kw)
    f32, _ = ais_log_weights(rbm, generator=torch.Generator().manual_seed(5),
                             sampler=Sampler.for_model(rbm), **kw)
    split, lz0_split = ais_log_weights(rbm, generator=torch.Generator().manual_seed(5),
                                       sampler=Sampler.for_model(rbm, split_bf16=True), **kw)
    assert torch.equal(ref, f32) and lz0_split == lz0
    diff = float((split - ref).abs().max())
    assert 0 < diff < 1e-4, diff


def test_estimate_log_z_auto_switches() -> None:
    rbm = random_rbm(N_VIS, 11, seed=8, scale=0.2, dtype=torch.float32)
    ex = estimate_log_z(rbm, exact_max_units=11)
    assert ex.method == "exact" and ex.log_z_std == 0.0
    ais = estimate_log_z(rbm, exact_max_units=10, ais_chains=300, ais_betas=300, ais_repeats=2,
                         generator=torch.Generator().manual_seed(0))
    assert ais.method == "ais"
    assert abs(ais.log_z - ex.log_z) < TOL_LOGZ


# ---------------------------------------------------------------------------- trajectory AIS


def test_trajectory_ais_tracks_exact_along_training(trajectory) -> None:
    errors = [abs(lz - exact_log_z(s)) for lz, s in zip(trajectory["tais"], trajectory["snaps"],
                                                          strict=True)]
    assert max(errors) < TOL_LOGZ, errors
    # the test is informative: the couplings learned during training carry ~10 nats of log Z
    # (log Z minus that of the independent model with the same visible bias)
    last = trajectory["snaps"][-1]
    assert exact_log_z(last) - log_z_independent(last) > 5.0


def test_trajectory_ais_with_split_bf16_increments_tracks_exact_within_its_error(trajectory
                                                                                 ) -> None:
    """The fused path's increments (split bfloat16 products, float32 accumulation; emulated on
    the CPU) along the same training: at every checkpoint within 2 stated errors of the exact
    log Z and within TOL_LOGZ (observed: at most 1.7 stated errors, 0.006 nats). Increments
    off by more than the products' rounding (a wrong step, stage or sign) move log Z by
    >> 0.01 nats here, the stated error is 2e-4 to 3e-3."""
    exact = np.array([exact_log_z(s) for s in trajectory["snaps"]])
    err = np.array([e.log_z for e in trajectory["split"]]) - exact
    std = np.array([e.log_z_std for e in trajectory["split"]])
    assert np.all(np.abs(err) <= 2 * std), (err, std)
    assert np.abs(err).max() < TOL_LOGZ


def test_trajectory_ais_resamples_on_abrupt_steps() -> None:
    """10 abrupt steps from the independent model to a random one (log Z moves by 5.6 nats):
    ESS falls, resampling happens, the estimate stays close to exact at every step.

    Tolerance 0.15 nats: each abrupt step is a one-step importance sampling with a few-tenths
    log-weight variance; over 4 seeds the observed max error was 0.03-0.06. A resampling bug
    (weights not restarted at the current estimate, wrong indices, lost offset) shifts the
    estimate by ~log(n_chains) = 7.6 nats or by the step's log Z change (>= 0.3 nats)."""
    target = random_rbm(N_VIS, 11, seed=21, scale=0.5, dtype=torch.float32)
    start = independent_site(target.a, 11)
    tais = TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=2000,
                         generator=torch.Generator().manual_seed(3), ess_threshold=0.3)
    for s in np.linspace(0.1, 1.0, 10):
        step = RBM(target.W * float(s), target.a, target.b * float(s))
        assert abs(tais.step(step) - exact_log_z(step)) < 0.15
    assert tais.n_resamples >= 1


def test_reanchor_recentres_every_group_and_keeps_the_increments() -> None:
    """docs/methods.md §4, "Anchors": after ``reanchor(A)`` every group's estimate is A (so
    the spread is 0), the engine-style buffer is shifted by the same amounts, and afterwards
    each group's estimate is A plus exactly the increments it would have had without the
    anchor (an identical copy run without it differs by the constant per-group shift; float64
    round-off)."""
    target = random_rbm(N_VIS, 7, seed=5, scale=0.4, dtype=torch.float32)
    start = independent_site(target.a, 7)

    def fresh() -> TrajectoryAIS:
        return TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=60, n_groups=3,
                             generator=torch.Generator().manual_seed(9))

    steps = [RBM(target.W * float(s), target.a, target.b * float(s))
             for s in np.linspace(0.2, 1.0, 5)]
    a, b = fresh(), fresh()
    for step in steps[:3]:
        a.step(step)
        b.step(step)
    before = a.group_estimates().clone()
    buffer = before.clone()
    a.reanchor(12.5, buffer)
    np.testing.assert_allclose(a.group_estimates(), 12.5, rtol=0, atol=1e-12)
    np.testing.assert_allclose(buffer, 12.5, rtol=0, atol=1e-12)
    assert a.estimate().log_z_std < 1e-12
    shift = 12.5 - before
    for step in steps[3:]:
        a.step(step)
        b.step(step)
        np.testing.assert_allclose(a.group_estimates() - b.group_estimates(), shift,
                                   rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="must be finite"):
        a.reanchor(math.nan)


def test_anchor_bias_rate_and_stated_error() -> None:
    """Drift rate = the largest |gap| / interval over the last 3 anchors (u_0 = 0); the stated
    error adds rate x updates since the anchor to the quadrature of the two random errors."""
    u, g = [100, 200, 400, 500], [0.05, -0.3, 0.2, 0.01]  # rates .0005, .003, .001, .0001
    assert anchor_bias_rate(u, g) == pytest.approx(0.003)
    assert anchor_bias_rate(u, g, window=2) == pytest.approx(0.001)
    assert anchor_bias_rate([], []) == 0.0
    assert math.isnan(anchor_bias_rate([100], [math.nan]))
    with pytest.raises(ValueError, match="increasing updates"):
        anchor_bias_rate([200, 100], [0.1, 0.1])
    assert anchored_log_z_std(groups_std=0.3, anchor_std=0.4, bias_rate=0.002,
                              updates_since=50) == pytest.approx(0.5 + 0.1)
    # no anchors: the groups' error alone, bitwise
    assert anchored_log_z_std(groups_std=0.123, anchor_std=0.0, bias_rate=0.0,
                              updates_since=70) == 0.123


def test_trajectory_ais_resume_is_bitwise_exact() -> None:
    target = random_rbm(N_VIS, 9, seed=5, scale=0.5, dtype=torch.float32)
    start = independent_site(target.a, 9)
    path = [RBM(target.W * s, target.a, target.b * s) for s in np.linspace(0.05, 1.0, 20)]

    def make(gen: torch.Generator) -> TrajectoryAIS:
        return TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=100,
                             n_groups=4, generator=gen, ess_threshold=0.5)

    g = torch.Generator().manual_seed(9)
    full = make(g)
    state, g_state, values = None, None, []
    for i, r in enumerate(path):
        values.append(full.step(r))
        if i == 7:
            state, g_state = full.state_dict(), g.get_state()
    assert full.n_resamples >= 1  # resampling is part of what must resume exactly
    g2 = torch.Generator()
    g2.set_state(g_state)
    resumed = make(g2)
    before = g2.get_state().clone()
    resumed.load_state_dict(state)
    assert torch.equal(g2.get_state(), before)  # constructor + load draw no random numbers
    tail = [resumed.step(r) for r in path[8:]]
    assert tail == values[8:]
    assert torch.equal(resumed.state_dict()["chains"], full.state_dict()["chains"])
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert state["log_w"].dtype == torch.float64 and state["chains"].dtype == torch.uint8


def test_trajectory_ais_groups_error_covers_drift_over_seeds() -> None:
    """Trajectory AIS in 8 independent chain groups of 25 along a 30-step path from the
    independent-site model to a random N=61, M=11 model (log Z moves by ~5 nats; the steps are
    large, so groups resample: 38 events over the seeds), 16 seeds, exact log Z every 3 steps.

    Required: |error| <= 2 log_z_tais_std at >= 85 % of the (seed, step) pairs (observed 93 %;
    with the Student factor an honest error gives 95 %, and the pairs of one seed are
    correlated, so 85 % leaves room for 2-3 unlucky seeds), the bias at the end (mean over
    seeds) is inside the mean stated error, and the stated error is not vacuous (< 0.2 nats,
    while a sign or offset bug in the per-group bookkeeping moves log Z by >= 0.3 nats or by
    log(group size) = 3.2 nats).
    """
    target = random_rbm(N_VIS, 11, seed=21, scale=0.5, dtype=torch.float32)
    start = independent_site(target.a, 11)
    path = [RBM(target.W * float(s), target.a, target.b * float(s))
            for s in np.linspace(0.0, 1.0, 31)[1:]]
    checks = list(range(2, 30, 3))
    exact = np.array([exact_log_z(path[i]) for i in checks])
    errs, stds, resamples = [], [], 0
    for seed in range(16):
        tais = TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=200, n_groups=8,
                             ess_threshold=0.5, generator=torch.Generator().manual_seed(seed))
        est = []
        for i, r in enumerate(path):
            tais.step(r)
            if i in checks:
                est.append(tais.estimate())
        errs.append([e.log_z for e in est] - exact)
        stds.append([e.log_z_std for e in est])
        resamples += tais.n_resamples
    errs, stds = np.array(errs), np.array(stds)
    assert resamples > 10  # resampling within groups is part of what is checked
    assert np.mean(np.abs(errs) <= 2 * stds) >= 0.85, (errs, stds)
    assert abs(errs[:, -1].mean()) <= stds[:, -1].mean()
    assert np.all(stds < 0.2)


def test_trajectory_ais_stages_follow_one_abrupt_step() -> None:
    """One update from the independent-site model straight to a random N=61, M=11 model
    (log Z moves by 5.6 nats at once; 8 seeds, 200 chains in 8 groups). In one stage the
    estimate is an importance sample of the target from the start model: 1.4 nats low on
    average (observed -2.8 to +0.1). Split into 16 interpolated stages with one sweep each
    (docs/methods.md §4), every seed is within 0.13 nats (observed); required: within 0.3 and
    the mean error inside the mean stated error (a wrong interpolation weight, a missing sweep
    or reweighting to the wrong stage moves the estimate by >= 0.5 nats). Then
    :meth:`adapt_stages` asks for the most stages after that step, and halves per call once
    the increments vanish."""
    target = random_rbm(N_VIS, 11, seed=21, scale=0.5, dtype=torch.float32)
    start = independent_site(target.a, 11)
    exact = exact_log_z(target)
    errs = {1: [], 16: []}
    stds = []
    for stages in errs:
        for seed in range(8):
            tais = TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=200,
                                 n_groups=8, generator=torch.Generator().manual_seed(seed))
            tais.n_stages = stages
            tais.step(target)
            est = tais.estimate()
            errs[stages].append(est.log_z - exact)
            if stages == 16:
                stds.append(est.log_z_std)
    assert np.mean(errs[1]) < -0.5, errs[1]  # the test is informative
    assert np.max(np.abs(errs[16])) < 0.3, errs[16]
    assert abs(np.mean(errs[16])) <= np.mean(stds)
    # the stage rule (STAGE_TARGET_SD 0.05, MAX_STAGES 32): s * sd_max / 0.05 rounded up to a
    # power of two, capped; it falls by at most half per call
    one = TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=200, n_groups=8,
                        generator=torch.Generator().manual_seed(0))
    one.step(target)  # per-stage increment s.d. ~3 nats
    assert one.adapt_stages() == 32 and float(one._inc_sd_max) == 0.0
    assert [one.adapt_stages() for _ in range(3)] == [16, 8, 4]
    one._inc_sd_max.fill_(0.06)
    assert one.adapt_stages() == 8  # 4 * 0.06 / 0.05 = 4.8
    one._inc_sd_max.fill_(0.025)
    assert one.adapt_stages() == 4  # 8 * 0.025 / 0.05 = 4: exactly on target
    one._inc_sd_max.fill_(math.nan)
    assert one.adapt_stages(max_stages=7) == 7


def test_trajectory_ais_strides_rise_a_notch_per_call_and_fall_at_once() -> None:
    """Small steps (docs/methods.md §4, "Strides for small steps"): with one stage the stride
    is the largest of STRIDES (1, 2, 5, 10) whose step keeps the increment s.d. at or below
    STAGE_TARGET_SD (0.05), from the per-update s.d. ``sd_max / k_min`` (``k_min``: fewest
    updates a step covered, counted by :meth:`due`), rising one notch per call and falling at
    once; large steps bring back stages with stride 1. :meth:`due` ends a step every
    ``stride`` updates and at every ``last`` one."""
    target = random_rbm(13, 4, seed=4, scale=0.5, dtype=torch.float64)
    start = independent_site(target.a, 4)
    tais = TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=8, n_groups=2,
                         generator=torch.Generator().manual_seed(0))

    def adapt(sd: float, updates_per_step: int) -> tuple[int, int]:
        for _ in range(2):  # two steps of this many updates each
            assert [tais.due(False) for _ in range(updates_per_step - 1)] == [False] * (
                updates_per_step - 1)
            assert tais.due(True)  # the last update before a check always ends a step
        tais._inc_sd_max.fill_(sd)
        return tais.adapt_stages(), tais.stride

    # 0.001 per update: every stride fits (10 x 0.001 <= 0.05); one notch per call
    assert [adapt(0.001 * tais.stride, tais.stride) for _ in range(4)] == [
        (1, 2), (1, 5), (1, 10), (1, 10)]
    assert [tais.due(False) for _ in range(10)] == [False] * 9 + [True]
    tais._since = 0
    # a step of 10 updates at s.d. 0.3 (0.03 per update): only stride 1 fits, at once
    assert adapt(0.3, 10) == (1, 1)
    # 0.02 per update: stride 2 (2 x 0.02 <= 0.05), not 5
    assert adapt(0.02, 1) == (1, 2)
    assert adapt(0.04, 2) == (1, 2)
    # a step that covered fewer updates than the stride (k_min 1) is read as 1 update: 0.04
    assert adapt(0.04, 1) == (1, 1)
    # a large step: stages again, stride 1
    assert adapt(0.4, 1) == (8, 1)
    state = tais.state_dict()
    tais.stride = 5
    tais.load_state_dict(state)
    assert (tais.n_stages, tais.stride) == (8, 1)


def test_trajectory_ais_resamples_each_group_within_itself() -> None:
    """Group 0 has all its weight on one chain (ESS 1/n: resampled), group 1 equal weights (not
    resampled): after one reweighting with a zero increment, every chain of group 0 holds that
    chain's state and its offset is its estimate with the log-weights reset, while group 1's
    chains, weights and offset are untouched; no chain crosses a group."""
    target = random_rbm(13, 4, seed=4, scale=0.5, dtype=torch.float64)
    start = independent_site(target.a, 4)
    tais = TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=8, n_groups=2,
                         generator=torch.Generator().manual_seed(0))
    tais.step(target)
    v = torch.tensor(np.random.default_rng(1).random((8, 13)) < 0.5, dtype=torch.float64)
    tais._v.copy_(v)
    tais._log_w.copy_(torch.tensor([[0.0, 50.0, 0.0, 0.0], [0.3, 0.3, 0.3, 0.3]],
                                   dtype=torch.float64))
    tais._offset.copy_(torch.tensor([1.0, 2.0], dtype=torch.float64))
    before = tais.group_estimates().clone()
    out = tais.reweight(target, target)  # E_t = E_{t+1}: no increment (up to round-off)
    torch.testing.assert_close(out, before)
    assert torch.equal(tais._v[:4], v[1].expand(4, 13))  # the heavy chain, 4 times
    assert torch.equal(tais._v[4:], v[4:])
    torch.testing.assert_close(tais._offset, torch.stack([before[0], torch.tensor(
        2.0, dtype=torch.float64)]))
    assert torch.equal(tais._log_w[0], torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(tais._log_w[1], torch.full((4,), 0.3, dtype=torch.float64),
                               rtol=0, atol=1e-14)
    assert tais._n_resamples.tolist() == [1, 0]


def test_trajectory_ais_kernel_count_does_not_grow_with_groups() -> None:
    """The update that runs inside the CUDA graph (sweep + advance) issues the same
    number of tensor operations for 1 and for 10 groups (counted at the dispatcher: each is a
    kernel launch on CUDA), so the error estimate costs no extra launches per update."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += 1
            return func(*args, **(kwargs or {}))

    target = random_rbm(N_VIS, 7, seed=3, scale=0.3, dtype=torch.float32)
    start = independent_site(target.a, 7)
    counts = {}
    for groups in (1, 10):
        tais = TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=200,
                             n_groups=groups, generator=torch.Generator().manual_seed(0))
        tais.step(target)  # initialise outside the count
        with Count() as c:
            tais.sweep(target)
            tais.advance(target, target)
        counts[groups] = c.n
    assert counts[1] == counts[10], counts


def test_trajectory_ais_bad_input() -> None:
    start = independent_site(torch.zeros(7), 5)
    with pytest.raises(ValueError, match="ess_threshold"):
        TrajectoryAIS(start, log_z=1.0, n_chains=10, generator=torch.Generator(),
                      ess_threshold=0.0)
    tais = TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=10,
                         generator=torch.Generator())
    with pytest.raises(ValueError, match="shape"):
        tais.step(independent_site(torch.zeros(7), 4))
    with pytest.raises(ValueError, match="chains of shape"):
        tais.load_state_dict({**tais.state_dict(), "chains": torch.zeros(3, 7)})


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_log_z_with_tf32_enabled_matches_cpu_float64() -> None:
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    try:
        r32 = random_rbm(N_VIS, 20, seed=6, scale=0.3, dtype=torch.float32)
        data = (torch.rand(1001, N_VIS, generator=torch.Generator().manual_seed(0)) < 0.2)
        cpu = exact_log_z(r32.to(dtype=torch.float64))
        gpu = exact_log_z(r32.to("cuda"))
        assert gpu == pytest.approx(cpu, rel=1e-9)
        ll_cpu = log_likelihood(r32, data, log_z=cpu)
        ll_gpu = log_likelihood(r32.to("cuda"), data.cuda(), log_z=gpu)
        assert ll_gpu == pytest.approx(ll_cpu, rel=1e-9)
        g = torch.Generator(device="cuda").manual_seed(0)
        est = ais_log_z(r32.to("cuda"), n_chains=1000, n_betas=1000, n_repeats=2, generator=g)
        assert abs(est.log_z - cpu) < TOL_LOGZ
        start = independent_site(r32.a, 20).to("cuda")
        tais = TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=2000,
                             generator=torch.Generator(device="cuda").manual_seed(1))
        for s in np.linspace(0.1, 1.0, 10):
            lz = tais.step(RBM(r32.W.cuda() * float(s), r32.a.cuda(), r32.b.cuda() * float(s)))
        assert abs(lz - cpu) < TOL_LOGZ
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_ais_with_split_products_matches_exact_and_float32_ais() -> None:
    """AIS on the GPU samples with split bfloat16 products by default (float32 accuracy:
    the default's weights are those of Sampler(split_bf16=True)), and its stated error covers
    its error against exact log Z as float32 AIS's does (the coverage test above, on the GPU:
    N = 61, M = 13, 2 x 25 chains, 100 betas, error ~0.09 nats, 100 seeds each; the CPU
    gives 92 % within 2 stated errors for both samplers, an honest error ~95 %; 85 % is 2.6
    and 4.5 binomial s.d. below those), with the same
    distribution as float32 AIS: the seed-paired differences split - float32 (same seeds:
    mostly the same chains) have a mean within 3 standard errors of 0, plus 1e-4 for the
    float32-accurate x (partition.ais_log_weights: <= 1.1 sum_mu max|dx| ~ 1e-5 here)."""
    rbm = random_rbm(N_VIS, N_HID, seed=7, scale=0.5, dtype=torch.float32)
    ref = exact_log_z(rbm.to(dtype=torch.float64))
    gpu = rbm.to("cuda")
    kw = dict(n_chains=25, n_betas=100, n_repeats=2)
    lw_default, _ = ais_log_weights(gpu, generator=torch.Generator("cuda").manual_seed(0), **kw)
    lw_split, _ = ais_log_weights(gpu, generator=torch.Generator("cuda").manual_seed(0),
                                  sampler=Sampler.for_model(gpu, split_bf16=True), **kw)
    assert torch.equal(lw_default, lw_split)
    err = {}
    for split in (True, False):
        ests = [ais_log_z(gpu, generator=torch.Generator("cuda").manual_seed(s),
                          sampler=Sampler.for_model(gpu, split_bf16=split), **kw)
                for s in range(100)]
        e = np.array([x.log_z - ref for x in ests])
        std = np.array([x.log_z_std for x in ests])
        assert 0.02 < e.std() < 0.3  # a real error to cover
        assert abs(e.mean()) <= std.mean(), split
        assert np.mean(np.abs(e) <= 2 * std) >= 0.85, (split, np.mean(np.abs(e) <= 2 * std))
        err[split] = e
    d = err[True] - err[False]
    assert abs(d.mean()) <= 3 * d.std(ddof=1) / np.sqrt(len(d)) + 1e-4, d
