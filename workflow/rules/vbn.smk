# VBN source: one Allen Visual Behavior Neuropixels session -> results/{session}/spikes.nc.
# allensdk 2.16.2 cannot share the main environment, so this is a shell rule running
# `python -m spikerbm.vbn extract` (spikerbm.vbn_cli) in the vbn environment (config vbn.python;
# build it with `bash scripts/setup_vbn_env.sh`).
# Downloads (vbn.cache_mode: s3) happen only here, into vbn.cache_dir.


rule vbn_extract:
    output:
        spikes=results("{session}/spikes.nc"),
    log:
        results("logs/vbn_extract/{session}.log"),
    benchmark:
        results("benchmarks/vbn_extract/{session}.tsv")
    wildcard_constraints:
        session=VBN_SESSIONS,
    conda:
        "../../envs/vbn.yaml"
    threads: 1
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        python=get_vbn_python,
        args=get_vbn_args,
    shell:
        "if ! command -v {params.python:q} >/dev/null 2>&1; then"
        " echo 'vbn_extract: vbn.python={params.python} is not an executable python;"
        " build it with: bash scripts/setup_vbn_env.sh (or set vbn.python)' | tee {log:q} >&2;"
        " exit 1; fi; "
        "{params.python:q} -m spikerbm.vbn extract {params.args} --out {output.spikes:q} > {log:q} 2>&1"
        " || {{ echo 'vbn_extract failed for session {wildcards.session}:' >&2;"
        " grep ' ERROR ' {log:q} >&2 || tail -n 20 {log:q} >&2; exit 2; }}"
