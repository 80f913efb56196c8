"""Snakemake adapter: Figs. 4 (couplings) and 5 (per-area histograms), the coupling matrix by
area (and against distance where the source keeps positions) and the hidden units by area, from
couplings.nc, selected.nc and raster.nc."""

from spikerbm import io, style
from spikerbm.model import primary_replica
from spikerbm.plotting import fig_areas, fig_coupling_structure, fig_couplings, fig_hidden_units

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "fig_couplings")

ds = io.read_netcdf(snakemake.input.couplings)
selected = primary_replica(io.read_netcdf(snakemake.input.selected))
raster = io.read_netcdf(snakemake.input.raster)
session = snakemake.wildcards.session
figures = {
    "fig4": fig_couplings(ds, title=style.session_title(session, "effective couplings",
                                                         ds.attrs)),
    "fig5": fig_areas(ds, title=style.session_title(session, "couplings per area", ds.attrs)),
    "structure": fig_coupling_structure(ds, raster, title=style.session_title(
        session, "coupling structure", ds.attrs)),
    "hidden": fig_hidden_units(selected, title=style.session_title(
        session, "hidden units by area", selected.attrs)),
}
for name, fig in figures.items():
    io.save_figure(fig, snakemake.output[name], attrs=ds.attrs)
    log.info("wrote %s", snakemake.output[name])
