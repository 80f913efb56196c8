"""Corrupted inputs of every stage, through the real scripts and snakemake (issue 11, item 2).

One tiny complete run (session ``base``, fixture ``tiny_base_run``) is made once. Each case
copies its results into a new session of a second workflow copy, corrupts one input file of one
stage, deletes that stage's output and asks snakemake for it; all cases run in ONE
``snakemake -k`` call (one start-up, two cores). Each failing case must give: a non-zero job
exit reported by snakemake, exactly one ERROR line in the rule's log (no traceback) naming the
file, the problem and the fix, and no output or temporary file. ``docs/reliability.md`` lists
every case id (checked below).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import REPO, copy_workflow, snakemake

pytestmark = [pytest.mark.reliability, pytest.mark.workflow]

BASE_SHEET = "session_id\tsource\tparams\nbase\tsynthetic\tseed=1\n"
NH = 3  # the hidden size used by the per-model cases (tiny config: n_hidden [3, 5])


@dataclass(frozen=True)
class Case:
    """One bad input: which file, how it is corrupted, which rule must refuse it."""

    id: str
    rule: str
    file: str  # corrupted file, relative to results/{session}/ ("" = a user raster, see below)
    target: str  # output asked for, relative to results/{session}/
    log: str  # the rule's log, relative to results/logs/{rule}/
    corrupt: Callable[[Path], None]
    expect: tuple[str, ...]  # problem and fix substrings of the one error line
    fails: bool = True


def _load(path: Path) -> xr.Dataset:
    with xr.open_dataset(path) as ds:
        return ds.load()


def _rewrite(path: Path, ds: xr.Dataset) -> None:
    path.unlink()
    ds.to_netcdf(path)


def edit(fn: Callable[[xr.Dataset], xr.Dataset]) -> Callable[[Path], None]:
    return lambda path: _rewrite(path, fn(_load(path)))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _set(ds: xr.Dataset, name: str, index: tuple, value) -> xr.Dataset:
    arr = ds[name].values.copy()
    arr[index] = value
    return ds.assign({name: (ds[name].dims, arr, ds[name].attrs)})


def _area_blank(ds: xr.Dataset, dim: str) -> xr.Dataset:
    area = ds["area"].values.astype(object)
    area[2] = ""
    return ds.assign_coords(area=(dim, area))


def _drop_unit_spikes(ds: xr.Dataset, unit: int | None) -> xr.Dataset:
    keep = (ds["spike_unit"].values != unit) if unit is not None else np.zeros(
        ds.sizes["spike"], dtype=bool)
    return ds.isel(spike=np.flatnonzero(keep))


def _late_empty_epoch(ds: xr.Dataset) -> xr.Dataset:
    stop = float(ds["epoch_stop"].values[-1])
    return xr.Dataset(
        {"spike_time": ds["spike_time"], "spike_unit": ds["spike_unit"],
         "epoch_start": ("epoch", np.r_[ds["epoch_start"].values, stop + 10.0]),
         "epoch_stop": ("epoch", np.r_[ds["epoch_stop"].values, stop + 70.0])},
        coords={"unit_id": ds["unit_id"], "area": ds["area"],
                "epoch_name": ("epoch", [*ds["epoch_name"].values.astype(str), "late"])},
        attrs=ds.attrs)


def _silence_in_train(ds: xr.Dataset) -> xr.Dataset:
    arr = ds["raster"].values.copy()
    arr[ds["split"].values == "train", 4] = 0
    return ds.assign(raster=(ds["raster"].dims, arr))


def _user_raster(ds: xr.Dataset, kind: str) -> xr.Dataset:
    """A user raster (source: raster) made from base's raster.nc, then broken."""
    out = xr.Dataset({"raster": (("time_bin", "neuron"), ds["raster"].values)},
                     coords={k: (ds[k].dims, ds[k].values) for k in ("unit_id", "area", "time")},
                     attrs={"bin_ms": 20.0})
    if kind == "value-2":
        return _set(out, "raster", (5, 1), 2)
    if kind == "one-bin":
        return out.isel(time_bin=[0])
    if kind == "no-area":
        return out.drop_vars("area")
    if kind == "transposed":
        return out.transpose("neuron", "time_bin")
    raise ValueError(kind)


MODEL = f"hidden~{NH}/model.nc"
REBUILD = "delete it and rerun snakemake"
CASES = [
    # truncated netCDF: one per kind of input file
    Case("trunc-spikes", "binarize", "spikes.nc", "raster.nc", "{s}.log", truncate,
         ("cannot be read as netCDF", "truncated", REBUILD)),
    Case("trunc-raster", "train", "raster.nc", MODEL, f"{{s}}/hidden~{NH}.log", truncate,
         ("cannot be read as netCDF", REBUILD)),
    Case("trunc-model", "loglik", MODEL, f"hidden~{NH}/loglik.nc", f"{{s}}/hidden~{NH}.log",
         truncate, ("cannot be read as netCDF", REBUILD)),
    Case("trunc-selected", "statistics", "selected.nc", "statistics.nc", "{s}.log", truncate,
         ("cannot be read as netCDF", REBUILD)),
    Case("trunc-couplings", "fig_couplings", "couplings.nc", "figures/fig4_couplings.png",
         "{s}.log", truncate, ("cannot be read as netCDF", REBUILD)),
    Case("trunc-loglik", "select_model", f"hidden~{NH}/loglik.nc", "selected.nc", "{s}.log",
         truncate, ("cannot be read as netCDF", REBUILD)),
    Case("trunc-loglik-combined", "fig_loglik", "loglik.nc", "figures/fig2_loglik.png",
         "{s}.log", truncate, ("cannot be read as netCDF", REBUILD)),
    Case("trunc-statistics", "summary", "statistics.nc", "summary.html", "{s}.log", truncate,
         ("cannot be read as netCDF", REBUILD)),
    # wrong dims
    Case("dims-spikes", "binarize", "spikes.nc", "raster.nc", "{s}.log",
         edit(lambda d: d.rename_dims(spike="event")),
         ("'spike_time' has dims ('event',); expected ('spike',)", "rebuild the file")),
    Case("dims-raster", "train", "raster.nc", MODEL, f"{{s}}/hidden~{NH}.log",
         edit(lambda d: d.transpose("neuron", "time_bin")),
         ("'raster' has dims ('neuron', 'time_bin'); expected ('time_bin', 'neuron')",
          "transpose")),
    Case("dims-model", "loglik", MODEL, f"hidden~{NH}/loglik.nc", f"{{s}}/hidden~{NH}.log",
         edit(lambda d: d.assign(W=d["W"].transpose("checkpoint", "hidden", "neuron"))),
         ("parameter 'W' has dims ('checkpoint', 'hidden', 'neuron')", "rebuild")),
    Case("dims-selected-other-session", "dynamics", "selected.nc", "dynamics.nc", "{s}.log",
         edit(lambda d: d.isel(neuron=slice(0, 20))),
         ("20 neurons (visible units) but the session's raster has 24 neurons", "rebuild it")),
    # values outside {0, 1}
    Case("value-2-raster", "train", "raster.nc", MODEL, f"{{s}}/hidden~{NH}.log",
         edit(lambda d: _set(d, "raster", (7, 3), 2)),
         ("must contain only 0 and 1; found values [2]", "(counts > 0)")),
    Case("value-2-user-raster", "import_raster", "", "raster.nc", "{s}.log",
         lambda p: None, ("must contain only 0 and 1; found values [2]", "binarize counts")),
    # NaN parameters
    Case("nan-model", "loglik", MODEL, f"hidden~{NH}/loglik.nc", f"{{s}}/hidden~{NH}.log",
         edit(lambda d: _set(d, "W", (2, 0, 0), np.nan)),
         ("parameter 'W' has 1 NaN/inf value(s) at checkpoint(s) [", "corrupted: rebuild")),
    Case("nan-selected", "couplings", "selected.nc", "couplings.nc", "{s}.log",
         edit(lambda d: _set(d, "a", (1,), np.inf)),
         ("parameter 'a' has 1 NaN/inf value(s)", "corrupted: rebuild")),
    # empty epoch
    Case("epoch-zero-length", "binarize", "spikes.nc", "raster.nc", "{s}.log",
         edit(lambda d: d.assign(epoch_stop=d["epoch_start"])),
         ("epoch 'active' is empty or invalid", "epoch_stop > epoch_start")),
    Case("epoch-without-spikes", "binarize", "spikes.nc", "raster.nc", "{s}.log",
         edit(_late_empty_epoch),
         ("epoch 'late' ([250, 310) s) holds no spike of any unit", "same clock",
          "binarize.epochs")),
    # fewer neurons than a hidden size needs (decision: n_hidden <= N, docs/reliability.md)
    Case("fewer-neurons-than-hidden", "train", "raster.nc", MODEL, f"{{s}}/hidden~{NH}.log",
         edit(lambda d: d.isel(neuron=slice(0, 2))),
         ("2 neuron(s), fewer than the n_hidden = 3 hidden units", "lower train.n_hidden")),
    # a raster with one time bin
    Case("one-time-bin-raster", "train", "raster.nc", MODEL, f"{{s}}/hidden~{NH}.log",
         edit(lambda d: d.isel(time_bin=[0])),
         ("1 time bin(s) with split counts", "needs both train and test bins")),
    Case("one-time-bin-user-raster", "import_raster", "", "raster.nc", "{s}.log",
         lambda p: None, ("only 1 time bins for n_blocks = 6", "lower n_blocks")),
    # silent neurons
    Case("all-silent", "binarize", "spikes.nc", "raster.nc", "{s}.log",
         edit(lambda d: _drop_unit_spikes(d, None)),
         ("no spikes at all: all 24 units are silent", "check the extraction")),
    Case("silent-neuron-in-raster", "train", "raster.nc", MODEL, f"{{s}}/hidden~{NH}.log",
         edit(_silence_in_train),
         ("1 of 24 neuron(s) never fire in the train split", "drop them")),
    Case("one-silent-unit-dropped", "binarize", "spikes.nc", "raster.nc", "{s}.log",
         edit(lambda d: _drop_unit_spikes(d, 5)),
         ("dropping 1 neuron(s) silent in the train split: unit_id [",), fails=False),
    # an area label missing
    Case("area-label-empty", "binarize", "spikes.nc", "raster.nc", "{s}.log",
         edit(lambda d: _area_blank(d, "unit")),
         ("1 unit(s) have no area label", "set the missing labels")),
    Case("area-coord-missing", "train", "raster.nc", MODEL, f"{{s}}/hidden~{NH}.log",
         edit(lambda d: d.drop_vars("area")),
         ("has no variable 'area'", "Rebuild the file")),
    Case("area-missing-user-raster", "import_raster", "", "raster.nc", "{s}.log",
         lambda p: None, ("missing coordinate 'area'", "assign_coords")),
    Case("dims-user-raster", "import_raster", "", "raster.nc", "{s}.log",
         lambda p: None, ("'raster' has dims ('neuron', 'time_bin')", "transpose")),
]
USER_RASTER = {"value-2-user-raster": "value-2", "one-time-bin-user-raster": "one-bin",
               "area-missing-user-raster": "no-area", "dims-user-raster": "transposed"}


@pytest.fixture(scope="module")
def bad_run(tiny_base_run, tmp_path_factory):
    """Every case in one workflow copy and one `snakemake -k` call."""
    wf = copy_workflow(tmp_path_factory.mktemp("bad") / "wf", sessions=BASE_SHEET)
    user_dir = wf / "user_rasters"
    user_dir.mkdir()
    base_raster = _load(tiny_base_run / "results/base/raster.nc")
    rows = []
    for case in CASES:
        if case.id in USER_RASTER:
            path = user_dir / f"{case.id}.nc"
            _user_raster(base_raster, USER_RASTER[case.id]).to_netcdf(path)
            rows.append(f"{case.id}\traster\tpath={path}")
            continue
        rows.append(f"{case.id}\tsynthetic\tseed=1")
        res = wf / "results" / case.id
        shutil.copytree(tiny_base_run / "results" / "base", res)  # keeps mtimes: nothing is stale
        case.corrupt(res / case.file)  # the corrupted file is now the newest input
        (res / case.target).unlink()
    (wf / "config" / "sessions.tsv").write_text(
        "session_id\tsource\tparams\n" + "\n".join(rows) + "\n")
    targets = [f"results/{c.id}/{c.target}" for c in CASES]
    dry = snakemake(wf, "-n", "--cores", "2", *targets)
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = re.findall(r"^rule (\w+):", dry.stdout, re.M)
    # only the stage under test runs for each case (nothing upstream is rebuilt)
    assert sorted(planned) == sorted(c.rule for c in CASES), planned
    proc = snakemake(wf, "-k", "--cores", "2", *targets)
    return wf, proc


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_gives_one_clear_error_and_no_output(bad_run, case):
    wf, proc = bad_run
    res = wf / "results" / case.id
    log = (wf / "results" / "logs" / case.rule / case.log.format(s=case.id)).read_text()
    if not case.fails:
        assert (res / case.target).exists(), log
        for piece in case.expect:
            assert piece in log and piece in proc.stderr, piece  # loud: log and console
        dropped = json.loads(_load(res / case.target).attrs["dropped_units"])
        assert dropped == [int(_load(res / "spikes.nc")["unit_id"].values[5])]
        return
    assert proc.returncode != 0
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in log, log
    line = errors[0]
    named = (f"results/{case.id}/{case.file}" if case.file
             else str(wf / "user_rasters" / f"{case.id}.nc"))
    assert named in line, line
    for piece in case.expect:
        assert piece in line, f"{piece!r} not in {line!r}"
    # the job exited non-zero (snakemake says so for this rule and session) ...
    block = re.search(rf"Error in rule {case.rule}:\n(?:    .*\n)*?.*{re.escape(case.id)}",
                      proc.stderr)
    assert block, proc.stderr[-3000:]
    assert line.split(" ERROR ", 1)[1] in proc.stderr  # ... and the error is on the console
    # ... and left nothing behind
    assert not (res / case.target).exists()
    assert not [p for p in res.rglob("*") if ".tmp" in p.name]


def test_every_failing_job_exited_nonzero(bad_run):
    _, proc = bad_run
    n_failing = sum(c.fails for c in CASES)
    assert proc.stderr.count("returned non-zero exit status 1.") == n_failing
    assert proc.stderr.count("Error in rule ") == n_failing


def test_docs_table_lists_every_case():
    doc = (REPO / "docs" / "reliability.md").read_text()
    missing = [c.id for c in CASES if f"`{c.id}`" not in doc]
    assert not missing, f"docs/reliability.md lacks rows for {missing}"
