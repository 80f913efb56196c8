"""`source: raster` with files written by other tools (issue 18 item 3).

Each case is a netCDF file written the way xarray/netCDF4 users write them, read back through
the import's own path (``io.read_checked(path, raw=True)`` + ``validate_raster``, as
scripts/import_raster.py does); the workflow test runs the real ``import_raster`` rule on the
same kinds of files and on a real Steinmetz raster.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import REPO, snakemake

from spikerbm import binarize, io
from spikerbm.binarize import validate_raster

OPTS = dict(n_blocks=4, n_test_blocks=1, seed=5, session_id="mine")
#: The real Steinmetz rasters: shared/ beside the checkout (CI, /work/main) or one level up
#: (a worktree under /work/wt/).
STEINMETZ = next((p / "data" / "steinmetz2019" for p in (REPO.parent / "shared",
                                                         REPO.parent.parent / "shared")
                  if (p / "data" / "steinmetz2019").is_dir()), None)


def raster(n_bins=97, n_neurons=5, *, seed=0, bin_ms=10.0) -> xr.Dataset:
    values = (np.random.default_rng(seed).random((n_bins, n_neurons)) < 0.3).astype(np.uint8)
    values[:3] = 1  # every neuron fires in the first bins (no train-silent neuron to drop)
    values[-3:] = 1
    return xr.Dataset(
        {"raster": (("time_bin", "neuron"), values)},
        coords={"unit_id": ("neuron", np.arange(31, 31 + n_neurons)),
                "area": ("neuron", np.array(["VISp", "VISp", "CA1", "CA1", "LGd"][:n_neurons]))},
        attrs={"bin_ms": bin_ms},
    )


def write(ds: xr.Dataset, path: Path, encoding: dict | None = None) -> Path:
    ds.to_netcdf(path, encoding=encoding or {})  # plain xarray, as a user's tool writes it
    return path


def load(path: Path) -> xr.Dataset:
    """What scripts/import_raster.py does with the user's file."""
    ds = io.read_checked(path, rebuild_hint=False, raw=True)
    with io.about_input(path, rebuild_hint=False):
        return validate_raster(ds, **OPTS)


def with_time(ds: xr.Dataset, values, units: str | None) -> xr.Dataset:
    ds = ds.assign_coords(time=("time_bin", np.asarray(values, dtype=np.float64)))
    if units is not None:
        ds["time"].attrs["units"] = units
    return ds


# ----------------------------------------------------------------------- CF time units
@pytest.mark.parametrize(("units", "scale", "origin"), [
    ("seconds since 2024-05-01", 1.0, "2024-05-01"),          # xarray decoded this to 1.7e18
    ("seconds since session start", 1.0, "session start"),     # xarray called it corrupted
    ("milliseconds since 2024-05-01 10:00:00", 1e-3, "2024-05-01 10:00:00"),
    ("ms", 1e-3, None),
    ("s", 1.0, None),                                          # control: worked before
])
def test_cf_time_units_are_read_as_the_seconds_they_mean(tmp_path, units, scale, origin):
    ds = raster()
    t_s = 12.5 + np.arange(97) * 0.010
    path = write(with_time(ds, t_s / scale, units), tmp_path / "r.nc")
    out = load(path)
    np.testing.assert_allclose(out["time"].values, t_s, rtol=0, atol=1e-9)
    assert out["time"].dtype == np.float64 and out["time"].attrs["units"] == "s"
    assert out["time"].attrs.get("origin") == origin


def test_time_unit_that_is_not_a_time_names_the_attribute(tmp_path):
    path = write(with_time(raster(), np.arange(97), "bins"), tmp_path / "r.nc")
    with pytest.raises(io.InputError) as err:
        load(path)
    msg = str(err.value)
    assert "units = 'bins'" in msg and "'time'" in msg and "'s'" in msg and "\n" not in msg


def test_decoded_datetimes_in_memory_are_refused_with_the_fix():
    ds = raster().assign_coords(
        time=("time_bin", np.datetime64("2024-05-01") + np.arange(97) * np.timedelta64(10, "ms")))
    with pytest.raises(ValueError, match=r"datetimes.*raw=True.*decode_times=False"):
        validate_raster(ds, **OPTS)


# ----------------------------------------------------------------------- _FillValue
@pytest.mark.parametrize("fill", [0, 1, 255])
def test_fill_value_never_masks_zero_one_data(tmp_path, fill):
    ds = raster()
    path = write(ds, tmp_path / "r.nc", {"raster": {"_FillValue": fill, "dtype": "uint8"}})
    out = load(path)
    assert out["raster"].dtype == np.uint8
    np.testing.assert_array_equal(out["raster"].values, ds["raster"].values)


def test_fill_value_in_the_data_is_named_as_missing(tmp_path):
    ds = raster()
    values = ds["raster"].values.astype(np.uint8)
    values[10:13, 2] = 255
    ds["raster"].values = values
    path = write(ds, tmp_path / "r.nc", {"raster": {"_FillValue": 255}})
    with pytest.raises(io.InputError) as err:
        load(path)
    msg = str(err.value)
    assert "3 entries equal to its _FillValue 255" in msg and "missing" in msg


def test_masked_float_raster_names_the_missing_values():
    ds = raster()
    masked = ds["raster"].astype(np.float32).where(ds["raster"] != 0)  # what masking made of it
    masked.encoding["_FillValue"] = 0
    with pytest.raises(ValueError, match=r"missing \(NaN\).*_FillValue = 0.*raw=True"):
        validate_raster(ds.assign(raster=masked), **OPTS)


# ----------------------------------------------------------------------- list attributes
@pytest.mark.parametrize(("written", "expected"), [
    ([101, 102], [101, 102]),      # comes back as an int array
    ([101], [101]),                # comes back as a numpy scalar
    ("[101, 102]", [101, 102]),    # JSON text (spikerbm's own form)
])
def test_list_attributes_in_every_form_netcdf_returns(tmp_path, written, expected):
    ds = raster()
    ds["raster"].values[:, 4] = 0  # one train-silent neuron, appended to the given list
    ds.attrs.update(dropped_units=written, epochs=["active", "passive"])
    out = load(write(ds, tmp_path / "r.nc"))
    assert json.loads(out.attrs["dropped_units"]) == [*expected, 35]
    assert json.loads(out.attrs["epochs"]) == ["active", "passive"]


@pytest.mark.parametrize(("written", "piece"), [
    ([1.5, 2.5], "'dropped_units' = array([1.5, 2.5]) is not a list of integers"),
    ("[101, oops]", "'dropped_units' = '[101, oops]' is not valid JSON"),
])
def test_bad_list_attribute_names_it_and_the_expected_form(tmp_path, written, piece):
    ds = raster().assign_attrs(dropped_units=written)
    with pytest.raises(io.InputError) as err:
        load(write(ds, tmp_path / "r.nc"))
    assert piece in str(err.value) and "JSON text ('[101, 102]')" in str(err.value)


# ----------------------------------------------------------------------- spacing and gaps
def test_segments_are_logged_with_count_shortest_and_longest(tmp_path, caplog):
    # three runs of contiguous 10 ms bins (40, 7 and 50 bins) separated by gaps; time jitter of
    # 1e-6 s (1e-4 of a bin) stays inside the tolerance
    t = np.concatenate([np.arange(40) * 0.01, 2.0 + np.arange(7) * 0.01,
                        5.0 + np.arange(50) * 0.01])
    t += np.random.default_rng(1).uniform(-1e-6, 1e-6, t.size)
    assert 1e-6 < binarize.TIME_RTOL * 0.01
    with caplog.at_level(logging.INFO, logger="spikerbm.binarize"):
        load(write(with_time(raster(), t, "s"), tmp_path / "r.nc"))
    assert ("97 bins in 3 contiguous segment(s)" in caplog.text
            and "shortest 7 bins (0.07 s), longest 50 bins (0.5 s)" in caplog.text), caplog.text


def test_spacing_shorter_than_bin_ms_is_an_error(tmp_path):
    # bins 10 ms apart declared as 20 ms bins: a wrong bin_ms, not a gap
    ds = with_time(raster(bin_ms=20.0), np.arange(97) * 0.01, "s")
    with pytest.raises(io.InputError) as err:
        load(write(ds, tmp_path / "r.nc"))
    msg = str(err.value)
    assert "0.01 s apart, less than bin_ms = 20 ms" in msg and "tolerance 0.001" in msg


@pytest.mark.skipif(STEINMETZ is None, reason="shared/data/steinmetz2019 not found")
def test_real_steinmetz_raster_imports_and_reports_its_trials(caplog):
    path = STEINMETZ / "steinmetz_cori_20161214_s1.nc"
    with caplog.at_level(logging.INFO, logger="spikerbm.binarize"):
        out = load(path)
    assert out.sizes["time_bin"] == 114 * 40
    assert ("4560 bins in 114 contiguous segment(s)" in caplog.text
            and "shortest 40 bins (0.4 s), longest 40 bins (0.4 s)" in caplog.text)


# ----------------------------------------------------------------------- the rule, for real
@pytest.mark.workflow
def test_import_raster_rule_reads_real_world_files(workflow_dir, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    t = 3.0 + np.arange(97) * 0.01
    cases = {
        "cf-date": write(with_time(raster(), t, "seconds since 2024-05-01"), files / "a.nc"),
        "cf-session": write(with_time(raster(), t, "seconds since session start"),
                            files / "b.nc"),
        "fill-zero": write(raster(), files / "c.nc", {"raster": {"_FillValue": 0}}),
        "list-attr": write(raster().assign_attrs(dropped_units=[101, 102]), files / "d.nc"),
    }
    rows = "".join(f"{name}\traster\tpath={path}\n" for name, path in cases.items())
    if STEINMETZ is not None:
        rows += f"steinmetz\traster\tpath={STEINMETZ / 'steinmetz_cori_20161214_s1.nc'}\n"
    wf = workflow_dir(sessions="session_id\tsource\tparams\n" + rows)
    names = [line.split("\t")[0] for line in rows.splitlines()]
    proc = snakemake(wf, "--cores", "1", *(f"results/{n}/raster.nc" for n in names))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("cf-date", "cf-session"):
        np.testing.assert_allclose(io.read_netcdf(wf / f"results/{name}/raster.nc")["time"], t)
    zero = io.read_netcdf(wf / "results/fill-zero/raster.nc")
    np.testing.assert_array_equal(zero["raster"].values, raster()["raster"].values)
    listed = io.read_netcdf(wf / "results/list-attr/raster.nc")
    assert json.loads(listed.attrs["dropped_units"]) == [101, 102]
    if STEINMETZ is not None:
        text = (wf / "results/logs/import_raster/steinmetz.log").read_text()
        assert "4560 bins in 114 contiguous segment(s)" in text, text
