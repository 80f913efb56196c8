# Stage 8: per-session summary page for `snakemake --report`.


rule summary:
    input:
        selected=results("{session}/selected.nc"),
        statistics=results("{session}/statistics.nc"),
        couplings=results("{session}/couplings.nc"),
        dynamics=results("{session}/dynamics.nc"),
    output:
        tsv=results("{session}/summary.tsv"),
        html=report(
            results("{session}/summary.html"),
            caption="../report/summary.rst",
            category=REPORT_STAGE["summary"],
            subcategory="Key numbers and warnings",
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
    script:
        "../../scripts/summary.py"


# Cross-session tables of the report (one row per session; per hidden size for selection).
rule report_tables:
    input:
        unpack(get_table_inputs),
    output:
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
