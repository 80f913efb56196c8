"""Figures a reader relies on: one colour per sample set in every panel of Fig. 3, units and
titles, update 0 apart from update 1, area order and boundaries, distances from positions."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.colors import to_rgba
from model_run import AREAS, N_NEURONS, UNIT_IDS

from spikerbm import binarize, io, plotting, style
from spikerbm.rbm import rbm_from_dataset


@pytest.fixture(scope="module")
def stats(tiny_model_run):
    from spikerbm.statistics import compute_statistics

    raster = io.read_netcdf(tiny_model_run["raster"])
    sel = io.read_netcdf(tiny_model_run["selected"])
    splits = binarize.split_arrays(raster)
    return compute_statistics(rbm_from_dataset(sel), train=splits["train"], test=splits["test"],
                              n_samples=300, n_chains=40, burn_in_sweeps=60, thin_sweeps=2,
                              n_triplets=50, heff_bins=5, energy_bins=10, seed=1,
                              neuron_coords={"unit_id": UNIT_IDS, "area": AREAS})


def _colors_by_label(ax) -> dict[str, set]:
    out: dict[str, set] = {}
    handles, labels = ax.get_legend_handles_labels()
    for h, lab in zip(handles, labels, strict=True):
        name = lab.split(":")[0]
        if hasattr(h, "lines"):  # errorbar container: its marker line
            h = h.lines[0]
        if hasattr(h, "get_color"):
            color = h.get_color()
        else:  # scatter collection
            color = h.get_facecolor()[0]
        out.setdefault(name, set()).add(tuple(np.round(to_rgba(color)[:3], 3)))
    return out


def test_fig3_one_colour_per_set_in_every_panel_with_units(stats):
    fig = plotting.fig_statistics(stats, title="tiny: generated vs real statistics")
    seen: dict[str, set] = {}
    for ax in fig.axes:
        if ax.get_legend() is None:
            continue
        for name, colors in _colors_by_label(ax).items():
            seen.setdefault(name, set()).update(colors)
    for name in ("train", "test", "generated", "independent"):
        if name in seen:
            assert seen[name] == {tuple(np.round(to_rgba(style.COLORS[name])[:3], 3))}, (
                name, seen)
    assert {"test", "generated"} <= set(seen)
    labels = " ".join(ax.get_xlabel() + " " + ax.get_ylabel() for ax in fig.axes)
    assert "K (neurons)" in labels and "k_\\mathrm{B}T" in labels and "(per bin)" in labels
    head, *warning = fig._suptitle.get_text().split("\n")
    assert head == "tiny: generated vs real statistics"
    if stats.attrs["equilibrated"] == 0:  # (this tiny run's burn-in is short on purpose)
        assert warning[0].startswith("WARNING: samples NOT equilibrated")
        assert fig._suptitle.get_color() == "red"
    plt.close(fig)


def test_equilibration_and_raster_figures(stats, tiny_model_run):
    fig = plotting.fig_equilibration(stats, title="tiny: equilibration")
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    assert "(neurons)" in fig.axes[1].get_ylabel()
    plt.close(fig)
    with_ptt = stats.assign(ptt_acceptance=("ptt_pair", [0.9, 0.5])).assign_coords(
        ptt_update_lo=("ptt_pair", [0, 5]), ptt_update_hi=("ptt_pair", [5, 600]))
    fig = plotting.fig_equilibration(with_ptt)
    assert len(fig.axes) == 3
    assert [p.get_height() for p in fig.axes[2].patches] == [0.9, 0.5]
    plt.close(fig)
    raster = io.read_netcdf(tiny_model_run["raster"])
    fig = plotting.fig_raster(raster, stats, n_bins=40, title="tiny: raster")
    image = fig.axes[2].images[0].get_array()  # rows: neurons sorted by area
    order = np.argsort(AREAS, kind="stable")
    test = raster["raster"].values[raster["split"].values == "test"][:40]
    assert np.array_equal(np.asarray(image), test[:, order].T)
    assert [t.get_text() for t in fig.axes[2].get_yticklabels()] == ["CA1", "LGd", "VISp"]
    plt.close(fig)


def _couplings_ds(n: int = N_NEURONS, positions: dict | None = None) -> xr.Dataset:
    rng = np.random.default_rng(0)
    J = rng.normal(0, 0.1, (n, n))
    J = np.triu(J, 1) + np.triu(J, 1).T
    ds = xr.Dataset({"J": (("neuron", "neuron2"), J), "H": ("neuron", rng.normal(size=n))},
                    coords={"area": ("neuron", AREAS[:n]), "unit_id": ("neuron", UNIT_IDS[:n])})
    return ds


def test_neuron_distances_from_atlas_or_probe_positions():
    base = xr.Dataset(coords={"area": ("neuron", ["A", "B", "C"])})
    assert plotting.neuron_distances(base) is None
    atlas = base.assign_coords(x=("neuron", [0.0, 3.0, 0.0]), y=("neuron", [0.0, 4.0, 0.0]),
                               z=("neuron", [0.0, 0.0, 12.0]))
    d, what = plotting.neuron_distances(atlas)
    assert what == "atlas position" and d[0, 1] == 5.0 and d[0, 2] == 12.0
    probe = base.assign_coords(probe_vertical_position=("neuron", [20.0, 60.0, 20.0]),
                               probe_horizontal_position=("neuron", [0.0, 0.0, 0.0]),
                               probe=("neuron", ["p1", "p1", "p2"]),
                               x=("neuron", [1.0, np.nan, 2.0]))  # incomplete atlas: not used
    d, what = plotting.neuron_distances(probe)
    assert "probe" in what and d[0, 1] == 40.0 and np.isnan(d[0, 2])


def test_coupling_structure_sorted_by_area_and_distance_panel():
    ds = _couplings_ds()
    fig = plotting.fig_coupling_structure(ds, None, title="tiny: coupling structure")
    order = np.argsort(AREAS, kind="stable")
    assert np.allclose(np.asarray(fig.axes[0].images[0].get_array()),
                       ds["J"].values[np.ix_(order, order)])
    assert not fig.axes[1].axison  # no positions: a note instead of an empty plot
    assert "no neuron positions" in fig.axes[1].texts[0].get_text()
    plt.close(fig)
    raster = xr.Dataset(coords={"area": ("neuron", AREAS),
                                "x": ("neuron", np.arange(N_NEURONS) * 100.0),
                                "y": ("neuron", np.zeros(N_NEURONS)),
                                "z": ("neuron", np.zeros(N_NEURONS))})
    fig = plotting.fig_coupling_structure(ds, raster)
    ax = fig.axes[1]
    assert ax.axison and "distance (µm" in ax.get_xlabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["same area (binned mean)", "different areas (binned mean)"]
    plt.close(fig)
    small = ds.assign(J=ds["J"] * 1e-5)  # an early checkpoint: the scale goes in the labels
    fig = plotting.fig_coupling_structure(small, raster)
    fig.canvas.draw()
    assert "$10^{-6}$" in fig.axes[1].get_ylabel()  # 99th percentile of |J| ~ 2.6e-6
    assert fig.axes[1].yaxis.get_offset_text().get_text() == ""
    assert np.allclose(np.asarray(fig.axes[0].images[0].get_array()),
                       ds["J"].values[np.ix_(order, order)] * 10.0)
    plt.close(fig)


def test_hidden_units_share_per_area(tiny_model_run):
    sel = io.read_netcdf(tiny_model_run["selected"])
    fig = plotting.fig_hidden_units(sel, title="tiny: hidden units")
    share = np.asarray(fig.axes[1].images[0].get_array())  # axes: a, b, then the colorbars
    assert share.shape == (sel.sizes["hidden"], 3)
    assert np.allclose(share.sum(1), 1.0)
    W2 = sel["W"].values.astype(float) ** 2
    expect = np.stack([W2[AREAS == a].sum(0) for a in ("CA1", "LGd", "VISp")], 1)
    expect /= expect.sum(1, keepdims=True)
    assert np.allclose(np.sort(share, axis=0), np.sort(expect, axis=0))
    plt.close(fig)


def test_fig4_update_zero_apart_and_area_palette():
    n = 6
    ds = _couplings_ds(n).assign(
        J3_hist_edges=("j3_edge", np.linspace(-1e-3, 1e-3, 6)),
        J3_hist_counts=("j3_bin", [1, 5, 20, 5, 1]),
        norm=(("checkpoint", "order"), np.array([[1.0, 1e-3, 1e-6], [1.0, 1e-2, 1e-4],
                                                [0.9, 0.1, 1e-2]])),
    ).assign_coords(checkpoint=[0, 1, 100], order=[1, 2, 3])
    ds.attrs["checkpoint"] = 100
    fig = plotting.fig_couplings(ds, title="tiny: couplings")
    ax = fig.axes[4]
    xs = ax.get_lines()[0].get_xdata()
    assert xs[0] == plotting.LOGLIK_UPDATE0_X and xs[1] == 1.0  # update 0 apart from 1
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "0"
    assert "k_\\mathrm{B}T" in ax.get_ylabel()
    fig.canvas.draw()  # the J_ijk scale is in the label, no offset text beside it (Fig. 4c)
    assert "$10^{-3}$" in fig.axes[2].get_xlabel()
    assert fig.axes[2].xaxis.get_offset_text().get_text() == ""
    plt.close(fig)
    colors = style.area_colors(["VISp", "CA1", "LGd", "CA1"])
    assert list(colors) == ["CA1", "LGd", "VISp"] and len(set(colors.values())) == 3
