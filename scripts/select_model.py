"""Snakemake adapter: combine per-model log-likelihoods, select the best model -> selected.nc."""

import functools

import torch
import xarray as xr

from spikerbm import io
from spikerbm.binarize import check_raster
from spikerbm.likelihood import checkpoint_log_z, combine_loglik
from spikerbm.model import with_replica_dim
from spikerbm.partition import resolve_method
from spikerbm.provenance import derive_seed, provenance_attrs
from spikerbm.rbm import check_rbm_dataset, rbm_from_dataset, resolve_device
from spikerbm.selection import refine_tais_ties, select_model, selected_dataset
from spikerbm.train_state import replica_seeds

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "select_model")

session = snakemake.wildcards.session
torch.set_num_threads(snakemake.threads)
params = dict(snakemake.params.likelihood)
raster = io.read_checked(snakemake.input.raster, check_raster)
n_neurons = raster.sizes["neuron"]
# params.n_hidden lists the size of each input model, in order (common.smk get_model_files)
models = dict(zip(snakemake.params.n_hidden, snakemake.input.models, strict=True))
ll = combine_loglik([io.read_netcdf(p) for p in snakemake.input.logliks])


def refine(n_hidden: int, checkpoint: int, replica: int = 0):
    """The checkpoint estimator (exact or AIS, as method auto) of one trajectory-AIS entry of
    one replica, seeded as the loglik job of that model would seed it."""
    model = io.read_checked(models[n_hidden], check_rbm_dataset, n_visible=n_neurons)
    model = with_replica_dim(model).sel(replica=replica, drop=True)
    device = resolve_device(snakemake.params.device)
    method = resolve_method("auto", n_visible=n_neurons, n_hidden=n_hidden,
                            exact_max_units=params["exact_max_units"])
    seed = derive_seed(snakemake.params.seed, "loglik", session, n_hidden)
    est = checkpoint_log_z(
        rbm_from_dataset(model, checkpoint=checkpoint, device=device), checkpoint=checkpoint,
        method=method, seed=replica_seeds(seed, replica + 1)[replica],
        **{k: params[k] for k in ("exact_max_units", "ais_chains", "ais_betas", "ais_repeats")})
    log.info("n_hidden %d checkpoint %d replica %d: log Z %.4f +- %.2g (%s) replaces "
             "trajectory AIS", n_hidden, checkpoint, replica, est.log_z, est.log_z_std,
             est.method)
    return est


if (ll["log_z_method"] == "tais").any() and "replica" not in ll.dims:
    ll = refine_tais_ties(ll, refine)
elif (ll["log_z_method"] == "tais").any():  # each replica on its own, as it is selected
    parts = [refine_tais_ties(ll.sel(replica=r, drop=True),
                              functools.partial(refine, replica=int(r)))
             for r in ll["replica"].values]
    why = "; ".join(f"replica {r}: {p.attrs['tais_fallback']}"
                    for r, p in zip(ll["replica"].values, parts, strict=True)
                    if p.attrs["tais_fallback"])
    ll = xr.concat(parts, dim="replica", combine_attrs="drop_conflicts").assign_coords(
        replica=ll["replica"].values).assign_attrs(tais_fallback=why)
selection = select_model(ll)  # logs ties, online/checkpoint disagreements, the floor banner
n_hidden = int(selection.attrs["n_hidden"])
model_path = models.get(n_hidden)
if model_path is None:
    raise FileNotFoundError(f"selected n_hidden={n_hidden} but no model of that size among the "
                            f"inputs {models}; rerun the train rule")
rate = raster["rate_hz"].values if "rate_hz" in raster.coords else None
model = io.read_checked(model_path, check_rbm_dataset, n_visible=n_neurons)
selected = selected_dataset(model, selection, rate_hz=rate)
for row in selection["candidate"].values:
    c = selection.isel(candidate=row)
    stop = (f", training {c['stop_reason'].item()} at update {int(c['n_updates_done'])} "
            f"(best online update {int(c['best_update'])}, still improving "
            f"{int(c['still_improving'])})" if "stop_reason" in c else "")
    log.info("candidate n_hidden %d: best checkpoint %d, ll_train %.4f, ll_test %.4f +- %.2g "
             "(%s)%s", c["n_hidden"], c["checkpoint"], c["ll_train"], c["ll_test"],
             c["ll_test_std"], c["log_z_method"].item(), stop)
log.info("selected n_hidden %d checkpoint %d: ll_test %.4f +- %.2g vs floor %.4f, beats_floor "
         "%d, tied with n_hidden [%s], online/checkpoint disagreements [%s]", n_hidden,
         selection.attrs["checkpoint"], selection.attrs["ll_test"],
         selection.attrs["ll_test_std"], selection.attrs["floor_test"],
         selection.attrs["beats_floor"], selection.attrs["tied_with"],
         selection.attrs["online_disagrees"])
attrs = provenance_attrs(config={"likelihood": params, "seed": snakemake.params.seed,
                                 "device": snakemake.params.device}, session_id=session)
io.write_netcdf(ll, snakemake.output.loglik, attrs=attrs)
io.write_netcdf(selected, snakemake.output.selected, attrs=attrs)
