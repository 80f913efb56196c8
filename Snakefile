# spikerbm: RBMs of large-scale spiking recordings. Path grammar: docs/data-model.md.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/vbn.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/likelihood.smk"
include: "workflow/rules/statistics.smk"
include: "workflow/rules/couplings.smk"
include: "workflow/rules/dynamics.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_outputs,
