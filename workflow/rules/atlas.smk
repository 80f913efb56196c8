# Issue 20: the pairwise maximum-entropy baseline (METHODS §11) per session and its comparison
# with the RBM over all sessions, and the cross-session brain-area atlas of the effective
# couplings (METHODS §12). Switched by `pairwise.enabled` and `atlas.enabled`.


rule pairwise:
    input:
        raster=results("{session}/raster.nc"),
        selected=results("{session}/selected.nc"),
    output:
        pairwise=results("{session}/pairwise.nc"),
        statistics=results("{session}/pairwise_statistics.nc"),
        fig3=report(
            results("{session}/figures/fig3_pairwise_statistics.png"),
            caption="../report/fig3_pairwise_statistics.rst",
            category=REPORT_STAGE_BASELINE,
            subcategory="Fig. 3 of the pairwise model",
            labels=pairwise_report_labels,
        ),
    log:
        results("logs/pairwise/{session}.log"),
    benchmark:
        results("benchmarks/pairwise/{session}.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    params:
        config=get_pairwise_params,
        seed=config["seed"],
        device=config["device"],
    script:
        "../../scripts/pairwise.py"


rule compare_models:
    input:
        unpack(get_comparison_inputs),
    output:
        tsv=results("tables/model_comparison.tsv"),
        html=report(
            results("tables/model_comparison.html"),
            caption="../report/table_model_comparison.rst",
            category=REPORT_STAGE_BASELINE,
            subcategory="Table: RBM vs pairwise vs independent",
            labels=TABLE_LABELS,
        ),
        figure=report(
            results("figures/pairwise_vs_rbm.png"),
            caption="../report/fig_pairwise_vs_rbm.rst",
            category=REPORT_STAGE_BASELINE,
            subcategory="Figure: pairwise J vs the RBM's effective J",
            labels=TABLE_LABELS,
        ),
    log:
        results("logs/compare_models/all.log"),
    benchmark:
        results("benchmarks/compare_models/all.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        sessions=SESSIONS.index.tolist(),
    script:
        "../../scripts/compare_models.py"


rule atlas:
    input:
        unpack(get_atlas_inputs),
    output:
        atlas=results("atlas/atlas.nc"),
        area_pairs=results("tables/atlas_area_pairs.tsv"),
        within_across=results("tables/atlas_within_across.tsv"),
        area_pairs_html=report(
            results("tables/atlas_area_pairs.html"),
            caption="../report/table_atlas_area_pairs.rst",
            category=REPORT_STAGE_ATLAS,
            subcategory="Table: coarse-grained couplings per pair of areas",
            labels=TABLE_LABELS,
        ),
        within_across_html=report(
            results("tables/atlas_within_across.html"),
            caption="../report/table_atlas_within_across.rst",
            category=REPORT_STAGE_ATLAS,
            subcategory="Table: within vs across areas",
            labels=TABLE_LABELS,
        ),
    log:
        results("logs/atlas/all.log"),
    benchmark:
        results("benchmarks/atlas/all.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        atlas=get_atlas_params,
        sessions=SESSIONS.index.tolist(),
        seed=config["seed"],
    script:
        "../../scripts/atlas.py"


rule fig_atlas:
    input:
        atlas=results("atlas/atlas.nc"),
    output:
        figure=report(
            results("figures/atlas.png"),
            caption="../report/fig_atlas.rst",
            category=REPORT_STAGE_ATLAS,
            subcategory="Figure: area atlas and within vs across",
            labels=TABLE_LABELS,
        ),
    log:
        results("logs/fig_atlas/all.log"),
    benchmark:
        results("benchmarks/fig_atlas/all.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../../scripts/fig_atlas.py"
