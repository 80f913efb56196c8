"""Snakemake adapter: validate a user-supplied raster (source: raster) -> raster.nc."""

from spikerbm import io
from spikerbm.binarize import validate_raster
from spikerbm.provenance import derive_seed, provenance_attrs

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "import_raster")  # errors: one clear line
session = snakemake.wildcards.session
cfg = dict(snakemake.params.binarize)
seed = derive_seed(snakemake.params.seed, "binarize", session)
source = io.read_checked(snakemake.input.raster, rebuild_hint=False, raw=True)
with io.about_input(snakemake.input.raster, rebuild_hint=False):
    raster = validate_raster(source, n_blocks=cfg["n_blocks"],
                             n_test_blocks=cfg["n_test_blocks"], seed=seed, session_id=session)
attrs = provenance_attrs(config={**cfg, "path": str(snakemake.input.raster)},
                         seed=seed, session_id=session)
io.write_netcdf(raster, snakemake.output.raster, attrs=attrs)
log.info("raster %d bins x %d neurons (dropped %s)", raster.sizes["time_bin"],
         raster.sizes["neuron"], raster.attrs["dropped_units"])
