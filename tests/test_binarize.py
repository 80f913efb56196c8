"""Binarization against hand-built spike trains with known answers."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import xarray as xr

from spikerbm.binarize import assign_blocks, binarize, split_arrays


def make_spikes(times, units, *, n_units, epochs=(("active", 0.0, 1.0),), unit_ids=None,
                areas=None) -> xr.Dataset:
    times = np.asarray(times, dtype=float)
    units = np.asarray(units, dtype=np.int32)
    order = np.argsort(times, kind="stable")
    unit_ids = np.arange(500, 500 + n_units) if unit_ids is None else unit_ids
    areas = ["X"] * n_units if areas is None else areas
    return xr.Dataset(
        {
            "spike_time": ("spike", times[order]),
            "spike_unit": ("spike", units[order]),
            "epoch_start": ("epoch", [e[1] for e in epochs]),
            "epoch_stop": ("epoch", [e[2] for e in epochs]),
        },
        coords={
            "unit_id": ("unit", np.asarray(unit_ids, dtype=np.int64)),
            "area": ("unit", np.asarray(areas, dtype=object)),
            "epoch_name": ("epoch", np.asarray([e[0] for e in epochs], dtype=object)),
        },
        attrs={"session_id": "hand", "source": "test"},
    )


def run(spikes, **kw):
    opts = dict(bin_ms=20, epochs="all", n_blocks=2, n_test_blocks=1, seed=0, session_id="hand")
    opts.update(kw)
    return binarize(spikes, **opts)


def test_spike_on_bin_edge_belongs_to_the_bin_it_starts():
    # 0.06 / 0.02 = 2.9999999999999996 in floating point: the edge rule must still give bin 3.
    # unit 0: edge spikes at 0.06 and 0.0 (first edge); unit 1: just before the 0.06 edge;
    # unit 2: on the 0.1 edge (bin 5) and at 0.119999 (still bin 5). Every unit also fires in
    # the other half (0.15 -> bin 7, 0.02 -> bin 1) so none is silent in the train split.
    spikes = make_spikes([0.06, 0.0, 0.0599, 0.1, 0.119999, 0.5, 0.15, 0.02],
                         [0, 0, 1, 2, 2, 0, 1, 2], n_units=3, epochs=[("active", 0.0, 0.2)])
    ds = run(spikes, n_blocks=2, n_test_blocks=1, seed=3)
    assert ds.sizes["time_bin"] == 10
    r = {int(u): np.flatnonzero(ds["raster"].sel(neuron=k).values)
         for k, u in enumerate(ds["unit_id"].values)}
    np.testing.assert_array_equal(r[500], [0, 3])
    np.testing.assert_array_equal(r[501], [2, 7])
    np.testing.assert_array_equal(r[502], [1, 5])
    assert ds.attrs["n_spikes_ignored"] == 1  # 0.5 s is past the epoch's end
    np.testing.assert_allclose(ds["time"].values, np.arange(10) * 0.02)
    assert ds["raster"].dtype == np.uint8


def test_bins_start_at_each_epoch_start_and_partial_bins_are_dropped():
    # epoch a: [0.003, 0.108) -> 5 whole bins of 20 ms, the partial 6th is dropped;
    # epoch b: [1.0, 1.05) -> 2 bins. Spikes in the gap and in the partial bin are ignored.
    epochs = [("b", 1.0, 1.05), ("a", 0.003, 0.108)]  # out of order on purpose
    spikes = make_spikes([0.003, 0.023, 0.104, 0.5, 1.0, 1.039, 1.041],
                         [0, 1, 0, 1, 1, 0, 1], n_units=2, epochs=epochs)
    ds = run(spikes)
    assert ds.sizes["time_bin"] == 7
    np.testing.assert_allclose(ds["time"].values,
                               [0.003, 0.023, 0.043, 0.063, 0.083, 1.0, 1.02])
    assert list(ds["epoch"].values) == ["a"] * 5 + ["b"] * 2
    np.testing.assert_array_equal(ds["raster"].values[:, 0], [1, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(ds["raster"].values[:, 1], [0, 1, 0, 0, 0, 1, 0])
    assert ds.attrs["n_spikes_ignored"] == 3  # 0.104 (partial bin), 0.5 (gap), 1.041 (partial)
    assert json.loads(ds.attrs["epochs"]) == ["a", "b"]
    only_b = run(spikes, epochs=["b"])
    assert only_b.sizes["time_bin"] == 2 and only_b.attrs["n_spikes_ignored"] == 5


def test_rate_is_spike_count_over_selected_duration():
    # two spikes of unit 0 in the same bin: one active bin, but both spikes count for the rate
    spikes = make_spikes([0.001, 0.002, 0.5, 0.91, 0.05], [0, 0, 1, 0, 1], n_units=2)
    ds = run(spikes, n_blocks=5, n_test_blocks=1, seed=4)
    assert ds["raster"].values[:, 0].sum() == 2
    np.testing.assert_allclose(ds["rate_hz"].values, [3.0, 2.0])  # 3 and 2 spikes in 1 s
    assert ds["rate_hz"].attrs["units"] == "Hz"


def test_epoch_selection_errors_name_the_epoch_and_the_choices():
    spikes = make_spikes([0.1], [0], n_units=1,
                         epochs=[("active", 0.0, 1.0), ("flash", 2.0, 2.015)])
    with pytest.raises(ValueError, match=r"unknown epoch\(s\) \['passive'\].*active.*flash"):
        run(spikes, epochs=["passive"])
    with pytest.raises(ValueError, match="no epochs selected"):
        run(spikes, epochs=[])
    with pytest.raises(ValueError, match="'flash' lasts 0.015 s, shorter than one bin"):
        run(spikes, epochs="all")
    with pytest.raises(ValueError, match="overlap"):
        run(make_spikes([0.1], [0], n_units=1, epochs=[("x", 0.0, 1.0), ("y", 0.5, 2.0)]))


def test_bad_bin_width_and_too_few_bins_rejected():
    spikes = make_spikes([0.1], [0], n_units=1)
    with pytest.raises(ValueError, match="bin_ms must be a positive"):
        run(spikes, bin_ms=0)
    with pytest.raises(ValueError, match="only 5 time bins for n_blocks = 7"):
        run(spikes, bin_ms=200, n_blocks=7)
    # a NaN spike time is an error, not a silently ignored spike
    with pytest.raises(ValueError, match="spike_time has 1 NaN"):
        run(make_spikes([0.1, np.nan, 0.3], [0, 0, 0], n_units=1))


def test_neuron_silent_in_train_is_dropped_and_recorded(caplog):
    # 0.1 s bins over 1 s -> 10 bins, 2 blocks of 5 bins; seed chosen below so block 1 is test.
    block, split, test_blocks = assign_blocks(10, n_blocks=2, n_test_blocks=1, seed=0)
    test_start = 0.5 if test_blocks == [1] else 0.0
    train_start = 0.0 if test_blocks == [1] else 0.5
    # unit 501 fires only in test bins, unit 502 never: both silent in train
    spikes = make_spikes([train_start + 0.01, test_start + 0.01, train_start + 0.3],
                         [0, 1, 3], n_units=4)
    with caplog.at_level(logging.WARNING, logger="spikerbm.binarize"):
        ds = run(spikes, bin_ms=100, n_blocks=2, n_test_blocks=1, seed=0)
    assert json.loads(ds.attrs["dropped_units"]) == [501, 502]
    np.testing.assert_array_equal(ds["unit_id"].values, [500, 503])
    assert "501" in caplog.text and "502" in caplog.text
    everyone_silent = make_spikes([test_start + 0.01], [0], n_units=2)
    with pytest.raises(ValueError, match="silent in the train split"):
        run(everyone_silent, bin_ms=100, n_blocks=2, n_test_blocks=1, seed=0)


def test_split_blocks_are_contiguous_and_seeded():
    block, split, test_blocks = assign_blocks(53, n_blocks=7, n_test_blocks=3, seed=12)
    assert np.all(np.diff(block) >= 0) and set(block) == set(range(7))
    sizes = np.bincount(block)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 53
    assert len(test_blocks) == 3
    np.testing.assert_array_equal(split == "test", np.isin(block, test_blocks))
    again = assign_blocks(53, n_blocks=7, n_test_blocks=3, seed=12)
    np.testing.assert_array_equal(again[1], split)
    choices = {tuple(assign_blocks(53, n_blocks=7, n_test_blocks=3, seed=s)[2])
               for s in range(10)}
    assert len(choices) > 1  # the seed matters
    with pytest.raises(ValueError, match="n_test_blocks"):
        assign_blocks(53, n_blocks=7, n_test_blocks=7, seed=0)


def test_binarize_split_coords_and_split_arrays():
    rng = np.random.default_rng(1)
    times = np.sort(rng.uniform(0, 2.31, 400))
    units = rng.integers(0, 5, 400)
    spikes = make_spikes(times, units, n_units=5, epochs=[("active", 0.0, 2.31)])
    ds = run(spikes, bin_ms=10, n_blocks=7, n_test_blocks=2, seed=5)
    assert ds.sizes["time_bin"] == 231
    test_blocks = json.loads(ds.attrs["test_blocks"])
    np.testing.assert_array_equal(ds["split"].values == "test",
                                  np.isin(ds["block"].values, test_blocks))
    parts = split_arrays(ds)
    raster = ds["raster"].values
    np.testing.assert_array_equal(parts["train"], raster[ds["split"].values == "train"])
    np.testing.assert_array_equal(parts["test"], raster[ds["split"].values == "test"])
    assert parts["train"].dtype == np.uint8 and parts["train"].flags["C_CONTIGUOUS"]
    assert parts["test"].shape == (int((ds["split"] == "test").sum()), 5)
    same = run(spikes, bin_ms=10, n_blocks=7, n_test_blocks=2, seed=5)
    assert same.identical(ds)


def test_unit_positions_travel_into_the_raster_and_follow_dropped_neurons(tmp_path):
    """Positions a source keeps per unit (NWB electrodes, phy channels) become coordinates on
    `neuron`, aligned with the kept neurons (a train-silent unit takes its position with it),
    and survive the netCDF round trip."""
    from spikerbm import io

    block, split, test_blocks = assign_blocks(10, n_blocks=2, n_test_blocks=1, seed=0)
    train_start = 0.0 if test_blocks == [1] else 0.5
    spikes = make_spikes([train_start + 0.01, train_start + 0.2], [0, 2], n_units=3)
    spikes["x"] = ("unit", [10.0, 20.0, 30.0], {"units": "um"})
    spikes["z"] = ("unit", [1.0, np.nan, 3.0])
    spikes["probe"] = ("unit", np.array(["probeA", "probeA", "probeB"], dtype=object))
    ds = run(spikes, bin_ms=100, n_blocks=2, n_test_blocks=1, seed=0)
    np.testing.assert_array_equal(ds["unit_id"].values, [500, 502])  # 501 silent: dropped
    np.testing.assert_array_equal(ds["x"].values, [10.0, 30.0])
    np.testing.assert_array_equal(ds["z"].values, [1.0, 3.0])
    assert list(ds["probe"].values) == ["probeA", "probeB"]
    assert ds["x"].dims == ("neuron",) and ds["x"].attrs["units"] == "um"
    back = io.read_netcdf(io.write_netcdf(ds, tmp_path / "raster.nc"))
    np.testing.assert_array_equal(back["x"].values, [10.0, 30.0])
    assert "y" not in back.coords  # absent in the source: absent in the raster
