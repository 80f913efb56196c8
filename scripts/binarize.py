"""Snakemake adapter: spikes.nc -> raster.nc (binarized, train/test split)."""

from spikerbm import io
from spikerbm.binarize import binarize, check_spikes
from spikerbm.provenance import derive_seed, provenance_attrs

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "binarize")  # errors: one clear line (io.job_logger)
session = snakemake.wildcards.session
cfg = dict(snakemake.params.binarize)
seed = derive_seed(snakemake.params.seed, "binarize", session)
spikes = io.read_checked(snakemake.input.spikes, check_spikes)
with io.about_input(snakemake.input.spikes, rebuild_hint=False):
    raster = binarize(spikes, bin_ms=cfg["bin_ms"], epochs=cfg["epochs"],
                      n_blocks=cfg["n_blocks"], n_test_blocks=cfg["n_test_blocks"], seed=seed,
                      session_id=session)
io.write_netcdf(raster, snakemake.output.raster,
                attrs=provenance_attrs(config=cfg, seed=seed, session_id=session))
log.info("raster %d bins x %d neurons (dropped %s)", raster.sizes["time_bin"],
         raster.sizes["neuron"], raster.attrs["dropped_units"])
