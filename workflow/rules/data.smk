# Data stage (METHODS §1, §8): synthetic sessions, binarization, user rasters.
# synthetic rows -> spikes.nc + truth.nc; synthetic and vbn rows -> raster.nc (binarize);
# raster rows (params path=/path/to/raster.nc) -> validated raster.nc (import_raster).


rule synthetic_session:
    output:
        spikes=results("{session}/spikes.nc"),
        truth=results("{session}/truth.nc"),
    log:
        results("logs/synthetic_session/{session}.log"),
    benchmark:
        results("benchmarks/synthetic_session/{session}.tsv")
    wildcard_constraints:
        session=SYNTHETIC_SESSIONS,
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        synthetic=get_synthetic_params,
        seed=config["seed"],
    script:
        "../../scripts/synthetic_session.py"


rule binarize:
    input:
        spikes=results("{session}/spikes.nc"),
    output:
        raster=results("{session}/raster.nc"),
    log:
        results("logs/binarize/{session}.log"),
    benchmark:
        results("benchmarks/binarize/{session}.tsv")
    wildcard_constraints:
        session=SPIKE_SESSIONS,
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        binarize=get_binarize_params,
        seed=config["seed"],
    script:
        "../../scripts/binarize.py"


rule import_raster:
    input:
        raster=get_raster_file,
    output:
        raster=results("{session}/raster.nc"),
    log:
        results("logs/import_raster/{session}.log"),
    benchmark:
        results("benchmarks/import_raster/{session}.tsv")
    wildcard_constraints:
        session=RASTER_SESSIONS,
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        binarize=get_import_raster_params,
        seed=config["seed"],
    script:
        "../../scripts/import_raster.py"
