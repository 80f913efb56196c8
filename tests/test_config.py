"""Config and sessions-sheet validation through the real Snakefile (snakemake -n)."""

from __future__ import annotations

import pytest
from conftest import snakemake

pytestmark = pytest.mark.workflow


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        # one line: <config file>: `<key>`: <problem> (<key>: <the schema's description>)
        ("train", "k", -3,
         ["config/config.yaml: `train.k`: -3 is less than the minimum of 1 (train.k: "]),
        ("train", "lr", "fast",
         ["config/config.yaml: `train.lr`: 'fast' is not of type 'number'"]),
        (None, "device", "tpu",
         ["config/config.yaml: `device`: 'tpu' is not one of ['auto', 'cpu', 'cuda']"]),
        ("binarize", "epochs", 5,
         ["config/config.yaml: `binarize.epochs`: 5 is not valid", "(binarize.epochs: "]),
    ],
)
def test_bad_config_value_names_key_value_and_allowed(workflow_dir, section, key, value,
                                                      expected):
    override = {section: {key: value}} if section else {key: value}
    wf = workflow_dir(override)
    proc = snakemake(wf, "-n", "--cores", "1")
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    for piece in expected:
        assert piece in text, f"{piece!r} missing from:\n{text}"


def test_unknown_config_key_is_rejected(workflow_dir):
    wf = workflow_dir({"train": {"n_hiden": [4]}})
    proc = snakemake(wf, "-n", "--cores", "1")
    assert proc.returncode != 0
    assert "unknown key `train.n_hiden`" in proc.stdout + proc.stderr
    assert "did you mean `n_hidden`?" in proc.stdout + proc.stderr


def test_config_errors_name_every_config_file(workflow_dir):
    """The message names config/config.yaml, each --configfile and --config values: a typo
    may sit in any of them (new-user trial: `config: unknown key ...` named none)."""
    wf = workflow_dir()
    (wf / "config" / "extra.yaml").write_text("train:\n  n_hiden: [4]\n")
    proc = snakemake(wf, "-n", "--cores", "1", "--configfile", "config/extra.yaml",
                     "--config", "seed=3")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert ("config/config.yaml + config/extra.yaml + --config: unknown key `train.n_hiden`"
            in text), text[-2000:]


@pytest.mark.parametrize("bad_id", ["a/b", "..", "x..y", "a b", "a;rm", "$(id)", "-lead", "a|b"])
def test_bad_session_id_is_rejected_with_clear_message(workflow_dir, bad_id):
    wf = workflow_dir(sessions=f"session_id\tsource\tparams\n{bad_id}\tsynthetic\tseed=1\n")
    proc = snakemake(wf, "-n", "--cores", "1")
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert repr(bad_id) in text and "is not allowed" in text, text


def test_unknown_source_is_rejected(workflow_dir):
    wf = workflow_dir(sessions="session_id\tsource\tparams\ns1\tcsv\t\n")
    proc = snakemake(wf, "-n", "--cores", "1")
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "'csv'" in text and "synthetic" in text and "vbn" in text, text


def test_malformed_params_are_rejected(workflow_dir):
    wf = workflow_dir(sessions="session_id\tsource\tparams\ns1\tsynthetic\tseed\n")
    proc = snakemake(wf, "-n", "--cores", "1")
    assert proc.returncode != 0
    assert "'seed' is not key=value" in proc.stdout + proc.stderr


def test_duplicate_session_ids_are_rejected(workflow_dir):
    wf = workflow_dir(sessions="session_id\tsource\tparams\ns1\tsynthetic\t\ns1\tsynthetic\t\n")
    proc = snakemake(wf, "-n", "--cores", "1")
    assert proc.returncode != 0
    assert "line 3 (session s1): session_id 's1' is already used on line 2" in proc.stdout
