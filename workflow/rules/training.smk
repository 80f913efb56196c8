# RBM training by PCD (METHODS §3), one job per (session, n_hidden). The job writes
# results/{session}/hidden~{n_hidden}/resume.nc after every checkpoint (not an output, so
# Snakemake keeps it when the job dies); a rerun resumes from it exactly and deletes it on success.
# With train.replicas: R > 1 the job trains R replicas (seeds derived from the job's) in lockstep:
# one model.nc with a replica dim; the time limit scales with R (on the fused GPU path one batched
# engine sweeps all replicas' chains per launch, but each replica still costs most of one model's
# time; on CPU they run in turn).


rule train:
    input:
        raster=results("{session}/raster.nc"),
    output:
        model=results("{session}/hidden~{n_hidden}/model.nc"),
    log:
        results("logs/train/{session}/hidden~{n_hidden}.log"),
    benchmark:
        results("benchmarks/train/{session}/hidden~{n_hidden}.tsv")
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=720 * config["train"]["replicas"],
    params:
        train=get_train_params,
        seed=config["seed"],
        device=config["device"],
    script:
        "../../scripts/train.py"
