"""PCD training: config validation, schedule, gradient vs exact autograd, learning, divergence."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from conftest import SGD_RECIPE

from spikerbm import io
from spikerbm import rbm as R
from spikerbm.config import PRECISIONS, TrainConfig
from spikerbm.exact import binary_states
from spikerbm.likelihood import ONLINE_VARS
from spikerbm.pcd import TrainingDivergedError, pcd_gradient, pcd_step
from spikerbm.sampling import Sampler, random_states
from spikerbm.train_state import MinibatchStream, OnlineCurve
from spikerbm.training import _log_stop, checkpoint_schedule, train, train_to_files

N, M, B = 7, 5, 11  # distinct odd sizes


def all_states(n: int) -> torch.Tensor:
    return binary_states(n)


def exact_log_z(r: R.RBM) -> float:
    """log Z by enumerating the hidden layer (float64)."""
    return torch.logsumexp(-R.hidden_free_energy(r, all_states(r.n_hidden)), 0).item()


def exact_ll(r: R.RBM, data: np.ndarray) -> float:
    """Mean exact log-likelihood per sample (nats)."""
    return float(-R.free_energy(r, torch.as_tensor(data)).mean().item() - exact_log_z(r))


# ---------------------------------------------------------------------------------------------
# Config and schedule
# ---------------------------------------------------------------------------------------------
def test_config_from_repo_yaml_and_errors():
    from pathlib import Path

    cfg_yaml = yaml.safe_load((Path(__file__).parents[1] / "config/config.yaml").read_text())
    n_h = cfg_yaml["train"]["n_hidden"][0]
    cfg = TrainConfig.from_config(cfg_yaml["train"], n_hidden=n_h, device=cfg_yaml["device"])
    assert cfg.n_hidden == n_h and cfg.n_updates == cfg_yaml["train"]["n_updates"]
    assert json.loads(cfg.to_json())["lr"] == cfg_yaml["train"]["lr"]
    with pytest.raises(AttributeError):
        cfg.lr = 1.0  # frozen
    train_sec = dict(cfg_yaml["train"])
    with pytest.raises(ValueError, match="unknown train config key.*'learning_rate'"):
        TrainConfig.from_config({**train_sec, "learning_rate": 0.1}, n_hidden=n_h)
    with pytest.raises(ValueError, match="n_hidden=7 is not one of"):
        TrainConfig.from_config(train_sec, n_hidden=7)
    with pytest.raises(ValueError, match=r"train\.lr must be > 0; got -0.5"):
        TrainConfig.from_config({**train_sec, "lr": -0.5}, n_hidden=n_h)
    with pytest.raises(ValueError, match=r"train\.k must be an integer; got 2.5"):
        TrainConfig.from_config({**train_sec, "k": 2.5}, n_hidden=n_h)
    with pytest.raises(ValueError, match="n_checkpoints = 12 exceeds n_updates"):
        TrainConfig.from_config({**train_sec, "n_updates": 10, "n_checkpoints": 12}, n_hidden=n_h)
    with pytest.raises(ValueError, match="centered must be true or false"):
        TrainConfig.from_config({**train_sec, "centered": "yes"}, n_hidden=n_h)
    with pytest.raises(ValueError, match="device must be one of"):
        TrainConfig(n_hidden=3, device="gpu")


@pytest.mark.parametrize("n_updates, n_ckpt", [(2000, 20), (10000, 50), (5, 6), (10, 8),
                                               (1, 2), (37, 9)])
def test_checkpoint_schedule(n_updates, n_ckpt):
    c = checkpoint_schedule(n_updates, n_ckpt)
    assert c[0] == 0 and c[-1] == n_updates and len(c) == n_ckpt
    assert np.all(np.diff(c) >= 1) and c.dtype == np.int64
    if n_updates >= 100 * n_ckpt:  # log-spaced: ratios of successive late checkpoints ~ equal
        r = c[-5:] / c[-6:-1]
        assert np.allclose(r, (n_updates ** (1 / (n_ckpt - 2))), rtol=0.05)


def test_minibatches_cover_each_epoch_once_and_resume():
    s = MinibatchStream(23, batch_size=5, generator=torch.Generator().manual_seed(0))
    epoch = torch.cat([s.next_indices() for _ in range(4)])  # 20 of 23 (the rest dropped)
    assert len(set(epoch.tolist())) == 20
    state = s.state_dict()
    nxt = [s.next_indices() for _ in range(7)]
    s2 = MinibatchStream(23, batch_size=5, generator=torch.Generator().manual_seed(99))
    s2.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(nxt, [s2.next_indices() for _ in range(7)],
                                                 strict=True))
    with pytest.raises(ValueError, match="batch_size = 30 exceeds the 23 training bins"):
        MinibatchStream(23, batch_size=30, generator=torch.Generator())


# ---------------------------------------------------------------------------------------------
# Gradient with exact model averages vs autograd of the exact log-likelihood
# ---------------------------------------------------------------------------------------------
def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    r = R.RBM(0.7 * torch.randn(N, M, generator=g, dtype=torch.float64),
              0.3 * torch.randn(N, generator=g, dtype=torch.float64),
              0.3 * torch.randn(M, generator=g, dtype=torch.float64))
    data = (torch.rand(B, N, generator=g, dtype=torch.float64) < 0.4).double()
    return r, data


def _exact_gradient(r, data, *, centered):
    V = all_states(N)
    p_model = torch.softmax(-R.free_energy(r, V), 0)
    return pcd_gradient(data, R.hidden_probs(r, data), V, R.hidden_probs(r, V),
                        centered=centered, w_model=p_model)


def _autograd_ll(r, data):
    W, a, b = (t.clone().requires_grad_(True) for t in (r.W, r.a, r.b))
    rr = R.RBM(W, a, b)
    log_z = torch.logsumexp(-R.free_energy(rr, all_states(N)), 0)
    ll = -R.free_energy(rr, data).mean() - log_z
    gw, ga, gb = torch.autograd.grad(ll, (W, a, b))
    return gw, ga, gb


def test_plain_gradient_equals_autograd_of_exact_loglik():
    r, data = _setup()
    g = _exact_gradient(r, data, centered=False)
    for got, want in zip((g.W, g.a, g.b), _autograd_ll(r, data), strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-12)


def test_centered_gradient_matches_methods_formula_and_reparametrisation():
    r, data = _setup(1)
    gc = _exact_gradient(r, data, centered=True)
    # (1) docs/methods.md §3 literally: G_W = <(v-v̄)(h-h̄)>_d - <(v-v̄)(h-h̄)>_m, weighted
    # model average
    V = all_states(N)
    p = torch.softmax(-R.free_energy(r, V), 0)
    hd, hm = R.hidden_probs(r, data), R.hidden_probs(r, V)
    vbar, hbar = data.mean(0), hd.mean(0)
    cov_d = (data - vbar).T @ (hd - hbar) / B
    cov_m = ((V - vbar) * p[:, None]).T @ (hm - hbar)
    G_W = cov_d - cov_m
    G_a = data.mean(0) - p @ V - G_W @ hbar
    G_b = hbar - p @ hm - G_W.T @ vbar
    for got, want in zip((gc.W, gc.a, gc.b), (G_W, G_a, G_b), strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-12)
    # (2) it is the gradient in the centered parametrisation mapped back to (W, a, b):
    # theta(W_c, a_c, b_c) = (W_c, a_c - W_c h̄, b_c - W_c^T v̄) (linear), so
    # autograd w.r.t. (W_c, a_c, b_c) gives (G_W, g_a, g_b) and the step J g_c is (G_W, G_a, G_b).
    Wc = r.W.clone().requires_grad_(True)
    ac = (r.a + r.W @ hbar).requires_grad_(True)
    bc = (r.b + r.W.T @ vbar).requires_grad_(True)
    rr = R.RBM(Wc, ac - Wc @ hbar, bc - Wc.T @ vbar)
    ll = -R.free_energy(rr, data).mean() - torch.logsumexp(-R.free_energy(rr, V), 0)
    dW, da, db = torch.autograd.grad(ll, (Wc, ac, bc))
    np.testing.assert_allclose(dW.numpy(), gc.W.numpy(), rtol=1e-10, atol=1e-12)
    plain = _autograd_ll(r, data)
    np.testing.assert_allclose(da.numpy(), plain[1].numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db.numpy(), plain[2].numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose((da - dW @ hbar).numpy(), gc.a.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose((db - dW.T @ vbar).numpy(), gc.b.numpy(), rtol=1e-10, atol=1e-12)
    # (3) hence an ascent direction: <J J^T g, g> = |J^T g|^2 > 0
    inner = sum((x * y).sum() for x, y in zip((gc.W, gc.a, gc.b), plain, strict=True))
    assert inner > 0
    # and a different direction from the plain gradient (the test can tell them apart)
    assert not np.allclose(gc.W.numpy(), plain[0].numpy(), atol=1e-6)


def test_pcd_step_uses_chains_and_is_pure_in_parameters():
    g = torch.Generator().manual_seed(0)
    r = R.RBM(0.1 * torch.randn(N, M, generator=g), torch.zeros(N), torch.zeros(M))
    before = r.clone()
    batch = (torch.rand(B, N, generator=g) < 0.3).float()
    chains = Sampler(torch.device("cpu")).chains(
        random_states(n_chains=13, n_visible=N, generator=g), n_hidden=M, generator=g)
    new, grad = pcd_step(r, batch, chains, k=3, lr=0.1, centered=False)
    assert all(torch.equal(x, y) for x, y in zip((r.W, r.a, r.b), (before.W, before.a, before.b),
                                                 strict=True))
    np.testing.assert_allclose(grad.a.numpy(), (batch.mean(0) - chains.v.mean(0)).numpy(),
                               atol=1e-6)
    np.testing.assert_allclose((new.W - r.W).numpy(), 0.1 * grad.W.numpy(), atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Training on synthetic data from a planted RBM
# ---------------------------------------------------------------------------------------------
NV, NH = 21, 5


@pytest.fixture(scope="module")
def planted_data():
    """Samples of a planted RBM (two 8-neuron assemblies + one random hidden unit): 4001 train,
    1999 test bins. Its exact test LL beats the independent-site model by ~1.9 nats/sample."""
    g = torch.Generator().manual_seed(3)
    W = torch.zeros(NV, 3)
    W[:8, 0], W[8:16, 1], W[:, 2] = 3.0, 3.0, 0.6 * torch.randn(NV, generator=g)
    planted = R.RBM(W, -2.0 * torch.ones(NV), torch.tensor([-10.0, -10.0, -1.0]))
    chains = Sampler(torch.device("cpu")).chains(
        random_states(n_chains=6000, n_visible=NV, generator=g), n_hidden=3, generator=g)
    chains.sweep(planted, k=200)
    v = chains.v.numpy().astype(np.uint8)
    return v[:4001], v[4001:]


def test_training_raises_exact_test_loglik(planted_data):
    """Exact LL (log Z by enumerating 2^5 hidden states) rises over a short PCD run.

    The planted model beats the initialisation (~ independent-site model) by ~1.9 nats/sample;
    400 updates from weight_std 0.1 recover > 0.5 of it (about 1.3 centered, 1.0 plain, seen
    on this seed). The LL is exact (no estimator noise), so 0.5 nats cannot come from noise and
    a sign error or swapped moment would make it fall instead. Adam + decay (centered
    coordinates, docs/methods.md §3) must end no lower than SGD on these strongly clustered
    data (seen: -11.00 vs -11.07, truth -10.99; entrywise Adam of the mapped-back centered
    direction ended at -11.68 here and collapsed to -16 to -21 on other seeds); 0.02 nats is
    about 4x the spread of Adam's final LL over 6 seeds.
    """
    train_v, test_v = planted_data
    adam = {"optimizer": "adam", "lr": 0.03, "lr_final": 0.01, "decay_start": 0.5}
    final = {}
    for name, kw in {"centered": {"centered": True}, "plain": {"centered": False},
                     "adam": adam}.items():
        cfg = TrainConfig(**{**dict(n_hidden=NH, n_updates=400, n_checkpoints=6, n_chains=201,
                                    batch_size=201, k=5, lr=0.1, weight_std=0.1,
                                    tais_chains=0, device="cpu", **SGD_RECIPE), **kw})
        ds = train(train_v, cfg=cfg, seed=11)
        ll = [exact_ll(R.rbm_from_dataset(ds, checkpoint=int(c), dtype=torch.float64), test_v)
              for c in ds.checkpoint.values]
        assert ll[-1] > ll[0] + 0.5, (kw, ll)
        final[name] = ll[-1]
    assert final["adam"] > final["centered"] - 0.02, final


def test_model_dataset_contract_and_tais(planted_data):
    """model dataset layout (docs/data-model.md), the resume state beside it, and
    trajectory-AIS log Z vs exact at every checkpoint."""
    train_v, _ = planted_data
    cfg = TrainConfig(n_hidden=NH, n_updates=200, n_checkpoints=7, n_chains=101, batch_size=101,
                      k=3, lr=0.1, weight_std=0.1, tais_chains=500, device="cpu", **SGD_RECIPE)
    coords = {"unit_id": np.arange(NV, dtype=np.int64) + 100, "area": ["A"] * 10 + ["B"] * 11}
    states: list = []
    ds = train(train_v, cfg=cfg, seed=5, neuron_coords=coords, on_checkpoint=states.append)
    assert ds["W"].dims == ("checkpoint", "neuron", "hidden") and ds["W"].dtype == np.float32
    assert ds["a"].dims == ("checkpoint", "neuron") and ds["b"].dims == ("checkpoint", "hidden")
    # model.nc: the trajectory and the online curve (its log-likelihoods NaN without test data)
    assert set(ds.data_vars) == {"W", "a", "b", "log_z_tais", "log_z_tais_std",
                                 *ONLINE_VARS}
    assert np.isnan(ds["ll_test_online"]).all() and np.isfinite(ds["log_z_online"]).all()
    assert ds.attrs["stop_reason"] == "max_updates" and ds.attrs["still_improving"] == -1
    # the sampler state lives in the resume state (the last one is the final state)
    final = states[-1]
    assert final["chains__v"].shape == (101, NV) and final["chains__v"].dtype == np.uint8
    assert ds.sizes["hidden"] == NH
    assert ds["checkpoint"].values.tolist() == checkpoint_schedule(200, 7).tolist()
    assert ds["unit_id"].values[0] == 100 and ds["area"].values[-1] == "B"
    for name in ("chains__rng", "batches__rng", "tais__rng"):
        assert final[name].dtype == np.uint8
    assert json.loads(ds.attrs["train_config"])["n_hidden"] == NH and ds.attrs["n_hidden"] == NH
    # update 0 is the initialisation: b = 0, a = logit(train mean)
    assert np.all(ds["b"].isel(checkpoint=0).values == 0)
    p = np.clip(train_v.mean(0, dtype=np.float64), 1e-4, 1 - 1e-4)
    # float32 logit of values |a| < 10: round-off ~1e-6
    np.testing.assert_allclose(ds["a"].isel(checkpoint=0).values, np.log(p) - np.log1p(-p),
                               rtol=0, atol=1e-5)
    # W ~ weight_std N(0, 1): the s.d. of 105 draws is within ~7% of 0.1 (1 s.e.); 30% is > 4 s.e.
    assert abs(float(ds["W"].isel(checkpoint=0).std()) / 0.1 - 1) < 0.3
    # trajectory AIS along training (helper C's estimator) tracks exact log Z; 503 chains and
    # small steps: 0.05 nats is ~10x the typical error (docs/methods.md §4: 0.003 over 400 steps)
    exact = [exact_log_z(R.rbm_from_dataset(ds, checkpoint=int(c), dtype=torch.float64))
             for c in ds.checkpoint.values]
    np.testing.assert_allclose(ds["log_z_tais"].values, exact, atol=0.05)
    # ... and its stated error covers that at every checkpoint (3 sigma: a 0.3 % event each)
    assert np.all(np.abs(ds["log_z_tais"].values - exact) <= 3 * ds["log_z_tais_std"].values)


def _stop_cfg(**kw) -> TrainConfig:
    base = dict(n_hidden=NH, n_updates=3000, n_checkpoints=8, n_chains=100, batch_size=100,
                k=3, lr=0.1, weight_std=0.1, tais_chains=100, tais_groups=5, eval_every=50,
                patience=400, min_delta=0.005, device="cpu", **SGD_RECIPE)
    return TrainConfig(**{**base, **kw})


def test_early_stopping_keeps_the_best_checkpoint_and_never_trains_on_test(planted_data):
    """150 train bins overfit: the online test LL peaks (~update 1000) and then falls. Training
    stops at the first evaluation where the best test LL of the last `patience` updates is
    less than `min_delta` above the best before them; the best evaluation is a stored
    checkpoint; the online values are the exact LL of those parameters within their stated
    error; and the test split only decides when to stop: a run without it, told to stop at the
    same update, ends with bitwise the same parameters (same chains, same minibatches)."""
    train_v, test_v = planted_data
    cfg = _stop_cfg()
    ds = train(train_v[:150], test_data=test_v, cfg=cfg, seed=11)
    stop, best = int(ds.attrs["n_updates_done"]), int(ds.attrs["best_update"])
    assert ds.attrs["stop_reason"] == "early_stop" and ds.attrs["still_improving"] == 0
    assert cfg.patience <= stop < cfg.n_updates and stop % cfg.eval_every == 0
    assert best < stop and {best, stop} <= set(ds["checkpoint"].values.tolist())
    u, ll = ds["eval_update"].values, ds["ll_test_online"].values
    assert u.tolist() == list(range(0, stop + 1, cfg.eval_every))
    assert ll[u == best][0] == ll.max() == ds.attrs["best_ll_test_online"]
    # the criterion, recomputed: it holds at the stop and at no earlier evaluation
    def gain(k: int) -> float:
        start = u[k] - cfg.patience
        return ll[: k + 1][u[: k + 1] > start].max() - ll[: k + 1][u[: k + 1] <= start].max()
    assert gain(len(u) - 1) < cfg.min_delta
    assert all(gain(k) >= cfg.min_delta for k in range(len(u) - 1) if u[k] >= cfg.patience)
    assert ds.attrs["ll_test_online_gain"] == pytest.approx(gain(len(u) - 1))
    # online LL = exact LL of the same parameters, within 3 stated errors (log Z from TAIS)
    for update in (best, stop):
        r = R.rbm_from_dataset(ds, checkpoint=update, dtype=torch.float64)
        k = int(np.nonzero(u == update)[0][0])
        assert abs(ll[k] - exact_ll(r, test_v)) <= 3 * ds["ll_test_online_std"].values[k]
        train_sub = ds["ll_train_online"].values[k]
        assert train_sub > exact_ll(r, test_v)  # overfitted: train above test
    # gradients never saw the test split
    blind = train(train_v[:150], cfg=_stop_cfg(n_updates=stop, patience=0), seed=11)
    for name in ("W", "a", "b"):
        np.testing.assert_array_equal(blind[name].sel(checkpoint=stop).values,
                                      ds[name].sel(checkpoint=stop).values)


def test_maximum_reached_while_improving_is_said(planted_data, caplog):
    """With all 4001 train bins the test LL still rises after 600 updates: the run ends at the
    maximum, `still_improving` is 1 and the log says that training did not reach its peak."""
    train_v, test_v = planted_data
    with caplog.at_level("WARNING", logger="spikerbm.training"):
        ds = train(train_v, test_data=test_v, cfg=_stop_cfg(n_updates=600), seed=11)
    assert ds.attrs["stop_reason"] == "max_updates" and ds.attrs["n_updates_done"] == 600
    assert ds.attrs["still_improving"] == 1 and ds.attrs["ll_test_online_gain"] >= 0.005
    assert "did not reach its peak" in caplog.text and "raise train.n_updates" in caplog.text


def test_online_curve_gain_and_stop_rule() -> None:
    """OnlineCurve on hand-made values: the window, the clamped start, NaN as -inf, the best."""
    curve = OnlineCurve(patience=200, min_delta=0.1, window=200)
    rbm = R.RBM(torch.zeros(3, 2), torch.zeros(3), torch.zeros(2))
    for update, value in [(0, -5.0), (100, -4.0), (200, -3.5), (300, -3.45), (400, np.nan)]:
        curve.record(update, ll_train=value, ll_test=value, log_z=1.0, log_z_std=0.1, rbm=rbm)
        if update == 100:
            assert curve.gain() == pytest.approx(1.0) and not curve.should_stop()  # < patience
        if update == 300:  # window (100, 300]: -3.45 vs before: -4.0
            assert curve.gain() == pytest.approx(0.55) and curve.still_improving() == 1
    # (200, 400]: best -3.45 vs -3.5 before: 0.05 < 0.1 -> stop; NaN counts as no value
    assert curve.gain() == pytest.approx(0.05) and curve.should_stop()
    assert curve.still_improving() == 0 and curve.best_update == 300
    assert curve.best_params is not None and curve.best_ll == -3.45
    off = OnlineCurve(patience=0, min_delta=0.1, window=200)
    for update in (0, 100, 200, 300):
        off.record(update, ll_train=0.0, ll_test=float(update), log_z=0.0, log_z_std=0.0,
                   rbm=rbm)
    assert not off.should_stop() and off.still_improving() == 1
    assert OnlineCurve(patience=0, min_delta=0.1, window=200).still_improving() == -1
    assert OnlineCurve.for_config(TrainConfig(n_hidden=2, n_updates=2000,
                                              patience=0)).window == 500


def test_decaying_rate_arms_early_stopping_after_decay_start_plus_patience() -> None:
    """With lr_final < 1 the stop rule is judged from decay_start * n_updates + patience on (the
    constant-rate phase's curve is noisy; docs/methods.md §3); the same curve that stops a
    constant-rate run at update 400 does not stop one whose decay starts at update 1000, and
    the decay phase is judged against itself: a lucky evaluation of the constant-rate phase
    (update 300, 0.5 above the rest) neither stops a decay that still gains nor hides its
    plateau."""
    rbm = R.RBM(torch.zeros(3, 2), torch.zeros(3), torch.zeros(2))
    const = OnlineCurve.for_config(TrainConfig(n_hidden=2, n_updates=2000, patience=200,
                                               min_delta=0.1, lr_final=1.0))
    decay = OnlineCurve.for_config(TrainConfig(n_hidden=2, n_updates=2000, patience=200,
                                               min_delta=0.1, lr_final=0.01, decay_start=0.5))
    assert (const.armed_from, decay.armed_from) == (200, 1200)
    for update in range(0, 1300, 100):  # flat after update 200
        for curve in (const, decay):
            curve.record(update, ll_train=0.0, ll_test=-3.0 + min(update, 200) * 1e-3,
                         log_z=0.0, log_z_std=0.0, rbm=rbm)
        assert const.should_stop() == (update >= 400)
        assert decay.should_stop() == (update >= 1200)
    lucky = OnlineCurve.for_config(TrainConfig(n_hidden=2, n_updates=2000, patience=200,
                                               min_delta=0.1, lr_final=0.01, decay_start=0.5))
    assert lucky.decay_from == 1000
    for update in range(0, 2100, 100):  # constant phase flat at -3 but for -2.5 at 300; the
        # decay gains 0.1 per 100 updates up to 1600, then is flat; an error of 0.2 makes the
        # lucky 0.5 no significant decline (2 x hypot(0.2, 0.2) = 0.57)
        ll = -2.5 if update == 300 else -3.0 + 0.1 * min(max(update - 1000, 0), 600) / 100
        lucky.record(update, ll_train=0.0, ll_test=ll, log_z=0.0, log_z_std=0.2, rbm=rbm)
        assert lucky.should_stop() == (update >= 1800), update
    assert lucky.still_improving() == 0 and lucky.gain() == pytest.approx(0.0)


def _decaying_curve(values: dict[int, float], std: float) -> tuple[OnlineCurve, list[bool]]:
    """An OnlineCurve of a decaying schedule (decay from update 1000 of 2000, patience 200,
    min_delta 0.01) fed ``values`` (update -> online test LL, stated error ``std``); the stop
    decision after each evaluation."""
    rbm = R.RBM(torch.zeros(3, 2), torch.zeros(3), torch.zeros(2))
    curve = OnlineCurve.for_config(TrainConfig(n_hidden=2, n_updates=2000, patience=200,
                                               min_delta=0.01, lr_final=0.01, decay_start=0.5))
    assert (curve.decay_from, curve.armed_from) == (1000, 1200)
    stops = []
    for update, ll in values.items():
        curve.record(update, ll_train=0.0, ll_test=ll, log_z=0.0, log_z_std=std, rbm=rbm)
        stops.append(curve.should_stop())
    return curve, stops


def test_significant_decline_stops_in_every_phase(caplog) -> None:
    """docs/methods.md §3: past its peak the online test LL falls; once the best of the last
    `window` updates is below the best before by more than max(min_delta, 2 x their combined
    error), training stops, in the constant-rate phase of a decaying schedule too (where the
    plateau rule is not armed). Peak -3.0 at update 400, then -0.1 per 100 updates, error 0.05
    (threshold 2 x hypot(0.05, 0.05) = 0.141): at 600 the window (400, 600] holds -3.1 (0.1 below,
    no stop), at 700 it holds -3.2 at best (0.2 below, 2.8 errors: stop)."""
    values = {u: -3.0 - 0.1 * max(u - 400, 0) / 100 - 1e-3 * max(400 - u, 0)
              for u in range(0, 1100, 100)}
    curve, stops = _decaying_curve(values, std=0.05)
    assert stops == [u >= 700 for u in values]
    curve, _ = _decaying_curve({u: v for u, v in values.items() if u <= 700}, std=0.05)
    drop, err = curve.decline()
    assert drop == pytest.approx(0.2) and err == pytest.approx(math.hypot(0.05, 0.05))
    assert curve.declined() and math.isnan(curve.gain())  # the plateau rule is not armed
    assert curve.still_improving() == 0  # known: past its peak (not -1, "unknown")
    # the rule's state is the curve itself: restored from resume.nc's variables, it decides alike
    ds = xr.Dataset(curve.data_vars(), coords=curve.coords(), attrs=curve.resume_attrs())
    back = OnlineCurve.from_dataset(ds, TrainConfig(n_hidden=2, n_updates=2000, patience=200,
                                                    min_delta=0.01, lr_final=0.01,
                                                    decay_start=0.5))
    assert back.decline() == (drop, err) and back.should_stop()
    curve.stop_reason = "early_stop"
    cfg = TrainConfig(n_hidden=2, n_updates=2000, patience=200, min_delta=0.01)
    with caplog.at_level("INFO", logger="spikerbm.training"):
        _log_stop(curve, 700, cfg)
    assert "past its peak" in caplog.text and "0.2000 nats/sample below the best -3.0000 at " \
        "update 400 (2.8 times their combined stated error" in caplog.text


def test_decline_within_the_error_or_min_delta_does_not_stop() -> None:
    """A decline within 2 combined errors (here 0.3 against 2 x hypot(0.2, 0.2) = 0.57), or
    below min_delta with an exact log Z (0.005 < 0.01, error 0), does not stop; nor does a
    noisy plateau of the constant-rate phase (alternating +-0.05 around -3 with error 0.05:
    its best is reached again in every window)."""
    falls = {u: -3.0 - 0.3 * min(max(u - 400, 0), 300) / 300 for u in range(0, 1100, 100)}
    curve, stops = _decaying_curve(falls, std=0.2)
    assert not any(stops) and curve.decline()[0] == pytest.approx(0.3) and not curve.declined()
    tiny = {u: -3.0 - 0.005 * (u >= 500) for u in range(0, 1100, 100)}
    curve, stops = _decaying_curve(tiny, std=0.0)
    assert not any(stops) and curve.decline() == (pytest.approx(0.005), 0.0)
    noisy = {u: -3.0 + 0.05 * (-1) ** (u // 100) for u in range(0, 1100, 100)}
    curve, stops = _decaying_curve(noisy, std=0.05)
    assert not any(stops) and curve.decline()[0] <= 0


def test_divergence_names_update_and_parameter_and_keeps_checkpoint(tmp_path, planted_data):
    train_v, _ = planted_data
    cfg = TrainConfig(n_hidden=NH, n_updates=50, n_checkpoints=5, n_chains=21, batch_size=21,
                      k=1, lr=3e38, tais_chains=0, device="cpu", **SGD_RECIPE)  # overflows float32
    model, resume = tmp_path / "model.nc", tmp_path / "resume.nc"
    with pytest.raises(TrainingDivergedError) as err:
        train_to_files(train_v, cfg=cfg, seed=0, model_path=model, resume_path=resume)
    msg = str(err.value)
    m = re.search(r"at update (\d+): parameter (W|a|b) has", msg)
    assert m, msg
    assert not model.exists()
    kept = io.read_netcdf(resume)
    assert int(kept.attrs["n_updates_done"]) < int(m.group(1))
    assert np.isfinite(kept["W"].values).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_training_agree_statistically(planted_data):
    """Same init (drawn on CPU from the same seed), different random streams on CPU and CUDA
    (float32, TF32, and the fused bf16 path with its CUDA graph): the exact test LL after 400
    updates agrees within 0.1 nats. Over 6 CPU seeds the final LL has s.d. 0.026 (range
    0.07), so 0.1 is ~4 s.d.; each run must also gain > 0.5 nats over its initialisation (a
    broken device path would not learn)."""
    train_v, test_v = planted_data
    lls = {}
    for device in ("cpu", "cuda"):
        for precision in (PRECISIONS if device == "cuda" else ("float32",)):
            cfg = TrainConfig(n_hidden=NH, n_updates=400, n_checkpoints=4, n_chains=201,
                              batch_size=201, k=5, lr=0.1, weight_std=0.1, tais_chains=200,
                              device=device, precision=precision, **SGD_RECIPE)
            ds = train(train_v, cfg=cfg, seed=11)
            r0 = R.rbm_from_dataset(ds, checkpoint=0, dtype=torch.float64)
            r = R.rbm_from_dataset(ds, dtype=torch.float64)
            lls[(device, precision)] = exact_ll(r, test_v)
            assert lls[(device, precision)] > exact_ll(r0, test_v) + 0.5
            # trajectory AIS on the device tracks the exact log Z (float64 energies)
            assert abs(ds["log_z_tais"].values[-1] - exact_log_z(r)) < 0.05
    ref = lls[("cpu", "float32")]
    for val in lls.values():
        assert abs(val - ref) < 0.1, lls


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_bf16_training_resumes_exactly_and_stops_on_divergence(planted_data):
    """The fused path (bf16 kernels, one CUDA-graph replay per update, trajectory AIS inside
    the graph): a run restarted from a mid-training state ends where the uninterrupted run
    ends (counter-based Philox keys and every state restored; the kernels are deterministic,
    so equality is exact up to float32 rounding, asserted at 1e-6), and a learning rate
    that blows up raises TrainingDivergedError naming the update, after the last good
    checkpoint state (finite) was handed out."""
    from spikerbm import kernels

    if not kernels.available("cuda"):
        pytest.skip("needs Triton")
    train_v, _ = planted_data
    cfg = TrainConfig(n_hidden=NH, n_updates=60, n_checkpoints=6, n_chains=201,
                      batch_size=201, k=5, lr=0.1, weight_std=0.1, tais_chains=200,
                      device="cuda", precision="bf16", **SGD_RECIPE)
    states: list = []
    full = train(train_v, cfg=cfg, seed=3, on_checkpoint=states.append)
    mid = states[3]
    assert 0 < mid.attrs["n_updates_done"] < cfg.n_updates and "chains__philox" in mid
    again: list = []
    resumed = train(train_v, cfg=cfg, seed=3, resume=mid, on_checkpoint=again.append)
    for var in ("W", "a", "b", "log_z_tais"):
        np.testing.assert_allclose(resumed[var].values, full[var].values, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(again[-1]["chains__v"].values, states[-1]["chains__v"].values)
    blown = TrainConfig(**{**cfg.to_dict(), "lr": 3e38})  # overflows float32
    kept: list = []
    with pytest.raises(TrainingDivergedError, match=r"diverged at update \d+.*train.lr"):
        train(train_v, cfg=blown, seed=3, on_checkpoint=kept.append)
    assert kept and all(np.isfinite(s["W"].values).all() for s in kept)


# ---------------------------------------------------------------------------------------------
# Optimizer and learning-rate schedule (train.optimizer, lr_final, decay_start)
# ---------------------------------------------------------------------------------------------
def test_lr_schedule_holds_then_decays_geometrically():
    """docs/methods.md §3: lr for u <= s = decay_start * n_updates, then lr * f^((u-s)/(T-s));
    host and device (graph-capturable) forms agree."""
    from spikerbm.pcd import lr_schedule

    kw = dict(lr=0.03, n_updates=1000, lr_final=0.01, decay_start=0.4)
    for u, want in [(1, 0.03), (400, 0.03), (700, 0.03 * 0.01**0.5), (1000, 0.03 * 0.01),
                    (1300, 0.03 * 0.01)]:  # clipped past the maximum (a resumed longer run)
        assert lr_schedule(u, **kw) == pytest.approx(want, rel=1e-12)
        dev = lr_schedule(torch.tensor(u), **kw)
        assert dev.dtype == torch.float64 and float(dev) == pytest.approx(want, rel=1e-12)
    assert lr_schedule(777, lr=0.1, n_updates=1000, lr_final=1.0, decay_start=0.0) == 0.1


def _grads(seed: int, n: int, *, centered: bool = False) -> list:
    """Random directions; ``centered`` adds offsets v̄ in (0, 1)^N, h̄ in (0, 1)^M."""
    from spikerbm.pcd import Gradient

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        W, a, b = (torch.randn(N, M, generator=g), torch.randn(N, generator=g),
                   torch.randn(M, generator=g))
        off = ({"v_offset": torch.rand(N, generator=g), "h_offset": torch.rand(M, generator=g)}
               if centered else {})
        out.append(Gradient(W, a, b, **off))
    return out


def _centered_reference_step(ref: dict, grad, *, centered: bool, step) -> dict:
    """One ascent step in float64 numpy on the centered parameters ``c = (W, a + W h̄,
    b + Wᵀ v̄)`` with their gradient (docs/methods.md §3), mapped back to ``(W, a, b)``:
    ``step(name, g, c_name)`` returns the new ``c_name`` (the reference of the optimizer
    tests)."""
    vb, hb = ((grad.v_offset.double().numpy(), grad.h_offset.double().numpy())
              if centered else (np.zeros(N), np.zeros(M)))
    G = {k: g.double().numpy() for k, g in grad.items()}
    gc = {"W": G["W"], "a": G["a"] + G["W"] @ hb, "b": G["b"] + G["W"].T @ vb}
    c = {"W": ref["W"], "a": ref["a"] + ref["W"] @ hb, "b": ref["b"] + ref["W"].T @ vb}
    c = {k: step(k, g, c[k]) for k, g in gc.items()}
    return {"W": c["W"], "a": c["a"] - c["W"] @ hb, "b": c["b"] - c["W"].T @ vb}


@pytest.mark.parametrize("centered", [False, True])
def test_adam_step_matches_kingma_ba_algorithm_1(centered):
    """The in-place Adam ascent equals Kingma & Ba (ICLR 2015), Algorithm 1, written here in
    float64 numpy (ascent, b1 0.9, b2 0.999, eps 1e-8), over 9 steps of random gradients with a
    decaying rate; float32 rounding stays below 1e-6 on steps of size ~lr = 0.05. For a
    centered direction (offsets v̄, h̄) Algorithm 1 runs on the centered parameters
    ``c = (W, a + W h̄, b + Wᵀ v̄)`` with their gradient ``(G_W, G_a + G_W h̄, G_b + G_Wᵀ v̄)``
    (docs/methods.md §3), and ``(W, a, b)`` must be the parameters whose centered form is the
    new ``c``."""
    from spikerbm.pcd import Optimizer, lr_schedule

    r0 = R.init_rbm(torch.full((N,), 0.3), n_hidden=M, weight_std=0.5,
                    generator=torch.Generator().manual_seed(1))
    ours = r0.clone()
    sched = dict(lr=0.05, n_updates=9, lr_final=0.1, decay_start=0.3)
    opt = Optimizer(ours, kind="adam", **sched)
    ref = {k: t.double().numpy().copy() for k, t in r0.parameters().items()}
    m = {k: np.zeros_like(v) for k, v in ref.items()}
    s = {k: np.zeros_like(v) for k, v in ref.items()}
    for u, grad in enumerate(_grads(2, 9, centered=centered), start=1):
        opt.step(ours, grad, torch.tensor(u))

        def adam(k, g, c, u=u):
            m[k] = 0.9 * m[k] + 0.1 * g
            s[k] = 0.999 * s[k] + 0.001 * g * g
            return c + lr_schedule(u, **sched) * (m[k] / (1 - 0.9**u)) / (
                np.sqrt(s[k] / (1 - 0.999**u)) + 1e-8)

        ref = _centered_reference_step(ref, grad, centered=centered, step=adam)
        for k, t in ours.parameters().items():
            np.testing.assert_allclose(t.numpy(), ref[k], rtol=0, atol=1e-6)
    assert float((ours.W - r0.W).abs().mean()) > 0.1  # it moved: the comparison can fail
    assert set(opt.state_dict()) == {"m_W", "s_W", "m_a", "s_a", "m_b", "s_b"}


def test_sgd_with_decay_steps_by_the_scheduled_rate_and_constant_sgd_is_unchanged():
    from spikerbm.pcd import Optimizer, lr_schedule, sgd_step

    r = R.init_rbm(torch.full((N,), 0.3), n_hidden=M, weight_std=0.5,
                   generator=torch.Generator().manual_seed(1))
    for kw in ({"lr_final": 1.0}, {"lr_final": 0.01, "decay_start": 0.2}):
        ours, plain = r.clone(), r.clone()
        opt = Optimizer(ours, kind="sgd", lr=0.3, n_updates=7, **kw)
        assert opt.state_dict() == {}
        for u, grad in enumerate(_grads(3, 7), start=1):
            opt.step(ours, grad, torch.tensor(u))
            plain = sgd_step(plain, grad, lr=lr_schedule(u, lr=0.3, n_updates=7,
                                                          **{"decay_start": 0.0, **kw}))
        if kw["lr_final"] == 1.0:  # bitwise the step of the library before train.optimizer
            assert all(torch.equal(x, y) for x, y in zip(ours.parameters().values(),
                                                         plain.parameters().values(), strict=True))
        else:
            for x, y in zip(ours.parameters().values(), plain.parameters().values(), strict=True):
                torch.testing.assert_close(x, y, rtol=0, atol=1e-6)


@pytest.mark.parametrize("centered", [False, True])
def test_nesterov_momentum_step_matches_its_definition_in_centered_coordinates(centered):
    """SGD with Nesterov momentum (train.momentum, mu 0.9) equals the update of
    ``torch.optim.SGD(nesterov=True)`` (Sutskever et al., ICML 2013), ``v = mu v + g``,
    ``c += lr(u) (g + mu v)``, written here in float64 numpy as ascent over 9 random gradients
    with a decaying rate, on the centered parameters ``c = (W, a + W h̄, b + Wᵀ v̄)`` with their
    gradient when the direction has offsets (docs/methods.md §3); ``(W, a, b)`` must be the
    parameters whose centered form is the new ``c``. float32 rounding stays below 1e-5 on
    parameters moved by ~0.5. Without offsets the step is also ``torch.optim.SGD``'s own."""
    from spikerbm.pcd import Optimizer, lr_schedule

    r0 = R.init_rbm(torch.full((N,), 0.3), n_hidden=M, weight_std=0.5,
                    generator=torch.Generator().manual_seed(1))
    ours = r0.clone()
    sched = dict(lr=0.05, n_updates=9, lr_final=0.1, decay_start=0.3)
    opt = Optimizer(ours, kind="sgd", momentum=0.9, **sched)
    ref = {k: t.double().numpy().copy() for k, t in r0.parameters().items()}
    theirs = [t.double().clone().requires_grad_(True) for t in r0.parameters().values()]
    torch_sgd = torch.optim.SGD(theirs, lr=0.05, momentum=0.9, nesterov=True)
    v = {k: np.zeros_like(x) for k, x in ref.items()}
    for u, grad in enumerate(_grads(4, 9, centered=centered), start=1):
        opt.step(ours, grad, torch.tensor(u))

        def nesterov(k, g, c, u=u):
            v[k] = 0.9 * v[k] + g
            return c + lr_schedule(u, **sched) * (g + 0.9 * v[k])

        ref = _centered_reference_step(ref, grad, centered=centered, step=nesterov)
        for k, t in ours.parameters().items():
            np.testing.assert_allclose(t.numpy(), ref[k], rtol=0, atol=1e-5)
        if not centered:
            for group in torch_sgd.param_groups:
                group["lr"] = lr_schedule(u, **sched)
            for t, g in zip(theirs, grad.items(), strict=True):
                t.grad = -g[1].double()  # descent on -G
            torch_sgd.step()
            for t, x in zip(theirs, ours.parameters().values(), strict=True):
                np.testing.assert_allclose(x.numpy(), t.detach().numpy(), rtol=0, atol=1e-5)
    assert float((ours.W - r0.W).abs().mean()) > 0.1  # it moved: the comparison can fail
    assert set(opt.state_dict()) == {"v_W", "v_a", "v_b"}


def test_optimizer_config_errors_name_the_key():
    for kw, msg in [({"optimizer": "rmsprop"}, r"train\.optimizer must be one of sgd, adam"),
                    ({"lr_final": 0.0}, r"train\.lr_final must be in \(0, 1\]"),
                    ({"lr_final": 1.5}, r"train\.lr_final must be in \(0, 1\]"),
                    ({"decay_start": 1.0}, r"train\.decay_start must be in \[0, 1\)"),
                    ({"momentum": 1.0}, r"train\.momentum must be in \[0, 1\)"),
                    ({"optimizer": "adam", "momentum": 0.9},
                     r"train\.momentum is an SGD option")]:
        with pytest.raises(ValueError, match=msg):
            TrainConfig(n_hidden=3, **kw)
    cfg = TrainConfig.from_config({"optimizer": "adam", "lr": 0.03, "lr_final": 1,
                                   "decay_start": 0}, n_hidden=3)
    assert cfg.lr_final == 1.0 and isinstance(cfg.decay_start, float)


def _tais_errors(planted_data, *, optimizer: str, lr: float, seeds: range, device: str = "cpu",
                 precision: str = "float32") -> np.ndarray:
    """|log_z_tais - exact| / log_z_tais_std at every checkpoint after update 0 of every seed
    (the best online update joins the checkpoints, so their number varies), without anchors:
    the trajectory-AIS estimator itself (the CPU tests of anchored values are below)."""
    train_v, test_v = planted_data
    out = []
    for seed in seeds:
        cfg = TrainConfig(n_hidden=NH, n_updates=300, n_checkpoints=12, n_chains=100,
                          batch_size=100, k=5, lr=lr, optimizer=optimizer, weight_std=0.1,
                          tais_chains=200, tais_groups=8, patience=0, anchor_every=0,
                          lr_final=1.0, decay_start=0.0, device=device, precision=precision)
        ds = train(train_v, cfg=cfg, seed=seed, test_data=test_v)
        exact = np.array([exact_log_z(R.rbm_from_dataset(ds, checkpoint=int(c)))
                          for c in ds["checkpoint"].values[1:]])
        err = ds["log_z_tais"].values[1:] - exact
        out.append(np.abs(err) / ds["log_z_tais_std"].values[1:])
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------------
# Anchors of trajectory AIS (docs/methods.md §4, "Anchors")
# ---------------------------------------------------------------------------------------------
ADAM = {"optimizer": "adam", "lr": 0.03, "lr_final": 0.01, "decay_start": 0.5}


def _online_errors(planted_data, *, seeds: range, anchor_every: int = 4, **kw):
    """Online ``log_z_online - exact`` and ``log_z_online_std`` at every evaluation after
    update 0 (every update is a checkpoint, so exact log Z is known there: 2^5 hidden states),
    the anchor flags and the ``log_z_anchor`` values, over 400 updates per seed."""
    train_v, test_v = planted_data
    err, std, anchored, anchors = [], [], [], []
    for seed in seeds:
        cfg = TrainConfig(**{**dict(
            n_hidden=NH, n_updates=400, n_checkpoints=401, n_chains=100, batch_size=100, k=5,
            lr=0.1, weight_std=0.1, tais_chains=200, tais_groups=8, patience=0, eval_every=25,
            anchor_every=anchor_every, device="cpu", **SGD_RECIPE), **kw})
        ds = train(train_v, cfg=cfg, seed=seed, test_data=test_v)
        u = ds["eval_update"].values[1:]
        assert set(u) <= set(ds["checkpoint"].values)
        exact = np.array([exact_log_z(R.rbm_from_dataset(ds, checkpoint=int(c))) for c in u])
        err.append(ds["log_z_online"].values[1:] - exact)
        std.append(ds["log_z_online_std"].values[1:])
        anchors.append(ds["log_z_anchor"].values[1:] - exact)
        anchored.append(np.isfinite(ds["log_z_anchor"].values[1:]))
        # the checkpoint values are the same estimates
        at = ds["log_z_tais"].sel(checkpoint=u)
        np.testing.assert_array_equal(at.values, ds["log_z_online"].values[1:])
    return tuple(np.concatenate(x) for x in (err, std, anchored, anchors))


@pytest.mark.parametrize("step", ["sgd", "adam"])
def test_anchored_online_log_z_covers_exact_and_anchors_are_exact(planted_data, step) -> None:
    """Along real training (SGD at the quick-start rate; Adam + decay, large steps), with
    exact anchors every 4th evaluation (100 updates) and at the first, the anchor is exact log Z
    (enumeration, float64 round-off), the online log Z equals it there with error 0, and at
    the 44 evaluations between anchors (4 seeds x 11) ``|log_z_online - exact| <= 2
    log_z_online_std`` at >= 95 % of them. An honest 2-sigma interval holds 95 %; the stated
    error here is conservative by design (drift allowance, Student factor), observed 100 %
    with the largest error 0.95 (SGD) and 1.1 (Adam) stated errors (2026-12-01), so 95 % (at
    most 2 misses) keeps a margin while a missing error term (next test: 39-41 %) fails it."""
    kw = ADAM if step == "adam" else {}
    err, std, anchored, anchor_err = _online_errors(planted_data, seeds=range(4), **kw)
    assert anchored.sum() == 4 * 5  # updates 25, 100, 200, 300, 400
    # exact anchors: float64 enumeration of the same parameters (round-off ~1e-12)
    np.testing.assert_allclose(anchor_err[anchored], 0, atol=1e-9)
    np.testing.assert_allclose(err[anchored], 0, atol=1e-9)
    assert np.all(std[anchored] < 1e-9)
    between = ~anchored
    z = np.abs(err[between]) / std[between]
    assert between.sum() == 44 and np.mean(z <= 2) >= 0.95, z


class _BiasedSweeps:
    """Trajectory AIS whose chains sweep a model with ``W`` scaled by 1.1 while the weights
    use the true energies: a sampler that leaves a slightly different distribution invariant,
    as the GPU's bf16 products do (docs/methods.md §4, "Anchors"), exaggerated so that its
    drift shows on this small model (bf16 rounding itself drifts too little here)."""

    @staticmethod
    def make():
        from spikerbm import partition

        class Biased(partition.TrajectoryAIS):
            def sweep(self, rbm):
                super().sweep(R.RBM(1.1 * rbm.W, rbm.a, rbm.b))

        return Biased


def test_anchor_drift_allowance_covers_a_biased_sampler(planted_data, monkeypatch) -> None:
    """Trajectory AIS with a biased sampler (:class:`_BiasedSweeps`) along Adam training:
    without anchors it drifts by up to 0.56 nats, 12 stated errors (41 % of the evaluations
    within 2); re-anchoring alone bounds the drift to one interval (mean |error| 0.08 against
    0.25) but its groups' error misses it (39 %); with the drift allowance measured at the
    anchors the online log Z is within 2 stated errors at >= 95 % of the 44 evaluations
    between anchors (observed 43 of 44, largest 2.4; 2026-12-01). Threshold as in the test
    above; both failing variants are asserted to fail 90 %."""
    from spikerbm import partition

    monkeypatch.setattr(partition, "TrajectoryAIS", _BiasedSweeps.make())
    seeds = range(4)
    err, std, anchored, _ = _online_errors(planted_data, seeds=seeds, **ADAM)
    z = np.abs(err[~anchored]) / std[~anchored]
    assert np.mean(z <= 2) >= 0.95, z
    # the failing variants on the first two seeds (16 evaluations each)
    err0, std0, _, _ = _online_errors(planted_data, seeds=seeds[:2], anchor_every=0, **ADAM)
    assert np.mean(np.abs(err0) <= 2 * std0) < 0.9
    # re-anchoring bounds the drift to one interval: mean |error| ~0.1 against ~0.3 nats
    assert np.abs(err[:err0.size]).mean() < 0.5 * np.abs(err0).mean()
    monkeypatch.setattr(partition, "anchor_bias_rate", lambda *a, **k: 0.0)
    err1, std1, anchored1, _ = _online_errors(planted_data, seeds=seeds[:2], **ADAM)
    assert np.mean(np.abs(err1[~anchored1]) <= 2 * std1[~anchored1]) < 0.9


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_cuda_trajectory_ais_error_covers_exact_along_adam_training(planted_data, precision):
    """The trajectory-AIS estimator without anchors on the device (the CPU tests use anchored
    values): float32 (eager updates) and the fused bf16 path, where every number of
    trajectory-AIS stages chosen at a synchronisation point is its own captured CUDA graph.
    Required: >= 90 % of ~44 (seed, checkpoint) pairs within 2 stated errors (the pairs of
    one seed are correlated, so 90 % allows one bad seed stretch); bf16 sampling kernels
    leave a slightly different distribution invariant than the float64 energies weigh for,
    and this bounds that effect too."""
    from spikerbm import kernels

    if precision == "bf16" and not kernels.available("cuda"):
        pytest.skip("needs Triton")
    z = _tais_errors(planted_data, optimizer="adam", lr=0.03, seeds=range(4), device="cuda",
                     precision=precision)
    assert np.mean(z <= 2) >= 0.9, z


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_cuda_anchored_online_log_z_covers_exact(planted_data, precision):
    """The anchored CPU test above on the device (Adam; bf16: fused kernels whose products
    round W, anchors exact in float64 outside the captured update): >= 95 % of the 44
    evaluations between anchors within 2 stated errors, the anchors exact."""
    from spikerbm import kernels

    if precision == "bf16" and not kernels.available("cuda"):
        pytest.skip("needs Triton")
    err, std, anchored, anchor_err = _online_errors(planted_data, seeds=range(4),
                                                    device="cuda", precision=precision, **ADAM)
    np.testing.assert_allclose(anchor_err[anchored], 0, atol=1e-9)
    z = np.abs(err[~anchored]) / std[~anchored]
    assert np.mean(z <= 2) >= 0.95, z


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_bf16_adam_training_with_stages_resumes_exactly(planted_data):
    """Adam's steps make trajectory AIS run several stages per update (several captured
    graphs) with the split-bfloat16 increments of the fused path (rbm.free_energy_difference);
    a run resumed from a mid-training state (stage count restored) ends where the
    uninterrupted run ends, to float32 rounding (1e-6), as in the SGD test above."""
    from spikerbm import kernels, partition

    if not kernels.available("cuda"):
        pytest.skip("needs Triton")
    train_v, _ = planted_data
    cfg = TrainConfig(n_hidden=NH, n_updates=120, n_checkpoints=6, n_chains=201,
                      batch_size=201, k=5, lr=0.03, optimizer="adam", weight_std=0.1,
                      tais_chains=200, device="cuda", precision="bf16", lr_final=1.0,
                      decay_start=0.0)
    stages: list[int] = []
    adapt = partition.TrajectoryAIS.adapt_stages

    def counting(self, **kw):
        assert self.split_bf16  # the fused path's increments
        stages.append(adapt(self, **kw))
        return stages[-1]

    partition.TrajectoryAIS.adapt_stages = counting
    try:
        states: list = []
        full = train(train_v, cfg=cfg, seed=3, on_checkpoint=states.append)
    finally:
        partition.TrajectoryAIS.adapt_stages = adapt
    assert max(stages) > 1, stages  # the staged update (and its graphs) ran
    mid = states[3]
    resumed = train(train_v, cfg=cfg, seed=3, resume=mid)
    for var in ("W", "a", "b", "log_z_tais"):
        np.testing.assert_allclose(resumed[var].values, full[var].values, rtol=0, atol=1e-6)


def test_trajectory_ais_reaches_the_initialisation_in_stages():
    """Update 0 moves trajectory AIS from the independent-site start to the initialisation,
    every weight from 0 to its N(0, weight_std^2) draw at once (docs/methods.md §4, "Stages for
    large steps"). N = 301 sparse neurons, M = 9, weight_std 0.2, 200 chains in 10 groups, 4
    seeds (measured): in one stage the estimates at update 0 are off by -0.40 to +0.35 nats
    (-0.40 at 4.9 stated errors); in MAX_STAGES stages within 0.04 and 1.7 stated errors.
    Required: within 0.1 and 3 stated errors, so a lost stage count fails this test."""
    from spikerbm.partition import exact_log_z
    from spikerbm.sampling import Sampler
    from spikerbm.train_state import TrainingState

    rng = np.random.default_rng(5)
    data = (rng.random((600, 301)) < rng.uniform(0.01, 0.08, 301)).astype(np.uint8)
    cfg = TrainConfig(n_hidden=9, weight_std=0.2, tais_chains=200, tais_groups=10,
                      device="cpu")
    for seed in range(4):
        state = TrainingState.start(data, cfg=cfg, seed=seed, sampler=Sampler(
            torch.device("cpu")), hashes={})
        exact = exact_log_z(state.rbm.to(dtype=torch.float64))
        err = state.trajectory.log_z[0] - exact
        assert abs(err) < 0.1 and abs(err) <= 3 * state.trajectory.log_z_std[0], (seed, err)
