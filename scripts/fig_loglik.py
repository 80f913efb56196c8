"""Snakemake adapter: Fig. 2 (log-likelihood along training, per hidden size) from loglik.nc."""

import logging

from spikerbm import io
from spikerbm.plotting import fig_loglik

snakemake = globals()["snakemake"]
logging.basicConfig(level=logging.INFO, handlers=[logging.FileHandler(snakemake.log[0])],
                    format="%(asctime)s %(levelname)s %(message)s")

ll = io.read_netcdf(snakemake.input.loglik)
io.save_figure(fig_loglik(ll, title=snakemake.wildcards.session), snakemake.output.figure)
logging.getLogger("spikerbm.fig_loglik").info("wrote %s", snakemake.output.figure)
