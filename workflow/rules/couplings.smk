# Effective couplings (METHODS §6, Figs. 4-5): Ising fields, pairwise and streamed 3-body terms of
# the selected model, area structure, norms along its training trajectory.


rule couplings:
    input:
        selected="results/{session}/selected.nc",
        raster="results/{session}/raster.nc",
        models=get_model_files,
        truth=get_truth,
    output:
        couplings="results/{session}/couplings.nc",
    log:
        "results/logs/couplings/{session}.log",
    benchmark:
        "results/benchmarks/couplings/{session}.tsv"
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        couplings=config["couplings"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../../scripts/couplings.py"


rule fig_couplings:
    input:
        couplings="results/{session}/couplings.nc",
    output:
        fig4=report(
            "results/{session}/figures/fig4_couplings.png",
            category="Couplings",
            caption="../report/fig4_couplings.rst",
        ),
        fig5=report(
            "results/{session}/figures/fig5_areas.png",
            category="Couplings",
            caption="../report/fig5_areas.rst",
        ),
    log:
        "results/logs/fig_couplings/{session}.log",
    benchmark:
        "results/benchmarks/fig_couplings/{session}.tsv"
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../../scripts/fig_couplings.py"
