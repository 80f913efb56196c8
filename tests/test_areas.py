"""Brain-area structure of couplings (docs/methods.md §6): coarse-graining, R_ij, skewness,
E/I ratio, on hand-made values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spikerbm import areas as A
from spikerbm.couplings import pearson


def test_area_matrix_and_statistics_on_known_values():
    areas = np.array(["X"] * 3 + ["Y"] * 4 + ["Z"])  # Z too small with min 3
    n = areas.size
    J = np.zeros((n, n))
    J[:3, :3] = 0.5
    J[3:7, 3:7] = -0.2
    J[:3, 3:7] = J[3:7, :3] = 0.1
    J[0, 1] = J[1, 0] = 0.8
    np.fill_diagonal(J, 7.0)  # the diagonal must be ignored
    am = A.area_matrix(J, areas, min_area_neurons=3)
    assert list(am["region"].values) == ["X", "Y"]
    # X-X: 6 ordered off-diagonal pairs: four 0.5 and two 0.8
    assert float(am["area_J_mean"].sel(region="X", region2="X")) == pytest.approx(
        (4 * 0.5 + 2 * 0.8) / 6)
    assert float(am["area_J_mean"].sel(region="Y", region2="Y")) == pytest.approx(-0.2)
    assert float(am["area_J_abs_mean"].sel(region="Y", region2="Y")) == pytest.approx(0.2)
    assert float(am["area_J_mean"].sel(region="X", region2="Y")) == pytest.approx(0.1)
    R = np.full((n, n), 0.25)
    st = A.area_statistics(J, R, areas, min_area_neurons=3, n_bins=5)
    assert int(st["area_n_pairs"].sel(region="X")) == 3
    assert int(st["area_J_counts"].sel(region="Y").sum()) == 6
    assert float(st["area_ei_ratio"].sel(region="X")) == math.inf
    assert math.isnan(float(st["area_ei_ratio"].sel(region="Y"))) is False
    assert float(st["area_ei_ratio"].sel(region="Y")) == 0.0


def test_small_statistics():
    x = np.array([0.0, 0.0, 0.0, 3.0])
    d = x - x.mean()
    assert A.skewness(x) == pytest.approx((d**3).mean() / (d**2).mean() ** 1.5)
    assert A.skewness(-x) == pytest.approx(-A.skewness(x))
    assert A.ei_ratio(np.array([1.0, 2.0, -1.0, 0.0])) == 2.0
    J = np.array([[0.0, 0.5], [0.5, 0.0]])
    S = np.array([[0.0, 1.5], [1.5, 0.0]])
    R = A.r_statistic(J, S)
    assert R[0, 1] == pytest.approx(0.75) and np.isnan(R[0, 0])
    assert pearson(np.arange(5.0), 2 * np.arange(5.0) + 1) == pytest.approx(1.0)


def test_labels_without_an_area_never_form_a_region():
    """`root` (Allen CCF: outside every annotated structure) is kept out of the area analyses
    however many neurons carry it; the other areas' values do not change."""
    rng = np.random.default_rng(4)
    areas = np.array(["X"] * 5 + ["root"] * 7 + ["Y"] * 3)
    J = rng.normal(size=(areas.size,) * 2)
    J = J + J.T
    R = rng.random(J.shape)
    full = A.area_matrix(J, areas, min_area_neurons=3)
    kept = A.area_matrix(J, areas, min_area_neurons=3, exclude=["root", "unknown"])
    assert list(full["region"].values) == ["X", "Y", "root"]
    assert list(kept["region"].values) == ["X", "Y"]
    np.testing.assert_array_equal(kept["area_J_mean"].values,
                                  full["area_J_mean"].sel(region=["X", "Y"],
                                                          region2=["X", "Y"]).values)
    st = A.area_statistics(J, R, areas, min_area_neurons=3, n_bins=5, exclude=["root"])
    assert list(st["region"].values) == ["X", "Y"]
