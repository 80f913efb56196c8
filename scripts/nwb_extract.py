"""Snakemake adapter: an NWB file's sorted units (source: nwb) -> spikes.nc."""

from spikerbm import io
from spikerbm.nwb import read_nwb
from spikerbm.provenance import provenance_attrs

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "nwb_extract")  # errors: one clear line
session = snakemake.wildcards.session
cfg = dict(snakemake.params.nwb)
path = str(snakemake.input.nwb)
log.info("reading %s with %s", path, cfg)
spikes = read_nwb(path, session_id=session, **cfg)
io.write_netcdf(spikes, snakemake.output.spikes,
                attrs=provenance_attrs(config={**cfg, "path": path}, session_id=session))
log.info("%d units (of %d), %d spikes, epochs %s", spikes.sizes["unit"],
         spikes.attrs["n_units_total"], spikes.sizes["spike"],
         spikes["epoch_name"].values.tolist()[:10])
