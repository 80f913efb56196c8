# Effective couplings (METHODS §6, Figs. 4-5): Ising fields, pairwise and streamed 3-body terms of
# the selected model, area structure, norms along its training trajectory.


rule couplings:
    input:
        selected=results("{session}/selected.nc"),
        raster=results("{session}/raster.nc"),
        models=get_model_files,
        truth=get_truth,
    output:
        couplings=results("{session}/couplings.nc"),
    log:
        results("logs/couplings/{session}.log"),
    benchmark:
        results("benchmarks/couplings/{session}.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=60,
    params:
        couplings=get_couplings_params,
        n_hidden=N_HIDDEN,
        seed=config["seed"],
        device=config["device"],
    script:
        "../../scripts/couplings.py"


rule fig_couplings:
    input:
        couplings=results("{session}/couplings.nc"),
        selected=results("{session}/selected.nc"),
        raster=results("{session}/raster.nc"),
    output:
        fig4=report(
            results("{session}/figures/fig4_couplings.png"),
            caption="../report/fig4_couplings.rst",
            category=REPORT_STAGE["couplings"],
            subcategory="Fig. 4: effective couplings",
            labels=report_labels("couplings"),
        ),
        fig5=report(
            results("{session}/figures/fig5_areas.png"),
            caption="../report/fig5_areas.rst",
            category=REPORT_STAGE["couplings"],
            subcategory="Fig. 5: couplings by brain area",
            labels=report_labels("couplings"),
        ),
        structure=report(
            results("{session}/figures/fig4_coupling_structure.png"),
            caption="../report/coupling_structure.rst",
            category=REPORT_STAGE["couplings"],
            subcategory="Coupling matrix by area and against distance",
            labels=report_labels("couplings"),
        ),
        hidden=report(
            results("{session}/figures/fig4_hidden_units.png"),
            caption="../report/hidden_units.rst",
            category=REPORT_STAGE["couplings"],
            subcategory="Hidden units by area",
            labels=report_labels("couplings"),
        ),
    log:
        results("logs/fig_couplings/{session}.log"),
    benchmark:
        results("benchmarks/fig_couplings/{session}.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../../scripts/fig_couplings.py"


rule fig_replicas:
    input:
        couplings=results("{session}/couplings.nc"),
    output:
        figure=report(
            results("{session}/figures/fig4_replicas.png"),
            caption="../report/fig4_replicas.rst",
            category=REPORT_STAGE["couplings"],
            subcategory="Couplings across replicas",
            labels=report_labels("couplings"),
        ),
    log:
        results("logs/fig_replicas/{session}.log"),
    benchmark:
        results("benchmarks/fig_replicas/{session}.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../../scripts/fig_replicas.py"
