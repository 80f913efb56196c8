"""Bad configuration and sessions sheets are rejected before any job runs (issue 11, item 3).

Schema cases call ``snakemake.utils.validate`` on the real schema, the very call the Snakefile
makes at parse time (fast, so many cases); a representative set, the cross-key rules of
``workflow/rules/common.smk`` and the sheet checks go through the real ``snakemake -n``, which
must fail at parse time with the key in the message and without creating ``results/``.
(tests/test_config.py covers more bad session ids and values.)
"""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO, snakemake

# (skipped, not failed, where Snakemake is not installed, e.g. `pytest -m cuda` on a GPU box)
WorkflowError = pytest.importorskip("snakemake.exceptions").WorkflowError
validate = pytest.importorskip("snakemake.utils").validate

pytestmark = pytest.mark.reliability

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def _with(path: tuple[str, ...], value):
    cfg = copy.deepcopy(CONFIG)
    node = cfg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return cfg


SCHEMA_CASES = [
    # unknown keys, in every section and at the top level
    (("sede",), 1, "'sede' was unexpected"),
    *[((section, "bogus_key"), 1, "'bogus_key' was unexpected")
      for section in ("synthetic", "binarize", "train", "likelihood", "statistics",
                      "couplings", "dynamics", "vbn")],
    (("vbn", "filters", "snr_min"), 1.0, "'snr_min' was unexpected"),
    # wrong types
    (("seed",), "abc", "'abc' is not of type 'integer'"),
    (("train", "n_hidden"), 16, "16 is not of type 'array'"),
    (("train", "n_hidden"), ["16"], "'16' is not of type 'integer'"),
    (("train", "centered"), "yes", "'yes' is not of type 'boolean'"),
    (("binarize", "bin_ms"), "20ms", "'20ms' is not of type 'number'"),
    (("statistics", "n_samples"), 1.5, "1.5 is not of type 'integer'"),
    (("device",), "gpu", "'gpu' is not one of ['auto', 'cpu', 'cuda']"),
    # out of range
    (("binarize", "bin_ms"), -20, "-20 is less than or equal to the minimum of 0"),
    (("binarize", "bin_ms"), 0, "0 is less than or equal to the minimum of 0"),
    (("synthetic", "bin_ms"), 0, "0 is less than the minimum of 1"),
    (("train", "n_chains"), 0, "0 is less than the minimum of 2"),
    (("statistics", "n_chains"), 0, "0 is less than the minimum of 4"),
    (("dynamics", "n_chains"), 0, "0 is less than the minimum of 1"),
    (("likelihood", "ais_chains"), 0, "0 is less than the minimum of 1"),
    (("train", "n_hidden"), [0], "0 is less than the minimum of 1"),
    (("train", "n_hidden"), [16, 16], "has non-unique elements"),
    (("train", "lr"), 0, "0 is less than or equal to the minimum of 0"),
    (("seed",), -1, "-1 is less than the minimum of 0"),
    (("synthetic", "hidden_activity"), 1.0, "1.0 is greater than or equal to the maximum of 1"),
]


@pytest.mark.parametrize(("path", "value", "problem"), SCHEMA_CASES,
                         ids=lambda x: ".".join(x) if isinstance(x, tuple) else None)
def test_schema_rejects_bad_value_naming_the_key(path, value, problem):
    with pytest.raises(WorkflowError) as err:
        validate(_with(path, value), str(SCHEMA))
    text = str(err.value)
    assert problem in text, text
    # the key: the section/key path of the offending instance or the unexpected key itself
    where = path[:-1] if "was unexpected" in problem else path
    assert f"On instance{''.join(f'[{k!r}]' for k in where)}" in text, text


def test_shipped_config_is_valid():
    validate(copy.deepcopy(CONFIG), str(SCHEMA))


def test_schema_holds_every_default_and_the_shipped_config_states_them():
    """Every key has its `default:` in the schema (the Snakefile validates with set_default), and
    config/config.yaml states exactly those defaults: a config file needs only what it changes."""
    filled: dict = {}
    validate(filled, str(SCHEMA), set_default=True)
    assert filled == CONFIG
    partial = {"train": {"n_hidden": [7]}, "results_dir": "runs/small"}
    validate(partial, str(SCHEMA), set_default=True)
    assert partial["train"] == {**CONFIG["train"], "n_hidden": [7]}
    assert partial["dynamics"] == CONFIG["dynamics"] and partial["results_dir"] == "runs/small"


@pytest.mark.parametrize("bad", ["", ".", "..", "a/../b", "./a", "a/", "a//b", "my results"])
def test_results_dir_must_be_a_plain_folder_path(bad):
    with pytest.raises(WorkflowError, match="does not match"):
        validate(_with(("results_dir",), bad), str(SCHEMA))


def _objects(node, where="schema"):
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield where, node
        for key, value in node.items():
            yield from _objects(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, f"{where}[{i}]")


@pytest.mark.parametrize("name", ["config.schema.yaml", "sessions.schema.yaml"])
def test_every_schema_object_forbids_unknown_keys(name):
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / name).read_text())
    objects = list(_objects(schema))
    assert len(objects) >= (10 if name.startswith("config") else 1)
    loose = [where for where, node in objects if node.get("additionalProperties") is not False]
    assert not loose, f"{name}: objects without additionalProperties: false: {loose}"


SHEET = "session_id\tsource\tparams\n"
PARSE_CASES = {
    "negative-bin-width": ({"binarize": {"bin_ms": -20}}, None,
                           ["binarize", "bin_ms", "-20"]),
    "zero-chains": ({"train": {"n_chains": 0}}, None, ["train", "n_chains", "minimum of 2"]),
    "unknown-key": ({"statistcs": {"n_samples": 10}}, None,
                    ["config/config.yaml: unknown key `statistcs`; allowed keys of the top "
                     "level: sessions,",
                     "did you mean `statistics`?"]),
    "wrong-type": ({"train": {"k": "ten"}}, None,
                   ["config/config.yaml: `train.k`: 'ten' is not of type 'integer' (train.k: "
                    "Gibbs sweeps"]),
    "test-blocks-vs-blocks": ({"binarize": {"n_blocks": 4, "n_test_blocks": 4}}, None,
                              ["binarize.n_test_blocks = 4 must be < binarize.n_blocks = 4"]),
    "checkpoints-vs-updates": ({"train": {"n_updates": 10, "n_checkpoints": 20}}, None,
                               ["train.n_checkpoints = 20 exceeds n_updates + 1 = 11"]),
    "tais-chains-vs-groups": ({"train": {"tais_chains": 55, "tais_groups": 10}}, None,
                              ["train.tais_chains = 55 must be a multiple of "
                               "train.tais_groups = 10", "e.g. train.tais_chains: 60"]),
    "early-stopping-without-tais": ({"train": {"tais_chains": 0, "patience": 300}}, None,
                                    ["train.patience = 300 (early stopping) needs the online "
                                     "log-likelihood", "train.patience: 0"]),
    "fit-range-vs-max-lag": ({"dynamics": {"max_lag_bins": 5, "fit_lag_range": [1, 8]}},
                             None, ["dynamics.fit_lag_range = [1, 8]",
                                    "dynamics.max_lag_bins = 5"]),
    "row-param-out-of-range": ({}, SHEET + "s1\tsynthetic\tn_neurons=-5\n",
                               ["session s1", "'n_neurons'", "-5 is less than the minimum of 4"]),
    "row-param-wrong-type": ({}, SHEET + "s1\tsynthetic\tduration_s=long\n",
                             ["session s1", "'duration_s'", "'long' is not of type 'number'"]),
    "row-param-unknown": ({}, SHEET + "s1\tsynthetic\tn_nerons=50\n",
                          ["unknown synthetic parameter(s) ['n_nerons']"]),
    "sheet-unknown-column": ({}, "session_id\tsource\tparams\tnotes\ns1\tsynthetic\t\tx\n",
                             ["config/sessions.tsv, line 1: unknown column(s) ['notes']"]),
    "duplicate-session-id": ({}, SHEET + "s1\tsynthetic\t\ns1\tsynthetic\tseed=2\n",
                             ["config/sessions.tsv, line 3 (session s1): session_id 's1' is "
                              "already used on line 2"]),
    "path-in-session-id": ({}, SHEET + "../../etc\tsynthetic\t\n",
                           ["'../../etc'", "is not allowed"]),
    "shell-in-session-id": ({}, SHEET + "s1;rm -rf ~\tsynthetic\t\n",
                            ["'s1;rm -rf ~'", "is not allowed"]),
}


@pytest.mark.workflow
@pytest.mark.parametrize("case", PARSE_CASES)
def test_snakemake_dry_run_fails_at_parse_time_naming_the_key(workflow_dir, case):
    overrides, sheet, expected = PARSE_CASES[case]
    wf = workflow_dir(overrides, sessions=sheet)
    proc = snakemake(wf, "-n", "--cores", "1")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-2000:]
    for piece in expected:
        assert piece in text, f"{piece!r} missing from:\n{text[-3000:]}"
    assert "Job stats" not in text  # no DAG was built: nothing was scheduled
    assert not (wf / "results").exists()
    # one line, not a traceback of our code: at most the one `File` line Snakemake adds for
    # where the error was raised (a sheet error showed 4 frames before)
    assert text.count('  File "') <= 1, text[-3000:]
