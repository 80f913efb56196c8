"""Model selection: the (hidden size, checkpoint) with the highest test log-likelihood.

docs/methods.md §4 (the star of the paper's Fig. 2). :func:`select_model` reads the session's
``loglik.nc`` (:func:`spikerbm.likelihood.combine_loglik`) and returns the candidate table, one
candidate per hidden size (its best checkpoint); :func:`selected_dataset` builds
``selected.nc``: the winner's parameters plus that table. A winner that does not beat the
independent-site floor on test data is still written (so that downstream stages run) but
flagged loudly.
"""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr

__all__ = ["FLOOR_BANNER", "select_model", "selected_dataset"]

logger = logging.getLogger(__name__)

FLOOR_BANNER = "!" * 78


def select_model(ll: xr.Dataset) -> xr.Dataset:
    """Pick the ``(n_hidden, checkpoint)`` with the highest test log-likelihood.

    Ties go to the earliest checkpoint, then to the smallest hidden size; NaN values are
    skipped; the uncertainty is not used.

    Parameters
    ----------
    ll
        The combined dataset of :func:`spikerbm.likelihood.combine_loglik` (dims n_hidden x
        checkpoint).

    Returns
    -------
    xr.Dataset
        The candidate table, dim ``candidate`` (one row per hidden size: its best checkpoint by
        test LL): coords ``n_hidden``, ``checkpoint``; vars ``ll_train``, ``ll_test``,
        ``ll_test_std`` (nats per sample), ``log_z``, ``log_z_std`` (nats; NaN where the
        input has none), ``log_z_method``, ``selected`` (1 for the winner);
        attrs ``n_hidden``, ``checkpoint``, ``ll_train``, ``ll_test``, ``ll_test_std``,
        ``log_z``, ``log_z_std``,
        ``floor_train``, ``floor_test``, ``beats_floor`` (1 when the winner's test LL is
        strictly above the independent-site floor), ``log_z_method`` and, when it does not
        beat the floor, ``warning`` (also logged as a loud ``logging.warning`` banner).

    Raises
    ------
    ValueError
        When no finite test log-likelihood exists.
    """
    test = ll["ll_test"].transpose("n_hidden", "checkpoint").values
    if not np.isfinite(test).any():
        raise ValueError("no finite test log-likelihood in the dataset; nothing to select")
    masked = np.where(np.isfinite(test), test, -np.inf)
    best_ck = masked.argmax(1)  # per n_hidden (first maximum: the earliest checkpoint)
    rows = np.arange(test.shape[0])
    ok = np.isfinite(test[rows, best_ck])
    rows = rows[ok]
    best_ck = best_ck[ok]
    hs = ll["n_hidden"].values[rows].astype(np.int64)
    cks = ll["checkpoint"].values[best_ck].astype(np.int64)

    def pick(var: str) -> np.ndarray:
        if var not in ll:
            return np.full(len(rows), np.nan)
        return ll[var].transpose("n_hidden", "checkpoint").values[rows, best_ck].astype(
            np.float64)

    c_test = pick("ll_test")
    win = int(np.argmax(c_test))  # first of equal maxima: the smallest hidden size
    floor_test = float(ll.attrs["floor_test"])
    beats = bool(c_test[win] > floor_test)
    methods = (ll["log_z_method"].values[rows] if "log_z_method" in ll
               else np.array(["unknown"] * len(rows)))
    nats = {"units": "nats per sample"}
    cand = xr.Dataset(
        {
            "ll_train": ("candidate", pick("ll_train"), nats),
            "ll_test": ("candidate", c_test, nats),
            "ll_test_std": ("candidate", pick("ll_test_std"), nats),
            "log_z": ("candidate", pick("log_z"), {"units": "nats"}),
            "log_z_std": ("candidate", pick("log_z_std"), {"units": "nats"}),
            "log_z_method": ("candidate", methods.astype(str)),
            "selected": ("candidate", (np.arange(len(rows)) == win).astype(np.uint8)),
        },
        coords={"n_hidden": ("candidate", hs, {"units": "hidden units"}),
                "checkpoint": ("candidate", cks, {"units": "updates"})},
        attrs={
            "n_hidden": int(hs[win]),
            "checkpoint": int(cks[win]),
            "ll_train": float(pick("ll_train")[win]),
            "ll_test": float(c_test[win]),
            "ll_test_std": float(pick("ll_test_std")[win]),
            "log_z": float(pick("log_z")[win]),
            "log_z_std": float(pick("log_z_std")[win]),
            "floor_train": float(ll.attrs["floor_train"]),
            "floor_test": floor_test,
            "beats_floor": int(beats),
            "log_z_method": str(methods[win]),
        },
    )
    if not beats:
        cand.attrs["warning"] = (
            f"no model beats the independent-site floor on test data: best test LL "
            f"{c_test[win]:.4f} (n_hidden={hs[win]}, checkpoint={cks[win]}) <= floor "
            f"{floor_test:.4f} nats/sample; the selected model is kept only so downstream "
            "stages run, its results are not evidence of structure beyond firing rates"
        )
        logger.warning("\n%s\n!!! WARNING: %s\n%s", FLOOR_BANNER, cand.attrs["warning"],
                       FLOOR_BANNER)
    return cand


def selected_dataset(model: xr.Dataset, selection: xr.Dataset, *,
                     rate_hz: np.ndarray | None = None) -> xr.Dataset:
    """The ``selected.nc`` dataset: parameters of the chosen checkpoint + candidate table.

    Parameters
    ----------
    model
        ``model.nc`` of the selected hidden size.
    selection
        Output of :func:`select_model`.
    rate_hz
        Firing rates (n_neurons,) from the raster, stored as a coordinate on ``neuron``.
    """
    n_hidden = int(selection.attrs["n_hidden"])
    ckpt = int(selection.attrs["checkpoint"])
    if int(model.sizes["hidden"]) != n_hidden:
        raise ValueError(
            f"model has {model.sizes['hidden']} hidden units; the selection is n_hidden="
            f"{n_hidden}: pass that model's model.nc"
        )
    if ckpt not in set(model["checkpoint"].values.tolist()):
        raise ValueError(f"checkpoint {ckpt} is not in the model's checkpoints")
    sel = model[["W", "a", "b"]].sel(checkpoint=ckpt, drop=True)
    sel = sel.astype(np.float32)
    if rate_hz is not None:
        rate = np.asarray(rate_hz, dtype=np.float64)
        if rate.shape != (sel.sizes["neuron"],):
            raise ValueError(f"rate_hz has shape {rate.shape}; expected ({sel.sizes['neuron']},)")
        sel = sel.assign_coords(rate_hz=("neuron", rate, {"units": "Hz"}))
    out = xr.merge([sel, selection], combine_attrs="drop")
    out.attrs = dict(selection.attrs)
    return out
