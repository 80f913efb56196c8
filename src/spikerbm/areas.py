"""Brain-area structure of effective couplings (docs/methods.md §6, paper Figs. 4d and 5).

Given the pairwise couplings ``J_ij`` of the selected model, the neurons' areas and the
involvement of each pair in 3-body terms, this module computes the area x area
coarse-grained couplings (:func:`area_matrix`), the ratio ``R_ij`` of 3-body to total
involvement of a pair (:func:`r_statistic`), and per-area histograms with the skewness and the
E/I ratio of ``J_ij`` (:func:`area_statistics`). Only areas with at least ``min_area_neurons``
neurons enter (``region`` dims), and labels that name no area (``exclude``, config
``couplings.unassigned_areas``: e.g. the Allen CCF ``root`` of units outside every annotated
structure) never do: such neurons stay in the model, its couplings and every pair statistic,
but are no brain area. :func:`areas_of` looks the areas up in the raster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

__all__ = [
    "area_matrix",
    "area_statistics",
    "areas_of",
    "ei_ratio",
    "r_statistic",
    "skewness",
]


def skewness(x: np.ndarray) -> float:
    """Sample skewness ``gamma = m3 / m2^(3/2)`` (central moments; NaN if m2 = 0 or empty)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        return float("nan")
    d = x - x.mean()
    m2, m3 = float((d**2).mean()), float((d**3).mean())
    return m3 / m2**1.5 if m2 > 0 else float("nan")


def ei_ratio(x: np.ndarray) -> float:
    """``#{x > 0} / #{x < 0}`` (inf when there are no negatives, NaN when x is empty/all 0)."""
    x = np.asarray(x).ravel()
    pos, neg = int((x > 0).sum()), int((x < 0).sum())
    if neg == 0:
        return float("inf") if pos else float("nan")
    return pos / neg


def r_statistic(J: np.ndarray, pair_abs_sum: np.ndarray) -> np.ndarray:
    """``R_ij = sum_k |J_ijk| / (|J_ij| + sum_k |J_ijk|)`` (N, N); NaN on the diagonal."""
    J = np.asarray(J, dtype=np.float64)
    s = np.asarray(pair_abs_sum, dtype=np.float64)
    if J.shape != s.shape or J.ndim != 2:
        raise ValueError(f"J and pair_abs_sum must be equal (N, N); got {J.shape}, {s.shape}")
    den = np.abs(J) + s
    with np.errstate(invalid="ignore", divide="ignore"):
        R = np.where(den > 0, s / den, np.nan)
    np.fill_diagonal(R, np.nan)
    return R


def _regions(areas: np.ndarray, min_area_neurons: int, exclude: Sequence[str] = ()) -> list[str]:
    if min_area_neurons < 1:
        raise ValueError(f"min_area_neurons must be >= 1; got {min_area_neurons}")
    names, counts = np.unique(np.asarray(areas).astype(str), return_counts=True)
    skip = {str(x) for x in exclude}
    return [str(a) for a, c in zip(names, counts, strict=True)
            if c >= min_area_neurons and str(a) not in skip]


def area_matrix(J: np.ndarray, areas: np.ndarray, *, min_area_neurons: int = 30,
                exclude: Sequence[str] = ()) -> xr.Dataset:
    """Area x area coarse-grained couplings over areas with ``>= min_area_neurons`` neurons.

    Labels in ``exclude`` (no brain area, e.g. ``root``) are never a region.

    Returns
    -------
    xr.Dataset
        dims ``region``, ``region2``; ``area_J_mean`` (mean ``J_ij``, ``i in A, j in B, i != j``),
        ``area_J_abs_mean`` (mean ``|J_ij|``), ``region_size`` (neurons per region).
    """
    J = np.asarray(J, dtype=np.float64)
    areas = np.asarray(areas).astype(str)
    if J.shape != (areas.size, areas.size):
        raise ValueError(f"J shape {J.shape} does not match {areas.size} area labels")
    regs = _regions(areas, min_area_neurons, exclude)
    k = len(regs)
    mean = np.full((k, k), np.nan)
    amean = np.full((k, k), np.nan)
    off = ~np.eye(areas.size, dtype=bool)
    for p, ra in enumerate(regs):
        for q, rb in enumerate(regs):
            blk = np.ix_(areas == ra, areas == rb)
            vals = J[blk][off[blk]]
            if vals.size:
                mean[p, q] = vals.mean()
                amean[p, q] = np.abs(vals).mean()
    sizes = np.array([(areas == r).sum() for r in regs], dtype=np.int64)
    return xr.Dataset(
        {
            "area_J_mean": (("region", "region2"), mean,
                            {"long_name": "mean J_ij, i in A, j in B"}),
            "area_J_abs_mean": (("region", "region2"), amean,
                                {"long_name": "mean |J_ij|, i in A, j in B"}),
            "region_size": ("region", sizes, {"long_name": "neurons in the area"}),
        },
        coords={"region": np.array(regs, dtype=object), "region2": np.array(regs, dtype=object)},
    )


def area_statistics(J: np.ndarray, R: np.ndarray, areas: np.ndarray, *,
                    min_area_neurons: int = 30, n_bins: int = 60,
                    exclude: Sequence[str] = ()) -> xr.Dataset:
    """Per-area histograms of ``J_ij`` and ``R_ij`` (``i<j`` both in the area) and their stats.

    Labels in ``exclude`` (no brain area, e.g. ``root``) are never a region.

    Returns
    -------
    xr.Dataset
        ``area_J_counts(region, j_bin)`` with edges ``j_bin_edges(j_edge)`` (shared, symmetric),
        ``area_R_counts(region, r_bin)`` with edges ``r_bin_edges(r_edge)`` on [0, 1],
        ``area_J_skewness``, ``area_R_skewness``, ``area_ei_ratio``, ``area_n_pairs``.
    """
    J = np.asarray(J, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    areas = np.asarray(areas).astype(str)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    regs = _regions(areas, min_area_neurons, exclude)
    iu = np.triu_indices(areas.size, 1)
    same = {r: (areas[iu[0]] == r) & (areas[iu[1]] == r) for r in regs}
    jv, rv = J[iu], R[iu]
    inside = np.zeros(jv.size, dtype=bool)
    for m in same.values():
        inside |= m
    lim = float(np.abs(jv[inside]).max()) if inside.any() else 1.0
    lim = lim if lim > 0 else 1.0
    j_edges = np.linspace(-lim, lim, n_bins + 1)
    r_edges = np.linspace(0.0, 1.0, n_bins + 1)
    k = len(regs)
    jc = np.zeros((k, n_bins), dtype=np.int64)
    rc = np.zeros((k, n_bins), dtype=np.int64)
    sj, sr, ei, npairs = (np.full(k, np.nan) for _ in range(4))
    for p, r in enumerate(regs):
        x, y = jv[same[r]], rv[same[r]]
        y = y[np.isfinite(y)]
        jc[p] = np.histogram(x, bins=j_edges)[0]
        rc[p] = np.histogram(y, bins=r_edges)[0]
        sj[p], sr[p], ei[p], npairs[p] = skewness(x), skewness(y), ei_ratio(x), x.size
    return xr.Dataset(
        {
            "area_J_counts": (("region", "j_bin"), jc),
            "area_R_counts": (("region", "r_bin"), rc),
            "j_bin_edges": ("j_edge", j_edges),
            "r_bin_edges": ("r_edge", r_edges, {"units": "1"}),
            "area_J_skewness": ("region", sj, {"long_name": "skewness m3/m2^1.5 of J_ij"}),
            "area_R_skewness": ("region", sr, {"long_name": "skewness m3/m2^1.5 of R_ij"}),
            "area_ei_ratio": ("region", ei, {"long_name": "#{J_ij > 0} / #{J_ij < 0}"}),
            "area_n_pairs": ("region", npairs.astype(np.int64)),
        },
        coords={"region": np.array(regs, dtype=object)},
    )


def areas_of(selected: xr.Dataset, raster: xr.Dataset) -> np.ndarray:
    """Area label of each visible unit of ``selected``, looked up by ``unit_id`` in ``raster``.

    Raises
    ------
    ValueError
        When a unit of the model is missing from the raster.
    """
    idx = raster["unit_id"].to_index().get_indexer(np.asarray(selected["unit_id"].values))
    if (idx < 0).any():
        missing = np.asarray(selected["unit_id"].values)[idx < 0][:5].tolist()
        raise ValueError(f"units {missing} of the selected model are not in the raster: were "
                         "they produced from different data? rerun the session from raster.nc")
    return np.asarray(raster["area"].values)[idx].astype(str)
