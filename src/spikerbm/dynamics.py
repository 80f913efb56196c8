"""Relaxation dynamics: real time course of the population activity vs MCMC of the model.

docs/methods.md §7 (Figs. 6-8). The observable is the population activity
``K(t) = sum_i v_i(t)`` and its normalised autocorrelation

    C(tau) = (<K(t) K(t + tau)> - <K>^2) / Var K,

measured on the time-ordered binarized raster (``tau`` in bins, pairs never cross an epoch
boundary or a gap in time) and on equilibrium block-Gibbs chains of the selected model (``tau``
in Monte Carlo sweeps; one sweep = ``h ~ p(h|v)`` then ``v ~ p(v|h)``). Chains started from real
data states give the relaxation of ``<K>(tau)`` and of the overlap
``q(tau) = <(1/N) sum_i s_i(0) s_i(tau)>`` with Ising spins ``s = 2v - 1``. One time rescale
(ms per sweep) maps the model's sweeps onto the data's milliseconds.

Protocol choices (all config keys of the ``dynamics`` section, see the schema):

- Estimator: :func:`spikerbm.diagnostics.autocorrelation` (every lag uses all available pairs,
  centred with the pooled mean, ``C(0) = 1``), with delete-one-block jackknife standard errors
  over ``n_se_blocks`` contiguous time blocks (data) or groups of chains (model).
- Decay times: ``tau_e``, the first 1/e crossing of ``C`` with linear interpolation between lags
  (NaN when ``C`` stays above 1/e up to the largest lag), and the integrated autocorrelation
  time of the package, :func:`spikerbm.diagnostics.integrated_time`:
  ``tau_int = 1 + 2 sum_{tau=1}^{W} C(tau)`` with Sokal's automatic window (the smallest ``W``
  with ``W >= c * tau_int(W)``, ``c = tau_int_window``). For ``C = lambda^tau``,
  ``tau_int = (1 + lambda) / (1 - lambda)``.
- Rescale: ``r`` (ms per sweep) minimises the unweighted sum of squares of
  ``C_data(tau) - C_model(tau * bin_ms / r)`` over the data lags ``fit_lag_range`` (inclusive, in
  bins), the model curve linearly interpolated between sweeps; a log grid of ``n_rescale_grid``
  values of ``r`` then a bounded scalar refinement around the best grid point. The grid spans
  from the ``r`` that maps the largest fitted lag onto ``max_lag_sweeps`` sweeps to the ``r`` that
  maps it onto one sweep.
- Baseline: the independent-site model decorrelates in one sweep (``C(tau) = 0`` for
  ``tau >= 1``); its deviation from the data is reported next to the fitted model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
import torch
import xarray as xr

from spikerbm.binarize import contiguous_segments  # one implementation (torch-free module)
from spikerbm.diagnostics import autocorrelation, check_segments, integrated_time
from spikerbm.rbm import RBM, rbm_from_dataset, rbm_from_numpy
from spikerbm.sampling import Sampler, gibbs_sample

__all__ = [
    "LagClamp",
    "RescaleFit",
    "clamp_lags",
    "contiguous_segments",
    "decay_time_1e",
    "dynamics_dataset",
    "equilibrium_autocorrelation",
    "fit_time_rescale",
    "overlap_autocorrelation",
    "raster_segments",
    "relaxation_from_states",
    "rescale_model_curve",
    "run_chains",
]

# --------------------------------------------------------------------------------------------
# Segments of the time-ordered raster
# --------------------------------------------------------------------------------------------


def raster_segments(raster: xr.Dataset, *, rtol: float = 1e-3) -> np.ndarray:
    """:func:`contiguous_segments` of a raster.nc dataset (its ``time``, ``epoch``, ``bin_ms``)."""
    for name in ("raster", "time"):
        if name not in raster.variables:
            raise ValueError(f"raster dataset lacks {name!r}; expected the raster.nc contract")
    if "bin_ms" not in raster.attrs:
        raise ValueError("raster dataset lacks the bin_ms attribute (bin width in ms)")
    epoch = raster["epoch"].values if "epoch" in raster.coords else None
    return contiguous_segments(raster["time"].values, bin_s=float(raster.attrs["bin_ms"]) / 1e3,
                               epoch=epoch, rtol=rtol)


# --------------------------------------------------------------------------------------------
# Data observables
# --------------------------------------------------------------------------------------------


def overlap_autocorrelation(v: np.ndarray, *, max_lag: int,
                            segments: np.ndarray | None = None) -> np.ndarray:
    """Data overlap ``q(tau) = <(1/N) sum_i s_i(t) s_i(t + tau)>`` with ``s = 2v - 1``.

    Parameters
    ----------
    v
        Binary raster (T, N) in time order (uint8 or bool).
    max_lag
        Largest lag (bins).
    segments
        ``[start, stop)`` ranges; pairs ``(t, t + tau)`` are only formed inside one segment.

    Returns
    -------
    numpy.ndarray
        float64 (max_lag + 1,), ``q(0) = 1``; NaN for lags with no pair. Computed exactly from
        the number of differing neurons (bit-packed XOR + popcount).
    """
    v = np.asarray(v)
    if v.ndim != 2:
        raise ValueError(f"v must be a (time, neuron) raster; got shape {v.shape}")
    if v.size and (v.min() < 0 or v.max() > 1 or (v.dtype.kind == "f" and not np.isin(
            v, (0, 1)).all())):
        raise ValueError("v must be binary (0/1)")
    n_t, n = v.shape
    segs = check_segments(segments, n_t)
    seg_id = np.full(n_t, -1, dtype=np.int64)
    for k, (s, e) in enumerate(segs):
        seg_id[s:e] = k
    packed = np.packbits(v.astype(bool), axis=1)
    q = np.full(max_lag + 1, np.nan)
    for tau in range(max_lag + 1):
        if tau >= n_t:
            break
        ok = (seg_id[: n_t - tau] == seg_id[tau:]) & (seg_id[tau:] >= 0)
        n_pairs = int(ok.sum())
        if n_pairs == 0:
            continue
        diff = np.bitwise_count(packed[: n_t - tau][ok] ^ packed[tau:][ok]).sum(dtype=np.int64)
        q[tau] = 1.0 - 2.0 * float(diff) / (n_pairs * n)
    return q


def decay_time_1e(c: np.ndarray) -> float:
    """First crossing of ``1/e`` by ``C`` (in lags), linearly interpolated; NaN if never."""
    c = np.asarray(c, dtype=np.float64)
    thr = np.exp(-1.0)
    below = np.flatnonzero(c <= thr)
    if below.size == 0 or below[0] == 0:
        return float("nan") if below.size == 0 else 0.0
    k = int(below[0])
    c0, c1 = c[k - 1], c[k]
    if not np.isfinite(c0) or not np.isfinite(c1):
        return float("nan")
    return float(k - 1 + (c0 - thr) / (c0 - c1))


# --------------------------------------------------------------------------------------------
# Gibbs chains of the model
# --------------------------------------------------------------------------------------------


def run_chains(rbm: RBM, v0: torch.Tensor, *, n_sweeps: int, generator: torch.Generator,
               observed: np.ndarray | None = None,
               record_overlap: bool = True) -> dict[str, torch.Tensor]:
    """Run block-Gibbs chains from ``v0`` and record ``K`` and the overlap with ``v0``.

    Sweeps are :meth:`spikerbm.sampling.Chains.sweep` (``h ~ p(h|v)``, then ``v ~ p(v|h)``)
    of chains in the RBM's dtype (:meth:`spikerbm.sampling.Sampler.for_model`).

    Parameters
    ----------
    rbm
        The model (its device and dtype are used).
    v0
        Initial states (n_chains, n_visible), 0/1.
    n_sweeps
        Number of sweeps; states 0..n_sweeps are recorded.
    generator
        Torch generator on the RBM's device.
    observed
        Indices of the visible units that enter ``K`` and ``q`` (default: all).
    record_overlap
        Also record the overlap ``q`` (skip it to save time when only ``K`` is needed).

    Returns
    -------
    dict
        ``K`` (n_chains, n_sweeps + 1) population activity, ``q`` (n_chains, n_sweeps + 1)
        overlap ``(1/n) sum_i s_i(0) s_i(t)`` (when recorded) and ``v`` the final states, on
        the RBM's device.
    """
    if v0.ndim != 2 or v0.shape[1] != rbm.n_visible:
        raise ValueError(f"v0 must have shape (n_chains, {rbm.n_visible}); got {tuple(v0.shape)}")
    idx = (None if observed is None
           else torch.as_tensor(np.asarray(observed), device=rbm.device, dtype=torch.long))
    n_obs = rbm.n_visible if idx is None else int(idx.numel())
    chains = Sampler.for_model(rbm).chains(v0, n_hidden=rbm.n_hidden, generator=generator)
    start = (chains.v if idx is None else chains.v[:, idx]).clone()
    k_traj = torch.empty(chains.n_chains, n_sweeps + 1, device=rbm.device, dtype=torch.float32)
    q_traj = torch.empty_like(k_traj) if record_overlap else None
    for t in range(n_sweeps + 1):
        if t:
            chains.sweep(rbm)
        cur = chains.v if idx is None else chains.v[:, idx]
        k_traj[:, t] = cur.sum(1)
        if q_traj is not None:
            q_traj[:, t] = 1.0 - 2.0 * (cur != start).sum(1).to(torch.float32) / n_obs
    out = {"K": k_traj, "v": chains.v}
    if q_traj is not None:
        out["q"] = q_traj
    return out


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed) % (2**63))


def equilibrium_autocorrelation(rbm: RBM, v0: torch.Tensor, *, burn_in_sweeps: int,
                                record_sweeps: int, max_lag: int, n_blocks: int = 20,
                                generator: torch.Generator,
                                observed: np.ndarray | None = None) -> dict[str, Any]:
    """``C(tau)`` of ``K`` on equilibrium chains, ``tau`` in sweeps.

    The chains start at ``v0``, run ``burn_in_sweeps`` unrecorded sweeps, then ``record_sweeps``
    recorded ones; every time origin of every chain enters the estimator
    (:func:`autocorrelation` with one series per chain; jackknife over groups of chains).

    Returns
    -------
    dict
        ``C``, ``se`` (max_lag + 1,) float64 and ``K_mean`` (float).
    """
    if record_sweeps <= max_lag:
        raise ValueError(
            f"record_sweeps ({record_sweeps}) must exceed the largest lag ({max_lag}); "
            "raise dynamics.record_sweeps"
        )
    if burn_in_sweeps < 0:
        raise ValueError(f"burn_in_sweeps must be >= 0; got {burn_in_sweeps}")
    v = gibbs_sample(rbm, v0, k=burn_in_sweeps, generator=generator)
    k = run_chains(rbm, v, n_sweeps=record_sweeps, generator=generator, observed=observed,
                   record_overlap=False)["K"]
    k_np = k.cpu().numpy().astype(np.float64)
    c, se = autocorrelation(k_np, max_lag=max_lag, n_blocks=n_blocks)
    return {"C": c, "se": se, "K_mean": float(k_np.mean())}


def relaxation_from_states(rbm: RBM, v0: torch.Tensor, *, n_sweeps: int,
                           generator: torch.Generator,
                           observed: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Relaxation of chains started at given (e.g. real data) states.

    Returns
    -------
    dict
        ``K``, ``K_se``, ``q``, ``q_se``: float64 arrays (n_sweeps + 1,), mean over chains of the
        population activity and of the overlap with the start state, and their standard errors
        (standard deviation over chains / sqrt(n_chains)).
    """
    out = run_chains(rbm, v0, n_sweeps=n_sweeps, generator=generator, observed=observed)
    res = {}
    n = out["K"].shape[0]
    for name in ("K", "q"):
        arr = out[name].cpu().numpy().astype(np.float64)
        res[name] = arr.mean(0)
        res[f"{name}_se"] = arr.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.full(n_sweeps + 1,
                                                                                    np.nan)
    return res


#: Fig. 6b: relaxation from high-activity states, the data bins whose K is at least this
#: quantile of K over the raster ([choice]: the top decile, an excursion well above <K>).
HIGH_K_QUANTILE = 0.9


def conditional_relaxation(k: np.ndarray, *, threshold: float, max_lag: int,
                           segments: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``K(t + tau)`` over the bins ``t`` with ``K(t) >= threshold`` (the data's relaxation
    from high-activity states; pairs stay inside one contiguous segment).

    Returns
    -------
    mean, count
        float64 arrays (max_lag + 1,): the conditional mean (NaN where no pair exists) and the
        number of (t, t + tau) pairs behind it.
    """
    k = np.asarray(k, dtype=np.float64)
    seg = check_segments(segments, k.size)
    sums, counts = np.zeros(max_lag + 1), np.zeros(max_lag + 1)
    for s, e in seg:
        ks = k[s:e]
        starts = np.flatnonzero(ks >= threshold)
        for tau in range(max_lag + 1):
            later = starts[starts + tau < ks.size] + tau
            sums[tau] += ks[later].sum()
            counts[tau] += later.size
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan), counts


# --------------------------------------------------------------------------------------------
# Time rescale
# --------------------------------------------------------------------------------------------


def rescale_model_curve(c_model: np.ndarray, *, t_ms: np.ndarray, ms_per_sweep: float
                        ) -> np.ndarray:
    """Model curve (indexed by sweep) at times ``t_ms`` with ``ms_per_sweep``; NaN past its end."""
    c_model = np.asarray(c_model, dtype=np.float64)
    sweeps = np.asarray(t_ms, dtype=np.float64) / ms_per_sweep
    return np.interp(sweeps, np.arange(c_model.size), c_model, right=np.nan)


@dataclass(frozen=True)
class RescaleFit:
    """Result of :func:`fit_time_rescale` (deviations are max |C_data - C|, RMS over the range).

    ``*_fit`` are over the fit range, ``*_all`` over every data lag >= 1 that the rescaled
    model covers; ``baseline_*`` are the independent-site model's (``C = 0`` for lag >= 1).
    ``at_bound`` is True when the best grid point is an end of the grid (the model relaxes
    too slowly for ``max_lag_sweeps``, or faster than one sweep per fitted range): the factor is
    then only a bound. ``n_sub_sweep`` counts fitted lags that map to less than one sweep
    (there the model curve is the straight line between ``C(0) = 1`` and ``C(1)``, a weak
    constraint: a model that decorrelates in one sweep can only be matched that way).
    """

    ms_per_sweep: float
    at_bound: bool
    n_sub_sweep: int
    grid_ms_per_sweep: np.ndarray
    grid_sse: np.ndarray
    c_model_rescaled: np.ndarray
    max_dev_fit: float
    max_dev_all: float
    rmse_fit: float
    baseline_max_dev_fit: float
    baseline_max_dev_all: float
    baseline_rmse_fit: float


def fit_time_rescale(c_data: np.ndarray, c_model: np.ndarray, *, bin_ms: float,
                     fit_lag_range: tuple[int, int] | list[int], n_grid: int = 400) -> RescaleFit:
    """Fit the ms-per-sweep factor mapping the model's ``C(sweeps)`` onto the data's ``C(bins)``.

    Parameters
    ----------
    c_data
        Data autocorrelation at lags 0..L (bins).
    c_model
        Model autocorrelation at lags 0..S (sweeps).
    bin_ms
        Bin width (ms).
    fit_lag_range
        Inclusive ``[lo, hi]`` data lags (bins) used in the least squares; ``1 <= lo < hi <= L``.
    n_grid
        Number of log-spaced grid values before the bounded refinement.

    Returns
    -------
    RescaleFit
    """
    c_data = np.asarray(c_data, dtype=np.float64)
    c_model = np.asarray(c_model, dtype=np.float64)
    lo, hi = (int(x) for x in fit_lag_range)
    if not 1 <= lo < hi <= c_data.size - 1:
        raise ValueError(
            f"fit_lag_range must satisfy 1 <= lo < hi <= max_lag_bins ({c_data.size - 1}); "
            f"got [{lo}, {hi}]"
        )
    if c_model.size < 3 or not np.all(np.isfinite(c_model)):
        raise ValueError("c_model needs >= 3 finite values (lags 0, 1, 2, ... sweeps)")
    if n_grid < 3:
        raise ValueError(f"n_grid must be >= 3; got {n_grid}")
    lags = np.arange(c_data.size)
    t_ms = lags * float(bin_ms)
    sel = (lags >= lo) & (lags <= hi) & np.isfinite(c_data)
    if sel.sum() < 2:
        raise ValueError(f"fewer than 2 finite data lags in fit_lag_range [{lo}, {hi}]")
    s_max = c_model.size - 1
    r_lo, r_hi = hi * bin_ms / s_max, hi * bin_ms

    def sse_of(log_r: float) -> float:
        r = float(np.clip(np.exp(log_r), r_lo, r_hi))
        pred = rescale_model_curve(c_model, t_ms=t_ms[sel], ms_per_sweep=r)
        sse = float(np.sum((c_data[sel] - pred) ** 2))
        return sse if np.isfinite(sse) else float("inf")

    grid = np.geomspace(r_lo, r_hi, n_grid)
    sse = np.array([sse_of(np.log(r)) for r in grid])
    k = int(np.argmin(sse))
    lo_b, hi_b = np.log(grid[max(k - 1, 0)]), np.log(grid[min(k + 1, n_grid - 1)])
    res = scipy.optimize.minimize_scalar(sse_of, bounds=(lo_b, hi_b), method="bounded",
                                         options={"xatol": 1e-8})
    log_r = float(res.x) if res.fun <= sse[k] else float(np.log(grid[k]))
    r = float(np.clip(np.exp(log_r), r_lo, r_hi))
    curve = rescale_model_curve(c_model, t_ms=t_ms, ms_per_sweep=r)
    dev = np.abs(c_data - curve)
    base = np.abs(c_data)
    all_sel = (lags >= 1) & np.isfinite(dev)
    base_all = (lags >= 1) & np.isfinite(base)
    return RescaleFit(
        ms_per_sweep=r,
        at_bound=bool(k in (0, n_grid - 1)),
        n_sub_sweep=int(np.sum(t_ms[sel] / r < 1.0)),
        grid_ms_per_sweep=grid,
        grid_sse=sse,
        c_model_rescaled=curve,
        max_dev_fit=float(dev[sel].max()),
        max_dev_all=float(dev[all_sel].max()),
        rmse_fit=float(np.sqrt(np.mean(dev[sel] ** 2))),
        baseline_max_dev_fit=float(base[sel].max()),
        baseline_max_dev_all=float(base[base_all].max()),
        baseline_rmse_fit=float(np.sqrt(np.mean(base[sel] ** 2))),
    )


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LagClamp:
    """Data lags the raster can support (result of :func:`clamp_lags`).

    ``max_lag_bins`` and ``fit_lag_range`` are the values used; ``clamped`` is True when either
    differs from the request, and ``reason`` then says how and why (empty otherwise).
    """

    max_lag_bins: int
    fit_lag_range: tuple[int, int]
    longest_segment_bins: int
    clamped: bool
    reason: str


def clamp_lags(max_lag_bins: int, fit_lag_range: tuple[int, int] | list[int], *,
               longest_segment_bins: int) -> LagClamp:
    """Clamp the data lags to the longest contiguous segment of the raster.

    Pairs ``(t, t + tau)`` are only formed inside one contiguous segment (no gap, one epoch), so
    lags ``>= longest_segment_bins`` have no pair at all and ``C(tau)`` would be NaN there
    (trial-structured data: 40-bin trials leave lags 0..39). The largest lag becomes
    ``longest_segment_bins - 1`` and the fit range's upper end is lowered to it.

    Parameters
    ----------
    max_lag_bins
        Requested largest data lag (bins; config ``dynamics.max_lag_bins``).
    fit_lag_range
        Requested inclusive fit range ``[lo, hi]`` (bins; ``dynamics.fit_lag_range``).
    longest_segment_bins
        Length of the longest contiguous segment (bins).

    Returns
    -------
    LagClamp

    Raises
    ------
    ValueError
        When the segments are too short for a fit (fewer than 3 lags, or ``lo`` no longer
        below the clamped ``hi``), naming the numbers and the fix.
    """
    lo, hi = (int(x) for x in fit_lag_range)
    longest = int(longest_segment_bins)
    usable = longest - 1
    if usable < 2:
        raise ValueError(
            f"the longest contiguous segment of the raster has {longest} bin(s): no "
            "autocorrelation beyond lag 1 exists in these data; the dynamics stage needs "
            "segments of at least 3 bins (check the raster's time coordinate for gaps)"
        )
    if max_lag_bins <= usable:
        return LagClamp(int(max_lag_bins), (lo, hi), longest, False, "")
    new_hi = min(hi, usable)
    if lo >= new_hi:
        raise ValueError(
            f"dynamics.fit_lag_range = [{lo}, {hi}] lies beyond the longest contiguous segment "
            f"({longest} bins, lags up to {usable}): set dynamics.fit_lag_range to [lo, hi] "
            f"with hi <= {usable}"
        )
    reason = (f"dynamics.max_lag_bins = {max_lag_bins} exceeds the longest contiguous segment "
              f"({longest} bins): lags clamped to 0..{usable} (no pair of bins lies further "
              "apart inside one segment)")
    if new_hi != hi:
        reason += f"; fit_lag_range [{lo}, {hi}] clamped to [{lo}, {new_hi}]"
    return LagClamp(usable, (lo, new_hi), longest, True, reason)


def _validate_options(*, max_lag_bins: int, max_lag_sweeps: int, n_chains: int, n_starts: int,
                      burn_in_sweeps: int, record_sweeps: int, fit_lag_range: Any,
                      n_se_blocks: int, tau_int_window: float, n_rescale_grid: int) -> None:
    checks = {
        "max_lag_bins": (max_lag_bins, 2), "max_lag_sweeps": (max_lag_sweeps, 2),
        "n_chains": (n_chains, 1), "n_starts": (n_starts, 1), "burn_in_sweeps": (burn_in_sweeps, 0),
        "n_se_blocks": (n_se_blocks, 0), "n_rescale_grid": (n_rescale_grid, 3),
    }
    for name, (value, minimum) in checks.items():
        if int(value) != value or value < minimum:
            raise ValueError(f"dynamics.{name} must be an integer >= {minimum}; got {value!r}")
    if record_sweeps <= max_lag_sweeps:
        raise ValueError(f"dynamics.record_sweeps ({record_sweeps}) must exceed "
                         f"dynamics.max_lag_sweeps ({max_lag_sweeps})")
    if len(fit_lag_range) != 2 or not 1 <= fit_lag_range[0] < fit_lag_range[1] <= max_lag_bins:
        raise ValueError(f"dynamics.fit_lag_range must be [lo, hi] with 1 <= lo < hi <= "
                         f"max_lag_bins ({max_lag_bins}); got {list(fit_lag_range)}")
    if not tau_int_window > 0:
        raise ValueError(f"dynamics.tau_int_window must be positive; got {tau_int_window!r}")


def _observed_index(model_ids: np.ndarray, raster_ids: np.ndarray, what: str) -> np.ndarray:
    pos = {int(u): i for i, u in enumerate(model_ids)}
    missing = [int(u) for u in raster_ids if int(u) not in pos]
    if missing:
        raise ValueError(f"{what} lacks units {missing[:10]} of the raster; use the {what} made "
                         "from this session")
    return np.array([pos[int(u)] for u in raster_ids], dtype=np.int64)


def dynamics_dataset(raster: xr.Dataset, selected: xr.Dataset, *, truth: xr.Dataset | None = None,
                     max_lag_bins: int = 100, max_lag_sweeps: int = 200, n_chains: int = 500,
                     n_starts: int = 500, burn_in_sweeps: int = 500, record_sweeps: int = 1000,
                     fit_lag_range: tuple[int, int] | list[int] = (1, 20), n_se_blocks: int = 20,
                     tau_int_window: float = 6.0, n_rescale_grid: int = 400, seed: int = 0,
                     device: torch.device | str = "cpu") -> xr.Dataset:
    """Relaxation dynamics of a session: data vs the selected model (dynamics.nc).

    Parameters
    ----------
    raster
        raster.nc dataset (time-ordered; all splits are used, pairs stay inside contiguous
        same-epoch runs).
    selected
        selected.nc dataset (its visible units must be the raster's neurons, same order).
    truth
        truth.nc of a synthetic session (planted RBM, attrs ``bin_ms``, ``sweeps_per_bin``), or
        None.
    max_lag_bins, max_lag_sweeps
        Largest lags of the data (bins) and of the model (sweeps). ``max_lag_bins`` (and the
        upper end of ``fit_lag_range``) is clamped to the longest contiguous segment minus one
        (:func:`clamp_lags`; attrs ``lag_clamped``, ``lag_clamp_reason``): longer lags have no
        pair of bins in the data.
    n_chains, burn_in_sweeps, record_sweeps
        Equilibrium chains (started at random data states), unrecorded then recorded sweeps.
    n_starts
        Chains started at data states (drawn uniformly from all bins) for the relaxation.
    fit_lag_range
        Inclusive data lags (bins) of the rescale fit.
    n_se_blocks
        Jackknife blocks for standard errors of ``C``.
    tau_int_window
        Sokal window constant of the integrated time.
    n_rescale_grid
        Grid size of the rescale search.
    seed
        Seed of every random draw of the stage.
    device
        Torch device for the chains.

    Returns
    -------
    xarray.Dataset
        dims ``lag_bin``, ``sweep``, ``rescale``; see docs/data-model.md (dynamics.nc).
    """
    _validate_options(max_lag_bins=max_lag_bins, max_lag_sweeps=max_lag_sweeps, n_chains=n_chains,
                      n_starts=n_starts, burn_in_sweeps=burn_in_sweeps,
                      record_sweeps=record_sweeps, fit_lag_range=fit_lag_range,
                      n_se_blocks=n_se_blocks, tau_int_window=tau_int_window,
                      n_rescale_grid=n_rescale_grid)
    device = torch.device(device)
    segments = raster_segments(raster)  # checks the raster contract (time, bin_ms)
    bin_ms = float(raster.attrs["bin_ms"])
    requested = {"max_lag_bins_requested": int(max_lag_bins),
                 "fit_lag_lo_requested": int(fit_lag_range[0]),
                 "fit_lag_hi_requested": int(fit_lag_range[1])}
    clamp = clamp_lags(max_lag_bins, fit_lag_range,
                       longest_segment_bins=int(np.max(segments[:, 1] - segments[:, 0])))
    max_lag_bins, fit_lag_range = clamp.max_lag_bins, clamp.fit_lag_range
    v = np.asarray(raster["raster"].transpose("time_bin", "neuron").values)
    n_t, n = v.shape
    if n_t < 2 * max_lag_bins:
        raise ValueError(f"raster has {n_t} bins, fewer than 2 * max_lag_bins ({max_lag_bins}); "
                         "lower dynamics.max_lag_bins")
    rbm = rbm_from_dataset(selected, device=device, dtype=torch.float32)
    if rbm.n_visible != n:
        raise ValueError(f"selected model has {rbm.n_visible} visible units but the raster has "
                         f"{n} neurons; use the selected.nc of this session")
    if "unit_id" in selected.coords and "unit_id" in raster.coords:
        if not np.array_equal(selected["unit_id"].values, raster["unit_id"].values):
            raise ValueError("selected.nc unit_id differ from raster.nc unit_id (order or "
                             "identity); use the selected.nc of this session")
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**62, size=4)

    # data side
    k_data = v.sum(1, dtype=np.int64).astype(np.float64)
    c_data, c_data_se = autocorrelation(k_data, max_lag=max_lag_bins, segments=segments,
                                        n_blocks=n_se_blocks)
    q_data = overlap_autocorrelation(v, max_lag=max_lag_bins, segments=segments)

    # model side
    v_eq0 = torch.as_tensor(v[rng.integers(0, n_t, size=n_chains)], dtype=torch.float32)
    eq = equilibrium_autocorrelation(rbm, v_eq0, burn_in_sweeps=burn_in_sweeps,
                                     record_sweeps=record_sweeps, max_lag=max_lag_sweeps,
                                     n_blocks=n_se_blocks,
                                     generator=_generator(device, seeds[0]))
    v_start = torch.as_tensor(v[rng.integers(0, n_t, size=n_starts)], dtype=torch.float32)
    rel = relaxation_from_states(rbm, v_start, n_sweeps=max_lag_sweeps,
                                 generator=_generator(device, seeds[1]))
    # relaxation from high-activity states (Fig. 6b): the data's conditional mean of K after
    # top-decile bins, and chains started at those same bins
    k_high = float(np.quantile(k_data, HIGH_K_QUANTILE))
    k_after_high, _ = conditional_relaxation(k_data, threshold=k_high, max_lag=max_lag_bins,
                                             segments=segments)
    high_bins = np.flatnonzero(k_data >= k_high)
    v_high = torch.as_tensor(v[high_bins[rng.integers(0, high_bins.size, size=n_starts)]],
                             dtype=torch.float32)
    rel_high = relaxation_from_states(rbm, v_high, n_sweeps=max_lag_sweeps,
                                      generator=_generator(device, seeds[3]))
    fit = fit_time_rescale(c_data, eq["C"], bin_ms=bin_ms, fit_lag_range=fit_lag_range,
                           n_grid=n_rescale_grid)

    lag_bin = np.arange(max_lag_bins + 1)
    sweep = np.arange(max_lag_sweeps + 1)
    c_ind = (lag_bin == 0).astype(np.float64)
    tau = {
        "tau_e_data_ms": decay_time_1e(c_data) * bin_ms,
        "tau_int_data_ms": integrated_time(c_data, c=tau_int_window) * bin_ms,
        "tau_e_model_sweeps": decay_time_1e(eq["C"]),
        "tau_int_model_sweeps": integrated_time(eq["C"], c=tau_int_window),
    }
    tau["tau_e_model_ms"] = tau["tau_e_model_sweeps"] * fit.ms_per_sweep
    tau["tau_int_model_ms"] = tau["tau_int_model_sweeps"] * fit.ms_per_sweep
    attrs: dict[str, Any] = {
        "bin_ms": bin_ms,
        "ms_per_sweep": fit.ms_per_sweep,
        "fit_lag_lo": int(fit_lag_range[0]),
        "fit_lag_hi": int(fit_lag_range[1]),
        "max_lag_bins": int(max_lag_bins),
        **requested,
        "longest_segment_bins": clamp.longest_segment_bins,
        "lag_clamped": int(clamp.clamped),
        "lag_clamp_reason": clamp.reason,
        "fit_at_bound": int(fit.at_bound),
        "fit_n_sub_sweep_lags": fit.n_sub_sweep,
        "fit_first_lag_sweeps": fit_lag_range[0] * bin_ms / fit.ms_per_sweep,
        "fit_max_abs_dev": fit.max_dev_fit,
        "fit_rmse": fit.rmse_fit,
        "all_max_abs_dev": fit.max_dev_all,
        "baseline_max_abs_dev_fit": fit.baseline_max_dev_fit,
        "baseline_rmse_fit": fit.baseline_rmse_fit,
        "baseline_max_abs_dev_all": fit.baseline_max_dev_all,
        "K_mean_data": float(k_data.mean()),
        "high_k_quantile": HIGH_K_QUANTILE,
        "high_k_threshold": k_high,
        "n_high_k_bins": int(high_bins.size),
        "K_mean_model": eq["K_mean"],
        "q_inf_data": float(np.mean((1 - 2 * v.mean(0)) ** 2)),
        "n_segments": int(segments.shape[0]),
        "n_bins": int(n_t),
        "n_neurons": int(n),
        "n_hidden": int(rbm.n_hidden),
        "estimator": "unbiased per-lag FFT autocorrelation, pooled mean, jackknife s.e.",
        "decay_time_definitions": "tau_e: 1/e crossing (linear interp.); tau_int: "
                                  f"1 + 2 sum C with Sokal window c={tau_int_window}",
        **tau,
    }
    data_vars: dict[str, Any] = {
        "C_data": ("lag_bin", c_data, {"units": "1", "long_name": "autocorrelation of K, data"}),
        "C_data_se": ("lag_bin", c_data_se, {"units": "1", "long_name": "jackknife s.e."}),
        "q_data": ("lag_bin", q_data, {"units": "1", "long_name": "overlap q(tau), data"}),
        "C_model_rescaled": ("lag_bin", fit.c_model_rescaled,
                             {"units": "1", "long_name": "model C at the data lags (rescaled)"}),
        "C_independent": ("lag_bin", c_ind,
                          {"units": "1", "long_name": "independent-site model C (baseline)"}),
        "C_model": ("sweep", eq["C"], {"units": "1", "long_name": "autocorrelation of K, model"}),
        "C_model_se": ("sweep", eq["se"], {"units": "1", "long_name": "jackknife s.e."}),
        "q_model": ("sweep", rel["q"],
                    {"units": "1", "long_name": "overlap q(tau) of chains started at data states"}),
        "q_model_se": ("sweep", rel["q_se"], {"units": "1"}),
        "K_model_from_data": ("sweep", rel["K"], {"units": "neurons",
                              "long_name": "mean K of chains started at data states"}),
        "K_model_from_data_se": ("sweep", rel["K_se"], {"units": "neurons"}),
        "K_data_from_high": ("lag_bin", k_after_high, {
            "units": "neurons", "long_name": "mean K(t + tau) after bins with K(t) >= "
            "high_k_threshold (data)"}),
        "K_model_from_high": ("sweep", rel_high["K"], {
            "units": "neurons", "long_name": "mean K of chains started at those bins"}),
        "K_model_from_high_se": ("sweep", rel_high["K_se"], {"units": "neurons"}),
        "fit_sse": ("rescale", fit.grid_sse, {"units": "1", "long_name": "rescale fit objective"}),
    }
    coords = {
        "lag_bin": ("lag_bin", lag_bin, {"units": "bins"}),
        "lag_ms": ("lag_bin", lag_bin * bin_ms, {"units": "ms"}),
        "sweep": ("sweep", sweep, {"units": "sweeps"}),
        "rescale_ms_per_sweep": ("rescale", fit.grid_ms_per_sweep, {"units": "ms/sweep"}),
    }

    if truth is not None:
        for key in ("bin_ms", "sweeps_per_bin"):
            if key not in truth.attrs:
                raise ValueError(f"truth dataset lacks the {key!r} attribute")
        t_bin_ms = float(truth.attrs["bin_ms"])
        spb = int(truth.attrs["sweeps_per_bin"])
        truth_rbm = rbm_from_numpy(truth["W"].values, truth["a"].values, truth["b"].values,
                                   device=device, dtype=torch.float32)
        observed = (_observed_index(truth["unit_id"].values, raster["unit_id"].values, "truth.nc")
                    if "unit_id" in truth.coords and "unit_id" in raster.coords else None)
        # lags in sweeps that cover both the sweep axis and the data lags (lag_ms / ms per sweep)
        truth_ms_per_sweep = t_bin_ms / spb
        max_sw = max(max_lag_sweeps, int(np.ceil(max_lag_bins * bin_ms / truth_ms_per_sweep)))
        g = _generator(device, seeds[2])
        # start at random data states (samples of the planted model; units dropped from the
        # raster start silent), then burn in
        v_t0 = torch.zeros(n_chains, truth_rbm.n_visible, dtype=torch.float32)
        obs_cols = np.arange(n) if observed is None else observed
        v_t0[:, torch.as_tensor(obs_cols)] = torch.as_tensor(
            v[rng.integers(0, n_t, size=n_chains)], dtype=torch.float32)
        teq = equilibrium_autocorrelation(truth_rbm, v_t0, burn_in_sweeps=burn_in_sweeps,
                                          record_sweeps=max(record_sweeps, 2 * max_sw),
                                          max_lag=max_sw, n_blocks=n_se_blocks, generator=g,
                                          observed=observed)
        c_truth_bins = rescale_model_curve(teq["C"], t_ms=lag_bin * bin_ms,
                                           ms_per_sweep=truth_ms_per_sweep)
        data_vars["C_truth"] = ("sweep", teq["C"][: max_lag_sweeps + 1],
                                {"units": "1", "long_name": "planted model C (simulated)"})
        data_vars["C_truth_se"] = ("sweep", teq["se"][: max_lag_sweeps + 1], {"units": "1"})
        data_vars["C_truth_bins"] = ("lag_bin", c_truth_bins,
                                     {"units": "1", "long_name": "planted model C at data lags"})
        attrs.update({
            "truth_bin_ms": t_bin_ms,
            "truth_sweeps_per_bin": spb,
            "truth_ms_per_sweep": truth_ms_per_sweep,
            "truth_K_mean": teq["K_mean"],
            "truth_tau_e_ms": decay_time_1e(teq["C"]) * truth_ms_per_sweep,
            "truth_tau_int_ms": integrated_time(teq["C"], c=tau_int_window)
            * truth_ms_per_sweep,
            "truth_max_abs_dev_data": float(np.nanmax(np.abs(c_data - c_truth_bins)[1:])),
            "ms_per_sweep_rel_error": abs(fit.ms_per_sweep / truth_ms_per_sweep - 1.0),
        })
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
