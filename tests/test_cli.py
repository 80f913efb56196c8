"""The `spikerbm` console script on a tiny trained run: every command, its outputs checked
against the API and the stage files, exit codes 0 / 1 (one line) / 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from model_run import N_NEURONS, UNIT_IDS

import spikerbm
from spikerbm import cli, io

SCRIPT = str(Path(sys.executable).with_name("spikerbm"))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def test_help_of_every_command():
    for cmd in ("", "info", "sample", "score", "couplings", "export", "import"):
        res = run(*([cmd] if cmd else []), "--help")
        assert res.returncode == 0 and "usage: spikerbm" in res.stdout, res.stderr


def test_info_and_score(tiny_model_run, tmp_path):
    res = run("info", tiny_model_run["selected"])
    assert res.returncode == 0, res.stderr
    assert "hidden units" in res.stdout and "(exact)" in res.stdout
    assert "CA1: 3" in res.stdout
    out = tmp_path / "score.tsv"
    res = run("score", tiny_model_run["model"], tiny_model_run["raster"], "--split", "test",
              "-o", out, "--per-bin", tmp_path / "bins.nc")
    assert res.returncode == 0, res.stderr
    header, row = out.read_text().splitlines()
    got = dict(zip(header.split("\t"), row.split("\t"), strict=True))
    ref = spikerbm.load_model(tiny_model_run["model"]).log_likelihood(tiny_model_run["raster"],
                                                                split="test")
    assert float(got["ll"]) == pytest.approx(ref.ll, rel=1e-5)
    assert got["log_z_method"] == "exact" and got["split"] == "test"
    bins = io.read_netcdf(tmp_path / "bins.nc")
    assert bins["p_active"].shape == (ref.n_samples, N_NEURONS)
    assert float(bins["log_p"].mean()) == pytest.approx(ref.ll, rel=1e-9)


def test_sample_with_clamp_and_ptt(tiny_model_run, tmp_path):
    out = tmp_path / "s.nc"
    res = run("sample", tiny_model_run["model"], "-n", 300, "--sweeps", 20, "--sampler", "ptt",
              "--clamp", f"{UNIT_IDS[2]}=1", "--seed", 4, "-o", out, "--quiet")
    assert res.returncode == 0, res.stderr
    assert "PTT swap acceptance" in res.stdout
    ds = io.read_netcdf(out)
    v = ds["samples"].values
    assert v.shape == (300, N_NEURONS) and np.all(v[:, 2] == 1)
    assert ds.attrs["sampler"] == "ptt" and "git_commit" in ds.attrs
    assert np.all(ds["ptt_acceptance"].values > 0)
    api = spikerbm.load_model(tiny_model_run["model"]).sample(
        300, sweeps=20, sampler="ptt", clamp={int(UNIT_IDS[2]): 1}, seed=4)
    assert np.array_equal(api["samples"].values, v)  # the CLI is the API


def test_couplings_export_import(tiny_model_run, tmp_path):
    res = run("couplings", tiny_model_run["selected"], "--neurons", "VISp", str(UNIT_IDS[8]),
              "-o", tmp_path / "c.nc", "--tsv", tmp_path / "c.tsv")
    assert res.returncode == 0, res.stderr
    ds = io.read_netcdf(tmp_path / "c.nc")
    ref = spikerbm.load_model(tiny_model_run["selected"]).couplings(
        neurons=["VISp", int(UNIT_IDS[8])])
    assert np.allclose(ds["J"].values, ref["J"].values)
    lines = (tmp_path / "c.tsv").read_text().splitlines()
    assert len(lines) == 1 + 10  # C(5, 2) pairs + header
    # export and import in this process (each start of the script imports torch: seconds)
    assert cli.main(["export", str(tiny_model_run["model"]), "-o", str(tmp_path / "m.h5"),
                     "--chains", "7"]) == 0
    assert cli.main(["import", str(tmp_path / "m.h5"), "-o", str(tmp_path / "imp" / "model.nc"),
                     "--raster", str(tiny_model_run["raster"])]) == 0
    back = spikerbm.load_model(tmp_path / "imp" / "model.nc", checkpoint="last")
    orig = spikerbm.load_model(tiny_model_run["model"], checkpoint="last")
    assert np.array_equal(back.rbm.W.numpy(), orig.rbm.W.numpy())
    assert list(back.unit_id) == list(UNIT_IDS)


def test_user_errors_are_one_line_with_status_1(tiny_model_run, tmp_path, capsys):
    cases = [
        (("info", tmp_path / "absent.nc"), "not found"),
        (("sample", tiny_model_run["selected"], "-n", 5, "-o", tmp_path / "x.nc", "--clamp", "5=1"),
         "unit id 5 is not a neuron"),
        (("sample", tiny_model_run["selected"], "-n", 5, "-o", tmp_path / "x.nc", "--clamp", "a=1"),
         "UNIT_ID=0 or UNIT_ID=1"),
        (("info", tiny_model_run["model"], "--checkpoint", "13"), "no checkpoint at update 13"),
        (("info", tiny_model_run["model"], "--checkpoint", "first"), "--checkpoint 'first'"),
        (("score", tiny_model_run["selected"], tiny_model_run["model"]), "'raster' variable"),
        (("import", tiny_model_run["model"], "-o", tmp_path / "y.nc"), "not an rbms archive"),
    ]
    res = run(*cases[0][0])  # the console script itself (each start imports torch: seconds)
    absent = tmp_path / "absent.nc"
    assert res.returncode == 1, res.stderr
    assert res.stderr == f"spikerbm: error: netCDF file not found: {absent}\n", res.stderr
    for args, text in cases:  # the same entry point, in this process
        capsys.readouterr()
        assert cli.main([str(a) for a in args]) == 1, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("spikerbm: error: "), lines
        assert text in lines[0], lines[0]
    assert not (tmp_path / "x.nc").exists() and not (tmp_path / "y.nc").exists()


def test_usage_errors_exit_2(tiny_model_run):
    for args in (("sample", tiny_model_run["selected"]), ("frobnicate",),
                 ("couplings", tiny_model_run["selected"], "-o", "x.nc", "--order", "4")):
        res = run(*args)
        assert res.returncode == 2 and "usage:" in res.stderr, res.stderr
