"""The real workflow: lint, dry run, and a tiny end-to-end CPU run in a temporary folder."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import REPO, TINY_CONFIG, copy_workflow, snakemake
from PIL import Image

pytestmark = pytest.mark.workflow

BIN = Path(sys.executable).parent


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Parse snakemake's 'Job stats' table into {rule: count}."""
    table = dry_run_output.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def test_lint_and_format_are_clean():
    lint = snakemake(REPO, "--lint")
    assert lint.returncode == 0 and "good condition" in lint.stdout + lint.stderr, lint.stdout
    fmt = subprocess.run([str(BIN / "snakefmt"), "--check", "Snakefile", "workflow"], cwd=REPO,
                         capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    ruff = subprocess.run([str(BIN / "ruff"), "check", "src", "tests", "scripts", "benchmarks"],
                          cwd=REPO, capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout


def test_dry_run_of_default_config_lists_every_job(workflow_dir):
    wf = workflow_dir(tiny=False)
    proc = snakemake(wf, "-n", "--cores", "2")
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    cfg = yaml.safe_load((wf / "config" / "config.yaml").read_text())
    n_sessions = len((wf / "config" / "sessions.tsv").read_text().strip().splitlines()) - 1
    n_models = n_sessions * len(cfg["train"]["n_hidden"])
    per_session = ["synthetic_session", "binarize", "select_model", "fig_loglik", "statistics",
                   "fig_statistics", "couplings", "fig_couplings", "dynamics", "fig_dynamics",
                   "summary"]
    expected = {rule: n_sessions for rule in per_session} | {"train": n_models,
                                                              "loglik": n_models, "all": 1}
    assert counts == expected | {"total": sum(expected.values())}


SESSIONS = (
    "session_id\tsource\tparams\n"
    "tiny-a\tsynthetic\tseed=1\n"
    "tiny-b\tsynthetic\tseed=2;n_neurons=21\n"
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Run the whole workflow once on two tiny synthetic sessions (shared by the tests below)."""
    dest = copy_workflow(tmp_path_factory.mktemp("tiny") / "wf", sessions=SESSIONS)
    cfg = yaml.safe_load((dest / "config" / "config.yaml").read_text())
    proc = snakemake(dest, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return dest, cfg


def test_tiny_run_writes_every_artifact_with_provenance(tiny_run):
    wf, cfg = tiny_run
    n_hidden = cfg["train"]["n_hidden"]
    for session in ("tiny-a", "tiny-b"):
        res = wf / "results" / session
        files = ["spikes.nc", "truth.nc", "raster.nc", "loglik.nc", "selected.nc",
                 "statistics.nc", "couplings.nc", "dynamics.nc"]
        files += [f"hidden~{n}/{f}" for n in n_hidden for f in ("model.nc", "loglik.nc")]
        for name in files:
            ds = xr.open_dataset(res / name)
            for key in ("config", "seed", "spikerbm_version", "git_commit", "created_utc"):
                assert key in ds.attrs, f"{session}/{name} lacks provenance attr {key}"
            assert ds.attrs["session_id"] == session, name
            ds.close()
        for fig in ("fig2_loglik", "fig3_statistics", "fig4_couplings", "fig5_areas",
                    "fig6_dynamics"):
            png = res / "figures" / f"{fig}.png"
            assert png.stat().st_size > 10_000
            meta = json.loads(Image.open(png).text["Description"])  # provenance in the PNG
            assert meta["data"]["session_id"] == session and "config" in meta["data"], fig
        assert "<table" in (res / "summary.html").read_text()
        assert not list(res.rglob("*.tmp")), "temporary files left behind"
        assert not list(res.rglob("resume.nc")), "resume state left after success"


def test_tiny_run_contents_are_consistent(tiny_run):
    wf, cfg = tiny_run
    tr = cfg["train"]
    res = wf / "results" / "tiny-b"
    raster = xr.open_dataset(res / "raster.nc")
    assert raster["raster"].dtype == np.uint8 and raster.sizes["neuron"] <= 21
    assert set(np.unique(raster["raster"].values)) <= {0, 1}
    assert set(np.unique(raster["split"].values)) == {"train", "test"}
    # the two sessions differ (seeds and sizes come from the sheet)
    other = xr.open_dataset(wf / "results" / "tiny-a" / "raster.nc")
    assert other.sizes["neuron"] == cfg["synthetic"]["n_neurons"] != raster.sizes["neuron"]
    model = xr.open_dataset(res / f"hidden~{tr['n_hidden'][0]}" / "model.nc")
    ckpt = model["checkpoint"].values
    assert len(ckpt) == tr["n_checkpoints"] and ckpt[0] == 0 and ckpt[-1] == tr["n_updates"]
    assert model["W"].shape == (tr["n_checkpoints"], raster.sizes["neuron"], tr["n_hidden"][0])
    assert model["chains"].shape == (tr["n_chains"], raster.sizes["neuron"])
    ll = xr.open_dataset(res / "loglik.nc")
    assert list(ll["n_hidden"].values) == tr["n_hidden"]
    sel = xr.open_dataset(res / "selected.nc")
    best = ll["ll_test"].where(np.isfinite(ll["ll_test"])).max().item()
    assert sel.attrs["ll_test"] == pytest.approx(best)
    assert int(sel.attrs["n_hidden"]) in tr["n_hidden"]
    stats = xr.open_dataset(res / "statistics.nc")
    assert int(stats.attrs["equilibrated"]) in (0, 1)
    dyn = xr.open_dataset(res / "dynamics.nc")
    assert dyn.attrs["ms_per_sweep"] > 0
    coup = xr.open_dataset(res / "couplings.nc")
    assert coup["J"].shape == (raster.sizes["neuron"],) * 2
    assert np.isfinite(coup.attrs["truth_pearson_J"])


def test_rerun_has_nothing_to_do_and_report_builds(tiny_run):
    wf, _ = tiny_run
    proc = snakemake(wf, "-n", "--cores", "1")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr
    rep = snakemake(wf, "--report", "report.html")
    assert rep.returncode == 0, rep.stderr[-3000:]
    text = (wf / "report.html").read_text(errors="replace")
    assert "fig2_loglik" in text and "summary" in text


def test_slurm_profile_maps_gpu_resources(workflow_dir):
    wf = workflow_dir()
    proc = snakemake(wf, "-n", "--profile", "profiles/slurm")
    assert proc.returncode == 0, proc.stderr[-3000:]
    blocks = proc.stdout.split("\nrule ")
    train = [b for b in blocks if b.startswith("train:")]
    assert len(train) == len(TINY_CONFIG["train"]["n_hidden"])  # one session in the sheet
    for block in train:
        res = re.search(r"resources: (.*)", block)[1]
        assert "gpu=1" in res and "slurm_partition=gpu" in res, res
