"""Log-likelihoods per checkpoint against exact enumeration (docs/methods.md §4).

The trained trajectory and the planted data are those of test_partition (exact-gradient
training on data from a planted RBM, with trajectory AIS run online).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SGD_RECIPE
from test_partition import N_HID_TRAIN, N_VIS, TOL_LOGZ, planted_data, trained_trajectory

from spikerbm.config import TrainConfig
from spikerbm.likelihood import (
    ONLINE_VARS,
    STOP_ATTRS,
    block_sem,
    checkpoint_loglik,
    combine_loglik,
    independent_site_loglik,
    log_likelihood,
)
from spikerbm.partition import exact_log_z
from spikerbm.rbm import free_energy, independent_site, rbm_from_dataset
from spikerbm.training import train

# ---------------------------------------------------------------------------- log-likelihoods


def test_independent_floor_equals_rbm_likelihood() -> None:
    data = planted_data()
    train, test = data["train"].numpy(), data["test"].numpy()
    floor_train, floor_test = independent_site_loglik(train, test)
    p = np.clip(train.mean(0), 1e-4, 1 - 1e-4)
    ind = independent_site(torch.logit(torch.as_tensor(p)), 5)
    assert floor_train == pytest.approx(
        log_likelihood(ind, train, log_z=exact_log_z(ind)), abs=1e-9)
    assert floor_test == pytest.approx(
        log_likelihood(ind, test, log_z=exact_log_z(ind)), abs=1e-9)
    assert floor_train > floor_test  # fitted on train


def test_checkpoint_loglik_exact_ais_tais() -> None:
    trajectory, data = trained_trajectory(), planted_data()
    model = trajectory["model"]
    train, test = data["train"].numpy(), data["test"].numpy()
    ex = checkpoint_loglik(model, train, test, method="auto", exact_max_units=N_HID_TRAIN)
    assert ex.attrs["log_z_method"] == "exact"
    for i, snap in enumerate(trajectory["snaps"]):
        lz = exact_log_z(snap)
        assert ex["log_z"].values[i] == pytest.approx(lz, abs=1e-9)
        assert ex["ll_test"].values[i] == pytest.approx(
            log_likelihood(snap, test, log_z=lz), abs=1e-9)
    assert np.allclose(ex["ll_test_per_neuron"], ex["ll_test"] / N_VIS)
    assert np.all(ex["ll_test_std"].values == 0)
    # checkpoint 0 is the (near) independent-site model fitted on train: LL = floor
    # (W ~ 1e-3 N(0,1) changes LL only at second order: ~1e-5 nats)
    assert ex["ll_train"].values[0] == pytest.approx(ex.attrs["floor_train"], abs=1e-3)
    # training on planted structure beats the floor on test data
    assert ex["ll_test"].values[-1] > ex.attrs["floor_test"] + 0.1
    # tais values stored beside
    assert np.allclose(ex["log_z_tais"], trajectory["tais"])
    assert np.allclose(ex["log_z_tais"], ex["log_z"], atol=TOL_LOGZ)  # LL differs by log Z
    tais = checkpoint_loglik(model, train, test, method="tais")
    assert tais.attrs["log_z_method"] == "tais" and np.isnan(tais["ll_test_std"]).all()
    assert np.allclose(tais["ll_test"], ex["ll_test"], atol=TOL_LOGZ)
    sub = model.isel(checkpoint=[0, -1])
    ais = checkpoint_loglik(sub, train, test, method="auto", exact_max_units=N_HID_TRAIN - 1,
                            ais_chains=300, ais_betas=500, ais_repeats=2, seed=3)
    assert ais.attrs["log_z_method"] == "ais"
    assert np.all(ais["ll_test_std"].values > 0)
    assert np.allclose(ais["log_z"], ex["log_z"].values[[0, -1]], atol=TOL_LOGZ)
    # each checkpoint's AIS stream is seeded by (seed, checkpoint) alone: evaluating the last
    # checkpoint by itself gives the bitwise-same value; another seed gives another value
    alone = checkpoint_loglik(model.isel(checkpoint=[-1]), train, test, method="ais",
                              ais_chains=300, ais_betas=500, ais_repeats=2, seed=3)
    assert alone["log_z"].values[0] == ais["log_z"].values[-1]
    other = checkpoint_loglik(model.isel(checkpoint=[-1]), train, test, method="ais",
                              ais_chains=300, ais_betas=500, ais_repeats=2, seed=4)
    assert other["log_z"].values[0] != ais["log_z"].values[-1]


def test_checkpoint_loglik_bad_input() -> None:
    trajectory, data = trained_trajectory(), planted_data()
    model = trajectory["model"]
    train = data["train"].numpy()
    with pytest.raises(ValueError, match="method"):
        checkpoint_loglik(model, train, train, method="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="visible"):
        checkpoint_loglik(model, train[:, :5], train)
    with pytest.raises(ValueError, match="tais"):
        checkpoint_loglik(model.drop_vars("log_z_tais"), train, train, method="tais")




def test_loglik_carries_the_online_curve_stop_state_and_honest_errors() -> None:
    """loglik.nc of real trained models (two sizes, exact log Z): the online curve and the
    stop attributes of model.nc come along; every log-likelihood has its *_std (exact: 0;
    method tais: the trajectory-AIS error); the online and checkpoint estimates agree within
    3 combined errors at every checkpoint (online_z); combining the sizes keeps the union of
    the evaluated updates and the stop state per size."""
    rng = np.random.default_rng(4)
    z = rng.random((2400, 1)) < 0.3
    data = (rng.random((2400, 13)) < np.where(z, 0.5, 0.08)).astype(np.uint8)
    train_v, test_v = data[:1600], data[1600:]
    per = []
    for n_hidden, n_updates in ((3, 400), (4, 300)):
        cfg = TrainConfig(n_hidden=n_hidden, n_updates=n_updates, n_checkpoints=6,
                          n_chains=60, batch_size=80, k=3, lr=0.05, weight_std=0.1,
                          tais_chains=120, tais_groups=6, eval_every=40, patience=0,
                          device="cpu", **SGD_RECIPE)
        model = train(train_v, test_data=test_v, cfg=cfg, seed=n_hidden)
        ll = checkpoint_loglik(model, train_v, test_v, method="exact")
        assert set(ONLINE_VARS) <= set(ll.data_vars)
        # every eval_every updates and at the last update (300 is not a multiple of 40)
        assert ll["eval_update"].values.tolist() == sorted({*range(0, n_updates, 40),
                                                            n_updates})
        assert {k: ll.attrs[k] for k in STOP_ATTRS} == {k: model.attrs[k] for k in STOP_ATTRS}
        assert np.all(ll["ll_train_std"] == 0) and np.all(ll["ll_test_std"] == 0)
        # the data noise of the test LL: batch means of the per-bin LL of the last checkpoint
        r = rbm_from_dataset(model, dtype=torch.float64)
        per_bin = -free_energy(r, torch.as_tensor(test_v, dtype=torch.float64)).numpy()
        assert ll["ll_test_sem"].values[-1] == pytest.approx(block_sem(per_bin), rel=1e-9)
        assert 0 < ll["ll_test_sem"].values[-1] < 0.2
        np.testing.assert_array_equal(ll["log_z_tais_std"], model["log_z_tais_std"])
        # the last update is an exact anchor (docs/methods.md §4): trajectory AIS is exact
        # log Z there, error 0, and online_z 0 rather than 0/0
        assert ll["log_z_tais_std"].values[-1] == 0
        assert ll["log_z_tais"].values[-1] == pytest.approx(ll["log_z"].values[-1], abs=1e-9)
        std = ll["log_z_tais_std"].values
        z_expected = (ll["log_z"] - ll["log_z_tais"]).values / np.where(std > 0, std, 1.0)
        np.testing.assert_allclose(ll["online_z"], z_expected, atol=1e-12)
        assert np.all(np.abs(ll["online_z"].values) < 3), ll["online_z"].values
        # the online value at a checkpoint that is also an evaluation is the same LL but
        # with the trajectory-AIS log Z
        last = int(model["checkpoint"][-1])
        online = float(ll["ll_test_online"][ll["eval_update"] == last][0])
        assert online == pytest.approx(float(ll["ll_test"][-1]) + float(
            ll["log_z"][-1] - ll["log_z_tais"][-1]), abs=1e-9)
        tais = checkpoint_loglik(model, train_v, test_v, method="tais")
        np.testing.assert_array_equal(tais["ll_test_std"], model["log_z_tais_std"])
        assert np.isfinite(tais["ll_test_std"]).all() and np.isnan(tais["online_z"]).all()
        per.append(ll)
    both = combine_loglik(per)
    assert both["eval_update"].values.tolist() == sorted({*range(0, 401, 40), 300})
    on4 = both["ll_test_online"].sel(n_hidden=4).values
    assert np.isnan(on4[-3:]).all() and np.isfinite(on4[:-3]).all()  # 320..400: not reached
    assert both["n_updates_done"].values.tolist() == [400, 300]
    assert both["stop_reason"].values.tolist() == ["max_updates", "max_updates"]


def test_block_sem_sees_autocorrelation() -> None:
    """Batch means over 20 blocks: for independent values it is the usual std / sqrt(n)
    (within 35 %: the s.d. of a 20-block estimate is ~16 %); for an AR(1) series with phi = 0.9
    (integrated time (1 + phi) / (1 - phi) = 19) it is sqrt(19) = 4.4 times larger, as the
    variance of the mean demands (within 35 %), where std / sqrt(n) would be 4.4x too small."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=40000)
    assert block_sem(x) == pytest.approx(1 / np.sqrt(x.size), rel=0.35)
    ar = np.empty_like(x)
    ar[0] = x[0]
    for t in range(1, x.size):
        ar[t] = 0.9 * ar[t - 1] + np.sqrt(1 - 0.81) * x[t]
    assert block_sem(ar) == pytest.approx(np.sqrt(19 / x.size), rel=0.35)
    assert np.isnan(block_sem(x[:39]))


def test_replica_loglik_is_each_replica_on_its_own():
    """A replicated model.nc gives, per replica, exactly checkpoint_loglik of that replica with
    its own seed (replica 0: the job's seed); the R = 1 file is checkpoint_loglik unchanged."""
    from spikerbm.config import TrainConfig
    from spikerbm.likelihood import checkpoint_loglik, replica_loglik
    from spikerbm.train_state import replica_seeds
    from spikerbm.training import train

    rng = np.random.default_rng(3)
    data = (rng.random((300, 7)) < 0.3).astype(np.uint8)
    cfg = TrainConfig(n_hidden=3, n_updates=40, n_checkpoints=3, n_chains=32, batch_size=32,
                      k=2, tais_chains=20, device="cpu", replicas=2, lr=0.1, **SGD_RECIPE)
    model = train(data[:200], cfg=cfg, seed=11, test_data=data[200:])
    kw = dict(method="ais", ais_chains=16, ais_betas=50, ais_repeats=2)  # seeds matter for AIS
    out = replica_loglik(model, data[:200], data[200:], seed=4, **kw)
    assert out["ll_test"].dims == ("replica", "checkpoint")
    assert out["stop_reason"].dims == ("replica",)
    seeds = replica_seeds(4, 2)
    for r in (0, 1):
        one = model.sel(replica=r, drop=True)
        ref = checkpoint_loglik(one, data[:200], data[200:], seed=seeds[r], **kw)
        np.testing.assert_array_equal(out["ll_test"].sel(replica=r).values, ref["ll_test"].values)
        np.testing.assert_array_equal(out["log_z"].sel(replica=r).values, ref["log_z"].values)
    assert not np.array_equal(out["log_z"].values[0], out["log_z"].values[1])
    single = model.isel(replica=0, drop=True).drop_vars(
        [v for v in model.data_vars if model[v].dims == ("replica",)])
    single.attrs = {k: v for k, v in model.attrs.items() if k not in ("replicas",
                                                                      "replicas_dropped")}
    assert replica_loglik(single, data[:200], data[200:], seed=4, **kw).identical(
        checkpoint_loglik(single, data[:200], data[200:], seed=4, **kw))
    # a dropped replica: NaN parameters from its divergence on give NaN log-likelihoods
    broken = model.copy(deep=True)
    broken["W"].values[1, -1] = np.nan
    broken["diverged"].values[1] = 1
    out = replica_loglik(broken, data[:200], data[200:], seed=4, method="exact")
    assert np.isnan(out["ll_test"].values[1, -1]) and np.isfinite(out["ll_test"].values[0]).all()
    assert out["diverged"].values.tolist() == [0, 1]
