"""Snakemake adapter: a synthetic session (spikes.nc + truth.nc) from the planted RBM."""

import torch

from spikerbm import io, synthetic
from spikerbm.provenance import derive_seed, provenance_attrs

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "synthetic_session")  # logs any error
session = snakemake.wildcards.session
torch.set_num_threads(snakemake.threads)  # the exact enumeration runs in torch
params = synthetic.check_params(snakemake.params.synthetic)
# seed = f(config seed, stage, session, the row's optional `seed` param)
seed = derive_seed(snakemake.params.seed, "synthetic", session, params.pop("seed", 0))
log.info("generating %s with %s, seed %d", session, params, seed)
spikes, truth = synthetic.generate_session(**params, seed=seed, session_id=session)
attrs = provenance_attrs(config=params, seed=seed, session_id=session)
io.write_netcdf(spikes, snakemake.output.spikes, attrs=attrs)
io.write_netcdf(truth, snakemake.output.truth, attrs=attrs)
log.info("%d spikes of %d units, %d hidden units planted", spikes.sizes["spike"],
         spikes.sizes["unit"], truth.sizes["hidden_true"])
