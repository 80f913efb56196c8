"""Data log-likelihoods of RBMs, per checkpoint of a training trajectory (docs/methods.md §4).

``LL(D) = -<E(v)>_D - log Z`` in nats per sample, with the marginal energy ``E(v)`` in float64
(:func:`mean_free_energy`) and ``log Z`` from :mod:`spikerbm.partition`. The independent-site
model fitted on the train split gives the floor every model must beat
(:func:`independent_site_loglik`). :func:`checkpoint_loglik` evaluates one ``model.nc``
trajectory (``hidden~{n}/loglik.nc``), :func:`combine_loglik` stacks the hidden sizes of a
session (``loglik.nc``); model selection is :mod:`spikerbm.selection`.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from spikerbm.partition import Method, estimate_log_z, resolve_method
from spikerbm.provenance import derive_seed
from spikerbm.rbm import RBM, free_energy, rbm_from_dataset

__all__ = [
    "checkpoint_loglik",
    "combine_loglik",
    "independent_site_loglik",
    "log_likelihood",
    "mean_free_energy",
]


def mean_free_energy(rbm: RBM, data: torch.Tensor | np.ndarray, *,
                     batch_size: int = 8192) -> float:
    """Mean visible free energy ``<E(v)>_data`` in float64 (batched).

    Parameters
    ----------
    rbm
        The model.
    data
        Binary data, shape (n_samples, n_visible).
    batch_size
        Rows per batch.
    """
    data = torch.as_tensor(data)
    if data.ndim != 2 or data.shape[1] != rbm.n_visible:
        raise ValueError(
            f"data must have shape (n_samples, {rbm.n_visible}); got {tuple(data.shape)}"
        )
    if data.shape[0] == 0:
        raise ValueError("data has no rows; cannot compute a mean free energy")
    r64 = rbm.to(dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64, device=rbm.device)
    for start in range(0, data.shape[0], batch_size):
        total += free_energy(r64, data[start:start + batch_size].to(rbm.device)).sum()
    return float(total.item() / data.shape[0])


def log_likelihood(rbm: RBM, data: torch.Tensor | np.ndarray, *, log_z: float,
                   batch_size: int = 8192) -> float:
    """``LL(D) = -<E(v)>_D - log Z`` in nats per sample (float64)."""
    return -mean_free_energy(rbm, data, batch_size=batch_size) - float(log_z)


def independent_site_loglik(train: np.ndarray, test: np.ndarray, *,
                            eps: float = 1e-4) -> tuple[float, float]:
    """Train and test LL (nats per sample) of the independent-site model fitted on train.

    ``a_i = logit(clamp(<v_i>_train, eps, 1 - eps))`` (the same clamp as :func:`rbm.init_rbm`);
    ``LL = <sum_i v_i a_i - softplus(a_i)>``.
    """
    train = np.asarray(train, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(
            f"train {train.shape} and test {test.shape} must be 2-d with equal column counts"
        )
    if train.shape[0] == 0 or test.shape[0] == 0:
        raise ValueError(f"empty split: train {train.shape}, test {test.shape}")
    p = np.clip(train.mean(0), eps, 1 - eps)
    a = np.log(p) - np.log1p(-p)
    sp = np.logaddexp(0.0, a)
    return float((train @ a).mean() - sp.sum()), float((test @ a).mean() - sp.sum())


def checkpoint_loglik(model: xr.Dataset, train: np.ndarray, test: np.ndarray, *,
                      method: Method = "auto", exact_max_units: int = 22,
                      ais_chains: int = 200, ais_betas: int = 1000, ais_repeats: int = 2,
                      seed: int = 0, device: torch.device | str = "cpu",
                      batch_size: int = 8192) -> xr.Dataset:
    """Train and test log-likelihood at every checkpoint of a training trajectory.

    Parameters
    ----------
    model
        A ``model.nc`` dataset (dims checkpoint, neuron, hidden; optional ``log_z_tais``).
    train, test
        Binary data (n_samples, n_neurons) of the two splits.
    method
        ``auto``, ``exact`` or ``ais`` (:func:`spikerbm.partition.resolve_method`), or ``tais``
        (the trajectory-AIS values stored in the model; spread NaN).
    exact_max_units, ais_chains, ais_betas, ais_repeats
        Estimator settings (see :func:`spikerbm.partition.estimate_log_z`).
    seed
        Base seed; checkpoint ``c`` uses ``derive_seed(seed, "ais", c)``, so each checkpoint's
        value does not depend on which others are computed.
    device
        Where to compute.
    batch_size
        Rows per free-energy batch.

    Returns
    -------
    xr.Dataset
        dims ``checkpoint``; vars ``ll_train``, ``ll_test`` (nats/sample), ``ll_test_std``,
        ``ll_train_per_neuron``, ``ll_test_per_neuron`` (nats/neuron), ``log_z``,
        ``log_z_std``, ``log_z_tais``; attrs ``log_z_method``, ``floor_train``, ``floor_test``
        (+ per neuron), ``n_hidden``, ``n_neurons``, ``n_train``, ``n_test`` and the
        estimator settings (docs/data-model.md).
    """
    n_vis = int(model.sizes["neuron"])
    n_hid = int(model.sizes["hidden"])
    resolved = resolve_method(method, n_visible=n_vis, n_hidden=n_hid,
                              exact_max_units=exact_max_units)
    for name, arr in (("train", train), ("test", test)):
        if arr.ndim != 2 or arr.shape[1] != n_vis:
            raise ValueError(f"{name} data has shape {arr.shape}; the model has {n_vis} "
                             "visible units (neurons)")
    device = torch.device(device)
    checkpoints = model["checkpoint"].values.astype(np.int64)
    tais = (model["log_z_tais"].values.astype(np.float64) if "log_z_tais" in model
            else np.full(checkpoints.shape, np.nan))
    if resolved == "tais" and not np.isfinite(tais).any():
        raise ValueError(
            "likelihood.method is tais but the model has no trajectory-AIS values (log_z_tais "
            "missing or all NaN); train with train.tais_chains > 0 or use method auto"
        )
    train_t = torch.as_tensor(np.asarray(train))  # cast to float64 per batch
    test_t = torch.as_tensor(np.asarray(test))
    out = {k: np.full(checkpoints.shape, np.nan) for k in (
        "log_z", "log_z_std", "fe_train", "fe_test")}
    for i, ckpt in enumerate(checkpoints):
        rbm = rbm_from_dataset(model, checkpoint=int(ckpt), device=device)
        out["fe_train"][i] = mean_free_energy(rbm, train_t, batch_size=batch_size)
        out["fe_test"][i] = mean_free_energy(rbm, test_t, batch_size=batch_size)
        if resolved == "tais":
            out["log_z"][i], out["log_z_std"][i] = tais[i], np.nan
            continue
        gen = torch.Generator(device=device)
        gen.manual_seed(derive_seed(seed, "ais", int(ckpt)))
        est = estimate_log_z(rbm, method=resolved, exact_max_units=exact_max_units,
                             ais_chains=ais_chains, ais_betas=ais_betas,
                             ais_repeats=ais_repeats, generator=gen)
        out["log_z"][i], out["log_z_std"][i] = est.log_z, est.log_z_std
    floor_train, floor_test = independent_site_loglik(np.asarray(train), np.asarray(test))
    ll_train = -out["fe_train"] - out["log_z"]
    ll_test = -out["fe_test"] - out["log_z"]
    nats = {"units": "nats per sample"}
    per_n = {"units": "nats per neuron per sample"}
    data_vars = {
        "ll_train": ("checkpoint", ll_train, {**nats, "long_name": "train log-likelihood"}),
        "ll_test": ("checkpoint", ll_test, {**nats, "long_name": "test log-likelihood"}),
        "ll_test_std": ("checkpoint", out["log_z_std"].copy(),
                        {**nats, "long_name": "uncertainty of ll_test (= log_z_std)"}),
        "ll_train_per_neuron": ("checkpoint", ll_train / n_vis, per_n),
        "ll_test_per_neuron": ("checkpoint", ll_test / n_vis, per_n),
        "log_z": ("checkpoint", out["log_z"], {"units": "nats", "long_name": "log Z"}),
        "log_z_std": ("checkpoint", out["log_z_std"],
                      {"units": "nats", "long_name": "spread of log Z over AIS repeats"}),
        "log_z_tais": ("checkpoint", tais, {"units": "nats",
                                            "long_name": "trajectory-AIS log Z (from model)"}),
    }
    return xr.Dataset(
        data_vars,
        coords={"checkpoint": ("checkpoint", checkpoints, {"units": "updates"})},
        attrs={
            "log_z_method": resolved,
            "floor_train": floor_train,
            "floor_test": floor_test,
            "floor_train_per_neuron": floor_train / n_vis,
            "floor_test_per_neuron": floor_test / n_vis,
            "n_hidden": n_hid,
            "n_neurons": n_vis,
            "n_train": int(train.shape[0]),
            "n_test": int(test.shape[0]),
            "exact_max_units": int(exact_max_units),
            "ais_chains": int(ais_chains),
            "ais_betas": int(ais_betas),
            "ais_repeats": int(ais_repeats),
        },
    )


def combine_loglik(per_model: list[xr.Dataset]) -> xr.Dataset:
    """Stack per-model log-likelihood datasets into one ``n_hidden x checkpoint`` dataset.

    Checkpoint coordinates are the union over models (sorted); a model lacking a checkpoint has
    NaN there (this happens only when models were trained with different ``n_updates`` or
    ``n_checkpoints``). ``log_z_method`` becomes a variable over ``n_hidden``; the floors must
    agree (same data) and stay attributes.

    Raises
    ------
    ValueError
        When the list is empty, hidden sizes repeat, or the floors disagree (different data).
    """
    if not per_model:
        raise ValueError("no per-model log-likelihood datasets to combine")
    sizes = [int(ds.attrs["n_hidden"]) for ds in per_model]
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"hidden sizes repeat among the log-likelihood files: {sizes}")
    ref = per_model[0].attrs
    for ds in per_model[1:]:
        for key in ("floor_train", "floor_test"):
            if not np.isclose(ds.attrs[key], ref[key], rtol=0, atol=1e-9):
                raise ValueError(
                    f"{key} differs between n_hidden={ref['n_hidden']} ({ref[key]}) and "
                    f"n_hidden={ds.attrs['n_hidden']} ({ds.attrs[key]}): the models were not "
                    "evaluated on the same data"
                )
    order = np.argsort(sizes)
    parts = []
    for i in order:
        ds = per_model[i]
        parts.append(ds.drop_attrs(deep=False).expand_dims(n_hidden=[sizes[i]]).assign(
            log_z_method=("n_hidden", [str(ds.attrs["log_z_method"])])))
    combined = xr.concat(parts, dim="n_hidden", join="outer", data_vars="all",
                         coords="different", compat="equals", combine_attrs="drop")
    combined = combined.sortby("checkpoint")
    combined["n_hidden"].attrs["units"] = "hidden units"
    keep = ("floor_train", "floor_test", "floor_train_per_neuron", "floor_test_per_neuron",
            "n_neurons", "n_train", "n_test")
    combined.attrs = {k: ref[k] for k in keep if k in ref}
    return combined
