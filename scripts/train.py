"""Snakemake adapter: train one RBM (session, n_hidden) by PCD with exact resume -> model.nc
(``train.replicas`` R > 1: R replicas from seeds derived from this job's, one model.nc)."""

import sys
from pathlib import Path

import torch

from spikerbm import io
from spikerbm.binarize import check_raster, split_arrays
from spikerbm.provenance import derive_seed, provenance_attrs
from spikerbm.rbm import resolve_device
from spikerbm.training import TrainConfig, train_to_files

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "train")

session, n_hidden = snakemake.wildcards.session, int(snakemake.wildcards.n_hidden)
torch.set_num_threads(snakemake.threads)
cfg = TrainConfig.from_config(snakemake.params.train, n_hidden=n_hidden,
                              device=snakemake.params.device)
seed = derive_seed(snakemake.params.seed, "train", session, n_hidden)
raster = io.read_checked(snakemake.input.raster, check_raster, n_hidden=n_hidden)
splits = split_arrays(raster)  # the test split decides when to stop; gradients never see it
train_v = splits["train"]
log.info("session %s, n_hidden %d: %d train bins x %d neurons (%d test bins for early "
         "stopping), %d replica(s), %d torch threads", session, n_hidden, *train_v.shape,
         splits["test"].shape[0], cfg.replicas, torch.get_num_threads())
attrs = provenance_attrs(config={"train": cfg.to_dict(), "seed": snakemake.params.seed},
                         seed=seed, device=resolve_device(cfg.device), session_id=session)
coords = {k: raster[k].values for k in ("unit_id", "area") if k in raster.coords}
model_path = Path(snakemake.output.model)
train_to_files(train_v, test_data=splits["test"], cfg=cfg, seed=seed, model_path=model_path,
               resume_path=model_path.with_name("resume.nc"), attrs=attrs,
               neuron_coords=coords, progress=sys.stderr.isatty() or cfg.n_updates >= 1000)
