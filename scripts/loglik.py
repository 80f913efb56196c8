"""Snakemake adapter: train/test log-likelihood at every checkpoint of one model -> loglik.nc."""

import time

import numpy as np
import torch

from spikerbm import io
from spikerbm.binarize import check_raster, split_arrays
from spikerbm.likelihood import replica_loglik
from spikerbm.model import with_replica_dim
from spikerbm.provenance import derive_seed, provenance_attrs
from spikerbm.rbm import check_rbm_dataset, resolve_device

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "loglik")

session, n_hidden = snakemake.wildcards.session, int(snakemake.wildcards.n_hidden)
torch.set_num_threads(snakemake.threads)
params = dict(snakemake.params.likelihood)
seed = derive_seed(snakemake.params.seed, "loglik", session, n_hidden)
device = resolve_device(snakemake.params.device)
raster = io.read_checked(snakemake.input.raster, check_raster)
model = io.read_checked(snakemake.input.model, check_rbm_dataset,
                        n_visible=raster.sizes["neuron"])
splits = split_arrays(raster)
log.info("session %s, n_hidden %d: %d checkpoints, train %s, test %s, device %s, params %s",
         session, n_hidden, model.sizes["checkpoint"], splits["train"].shape,
         splits["test"].shape, device, params)
start = time.perf_counter()
ds = replica_loglik(model, splits["train"], splits["test"], seed=seed, device=device, **params)
log.info("method %s in %.1f s; floor test %.4f", ds.attrs["log_z_method"],
         time.perf_counter() - start, ds.attrs["floor_test"])
reps = with_replica_dim(ds)
for r in reps["replica"].values:
    one = reps.sel(replica=r)
    z = np.abs(one["online_z"].values)
    worst_z = float(z[np.isfinite(z)].max()) if np.isfinite(z).any() else float("nan")
    log.info("replica %d, last checkpoint: ll_train %.4f ll_test %.4f (+- %.2g estimator, +- "
             "%.2g over test bins), log Z %.4f +- %.2g (trajectory AIS %.4f +- %.2g); largest "
             "|online - checkpoint| %.1f combined errors", r, one["ll_train"].values[-1],
             one["ll_test"].values[-1], one["ll_test_std"].values[-1],
             one["ll_test_sem"].values[-1], one["log_z"].values[-1],
             one["log_z_std"].values[-1], one["log_z_tais"].values[-1],
             one["log_z_tais_std"].values[-1], worst_z)
attrs = provenance_attrs(config={"likelihood": params, "seed": snakemake.params.seed,
                                 "device": snakemake.params.device},
                         seed=seed, session_id=session)
io.write_netcdf(ds, snakemake.output.loglik, attrs=attrs)
