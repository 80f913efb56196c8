# Data stage (METHODS §1, §8): synthetic sessions, users' files, binarization.
# synthetic rows -> spikes.nc + truth.nc; nwb rows (params path=FILE.nwb) -> spikes.nc
# (nwb_extract); spikes rows (path=FILE.nc, a spikes file) -> spikes.nc (spikes_import);
# vbn rows -> spikes.nc (vbn.smk); every spikes.nc -> raster.nc (binarize);
# raster rows (path=FILE.nc, a binarized raster) -> validated raster.nc (import_raster).


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


rule nwb_extract:
    input:
        nwb=get_data_file,
    output:
        spikes=results("{session}/spikes.nc"),
    log:
        results("logs/nwb_extract/{session}.log"),
    benchmark:
        results("benchmarks/nwb_extract/{session}.tsv")
    wildcard_constraints:
        session=NWB_SESSIONS,
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        nwb=get_nwb_extract_params,
    script:
        "../../scripts/nwb_extract.py"


rule spikes_import:
    input:
        spikes_file=get_data_file,
    output:
        spikes=results("{session}/spikes.nc"),
    log:
        results("logs/spikes_import/{session}.log"),
    benchmark:
        results("benchmarks/spikes_import/{session}.tsv")
    wildcard_constraints:
        session=SPIKES_FILE_SESSIONS,
    conda:
        "../../envs/spikerbm.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        spikes=get_spikes_import_params,
    script:
        "../../scripts/spikes_import.py"


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
        raster=get_data_file,
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
