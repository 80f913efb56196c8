"""Snakemake adapter: Fig. 2 (log-likelihood along training, per hidden size) from loglik.nc."""

from spikerbm import io
from spikerbm.plotting import fig_loglik

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "fig_loglik")

ll = io.read_netcdf(snakemake.input.loglik)
io.save_figure(fig_loglik(ll, title=snakemake.wildcards.session), snakemake.output.figure,
               attrs=ll.attrs)
log.info("wrote %s", snakemake.output.figure)
