# Relaxation dynamics (METHODS §7, Figs. 6-8): autocorrelation of the population activity on the
# time-ordered raster vs equilibrium Gibbs chains of the selected model, one fitted time rescale.


rule dynamics:
    input:
        raster=results("{session}/raster.nc"),
        selected=results("{session}/selected.nc"),
        truth=get_truth,
    output:
        dynamics=results("{session}/dynamics.nc"),
    log:
        results("logs/dynamics/{session}.log"),
    benchmark:
        results("benchmarks/dynamics/{session}.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        dynamics=get_dynamics_params,
        seed=config["seed"],
        device=config["device"],
    script:
        "../../scripts/dynamics.py"


rule fig_dynamics:
    input:
        dynamics=results("{session}/dynamics.nc"),
    output:
        figure=report(
            results("{session}/figures/fig6_dynamics.png"),
            caption="../report/fig6_dynamics.rst",
            category=REPORT_STAGE["dynamics"],
            subcategory="Fig. 6: relaxation dynamics",
            labels=report_labels("dynamics"),
        ),
    log:
        results("logs/fig_dynamics/{session}.log"),
    benchmark:
        results("benchmarks/fig_dynamics/{session}.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../../scripts/fig_dynamics.py"
