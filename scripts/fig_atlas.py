"""Snakemake adapter: the atlas figure (area matrices with intervals, within vs across)."""

from spikerbm import io
from spikerbm.plotting import fig_atlas

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "fig_atlas")

ds = io.read_netcdf(snakemake.input.atlas)
io.save_figure(fig_atlas(ds), snakemake.output.figure, attrs=ds.attrs)
log.info("wrote %s", snakemake.output.figure)
