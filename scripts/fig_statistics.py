"""Snakemake adapter: Fig. 3 (generated vs real statistics) from statistics.nc."""

from spikerbm import io
from spikerbm.plotting import fig_statistics

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "fig_statistics")

ds = io.read_netcdf(snakemake.input.statistics)
if int(ds.attrs.get("equilibrated", -1)) != 1:
    log.warning("statistics.nc is flagged equilibrated=%s: %s", ds.attrs.get("equilibrated"),
                ds.attrs.get("equilibration_reason"))
io.save_figure(fig_statistics(ds), snakemake.output.fig3, attrs=ds.attrs)
log.info("wrote %s", snakemake.output.fig3)
