"""Log partition functions of RBMs: exact, AIS, trajectory AIS and the choice between them.

docs/methods.md §4. Three estimators of ``log Z``:

* :func:`exact_log_z` enumerates the smaller layer (``2**min(N, M)`` states, chunked, float64
  logsumexp). It is the reference every estimator is tested against; feasible up to ~25 units.
* :func:`ais_log_z`: annealed importance sampling in inverse temperature from the
  independent-site model (``W = 0``, ``b = 0``, same visible bias ``a``; ``log Z_0 =
  sum_i softplus(a_i) + M log 2``). The path is geometric in distribution space,
  ``p_beta ∝ p_0^(1-beta) p_1^beta``, which is the RBM ``(beta W, a, beta b)``; the ``beta``
  grid is linear in ``[0, 1]``, one block-Gibbs sweep per ``beta``
  (:meth:`spikerbm.sampling.Chains.sweep` at ``beta``). Independent repeats give the mean and
  the spread.
* :class:`TrajectoryAIS`: trajectory AIS run online inside training: chains carried along the
  parameter trajectory, one sweep per update (or per stage, when a large update is split into
  interpolated stages), log-weights updated by the free-energy difference
  (:func:`spikerbm.rbm.free_energy_difference`), resampled when the
  effective sample size drops below a threshold. Anchors (:meth:`TrajectoryAIS.reanchor`,
  :func:`anchor_bias_rate`, :func:`anchored_log_z_std`) re-centre it on an independent exact
  or AIS ``log Z`` at evaluation points and put the drift measured there into its error.

:func:`resolve_method` is the one rule that picks exact or AIS (``auto``: exact when
``min(N, M) <= exact_max_units``); :func:`estimate_log_z` applies it.

Precision policy: every energy, log-weight and ``log Z`` is float64 (the parameters are cast to
float64 before any product that enters an energy), so TF32, which only affects float32
products, never touches them; the exceptions are float32-accurate split bfloat16 products
(the precision policy of :mod:`spikerbm.rbm`): the two products of the trajectory-AIS
increment on the fused bf16 path, and AIS's pre-activations on CUDA. Sampling (the
conditional probabilities of the Gibbs sweeps) runs in the sampler's precision; AIS's default
is float32 accuracy, on CUDA as split bfloat16 products (:func:`ais_log_weights`,
docs/methods.md §4, "Precision of AIS").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from spikerbm.exact import state_chunks
from spikerbm.rbm import (
    RBM,
    binary_mm,
    free_energy_difference,
    split_bf16,
    split_products_available,
)
from spikerbm.sampling import Sampler

__all__ = [
    "ANCHOR_BIAS_WINDOW",
    "ANCHOR_REPEATS",
    "EXACT_HARD_LIMIT",
    "LogZEstimate",
    "TrajectoryAIS",
    "ais_log_weights",
    "ais_log_z",
    "anchor_bias_rate",
    "anchored_log_z_std",
    "combine_log_z",
    "estimate_log_z",
    "exact_log_z",
    "jensen_covering_std",
    "log_z_from_log_weights",
    "log_z_independent",
    "resolve_method",
]

#: Largest layer :func:`exact_log_z` agrees to enumerate (2**30 states is hours on a CPU).
EXACT_HARD_LIMIT = 30

#: How a ``log Z`` is obtained: ``auto`` (exact or AIS by size), ``exact``, ``ais``, ``tais``.
Method = Literal["auto", "exact", "ais", "tais"]
METHODS = ("auto", "exact", "ais", "tais")


def log_z_independent(rbm: RBM) -> float:
    """Exact ``log Z`` of the independent-site model with ``rbm``'s visible bias.

    Parameters
    ----------
    rbm
        Any RBM; only ``a`` and the number of hidden units are used (``W`` and ``b`` are taken
        as zero).

    Returns
    -------
    float
        ``sum_i softplus(a_i) + n_hidden * log 2`` in float64.
    """
    a = rbm.a.detach().to(dtype=torch.float64)
    return float(F.softplus(a).sum().item() + rbm.n_hidden * math.log(2.0))


def exact_log_z(rbm: RBM, *, layer: Literal["auto", "visible", "hidden"] = "auto",
                chunk_size: int = 1 << 14) -> float:
    """Exact ``log Z`` by enumerating one layer (the smaller one by default).

    Parameters
    ----------
    rbm
        The model (any dtype/device; computed in float64 on its device).
    layer
        ``"auto"`` enumerates the smaller layer; ``"visible"`` or ``"hidden"`` force one.
    chunk_size
        States per chunk (memory ~ ``chunk_size * max(N, M) * 8`` bytes, a few times).

    Returns
    -------
    float
        ``log sum_{v,h} exp(-E(v,h))``.

    Raises
    ------
    ValueError
        If the enumerated layer has more than :data:`EXACT_HARD_LIMIT` units, or bad options.
    """
    if layer not in ("auto", "visible", "hidden"):
        raise ValueError(f"layer must be 'auto', 'visible' or 'hidden'; got {layer!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    if layer == "auto":
        layer = "hidden" if rbm.n_hidden <= rbm.n_visible else "visible"
    W = rbm.W.detach().to(torch.float64)
    a = rbm.a.detach().to(torch.float64)
    b = rbm.b.detach().to(torch.float64)
    if layer == "hidden":
        n_bits, own, other, coupling = rbm.n_hidden, b, a, W.T  # coupling: (n_bits, n_other)
    else:
        n_bits, own, other, coupling = rbm.n_visible, a, b, W
    if n_bits > EXACT_HARD_LIMIT:
        raise ValueError(
            f"exact log Z would enumerate 2**{n_bits} {layer} states (limit "
            f"2**{EXACT_HARD_LIMIT}); use AIS (likelihood.method: ais) or a smaller model"
        )
    parts = []
    for s in state_chunks(n_bits, chunk_size, device=W.device):
        # -F(s) = own.s + sum_j softplus(other_j + (s @ coupling)_j), float64
        neg_f = s @ own + F.softplus(torch.addmm(other, s, coupling)).sum(-1)
        parts.append(torch.logsumexp(neg_f, 0))
    return float(torch.logsumexp(torch.stack(parts), 0).item())


@dataclass(frozen=True)
class LogZEstimate:
    """A ``log Z`` value with its uncertainty and how it was obtained.

    Attributes
    ----------
    log_z
        The estimate. AIS: ``log Z_0 + logmeanexp`` of the log-weights of every chain of every
        repeat (the log of one unbiased estimate of ``Z``); trajectory AIS: the
        ``logmeanexp`` of the independent chain groups' estimates.
    log_z_std
        Its 1-sigma uncertainty, defined to cover the estimator's downward (Jensen) bias
        (docs/methods.md §4, "Uncertainty of log Z"): ``sigma + sigma**2 / 2`` with ``sigma``
        the standard error of ``log_z`` (AIS: the larger of the importance-sampling error
        from the effective sample size of all weights and the spread of the repeats over
        ``sqrt(R)``; trajectory AIS: the spread of the groups over ``sqrt(G)``). 0 for exact
        enumeration; NaN when it cannot be estimated (one trajectory-AIS group).
    method
        ``"exact"``, ``"ais"`` or ``"tais"``.
    repeats
        The individual estimates (one per AIS repeat or trajectory-AIS group; one value for
        exact).
    """

    log_z: float
    log_z_std: float
    method: str
    repeats: tuple[float, ...]


def jensen_covering_std(sigma: float) -> float:
    """``sigma + sigma**2 / 2``: a standard error ``sigma`` of ``log Ẑ`` (``Ẑ`` unbiased)
    widened by the bias of the logarithm, ``E[log Ẑ] - log Z ≈ -Var(Ẑ) / (2 Z**2) ≈
    -sigma**2 / 2`` (second-order delta method; Burda, Grosse & Salakhutdinov,
    AISTATS 2015), so the stated error covers the bias (docs/methods.md §4)."""
    return float(sigma + 0.5 * sigma * sigma)


def combine_log_z(values: np.ndarray | torch.Tensor, *, method: str) -> LogZEstimate:
    """Pool independent ``log Ẑ_g`` estimates (each the log of an unbiased estimate of ``Z``).

    ``log Z = logmeanexp_g(log Ẑ_g)`` (the log of their mean, again unbiased in ``Z``), with
    ``sigma = c_G std_g(log Ẑ_g) / sqrt(G)`` (delta method) and ``log_z_std =``
    :func:`jensen_covering_std` ``(sigma)``; NaN for a single value. ``c_G = t_{0.975, G-1} /
    z_{0.975}`` (Student t over normal quantile: 1.15 for G = 10) makes ``±2 log_z_std`` a
    95 % interval although the spread is estimated from only G values. Used for the groups of
    :class:`TrajectoryAIS` (docs/methods.md §4).

    Parameters
    ----------
    values
        The G estimates (float64).
    method
        Stored in the result (``"ais"`` or ``"tais"``).
    """
    x = np.asarray(torch.as_tensor(values).detach().cpu(), dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("no log Z estimates to combine")
    if not np.isfinite(x).all():
        return LogZEstimate(math.nan, math.nan, method, tuple(float(v) for v in x))
    top = float(x.max())
    log_z = top + math.log(float(np.mean(np.exp(x - top))))
    sigma = (float(np.std(x, ddof=1)) / math.sqrt(x.size) * _student_factor(x.size)
             if x.size > 1 else math.nan)
    return LogZEstimate(log_z, jensen_covering_std(sigma), method, tuple(float(v) for v in x))


@functools.cache
def _student_factor(n: int) -> float:
    """``t_{0.975, n-1} / z_{0.975}``: widens a standard error estimated from ``n`` values so
    that two of them make a 95 % interval (scipy.stats)."""
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1) / stats.norm.ppf(0.975))


def log_z_from_log_weights(log_w: torch.Tensor, log_z0: float) -> LogZEstimate:
    """AIS ``log Z`` and its bias-covering error from the log-weights of R independent repeats.

    Parameters
    ----------
    log_w
        ``(n_repeats, n_chains)`` float64 log-weights (:func:`ais_log_weights`).
    log_z0
        Exact ``log Z`` of the start model.

    Returns
    -------
    LogZEstimate
        ``log_z = log Z_0 + logmeanexp(all R n weights)``; ``sigma = max(s_w, s_rep)`` with
        the importance-sampling standard error ``s_w = sqrt(1/ESS - 1/(R n))`` (``ESS =
        (sum w)**2 / sum w**2`` over all chains: the delta-method standard error of
        ``log mean w``; Kong 1992; Owen, "Monte Carlo theory, methods and examples", 2013,
        ch. 9) and the spread of the per-repeat estimates ``s_rep = std_r / sqrt(R)``
        (R >= 2); ``log_z_std`` = :func:`jensen_covering_std` ``(sigma)``; ``repeats``: the
        per-repeat estimates. docs/methods.md §4 gives the measurements behind this choice.
    """
    log_w = torch.as_tensor(log_w, dtype=torch.float64).detach().cpu()
    if log_w.ndim != 2 or log_w.numel() == 0:
        raise ValueError(f"log_w must be (n_repeats, n_chains); got {tuple(log_w.shape)}")
    n_rep, n_ch = log_w.shape
    flat = log_w.reshape(-1)
    lse = float(torch.logsumexp(flat, 0))
    log_z = float(log_z0) + lse - math.log(flat.numel())
    ess = math.exp(2 * lse - float(torch.logsumexp(2 * flat, 0)))
    s_w = math.sqrt(max(1.0 / ess - 1.0 / flat.numel(), 0.0))
    reps = (float(log_z0) + torch.logsumexp(log_w, 1) - math.log(n_ch)).numpy()
    s_rep = float(np.std(reps, ddof=1)) / math.sqrt(n_rep) if n_rep > 1 else 0.0
    sigma = max(s_w, s_rep)
    if not math.isfinite(log_z):
        sigma = math.nan
    return LogZEstimate(log_z, jensen_covering_std(sigma), "ais",
                        tuple(float(r) for r in reps))


def ais_log_z(rbm: RBM, *, n_chains: int, n_betas: int, generator: torch.Generator,
              n_repeats: int = 1, sampler: Sampler | None = None) -> LogZEstimate:
    """AIS estimate of ``log Z`` from the independent-site model (docs/methods.md §4).

    Intermediate models ``(beta W, a, beta b)`` with ``beta`` on a linear grid of ``n_betas``
    points from 0 to 1; chains start from exact samples of the independent-site model
    (``v_i ~ Bernoulli(sigmoid(a_i))``); for ``k = 1..K-1``: ``log w += F_{k-1}(v) - F_k(v)``,
    then one Gibbs sweep at ``beta_k``. The ``n_repeats`` independent runs are simulated as one
    batch of ``n_repeats * n_chains`` chains split into groups; ``log Z`` pools all their
    weights and its error covers the estimator's bias (:func:`log_z_from_log_weights`).

    Parameters
    ----------
    rbm
        The target model. Energies in float64.
    n_chains
        Chains per repeat.
    n_betas
        Number of inverse temperatures including 0 and 1 (>= 2).
    generator
        Random generator on ``rbm``'s device; the result is a deterministic function of it.
    n_repeats
        Independent repeats (>= 1).
    sampler
        How the chains are sampled (default :meth:`Sampler.for_model`: the RBM's dtype on its
        device, with float32 accuracy; for a float32 RBM on a GPU with bfloat16 tensor cores
        as split bfloat16 products, :func:`ais_log_weights`).

    Returns
    -------
    LogZEstimate
        Method ``"ais"``; the pooled estimate and its bias-covering error of
        :func:`log_z_from_log_weights`.
    """
    log_w, log_z0 = ais_log_weights(rbm, n_chains=n_chains, n_betas=n_betas,
                                    generator=generator, n_repeats=n_repeats, sampler=sampler)
    return log_z_from_log_weights(log_w, log_z0)


def ais_log_weights(rbm: RBM, *, n_chains: int, n_betas: int, generator: torch.Generator,
                    n_repeats: int = 1, sampler: Sampler | None = None
                    ) -> tuple[torch.Tensor, float]:
    """The AIS log-weights of :func:`ais_log_z`: ``(n_repeats, n_chains)`` float64 (CPU) and
    the start model's exact ``log Z_0``; ``log Z`` is ``log Z_0 + logmeanexp(log w)``.

    Without a ``sampler``, a float32 RBM on a device where
    :func:`spikerbm.rbm.split_products_available` (CUDA, compute capability >= 8.0) is sampled
    with split bfloat16 products (``Sampler(split_bf16=True)``), and the pre-activations
    ``x = b + v W`` of the weights are computed the same way (:func:`spikerbm.rbm.binary_mm`,
    float32 accuracy) instead of in float64; elsewhere (CPU, float64 models, another sampler)
    with float32 (or the model's dtype) sweeps and float64 ``x``. The softplus differences
    are float64 either way. An error ``δx_μ`` of ``x`` changes a weight's increment
    ``Σ_μ softplus(β_k x_μ) − softplus(β_{k−1} x_μ)`` by at most ``1.1 (β_k − β_{k−1}) Σ_μ
    |δx_μ|`` (``|d/du [u σ(u)]| <= 1.0998``), so the whole log-weight by at most ``1.1 Σ_μ
    max_k |δx_kμ|``: ~1e-4 nats for float32 errors ~1e-7 at M = 1024
    (docs/methods.md §4, "Precision of AIS").
    """
    if n_chains < 1 or n_repeats < 1:
        raise ValueError(f"n_chains and n_repeats must be >= 1; got {n_chains}, {n_repeats}")
    if n_betas < 2:
        raise ValueError(f"n_betas must be >= 2 (beta = 0 and 1); got {n_betas}")
    dev, dt = rbm.device, rbm.dtype
    if generator.device.type != dev.type:
        raise ValueError(f"generator is on {generator.device}, the RBM on {dev}; use one device")
    target = RBM(*(t.detach() for t in (rbm.W, rbm.a, rbm.b)))
    if sampler is None:
        sampler = Sampler.for_model(target, split_bf16=dt == torch.float32
                                    and split_products_available(dev))
    b64, n_tot = target.b.to(torch.float64), n_chains * n_repeats
    if not sampler.split_bf16:
        W64 = target.W.to(torch.float64)
    else:  # x = b + v W with float32 accuracy on tensor cores
        parts = split_bf16(target.W)
        x_buf = torch.empty(n_tot, parts.shape[0], rbm.n_visible, dtype=torch.bfloat16,
                            device=dev)
        x32 = torch.empty(n_tot, rbm.n_hidden, dtype=torch.float32, device=dev)
        x = torch.empty(n_tot, rbm.n_hidden, dtype=torch.float64, device=dev)
    betas = torch.linspace(0.0, 1.0, n_betas, dtype=torch.float64).tolist()
    # exact sample of the independent-site model (beta = 0)
    u = torch.rand(n_tot, rbm.n_visible, generator=generator, dtype=dt, device=dev)
    chains = sampler.chains(
        (u < torch.sigmoid(target.a)).to(dt), n_hidden=rbm.n_hidden, generator=generator)
    log_w = torch.zeros(n_tot, dtype=torch.float64, device=dev)
    for k in range(1, n_betas):
        beta_prev, beta = betas[k - 1], betas[k]
        if sampler.split_bf16:
            binary_mm(chains.v, parts, out=x32, x_buf=x_buf)
            torch.add(b64, x32, out=x)  # (n_tot, m) float64
        else:
            x = torch.addmm(b64, chains.v.to(torch.float64), W64)  # (n_tot, m) float64
        # F_{k-1}(v) - F_k(v): the a.v terms cancel
        log_w += (F.softplus(beta * x) - F.softplus(beta_prev * x)).sum(-1)
        if k < n_betas - 1:
            chains.sweep(target, beta=beta)
    return log_w.view(n_repeats, n_chains).cpu(), log_z_independent(rbm)


def resolve_method(method: str, *, n_visible: int, n_hidden: int,
                   exact_max_units: int) -> str:
    """The ``log Z`` method actually used: ``auto`` becomes ``exact`` when
    ``min(n_visible, n_hidden) <= exact_max_units``, else ``ais``; others are returned as is.

    Raises
    ------
    ValueError
        For a method outside ``auto``, ``exact``, ``ais``, ``tais``.
    """
    if method not in METHODS:
        raise ValueError(f"likelihood.method must be auto, exact, ais or tais; got {method!r}")
    if method == "auto":
        return "exact" if min(n_visible, n_hidden) <= exact_max_units else "ais"
    return method


def estimate_log_z(rbm: RBM, *, method: Literal["auto", "exact", "ais"] = "auto",
                   exact_max_units: int = 22, ais_chains: int = 1000, ais_betas: int = 3000,
                   ais_repeats: int = 4, generator: torch.Generator | None = None,
                   chunk_size: int = 1 << 14) -> LogZEstimate:
    """``log Z`` by the configured method (:func:`resolve_method`).

    Parameters
    ----------
    rbm
        The model.
    method
        ``auto``, ``exact`` or ``ais``.
    exact_max_units, ais_chains, ais_betas, ais_repeats, chunk_size
        See :func:`exact_log_z` and :func:`ais_log_z`.
    generator
        Needed for AIS (on ``rbm``'s device).

    Returns
    -------
    LogZEstimate
    """
    if method not in ("auto", "exact", "ais"):
        raise ValueError(f"method must be auto, exact or ais; got {method!r}")
    method = resolve_method(method, n_visible=rbm.n_visible, n_hidden=rbm.n_hidden,
                            exact_max_units=exact_max_units)
    if method == "exact":
        lz = exact_log_z(rbm, chunk_size=chunk_size)
        return LogZEstimate(lz, 0.0, "exact", (lz,))
    if generator is None:
        raise ValueError("AIS needs a torch.Generator (generator=...) on the RBM's device")
    return ais_log_z(rbm, n_chains=ais_chains, n_betas=ais_betas, n_repeats=ais_repeats,
                     generator=generator)


#: Independent AIS repeats of an anchor (:func:`estimate_log_z`; the likelihood stage's
#: default), and the number of most recent anchors whose discrepancy sets the bias allowance
#: of :func:`anchored_log_z_std` (docs/methods.md §4, "Anchors").
ANCHOR_REPEATS = 4
ANCHOR_BIAS_WINDOW = 3


def anchor_bias_rate(updates: list[int] | np.ndarray, gaps: list[float] | np.ndarray, *,
                     window: int = ANCHOR_BIAS_WINDOW) -> float:
    """Largest drift rate of trajectory AIS measured at the last ``window`` anchors
    (docs/methods.md §4, "Anchors"): ``max_k |gap_k| / (u_k - u_{k-1})`` with ``gap_k`` the
    trajectory-AIS estimate minus the anchor at anchor ``k`` (before re-anchoring), ``u_k``
    its update and ``u_0 = 0`` (trajectory AIS starts from an exact ``log Z``).

    Parameters
    ----------
    updates, gaps
        Updates (increasing) and gaps (nats) of every anchor so far.
    window
        How many of the most recent anchors count (>= 1).

    Returns
    -------
    float
        Nats per update; 0 before the first anchor, NaN when a counted gap is NaN (one
        trajectory-AIS group: its increments have no error either).
    """
    u = np.concatenate([[0], np.asarray(updates, dtype=np.int64)])
    g = np.asarray(gaps, dtype=np.float64)
    if g.size == 0:
        return 0.0
    if g.size != u.size - 1 or np.any(np.diff(u) <= 0):
        raise ValueError(f"need one gap per anchor at increasing updates > 0; got updates "
                         f"{u[1:].tolist()} and {g.size} gaps")
    rates = np.abs(g) / np.diff(u)
    return float(np.max(rates[-window:]))


def anchored_log_z_std(*, groups_std: float, anchor_std: float, bias_rate: float,
                       updates_since: int) -> float:
    """Stated error of an anchored trajectory-AIS ``log Z`` (docs/methods.md §4, "Anchors"):
    ``hypot(anchor_std, groups_std) + bias_rate * updates_since``.

    Parameters
    ----------
    groups_std
        The groups' error of the increments since the anchor (:meth:`TrajectoryAIS.estimate`
        after :meth:`TrajectoryAIS.reanchor`), nats.
    anchor_std
        The anchor's own error (0 when exact), nats.
    bias_rate
        :func:`anchor_bias_rate`, nats per update.
    updates_since
        Updates since the anchor (>= 0).

    Returns
    -------
    float
        Nats. Without anchors (``anchor_std = bias_rate = 0``) it is ``groups_std``.
    """
    return float(math.hypot(anchor_std, groups_std) + bias_rate * updates_since)


#: Per-stage s.d. of the trajectory-AIS log-weight increments that :meth:`TrajectoryAIS.
#: adapt_stages` aims at, the most stages per update, and the most updates between two
#: adaptations in training (docs/methods.md §4).
STAGE_TARGET_SD = 0.05
MAX_STAGES = 32
STAGE_CHECK_EVERY = 10
#: Updates per trajectory-AIS step where the steps are small (:attr:`TrajectoryAIS.stride`,
#: chosen by :meth:`TrajectoryAIS.adapt_stages`): divisors of :data:`STAGE_CHECK_EVERY`, so
#: that the step at the end of every chunk of training updates falls on the stride.
STRIDES = (1, 2, 5, 10)


class TrajectoryAIS:
    """Trajectory AIS: a ``log Z`` estimate carried along a training trajectory (§4).

    Chains are carried from one parameter set to the next. At each :meth:`step` (one per
    training update): one Gibbs sweep with the current parameters ``theta_t`` (it leaves ``p_t``
    invariant), then ``log w_m += E_t(v_m) - E_{t+1}(v_m)`` (the change of the visible free
    energy, :func:`spikerbm.rbm.free_energy_difference`, from products of ``theta_t`` and of the
    step ``theta_{t+1} - theta_t``: float64, except the products on the fused bf16 path, split
    bfloat16 ones, :attr:`split_bf16`). The chains form ``n_groups`` independent groups of equal
    size, each a sequential Monte Carlo run of its own (own weights, own offset, own
    resampling), so that each group's ``log Ẑ_g = offset_g + logsumexp(log w_g) - log n_g`` is
    the log of an unbiased estimate of ``Z`` and their spread measures the error of the whole
    history (docs/methods.md §4). When a group's effective sample size ``ESS = (sum w)^2 / (n_g
    sum w^2)`` falls below ``ess_threshold``, its chains are resampled within the group
    (systematic resampling, one uniform per group), its ``offset`` becomes its current estimate
    and its log-weights restart at 0. :meth:`estimate` pools the groups (:func:`combine_log_z`):
    ``log Z = logmeanexp_g log Ẑ_g`` with ``log_z_std`` from their spread. A large parameter
    step is split into :attr:`n_stages` interpolated stages, one sweep each (:meth:`advance`);
    :meth:`adapt_stages` chooses their number from the measured log-weight increments
    (docs/methods.md §4, "Stages for large steps").

    The update is written without host synchronisation or data-dependent Python branches
    (resampling is applied through ``torch.where``, the G uniforms drawn by one call), with the
    same number of device kernels for any ``n_groups`` (the groups are a leading axis), so
    :meth:`sweep` and :meth:`advance` can be captured in a CUDA graph with capturable chains
    (:mod:`spikerbm.pcd` does so on the fused bf16 path).

    The constructor draws no random numbers: the initial chains are drawn at the first
    :meth:`step` (exact samples ``v_i ~ Bernoulli(sigmoid(a_i))`` when the start model has
    ``W = 0``; otherwise ``burn_in_sweeps`` Gibbs sweeps from there, which is approximate).
    So ``TrajectoryAIS(...)`` followed by :meth:`load_state_dict` consumes nothing, and a run
    restored from :meth:`state_dict` continues bitwise identically (the chains' randomness is
    part of the state).

    Parameters
    ----------
    rbm
        The start model, whose ``log Z`` is known (typically
        ``rbm.independent_site(a_init, n_hidden)`` with :func:`log_z_independent`).
    log_z
        Its exact ``log Z``.
    n_chains
        Number of chains (>= 2 per group, a multiple of ``n_groups``).
    generator
        Random generator on ``rbm``'s device: initial states, and the chains' randomness
        unless the sampler is fused.
    n_groups
        Independent chain groups (>= 1; with one group ``log_z_std`` is NaN).
    ess_threshold
        Resample a group when its ``ESS < ess_threshold`` (in (0, 1]).
    burn_in_sweeps
        Gibbs sweeps for the initial chains when the start model has ``W != 0``.
    sampler
        How the chains are sampled (default :meth:`Sampler.for_model` of ``rbm``).
    seed
        Philox key of fused chains (default: drawn from ``generator``).
    split_bf16
        Products of the increments as split bfloat16 products (float32-accurate,
        :func:`spikerbm.rbm.free_energy_difference`) or in float64 (``False``); default: split
        where the sampler is fused (CUDA bf16), float64 elsewhere. Kept as :attr:`split_bf16`.
    """

    def __init__(self, rbm: RBM, *, log_z: float, n_chains: int, generator: torch.Generator,
                 n_groups: int = 1, ess_threshold: float = 0.3, burn_in_sweeps: int = 200,
                 sampler: Sampler | None = None, seed: int | None = None,
                 split_bf16: bool | None = None) -> None:
        if n_groups < 1 or n_chains < 2 * n_groups or n_chains % n_groups:
            raise ValueError(
                f"n_chains = {n_chains} must be a multiple of n_groups = {n_groups} with at "
                "least 2 chains per group (train.tais_chains, train.tais_groups)"
            )
        if not 0.0 < ess_threshold <= 1.0:
            raise ValueError(f"ess_threshold must be in (0, 1]; got {ess_threshold}")
        if not math.isfinite(log_z):
            raise ValueError(f"log_z of the start model must be finite; got {log_z}")
        if generator.device.type != rbm.device.type:
            raise ValueError(
                f"generator is on {generator.device}, the RBM on {rbm.device}; use one device"
            )
        self._rbm = RBM(*(t.detach().clone() for t in (rbm.W, rbm.a, rbm.b)))
        self._gen = generator
        self.n_chains, self.n_groups = int(n_chains), int(n_groups)
        self.group_size = self.n_chains // self.n_groups
        self.ess_threshold = float(ess_threshold)
        self.burn_in_sweeps = int(burn_in_sweeps)
        self.split_bf16 = bool(sampler is not None and sampler.fused
                               and split_products_available(rbm.device)
                               if split_bf16 is None else split_bf16)
        dev, dt = rbm.device, rbm.dtype
        g, n = self.n_groups, self.group_size
        v0 = torch.zeros(n_chains, rbm.n_visible, dtype=dt, device=dev)
        self._chains = (sampler or Sampler.for_model(rbm)).chains(
            v0, n_hidden=rbm.n_hidden, generator=generator, seed=seed)
        self._log_w = torch.zeros(g, n, dtype=torch.float64, device=dev)
        self._offset = torch.full((g,), float(log_z), dtype=torch.float64, device=dev)
        self._n_resamples = torch.zeros(g, dtype=torch.int64, device=dev)
        # resampling works on one global axis: group k's cumulative weights lie in (k, k+1]
        # and its systematic positions in [k, k+1), so one searchsorted serves every group
        self._arange = torch.arange(g * n, device=dev).view(g, n)
        self._grid = (torch.arange(g, dtype=torch.float64, device=dev)[:, None]
                      + torch.arange(n, dtype=torch.float64, device=dev) / n)
        self._top = torch.arange(1, g + 1, dtype=torch.float64, device=dev)
        self._initialised = False
        self.n_steps = 0
        self.n_stages = 1
        # updates per step when the steps are small (the engine counts them, host side)
        self.stride = 1
        self._since = 0
        self._u_min = 0
        # largest per-stage log-weight increment s.d. since the last adapt_stages (device)
        self._inc_sd_max = torch.zeros((), dtype=torch.float64, device=dev)
        self._stage_rbms: list[RBM] = []  # two stage buffers, allocated at the first staged step

    # -- sampling --------------------------------------------------------------------------
    @property
    def _v(self) -> torch.Tensor:
        """Current visible states of the chains (n_chains, n_visible)."""
        return self._chains.v

    def sweep(self, rbm: RBM) -> None:
        """One Gibbs sweep of the chains with ``rbm`` (the first half of a step, at the current
        parameters; no host synchronisation)."""
        self._chains.sweep(rbm.to(dtype=self._rbm.dtype))

    def _initialise(self) -> None:
        pv = torch.sigmoid(self._rbm.a.to(torch.float32)).expand(self._v.shape)
        u = torch.rand(self._v.shape, generator=self._gen, dtype=torch.float32,
                       device=self._v.device)
        self._v.copy_(u < pv)
        if bool((self._rbm.W != 0).any()):
            for _ in range(self.burn_in_sweeps):
                self.sweep(self._rbm)
        self._initialised = True

    # -- public ----------------------------------------------------------------------------
    def group_estimates(self) -> torch.Tensor:
        """Each group's ``log Ẑ_g = offset_g + logsumexp(log w_g) - log n_g``, (G,) float64 on
        the device (no host synchronisation)."""
        return self._offset + torch.logsumexp(self._log_w, 1) - math.log(self.group_size)

    def estimate(self, group_estimates: torch.Tensor | None = None) -> LogZEstimate:
        """The pooled estimate and its error (:func:`combine_log_z`, method ``"tais"``) of the
        current groups, or of ``group_estimates`` (e.g. a buffer that a CUDA graph fills)."""
        values = self.group_estimates() if group_estimates is None else group_estimates
        return combine_log_z(values, method="tais")

    def reanchor(self, log_z: float, group_estimates: torch.Tensor | None = None) -> None:
        """Re-centre every group on an independent estimate ``log_z`` of the current model
        (docs/methods.md §4, "Anchors"): ``offset_g += log_z - log Ẑ_g``, so that each group's
        estimate is ``log_z`` now and ``log_z`` plus its own increments afterwards. The
        weights, chains and resampling state are untouched (only the offsets move), so the
        groups' spread from then on measures the increments since the anchor alone.

        Parameters
        ----------
        log_z
            The anchor (exact or AIS ``log Z`` of the parameters the chains are weighted for).
        group_estimates
            A buffer of the G current estimates (e.g. :attr:`spikerbm.pcd.PCDEngine.log_z`,
            which a captured CUDA graph fills); shifted in place by the same amounts.
            ``None``: :meth:`group_estimates`.

        Call it between updates (at a synchronisation point): it works in place on device
        tensors and draws no random numbers, so the training trajectory and the chains'
        random streams are unchanged.
        """
        if not math.isfinite(log_z):
            raise ValueError(f"the anchor log Z must be finite; got {log_z}")
        now = self.group_estimates() if group_estimates is None else group_estimates
        shift = float(log_z) - now
        self._offset += shift
        if group_estimates is not None:
            group_estimates += shift

    @property
    def log_z(self) -> float:
        """Current pooled estimate (float64)."""
        return self.estimate().log_z

    @property
    def ess(self) -> float:
        """Smallest effective sample size fraction ``(sum w)^2 / (n_g sum w^2)`` of the groups."""
        lw = self._log_w
        ess = torch.exp(2 * torch.logsumexp(lw, 1) - torch.logsumexp(2 * lw, 1))
        return float((ess / self.group_size).min().item())

    @property
    def n_resamples(self) -> int:
        """Number of resampling events so far, summed over the groups."""
        return int(self._n_resamples.sum().item())

    def step(self, rbm_next: RBM) -> float:
        """Advance the chains to new parameters and return the new pooled ``log Z`` estimate.

        Parameters
        ----------
        rbm_next
            The parameters after the update (same shapes and device as the start model).

        Returns
        -------
        float
            The estimate of ``log Z(rbm_next)`` (:meth:`estimate` has its error).
        """
        if rbm_next.W.shape != self._rbm.W.shape:
            raise ValueError(
                f"rbm_next has W of shape {tuple(rbm_next.W.shape)}; trajectory AIS was built "
                f"for {tuple(self._rbm.W.shape)}"
            )
        if rbm_next.device.type != self._v.device.type:
            raise ValueError(f"rbm_next is on {rbm_next.device}, the chains on {self._v.device}")
        if not self._initialised:
            self._initialise()
        nxt = RBM(*(t.detach().clone() for t in (rbm_next.W, rbm_next.a, rbm_next.b)))
        self.sweep(self._rbm)
        estimates = self.advance(self._rbm, nxt)
        self.set_current(nxt, n_steps=self.n_steps + 1)
        return self.estimate(estimates).log_z

    def advance(self, rbm_now: RBM, rbm_next: RBM) -> torch.Tensor:
        """Second half of a step in :attr:`n_stages` stages (docs/methods.md §4): the chains,
        already swept at ``rbm_now`` (:meth:`sweep`), are reweighted to ``theta_j = rbm_now +
        (j / s) (rbm_next - rbm_now)`` for ``j = 1..s`` with one sweep at each ``theta_j``,
        ``j < s``, in between (:meth:`reweight` from ``theta_{j-1}`` to ``theta_j`` at every
        stage, so a group may resample at every stage). ``s = 1`` is :meth:`reweight` alone.
        Returns the G estimates of ``log Z(rbm_next)``; no host synchronisation."""
        s = self.n_stages
        if s > 1 and not self._stage_rbms:
            self._stage_rbms = [RBM(*(torch.empty_like(t) for t in (rbm_next.W, rbm_next.a,
                                                                    rbm_next.b)))
                                for _ in range(2)]
        prev = rbm_now
        for j in range(1, s):
            stage = self._stage_rbms[j % 2]  # the other buffer holds theta_{j-1}
            for t0, t1, out in zip(rbm_now.parameters().values(), rbm_next.parameters().values(),
                                   stage.parameters().values(), strict=True):
                torch.lerp(t0, t1, j / s, out=out)
            self.reweight(prev, stage)
            self.sweep(stage)
            prev = stage
        return self.reweight(prev, rbm_next)

    def due(self, last: bool) -> bool:
        """Whether the coming training update ends a step (host side, no synchronisation;
        :class:`spikerbm.pcd.PCDEngine` asks before every update): every :attr:`stride`-th
        update, and always when ``last`` (the last update before a synchronisation point, so
        that the chains are weighted for the current parameters whenever the loop reads the
        estimate or saves the state)."""
        self._since += 1
        if not (last or self._since >= self.stride):
            return False
        self._u_min = min(self._u_min, self._since) if self._u_min else self._since
        self._since = 0
        return True

    def adapt_stages(self, *, target_sd: float | None = None,
                     max_stages: int | None = None) -> int:
        """Choose :attr:`n_stages` and :attr:`stride` for the coming updates from the largest
        per-stage log-weight increment s.d. since the last call (one host synchronisation;
        call it at the training loop's synchronisation points, docs/methods.md §4, "Stages
        for large steps" and "Strides for small steps").

        The per-update increment s.d. is about ``u = s_now * sd_max / k_min`` (the stages
        split a step evenly; ``k_min``, the fewest updates a step covered since the last call,
        1 with stages: a step of ``k`` updates adds their parameter changes, so this
        overstates ``u`` where steps covered more updates). With ``ratio = u / target_sd``:
        ``s = clip(max(pow2(ratio), s_now // 2), 1, max_stages)`` with ``pow2(x)`` the
        smallest power of two ``>= x``, so ``s`` stages bring each stage's s.d. to about
        ``target_sd`` or below; ``s`` rises at once and falls at most by half per call.
        Powers of two keep the number of distinct ``s`` (one captured CUDA graph each) at
        ``log2(max_stages) + 1``. Where one stage is enough (``s = 1``) the stride is the
        largest of :data:`STRIDES` with ``stride * ratio <= 1``, at most one notch above the
        current one (it falls at once): a step then covers ``stride`` updates with an
        increment s.d. of about ``target_sd`` or below. Defaults: :data:`STAGE_TARGET_SD`,
        :data:`MAX_STAGES` (``max_stages = 1`` is the one-stage estimator of earlier versions).
        Returns the new ``s``."""
        target_sd = STAGE_TARGET_SD if target_sd is None else target_sd
        max_stages = MAX_STAGES if max_stages is None else max_stages
        sd = float(self._inc_sd_max)
        self._inc_sd_max.zero_()
        s, k_min = self.n_stages, max(self._u_min, 1)
        self._u_min = 0
        ratio = s * sd / (k_min * target_sd) if math.isfinite(sd) else math.inf
        want = 1 if ratio <= 1 else (max_stages if ratio > max_stages
                                     else 2 ** math.ceil(math.log2(ratio) - 1e-12))
        self.n_stages = int(min(max(want, s // 2, 1), max_stages))
        if self.n_stages > 1:
            self.stride = 1
        else:
            notch = STRIDES[min(STRIDES.index(self.stride) + 1, len(STRIDES) - 1)]
            self.stride = max(k for k in STRIDES if k == 1 or (k <= notch and k * ratio <= 1))
        return self.n_stages

    def reweight(self, rbm_now: RBM, rbm_next: RBM) -> torch.Tensor:
        """One reweighting: ``log w += E_now(v) - E_next(v)``
        (:func:`spikerbm.rbm.free_energy_difference`, split bfloat16 products when
        :attr:`split_bf16`), the groups' estimates, resampling of the groups whose ESS is low;
        returns the G estimates of ``log Z(rbm_next)`` as a (G,) device tensor (pool them with
        :meth:`estimate`).

        No host synchronisation and no data-dependent branch. The caller then declares the
        new parameters with :meth:`set_current` (``step`` does it all).
        """
        g, n = self.n_groups, self.group_size
        increment = free_energy_difference(rbm_now, rbm_next, self._v,
                                           split_bf16=self.split_bf16).view(g, n)
        torch.maximum(self._inc_sd_max, increment.std(1).max(), out=self._inc_sd_max)
        self._log_w += increment
        lse = torch.logsumexp(self._log_w, 1)
        estimate = self._offset + lse - math.log(n)
        resample = torch.exp(2 * lse - torch.logsumexp(2 * self._log_w, 1)) < (
            self.ess_threshold * n)
        cdf = torch.cumsum(torch.softmax(self._log_w, 1).view(-1), 0).view(g, n)
        cdf[:, -1].copy_(self._top)  # group k ends exactly at k + 1 (no host copy in a graph)
        pos = torch.add(self._grid, self._chains.uniform(g)[:, None], alpha=1.0 / n)
        idx = torch.searchsorted(cdf.view(-1), pos.view(-1), right=True)
        idx = torch.where(resample[:, None], idx.clamp_(max=g * n - 1).view(g, n), self._arange)
        self._v.copy_(self._v.index_select(0, idx.view(-1)))
        self._offset.copy_(torch.where(resample, estimate, self._offset))
        self._log_w.copy_(torch.where(resample[:, None], torch.zeros_like(self._log_w),
                                      self._log_w))
        self._n_resamples += resample
        return estimate

    def set_current(self, rbm: RBM, *, n_steps: int) -> None:
        """Declare the parameters the chains are now weighted for, and the step count (after
        steps run through :meth:`sweep` / :meth:`advance`). ``rbm`` is kept by
        reference: a caller that updates its tensors in place keeps it current."""
        self._rbm = rbm
        self.n_steps = int(n_steps)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything needed to continue exactly, as CPU tensors (no Python objects).

        Keys: ``chains`` (uint8, n_chains x N) and the chains' randomness (``rng``: generator
        state, or ``philox``: the fused chains' key), ``log_w`` (float64, n_groups x
        group size), ``offset`` (float64, n_groups), ``W``, ``a``, ``b`` (the current
        parameters, their dtype), ``initialised``, ``n_steps`` (int64, 0-d), ``n_resamples``
        (int64, n_groups).
        """
        chains = self._chains.state_dict()
        return {
            "chains": chains.pop("v"),
            **chains,
            "log_w": self._log_w.detach().cpu().clone(),
            "offset": self._offset.detach().cpu().clone(),
            "W": self._rbm.W.detach().cpu().clone(),
            "a": self._rbm.a.detach().cpu().clone(),
            "b": self._rbm.b.detach().cpu().clone(),
            "initialised": torch.tensor(int(self._initialised), dtype=torch.int64),
            "n_steps": torch.tensor(self.n_steps, dtype=torch.int64),
            "n_resamples": self._n_resamples.detach().cpu().clone(),
            "n_stages": torch.tensor(self.n_stages, dtype=torch.int64),
            "stride": torch.tensor(self.stride, dtype=torch.int64),
            "inc_sd_max": self._inc_sd_max.detach().cpu().clone(),
        }

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore a :meth:`state_dict` (tensors may be on any device; shapes must match)."""
        missing = {"chains", "log_w", "offset", "W", "a", "b", "initialised"} - set(state)
        if missing:
            raise ValueError(f"trajectory-AIS state lacks {sorted(missing)}")
        chains = torch.as_tensor(state["chains"])
        if tuple(chains.shape) != tuple(self._v.shape):
            raise ValueError(
                f"trajectory-AIS state has chains of shape {tuple(chains.shape)}; this object "
                f"has {tuple(self._v.shape)} (n_chains x n_visible)"
            )
        log_w = torch.as_tensor(state["log_w"])
        if tuple(log_w.shape) != tuple(self._log_w.shape):
            raise ValueError(
                f"trajectory-AIS state has log-weights of shape {tuple(log_w.shape)}; this "
                f"object has {tuple(self._log_w.shape)} (n_groups x chains per group)"
            )
        self._chains.load_state_dict(
            {"v": chains, **{k: state[k] for k in ("rng", "philox") if k in state}})
        dev = self._v.device
        self._log_w.copy_(log_w.to(device=dev, dtype=torch.float64))
        self._offset.copy_(torch.as_tensor(state["offset"]).to(device=dev, dtype=torch.float64))
        self._rbm = RBM(*(torch.as_tensor(state[k]).to(device=dev).clone()
                          for k in ("W", "a", "b")))
        self._initialised = bool(int(torch.as_tensor(state["initialised"]).item()))
        self.n_steps = int(torch.as_tensor(state.get("n_steps", 0)).item())
        self._n_resamples.copy_(torch.as_tensor(state.get("n_resamples", 0)).to(
            device=dev, dtype=torch.int64).expand(self.n_groups))
        self.n_stages = int(torch.as_tensor(state.get("n_stages", 1)).item())
        self.stride = int(torch.as_tensor(state.get("stride", 1)).item())
        self._since = self._u_min = 0
        self._inc_sd_max.copy_(torch.as_tensor(state.get("inc_sd_max", 0.0)).to(
            device=dev, dtype=torch.float64))
