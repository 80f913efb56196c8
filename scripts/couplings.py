"""Snakemake adapter: effective couplings of a session's selected model (couplings.nc)."""

import time

from spikerbm import io
from spikerbm.areas import areas_of
from spikerbm.binarize import check_raster
from spikerbm.couplings import compute_couplings, replica_couplings
from spikerbm.model import primary_replica, with_replica_dim
from spikerbm.provenance import derive_seed, provenance_attrs
from spikerbm.rbm import check_rbm_dataset, resolve_device

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "couplings")

session = snakemake.wildcards.session
params = dict(snakemake.params.couplings)
raster = io.read_checked(snakemake.input.raster, check_raster)
selected = io.read_checked(snakemake.input.selected, check_rbm_dataset,
                           n_visible=raster.sizes["neuron"])
n_hidden = int(selected.attrs["n_hidden"])
# params.n_hidden lists the size of each input model, in order (common.smk get_model_files)
model_path = dict(zip(snakemake.params.n_hidden, snakemake.input.models, strict=True)).get(n_hidden)
model = (io.read_checked(model_path, check_rbm_dataset, n_visible=raster.sizes["neuron"])
         if model_path else None)
if model is None:
    log.warning("no model.nc for n_hidden %d among the inputs: Fig. 4e (norms along training) "
                "will be empty", n_hidden)
truth = io.read_netcdf(snakemake.input.truth) if snakemake.input.truth else None
areas = areas_of(selected, raster)
seed = derive_seed(snakemake.params.seed, "couplings", session, n_hidden)
device = resolve_device(snakemake.params.device)
log.info("session %s: n_hidden %d, model %s, device %s, params %s", session, n_hidden,
         model_path, device, params)

start = time.perf_counter()
# statistics of one replica (primary_replica); every replica's couplings for reproducibility
primary = primary_replica(selected)
if model is not None:
    model = with_replica_dim(model).sel(replica=int(selected.attrs.get("primary_replica", 0)),
                                        drop=True)
ds = compute_couplings(primary, areas=areas, model=model,
                       truth=truth, seed=seed, device=device, **params)
if "replica" in selected.dims:
    ds = replica_couplings(selected, ds, device=device, **{
        k: params[k] for k in ("pair_method", "quadrature_nodes", "spectral_log_tol",
                               "min_area_neurons", "memory_budget_mb") if k in params})
    log.info("replicas %d (primary %d): J2 r mean %.4g min %.4g, slope mean %.4g; J3 r mean "
             "%.4g; median spread %.3g; sign-consistent %.3g of %d pairs; area std max %.3g",
             ds.attrs["replicas"], ds.attrs["primary_replica"],
             ds.attrs.get("J2_pearson_mean", float("nan")),
             ds.attrs.get("J2_pearson_min", float("nan")),
             ds.attrs.get("J2_slope_mean", float("nan")),
             ds.attrs.get("J3_pearson_mean", float("nan")),
             ds.attrs.get("J2_spread_median", float("nan")),
             ds.attrs.get("J2_sign_consistent_fraction", float("nan")),
             ds.attrs.get("J2_sign_n_pairs", 0), ds.attrs.get("area_J_replica_std_max",
                                                               float("nan")))
log.info("done in %.1f s: norms H %.4g J2 %.4g J3 %.4g; area within %.4g cross %.4g; "
         "truth_pearson_J %s truth_pearson_H %s", time.perf_counter() - start,
         ds.attrs["norm_H"], ds.attrs["norm_J2"], ds.attrs["norm_J3"],
         ds.attrs.get("area_within_mean_J", float("nan")),
         ds.attrs.get("area_cross_mean_J", float("nan")),
         ds.attrs.get("truth_pearson_J", "n/a"), ds.attrs.get("truth_pearson_H", "n/a"))
attrs = provenance_attrs(config={"couplings": params, "seed": snakemake.params.seed,
                                 "device": snakemake.params.device},
                         seed=seed, session_id=session)
io.write_netcdf(ds, snakemake.output.couplings, attrs=attrs)
