"""Deployment with `snakedeploy deploy-workflow`: the workflow runs as a Snakemake module from
another folder, with the config and profiles snakedeploy copies (README, "Deploying").

snakedeploy needs a repository source; the test deploys from a local copy of this one (its
local-path provider: the same copy of config/, profiles/ and LICENSE as for a GitHub URL, no
network). snakedeploy 0.17.1 writes a local source's module path relative to the deployment's
workflow/ folder, where nothing is; the test points it at the source's workflow/Snakefile, the
file `github("<owner>/spikerbm", path="workflow/Snakefile", tag=...)` names for a GitHub URL.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr
import yaml
from conftest import REPO, TINY_CONFIG, deep_update, snakemake

pytestmark = pytest.mark.workflow

SNAKEDEPLOY = Path(sys.executable).with_name("snakedeploy")
#: What a clone of the repository holds that a deployment uses (the package itself is
#: installed in the environment, as for any user).
SOURCE_PARTS = ("workflow", "scripts", "config", "profiles", "envs", "LICENSE", "README.md")


def test_snakedeploy_deployment_runs_as_a_module(tmp_path):
    source = tmp_path / "spikerbm"
    for name in SOURCE_PARTS:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, source / name)
    dest = tmp_path / "my-analysis"
    proc = subprocess.run([str(SNAKEDEPLOY), "deploy-workflow", str(source), str(dest),
                           "--branch", "main"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # snakedeploy copied the config (with its README), the profiles and the license
    for path in ("config/config.yaml", "config/README.md", "config/sessions.tsv",
                 "profiles/default/config.yaml", "profiles/slurm/config.yaml", "LICENSE"):
        assert (dest / path).is_file(), path
    snakefile = dest / "workflow" / "Snakefile"
    text = snakefile.read_text()
    assert re.search(r"^module \w+:", text, re.M) and "use rule * from" in text, text
    relative = '"workflow/Snakefile"'
    if relative in text:  # snakedeploy's local-path provider (see the module docstring)
        snakefile.write_text(text.replace(relative, f'"{source / "workflow" / "Snakefile"}"'))
    cfg_path = dest / "config" / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(deep_update(yaml.safe_load(cfg_path.read_text()),
                                                   TINY_CONFIG), sort_keys=False))

    dry = snakemake(dest, "-n", "--cores", "1")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "workflow specific profile profiles/default" in dry.stdout + dry.stderr
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$",
                                                   dry.stdout.split("Job stats:", 1)[1], re.M)}
    n_sessions = len((dest / "config" / "sessions.tsv").read_text().strip().splitlines()) - 1
    n_models = n_sessions * len(TINY_CONFIG["train"]["n_hidden"])
    assert counts["train"] == counts["loglik"] == n_models and counts["all"] == 1, counts
    assert counts["report_tables"] == 1 and counts["synthetic_session"] == n_sessions, counts
    assert counts["atlas"] == 1 and counts["pairwise"] == n_sessions, counts

    # scripts, schemas and environments resolve from the module: a real run of the data stage
    run = snakemake(dest, "--cores", "2", "results/synth-a/raster.nc", timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    with xr.open_dataset(dest / "results" / "synth-a" / "raster.nc") as raster:
        # the sheet's row sets the size; the deployment's config (TINY_CONFIG) the areas
        assert len(set(raster["area"].values)) == TINY_CONFIG["synthetic"]["n_areas"]
        assert raster.attrs["session_id"] == "synth-a"
    assert (dest / "results" / "logs" / "binarize" / "synth-a.log").is_file()
    assert not (source / "results").exists()  # nothing written into the workflow's source
