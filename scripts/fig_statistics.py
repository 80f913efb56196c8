"""Snakemake adapter: Fig. 3 (generated vs real statistics), the equilibration traces and the
real-vs-generated raster, from statistics.nc (+ raster.nc)."""

from spikerbm import io, style
from spikerbm.plotting import fig_equilibration, fig_raster, fig_statistics

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "fig_statistics")

ds = io.read_netcdf(snakemake.input.statistics)
raster = io.read_netcdf(snakemake.input.raster)
session = snakemake.wildcards.session
if int(ds.attrs.get("equilibrated", -1)) != 1:
    log.warning("statistics.nc is flagged equilibrated=%s: %s", ds.attrs.get("equilibrated"),
                ds.attrs.get("equilibration_reason"))
figures = {
    "fig3": fig_statistics(ds, title=style.session_title(session, "generated vs real statistics",
                                                          ds.attrs)),
    "equilibration": fig_equilibration(ds, title=style.session_title(
        session, "equilibration of the generated samples", ds.attrs)),
    "raster": fig_raster(raster, ds, title=style.session_title(
        session, "real vs generated activity", ds.attrs)),
}
for name, fig in figures.items():
    io.save_figure(fig, snakemake.output[name], attrs=ds.attrs)
    log.info("wrote %s", snakemake.output[name])
