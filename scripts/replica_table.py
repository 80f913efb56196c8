"""Snakemake adapter: reproducibility of the couplings across replicas, one row per session ->
results/tables/couplings_replicas.tsv and .html (train.replicas > 1)."""

from spikerbm import io, report

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "replica_table")

attrs = {s: io.read_attrs(p) for s, p in zip(snakemake.params.sessions,
                                             snakemake.input.couplings, strict=True)}
table = report.attrs_table(attrs, report.REPLICA_TABLE_FIELDS)
io.write_text(table.to_csv(sep="\t", index=False), snakemake.output.tsv)
io.write_text(report.table_html(table, title=report.TABLE_TITLES["couplings_replicas"]),
              snakemake.output.html)
log.info("couplings_replicas: %d rows", len(table))
