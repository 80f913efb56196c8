"""``source: spikes`` (a user's spikes file) and Kilosort/phy folders through spikeinterface.

The spikes file is written by spikerbm.sources.write_spikes_file and by hand with xarray (as a user
would), read back into spikes.nc and compared with the known trains. The phy folders are written
in phy's documented format (spike_times.npy in samples, spike_clusters.npy, params.py,
cluster_group.tsv, cluster_info.tsv, channel_positions.npy) and read by the real
``spikeinterface.extractors.read_phy``.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from spikerbm import io
from spikerbm.sources import SourceError, phy_to_spikes_file, read_spikes_file, write_spikes_file

RNG = np.random.default_rng(7)


def known_trains(ids, t_end=20.0):
    return {u: np.sort(RNG.choice(int(t_end * 1e4), size=int(RNG.integers(30, 90)),
                                  replace=False) / 1e4) for u in ids}


def assert_trains(ds, expected):
    ids = ds["unit_id"].values.tolist()
    assert sorted(ids) == sorted(expected)
    assert np.all(np.diff(ds["spike_time"].values) >= 0)
    for k, uid in enumerate(ids):
        np.testing.assert_array_equal(ds["spike_time"].values[ds["spike_unit"].values == k],
                                      expected[uid])


# ----------------------------------------------------------------------------- spikes file
def test_spikes_file_round_trip_with_metadata_and_epochs(tmp_path):
    trains = known_trains([5, 9, 23])
    units = pd.DataFrame({"area": ["MOs", "MOs", "CA1"], "quality": ["good", "mua", "good"],
                          "depth_um": [1200.0, 1180.0, 2400.0]}, index=[5, 9, 23])
    epochs = pd.DataFrame({"name": ["task", "rest"], "start": [1.0, 12.0], "stop": [9.0, 19.5]})
    path = write_spikes_file(tmp_path / "mine.nc", trains, units, epochs=epochs)
    ds = read_spikes_file(path, session_id="mine")
    win = [(1.0, 9.0), (12.0, 19.5)]
    assert_trains(ds, {u: t[np.any([(t >= a) & (t < b) for a, b in win], axis=0)]
                       for u, t in trains.items()})
    assert ds["area"].values.tolist() == ["MOs", "MOs", "CA1"]
    assert ds["quality"].values.tolist() == ["good", "mua", "good"]
    np.testing.assert_array_equal(ds["depth_um"].values, [1200.0, 1180.0, 2400.0])
    assert ds["epoch_name"].values.tolist() == ["task", "rest"]
    assert ds.attrs["source"] == "spikes" and ds.attrs["session_id"] == "mine"
    only = read_spikes_file(path, session_id="mine", epochs="rest")
    assert only["epoch_name"].values.tolist() == ["rest"]


def test_a_workflow_spikes_nc_is_a_valid_spikes_input(tmp_path):
    """results/{session}/spikes.nc (spike_time, spike_unit index, epoch_start/stop) read back
    as a `source: spikes` file gives the same spikes, units, metadata and epochs (new-user
    trial: it failed with "needs variable 'spike_time_s'")."""
    trains = known_trains([5, 9, 23])
    units = pd.DataFrame({"area": ["MOs", "MOs", "CA1"], "quality": ["good", "mua", "good"]},
                         index=[5, 9, 23])
    epochs = pd.DataFrame({"name": ["task", "rest"], "start": [1.0, 12.0], "stop": [9.0, 19.5]})
    first = read_spikes_file(write_spikes_file(tmp_path / "mine.nc", trains, units,
                                               epochs=epochs), session_id="mine")
    io.write_netcdf(first, tmp_path / "spikes.nc")  # as the workflow writes it
    again = read_spikes_file(tmp_path / "spikes.nc", session_id="mine")
    for name in ("spike_time", "spike_unit", "unit_id", "area", "quality", "epoch_name",
                 "epoch_start", "epoch_stop"):
        np.testing.assert_array_equal(again[name].values, first[name].values, err_msg=name)
    assert again.attrs["source"] == "spikes"
    assert read_spikes_file(tmp_path / "spikes.nc", session_id="m", epochs="rest")[
        "epoch_name"].values.tolist() == ["rest"]
    bad = io.read_netcdf(tmp_path / "spikes.nc")
    bad.assign(spike_unit=bad.spike_unit + 3).to_netcdf(tmp_path / "bad.nc")
    with pytest.raises(SourceError, match="spike_unit must index the 3 entries of unit_id"):
        read_spikes_file(tmp_path / "bad.nc", session_id="b")


def test_hand_written_file_in_ms_without_epochs_unsorted_is_logged(tmp_path, caplog):
    trains = known_trains([1, 2])
    t = np.concatenate([trains[2][::-1], trains[1]]) * 1000.0  # unit 2 reversed, ms
    uid = np.r_[np.full(trains[2].size, 2), np.full(trains[1].size, 1)]
    xr.Dataset({"spike_time_s": ("spike", t, {"units": "ms"}),
                "spike_unit_id": ("spike", uid),
                "unit_id": ("unit", [1, 2]), "area": ("unit", ["LGd", "VISp"])}
               ).to_netcdf(tmp_path / "hand.nc")
    with caplog.at_level(logging.WARNING, logger="spikerbm.sources"):
        ds = read_spikes_file(tmp_path / "hand.nc", session_id="h")
    assert "spike times of 1 unit(s) were not in ascending order and were sorted" in caplog.text
    assert "[2]" in caplog.text
    expected = {u: (x * 1000.0) * 1e-3 for u, x in trains.items()}  # the same float ops
    assert_trains(ds, expected)
    last = max(x[-1] for x in trains.values())
    assert ds["epoch_name"].values.tolist() == ["recording"]
    assert ds["epoch_start"].item() == 0.0 and ds["epoch_stop"].item() > last


@pytest.mark.parametrize(("mutate", "pieces"), [
    (lambda d: d.assign(spike_time_s=d.spike_time_s.copy(
        data=np.r_[np.nan, d.spike_time_s.values[1:]])),
     ["unit 1", "NaN/inf spike time(s)", "fix or drop"]),
    (lambda d: d.assign(spike_time_s=d.spike_time_s.copy(
        data=np.r_[-2.0, d.spike_time_s.values[1:]])),
     ["unit 1", "negative spike time(s) (min -2 s)"]),
    (lambda d: d.assign(spike_unit_id=d.spike_unit_id.copy(
        data=np.r_[77, d.spike_unit_id.values[1:]])),
     ["spike_unit_id value(s) are not in the units table", "[77]"]),
    (lambda d: d.drop_vars("area"), ["needs variable 'area' on dim 'unit'"]),
    (lambda d: d.assign(unit_id=("unit", [1, 1])), ["unit_id must be unique integers"]),
])
def test_bad_spikes_files_get_one_clear_line(tmp_path, mutate, pieces):
    trains = known_trains([1, 2])
    units = pd.DataFrame({"area": ["A", "B"]}, index=[1, 2])
    write_spikes_file(tmp_path / "ok.nc", trains, units)
    bad = mutate(io.read_netcdf(tmp_path / "ok.nc"))
    bad.to_netcdf(tmp_path / "bad.nc")
    with pytest.raises(SourceError) as err:
        read_spikes_file(tmp_path / "bad.nc", session_id="b")
    msg = str(err.value)
    assert "\n" not in msg and "bad.nc" in msg
    for piece in pieces:
        assert piece in msg, msg


def test_unknown_epoch_name_lists_the_file_epochs(tmp_path):
    units = pd.DataFrame({"area": ["A"]}, index=[1])
    epochs = pd.DataFrame({"name": ["task"], "start": [0.0], "stop": [10.0]})
    write_spikes_file(tmp_path / "f.nc", known_trains([1]), units, epochs=epochs)
    with pytest.raises(SourceError, match=r"no epoch 'rest'; the file has epochs \['task'\]"):
        read_spikes_file(tmp_path / "f.nc", session_id="f", epochs="rest")


# ----------------------------------------------------------------------------- phy folders
FS = 30000.0
CLUSTERS = {0: ("good", "VISp", 3), 4: ("mua", "VISp", 5), 7: ("noise", "CA1", 9),
            11: ("good", "CA1", 12)}


def phy_folder(folder, *, cluster_info: bool = True):
    """A tiny Kilosort/phy output folder in phy's documented file format."""
    folder.mkdir()
    samples, clusters = [], []
    for cid in CLUSTERS:
        s = np.sort(RNG.choice(int(20 * FS), size=int(RNG.integers(40, 80)), replace=False))
        samples.append(s)
        clusters.append(np.full(s.size, cid))
    s, c = np.concatenate(samples), np.concatenate(clusters)
    order = np.argsort(s, kind="stable")  # phy's files are in time order
    np.save(folder / "spike_times.npy", s[order].astype(np.uint64)[:, None])
    np.save(folder / "spike_clusters.npy", c[order].astype(np.uint32))
    (folder / "params.py").write_text(
        "dat_path = 'recording.bin'\nn_channels_dat = 16\ndtype = 'int16'\noffset = 0\n"
        f"sample_rate = {FS}\nhp_filtered = True\n")
    positions = np.stack([np.tile([16.0, 48.0], 8), np.repeat(np.arange(8) * 20.0, 2)], axis=1)
    np.save(folder / "channel_positions.npy", positions)
    pd.DataFrame({"cluster_id": list(CLUSTERS), "group": [g for g, _, _ in CLUSTERS.values()]}
                 ).to_csv(folder / "cluster_group.tsv", sep="\t", index=False)
    if cluster_info:
        pd.DataFrame({
            "cluster_id": list(CLUSTERS), "KSLabel": ["good", "mua", "mua", "good"],
            "ch": [ch for _, _, ch in CLUSTERS.values()],
            "depth": [positions[ch, 1] for _, _, ch in CLUSTERS.values()],
            "group": [g for g, _, _ in CLUSTERS.values()],
            "brain_area": [a for _, a, _ in CLUSTERS.values()],
            "n_spikes": [x.size for x in samples],
        }).to_csv(folder / "cluster_info.tsv", sep="\t", index=False)
    return {cid: x / FS for cid, x in zip(CLUSTERS, samples, strict=True)}, positions


def test_phy_folder_through_spikeinterface_to_spikes_nc(tmp_path):
    trains, positions = phy_folder(tmp_path / "phy")
    out = phy_to_spikes_file(tmp_path / "phy", tmp_path / "spikes_file.nc",
                             area_column="brain_area")
    ds = read_spikes_file(out, session_id="ks")
    kept = [0, 4, 11]  # cluster 7 is phy group 'noise': excluded by default
    assert_trains(ds, {cid: trains[cid] for cid in kept})
    by_id = {int(u): k for k, u in enumerate(ds["unit_id"].values)}
    assert [ds["area"].values[by_id[c]] for c in kept] == ["VISp", "VISp", "CA1"]
    assert [ds["quality"].values[by_id[c]] for c in kept] == ["good", "mua", "good"]
    np.testing.assert_array_equal([ds["y"].values[by_id[c]] for c in kept],
                                  [positions[CLUSTERS[c][2], 1] for c in kept])
    raw = io.read_netcdf(out)
    assert raw.attrs["sample_rate_hz"] == FS and raw.attrs["source"] == "phy folder phy"


def test_kilosort_folder_without_cluster_info_via_cli_and_channel_map(tmp_path):
    trains, _ = phy_folder(tmp_path / "ks", cluster_info=False)
    areas = tmp_path / "channel_areas.tsv"
    pd.DataFrame({"channel": range(16), "area": ["MOs"] * 8 + ["PL"] * 8}).to_csv(
        areas, sep="\t", index=False)
    out = tmp_path / "spikes_file.nc"
    # no cluster_info.tsv: no peak channel `ch`, so --channel-areas cannot work: a clear error
    bad = subprocess.run([sys.executable, "-m", "spikerbm.sources", "phy2spikes",
                          str(tmp_path / "ks"), str(out), "--channel-areas", str(areas)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "peak channel per cluster" in bad.stderr, bad.stderr
    run = subprocess.run([sys.executable, "-m", "spikerbm.sources", "phy2spikes",
                          str(tmp_path / "ks"), str(out), "--area", "MOs",
                          "--exclude-groups", ""], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    ds = read_spikes_file(out, session_id="ks")
    assert_trains(ds, trains)  # every cluster, noise included
    assert set(ds["area"].values) == {"MOs"}


def test_phy_needs_exactly_one_area_option(tmp_path):
    phy_folder(tmp_path / "phy")
    with pytest.raises(SourceError, match="exactly one of --area"):
        phy_to_spikes_file(tmp_path / "phy", tmp_path / "o.nc")
    with pytest.raises(SourceError, match=r"no cluster property 'region'.*brain_area"):
        phy_to_spikes_file(tmp_path / "phy", tmp_path / "o.nc", area_column="region")
