"""``source: nwb`` (spikerbm.nwb): NWB files written by pynwb itself, read back into spikes.nc.

Three conventions of the field, built with known spike trains:
- Allen-like (Visual Behavior/Coding Neuropixels): units columns quality, presence_ratio,
  isi_violations, amplitude_cutoff and peak_channel_id (ids of the electrodes table, whose
  location is the CCF acronym; x/y/z CCF, probe_vertical/horizontal_position), obs_intervals,
  trials and a stimulus-presentation TimeIntervals table;
- IBL-like: a cluster_id column, the units' electrodes region, electrodes location plus
  beryl_location, or a brain_area units column;
- a file carrying an extension namespace (written with its cached spec) read in a fresh process
  that never registered the extension.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")

from spikerbm import io  # noqa: E402
from spikerbm.nwb import parse_filter, read_nwb  # noqa: E402
from spikerbm.sources import SourceError  # noqa: E402

START = dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.UTC)
RNG = np.random.default_rng(18)


def trains(n_units: int, t_end: float = 60.0) -> list[np.ndarray]:
    """Known spike trains: sorted uniform times on a 0.1 ms grid (no float ties)."""
    return [np.sort(RNG.choice(int(t_end * 1e4), size=int(RNG.integers(40, 200)),
                               replace=False) / 1e4) for _ in range(n_units)]


def new_file() -> pynwb.NWBFile:
    return pynwb.NWBFile(session_description="test", identifier="spikerbm-test",
                         session_start_time=START)


# ----------------------------------------------------------------------------- Allen-like
ALLEN_AREAS = ["VISp", "VISp", "VISl", "CA1", "root"]
ALLEN_QUALITY = ["good", "good", "noise", "good", "good", "good", "good"]
ALLEN_PRESENCE = [0.99, 0.95, 0.99, 0.5, 0.97, np.nan, 0.99]
ALLEN_PEAK = [0, 1, 2, 3, 4, 2, 3]  # electrode row of each unit


def allen_file(path, spikes=None):
    f = new_file()
    device = f.create_device("probeA")
    group = f.create_electrode_group("probeA", description="Neuropixels 1.0",
                                     location="See electrode locations", device=device)
    f.add_electrode_column("probe_vertical_position", "um from the tip")
    f.add_electrode_column("probe_horizontal_position", "um across the shank")
    for k, area in enumerate(ALLEN_AREAS):
        f.add_electrode(id=850000000 + 10 * k, group=group, location=area,
                        x=8000.0 + k, y=2000.0 + 20 * k, z=9000.0 - k,
                        probe_vertical_position=20.0 * k, probe_horizontal_position=43.0)
    for name, desc in (("quality", "good/noise"), ("presence_ratio", "fraction"),
                       ("isi_violations", "ratio"), ("amplitude_cutoff", "fraction"),
                       ("peak_channel_id", "electrode id")):
        f.add_unit_column(name, desc)
    spikes = trains(7) if spikes is None else spikes
    for k, t in enumerate(spikes):
        f.add_unit(id=950000 + k, spike_times=t, obs_intervals=[[0.0, 60.0]],
                   quality=ALLEN_QUALITY[k], presence_ratio=ALLEN_PRESENCE[k],
                   isi_violations=0.1 * k, amplitude_cutoff=0.01 * k,
                   peak_channel_id=850000000 + 10 * ALLEN_PEAK[k])
    for start in (2.0, 12.0, 22.0):
        f.add_trial(start_time=start, stop_time=start + 8.0)
    presentations = pynwb.epoch.TimeIntervals(name="spontaneous_presentations",
                                              description="spontaneous blocks")
    presentations.add_column("stimulus_name", "name")
    presentations.add_interval(start_time=35.0, stop_time=45.0, stimulus_name="spontaneous")
    presentations.add_interval(start_time=50.0, stop_time=55.0, stimulus_name="spontaneous")
    f.add_time_intervals(presentations)
    with pynwb.NWBHDF5IO(str(path), "w") as nwbio:
        nwbio.write(f)
    return spikes


def inside(t, windows):
    return t[np.any([(t >= a) & (t < b) for a, b in windows], axis=0)]


def assert_trains(ds, expected: dict[int, np.ndarray]):
    """spikes.nc holds exactly the expected spike times of each unit (in time order)."""
    assert np.all(np.diff(ds["spike_time"].values) >= 0)
    ids = ds["unit_id"].values
    assert sorted(ids.tolist()) == sorted(expected)
    for k, uid in enumerate(ids):
        got = ds["spike_time"].values[ds["spike_unit"].values == k]
        np.testing.assert_array_equal(got, expected[int(uid)])


def test_allen_like_file_filters_areas_positions_and_trials(tmp_path):
    path = tmp_path / "allen.nwb"
    spikes = allen_file(path)
    ds = read_nwb(path, session_id="allen", epochs="trials",
                  filters=["quality == good", "presence_ratio > 0.9", "isi_violations < 0.45"])
    # kept: quality good, presence > 0.9 (NaN fails), isi < 0.45 -> units 0, 1, 4
    windows = [(2, 10), (12, 20), (22, 30)]
    assert_trains(ds, {950000 + k: inside(spikes[k], windows) for k in (0, 1, 4)})
    assert ds["area"].values.tolist() == ["VISp", "VISp", "root"]  # via peak channel location
    np.testing.assert_array_equal(ds["electrode_id"].values, [850000000, 850000010, 850000040])
    np.testing.assert_array_equal(ds["x"].values, [8000.0, 8001.0, 8004.0])
    np.testing.assert_array_equal(ds["probe_vertical_position"].values, [0.0, 20.0, 80.0])
    assert ds["probe"].values.tolist() == ["probeA"] * 3
    np.testing.assert_allclose(ds["presence_ratio"].values, [0.99, 0.95, 0.97])
    assert ds["epoch_name"].values.tolist() == ["trials-0", "trials-1", "trials-2"]
    np.testing.assert_array_equal(ds["epoch_start"].values, [2.0, 12.0, 22.0])
    assert ds.attrs["source"] == "nwb" and ds.attrs["n_units_total"] == 7
    assert ds.attrs["n_units_selected"] == 3 and ds.attrs["area_from"] == "electrodes.location"
    assert json.loads(ds.attrs["filters"])[0] == "quality == good"
    # the file's whole observation span and a named interval table
    whole = read_nwb(path, session_id="allen")
    assert whole["epoch_name"].values.tolist() == ["recording"]
    assert (whole["epoch_start"].item(), whole["epoch_stop"].item()) == (0.0, 60.0)
    assert_trains(whole, {950000 + k: spikes[k] for k in range(7)})
    spont = read_nwb(path, session_id="allen",
                     epochs=[{"table": "spontaneous_presentations", "label": "stimulus_name"}],
                     areas="VISp,VISl")
    assert spont["epoch_name"].values.tolist() == ["spontaneous-1", "spontaneous-2"]
    assert sorted(set(spont["area"].values)) == ["VISl", "VISp"]


def test_written_spikes_nc_round_trips_and_binarizes(tmp_path):
    from spikerbm.binarize import binarize

    path = tmp_path / "allen.nwb"
    allen_file(path)
    ds = read_nwb(path, session_id="allen", epochs="trials", filters=["quality == good"])
    io.write_netcdf(ds, tmp_path / "spikes.nc")
    back = io.read_netcdf(tmp_path / "spikes.nc")
    raster = binarize(back, bin_ms=20, n_blocks=4, n_test_blocks=1, seed=1, session_id="allen")
    assert raster.sizes["time_bin"] == 3 * 400 and raster.attrs["source"] == "nwb"


@pytest.mark.parametrize(("kwargs", "pieces"), [
    ({"filters": ["qualty == good"]}, ["no column 'qualty'", "'quality'", "'presence_ratio'",
                                       "did you mean `quality`?"]),
    ({"filters": ["presence_ratio >> 0.9"]}, ["is not '<column> <op> <value>'"]),
    ({"filters": ["quality > 3"]}, ["column 'quality' holds text"]),
    ({"filters": ["presence_ratio > 1.5"]}, ["no unit passes", "presence_ratio > 1.5: 0"]),
    ({"area": "brain_area"}, ["'brain_area' is not a units column", "peak_channel_id",
                              "electrodes columns", "location"]),
    ({"area": "electrodes.acronym"}, ["no column 'acronym'", "probe_vertical_position"]),
    ({"epochs": "stimulus"}, ["no interval table 'stimulus'", "spontaneous_presentations",
                              "trials"]),
    ({"epochs": "trial"}, ["no interval table 'trial'", "did you mean `trials`?"]),
    ({"areas": "LGd"}, ["in areas ['LGd']", "'VISp'"]),
])
def test_bad_options_name_what_exists(tmp_path, kwargs, pieces):
    path = tmp_path / "allen.nwb"
    allen_file(path)
    with pytest.raises(SourceError) as err:
        read_nwb(path, session_id="s", **kwargs)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    for piece in pieces:
        assert piece in msg, msg


def test_filters_are_parsed_not_evaluated():
    assert parse_filter("presence_ratio>0.9") == ("presence_ratio", ">", 0.9)
    assert parse_filter(" quality == good ") == ("quality", "==", "good")
    with pytest.raises(ValueError):
        parse_filter("__import__('os').system('true') == 1")


# ----------------------------------------------------------------------------- spike-time faults
@pytest.mark.parametrize(("fault", "pieces"), [
    ("nan", ["unit 950003", "1 NaN/inf spike time(s)", "fix or drop"]),
    ("negative", ["unit 950003", "negative spike time(s) (min -0.5 s)", "shift"]),
    ("outside", ["unit 950003", "outside its obs_intervals", "[[0.0, 60.0]]"]),
])
def test_bad_spike_times_are_one_clear_error(tmp_path, fault, pieces):
    spikes = trains(7)
    t = spikes[3].copy()
    t[5] = {"nan": np.nan, "negative": -0.5, "outside": 61.5}[fault]
    spikes[3] = np.sort(t) if fault != "nan" else t
    path = tmp_path / "bad.nwb"
    allen_file(path, spikes)
    with pytest.raises(SourceError) as err:
        read_nwb(path, session_id="s")
    for piece in pieces:
        assert piece in str(err.value), str(err.value)


def test_unsorted_spike_times_are_sorted_and_logged(tmp_path, caplog):
    spikes = trains(7)
    sorted_copy = [t.copy() for t in spikes]
    spikes[2] = spikes[2][::-1].copy()
    spikes[6] = np.roll(spikes[6], 3)
    path = tmp_path / "unsorted.nwb"
    allen_file(path, spikes)
    with caplog.at_level(logging.WARNING, logger="spikerbm.sources"):
        ds = read_nwb(path, session_id="s")
    assert "spike times of 2 unit(s) were not in ascending order and were sorted" in caplog.text
    assert "[950002, 950006]" in caplog.text
    assert_trains(ds, {950000 + k: sorted_copy[k] for k in range(7)})


# ----------------------------------------------------------------------------- IBL-like
def ibl_file(path, *, brain_area_column: bool = False, mixed_unit: bool = False):
    f = new_file()
    device = f.create_device("probe00")
    group = f.create_electrode_group("probe00", description="NP", location="brain",
                                     device=device)
    f.add_electrode_column("beryl_location", "Beryl parcellation")
    locations = [("VISa5", "VISa"), ("VISa6a", "VISa"), ("CA1", "CA1"), ("DG-mo", "DG")]
    for k, (loc, beryl) in enumerate(locations):
        f.add_electrode(group=group, location=loc, beryl_location=beryl, x=float(k),
                        y=1.0, z=2.0, rel_x=16.0 * (k % 2), rel_y=20.0 * k)
    f.add_unit_column("cluster_id", "Kilosort cluster id")
    if brain_area_column:
        f.add_unit_column("brain_area", "area")
    spikes = trains(4, t_end=30.0)
    for k, t in enumerate(spikes):
        electrodes = [k, (k + 1) % 4] if (mixed_unit and k == 1) else [k, k]
        extra = {"brain_area": ["VISa", "VISa", "CA1", "DG"][k]} if brain_area_column else {}
        f.add_unit(spike_times=t, electrodes=electrodes[:1] if not mixed_unit else electrodes,
                   cluster_id=[12, 40, 7, 3][k], **extra)
    f.add_epoch(start_time=0.0, stop_time=15.0, tags=["task"])
    f.add_epoch(start_time=15.0, stop_time=30.0, tags=["passive"])
    with pynwb.NWBHDF5IO(str(path), "w") as nwbio:
        nwbio.write(f)
    return spikes


def test_ibl_like_file_electrode_region_cluster_ids_and_epochs(tmp_path):
    path = tmp_path / "ibl.nwb"
    spikes = ibl_file(path)
    ds = read_nwb(path, session_id="ibl", unit_id="cluster_id", epochs="epochs")
    assert_trains(ds, {cid: spikes[k] for k, cid in enumerate([12, 40, 7, 3])})
    area = dict(zip(ds["unit_id"].values.tolist(), ds["area"].values.tolist(), strict=True))
    assert area == {12: "VISa5", 40: "VISa6a", 7: "CA1", 3: "DG-mo"}  # electrodes location
    rel_y = dict(zip(ds["unit_id"].values.tolist(), ds["rel_y"].values.tolist(), strict=True))
    assert rel_y == {12: 0.0, 40: 20.0, 7: 40.0, 3: 60.0}
    assert ds["epoch_name"].values.tolist() == ["epochs-0", "epochs-1"]
    beryl = read_nwb(path, session_id="ibl", area="electrodes.beryl_location")
    assert sorted(beryl["area"].values.tolist()) == ["CA1", "DG", "VISa", "VISa"]


def test_ibl_like_brain_area_column_is_taken_first(tmp_path):
    path = tmp_path / "ibl.nwb"
    ibl_file(path, brain_area_column=True)
    ds = read_nwb(path, session_id="ibl")
    assert ds.attrs["area_from"] == "brain_area"
    assert sorted(ds["area"].values.tolist()) == ["CA1", "DG", "VISa", "VISa"]


def test_unit_listing_electrodes_in_two_areas_needs_a_peak_electrode(tmp_path):
    path = tmp_path / "ibl.nwb"
    ibl_file(path, mixed_unit=True)
    with pytest.raises(SourceError, match=r"row 1 lists electrodes in several areas.*"
                                          r"unit_electrode"):
        read_nwb(path, session_id="ibl")


# ----------------------------------------------------------------------------- extensions
EXTENSION_WRITER = r"""
import datetime as dt, sys
import numpy as np, pynwb
from pynwb.spec import NWBGroupSpec, NWBNamespaceBuilder, NWBAttributeSpec
folder, out, cache = sys.argv[1], sys.argv[2], sys.argv[3] == "cache"
ns = NWBNamespaceBuilder("spikerbm test lab extension", "ndx-spikerbm-lab", version="0.1.0",
                         author="test", contact="test@example.org")
ns.include_type("LabMetaData", namespace="core")
ns.include_type("Units", namespace="core")
spec = NWBGroupSpec(neurodata_type_def="RigMetadata", neurodata_type_inc="LabMetaData",
                    doc="rig", attributes=[NWBAttributeSpec("rig", "rig name", "text")])
units_spec = NWBGroupSpec(neurodata_type_def="LabUnits", neurodata_type_inc="Units",
                          doc="units with lab columns")
ns.add_spec("ndx-spikerbm-lab.extensions.yaml", spec)
ns.add_spec("ndx-spikerbm-lab.extensions.yaml", units_spec)
ns.export("ndx-spikerbm-lab.namespace.yaml", outdir=folder)
pynwb.load_namespaces(f"{folder}/ndx-spikerbm-lab.namespace.yaml")
Rig = pynwb.get_class("RigMetadata", "ndx-spikerbm-lab")
LabUnits = pynwb.get_class("LabUnits", "ndx-spikerbm-lab")
f = pynwb.NWBFile(session_description="ext", identifier="ext",
                  session_start_time=dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc))
f.add_lab_meta_data(Rig(name="rig", rig="NP-3"))
units = LabUnits(name="units", description="lab units")
units.add_column("brain_area", "area")
for k in range(3):
    units.add_unit(spike_times=np.arange(1, 40) * 0.25 + 0.01 * k,
                   brain_area=["MOs", "MOs", "ACA"][k])
f.units = units
with pynwb.NWBHDF5IO(out, "w") as io:
    io.write(f, cache_spec=cache)  # True (the default): the extension's spec travels in the file
"""


def write_extension_file(tmp_path, *, cache: bool):
    spec_dir, nwb_path = tmp_path / "spec", tmp_path / "ext.nwb"
    spec_dir.mkdir()
    made = subprocess.run([sys.executable, "-c", EXTENSION_WRITER, str(spec_dir), str(nwb_path),
                           "cache" if cache else "nocache"], capture_output=True, text=True,
                          env=ENV, timeout=120)
    assert made.returncode == 0, made.stderr[-3000:]
    return nwb_path


ENV = dict(os.environ, PYTHONWARNINGS="ignore")


def extract(nwb_path, out, cwd):
    """The CLI in a fresh interpreter that never registered ndx-spikerbm-lab."""
    return subprocess.run([sys.executable, "-m", "spikerbm.nwb", "extract", str(nwb_path),
                           str(out), "--session-id", "ext"], capture_output=True, text=True,
                          env=ENV, timeout=120, cwd=cwd)


def test_file_with_an_unknown_extension_reads_in_a_fresh_process(tmp_path):
    nwb_path, out = write_extension_file(tmp_path, cache=True), tmp_path / "spikes.nc"
    run = extract(nwb_path, out, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    ds = io.read_netcdf(out)
    assert ds["area"].values.tolist() == ["MOs", "MOs", "ACA"]
    assert ds.sizes["spike"] == 3 * 39 and ds.attrs["area_from"] == "brain_area"
    described = subprocess.run([sys.executable, "-m", "spikerbm.nwb", "describe", str(nwb_path)],
                               capture_output=True, text=True, env=ENV, timeout=120)
    assert "units: 3; columns ['brain_area', 'spike_times']" in described.stdout, described


def test_extension_without_its_cached_spec_is_named(tmp_path):
    nwb_path = write_extension_file(tmp_path, cache=False)
    run = extract(nwb_path, tmp_path / "spikes.nc", tmp_path)
    assert run.returncode == 2 and not (tmp_path / "spikes.nc").exists()
    assert ("extension namespace 'ndx-spikerbm-lab' but does not carry its specification"
            in run.stderr), run.stderr
