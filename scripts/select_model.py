"""Snakemake adapter: combine per-model log-likelihoods, select the best model -> selected.nc."""

from spikerbm import io
from spikerbm.binarize import check_raster
from spikerbm.likelihood import combine_loglik
from spikerbm.provenance import provenance_attrs
from spikerbm.rbm import check_rbm_dataset
from spikerbm.selection import select_model, selected_dataset

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "select_model")

session = snakemake.wildcards.session
ll = combine_loglik([io.read_netcdf(p) for p in snakemake.input.logliks])
selection = select_model(ll)  # logs a loud warning banner when no model beats the floor
n_hidden = int(selection.attrs["n_hidden"])
# params.n_hidden lists the size of each input model, in order (common.smk get_model_files)
models = dict(zip(snakemake.params.n_hidden, snakemake.input.models, strict=True))
model_path = models.get(n_hidden)
if model_path is None:
    raise FileNotFoundError(f"selected n_hidden={n_hidden} but no model of that size among the "
                            f"inputs {models}; rerun the train rule")
raster = io.read_checked(snakemake.input.raster, check_raster)
rate = raster["rate_hz"].values if "rate_hz" in raster.coords else None
model = io.read_checked(model_path, check_rbm_dataset, n_visible=raster.sizes["neuron"])
selected = selected_dataset(model, selection, rate_hz=rate)
for row in selection["candidate"].values:
    c = selection.isel(candidate=row)
    log.info("candidate n_hidden %d: best checkpoint %d, ll_train %.4f, ll_test %.4f (%s)",
             c["n_hidden"], c["checkpoint"], c["ll_train"], c["ll_test"],
             c["log_z_method"].item())
log.info("selected n_hidden %d checkpoint %d: ll_test %.4f vs floor %.4f, beats_floor %d",
         n_hidden, selection.attrs["checkpoint"], selection.attrs["ll_test"],
         selection.attrs["floor_test"], selection.attrs["beats_floor"])
attrs = provenance_attrs(config={"likelihood": dict(snakemake.params.likelihood)},
                         session_id=session)
io.write_netcdf(ll, snakemake.output.loglik, attrs=attrs)
io.write_netcdf(selected, snakemake.output.selected, attrs=attrs)
