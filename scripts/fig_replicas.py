"""Snakemake adapter: reproducibility of the couplings across replicas (R > 1) from
couplings.nc."""

from spikerbm import io, style
from spikerbm.plotting import fig_replicas

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "fig_replicas")

session = snakemake.wildcards.session
coup = io.read_netcdf(snakemake.input.couplings)
if "replica_J" not in coup:
    raise io.InputError(f"{snakemake.input.couplings}: no replica couplings (replica_J): the "
                        "selected model has one live replica; set train.replicas >= 2")
title = style.session_title(session, f"couplings across {coup.attrs['replicas']} replicas",
                            coup.attrs)
io.save_figure(fig_replicas(coup, title=title), snakemake.output.figure, attrs=coup.attrs)
log.info("wrote %s", snakemake.output.figure)
