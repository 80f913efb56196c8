# Stage 8: per-session summary page for `snakemake --report`.


rule summary:
    input:
        selected="results/{session}/selected.nc",
        statistics="results/{session}/statistics.nc",
        couplings="results/{session}/couplings.nc",
        dynamics="results/{session}/dynamics.nc",
    output:
        tsv="results/{session}/summary.tsv",
        html=report(
            "results/{session}/summary.html",
            category="Summary",
            subcategory="{session}",
            caption="../report/summary.rst",
            labels={"session": "{session}", "item": "key numbers"},
        ),
    log:
        "results/logs/summary/{session}.log",
    benchmark:
        "results/benchmarks/summary/{session}.tsv"
    conda:
        "../../envs/spikerbm.yaml"
    resources:
        mem_mb=1000,
    script:
        "../../scripts/summary.py"
