"""Shared fixtures: a throw-away copy of the workflow with a tiny configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

#: Constant-rate SGD, the default training recipe until 2026-12-01 (now Adam 0.003 with a decay,
#: docs/benchmarks.md "The default recipe"): tests whose subject is not the optimizer and whose
#: expectations (rates, thresholds, seen values) were derived with it pin it, with their ``lr``.
SGD_RECIPE: dict[str, Any] = {"optimizer": "sgd", "lr_final": 1.0, "decay_start": 0.0}

#: Overrides that make every stage tiny (seconds on one core) while exercising the real code.
#: Training: SGD at lr 0.1 (SGD_RECIPE), whose expectations the workflow tests were derived
#: with; Adam at the default 0.003 moves a weight at most ~0.003 per update (0.18 in 60).
TINY_CONFIG: dict[str, Any] = {
    "device": "cpu",
    "synthetic": {"n_neurons": 24, "n_areas": 2, "duration_s": 240, "assemblies_per_area": 2,
                  "assembly_size": 6, "n_cross_assemblies": 1},
    "binarize": {"n_blocks": 6, "n_test_blocks": 2},
    "train": {"n_hidden": [3, 5], "n_updates": 60, "n_checkpoints": 5, "n_chains": 64,
              "batch_size": 64, "k": 5, "tais_chains": 64, "tais_groups": 8, "lr": 0.1,
              **SGD_RECIPE},
    "likelihood": {"ais_chains": 64, "ais_betas": 100, "ais_repeats": 2},
    "statistics": {"n_samples": 500, "n_chains": 100, "burn_in_sweeps": 100, "thin_sweeps": 2,
                   "n_triplets": 500},
    "couplings": {"min_area_neurons": 8, "quadrature_nodes": 20},
    "dynamics": {"max_lag_bins": 10, "max_lag_sweeps": 20, "n_chains": 50, "n_starts": 50,
                 "fit_lag_range": [1, 5]},
    "pairwise": {"refine_steps": 20, "refine_chains": 64, "ais_chains": 32, "ais_betas": 100,
                 "n_chains": 100, "burn_in_sweeps": 100, "thin_sweeps": 2},
    "atlas": {"min_area_neurons": 8, "n_resamples": 200},
}


def deep_update(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


#: A CPU run's GPU slots, as `make run` passes them (Makefile GPU_SLOTS): profiles/default's
#: gpu=1 is for the one GPU of a workstation and would run the train/loglik/pairwise jobs one
#: at a time on the 2 CPU cores of CI (the default workflow took ~2x its `make run` time).
#: Pass it after any targets: --resources takes every word that follows it.
CPU_GPU_SLOTS = ("--resources", "gpu=2")


def snakemake(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real snakemake in ``cwd``; return the completed process (never raises)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def copy_workflow(dest: Path, overrides: dict | None = None, sessions: str | None = None,
                  tiny: bool = True) -> Path:
    """Copy the workflow into ``dest`` with the tiny config (+ overrides) and a sessions sheet."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("workflow", "scripts", "config", "profiles", "envs"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest / name)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if tiny:
        cfg = deep_update(cfg, TINY_CONFIG)
    cfg = deep_update(cfg, overrides or {})
    (dest / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    if sessions is not None:
        (dest / "config" / "sessions.tsv").write_text(sessions)
    return dest


@pytest.fixture
def workflow_dir(tmp_path: Path) -> Callable[..., Path]:
    """Factory: copy the workflow into a temp folder with a tiny config (plus overrides)."""

    def make(overrides: dict | None = None, sessions: str | None = None,
             tiny: bool = True) -> Path:
        return copy_workflow(tmp_path / "wf", overrides, sessions, tiny)

    return make


@pytest.fixture(scope="session")
def tiny_base_run(tmp_path_factory) -> Path:
    """One complete tiny run of the workflow with one session, ``base`` (seed=1), shared by the
    reliability tests: read it or copy it, never modify it."""
    wf = copy_workflow(tmp_path_factory.mktemp("tiny_base") / "wf",
                       sessions="session_id\tsource\tparams\nbase\tsynthetic\tseed=1\n")
    proc = snakemake(wf, "--cores", "2", *CPU_GPU_SLOTS)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wf


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> Path:
    """The DEFAULT workflow (config/config.yaml and config/sessions.tsv as shipped, with
    ``device: cpu``) run once with ``--cores 2``, for the tests that need the default scale
    (the determinism test compares a network-blocked run of its own with it): read it, never
    modify it."""
    wf = copy_workflow(tmp_path_factory.mktemp("default") / "wf", {"device": "cpu"}, tiny=False)
    proc = snakemake(wf, "--cores", "2", *CPU_GPU_SLOTS, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return wf


@pytest.fixture(scope="session")
def tiny_model_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny trained session (raster, model.nc, loglik.nc, selected.nc; tests/model_run.py)."""
    from model_run import build_tiny_run

    return build_tiny_run(tmp_path_factory.mktemp("tiny-run") / "tiny")
