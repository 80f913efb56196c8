"""Exchange with rbms / fastrbm (the paper group's packages): their HDF5 training archive.

The layout is that of ``rbms`` 0.6.0 (``rbms/io.py: save_model, load_params, load_model``;
``rbms/training/implement.py: _init_training``; ``rbms/utils.py: get_saved_updates,
get_flagged_updates, restore_rng_state``), read from the released wheel:

.. code-block:: text

    model_type                     b"BBRBM" (Bernoulli visible, Bernoulli hidden)
    parallel_chains                (n_chains, N) float32: the persistent chains
    hyperparameters/               num_visibles, num_hiddens, num_chains, filename
    update_{t}/params/             weight_matrix (N, M), vbias (N,), hbias (M,)   [per checkpoint]
    update_{t}/weight_matrix ...   the same arrays again (hard links, rbms's retro-compatibility)
    update_{t}/flags/<flag>        True for each flag: "checkpoint", "ptt" (fastrbm's PTT ladder)
    update_{t}/save_<flag>         True (retro-compatibility)
    update_{t}/time, effective_time, learning_rate
    update_{t}/torch_rng_state, numpy_rng_arg0..4    (rbms's restore_rng_state)
    dataset_args/, grad_args/, sampling_args/, train_args/, save_args/   training settings

Parameters map one to one: ``weight_matrix = W``, ``vbias = a``, ``hbias = b``
(``E(v, h) = -a.v - b.h - v W h``, the energy of both packages). :func:`export_rbms` writes
every checkpoint of a ``model.nc`` (update numbers kept; update 0 = the initialisation) flagged
``checkpoint`` and ``ptt``, so rbms's ``load_params`` / ``load_model`` and fastrbm's
``load_params_ptt`` read it; a ``spikerbm/`` group keeps what rbms has no place for (unit ids,
areas, log Z per checkpoint, provenance). ``parallel_chains`` are Bernoulli(1/2) states (what
rbms's own ``init_chains`` starts from): a ``model.nc`` does not keep the persistent chains.
:func:`import_rbms` reads an archive (``BBRBM`` only) into a ``model.nc`` dataset that every
stage and :func:`spikerbm.load_model` accept.

Only arrays and scalars are read (h5py datasets; no object deserialisation, nothing evaluated).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from spikerbm import io

__all__ = ["RBMS_VERSION", "export_rbms", "import_rbms"]

#: The rbms release whose archive layout this module writes and reads.
RBMS_VERSION = "0.6.0"
#: Flags set on every exported update (fastrbm's PTT reads the updates flagged ``ptt``).
EXPORT_FLAGS = ("checkpoint", "ptt")


def export_rbms(model: xr.Dataset, path: str | os.PathLike, *, n_chains: int = 1000,
                seed: int = 0) -> Path:
    """Write a ``model.nc`` trajectory (or a ``selected.nc`` model) as an rbms 0.6.0 archive.

    Parameters
    ----------
    model
        A ``model.nc`` dataset (``W(checkpoint, neuron, hidden)``, ``a``, ``b``) or a
        ``selected.nc`` dataset (one checkpoint: its attribute ``checkpoint``).
    path
        Destination ``.h5`` file (written atomically; an existing file is replaced).
    n_chains
        Rows of ``parallel_chains`` (Bernoulli(1/2) states, seeded by ``seed``).
    seed
        Seed of ``parallel_chains`` and of the stored RNG states.

    Returns
    -------
    Path
        The written file.
    """
    import h5py
    import torch

    from spikerbm.rbm import check_rbm_dataset

    check_rbm_dataset(model)
    if "checkpoint" in model["W"].dims:
        updates = model["checkpoint"].values.astype(np.int64)
        W, a, b = (model[k].values.astype(np.float32) for k in ("W", "a", "b"))
    else:
        updates = np.array([int(model.attrs.get("checkpoint", 0))], dtype=np.int64)
        W, a, b = (model[k].values.astype(np.float32)[None] for k in ("W", "a", "b"))
    n, m = W.shape[1:]
    train_cfg = _train_config(model)
    lr = float(train_cfg.get("lr", 0.0))
    rng = np.random.RandomState(seed)
    np_state = rng.get_state()
    torch_state = torch.Generator().manual_seed(int(seed)).get_state().numpy()
    chains = (rng.random_sample((int(n_chains), n)) < 0.5).astype(np.float32)
    path = Path(path)
    with io.atomic_path(path, suffix=".h5.tmp") as tmp, h5py.File(tmp, "w") as f:
        hyper = f.create_group("hyperparameters")
        hyper["num_visibles"], hyper["num_hiddens"] = n, m
        hyper["num_chains"], hyper["filename"] = int(n_chains), str(path)
        for k, t in enumerate(updates):
            g = f.create_group(f"update_{int(t)}")
            params = g.create_group("params")
            for name, arr in (("weight_matrix", W[k]), ("vbias", a[k]), ("hbias", b[k])):
                params[name] = arr
                g[name] = params[name]  # hard link, as rbms writes it
            g["torch_rng_state"] = torch_state
            g["numpy_rng_arg0"] = np_state[0]
            g["numpy_rng_arg1"] = np_state[1]
            for i in (2, 3, 4):
                g[f"numpy_rng_arg{i}"] = np_state[i]
            g["time"] = 0.0
            g["effective_time"] = np.zeros(1, dtype=np.float32)
            g["learning_rate"] = np.array([lr], dtype=np.float32)
            flags = g.create_group("flags")
            for flag in EXPORT_FLAGS:
                flags[flag] = True
                g[f"save_{flag}"] = True
        f["parallel_chains"] = chains
        f["model_type"] = "BBRBM"
        _settings(f, train_cfg, seed=seed)
        own = f.create_group("spikerbm")
        own["unit_id"] = (model["unit_id"].values.astype(np.int64) if "unit_id" in model.coords
                          else np.arange(n, dtype=np.int64))
        areas = (model["area"].values if "area" in model.coords else np.full(n, "unknown"))
        own["area"] = np.array([str(x).encode() for x in areas], dtype=h5py.string_dtype())
        own["updates"] = updates
        for name in ("log_z_tais", "log_z_tais_std"):
            if name in model and "checkpoint" in model[name].dims:
                own[name] = model[name].values.astype(np.float64)
        own.attrs["attributes"] = json.dumps(
            {k: v.item() if isinstance(v, np.generic) else v for k, v in model.attrs.items()
             if isinstance(v, str | int | float | np.number)}, default=str)
        own.attrs["rbms_layout"] = RBMS_VERSION
    return path


def _train_config(model: xr.Dataset) -> dict[str, Any]:
    try:
        return dict(json.loads(str(model.attrs.get("train_config", "{}"))))
    except ValueError:
        return {}


def _settings(f: Any, cfg: dict[str, Any], *, seed: int) -> None:
    """rbms's training-settings groups, filled from the spikerbm training config."""
    lr = float(cfg.get("lr", 0.0))
    groups = {
        "dataset_args": {"use_weights": False, "train_size": 1.0, "test_size": 0.0,
                         "alphabet": "protein", "remove_duplicates": False, "seed": int(seed)},
        "grad_args": {"no_center": not bool(cfg.get("centered", True)),
                      "normalize_grad": False, "max_norm_grad": -1.0, "L1": 0.0, "L2": 0.0},
        "sampling_args": {"gibbs_steps": int(cfg.get("k", 1)), "beta": 1.0},
        "train_args": {"optim": "sgd", "batch_size": int(cfg.get("batch_size", 1)),
                       "learning_rate": np.array([lr], dtype=np.float32),
                       "training_type": "pcd", "max_lr": lr},
        "save_args": {"n_save": int(cfg.get("n_checkpoints", 0)), "spacing": "exp"},
    }
    for name, values in groups.items():
        g = f.create_group(name)
        for key, value in values.items():
            g[key] = value


def import_rbms(path: str | os.PathLike, *, unit_id: np.ndarray | None = None,
                area: np.ndarray | None = None) -> xr.Dataset:
    """Read an rbms archive (``model_type`` BBRBM) into a ``model.nc`` dataset.

    Parameters
    ----------
    path
        The ``.h5`` archive (rbms 0.6.0 layout; every ``update_{t}`` group with ``params``).
    unit_id, area
        Neuron identities (length N). Default: those stored by :func:`export_rbms` when the
        archive has them, else ``0..N-1`` and ``"unknown"``.

    Returns
    -------
    xarray.Dataset
        ``W(checkpoint, neuron, hidden)``, ``a``, ``b`` (float32), ``log_z_tais(checkpoint)``
        (from the archive's ``spikerbm`` group, else NaN), coords ``checkpoint`` (the update
        numbers), ``unit_id``, ``area``; attrs ``n_hidden``, ``source_format``, ``imported_from``
        and the exporting run's attributes when present. Add provenance before writing it.

    Raises
    ------
    spikerbm.io.InputError
        Not an HDF5 file, not an rbms archive, not a Bernoulli-Bernoulli RBM, or inconsistent
        shapes (the message names the file and the fix).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"rbms archive not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise io.InputError(f"{path}: not an HDF5 file ({err}); give an rbms training archive "
                            "(.h5)") from err
    with f:
        keys = [k for k in f.keys() if k.startswith("update_")]
        if "model_type" not in f or not keys:
            raise io.InputError(f"{path}: not an rbms archive (needs 'model_type' and "
                                f"'update_<t>' groups; found {sorted(f.keys())[:8]})")
        model_type = f["model_type"][()]
        model_type = model_type.decode() if isinstance(model_type, bytes) else str(model_type)
        if model_type != "BBRBM":
            raise io.InputError(f"{path}: model_type {model_type!r}; spikerbm models Bernoulli "
                                "(binary) neurons with Bernoulli hidden units: only BBRBM "
                                "archives can be imported")
        updates = sorted(int(k.removeprefix("update_")) for k in keys)
        W, a, b = [], [], []
        for t in updates:
            g = f[f"update_{t}"]
            params = g["params"] if "params" in g else g
            try:
                W.append(np.asarray(params["weight_matrix"][()], dtype=np.float32))
                a.append(np.asarray(params["vbias"][()], dtype=np.float32))
                b.append(np.asarray(params["hbias"][()], dtype=np.float32))
            except KeyError as err:
                raise io.InputError(f"{path}: update_{t} lacks {err}; every update needs "
                                    "weight_matrix, vbias, hbias") from err
        shapes = {(w.shape, x.shape, y.shape) for w, x, y in zip(W, a, b, strict=True)}
        if len(shapes) != 1:
            raise io.InputError(f"{path}: parameter shapes differ between updates: {shapes}")
        (wn, wm), an, bm = next(iter(shapes))
        if an != (wn,) or bm != (wm,):
            raise io.InputError(f"{path}: weight_matrix {(wn, wm)} disagrees with vbias {an} / "
                                f"hbias {bm}")
        own = f["spikerbm"] if "spikerbm" in f else None
        stored_ids = own["unit_id"][()] if own is not None and "unit_id" in own else None
        stored_area = ([x.decode() if isinstance(x, bytes) else str(x) for x in own["area"][()]]
                       if own is not None and "area" in own else None)
        extra: dict[str, Any] = {}
        if own is not None and "attributes" in own.attrs:
            extra = json.loads(own.attrs["attributes"])
        log_z = np.full(len(updates), np.nan)
        if own is not None and "log_z_tais" in own and own["log_z_tais"].shape == log_z.shape:
            log_z = own["log_z_tais"][()].astype(np.float64)
    n, m = W[0].shape
    unit_id = np.asarray(unit_id if unit_id is not None else
                         stored_ids if stored_ids is not None else np.arange(n), dtype=np.int64)
    area = np.asarray(area if area is not None else
                      stored_area if stored_area is not None else ["unknown"] * n).astype(str)
    if unit_id.shape != (n,) or area.shape != (n,):
        raise io.InputError(f"{path}: {n} visible units but {unit_id.size} unit ids and "
                            f"{area.size} areas were given; pass one per visible unit")
    keep = {k: extra[k] for k in ("session_id", "train_config", "n_updates_done",
                                  "best_update", "stop_reason") if k in extra}
    return xr.Dataset(
        {"W": (("checkpoint", "neuron", "hidden"), np.stack(W)),
         "a": (("checkpoint", "neuron"), np.stack(a)),
         "b": (("checkpoint", "hidden"), np.stack(b)),
         "log_z_tais": ("checkpoint", log_z, {"units": "nats"})},
        coords={"checkpoint": ("checkpoint", np.asarray(updates, dtype=np.int64),
                               {"units": "updates"}),
                "unit_id": ("neuron", unit_id), "area": ("neuron", area.astype(object))},
        attrs={**keep, "n_hidden": int(m), "source_format": f"rbms {RBMS_VERSION} archive",
               "imported_from": str(path)},
    )
