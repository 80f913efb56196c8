"""R > 1 replicas as the replicas contract writes them (docs/data-model.md, "Replicas"),
built by stacking one-model ``train()`` results of different seeds along ``replica``: the input
of the replica tests of the log-likelihood, selection and couplings stages."""

from __future__ import annotations

import numpy as np
import xarray as xr

from spikerbm.likelihood import STOP_ATTRS

PER_REPLICA = (*STOP_ATTRS, "best_ll_test_online")


def stack_replicas(models: list[xr.Dataset], seeds: list[int]) -> xr.Dataset:
    """One ``model.nc`` with a ``replica`` dim from R one-model datasets on the same
    checkpoints: parameters, trajectory AIS and the online curve gain the dim, the per-model
    stop attributes become variables on ``replica``, plus ``replica_seed`` and ``diverged``."""
    parts = []
    for ds in models:
        extra = {k: ((), ds.attrs[k]) for k in PER_REPLICA if k in ds.attrs}
        parts.append(ds.drop_attrs(deep=False).assign(extra))
    out = xr.concat(parts, dim="replica", data_vars="all", coords="minimal",
                    compat="override", join="exact")
    for k in PER_REPLICA:
        if k in out and "replica" not in out[k].dims:
            out[k] = out[k].expand_dims(replica=len(models))
    out = out.assign_coords(replica=np.arange(len(models), dtype=np.int64))
    out["replica_seed"] = ("replica", np.asarray(seeds, dtype=np.int64))
    out["diverged"] = ("replica", np.zeros(len(models), dtype=np.uint8))
    out.attrs = {k: v for k, v in models[0].attrs.items() if k not in PER_REPLICA}
    out.attrs.update(replicas=len(models), replicas_dropped="")
    return out
