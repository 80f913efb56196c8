"""Snakemake adapter: cross-session report tables (findings of every session and of the atlas,
selected models, statistic scores, couplings, dynamics) -> results/tables/{name}.tsv, .html."""

import pandas as pd

from spikerbm import findings, io, report

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "report_tables")
sessions = list(snakemake.params.sessions)
ATLAS_ROW = "atlas (all sessions)"  # the `session` of the atlas's findings
CANDIDATE_VARS = ["ll_train", "ll_test", "ll_test_std", "log_z_method", "selected",
                  "replica_wins", "within_se"]

# the findings were judged once, by the summary job (spikerbm.findings): read them back
summaries = {s: pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False)
             for s, p in zip(sessions, snakemake.input.summary, strict=True)}
found = {s: report.findings_of_summary(t) for s, t in summaries.items()}
if "atlas" in snakemake.input.keys():  # the cross-session atlas is judged here, once
    found[ATLAS_ROW] = findings.atlas_findings(io.read_attrs(snakemake.input.atlas))
tables = {"findings": report.findings_report_table(found)}
selected = {}
for session, path in zip(sessions, snakemake.input.selected, strict=True):
    ds = io.read_netcdf(path)  # keep only the small candidate table, not the weights
    selected[session] = ds[[v for v in CANDIDATE_VARS if v in ds]].assign_attrs(ds.attrs)
tables["selected_models"] = report.selected_models_table(selected)
for name, (artifact, fields) in report.TABLE_FIELDS.items():
    attrs = {s: io.read_attrs(p) for s, p in zip(sessions, snakemake.input[artifact], strict=True)}
    tables[name] = report.attrs_table(attrs, fields)
for name, table in tables.items():
    tsv = next(p for p in snakemake.output.tsv if p.endswith(f"/{name}.tsv"))
    io.write_text(table.to_csv(sep="\t", index=False), tsv)
    io.write_text(report.table_html(table, title=report.TABLE_TITLES[name]),
                  snakemake.output[name])
    log.info("%s: %d rows", name, len(table))
