"""Synthetic spiking sessions drawn from a known (planted) RBM, the pipeline's ground truth.

The generative model (docs/methods.md §8) is a Bernoulli RBM in float64 numpy with three kinds
of hidden units:

- ``assembly``: per area, ``assemblies_per_area`` units with strong positive weights
  (``within_area_weight``) onto a random subset of ``assembly_size`` neurons of that area;
- ``cross``: ``n_cross_assemblies`` units with weaker weights (``cross_area_weight``) onto
  ``assembly_size // 2`` neurons in each of two different areas;
- ``drive``: one "slow drive" unit coupled to every neuron with ``drive_weight`` (global up/down
  states; its metastable switching gives the population activity a slow autocorrelation).

Every non-zero weight is multiplied by ``1 + weight_jitter * U(-1, 1)``. The visible biases are
calibrated so that each neuron's exact firing probability per bin equals a target rate drawn
log-uniformly inside ``[rate_min_hz, rate_max_hz]`` (shrunk by :data:`RATE_MARGIN` at each end so
that sampled rates stay inside the range), and the hidden biases so that the assembly/cross units
are on a fraction ``hidden_activity`` of the time and the drive unit ``drive_activity``. The
calibration is exact: marginals are computed by enumerating the ``2**M`` hidden states (the planted
model has at most :data:`MAX_EXACT_HIDDEN` hidden units).

Time: the binned raster is one block-Gibbs chain of the planted RBM started from an exact
equilibrium sample, advanced ``sweeps_per_bin`` sweeps per bin of ``bin_ms``: an exact (correlated)
sample path whose stationary distribution is the planted RBM. One sweep corresponds to
``bin_ms / sweeps_per_bin`` ms of data time. Each active bin gets one spike at a uniformly random
integer millisecond inside the bin, so binarizing with the same bin width and bin-aligned start
recovers the raster exactly.

Epochs: the ``n_bins = floor(duration_s * 1000 / bin_ms)`` bins are split into ``len(epochs)``
contiguous, bin-aligned epochs of (nearly) equal length, named by ``epochs`` (default a single
``"active"`` epoch covering ``[0, n_bins * bin_ms)``).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from scipy.special import expit, logit

if TYPE_CHECKING:
    import torch

# torch (the exact enumeration, the Gibbs chains) is imported inside the functions that need it,
# so that the workflow can check synthetic parameter names (check_params) at DAG time without
# loading it.

#: Hidden layers up to this size are enumerated exactly for the calibration (2**M states).
MAX_EXACT_HIDDEN = 16
#: Target rates are drawn log-uniformly in [rate_min * (1 + m), rate_max / (1 + m)].
RATE_MARGIN = 0.1
#: Largest change of any bias in one Newton step of :func:`calibrate_biases` (logit units).
MAX_NEWTON_STEP = 2.0
#: Calibrated biases are rounded to this many decimals (platform-independent planted model).
BIAS_DECIMALS = 8
#: Rows of hidden states processed at once in the exact enumeration.
_CHUNK_STATES = 4096
#: Bins of uniforms drawn at once in :func:`simulate_chain`.
_CHUNK_STEPS = 2048


# ---------------------------------------------------------------------------------------------
# Exact quantities by enumeration of the hidden layer
# ---------------------------------------------------------------------------------------------
def _hidden_states(n_hidden: int, start: int, stop: int) -> np.ndarray:
    """Hidden states with codes ``start..stop-1`` (:func:`spikerbm.exact.binary_states`),
    shape (stop-start, M), float64."""
    from spikerbm.exact import binary_states

    return binary_states(n_hidden, start, stop).numpy()


def _log_hidden_weights(W: np.ndarray, a: np.ndarray, b: np.ndarray,
                        h: np.ndarray) -> np.ndarray:
    """Unnormalised ``log p(h) = b.h + sum_i softplus(a_i + (W h)_i)`` for a batch of states."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(h @ W.T + a)
    return h @ b + F.softplus(x).sum(dim=1).numpy()


def _enumerate(W: np.ndarray, a: np.ndarray, b: np.ndarray, *,
               keep_sigma: bool = False) -> dict[str, Any]:
    """One pass over the ``2**M`` hidden states: log Z, exact marginals and, optionally, the
    normalised state weights and ``sigmoid(a + W h)`` for every state (float32)."""
    import torch
    import torch.nn.functional as F

    n_hidden = W.shape[1]
    if n_hidden > MAX_EXACT_HIDDEN:
        raise ValueError(
            f"exact enumeration needs 2**M hidden states; M = {n_hidden} > "
            f"MAX_EXACT_HIDDEN = {MAX_EXACT_HIDDEN}: use fewer hidden units"
        )
    total = 1 << n_hidden
    Wt, at, bt = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
                  for x in (W, a, b))
    logw = torch.empty(total, dtype=torch.float64)
    sig = torch.empty((total, W.shape[0]), dtype=torch.float32) if keep_sigma else None
    parts = []  # per chunk: (max log weight, sum w, sum w sigma, sum w sigma^2, sum w h)
    for start in range(0, total, _CHUNK_STATES):
        stop = min(total, start + _CHUNK_STATES)
        h = torch.from_numpy(_hidden_states(n_hidden, start, stop))
        x = torch.addmm(at, h, Wt.T)
        lw = h @ bt + F.softplus(x).sum(dim=1)
        logw[start:stop] = lw
        s = torch.sigmoid(x)
        if sig is not None:
            sig[start:stop] = s
        m = lw.max()
        w = torch.exp(lw - m)
        parts.append((m, w.sum(), w @ s, w @ (s * s), w @ h))
    m_all = max(p[0] for p in parts)
    scale = [torch.exp(p[0] - m_all) for p in parts]
    z = sum(c * p[1] for c, p in zip(scale, parts, strict=True))
    out: dict[str, Any] = {
        "log_z": float(m_all + torch.log(z)),
        "v": (sum(c * p[2] for c, p in zip(scale, parts, strict=True)) / z).numpy(),
        "v2": (sum(c * p[3] for c, p in zip(scale, parts, strict=True)) / z).numpy(),
        "h": (sum(c * p[4] for c, p in zip(scale, parts, strict=True)) / z).numpy(),
    }
    if keep_sigma:
        out["weights"] = torch.exp(logw - out["log_z"])
        out["sigma"] = sig
    return out


def exact_marginals(W: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Exact marginals of an RBM by enumerating its hidden layer.

    Parameters
    ----------
    W, a, b
        RBM parameters, shapes (N, M), (N,), (M,); float64. ``M <= MAX_EXACT_HIDDEN``.

    Returns
    -------
    dict
        ``v`` (N,) = p(v_i = 1), ``h`` (M,) = p(h_mu = 1), ``log_z`` (float, the log partition
        function, exact).
    """
    W, a, b = (np.asarray(x, dtype=np.float64) for x in (W, a, b))
    out = _enumerate(W, a, b)
    return {"v": out["v"], "h": out["h"], "log_z": out["log_z"]}


def equilibrium_sample(W: np.ndarray, a: np.ndarray, b: np.ndarray, *, n_samples: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Exact independent samples of the RBM's visible layer (hidden layer enumerated).

    Draws ``h`` from its exact marginal ``p(h)`` then ``v ~ p(v | h)``.

    Returns
    -------
    np.ndarray
        uint8, shape (n_samples, N).
    """
    W, a, b = (np.asarray(x, dtype=np.float64) for x in (W, a, b))
    n_hidden = W.shape[1]
    if n_hidden > MAX_EXACT_HIDDEN:
        raise ValueError(
            f"equilibrium_sample enumerates 2**M hidden states; M = {n_hidden} > "
            f"MAX_EXACT_HIDDEN = {MAX_EXACT_HIDDEN}"
        )
    logw = np.concatenate([
        _log_hidden_weights(W, a, b, _hidden_states(n_hidden, s, min(1 << n_hidden,
                                                                      s + _CHUNK_STATES)))
        for s in range(0, 1 << n_hidden, _CHUNK_STATES)
    ])
    p = np.exp(logw - logw.max())
    p /= p.sum()
    codes = rng.choice(p.size, size=n_samples, p=p)
    h = ((codes[:, None] >> np.arange(n_hidden)) & 1).astype(np.float64)
    pv = expit(h @ W.T + a)
    return (rng.random(pv.shape) < pv).astype(np.uint8)


def _hessian_vector(state: dict[str, Any], xa: np.ndarray, xb: np.ndarray,
                    hidden: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``Cov(s) @ x`` for ``s = (v, h)`` under the model, from an enumeration with sigma kept.

    Uses ``E[v_i (v.xa + h.xb) | h] = s_i (s.xa + h.xb) + s_i (1 - s_i) xa_i`` with
    ``s = sigmoid(a + W h)`` and ``E[h_mu (v.xa + h.xb) | h] = h_mu (s.xa + h.xb)``.
    """
    import torch

    w, sig = state["weights"], state["sigma"]
    y = (sig @ torch.from_numpy(xa.astype(np.float32))).double() + hidden @ torch.from_numpy(xb)
    wy = w * y
    mx = state["v"] @ xa + state["h"] @ xb
    ha = (wy.float() @ sig).double().numpy() + (state["v"] - state["v2"]) * xa - state["v"] * mx
    hb = (wy @ hidden).numpy() - state["h"] * mx
    return ha, hb


def calibrate_biases(W: np.ndarray, *, p_target: np.ndarray, q_target: np.ndarray,
                     a0: np.ndarray | None = None, b0: np.ndarray | None = None,
                     tol: float = 1e-6, max_iter: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Biases ``(a, b)`` whose exact model marginals match ``p_target`` and ``q_target``.

    Minimises the convex function ``log Z(a, b) - a.p* - b.q*`` (moment matching: the
    maximum-entropy condition for the biases at fixed ``W``) by Newton's method: exact gradient
    ``<s> - s*`` and exact Hessian-vector products ``Cov(s) x`` (``s = (v, h)``) by enumerating
    the hidden layer, Jacobi-preconditioned conjugate gradients, backtracking line search on the
    exact objective.

    Parameters
    ----------
    W
        Weights (N, M) with ``M <= MAX_EXACT_HIDDEN``.
    p_target, q_target
        Target ``p(v_i = 1)`` (N,) and ``p(h_mu = 1)`` (M,), in (0, 1).
    a0, b0
        Starting biases (default ``a0 = logit(p*) - W q*`` and
        ``b0 = logit(q*) - sum_i [softplus(a0_i + W_i mu) - softplus(a0_i)]``, mean-field-like
        guesses).
    tol
        Stop when ``max |logit(marginal) - logit(target)| < tol``.

    Raises
    ------
    RuntimeError
        When ``tol`` is not reached in ``max_iter`` Newton steps.
    """
    import torch

    W = np.asarray(W, dtype=np.float64)
    p_target, q_target = np.asarray(p_target, float), np.asarray(q_target, float)
    for name, t in (("p_target", p_target), ("q_target", q_target)):
        if np.any(t <= 0) or np.any(t >= 1):
            raise ValueError(f"{name} must lie strictly inside (0, 1); got {t}")
    lp, lq = logit(p_target), logit(q_target)
    a = lp - W @ q_target if a0 is None else np.array(a0, dtype=np.float64)
    if b0 is None:  # exact for one hidden unit on top of independent neurons with biases a
        b = lq - (np.logaddexp(0.0, a[:, None] + W) - np.logaddexp(0.0, a)[:, None]).sum(0)
    else:
        b = np.array(b0, dtype=np.float64)
    hidden = torch.from_numpy(_hidden_states(W.shape[1], 0, 1 << W.shape[1]))

    def objective(st: dict[str, Any], a: np.ndarray, b: np.ndarray) -> float:
        return st["log_z"] - a @ p_target - b @ q_target

    state = _enumerate(W, a, b, keep_sigma=True)
    err = np.inf
    for _ in range(max_iter):
        ga, gb = state["v"] - p_target, state["h"] - q_target
        err = max(np.abs(logit(state["v"]) - lp).max(),
                  np.abs(logit(state["h"]) - lq).max(initial=0.0))
        if err < tol:
            return a, b
        # Newton direction: solve Cov(s) d = -g by preconditioned CG (inexact Newton).
        g = np.concatenate([ga, gb])
        diag = np.concatenate([state["v"] * (1 - state["v"]), state["h"] * (1 - state["h"])])
        d = np.zeros_like(g)
        r = -g
        z = r / diag
        p = z.copy()
        rz = r @ z
        gnorm = np.linalg.norm(g)
        for _cg in range(200):
            ha, hb = _hessian_vector(state, p[: a.size], p[a.size:], hidden)
            hp = np.concatenate([ha, hb])
            alpha = rz / (p @ hp)
            d += alpha * p
            r -= alpha * hp
            if np.linalg.norm(r) < min(0.1, np.sqrt(gnorm)) * gnorm:  # inexact Newton
                break
            z = r / diag
            rz, rz_old = r @ z, rz
            p = z + (rz / rz_old) * p
        # Damped Newton: no bias moves by more than MAX_NEWTON_STEP per iteration, then
        # backtracking until the exact objective decreases enough (Armijo). Once the predicted
        # decrease is below the objective's float64 resolution (quadratic-convergence regime,
        # tiny steps), the full step is taken.
        d *= min(1.0, MAX_NEWTON_STEP / np.abs(d).max())
        f0, slope, step = objective(state, a, b), g @ d, 1.0
        negligible = -slope < 1e-10 * max(1.0, abs(f0))
        while True:
            a1, b1 = a + step * d[: a.size], b + step * d[a.size:]
            new = _enumerate(W, a1, b1, keep_sigma=True)
            f1 = objective(new, a1, b1)
            if np.isfinite(f1) and (negligible or f1 <= f0 + 1e-4 * step * slope):
                break
            step /= 2
            if step < 1e-6:
                raise RuntimeError("bias calibration: line search failed (no descent)")
        a, b, state = a1, b1, new
    raise RuntimeError(
        f"bias calibration did not converge (max logit error {err:.2e} > {tol}); the planted "
        "weights are probably too strong: lower within_area_weight / drive_weight"
    )


# ---------------------------------------------------------------------------------------------
# Planted model and its Gibbs dynamics
# ---------------------------------------------------------------------------------------------
def area_names(n_areas: int) -> list[str]:
    """Names of the synthetic areas: ``A1, A2, ...``."""
    return [f"A{k + 1}" for k in range(n_areas)]


def planted_rbm(*, n_neurons: int, n_areas: int, assemblies_per_area: int, assembly_size: int,
                within_area_weight: float, cross_area_weight: float, n_cross_assemblies: int,
                drive_weight: float, rate_min_hz: float, rate_max_hz: float, bin_ms: float,
                hidden_activity: float, drive_activity: float, weight_jitter: float,
                rng: np.random.Generator) -> xr.Dataset:
    """Build and calibrate the planted RBM (see the module docstring for the structure).

    Returns
    -------
    xr.Dataset
        The truth contract without provenance: dims ``neuron``, ``hidden_true``; ``W``, ``a``,
        ``b`` (float64), ``membership`` (uint8, 1 where ``W != 0``), ``target_rate_hz``,
        ``rate_hz`` (exact model rate, Hz), ``p_spike`` (exact per-bin probability),
        ``hidden_activity`` (exact p(h=1)); coords ``unit_id``, ``area`` (neuron),
        ``hidden_kind``, ``hidden_area`` (hidden_true); attrs ``bin_ms``, ``log_z``.
    """
    _check_structure(n_neurons=n_neurons, n_areas=n_areas,
                     assemblies_per_area=assemblies_per_area, assembly_size=assembly_size,
                     n_cross_assemblies=n_cross_assemblies, rate_min_hz=rate_min_hz,
                     rate_max_hz=rate_max_hz, bin_ms=bin_ms, hidden_activity=hidden_activity,
                     drive_activity=drive_activity, weight_jitter=weight_jitter)
    names = area_names(n_areas)
    area_idx = (np.arange(n_neurons) * n_areas) // n_neurons  # contiguous, near-equal areas
    members = [np.flatnonzero(area_idx == k) for k in range(n_areas)]
    columns: list[np.ndarray] = []
    kinds: list[str] = []
    hidden_area: list[str] = []

    def jitter(size: int) -> np.ndarray:
        return 1.0 + weight_jitter * rng.uniform(-1.0, 1.0, size)

    for k in range(n_areas):  # every area holds >= assembly_size neurons (_check_structure)
        size = assembly_size
        for _ in range(assemblies_per_area):
            w = np.zeros(n_neurons)
            idx = rng.choice(members[k], size=size, replace=False)
            w[idx] = within_area_weight * jitter(size)
            columns.append(w)
            kinds.append("assembly")
            hidden_area.append(names[k])
    half = max(1, assembly_size // 2)
    for _ in range(n_cross_assemblies):
        pair = np.sort(rng.choice(n_areas, size=2, replace=False))
        w = np.zeros(n_neurons)
        for k in pair:
            idx = rng.choice(members[k], size=half, replace=False)
            w[idx] = cross_area_weight * jitter(half)
        columns.append(w)
        kinds.append("cross")
        hidden_area.append("|".join(names[k] for k in pair))
    columns.append(drive_weight * jitter(n_neurons))
    kinds.append("drive")
    hidden_area.append("all")
    W = np.stack(columns, axis=1)

    dt = bin_ms / 1000.0
    lo, hi = rate_min_hz * (1 + RATE_MARGIN), rate_max_hz / (1 + RATE_MARGIN)
    target_rate = np.exp(rng.uniform(np.log(lo), np.log(hi), n_neurons))
    q_target = np.where(np.array(kinds) == "drive", drive_activity, hidden_activity)
    a, b = calibrate_biases(W, p_target=target_rate * dt, q_target=q_target, tol=1e-9)
    # Rounded so that round-off differences of the Newton path (BLAS, thread counts) do not
    # change the planted model, hence the whole sample path, across machines.
    a, b = np.round(a, BIAS_DECIMALS), np.round(b, BIAS_DECIMALS)
    marg = exact_marginals(W, a, b)

    vis, hid = "neuron", "hidden_true"
    return xr.Dataset(
        {
            "W": ((vis, hid), W, {"long_name": "planted weights"}),
            "a": (vis, a, {"long_name": "planted visible biases"}),
            "b": (hid, b, {"long_name": "planted hidden biases"}),
            "membership": ((vis, hid), (W != 0).astype(np.uint8),
                           {"long_name": "1 where the neuron belongs to the hidden unit"}),
            "target_rate_hz": (vis, target_rate, {"units": "Hz"}),
            "p_spike": (vis, marg["v"], {"long_name": "model p(v_i = 1) per bin"}),
            "rate_hz": (vis, marg["v"] / dt, {"units": "Hz", "long_name": "model rate"}),
            "hidden_activity": (hid, marg["h"], {"long_name": "model p(h_mu = 1)"}),
        },
        coords={
            "unit_id": (vis, 1000 + np.arange(n_neurons, dtype=np.int64)),
            "area": (vis, np.array([names[k] for k in area_idx], dtype=object)),
            "hidden_kind": (hid, np.array(kinds, dtype=object)),
            "hidden_area": (hid, np.array(hidden_area, dtype=object)),
        },
        attrs={"bin_ms": float(bin_ms), "log_z": marg["log_z"],
               "area_names": json.dumps(names)},
    )


def simulate_chain(W: np.ndarray, a: np.ndarray, b: np.ndarray, *, n_bins: int,
                   sweeps_per_bin: int, n_chains: int = 1, rng: np.random.Generator,
                   v0: np.ndarray | None = None) -> np.ndarray:
    """Block-Gibbs chains of an RBM, recording the visible state once every ``sweeps_per_bin``.

    One sweep is ``h ~ p(h | v)`` then ``v ~ p(v | h)`` (docs/methods.md §2), run by
    :class:`spikerbm.sampling.PersistentChains` in float64 with numpy's uniforms (in the draw
    order of :class:`_BlockUniforms`). Recorded state ``t`` is the visible state after
    ``(t + 1) * sweeps_per_bin`` sweeps from ``v0``.

    Parameters
    ----------
    W, a, b
        RBM parameters, shapes (N, M), (N,), (M,) (used in float64).
    n_bins
        Number of recorded states per chain.
    sweeps_per_bin
        Gibbs sweeps between recorded states (>= 1).
    n_chains
        Independent chains, simulated together.
    rng
        Random generator (the only source of randomness).
    v0
        Initial visible states, shape (n_chains, N) or (N,); default ``Bernoulli(sigmoid(a))``.
        Pass an :func:`equilibrium_sample` to get a stationary path.

    Returns
    -------
    np.ndarray
        uint8, shape (n_chains, n_bins, N).
    """
    import torch

    from spikerbm.rbm import rbm_from_numpy
    from spikerbm.sampling import Sampler

    W, a, b = (np.asarray(x, dtype=np.float64) for x in (W, a, b))
    n, m = W.shape
    if a.shape != (n,) or b.shape != (m,):
        raise ValueError(f"shapes disagree: W {W.shape}, a {a.shape}, b {b.shape}")
    if n_bins < 1 or sweeps_per_bin < 1 or n_chains < 1:
        raise ValueError(
            f"n_bins, sweeps_per_bin and n_chains must be >= 1; got {n_bins}, "
            f"{sweeps_per_bin}, {n_chains}"
        )
    if v0 is None:
        v = (rng.random((n_chains, n)) < expit(a)).astype(np.float64)
    else:
        v = np.broadcast_to(np.asarray(v0, dtype=np.float64), (n_chains, n)).copy()
    rbm = rbm_from_numpy(W, a, b, dtype=torch.float64)
    uniforms = _BlockUniforms(rng, n_steps=n_bins * sweeps_per_bin, n_chains=n_chains,
                              n_visible=n, n_hidden=m)
    chains = Sampler.for_model(rbm).chains(torch.from_numpy(v), n_hidden=m, generator=uniforms)
    out = np.empty((n_chains, n_bins, n), dtype=np.uint8)
    for t in range(n_bins):
        chains.sweep(rbm, k=sweeps_per_bin)
        out[:, t] = chains.v.numpy()
    return out


class _BlockUniforms:
    """The uniforms of :func:`simulate_chain` in numpy's draw order of the planted raster.

    For each block of :data:`_CHUNK_STEPS` sweeps, ``rng`` draws all hidden uniforms of the
    block, (steps, chains, M), then all visible ones, (steps, chains, N); the chains ask for one
    hidden then one visible slice per sweep. (This order makes the synthetic sessions of every
    version since the first identical: ``u < sigmoid(x)`` is the earlier ``logit(u) < x``.)
    """

    def __init__(self, rng: np.random.Generator, *, n_steps: int, n_chains: int,
                 n_visible: int, n_hidden: int) -> None:
        self.rng, self.n_steps = rng, n_steps
        self.shapes = ((n_chains, n_hidden), (n_chains, n_visible))
        self.step, self.half = 0, 0
        self.block: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, out: torch.Tensor) -> None:
        import torch

        s = self.step % _CHUNK_STEPS
        if s == 0 and self.half == 0:
            size = min(_CHUNK_STEPS, self.n_steps - self.step)
            self.block = (self.rng.random((size, *self.shapes[0])),
                          self.rng.random((size, *self.shapes[1])))
        out.copy_(torch.from_numpy(self.block[self.half][s]))
        self.step += self.half
        self.half ^= 1


def raster_to_spikes(raster: np.ndarray, *, bin_ms: int, t0_ms: int = 0,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One spike per active bin, at a uniformly random integer ms inside the bin.

    Parameters
    ----------
    raster
        (n_bins, N) in {0, 1}; bin ``t`` covers ``[t0_ms + t * bin_ms, t0_ms + (t+1) * bin_ms)``.
    bin_ms
        Integer bin width in ms.

    Returns
    -------
    spike_time, spike_unit
        float64 seconds (sorted ascending, ties by unit) and int32 neuron indices.
    """
    t_idx, unit = np.nonzero(raster)
    ms = t0_ms + t_idx.astype(np.int64) * int(bin_ms) + rng.integers(0, int(bin_ms), t_idx.size)
    order = np.lexsort((unit, ms))
    return ms[order] / 1000.0, unit[order].astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------
def _check_structure(*, n_neurons: int, n_areas: int, assemblies_per_area: int,
                     assembly_size: int, n_cross_assemblies: int, rate_min_hz: float,
                     rate_max_hz: float, bin_ms: float, hidden_activity: float,
                     drive_activity: float, weight_jitter: float) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ValueError(f"synthetic: {msg}")

    for name, value in (("n_neurons", n_neurons), ("n_areas", n_areas),
                        ("assemblies_per_area", assemblies_per_area),
                        ("assembly_size", assembly_size),
                        ("n_cross_assemblies", n_cross_assemblies)):
        need(isinstance(value, int | np.integer) and not isinstance(value, bool),
             f"{name} must be an integer; got {value!r}")
    need(n_areas >= 1, f"n_areas must be >= 1; got {n_areas}")
    need(n_neurons >= 2 * n_areas,
         f"n_neurons ({n_neurons}) must be >= 2 * n_areas ({2 * n_areas}): each area needs "
         "at least two neurons")
    need(assemblies_per_area >= 0 and n_cross_assemblies >= 0,
         "assemblies_per_area and n_cross_assemblies must be >= 0")
    need(assembly_size >= 1, f"assembly_size must be >= 1; got {assembly_size}")
    smallest = n_neurons // n_areas  # contiguous, near-equal areas
    need(assemblies_per_area + n_cross_assemblies == 0 or assembly_size <= smallest,
         f"assembly_size = {assembly_size} is larger than the smallest area ({smallest} neurons "
         f"= n_neurons // n_areas = {n_neurons} // {n_areas}): an assembly lies inside one area; "
         f"lower assembly_size to at most {smallest}, raise n_neurons or lower n_areas")
    need(n_cross_assemblies == 0 or n_areas >= 2,
         f"n_cross_assemblies = {n_cross_assemblies} needs n_areas >= 2 (got {n_areas}); "
         "set n_cross_assemblies=0 for a single area")
    need(0 < rate_min_hz < rate_max_hz,
         f"need 0 < rate_min_hz < rate_max_hz; got {rate_min_hz}, {rate_max_hz}")
    need(rate_max_hz * bin_ms / 1000.0 < 1.0,
         f"rate_max_hz * bin width = {rate_max_hz * bin_ms / 1000.0:g} must be < 1 "
         "(a bin holds at most one spike): lower rate_max_hz or bin_ms")
    need(0 < hidden_activity < 1 and 0 < drive_activity < 1,
         f"hidden_activity and drive_activity must lie in (0, 1); got {hidden_activity}, "
         f"{drive_activity}")
    need(0 <= weight_jitter < 1, f"weight_jitter must lie in [0, 1); got {weight_jitter}")
    n_hidden = n_areas * assemblies_per_area + n_cross_assemblies + 1
    need(n_hidden <= MAX_EXACT_HIDDEN,
         f"the planted RBM would have n_areas * assemblies_per_area + n_cross_assemblies + 1 = "
         f"{n_hidden} hidden units; at most {MAX_EXACT_HIDDEN} are allowed (its marginals are "
         "computed exactly by enumerating 2**M hidden states): lower assemblies_per_area, "
         "n_cross_assemblies or n_areas")


def _check_session(*, duration_s: float, bin_ms: float, sweeps_per_bin: int,
                   epochs: str | Sequence[str]) -> tuple[list[str], int, int]:
    """Check the session's time axis; return (epochs, bin_ms, n_bins)."""
    if isinstance(epochs, str):
        epochs = [epochs]
    epochs = [str(e) for e in epochs]
    if not epochs or len(set(epochs)) != len(epochs) or any(not e for e in epochs):
        raise ValueError(f"synthetic: epochs must be distinct non-empty names; got {epochs!r}")
    if float(bin_ms) != int(bin_ms) or int(bin_ms) < 1:
        raise ValueError(
            f"synthetic: bin_ms must be a positive whole number of ms (spike times have 1 ms "
            f"resolution); got {bin_ms!r}"
        )
    bin_ms = int(bin_ms)
    if not isinstance(sweeps_per_bin, int | np.integer) or sweeps_per_bin < 1:
        raise ValueError(f"synthetic: sweeps_per_bin must be an integer >= 1; got "
                         f"{sweeps_per_bin!r}")
    n_bins = int(round(float(duration_s) * 1000.0, 6) // bin_ms)
    if n_bins < len(epochs):
        raise ValueError(
            f"synthetic: duration_s = {duration_s} gives {n_bins} bins of {bin_ms} ms, fewer "
            f"than the {len(epochs)} epoch(s) (each needs at least one bin); raise duration_s "
            f"to at least {len(epochs) * bin_ms / 1000:g}"
        )
    return epochs, bin_ms, n_bins


def generate_session(*, n_neurons: int = 160, n_areas: int = 4, duration_s: float = 1800.0,
                     bin_ms: int = 20, sweeps_per_bin: int = 1, rate_min_hz: float = 1.0,
                     rate_max_hz: float = 20.0, assemblies_per_area: int = 3,
                     assembly_size: int = 12, within_area_weight: float = 1.6,
                     cross_area_weight: float = 0.5, n_cross_assemblies: int = 2,
                     drive_weight: float = 0.35, hidden_activity: float = 0.1,
                     drive_activity: float = 0.5, weight_jitter: float = 0.25,
                     epochs: Sequence[str] = ("active",), seed: int,
                     session_id: str = "synthetic",
                     return_raster: bool = False) -> tuple[xr.Dataset, ...]:
    """A synthetic session: spike trains drawn from a planted RBM (module docstring).

    Parameters
    ----------
    n_neurons, n_areas
        Population size and number of areas (contiguous, near-equal; named ``A1, A2, ...``).
    duration_s
        Session length; rounded down to a whole number of bins.
    bin_ms
        Planted time step (integer ms; spikes have 1 ms resolution).
    sweeps_per_bin
        Gibbs sweeps of the planted chain per bin (one sweep = ``bin_ms / sweeps_per_bin`` ms).
    rate_min_hz, rate_max_hz
        Range of the neurons' firing rates.
    assemblies_per_area, assembly_size, within_area_weight
        Within-area assemblies: count per area, neurons per assembly, weight.
    n_cross_assemblies, cross_area_weight
        Hidden units spanning two areas (``assembly_size // 2`` neurons in each) and their weight.
    drive_weight
        Weight of the global slow-drive unit onto every neuron. Its metastability grows with
        ``n_neurons * drive_weight**2`` (0.35: the population activity's autocorrelation is
        ~0.1 at 10 bins with 160 neurons, ~0.5 with 1500); lower it for faster-mixing data.
    hidden_activity, drive_activity
        Calibrated fraction of time the assembly/cross units and the drive unit are on.
    weight_jitter
        Relative jitter of every planted weight, ``w * (1 + weight_jitter * U(-1, 1))``.
    epochs
        Names of the contiguous, equal-length epochs the session is split into.
    seed
        Seed of everything (structure, chain, spike placement use independent streams).
    session_id
        Stored in the attributes.
    return_raster
        Also return the planted binary raster (n_bins, n_neurons) uint8 (for tests).

    Returns
    -------
    spikes, truth[, raster]
        Datasets in the ``spikes.nc`` and ``truth.nc`` contracts (docs/data-model.md), without
        provenance attributes (the caller adds them when writing).
    """
    epochs, bin_ms, n_bins = _check_session(duration_s=duration_s, bin_ms=bin_ms,
                                            sweeps_per_bin=sweeps_per_bin, epochs=epochs)
    s_struct, s_chain, s_spikes = np.random.SeedSequence(int(seed)).spawn(3)
    truth = planted_rbm(
        n_neurons=n_neurons, n_areas=n_areas, assemblies_per_area=assemblies_per_area,
        assembly_size=assembly_size, within_area_weight=within_area_weight,
        cross_area_weight=cross_area_weight, n_cross_assemblies=n_cross_assemblies,
        drive_weight=drive_weight, rate_min_hz=rate_min_hz, rate_max_hz=rate_max_hz,
        bin_ms=bin_ms, hidden_activity=hidden_activity, drive_activity=drive_activity,
        weight_jitter=weight_jitter, rng=np.random.default_rng(s_struct),
    )
    raster = planted_raster(truth, n_bins=n_bins, sweeps_per_bin=sweeps_per_bin,
                            rng=np.random.default_rng(s_chain))
    spike_time, spike_unit = raster_to_spikes(raster, bin_ms=bin_ms,
                                              rng=np.random.default_rng(s_spikes))
    edges = (np.arange(len(epochs) + 1) * n_bins) // len(epochs)
    spikes = xr.Dataset(
        {
            "spike_time": ("spike", spike_time, {"units": "s"}),
            "spike_unit": ("spike", spike_unit, {"long_name": "index into the unit dimension"}),
            "epoch_start": ("epoch", edges[:-1] * bin_ms / 1000.0, {"units": "s"}),
            "epoch_stop": ("epoch", edges[1:] * bin_ms / 1000.0, {"units": "s"}),
        },
        coords={
            "unit_id": ("unit", truth["unit_id"].values),
            "area": ("unit", truth["area"].values),
            "epoch_name": ("epoch", np.array(epochs, dtype=object)),
        },
        attrs={"session_id": session_id, "source": "synthetic", "duration_s": n_bins * bin_ms
               / 1000.0, "bin_ms": float(bin_ms)},
    )
    truth.attrs.update(
        session_id=session_id,
        sweeps_per_bin=int(sweeps_per_bin),
        ms_per_sweep=bin_ms / sweeps_per_bin,
        n_bins=n_bins,
        description=(
            "Planted RBM. hidden_kind: 'assembly' = within-area assembly (hidden_area = its "
            "area), 'cross' = cross-area unit (hidden_area = 'X|Y'), 'drive' = global slow "
            "drive. membership(neuron, hidden_true) = 1 where W != 0. The spike raster is one "
            "block-Gibbs chain started at equilibrium, sweeps_per_bin sweeps per bin of bin_ms."
        ),
    )
    return (spikes, truth, raster) if return_raster else (spikes, truth)


def planted_raster(truth: xr.Dataset, *, n_bins: int, sweeps_per_bin: int,
                   rng: np.random.Generator) -> np.ndarray:
    """The planted model's stationary sample path, (n_bins, N) uint8.

    Starts from an exact equilibrium sample (:func:`equilibrium_sample`), so every bin is an
    equilibrium state and the path is stationary.
    """
    W, a, b = (truth[k].values for k in ("W", "a", "b"))
    v0 = equilibrium_sample(W, a, b, n_samples=1, rng=rng)
    return simulate_chain(W, a, b, n_bins=n_bins, sweeps_per_bin=sweeps_per_bin, rng=rng,
                          v0=v0)[0]


#: Parameter names a ``source: synthetic`` row (or the config section) may set.
SYNTHETIC_PARAMS: tuple[str, ...] = tuple(
    name for name in inspect.signature(generate_session).parameters
    if name not in ("session_id", "return_raster")
)


#: Defaults of :func:`generate_session`, for parameters neither the config nor the row sets.
_DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(generate_session).parameters.items()
    if name in SYNTHETIC_PARAMS and p.default is not inspect.Parameter.empty
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate synthetic-source parameters (config section merged with row params) before any
    job runs: their names, then the ranges and their combinations that
    :func:`generate_session` would reject (a bin holding more than one spike,
    ``rate_min_hz >= rate_max_hz``, more areas than the neurons allow, a duration under one bin
    per epoch, an assembly larger than its area, too many hidden units, ...), so the workflow
    stops at DAG time with the same one-line message. Missing parameters take the defaults of
    :func:`generate_session`. Values of the wrong type are left to the schema validation that
    follows (config.schema.yaml, ``synthetic`` section).

    Returns
    -------
    dict
        ``params`` unchanged (a copy).

    Raises
    ------
    ValueError
        One line: the unknown parameters with the allowed names, or the parameter(s) out of range
        with the fix.
    """
    unknown = sorted(set(params) - set(SYNTHETIC_PARAMS))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], SYNTHETIC_PARAMS, n=1)
        raise ValueError(
            f"unknown synthetic parameter(s) {unknown}"
            f"{f' (did you mean `{close[0]}`?)' if close else ''}; allowed names: "
            f"{', '.join(SYNTHETIC_PARAMS)} (set them in the config `synthetic:` section or as "
            "key=value in the sessions.tsv params column)"
        )
    full = {**_DEFAULTS, **params}
    numeric = [k for k in _DEFAULTS if k != "epochs"]
    epochs = full["epochs"]
    if all(_is_number(full[k]) for k in numeric) and (
            isinstance(epochs, str) or (isinstance(epochs, Sequence)
                                        and all(isinstance(e, str) for e in epochs))):
        _check_session(duration_s=full["duration_s"], bin_ms=full["bin_ms"],
                       sweeps_per_bin=full["sweeps_per_bin"], epochs=epochs)
        _check_structure(**{k: full[k] for k in inspect.signature(_check_structure).parameters})
    return dict(params)
