# Log-likelihood along training (METHODS §4, Fig. 2): exact log Z when min(N, n_hidden) <=
# likelihood.exact_max_units, else AIS; trajectory-AIS values and the online curve from
# model.nc stored beside. Then the per-session model selection (highest test LL; ties,
# online/checkpoint disagreements; with method tais, exact/AIS wherever trajectory AIS cannot
# decide, hence the GPU then) and Fig. 2.


rule loglik:
    input:
        model=results("{session}/hidden~{n_hidden}/model.nc"),
        raster=results("{session}/raster.nc"),
    output:
        loglik=results("{session}/hidden~{n_hidden}/loglik.nc"),
    log:
        results("logs/loglik/{session}/hidden~{n_hidden}.log"),
    benchmark:
        results("benchmarks/loglik/{session}/hidden~{n_hidden}.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=120,
    params:
        likelihood=get_likelihood_params,
        seed=config["seed"],
        device=config["device"],
    script:
        "../../scripts/loglik.py"


rule select_model:
    input:
        logliks=get_loglik_files,
        models=get_model_files,
        raster=results("{session}/raster.nc"),
    output:
        loglik=results("{session}/loglik.nc"),
        selected=results("{session}/selected.nc"),
    log:
        results("logs/select_model/{session}.log"),
    benchmark:
        results("benchmarks/select_model/{session}.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        gpu=1 if config["likelihood"]["method"] == "tais" else 0,
        mem_mb=4000,
        runtime=60 if config["likelihood"]["method"] == "tais" else 10,
    params:
        likelihood=get_likelihood_params,
        n_hidden=N_HIDDEN,
        seed=config["seed"],
        device=config["device"],
    script:
        "../../scripts/select_model.py"


rule fig_loglik:
    input:
        loglik=results("{session}/loglik.nc"),
    output:
        figure=report(
            results("{session}/figures/fig2_loglik.png"),
            caption="../report/fig2_loglik.rst",
            category=REPORT_STAGE["loglik"],
            subcategory="Fig. 2: log-likelihood along training",
            labels=report_labels(None),
        ),
    log:
        results("logs/fig_loglik/{session}.log"),
    benchmark:
        results("benchmarks/fig_loglik/{session}.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../../scripts/fig_loglik.py"
