"""Autocorrelation functions and THE integrated autocorrelation time (docs/methods.md §9).

One estimator of the normalised autocorrelation ``C(tau)`` of a series cut into independent
pieces (:func:`autocorrelation`: a time-ordered raster cut at gaps and epoch boundaries, or a
set of Markov chains), and one integrated autocorrelation time with one convention, used by every
stage (the equilibration check of :mod:`spikerbm.statistics` and the decay times of
:mod:`spikerbm.dynamics`):

    tau = 1 + 2 sum_{t=1}^{M} rho(t),

with the automatic window of Sokal (1997): ``M`` is the smallest lag with ``M >= c tau(M)``.
In this convention ``Var(mean of n correlated samples) = tau Var(x) / n``, so ``tau`` counts the
steps per effectively independent sample, and an AR(1) process ``x_t = phi x_{t-1} + e_t`` has
``tau = (1 + phi) / (1 - phi)``. (Sokal writes ``tau_int = 1/2 + sum rho``, half of this; the
``1 + 2 sum`` form is that of Goodman & Weare 2010 and emcee, which also use ``c = 5``.)

References: A. D. Sokal, "Monte Carlo methods in statistical mechanics: foundations and new
algorithms", in Functional Integration (Springer, 1997), section 3; N. Madras and A. D. Sokal,
J. Stat. Phys. 50, 109 (1988).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

__all__ = [
    "SOKAL_C",
    "autocorrelation",
    "check_segments",
    "integrated_autocorr_time",
    "integrated_time",
]

#: Default window constant ``c`` of Sokal's automatic window (``M >= c tau(M)``).
SOKAL_C = 5.0


def check_segments(segments: np.ndarray | None, n: int) -> np.ndarray:
    """``segments`` as an int64 (k, 2) array of sorted, disjoint ``[start, stop)`` ranges in
    ``[0, n)`` (default: one segment covering everything); ValueError otherwise."""
    if segments is None:
        return np.array([[0, n]], dtype=np.int64)
    seg = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
    if seg.size == 0 or np.any(seg[:, 0] < 0) or np.any(seg[:, 1] > n) or np.any(
            seg[:, 1] <= seg[:, 0]) or np.any(seg[1:, 0] < seg[:-1, 1]):
        raise ValueError(
            f"segments must be sorted, non-overlapping, non-empty [start, stop) ranges inside "
            f"[0, {n}); got {seg.tolist()[:5]}..."
        )
    return seg


def _lagged_sums(x: np.ndarray, segments: np.ndarray,
                 max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum over segments and t of ``x[t] x[t + tau]`` (pairs inside one segment) and pair counts."""
    lags = np.arange(max_lag + 1)
    sums = np.zeros(max_lag + 1)
    counts = np.zeros(max_lag + 1)
    lengths = segments[:, 1] - segments[:, 0]
    for length in np.unique(lengths):
        rows = np.stack([x[s:e] for s, e in segments[lengths == length]])
        nfft = scipy.fft.next_fast_len(int(length) + max_lag, real=True)  # no circular wrap
        f = scipy.fft.rfft(rows, nfft, axis=1)
        ac = scipy.fft.irfft(f.real**2 + f.imag**2, nfft, axis=1)[:, : max_lag + 1].sum(0)
        valid = lags < length
        sums[valid] += ac[valid]
        counts += rows.shape[0] * np.clip(length - lags, 0, None)
    return sums, counts


def autocorrelation(x: np.ndarray, *, max_lag: int, segments: np.ndarray | None = None,
                    n_blocks: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Normalised autocorrelation ``C(tau)``, ``tau = 0..max_lag``, with jackknife errors.

    Every lag uses all available pairs (unbiased per-lag normalisation: the lagged sum is divided
    by its number of pairs), centred with the pooled mean of all points, normalised by the lag-0
    value, so ``C(0) = 1``. Computed with FFTs per segment.

    Parameters
    ----------
    x
        Either a 1-D series (T,), cut into independent pieces by ``segments``, or a 2-D array
        (n_series, T) of independent series of equal length (e.g. Markov chains).
    max_lag
        Largest lag.
    segments
        For 1-D ``x``: ``[start, stop)`` ranges (see :func:`check_segments`); pairs are only
        formed inside a segment. Default: one segment.
    n_blocks
        Number of delete-one-block jackknife blocks: contiguous pieces of the time axis (1-D) or
        groups of series (2-D). Fewer than 2 gives NaN errors.

    Returns
    -------
    C, se
        float64 arrays (max_lag + 1,). ``C[0] = 1``. Lags with no pair are NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    if int(max_lag) != max_lag or max_lag < 0:
        raise ValueError(f"max_lag must be a non-negative integer; got {max_lag!r}")
    max_lag = int(max_lag)
    if x.ndim == 2:
        if segments is not None:
            raise ValueError("segments apply to a 1-D series only; a 2-D x is one series per row")
        n_series, length = x.shape
        segs = np.stack([np.arange(n_series) * length, np.arange(1, n_series + 1) * length], 1)
        block_of_seg = np.arange(n_series) % max(n_blocks, 1)
        x = x.reshape(-1)
    elif x.ndim == 1:
        segs = check_segments(segments, x.size)
        block_of_seg = None
    else:
        raise ValueError(f"x must be 1-D or 2-D; got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or inf")
    covered = np.concatenate([np.arange(s, e) for s, e in segs])
    xc = x - x[covered].mean()
    sums, counts = _lagged_sums(xc, segs, max_lag)
    if sums[0] <= 1e-12 * max(counts[0], 1):
        raise ValueError("the series is constant (zero variance): its autocorrelation is undefined")
    with np.errstate(invalid="ignore", divide="ignore"):
        acov = np.where(counts > 0, sums / counts, np.nan)
    c = acov / acov[0]

    # jackknife blocks: groups of series (2-D) or contiguous pieces of the covered time axis
    if block_of_seg is not None:
        blocks = [segs[block_of_seg == b] for b in range(max(n_blocks, 1))]
    else:
        # block b: the covered bins covered[edges[b]:edges[b + 1]], as a time range cut
        # against the segments (pairs straddling two blocks are left out of the blocks' sums)
        edges = np.linspace(0, covered.size, max(n_blocks, 1) + 1).round().astype(np.int64)
        blocks = []
        for e0, e1 in zip(edges[:-1], edges[1:], strict=True):
            if e1 <= e0:
                continue
            t0, t1 = covered[e0], covered[e1 - 1] + 1
            sub = np.stack([np.maximum(segs[:, 0], t0), np.minimum(segs[:, 1], t1)], 1)
            blocks.append(sub[sub[:, 1] > sub[:, 0]])
    blocks = [b for b in blocks if len(b)]
    se = np.full(max_lag + 1, np.nan)
    if len(blocks) >= 2:
        parts = [_lagged_sums(xc, b, max_lag) for b in blocks]
        bs = np.array([p[0] for p in parts])
        bc = np.array([p[1] for p in parts])
        with np.errstate(invalid="ignore", divide="ignore"):
            loo = (bs.sum(0) - bs) / (bc.sum(0) - bc)
            c_loo = loo / loo[:, :1]
        nb = len(blocks)
        se = np.sqrt((nb - 1) / nb * np.nansum((c_loo - np.nanmean(c_loo, 0)) ** 2, 0))
        se[~np.isfinite(c)] = np.nan
        se[0] = 0.0
    return c, se


def _windowed_tau(rho: np.ndarray, c: float) -> tuple[float, bool]:
    """``(tau(M), found)``: ``tau(M) = 1 + 2 sum_{t=1}^{M} rho(t)`` at the smallest ``M`` with
    ``M >= c tau(M)`` over the leading finite values of ``rho``; without such an ``M``, the
    sum up to the last finite lag (a lower bound for a positively correlated series) and
    ``found = False``."""
    if not c > 0:
        raise ValueError(f"the window constant c must be positive; got {c!r}")
    rho = np.asarray(rho, dtype=np.float64)
    finite = np.isfinite(rho)
    last = int(np.argmin(finite)) if not finite.all() else rho.size
    taus = 1.0 + 2.0 * np.cumsum(rho[1:last])  # taus[M - 1] = tau(M)
    if taus.size == 0:
        return 1.0, False
    hit = np.flatnonzero(np.arange(1, taus.size + 1) >= c * taus)
    if hit.size:
        return float(taus[hit[0]]), True
    return float(taus[-1]), False


def integrated_time(rho: np.ndarray, *, c: float = SOKAL_C) -> float:
    """Integrated autocorrelation time of a given autocorrelation function (module docstring).

    Parameters
    ----------
    rho
        ``rho(0..L)`` with ``rho(0) = 1`` (e.g. from :func:`autocorrelation`); the sum stops at
        the first non-finite value.
    c
        Window constant: ``M`` is the smallest lag with ``M >= c tau(M)``; when none qualifies
        the sum runs to the last finite lag (then the value is a lower bound).

    Returns
    -------
    float
        ``tau = 1 + 2 sum_{t=1}^{M} rho(t)``, in steps of ``rho``.
    """
    return _windowed_tau(rho, c)[0]


def integrated_autocorr_time(x: np.ndarray, *, c: float = SOKAL_C) -> tuple[float, bool]:
    """Integrated autocorrelation time of a multi-chain trace (module docstring).

    The autocorrelation is the standard (biased, 1/n) estimator about the *global* mean (over
    all chains and times), so chains stuck in different states show up as long correlations
    rather than being hidden by per-chain centring.

    Parameters
    ----------
    x
        Trace, shape (n_steps, n_chains) (a 1-D trace is one chain).
    c
        Window constant of :func:`integrated_time`.

    Returns
    -------
    tau : float
        ``1 + 2 sum_{t=1}^{M} rho(t)``, in steps of the trace.
    converged : bool
        Whether a window ``M >= c tau(M)`` exists inside the trace and the trace is at least
        ``2 c tau`` long; otherwise ``tau`` is a lower bound and must not be trusted.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"trace must have shape (n_steps, n_chains); got {x.shape}")
    n = x.shape[0]
    y = x - x.mean()
    var = float((y**2).mean())
    if not np.isfinite(var):
        raise ValueError("trace contains NaN or inf values")
    if var <= 1e-300:
        return 1.0, n >= 2  # a constant trace: nothing to decorrelate
    if n < 2:
        return 1.0, False
    chains = np.stack([np.arange(x.shape[1]) * n, np.arange(1, x.shape[1] + 1) * n], 1)
    sums, _ = _lagged_sums(y.T.reshape(-1), chains, n - 1)
    tau, found = _windowed_tau(sums / sums[0], c)
    return tau, found and n >= 2 * c * tau


def welch_z(a: np.ndarray, b: np.ndarray) -> float:
    """``(mean a - mean b) / sqrt(var a / n_a + var b / n_b)``: the two-sample z of the
    difference of means of independent per-chain averages (``+-inf`` for a difference without
    spread, 0 for none)."""
    diff = float(a.mean() - b.mean())
    se2 = a.var(ddof=1) / a.size + b.var(ddof=1) / b.size
    if se2 <= 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / math.sqrt(se2)


def equilibration_check(trace_energy: np.ndarray, trace_k: np.ndarray,
                        chain_energy: np.ndarray, chain_k: np.ndarray, *, n_data: int,
                        every: int, burn_in_sweeps: int, tau_factor: float,
                        z_max: float) -> dict:
    """The equilibrium check of a sampling run with data- and random-started chains
    (docs/methods.md §5; used by the RBM's and the pairwise model's samplers).

    Parameters
    ----------
    trace_energy, trace_k
        (n_records, n_chains): energy and population activity K of every chain, recorded every
        ``every`` sweeps from the start.
    chain_energy, chain_k
        (n_chains,): per-chain means over the kept samples; the first ``n_data`` chains
        started from data, the others at random.
    n_data, every, burn_in_sweeps
        As above; ``burn_in_sweeps`` in sweeps.
    tau_factor, z_max
        Passes when the burn-in is at least ``tau_factor`` x the larger integrated
        autocorrelation time (§9, over the records after half the burn-in) and the two start
        sets agree on mean energy and K within ``z_max`` (:func:`welch_z`).

    Returns
    -------
    dict
        ``tau_energy_sweeps``, ``tau_k_sweeps`` (sweeps), ``tau_converged`` (1/0),
        ``z_energy``, ``z_k`` and ``reasons`` (list of str; empty when the check passes).
    """
    rec_sweep = (np.arange(len(trace_energy)) + 1) * every
    window = rec_sweep > burn_in_sweeps // 2
    tau_e, conv_e = integrated_autocorr_time(trace_energy[window])
    tau_k, conv_k = integrated_autocorr_time(trace_k[window])
    tau_e, tau_k = tau_e * every, tau_k * every
    z_e = welch_z(chain_energy[:n_data], chain_energy[n_data:])
    z_k = welch_z(chain_k[:n_data], chain_k[n_data:])
    reasons = []
    if not (conv_e and conv_k):
        reasons.append(
            "autocorrelation time not reliably estimable (trace too short or not decaying: "
            f"tau_energy >= {tau_e:.3g}, tau_K >= {tau_k:.3g} sweeps)")
    tau_max = max(tau_e, tau_k)
    if burn_in_sweeps < tau_factor * tau_max:
        reasons.append(f"burn-in {burn_in_sweeps} sweeps < {tau_factor:g} x tau "
                       f"({tau_max:.3g} sweeps)")
    for name, z in (("energy", z_e), ("K", z_k)):
        if not abs(z) <= z_max:
            reasons.append(f"data- and random-started chains disagree on mean {name}: "
                           f"|z| = {abs(z):.3g} > {z_max:g}")
    return {"tau_energy_sweeps": float(tau_e), "tau_k_sweeps": float(tau_k),
            "tau_converged": int(conv_e and conv_k), "z_energy": float(z_e),
            "z_k": float(z_k), "reasons": reasons}
