"""Snakemake adapter: Fig. 6, data vs model relaxation after the fitted time rescale."""

from spikerbm import io, style
from spikerbm.plotting import fig_dynamics

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "fig_dynamics")

ds = io.read_netcdf(snakemake.input.dynamics)
fig = fig_dynamics(ds, title=style.session_title(snakemake.wildcards.session,
                                                 "relaxation dynamics", ds.attrs))
io.save_figure(fig, snakemake.output.figure, attrs=ds.attrs)
log.info("wrote %s", snakemake.output.figure)
