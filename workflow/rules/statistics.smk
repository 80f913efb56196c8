# Generated-vs-real statistics (METHODS §5, Fig. 3): equilibrium samples of the selected model
# (Gibbs, or PTT along its training trajectory; with an explicit equilibration check) compared
# with train and test bins.


rule statistics:
    input:
        selected=results("{session}/selected.nc"),
        raster=results("{session}/raster.nc"),
        trajectory=get_statistics_trajectory,
    output:
        statistics=results("{session}/statistics.nc"),
    log:
        results("logs/statistics/{session}.log"),
    benchmark:
        results("benchmarks/statistics/{session}.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    params:
        statistics=get_statistics_params,
        n_hidden=N_HIDDEN,
        seed=config["seed"],
        device=config["device"],
    script:
        "../../scripts/statistics.py"


rule fig_statistics:
    input:
        statistics=results("{session}/statistics.nc"),
        raster=results("{session}/raster.nc"),
    output:
        fig3=report(
            results("{session}/figures/fig3_statistics.png"),
            caption="../report/fig3_statistics.rst",
            category=REPORT_STAGE["statistics"],
            subcategory="Fig. 3: generated vs real statistics",
            labels=report_labels("statistics"),
        ),
        equilibration=report(
            results("{session}/figures/fig3_equilibration.png"),
            caption="../report/equilibration.rst",
            category=REPORT_STAGE["statistics"],
            subcategory="Equilibration of the generated samples",
            labels=report_labels("statistics"),
        ),
        raster=report(
            results("{session}/figures/fig3_raster.png"),
            caption="../report/raster.rst",
            category=REPORT_STAGE["statistics"],
            subcategory="Real vs generated activity",
            labels=report_labels("statistics"),
        ),
    log:
        results("logs/fig_statistics/{session}.log"),
    benchmark:
        results("benchmarks/fig_statistics/{session}.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../../scripts/fig_statistics.py"
