"""DAG inspection: --rulegraph and --dag rendered by Graphviz, and the dry run at paper scale."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from conftest import REPO, SNAKEMAKE, snakemake

pytestmark = pytest.mark.workflow

SESSIONS = (
    "session_id\tsource\tparams\n"
    "dag-a\tsynthetic\tseed=1\n"
    "dag-b\tsynthetic\tseed=2\n"
)
RULES = ["synthetic_session", "binarize", "train", "loglik", "select_model", "statistics",
         "couplings", "dynamics", "fig_loglik", "fig_statistics", "fig_couplings",
         "fig_dynamics", "summary", "report_tables", "pairwise", "compare_models", "atlas",
         "fig_atlas", "all"]
#: rules with one job for the whole run
AGGREGATES = ["report_tables", "compare_models", "atlas", "fig_atlas", "all"]


def _dag_scale():
    spec = importlib.util.spec_from_file_location("dag_scale", REPO / "benchmarks" / "dag_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _render(dot_text: str) -> str:
    proc = subprocess.run(["dot", "-Tsvg"], input=dot_text, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="Graphviz `dot` is not installed (apt-get install graphviz)")
def test_rulegraph_and_dag_render_with_graphviz(workflow_dir):
    wf = workflow_dir(sessions=SESSIONS)
    rulegraph = snakemake(wf, "--rulegraph")
    assert rulegraph.returncode == 0, rulegraph.stderr[-3000:]
    svg = _render(rulegraph.stdout)
    labels = set(re.findall(r"<text[^>]*>([^<]+)</text>", svg))
    assert set(RULES) <= labels, set(RULES) - labels
    assert svg.count('class="node"') == len(RULES)

    dag = snakemake(wf, "--dag")
    assert dag.returncode == 0, dag.stderr[-3000:]
    svg = _render(dag.stdout)
    # one node per job: 2 sessions x 2 hidden sizes, per-session jobs, the aggregates
    n_models = 2 * 2
    per_session = len(RULES) - 2 - len(AGGREGATES)  # all rules but train, loglik, aggregates
    assert svg.count('class="node"') == 2 * per_session + 2 * n_models + len(AGGREGATES)
    trains = re.findall(r"<text[^>]*>n_hidden: (\d+)</text>", svg)
    assert sorted(set(trains)) == ["3", "5"]


def test_scale_sheet_dry_run_needs_no_vbn_data(tmp_path):
    """The benchmark's VBN sheet plans every job without allensdk, network or data."""
    dag_scale = _dag_scale()
    config = dag_scale.write_scale_workflow(tmp_path / "wf", n_sessions=7, n_hidden=3)
    seconds, jobs, out = dag_scale.dry_run(tmp_path / "wf", config, profile=None)
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$",
                                                   out.split("Job stats:", 1)[1], re.M)}
    per_session = ["vbn_extract", "binarize", "select_model", "statistics", "couplings",
                   "dynamics", "fig_loglik", "fig_statistics", "fig_couplings", "fig_dynamics",
                   "summary", "pairwise", "fig_replicas"]  # vbn.yaml: train.replicas 4
    expected = {r: 7 for r in per_session} | {"train": 21, "loglik": 21, "report_tables": 1,
                                               "compare_models": 1, "atlas": 1, "fig_atlas": 1,
                                               "replica_table": 1, "all": 1}
    assert counts == expected | {"total": sum(expected.values())} and jobs == counts["total"]
    assert seconds < 60
    with pytest.raises(ValueError, match="n_sessions=0"):
        dag_scale.sessions_sheet(0)


def test_slurm_profile_groups_small_jobs_in_dry_run(workflow_dir):
    wf = workflow_dir(sessions=SESSIONS)
    start = time.perf_counter()
    proc = snakemake(wf, "-n", "--profile", "profiles/slurm", "--workflow-profile", "none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.perf_counter() - start < 120
    assert proc.stdout.count("Group job data") + proc.stderr.count("Group job data") == 2
    assert "Group job figures" in proc.stdout + proc.stderr


NO_TORCH = """\
import sys


class _NoTorch:
    \"\"\"Test-only import hook: any import of torch fails loudly.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"{name} imported during a dry run (blocked by the test)")
        return None


sys.meta_path.insert(0, _NoTorch())
"""


def test_dry_run_does_not_import_torch(workflow_dir, tmp_path):
    """`snakemake -n` builds the DAG (config checks, synthetic and vbn row validation, input
    functions) with torch unimportable: a user can inspect the plan on a machine without it."""
    blocker = tmp_path / "no_torch"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(NO_TORCH)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(blocker), *filter(None, [os.environ.get("PYTHONPATH")])]))
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True,
                           text=True)
    assert probe.returncode != 0 and "blocked by the test" in probe.stderr  # the hook works
    sheet = (SESSIONS + "dag-v\tvbn\tecephys_session_id=1044385384;epochs=active,passive\n"
             "dag-n\tnwb\tpath=data/rec.nwb;filters=quality == good;epochs=trials\n"
             "dag-s\tspikes\tpath=data/spikes.nc\n")
    wf = workflow_dir(sessions=sheet)
    (wf / "data").mkdir()
    for name in ("rec.nwb", "spikes.nc"):  # existence is what the DAG checks
        (wf / "data" / name).write_bytes(b"")
    proc = subprocess.run([SNAKEMAKE, "-n", "--cores", "1"], cwd=wf, env=env,
                          capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert "blocked by the test" not in text
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$",
                                                   proc.stdout.split("Job stats:", 1)[1], re.M)}
    assert counts["synthetic_session"] == 2 and counts["vbn_extract"] == 1
    assert counts["nwb_extract"] == counts["spikes_import"] == 1 and counts["binarize"] == 5
    assert counts["train"] == 5 * 2  # sessions x hidden sizes (TINY_CONFIG)
