# Stage 8: the session's findings (spikerbm.findings judges every artifact in one place) and key
# numbers, for the log, summary.tsv and the per-session page of `snakemake --report`.


rule summary:
    input:
        selected=results("{session}/selected.nc"),
        loglik=results("{session}/loglik.nc"),
        models=get_model_files,
        statistics=results("{session}/statistics.nc"),
        couplings=results("{session}/couplings.nc"),
        dynamics=results("{session}/dynamics.nc"),
    output:
        tsv=results("{session}/summary.tsv"),
        html=report(
            results("{session}/summary.html"),
            caption="../report/summary.rst",
            category=REPORT_STAGE["summary"],
            subcategory="Findings and key numbers",
            labels=report_labels("selected"),
        ),
    log:
        results("logs/summary/{session}.log"),
    benchmark:
        results("benchmarks/summary/{session}.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        n_hidden=N_HIDDEN,
    script:
        "../../scripts/summary.py"


# Cross-session tables of the report (one row per session; per hidden size for selection).
rule report_tables:
    input:
        unpack(get_table_inputs),
    output:
        findings=report(
            results("tables/findings.html"),
            caption="../report/table_findings.rst",
            category=REPORT_STAGE["findings"],
            subcategory="Table: findings of every session",
            labels=TABLE_LABELS,
        ),
        selected_models=report(
            results("tables/selected_models.html"),
            caption="../report/table_selected_models.rst",
            category=REPORT_STAGE["loglik"],
            subcategory="Table: selected models",
            labels=TABLE_LABELS,
        ),
        statistics_scores=report(
            results("tables/statistics_scores.html"),
            caption="../report/table_statistics_scores.rst",
            category=REPORT_STAGE["statistics"],
            subcategory="Table: statistic scores",
            labels=TABLE_LABELS,
        ),
        couplings_summary=report(
            results("tables/couplings_summary.html"),
            caption="../report/table_couplings_summary.rst",
            category=REPORT_STAGE["couplings"],
            subcategory="Table: coupling summaries",
            labels=TABLE_LABELS,
        ),
        dynamics_summary=report(
            results("tables/dynamics_summary.html"),
            caption="../report/table_dynamics_summary.rst",
            category=REPORT_STAGE["dynamics"],
            subcategory="Table: dynamics summaries",
            labels=TABLE_LABELS,
        ),
        tsv=expand(results("tables/{table}.tsv"), table=TABLE_NAMES),
    log:
        results("logs/report_tables/all.log"),
    benchmark:
        results("benchmarks/report_tables/all.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        sessions=SESSIONS.index.tolist(),
    script:
        "../../scripts/report_tables.py"


# Reproducibility of the couplings across replicas (train.replicas > 1), one row per session.
rule replica_table:
    input:
        couplings=expand(results("{session}/couplings.nc"), session=SESSIONS.index),
    output:
        html=report(
            results("tables/couplings_replicas.html"),
            caption="../report/table_couplings_replicas.rst",
            category=REPORT_STAGE["couplings"],
            subcategory="Table: couplings across replicas",
            labels=TABLE_LABELS,
        ),
        tsv=results("tables/couplings_replicas.tsv"),
    log:
        results("logs/replica_table/all.log"),
    benchmark:
        results("benchmarks/replica_table/all.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        sessions=SESSIONS.index.tolist(),
    script:
        "../../scripts/replica_table.py"
