"""Snakemake adapter: a user's spikes file (source: spikes) -> spikes.nc."""

from spikerbm import io
from spikerbm.provenance import provenance_attrs
from spikerbm.sources import read_spikes_file

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "spikes_import")  # errors: one clear line
session = snakemake.wildcards.session
cfg = dict(snakemake.params.spikes)
path = str(snakemake.input.spikes_file)
spikes = read_spikes_file(path, session_id=session, **cfg)
io.write_netcdf(spikes, snakemake.output.spikes,
                attrs=provenance_attrs(config={**cfg, "path": path}, session_id=session))
log.info("%d units, %d spikes, epochs %s", spikes.sizes["unit"], spikes.sizes["spike"],
         spikes["epoch_name"].values.tolist()[:10])
