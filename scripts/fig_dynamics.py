"""Snakemake adapter: Fig. 6, data vs model relaxation after the fitted time rescale."""

import logging

from spikerbm import io
from spikerbm.plotting import fig_dynamics

snakemake = globals()["snakemake"]
logging.basicConfig(level=logging.INFO, handlers=[logging.FileHandler(snakemake.log[0])],
                    format="%(asctime)s %(levelname)s %(message)s")

ds = io.read_netcdf(snakemake.input.dynamics)
fig = fig_dynamics(ds, title=snakemake.wildcards.session)
io.save_figure(fig, snakemake.output.figure)
logging.getLogger("spikerbm.fig_dynamics").info("wrote %s", snakemake.output.figure)
