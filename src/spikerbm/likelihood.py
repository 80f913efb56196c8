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

from spikerbm.model import with_replica_dim
from spikerbm.partition import LogZEstimate, Method, estimate_log_z, resolve_method
from spikerbm.provenance import derive_seed
from spikerbm.rbm import RBM, free_energy, rbm_from_dataset
from spikerbm.train_state import replica_seeds

__all__ = [
    "ONLINE_VARS",
    "STOP_ATTRS",
    "SEM_BLOCKS",
    "block_sem",
    "checkpoint_log_z",
    "checkpoint_loglik",
    "combine_loglik",
    "replica_loglik",
    "free_energies",
    "independent_site_loglik",
    "log_likelihood",
    "mean_free_energy",
]


#: Contiguous blocks of the batch-means standard error of a log-likelihood (:func:`block_sem`).
SEM_BLOCKS = 20


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


def free_energies(rbm: RBM, data: torch.Tensor | np.ndarray, *,
                  batch_size: int = 8192) -> np.ndarray:
    """Visible free energies ``E(v)`` of every row of ``data`` (n_samples,), float64, in the
    rows' order (batched on the RBM's device)."""
    data = torch.as_tensor(data)
    if data.ndim != 2 or data.shape[1] != rbm.n_visible or data.shape[0] == 0:
        raise ValueError(
            f"data must have shape (n_samples > 0, {rbm.n_visible}); got {tuple(data.shape)}"
        )
    r64 = rbm.to(dtype=torch.float64)
    return torch.cat([free_energy(r64, data[start:start + batch_size].to(rbm.device)).cpu()
                      for start in range(0, data.shape[0], batch_size)]).numpy()


def block_sem(values: np.ndarray, *, n_blocks: int = SEM_BLOCKS) -> float:
    """Standard error of the mean of a time-ordered series by batch means: the standard
    deviation of the means of ``n_blocks`` contiguous, near-equal blocks over ``sqrt(n_blocks)``
    (robust to autocorrelation shorter than a block; Flyvbjerg & Petersen, J. Chem. Phys. 91,
    461, 1989). NaN with fewer than 2 values per block."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2 * n_blocks:
        return float("nan")
    means = np.array([b.mean() for b in np.array_split(values, n_blocks)])
    return float(means.std(ddof=1) / np.sqrt(n_blocks))


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


#: ``model.nc`` attributes of the training stop copied into ``loglik.nc`` (docs/data-model.md).
STOP_ATTRS = ("stop_reason", "best_update", "still_improving", "n_updates_done",
              "ll_test_online_gain", "stop_window")

#: The online curve of ``model.nc`` (dim ``eval``), copied into ``loglik.nc``.
ONLINE_VARS = ("ll_train_online", "ll_train_online_std", "ll_test_online", "ll_test_online_std",
               "log_z_online", "log_z_online_std", "log_z_anchor", "log_z_anchor_std",
               "log_z_anchor_gap")


def checkpoint_loglik(model: xr.Dataset, train: np.ndarray, test: np.ndarray, *,
                      method: Method = "auto", exact_max_units: int = 22,
                      ais_chains: int = 50, ais_betas: int = 1000, ais_repeats: int = 4,
                      seed: int = 0, device: torch.device | str = "cpu",
                      batch_size: int = 8192) -> xr.Dataset:
    """Train and test log-likelihood at every checkpoint of a training trajectory.

    Parameters
    ----------
    model
        A ``model.nc`` dataset (dims checkpoint, neuron, hidden; optional ``log_z_tais``,
        ``log_z_tais_std``, the online curve on dim ``eval`` and the stop attributes).
    train, test
        Binary data (n_samples, n_neurons) of the two splits.
    method
        ``auto``, ``exact`` or ``ais`` (:func:`spikerbm.partition.resolve_method`), or ``tais``
        (the trajectory-AIS values stored in the model, with their ``log_z_tais_std``).
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
        dims ``checkpoint`` (and ``eval``, the model's online curve); vars ``ll_train``,
        ``ll_test`` (nats/sample) with ``ll_train_std``, ``ll_test_std`` (= ``log_z_std``),
        ``ll_train_sem``, ``ll_test_sem`` (:func:`block_sem` over the bins, in time order),
        ``ll_train_per_neuron``, ``ll_test_per_neuron`` (nats/neuron), ``log_z``,
        ``log_z_std``, ``log_z_tais``, ``log_z_tais_std``, ``online_z`` (online minus
        checkpoint estimate of the test LL in units of their combined uncertainty), and the
        online curve of :data:`ONLINE_VARS`; attrs ``log_z_method``, ``floor_train``,
        ``floor_test`` (+ per neuron), ``n_hidden``, ``n_neurons``, ``n_train``, ``n_test``,
        the estimator settings and the stop attributes of :data:`STOP_ATTRS`
        (docs/data-model.md).
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
    nan = np.full(checkpoints.shape, np.nan)
    tais = model["log_z_tais"].values.astype(np.float64) if "log_z_tais" in model else nan
    tais_std = (model["log_z_tais_std"].values.astype(np.float64)
                if "log_z_tais_std" in model else nan.copy())
    if resolved == "tais" and not np.isfinite(tais).any():
        raise ValueError(
            "likelihood.method is tais but the model has no trajectory-AIS values (log_z_tais "
            "missing or all NaN); train with train.tais_chains > 0 or use method auto"
        )
    train_t = torch.as_tensor(np.asarray(train))  # cast to float64 per batch
    test_t = torch.as_tensor(np.asarray(test))
    out = {k: np.full(checkpoints.shape, np.nan) for k in (
        "log_z", "log_z_std", "fe_train", "fe_test", "sem_train", "sem_test")}
    for i, ckpt in enumerate(checkpoints):
        rbm = rbm_from_dataset(model, checkpoint=int(ckpt), device=device)
        if not all(bool(torch.isfinite(x).all()) for x in (rbm.W, rbm.a, rbm.b)):
            continue  # a dropped replica after its divergence (docs/data-model.md): NaN
        for name, data in (("train", train_t), ("test", test_t)):
            fe = free_energies(rbm, data, batch_size=batch_size)
            out[f"fe_{name}"][i], out[f"sem_{name}"][i] = fe.mean(), block_sem(fe)
        if resolved == "tais":
            out["log_z"][i], out["log_z_std"][i] = tais[i], tais_std[i]
            continue
        est = checkpoint_log_z(rbm, checkpoint=int(ckpt), method=resolved, seed=seed,
                               exact_max_units=exact_max_units, ais_chains=ais_chains,
                               ais_betas=ais_betas, ais_repeats=ais_repeats)
        out["log_z"][i], out["log_z_std"][i] = est.log_z, est.log_z_std
    floor_train, floor_test = independent_site_loglik(np.asarray(train), np.asarray(test))
    ll_train = -out["fe_train"] - out["log_z"]
    ll_test = -out["fe_test"] - out["log_z"]
    # online (trajectory-AIS) minus checkpoint estimate, same parameters and data: the
    # difference is log Z - log Z_tais; at an exact anchor both are exact (error 0) and agree
    # to float64 round-off: z = 0 there, not 0/0
    diff, combined = out["log_z"] - tais, np.hypot(out["log_z_std"], tais_std)
    with np.errstate(invalid="ignore", divide="ignore"):
        online_z = np.where((combined == 0) & (np.abs(diff) <= 1e-9 * np.abs(tais)), 0.0,
                            diff / combined)
    if resolved == "tais":
        online_z[:] = np.nan
    nats = {"units": "nats per sample"}
    per_n = {"units": "nats per neuron per sample"}
    std_of = "1-sigma uncertainty of {} (= log_z_std; the data term is exact)"
    data_vars = {
        "ll_train": ("checkpoint", ll_train, {**nats, "long_name": "train log-likelihood"}),
        "ll_test": ("checkpoint", ll_test, {**nats, "long_name": "test log-likelihood"}),
        "ll_train_std": ("checkpoint", out["log_z_std"].copy(),
                         {**nats, "long_name": std_of.format("ll_train")}),
        "ll_test_std": ("checkpoint", out["log_z_std"].copy(),
                        {**nats, "long_name": std_of.format("ll_test")}),
        "ll_train_sem": ("checkpoint", out["sem_train"], {
            **nats, "long_name": "standard error of ll_train over the train bins (batch "
            f"means over {SEM_BLOCKS} contiguous blocks; sampling noise of the data, not of "
            "the estimator)"}),
        "ll_test_sem": ("checkpoint", out["sem_test"], {
            **nats, "long_name": "standard error of ll_test over the test bins (batch means "
            f"over {SEM_BLOCKS} contiguous blocks; sampling noise of the data, not of the "
            "estimator)"}),
        "ll_train_per_neuron": ("checkpoint", ll_train / n_vis, per_n),
        "ll_test_per_neuron": ("checkpoint", ll_test / n_vis, per_n),
        "log_z": ("checkpoint", out["log_z"], {"units": "nats", "long_name": "log Z"}),
        "log_z_std": ("checkpoint", out["log_z_std"], {
            "units": "nats", "long_name": "1-sigma uncertainty of log Z, covering the "
            "estimator's bias (exact: 0; docs/methods.md §4)"}),
        "log_z_tais": ("checkpoint", tais, {"units": "nats",
                                            "long_name": "trajectory-AIS log Z (from model)"}),
        "log_z_tais_std": ("checkpoint", tais_std, {
            "units": "nats", "long_name": "uncertainty of log_z_tais (from model)"}),
        "online_z": ("checkpoint", online_z, {
            "units": "1", "long_name": "(online - checkpoint estimate of the log-likelihood) "
            "/ their combined uncertainty, = (log_z - log_z_tais) / hypot(log_z_std, "
            "log_z_tais_std); NaN for method tais"}),
    }
    coords = {"checkpoint": ("checkpoint", checkpoints, {"units": "updates"})}
    if "eval_update" in model.coords:
        data_vars.update({k: model[k].variable.copy() for k in ONLINE_VARS if k in model})
        coords["eval_update"] = model["eval_update"].variable.copy()
    return xr.Dataset(
        data_vars,
        coords=coords,
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
            **{k: model.attrs[k] for k in STOP_ATTRS if k in model.attrs},
        },
    )


def replica_loglik(model: xr.Dataset, train: np.ndarray, test: np.ndarray, *, seed: int = 0,
                   **kwargs) -> xr.Dataset:
    """:func:`checkpoint_loglik` of every replica of a ``model.nc`` (the ``hidden~{n}/loglik.nc``
    dataset).

    Each replica ``r`` is evaluated on its own with its seed of
    :func:`spikerbm.train_state.replica_seeds` (``seed`` itself for replica 0); a model
    without a ``replica`` dim (R = 1) gives exactly :func:`checkpoint_loglik`'s
    dataset. With replicas, every checkpoint variable gains the ``replica`` dim (first) and the
    per-replica stop information (:data:`STOP_ATTRS`, ``diverged``) is a variable on
    ``replica``; a dropped replica's checkpoints after its divergence are NaN.

    Parameters
    ----------
    model
        A ``model.nc`` dataset, with or without a ``replica`` dim.
    train, test
        Binary data (n_samples, n_neurons) of the two splits.
    seed
        The job's base seed.
    **kwargs
        Passed to :func:`checkpoint_loglik` (method, estimator settings, device, batch size).
    """
    reps = with_replica_dim(model)
    per_replica = [v for v in (*STOP_ATTRS, "diverged") if v in reps and "replica" in
                   reps[v].dims and reps[v].ndim == 1]
    seeds = replica_seeds(seed, int(reps["replica"].values.max()) + 1)
    parts = [checkpoint_loglik(reps.sel(replica=r, drop=True).drop_vars(per_replica), train,
                               test, seed=seeds[int(r)], **kwargs)
             for r in reps["replica"].values]
    if "replica" not in model.dims:
        return parts[0]
    out = xr.concat(parts, dim="replica", data_vars="all", coords="different",
                    compat="equals", combine_attrs="drop_conflicts")
    out = out.assign_coords(replica=reps["replica"].values)
    out = out.assign({v: reps[v].variable for v in per_replica})
    return out.transpose("replica", ...)


def checkpoint_log_z(rbm: RBM, *, checkpoint: int, method: str, seed: int,
                     exact_max_units: int = 22, ais_chains: int = 50, ais_betas: int = 1000,
                     ais_repeats: int = 4) -> LogZEstimate:
    """The checkpoint estimator of ``log Z`` (exact or AIS, :func:`estimate_log_z`) of one
    checkpoint, seeded ``derive_seed(seed, "ais", checkpoint)`` (the same value whichever
    stage computes it: ``loglik`` or the trajectory-AIS fallback of the selection)."""
    gen = torch.Generator(device=rbm.device)
    gen.manual_seed(derive_seed(seed, "ais", int(checkpoint)))
    return estimate_log_z(rbm, method=method, exact_max_units=exact_max_units,
                          ais_chains=ais_chains, ais_betas=ais_betas,
                          ais_repeats=ais_repeats, generator=gen)


def combine_loglik(per_model: list[xr.Dataset]) -> xr.Dataset:
    """Stack per-model log-likelihood datasets into one ``n_hidden x checkpoint`` dataset.

    Checkpoint coordinates are the union over models (sorted); a model lacking a checkpoint has
    NaN there (models stop at different updates, and each adds its best online evaluation as a
    checkpoint). The online curves are stacked the same way on dim ``eval`` (coordinate
    ``eval_update``, the union). ``log_z_method`` and the stop attributes
    (:data:`STOP_ATTRS`) become variables over ``n_hidden``; the floors must agree (same data)
    and stay attributes.

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
    stop_defaults = {"stop_reason": "", "best_update": -1, "still_improving": -1,
                     "n_updates_done": -1, "ll_test_online_gain": np.nan, "stop_window": -1}
    parts = []
    for i in order:
        ds = per_model[i]
        if "eval_update" in ds.coords:
            ds = ds.swap_dims(eval="eval_update")
        extra = {"log_z_method": ("n_hidden", [str(ds.attrs["log_z_method"])])}
        for key, default in stop_defaults.items():
            if key not in ds:  # R > 1: a variable on replica already (replica_loglik)
                extra[key] = ("n_hidden", [ds.attrs.get(key, default)])
        parts.append(ds.drop_attrs(deep=False).expand_dims(n_hidden=[sizes[i]]).assign(
            **extra))
    combined = xr.concat(parts, dim="n_hidden", join="outer", data_vars="all",
                         coords="different", compat="equals", combine_attrs="drop")
    combined = combined.sortby("checkpoint")
    if "eval_update" in combined.dims:
        combined = combined.sortby("eval_update").swap_dims(eval_update="eval")
        combined["eval_update"].attrs["units"] = "updates"
    combined["n_hidden"].attrs["units"] = "hidden units"
    combined["stop_reason"] = combined["stop_reason"].astype(str)
    keep = ("floor_train", "floor_test", "floor_train_per_neuron", "floor_test_per_neuron",
            "n_neurons", "n_train", "n_test")
    combined.attrs = {k: ref[k] for k in keep if k in ref}
    return combined
