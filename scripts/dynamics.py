"""Snakemake adapter: relaxation dynamics of a session (dynamics.nc)."""

import time

import torch

from spikerbm import io
from spikerbm.binarize import check_raster
from spikerbm.dynamics import dynamics_dataset
from spikerbm.model import primary_replica
from spikerbm.provenance import derive_seed, provenance_attrs
from spikerbm.rbm import check_rbm_dataset, resolve_device

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "dynamics")

torch.set_num_threads(snakemake.threads)  # more threads than cores oversubscribes badly
session = snakemake.wildcards.session
params = dict(snakemake.params.dynamics)
# dynamics uses every bin in time order: no split or areas needed
raster = io.read_checked(snakemake.input.raster, check_raster, needs_split=False, needs_area=False)
selected = io.read_checked(snakemake.input.selected, check_rbm_dataset,
                           n_visible=raster.sizes["neuron"])
selected = primary_replica(selected)  # statistics of one replica (selected.nc attrs)
truth = io.read_netcdf(snakemake.input.truth) if snakemake.input.truth else None
n_hidden = int(selected.attrs["n_hidden"])
seed = derive_seed(snakemake.params.seed, "dynamics", session, n_hidden)
device = resolve_device(snakemake.params.device)
log.info("session %s: n_hidden %d, device %s, params %s", session, n_hidden, device, params)

start = time.perf_counter()
ds = dynamics_dataset(raster, selected, truth=truth, seed=seed, device=device, **params)
log.info("done in %.1f s: ms_per_sweep %.4g, fit max|dev| %.3g (baseline %.3g), tau_int data "
         "%.4g ms, truth ms_per_sweep %s", time.perf_counter() - start, ds.attrs["ms_per_sweep"],
         ds.attrs["fit_max_abs_dev"], ds.attrs["baseline_max_abs_dev_fit"],
         ds.attrs["tau_int_data_ms"], ds.attrs.get("truth_ms_per_sweep", "n/a"))
if ds.attrs["lag_clamped"]:
    log.warning("%s; set dynamics.max_lag_bins <= %d for these data to silence this",
                ds.attrs["lag_clamp_reason"], ds.attrs["longest_segment_bins"] - 1)
if ds.attrs["fit_first_lag_sweeps"] < 1:
    log.warning("fitted %.4g ms per sweep exceeds the first fitted lag (%d bin(s) = %.4g ms): "
                "%d fitted lag(s) are shorter than one Gibbs sweep, where the model curve is "
                "interpolated between C(0) = 1 and C(1)", ds.attrs["ms_per_sweep"],
                ds.attrs["fit_lag_lo"], ds.attrs["fit_lag_lo"] * ds.attrs["bin_ms"],
                ds.attrs["fit_n_sub_sweep_lags"])
if ds.attrs["fit_at_bound"]:
    log.warning("the rescale fit hit the end of its grid (ms_per_sweep %.4g is only a bound); "
                "at the low end the model relaxes too slowly for dynamics.max_lag_sweeps",
                ds.attrs["ms_per_sweep"])
attrs = provenance_attrs(config={"dynamics": params, "seed": snakemake.params.seed,
                                 "device": snakemake.params.device},
                         seed=seed, session_id=session)
io.write_netcdf(ds, snakemake.output.dynamics, attrs=attrs)
