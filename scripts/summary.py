"""Snakemake adapter: the session's findings and key numbers -> summary.tsv, summary.html."""

import xarray as xr

from spikerbm import findings, io, report
from spikerbm.model import replica_attrs

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "summary")

# selected.nc: the candidate table (grid and best checkpoints); the others: attributes only
artifacts = {"selected": io.read_netcdf(snakemake.input.selected)}
for name in ("loglik", "statistics", "couplings", "dynamics"):
    artifacts[name] = xr.Dataset(attrs=io.read_attrs(snakemake.input[name]))
# params.n_hidden lists the size of each input model, in order (common.smk get_model_files)
# with replicas (R > 1) the stop state is per replica: the primary replica's is judged
primary = int(artifacts["selected"].attrs.get("primary_replica", 0))
models = {}
for n, p in zip(snakemake.params.n_hidden, snakemake.input.models, strict=True):
    attrs = io.read_attrs(p)
    if int(attrs.get("replicas", 1)) > 1:
        attrs = replica_attrs(io.read_netcdf(p), primary)
    models[int(n)] = attrs
artifacts["model"] = xr.Dataset(attrs=models[int(artifacts["selected"].attrs["n_hidden"])])
found = findings.session_findings({**artifacts, "models": models})

# the job log in colour (green / amber / red; `less -R` shows it), most severe first
COLOUR = {"ok": "\033[32m", "caution": "\033[33m", "problem": "\033[1;31m"}
LOG = {"ok": log.info, "caution": log.warning, "problem": log.error}
for f in found:
    LOG[f.level]("%s[%s] %s: %s\033[0m", COLOUR[f.level], f.level, f.code, f.message)
table = report.session_summary(artifacts, found)
io.write_text(table.to_csv(sep="\t", index=False), snakemake.output.tsv)
io.write_text(report.summary_html(table, found, session_id=snakemake.wildcards.session),
              snakemake.output.html)
log.info("summary written: %s", ", ".join(
    f"{sum(f.level == lv for f in found)} {lv}" for lv in reversed(findings.LEVELS)))
