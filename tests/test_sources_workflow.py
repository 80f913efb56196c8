"""``source: nwb`` and ``source: spikes`` through the real workflow, to the report (issue 18).

One tiny run holds two sessions whose spike trains are known exactly (drawn from the planted
RBM of the synthetic generator, so there is structure to learn):

- ``rec-nwb``: an NWB file written by pynwb with Allen conventions (units quality and
  presence_ratio, areas through ``peak_channel_id`` -> the electrodes table's ``location``,
  trials), with two extra units the configured filters must drop; its row gives a path
  relative to the working directory and selects the ``trials`` epochs;
- ``rec-spikes``: a spikes file (spikerbm.sources.write_spikes_file) with two epochs, of which
  the row keeps one.

The rasters the workflow writes must equal an independent numpy binning of the known trains in
the selected epochs; the report must show both sessions. The DAG-time checks of nwb/spikes rows
and running from another folder are tested with real dry runs.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import CPU_GPU_SLOTS, copy_workflow, snakemake

pynwb = pytest.importorskip("pynwb")

from spikerbm import io  # noqa: E402
from spikerbm.sources import write_spikes_file  # noqa: E402
from spikerbm.synthetic import generate_session  # noqa: E402

pytestmark = pytest.mark.workflow

BIN_MS = 20  # binarize.bin_ms of the tiny config (the default)
#: Trials of the NWB file: four 50 s windows with gaps (four contiguous segments).
TRIALS = [(5.0, 55.0), (60.0, 110.0), (120.0, 170.0), (180.0, 230.0)]
#: Epochs of the spikes file; its row keeps `task`.
SPIKE_EPOCHS = pd.DataFrame({"name": ["task", "rest"], "start": [0.0, 150.0],
                             "stop": [150.0, 240.0]})
#: Small training: one hidden size (the data stages are what is under test here).
OVERRIDES = {"train": {"n_hidden": [4]},
             "nwb": {"filters": ["quality == good", "presence_ratio > 0.9"]}}


def planted_trains(seed: int) -> tuple[dict[int, np.ndarray], pd.Series]:
    """Spike trains (s) of 20 units in two areas drawn from a planted RBM, and their areas."""
    spikes = generate_session(n_neurons=20, n_areas=2, duration_s=240, assemblies_per_area=2,
                              assembly_size=5, n_cross_assemblies=1, seed=seed)[0]
    times, unit = spikes["spike_time"].values, spikes["spike_unit"].values
    ids = spikes["unit_id"].values
    trains = {int(u): times[unit == k] for k, u in enumerate(ids)}
    return trains, pd.Series(spikes["area"].values.astype(str), index=ids)


def write_nwb(path: Path, trains: dict[int, np.ndarray], areas: pd.Series) -> None:
    """An Allen-style NWB file: the planted units (good, present) plus a noise unit and a unit
    with a low presence ratio that the filters drop."""
    from datetime import UTC, datetime

    f = pynwb.NWBFile(session_description="planted", identifier="rec-nwb",
                      session_start_time=datetime(2024, 5, 1, tzinfo=UTC))
    device = f.create_device("probeA")
    group = f.create_electrode_group("probeA", description="Neuropixels", location="brain",
                                     device=device)
    names = sorted(set(areas))
    for k, name in enumerate(names):
        f.add_electrode(id=7000 + k, group=group, location=name, x=1.0 * k, y=0.0, z=0.0)
    for name in ("quality", "presence_ratio", "peak_channel_id"):
        f.add_unit_column(name, name)
    rng = np.random.default_rng(5)
    extra = {9001: ("noise", 0.99), 9002: ("good", 0.4)}
    for uid in [*trains, *extra]:
        t = trains[uid] if uid in trains else np.sort(rng.uniform(0, 240, 500))
        quality, presence = extra.get(uid, ("good", 0.99))
        area = areas[uid] if uid in trains else names[0]
        f.add_unit(id=uid, spike_times=t, quality=quality, presence_ratio=presence,
                   peak_channel_id=7000 + names.index(area))
    for start, stop in TRIALS:
        f.add_trial(start_time=start, stop_time=stop)
    with pynwb.NWBHDF5IO(str(path), "w") as nwbio:
        nwbio.write(f)


def expected_raster(trains: dict[int, np.ndarray], windows) -> dict[int, np.ndarray]:
    """Independent binning: per unit, 1 where it fired in the bin, the windows' whole bins
    concatenated in time order (times are whole ms, so the bin index is exact)."""
    out = {}
    for uid, t in trains.items():
        parts = []
        for start, stop in windows:
            n = int((stop - start) * 1000) // BIN_MS
            ms = np.round((t[(t >= start) & (t < stop)] - start) * 1000).astype(np.int64)
            col = np.zeros(n, dtype=np.uint8)
            col[ms[ms // BIN_MS < n] // BIN_MS] = 1
            parts.append(col)
        out[uid] = np.concatenate(parts)
    return out


@pytest.fixture(scope="module")
def sources_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    nwb_trains, nwb_areas = planted_trains(seed=11)
    spk_trains, spk_areas = planted_trains(seed=12)
    spikes_file = root / "mine_spikes.nc"
    write_spikes_file(spikes_file, spk_trains, pd.DataFrame({"area": spk_areas}),
                      epochs=SPIKE_EPOCHS)
    sheet = ("session_id\tsource\tparams\n"
             "rec-nwb\tnwb\tpath=data/rec.nwb;epochs=trials\n"
             f"rec-spikes\tspikes\tpath={spikes_file};epochs=task\n")
    wf = copy_workflow(root / "wf", OVERRIDES, sheet)
    (wf / "data").mkdir()
    write_nwb(wf / "data" / "rec.nwb", nwb_trains, nwb_areas)
    start = time.monotonic()
    proc = snakemake(wf, "--cores", "2", *CPU_GPU_SLOTS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    report = snakemake(wf, "--report", "report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    print(f"sources workflow run + report: {time.monotonic() - start:.0f} s")
    return wf, {"rec-nwb": (nwb_trains, nwb_areas, TRIALS),
                "rec-spikes": (spk_trains, spk_areas, [(0.0, 150.0)])}


@pytest.mark.parametrize("session", ["rec-nwb", "rec-spikes"])
def test_workflow_raster_equals_the_known_trains_binned(sources_run, session):
    wf, known = sources_run
    trains, areas, windows = known[session]
    spikes = io.read_netcdf(wf / "results" / session / "spikes.nc")
    # only the planted units: the filters dropped the noise and low-presence units
    assert sorted(spikes["unit_id"].values.tolist()) == sorted(trains)
    assert spikes.attrs["source"] == session.removeprefix("rec-")
    config = json.loads(spikes.attrs["config"])  # provenance: the job's params and the file
    assert config["epochs"] == ("trials" if session == "rec-nwb" else "task")
    assert config["path"].endswith("rec.nwb" if session == "rec-nwb" else "mine_spikes.nc")
    if session == "rec-nwb":
        assert config["filters"] == OVERRIDES["nwb"]["filters"]
        assert spikes.attrs["n_units_total"] == len(trains) + 2
        assert spikes.attrs["area_from"] == "electrodes.location"
    raster = io.read_netcdf(wf / "results" / session / "raster.nc")
    assert raster.attrs["session_id"] == session and "git_commit" in raster.attrs
    np.testing.assert_allclose(np.unique(np.diff(raster["time"].values)).min(), BIN_MS / 1000)
    expected = expected_raster(trains, windows)
    ids = raster["unit_id"].values
    assert set(trains) - set(ids.tolist()) == set(json.loads(raster.attrs["dropped_units"]))
    for k, uid in enumerate(ids):
        np.testing.assert_array_equal(raster["raster"].values[:, k], expected[int(uid)],
                                      err_msg=f"{session} unit {uid}")
    assert raster["area"].values.tolist() == [areas[u] for u in ids]  # area of each unit
    if session == "rec-nwb":  # the electrodes' positions travel to raster.nc (J vs distance)
        names = sorted(set(areas))  # write_nwb: one electrode per area, x = its index
        assert raster["x"].values.tolist() == [names.index(areas[u]) for u in ids]


def test_report_shows_both_sessions(sources_run):
    wf, _ = sources_run
    text = (wf / "report.html").read_text(errors="replace")
    for session in ("rec-nwb", "rec-spikes"):
        for fig in ("fig2_loglik", "fig3_statistics", "fig3_equilibration", "fig3_raster",
                    "fig4_couplings", "fig4_coupling_structure", "fig4_hidden_units",
                    "fig6_dynamics"):
            assert f"results/{session}/figures/{fig}.png" in text, (session, fig)
        ll = xr.open_dataset(wf / "results" / session / "selected.nc")
        assert np.isfinite(ll.attrs["ll_test"]) and int(ll.attrs["n_hidden"]) == 4
        ll.close()
    rows = (wf / "results" / "tables" / "selected_models.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in rows[1:]] == ["rec-nwb", "rec-spikes"]


def test_ibl_like_extension_and_faulty_nwb_files_through_the_rule(workflow_dir, tmp_path):
    """More NWB conventions through the real nwb_extract rule to raster.nc: IBL-like (cluster
    ids, area from the electrodes' beryl_location through the units' electrodes, the file's
    epochs table), a file with an extension namespace the environment does not know (its spec
    cached in the file), and a file with a negative spike time, whose job fails with one error
    line and leaves no spikes.nc."""
    from test_nwb import allen_file, ibl_file, trains, write_extension_file

    (tmp_path / "wf").mkdir()
    ibl_trains = ibl_file(tmp_path / "ibl.nwb")
    ext = write_extension_file(tmp_path, cache=True)
    bad = trains(7)
    bad[3] = np.sort(np.append(bad[3][1:], -0.5))
    allen_file(tmp_path / "bad.nwb", bad)
    wf = workflow_dir(sessions=HEAD
                      + f"ibl\tnwb\tpath={tmp_path / 'ibl.nwb'};unit_id=cluster_id;"
                        "area=electrodes.beryl_location;epochs=epochs\n"
                      + f"ext\tnwb\tpath={ext}\n"
                      + f"bad\tnwb\tpath={tmp_path / 'bad.nwb'}\n")
    proc = snakemake(wf, "-k", "--cores", "2",
                     *(f"results/{s}/raster.nc" for s in ("ibl", "ext", "bad")))
    assert proc.returncode != 0  # the bad file's job failed, the others ran (-k)
    ibl = io.read_netcdf(wf / "results/ibl/spikes.nc")
    order = [12, 40, 7, 3]  # cluster ids of the file's units
    assert sorted(ibl["unit_id"].values.tolist()) == sorted(order)
    for k, uid in enumerate(ibl["unit_id"].values):
        got = ibl["spike_time"].values[ibl["spike_unit"].values == k]
        np.testing.assert_array_equal(got, ibl_trains[order.index(int(uid))])
    raster = io.read_netcdf(wf / "results/ibl/raster.nc")
    beryl = {12: "VISa", 40: "VISa", 7: "CA1", 3: "DG"}  # the electrodes' beryl_location
    assert raster["area"].values.tolist() == [beryl[u] for u in raster["unit_id"].values]
    assert raster.attrs["epochs"] == json.dumps(["epochs-0", "epochs-1"])
    ext_raster = io.read_netcdf(wf / "results/ext/raster.nc")
    assert ext_raster["area"].values.tolist() == ["MOs", "MOs", "ACA"]
    assert not (wf / "results/bad/spikes.nc").exists()
    log = (wf / "results/logs/nwb_extract/bad.log").read_text()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in log, log
    assert "unit 950003: 1 negative spike time(s) (min -0.5 s)" in errors[0]


# ----------------------------------------------------------------------------- DAG-time checks
HEAD = "session_id\tsource\tparams\n"


def test_bad_file_row_stops_the_dry_run_naming_the_line(workflow_dir):
    """The real dry run stops at a bad nwb row (more cases: tests/test_sessions.py)."""
    wf = workflow_dir(sessions=HEAD + "ok\tsynthetic\tseed=1\n"
                      "s1\tnwb\tpath=x.nwb;filter=quality == good\n")
    proc = snakemake(wf, "-n", "--cores", "1")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Job stats" not in text
    assert ("config/sessions.tsv, line 3 (session s1): unknown nwb parameter(s) ['filter']; "
            "allowed: path, area, unit_electrode, unit_id, filters, areas, epochs; did you mean "
            "`filters`?") in text, text[-2000:]


def test_missing_file_or_folder_stops_only_its_session(workflow_dir, tmp_path):
    phy = tmp_path / "kilosort_out"
    phy.mkdir()
    wf = workflow_dir(sessions=HEAD + "ok\tsynthetic\tseed=1\n"
                      "gone\tnwb\tpath=data/none.nwb\n"
                      f"folder\tspikes\tpath={phy}\n")
    assert snakemake(wf, "-n", "--cores", "1", "results/ok/raster.nc").returncode == 0
    proc = snakemake(wf, "-n", "--cores", "1", "results/gone/raster.nc")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert (f"config/sessions.tsv, line 3 (session gone): nwb: path=data/none.nwb: NWB file not "
            f"found (looked for {wf / 'data/none.nwb'}") in text, text[-2000:]
    proc = snakemake(wf, "-n", "--cores", "1", "results/folder/raster.nc")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "is a folder" in text and "phy2spikes" in text, text[-2000:]


# ----------------------------------------------------------------------------- another folder
def test_running_from_another_folder(tmp_path):
    """The working directory is the project folder: `-s` and `-d` both use its config/, resolve
    the sheet's relative paths against it and write results/ there; without a config/ the run
    stops with the fix; vbn.python's default is found beside the workflow."""
    wf = copy_workflow(tmp_path / "spikerbm")  # the checkout
    snakefile = str(wf / "workflow" / "Snakefile")
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    shutil.copytree(wf / "config", project / "config")
    bins = (np.random.default_rng(3).random((300, 5)) < 0.3).astype(np.uint8)
    xr.Dataset({"raster": (("time_bin", "neuron"), bins)},
               coords={"unit_id": ("neuron", np.arange(5)), "area": ("neuron", ["V1"] * 5)},
               attrs={"bin_ms": 20.0}).to_netcdf(project / "data" / "r.nc")
    (project / "config" / "sessions.tsv").write_text(
        HEAD + "mine\traster\tpath=data/r.nc\nv1\tvbn\tecephys_session_id=1044385384\n")
    python = wf / ".venv-vbn" / "bin" / "python"  # what scripts/setup_vbn_env.sh builds
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    proc = snakemake(project, "-s", snakefile, "--cores", "1", "results/mine/raster.nc")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert io.read_netcdf(project / "results/mine/raster.nc")["raster"].shape == (300, 5)
    assert not (wf / "results").exists()
    dry = snakemake(tmp_path, "-d", str(project), "-s", snakefile, "-n", "-p", "--cores", "1",
                    "results/v1/spikes.nc")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert f"{python} -m spikerbm.vbn extract" in dry.stdout.replace("'", "")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = snakemake(empty, "-s", snakefile, "-n")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"no config/config.yaml in the working directory {empty}" in text, text[-2000:]
    assert f"cp -r {wf / 'config'} ." in text and "--configfile" in text


def test_config_typo_is_one_line_in_the_real_dry_run(workflow_dir):
    wf = workflow_dir({"train": {"n_udpates": 5}, "nwb": {"filter": []}})
    proc = snakemake(wf, "-n")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    lines = [line for line in text.splitlines() if "unknown key" in line]
    assert len(lines) == 1, text
    assert re.match(r"config/config\.yaml: unknown key `(train\.n_udpates|nwb\.filter)`; "
                    "allowed keys of ", lines[0]) and "did you mean" in lines[0], lines
    assert "Failed validating" not in text and "additionalProperties" not in text
