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
names = spikes["epoch_name"].values.tolist()
log.info("%d units (of %d), %d spikes, %d epoch(s): %s", spikes.sizes["unit"],
         spikes.attrs["n_units_total"], spikes.sizes["spike"], len(names),
         ", ".join(names[:10]) + (f", ... ({len(names) - 10} more)" if len(names) > 10 else ""))
