"""Log-likelihoods per checkpoint against exact enumeration (docs/methods.md §4).

The trained trajectory and the planted data are those of test_partition (exact-gradient
training on data from a planted RBM, with trajectory AIS run online).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_partition import N_HID_TRAIN, N_VIS, TOL_LOGZ, planted_data, trained_trajectory

from spikerbm.likelihood import checkpoint_loglik, independent_site_loglik, log_likelihood
from spikerbm.partition import exact_log_z
from spikerbm.rbm import independent_site

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


