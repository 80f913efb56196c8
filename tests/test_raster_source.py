"""`source: raster`: validation of a user-supplied binarized raster, and the import rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from conftest import snakemake

from spikerbm import io
from spikerbm.binarize import split_arrays, validate_raster

OPTS = dict(n_blocks=5, n_test_blocks=2, seed=3, session_id="mine")


def user_raster(n_bins=103, n_neurons=7, *, seed=0, **attrs) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    values = (rng.random((n_bins, n_neurons)) < 0.2).astype(np.int64)
    ds = xr.Dataset(
        {"raster": (("time_bin", "neuron"), values)},
        coords={"unit_id": ("neuron", np.arange(11, 11 + n_neurons, dtype=np.int64)),
                "area": ("neuron", np.array(["V1"] * 4 + ["LGN"] * (n_neurons - 4)))},
        attrs={"bin_ms": 25.0, **attrs},
    )
    return ds


def test_valid_raster_is_completed_to_the_contract():
    ds = user_raster()
    out = validate_raster(ds, **OPTS)
    assert out["raster"].dtype == np.uint8 and out["raster"].dims == ("time_bin", "neuron")
    np.testing.assert_array_equal(out["raster"].values, ds["raster"].values)
    np.testing.assert_allclose(out["time"].values, np.arange(103) * 0.025)
    assert set(out["split"].values) == {"train", "test"}
    blocks = out["block"].values
    assert np.all(np.diff(blocks) >= 0) and set(blocks) == set(range(5))
    test_blocks = json.loads(out.attrs["test_blocks"])
    assert len(test_blocks) == 2
    np.testing.assert_array_equal(out["split"].values == "test", np.isin(blocks, test_blocks))
    np.testing.assert_allclose(out["rate_hz"].values, ds["raster"].values.mean(0) / 0.025)
    assert out.attrs["session_id"] == "mine" and out.attrs["bin_ms"] == 25.0
    assert out.attrs["n_blocks"] == 5 and out.attrs["n_test_blocks"] == 2
    assert json.loads(out.attrs["dropped_units"]) == []
    parts = split_arrays(out)
    assert parts["train"].shape[1] == 7
    assert parts["train"].shape[0] + parts["test"].shape[0] == 103


def test_given_split_is_kept_and_train_silent_neurons_dropped():
    ds = user_raster(n_bins=20, n_neurons=5, seed=1)
    split = np.array(["train"] * 12 + ["test"] * 8)
    values = ds["raster"].values.copy()
    values[:12, 2] = 0
    values[12:, 2] = 1  # neuron 13 fires only in test bins
    values[:, 1] = np.r_[np.ones(6), np.zeros(14)].astype(int)  # active in train only: kept
    values[:12, [0, 3, 4]] = 1
    ds["raster"].values = values
    ds = ds.assign_coords(split=("time_bin", split))
    out = validate_raster(ds, **OPTS)
    np.testing.assert_array_equal(out["split"].values, split)
    assert json.loads(out.attrs["dropped_units"]) == [13]
    np.testing.assert_array_equal(out["unit_id"].values, [11, 12, 14, 15])
    # a split stored as a data variable (not a coordinate) is used, not silently replaced
    as_var = validate_raster(ds.reset_coords("split"), **OPTS)
    np.testing.assert_array_equal(as_var["split"].values, split)


@pytest.mark.parametrize(
    ("mutate", "pieces"),
    [
        (lambda ds: ds.transpose("neuron", "time_bin"), ["dims", "('time_bin', 'neuron')"]),
        (lambda ds: ds.rename({"time_bin": "t"}), ["dims", "('time_bin', 'neuron')"]),
        (lambda ds: ds.assign(raster=ds["raster"] * 2), ["only 0 and 1", "[2]"]),
        (lambda ds: ds.assign(raster=ds["raster"].astype(float)), ["dtype float64", "uint8"]),
        (lambda ds: ds.drop_vars("unit_id"), ["missing coordinate 'unit_id'"]),
        (lambda ds: ds.drop_vars("area"), ["missing coordinate 'area'"]),
        (lambda ds: ds.rename({"raster": "spikes"}), ["no variable named 'raster'", "spikes"]),
        (lambda ds: ds.assign_attrs(bin_ms=-5), ["'bin_ms'", "-5"]),
        (lambda ds: ds.assign_coords(unit_id=("neuron", np.zeros(7, dtype=int))), ["unique"]),
        (lambda ds: ds.assign_coords(unit_id=("neuron", np.arange(7) + 0.5)), ["integers"]),
        (lambda ds: ds.assign_coords(split=("time_bin", np.full(103, "train"))),
         ["no 'test' bins"]),
        (lambda ds: ds.assign_coords(split=("time_bin", np.full(103, "val"))), ["'val'"]),
        (lambda ds: ds.assign_coords(time=("time_bin", np.arange(103)[::-1] * 0.025)),
         ["'time'", "strictly increasing"]),
    ],
)
def test_invalid_rasters_get_clear_errors(mutate, pieces):
    with pytest.raises(ValueError) as err:
        validate_raster(mutate(user_raster()), **OPTS)
    for piece in pieces:
        assert piece in str(err.value), str(err.value)


def test_missing_bin_ms_attribute():
    ds = user_raster()
    del ds.attrs["bin_ms"]
    with pytest.raises(ValueError, match="attribute 'bin_ms'.*missing"):
        validate_raster(ds, **OPTS)


def test_boolean_raster_accepted():
    ds = user_raster()
    out = validate_raster(ds.assign(raster=ds["raster"].astype(bool)), **OPTS)
    assert out["raster"].dtype == np.uint8


# ------------------------------------------------------------------ the rule, for real
@pytest.mark.workflow
def test_import_raster_rule_and_missing_file(workflow_dir, tmp_path):
    (tmp_path / "wf").mkdir(exist_ok=True)  # conftest's workflow_dir copies files into it
    path = tmp_path / "my raster.nc"
    io.write_netcdf(user_raster(n_bins=211), path)
    sessions = (f"session_id\tsource\tparams\nmine\traster\tpath={path}\n"
                f"gone\traster\tpath={tmp_path / 'nothere.nc'}\n")
    wf = workflow_dir(sessions=sessions)
    proc = snakemake(wf, "--cores", "1", "results/mine/raster.nc")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = io.read_netcdf(wf / "results/mine/raster.nc")
    assert out["raster"].shape == (211, 7) and out.attrs["session_id"] == "mine"
    assert out.attrs["seed"] >= 0 and "git_commit" in out.attrs
    proc = snakemake(wf, "-n", "--cores", "1", "results/gone/raster.nc")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "line 3 (session gone): raster: path=" in text
    assert "nothere.nc: binarized raster (netCDF) not found" in text


@pytest.mark.workflow
def test_synthetic_rule_and_unknown_row_parameter(workflow_dir, tmp_path):
    (tmp_path / "wf").mkdir(exist_ok=True)  # conftest's workflow_dir copies files into it
    sessions = "session_id\tsource\tparams\nsyn\tsynthetic\tseed=4;n_neurons=31\n"
    wf = workflow_dir(overrides={"synthetic": {"duration_s": 45}}, sessions=sessions)
    proc = snakemake(wf, "--cores", "1", "results/syn/raster.nc")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spikes = io.read_netcdf(wf / "results/syn/spikes.nc")
    truth = io.read_netcdf(wf / "results/syn/truth.nc")
    raster = io.read_netcdf(wf / "results/syn/raster.nc")
    assert spikes.sizes["unit"] == 31 and truth.sizes["neuron"] == 31
    assert raster.sizes["time_bin"] == 45 * 1000 // 20
    assert json.loads(truth.attrs["config"])["n_neurons"] == 31
    # a bad row stops the whole workflow when the sheet is read, whatever the target
    (wf / "config/sessions.tsv").write_text(sessions + "typo\tsynthetic\tn_neuron=31\n")
    proc = snakemake(wf, "-n", "--cores", "1", "results/syn/spikes.nc")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "line 3 (session typo): unknown synthetic parameter(s) ['n_neuron']" in text
    assert "n_neurons" in text
