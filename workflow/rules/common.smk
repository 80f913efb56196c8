# Helpers shared by every rule: the sessions sheet, wildcard constraints, the run's result
# paths, and the input functions. Each rule's `params:` come from a get_<rule>_params function
# below that returns only the config values that job reads, so changing any other value (or
# adding a hidden size) never marks its existing outputs "params changed".
import re
import shlex

import yaml

# Found relative to this file (a local copy also when the workflow runs as a deployed module).
with open(workflow.source_path("../schemas/config.schema.yaml")) as schema_file:
    CONFIG_SCHEMA = yaml.safe_load(schema_file)


def load_sessions(path):
    """The sessions sheet, checked (spikerbm.sessions: errors name the file, line and session),
    and the merged, range-checked parameters of every synthetic row, before any job runs.
    """
    from spikerbm.sessions import check_synthetic_sessions, read_sessions

    with open(workflow.source_path("../schemas/sessions.schema.yaml")) as sheet_file:
        sheet = yaml.safe_load(sheet_file)
    table = read_sessions(path, sources=sheet["properties"]["source"]["enum"])
    synthetic = check_synthetic_sessions(
        table,
        config["synthetic"],
        schema=CONFIG_SCHEMA["properties"]["synthetic"],
        path=path,
    )
    return table, synthetic


from snakemake.exceptions import WorkflowError

from spikerbm.config import check_config_consistency

# A bad config or sheet is one line (raised here, without the frames of our code below it; the
# `File` line Snakemake adds points at this line). Other errors keep their traceback.
try:
    # CONFIG_FILES: set by workflow/Snakefile; a Snakefile of its own (tests) may lack it
    check_config_consistency(
        config, where=globals().get("CONFIG_FILES", "config/config.yaml")
    )
    SESSIONS, SYNTHETIC_ROW_PARAMS = load_sessions(config["sessions"])
except ValueError as err:
    if not getattr(err, "user_facing", False):
        raise
    raise WorkflowError(str(err)) from None
N_HIDDEN = [int(n) for n in config["train"]["n_hidden"]]
#: This run's namespace: every output, log and benchmark lies under it (config `results_dir`).
RESULTS_DIR = config["results_dir"]


def results(path):
    """`path` (a pattern such as "{session}/raster.nc") inside this run's results folder."""
    return f"{RESULTS_DIR}/{path}"


def _alternation(ids):
    """Regex matching exactly these ids (or nothing, when empty)."""
    return "|".join(re.escape(i) for i in ids) if len(ids) else "(?!x)x"


def sessions_of(source):
    return SESSIONS.index[SESSIONS.source == source].tolist()


wildcard_constraints:
    session=_alternation(SESSIONS.index.tolist()),
    n_hidden=r"[1-9][0-9]*",


SYNTHETIC_SESSIONS = _alternation(sessions_of("synthetic"))
RASTER_SESSIONS = _alternation(sessions_of("raster"))
VBN_SESSIONS = _alternation(sessions_of("vbn"))
SPIKE_SESSIONS = _alternation(
    [s for src in ("synthetic", "vbn", "nwb", "spikes") for s in sessions_of(src)]
)


def session_params(wildcards):
    """Source parameters of the session's row (a dict)."""
    return SESSIONS.loc[wildcards.session, "params"]


def get_synthetic_params(wildcards):
    """Config defaults for the synthetic source overridden by the row's params (checked when the
    sheet was read)."""
    return dict(sorted(SYNTHETIC_ROW_PARAMS[wildcards.session].items()))


def _section(name, *, only=None, drop=()):
    """The keys of config section `name` that a job reads (sorted: the recorded params do not
    depend on the order of the keys in the config file)."""
    values = config[name]
    keys = [k for k in values if k not in drop] if only is None else only
    return {key: values[key] for key in sorted(keys)}


def get_binarize_params(wildcards):
    return _section("binarize")


def get_import_raster_params(wildcards):
    """A user raster is binned already: only the train/test split applies (not bin_ms, epochs)."""
    return _section("binarize", only=["n_blocks", "n_test_blocks"])


def get_train_params(wildcards):
    """The train section for this model: its own size instead of the list of sizes, so adding
    a size leaves the existing models' params unchanged; `replicas: 1` and `momentum: 0` (the
    defaults) are left out, so jobs keep the params they had before those keys existed (no
    rerun). Anchors of trajectory AIS (`anchor_every` > 0) also read
    `likelihood.exact_max_units` (one exact limit); without anchors their settings are left
    out.
    """
    train = config["train"]
    drop = (
        ["n_hidden"]
        + (["replicas"] if train["replicas"] == 1 else [])
        + (["momentum"] if train["momentum"] == 0 else [])
    )
    anchors = train["anchor_every"] > 0 and train["tais_chains"] > 0
    if not anchors:
        drop += ["anchor_chains", "anchor_betas"]
    params = {**_section("train", drop=drop), "n_hidden": int(wildcards.n_hidden)}
    if anchors:
        params["exact_max_units"] = config["likelihood"]["exact_max_units"]
    return params


def get_likelihood_params(wildcards):
    return _section("likelihood")


def get_statistics_params(wildcards):
    return _section("statistics")


def get_couplings_params(wildcards):
    return _section("couplings")


def get_dynamics_params(wildcards):
    return _section("dynamics")


def get_model_files(wildcards):
    """The session's model.nc of every size, in the order of N_HIDDEN (rules that take these
    also get `n_hidden=N_HIDDEN` as params to pair each file with its size)."""
    return expand(
        results("{session}/hidden~{n_hidden}/model.nc"),
        session=wildcards.session,
        n_hidden=N_HIDDEN,
    )


def get_statistics_trajectory(wildcards):
    """With `statistics.sampler: ptt` the statistics job samples along the selected size's
    training trajectory: the session's model.nc of every size (which size is selected is known
    only after selection; `params.n_hidden` pairs each file with its size). Gibbs needs none.
    """
    if config["statistics"]["sampler"] == "ptt":
        return get_model_files(wildcards)
    return []


def get_loglik_files(wildcards):
    return expand(
        results("{session}/hidden~{n_hidden}/loglik.nc"),
        session=wildcards.session,
        n_hidden=N_HIDDEN,
    )


def get_truth(wildcards):
    """The planted ground truth, for synthetic sessions only (empty otherwise)."""
    if SESSIONS.loc[wildcards.session, "source"] == "synthetic":
        return results(f"{wildcards.session}/truth.nc")
    return []


# ----------------------------------------------------------------------------- file sources
# `raster`, `nwb` and `spikes` rows name a user's file (`path=`, relative to the working
# directory). Their params are checked when the sheet is read (spikerbm.sessions: unknown keys,
# types, filter syntax; errors name the sheet line); whether the file exists is checked when a
# job needs it, so a missing file stops only its own session.
def _file_source_params(source):
    from spikerbm.sessions import check_file_sessions

    section = CONFIG_SCHEMA["properties"].get(source)
    return check_file_sessions(
        SESSIONS,
        source,
        config[source] if section else {},
        schema=section,
        path=config["sessions"],
    )


try:
    FILE_ROW_PARAMS = {
        source: _file_source_params(source) for source in ("raster", "nwb", "spikes")
    }
except ValueError as err:  # a bad row: one line, as above
    if not getattr(err, "user_facing", False):
        raise
    raise WorkflowError(str(err)) from None
NWB_SESSIONS = _alternation(sessions_of("nwb"))
SPIKES_FILE_SESSIONS = _alternation(sessions_of("spikes"))


def get_data_file(wildcards):
    """The user's file of a `raster`, `nwb` or `spikes` row (params `path=`), checked to exist
    (the error names the sheet line and where the file was looked for)."""
    from spikerbm.sessions import data_file

    return data_file(SESSIONS, wildcards.session, path=config["sessions"])


def _file_row_params(source, wildcards):
    """The row's merged params without `path` (the file is the job's input)."""
    params = FILE_ROW_PARAMS[source][wildcards.session]
    return {key: params[key] for key in sorted(params) if key != "path"}


def get_nwb_extract_params(wildcards):
    """The `nwb:` section overridden by the row: area, unit_electrode, unit_id, filters,
    areas, epochs."""
    return _file_row_params("nwb", wildcards)


def get_spikes_import_params(wildcards):
    """The `spikes:` section overridden by the row: epochs."""
    return _file_row_params("spikes", wildcards)


def get_vbn_python(wildcards):
    """`vbn.python`: a command on PATH (`python`), an absolute path, or a path relative to the
    working directory; when that does not exist, relative to the spikerbm checkout this
    workflow belongs to (where scripts/setup_vbn_env.sh builds the default .venv-vbn).
    """
    from pathlib import Path

    python = str(config["vbn"]["python"])
    if "/" not in python or Path(python).is_absolute() or Path(python).exists():
        return python
    beside = Path(workflow.basedir).parent / python
    return str(beside) if beside.exists() else python


def get_vbn_args(wildcards):
    """Shell-quoted `python -m spikerbm.vbn extract` arguments of a vbn row (validated at DAG
    time)."""
    from spikerbm.vbn_cli import extract_cli_args

    return shlex.join(
        extract_cli_args(
            config["vbn"], session_params(wildcards), session_id=wildcards.session
        )
    )


def get_final_outputs(wildcards):
    per_session = [
        results("{session}/raster.nc"),
        results("{session}/selected.nc"),
        results("{session}/figures/fig2_loglik.png"),
        results("{session}/statistics.nc"),
        results("{session}/figures/fig3_statistics.png"),
        results("{session}/figures/fig3_equilibration.png"),
        results("{session}/figures/fig3_raster.png"),
        results("{session}/couplings.nc"),
        results("{session}/figures/fig4_couplings.png"),
        results("{session}/figures/fig5_areas.png"),
        results("{session}/figures/fig4_coupling_structure.png"),
        results("{session}/figures/fig4_hidden_units.png"),
        results("{session}/dynamics.nc"),
        results("{session}/figures/fig6_dynamics.png"),
        results("{session}/summary.html"),
    ]
    tables = expand(results("tables/{table}.html"), table=TABLE_NAMES)
    if int(config["train"].get("replicas", 1)) > 1:  # reproducibility across replicas
        per_session.append(results("{session}/figures/fig4_replicas.png"))
        tables.append(results("tables/couplings_replicas.html"))
    return (
        expand(per_session, session=SESSIONS.index)
        + tables
        + get_atlas_baseline_outputs()
    )


# ----------------------------------------------------------------------------- HTML report
# `snakemake --report`: category = pipeline stage (README stage numbers), subcategory = the
# figure or table, labels = session and hidden size(s) (read from the artifact at report time).
REPORT_STAGE = {
    "findings": "Findings (read first)",
    "loglik": "Stage 4: log-likelihood and model selection",
    "statistics": "Stage 5: generated vs real statistics",
    "couplings": "Stage 6: effective couplings",
    "dynamics": "Stage 7: relaxation dynamics",
    "summary": "Stage 8: per-session summary",
}
TABLE_NAMES = [
    "findings",
    "selected_models",
    "statistics_scores",
    "couplings_summary",
    "dynamics_summary",
]


def report_labels(source):
    """`labels=` for report(): the session and the hidden size of the model the entry shows.

    `source` names the input whose netCDF attribute `n_hidden` is the selected model's size;
    `None` labels the entry with every size of `train.n_hidden` (Fig. 2, one curve per size).
    One label, not two: the report turns a second label with two values, each on half of the
    entries, into a toggle that fails unless every combination exists (e.g. two sessions whose
    selected sizes differ).
    """

    def get_report_labels(wildcards, input):
        if source is None:
            hidden = ", ".join(str(n) for n in N_HIDDEN) + " (all sizes)"
        else:
            from spikerbm.io import read_attrs

            hidden = f"{int(read_attrs(input[source])['n_hidden'])} (selected)"
        return {REPORT_LABEL: f"{wildcards.session}, {hidden}"}

    return get_report_labels


REPORT_LABEL = "session, hidden units"
TABLE_LABELS = {REPORT_LABEL: "all sessions, all sizes"}


def get_table_inputs(wildcards):
    """The per-session artifacts the cross-session report tables are built from (the findings
    table from each session's summary.tsv, where the summary job wrote them), and the atlas
    when it is on (its findings: spikerbm.findings.atlas_findings)."""
    tables = {
        name: expand(results(f"{{session}}/{name}.nc"), session=SESSIONS.index)
        for name in ("selected", "statistics", "couplings", "dynamics")
    }
    tables["summary"] = expand(results("{session}/summary.tsv"), session=SESSIONS.index)
    if ATLAS_ENABLED:
        tables["atlas"] = results("atlas/atlas.nc")
    return tables


# ----------------------------------------------------------------------------- issue 20
# Pairwise maximum-entropy baseline (rules pairwise, per session, and compare_models, over all)
# and the cross-session area atlas (rules atlas, fig_atlas); each switched by its `enabled` key.
PAIRWISE_ENABLED = bool(config["pairwise"]["enabled"])
ATLAS_ENABLED = bool(config["atlas"]["enabled"])
if ATLAS_ENABLED and config["atlas"]["ccf_level"] is not None:
    import importlib.util

    if importlib.util.find_spec("iblatlas") is None:  # fail before any job runs
        raise ValueError(
            f"atlas.ccf_level = {config['atlas']['ccf_level']!r} groups areas with the Allen "
            "structure table shipped by iblatlas, which is not installed: run `make setup` "
            "(or pip install --no-deps iblatlas==1.3.0), or set atlas.ccf_level: null"
        )
REPORT_STAGE_BASELINE = "Stage 9: pairwise maximum-entropy baseline"
REPORT_STAGE_ATLAS = "Stage 10: cross-session area atlas"
#: keys of `statistics:` that score generated samples (the pairwise model's as the RBM's)
SCORING_KEYS = [
    "n_samples",
    "n_triplets",
    "heff_bins",
    "energy_bins",
    "tau_factor",
    "z_max",
]


def pairwise_report_labels(wildcards):
    """Report label of the baseline's per-session figure (it has no hidden units)."""
    return {REPORT_LABEL: f"{wildcards.session}, pairwise model (no hidden units)"}


def get_pairwise_params(wildcards):
    """The pairwise section, and the scoring keys of `statistics` (same subsets and sample
    counts as the RBM's statistics)."""
    return {
        "pairwise": _section("pairwise", drop=["enabled"]),
        "statistics": _section("statistics", only=sorted(SCORING_KEYS)),
    }


def get_atlas_params(wildcards):
    return _section("atlas", drop=["enabled"])


def get_atlas_inputs(wildcards):
    """couplings.nc of every session, and pairwise.nc when the baseline is on (its J_ij get the
    same atlas, side by side)."""
    inputs = {
        "couplings": expand(results("{session}/couplings.nc"), session=SESSIONS.index)
    }
    if PAIRWISE_ENABLED:
        inputs["pairwise"] = expand(
            results("{session}/pairwise.nc"), session=SESSIONS.index
        )
    return inputs


def get_comparison_inputs(wildcards):
    """Per session: the raster (test bins), the RBM's selected.nc, statistics.nc and
    couplings.nc, and the baseline's pairwise.nc and pairwise_statistics.nc."""
    return {
        name: expand(results(f"{{session}}/{name}.nc"), session=SESSIONS.index)
        for name in (
            "raster",
            "selected",
            "statistics",
            "couplings",
            "pairwise",
            "pairwise_statistics",
        )
    }


def get_atlas_baseline_outputs():
    """Final outputs of the baseline and the atlas (none when switched off)."""
    out = []
    if PAIRWISE_ENABLED:
        out += expand(
            results("{session}/figures/fig3_pairwise_statistics.png"),
            session=SESSIONS.index,
        )
        out += [
            results("tables/model_comparison.html"),
            results("figures/pairwise_vs_rbm.png"),
        ]
    if ATLAS_ENABLED:
        out += [
            results("atlas/atlas.nc"),
            results("figures/atlas.png"),
            results("tables/atlas_area_pairs.html"),
            results("tables/atlas_within_across.html"),
        ]
    return out


def check_cluster_profile():
    """Stop before submitting anything when the workstation profile (profiles/default, layered
    automatically as the workflow profile) is active under a cluster executor: its `gpu=1` cap
    would allow one GPU job on the whole cluster and its default resources would replace the
    cluster profile's. Called from `onstart:` (the executor is known only then)."""
    if workflow.non_local_exec and "gpu" in workflow.resource_settings.resources:
        raise ValueError(
            "a cluster executor runs with a global `--resources gpu=...` limit, which the "
            "workstation profile profiles/default sets (Snakemake layers it on top of "
            "--profile automatically): run with `--profile profiles/slurm --workflow-profile "
            "none` (README, section Cluster)"
        )


onstart:
    check_cluster_profile()
