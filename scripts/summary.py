"""Per-session summary (key numbers + warnings) for the report."""

from spikerbm import io, report

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "summary")

artifacts = {name: io.read_netcdf(path) for name, path in snakemake.input.items()}
table = report.session_summary(artifacts)
warnings = report.session_warnings(artifacts)
for w in warnings:
    log.warning("!!! %s", w)
io.write_text(table.to_csv(sep="\t", index=False), snakemake.output.tsv)
io.write_text(report.summary_html(table, warnings, session_id=snakemake.wildcards.session),
              snakemake.output.html)
log.info("summary written with %d warnings", len(warnings))
