"""Snakemake adapter: generated-vs-real statistics of a session's selected model (statistics.nc)."""

import time

from spikerbm import binarize, io
from spikerbm.binarize import check_raster
from spikerbm.provenance import derive_seed, provenance_attrs
from spikerbm.rbm import check_rbm_dataset, rbm_from_dataset, resolve_device
from spikerbm.statistics import compute_statistics

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "statistics")

session = snakemake.wildcards.session
params = dict(snakemake.params.statistics)
raster = io.read_checked(snakemake.input.raster, check_raster)
selected = io.read_checked(snakemake.input.selected, check_rbm_dataset,
                           n_visible=raster.sizes["neuron"])
n_hidden = int(selected.attrs["n_hidden"])
seed = derive_seed(snakemake.params.seed, "statistics", session, n_hidden)
device = resolve_device(snakemake.params.device)
rbm = rbm_from_dataset(selected, device=device)
splits = binarize.split_arrays(raster)
log.info("session %s: n_hidden %d, train %s, test %s, device %s, params %s", session, n_hidden,
         splits["train"].shape, splits["test"].shape, device, params)

start = time.perf_counter()
ds = compute_statistics(rbm, train=splits["train"], test=splits["test"], seed=seed,
                        neuron_coords={"unit_id": raster["unit_id"].values,
                                       "area": raster["area"].values}, **params)
a = ds.attrs
log.info("done in %.1f s: tau_E %.3g tau_K %.3g sweeps, z_E %.2f z_K %.2f; scores cov %.3f "
         "corr3 %.3f; r(train, gen) rate %.3f cov %.3f corr3 %.3f", time.perf_counter() - start,
         a["tau_energy_sweeps"], a["tau_k_sweeps"], a["z_energy"], a["z_k"],
         a["score_covariance"], a["score_corr3"], a["rate_r_train_generated"],
         a["covariance_r_train_generated"], a["corr3_r_train_generated"])
log.info("effective independent generated samples of %d (tau in samples %d sweeps apart): "
         "rate %.0f (%.2f), covariance %.0f (%.2f), corr3 %.0f (%.2f), energy %.0f (%.2f); "
         "score cov %.3f +- %.3f, corr3 %.3f +- %.3f", params["n_samples"],
         params["thin_sweeps"], a["n_eff_rate"], a["tau_samples_rate"], a["n_eff_covariance"],
         a["tau_samples_covariance"], a["n_eff_corr3"], a["tau_samples_corr3"],
         a["n_eff_energy"], a["tau_samples_energy"], a["score_covariance"],
         a["score_covariance_std"], a["score_corr3"], a["score_corr3_std"])
if a["equilibrated"] != 1:
    log.warning("SESSION %s: MODEL SAMPLES ARE NOT EQUILIBRATED (%s); statistics.nc is flagged "
                "equilibrated=0: raise statistics.burn_in_sweeps", session,
                a["equilibration_reason"])
attrs = provenance_attrs(config={"statistics": params, "seed": snakemake.params.seed,
                                 "device": snakemake.params.device},
                         seed=seed, session_id=session, n_hidden=n_hidden)
io.write_netcdf(ds, snakemake.output.statistics, attrs=attrs)
