"""Snakemake adapter: Figs. 4 (couplings) and 5 (per-area histograms) from couplings.nc."""

from spikerbm import io
from spikerbm.plotting import fig_areas, fig_couplings

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "fig_couplings")

ds = io.read_netcdf(snakemake.input.couplings)
session = snakemake.wildcards.session
io.save_figure(fig_couplings(ds, title=f"{session}: effective couplings"), snakemake.output.fig4,
               attrs=ds.attrs)
io.save_figure(fig_areas(ds, title=f"{session}: couplings per area"), snakemake.output.fig5,
               attrs=ds.attrs)
log.info("wrote %s and %s", snakemake.output.fig4, snakemake.output.fig5)
