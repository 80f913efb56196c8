"""Log partition functions and log-likelihoods of RBMs (METHODS §4).

Three estimators of ``log Z``:

* :func:`exact_log_z` enumerates the smaller layer (``2**min(N, M)`` states, chunked, float64
  logsumexp). It is the reference every estimator is tested against; feasible up to ~25 units.
* :func:`ais_log_z`: annealed importance sampling in inverse temperature from the independent-site
  model (``W = 0``, ``b = 0``, same visible bias ``a``; ``log Z_0 = sum_i softplus(a_i) +
  M log 2``). The path is geometric in distribution space, ``p_beta ∝ p_0^(1-beta) p_1^beta``,
  which is the RBM ``(beta W, a, beta b)``; the ``beta`` grid is linear in ``[0, 1]``, one block
  Gibbs sweep per ``beta``. Independent repeats give the mean and the spread.
* :class:`TrajectoryAIS`: trajectory AIS run online inside training: chains carried along the
  parameter trajectory, one sweep per update, log-weights updated by the free-energy difference,
  resampled when the effective sample size drops below a threshold.

Precision policy: every energy, log-weight and ``log Z`` is float64 (the parameters are cast to
float64 before any product that enters an energy), so TF32, which only affects float32
products, never touches them. Sampling (the conditional probabilities of the Gibbs sweeps) runs
in the RBM's own dtype.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from spikerbm.provenance import derive_seed
from spikerbm.rbm import RBM, free_energy, rbm_from_dataset
from spikerbm.sampling import FusedChains, PersistentChains

__all__ = [
    "LogZEstimate",
    "TrajectoryAIS",
    "ais_log_z",
    "checkpoint_loglik",
    "combine_loglik",
    "estimate_log_z",
    "exact_log_z",
    "independent_site_loglik",
    "log_likelihood",
    "log_z_independent",
    "mean_free_energy",
    "select_model",
    "selected_dataset",
]

#: Largest layer :func:`exact_log_z` agrees to enumerate (2**30 states is hours on a CPU).
EXACT_HARD_LIMIT = 30

Method = Literal["auto", "exact", "ais", "tais"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# log Z
# --------------------------------------------------------------------------------------------


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


def _binary_states(start: int, stop: int, n_bits: int, *, device: torch.device) -> torch.Tensor:
    """Rows ``start..stop-1`` of the enumeration of {0,1}^n_bits (bit k = (index >> k) & 1)."""
    idx = torch.arange(start, stop, dtype=torch.int64, device=device)
    shifts = torch.arange(n_bits, dtype=torch.int64, device=device)
    return ((idx[:, None] >> shifts) & 1).to(torch.float64)


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
    total = 1 << n_bits
    parts = []
    for start in range(0, total, chunk_size):
        s = _binary_states(start, min(start + chunk_size, total), n_bits, device=W.device)
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
        The estimate (for AIS: the mean over repeats).
    log_z_std
        For AIS, the sample standard deviation over independent repeats (the spread of one
        run; NaN with a single repeat); 0 for exact enumeration.
    method
        ``"exact"`` or ``"ais"``.
    repeats
        The individual estimates (one per AIS repeat; one value for exact).
    """

    log_z: float
    log_z_std: float
    method: str
    repeats: tuple[float, ...]


def _bernoulli_(out: torch.Tensor, probs: torch.Tensor, uniform: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
    """In-place Bernoulli draw ``out = (U < probs)`` with ``U`` from ``generator``."""
    uniform.uniform_(generator=generator)
    return torch.lt(uniform, probs, out=out)


def ais_log_z(rbm: RBM, *, n_chains: int, n_betas: int, generator: torch.Generator,
              n_repeats: int = 1) -> LogZEstimate:
    """AIS estimate of ``log Z`` from the independent-site model (METHODS §4).

    Intermediate models ``(beta W, a, beta b)`` with ``beta`` on a linear grid of ``n_betas``
    points from 0 to 1; chains start from exact samples of the independent-site model
    (``v_i ~ Bernoulli(sigmoid(a_i))``); for ``k = 1..K-1``: ``log w += F_{k-1}(v) - F_k(v)``,
    then one Gibbs sweep at ``beta_k``. The ``n_repeats`` independent runs are simulated as one
    batch of ``n_repeats * n_chains`` chains split into groups.

    Parameters
    ----------
    rbm
        The target model. Sampling runs in its dtype on its device; energies in float64.
    n_chains
        Chains per repeat.
    n_betas
        Number of inverse temperatures including 0 and 1 (>= 2).
    generator
        Random generator on ``rbm``'s device; the result is a deterministic function of it.
    n_repeats
        Independent repeats (>= 1).

    Returns
    -------
    LogZEstimate
        Mean over repeats, their sample standard deviation, method ``"ais"``.
    """
    if n_chains < 1 or n_repeats < 1:
        raise ValueError(f"n_chains and n_repeats must be >= 1; got {n_chains}, {n_repeats}")
    if n_betas < 2:
        raise ValueError(f"n_betas must be >= 2 (beta = 0 and 1); got {n_betas}")
    dev, dt = rbm.device, rbm.dtype
    if generator.device.type != dev.type:
        raise ValueError(f"generator is on {generator.device}, the RBM on {dev}; use one device")
    W, a, b = (t.detach() for t in (rbm.W, rbm.a, rbm.b))
    W64, b64 = W.to(torch.float64), b.to(torch.float64)
    n_tot = n_chains * n_repeats
    n, m = rbm.n_visible, rbm.n_hidden
    betas = torch.linspace(0.0, 1.0, n_betas, dtype=torch.float64).tolist()

    uv = torch.empty(n_tot, n, dtype=dt, device=dev)
    uh = torch.empty(n_tot, m, dtype=dt, device=dev)
    v = torch.empty(n_tot, n, dtype=dt, device=dev)
    h = torch.empty(n_tot, m, dtype=dt, device=dev)
    mv = torch.empty(n_tot, n, dtype=torch.bool, device=dev)
    mh = torch.empty(n_tot, m, dtype=torch.bool, device=dev)
    # exact sample of the independent-site model
    v.copy_(_bernoulli_(mv, torch.sigmoid(a).expand(n_tot, n), uv, generator))
    log_w = torch.zeros(n_tot, dtype=torch.float64, device=dev)
    for k in range(1, n_betas):
        beta_prev, beta = betas[k - 1], betas[k]
        x = torch.addmm(b64, v.to(torch.float64), W64)  # (n_tot, m) float64
        # F_{k-1}(v) - F_k(v): the a.v terms cancel
        log_w += (F.softplus(beta * x) - F.softplus(beta_prev * x)).sum(-1)
        if k == n_betas - 1:
            break
        # one Gibbs sweep at beta_k (sampling dtype)
        h.copy_(_bernoulli_(mh, torch.sigmoid(beta * x).to(dt), uh, generator))
        pv = torch.sigmoid(torch.addmm(a, h, W.T, alpha=beta))
        v.copy_(_bernoulli_(mv, pv, uv, generator))
    log_z0 = log_z_independent(rbm)
    groups = log_w.view(n_repeats, n_chains)
    est = (log_z0 + torch.logsumexp(groups, 1) - math.log(n_chains)).cpu().numpy()
    std = float(np.std(est, ddof=1)) if n_repeats > 1 else float("nan")
    return LogZEstimate(float(np.mean(est)), std, "ais", tuple(float(e) for e in est))


def estimate_log_z(rbm: RBM, *, method: Literal["auto", "exact", "ais"] = "auto",
                   exact_max_units: int = 22, ais_chains: int = 1000, ais_betas: int = 3000,
                   ais_repeats: int = 4, generator: torch.Generator | None = None,
                   chunk_size: int = 1 << 14) -> LogZEstimate:
    """``log Z`` by the configured method: ``auto`` = exact if ``min(N, M) <= exact_max_units``.

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
    if method == "auto":
        method = "exact" if min(rbm.n_visible, rbm.n_hidden) <= exact_max_units else "ais"
    if method == "exact":
        lz = exact_log_z(rbm, chunk_size=chunk_size)
        return LogZEstimate(lz, 0.0, "exact", (lz,))
    if generator is None:
        raise ValueError("AIS needs a torch.Generator (generator=...) on the RBM's device")
    return ais_log_z(rbm, n_chains=ais_chains, n_betas=ais_betas, n_repeats=ais_repeats,
                     generator=generator)


# --------------------------------------------------------------------------------------------
# Trajectory AIS
# --------------------------------------------------------------------------------------------


class TrajectoryAIS:
    """Trajectory AIS: a ``log Z`` estimate carried along a training trajectory (METHODS §4).

    Chains are carried from one parameter set to the next. At each :meth:`step` (one per
    training update): one Gibbs sweep with the current parameters ``theta_t`` (it leaves
    ``p_t`` invariant), then ``log w_m += E_t(v_m) - E_{t+1}(v_m)`` (visible free energies,
    float64), then ``log Z_{t+1} = offset + logsumexp(log w) - log n``. When the effective sample
    size ``ESS = (sum w)^2 / (n sum w^2)`` falls below ``ess_threshold`` the chains are
    resampled (systematic resampling), ``offset`` becomes the current estimate and the
    log-weights restart at 0.

    The update is written without host synchronisation or data-dependent Python branches
    (resampling is applied through ``torch.where``, one uniform drawn per step), so
    :meth:`sweep_and_energy` and :meth:`reweight` can be captured in a CUDA graph
    (:func:`spikerbm.training.train` does so on the fused bf16 path).

    The constructor draws no random numbers: the initial chains are drawn at the first
    :meth:`step` (exact samples ``v_i ~ Bernoulli(sigmoid(a_i))`` when the start model has
    ``W = 0``; otherwise ``burn_in_sweeps`` Gibbs sweeps from there, which is approximate).
    So ``TrajectoryAIS(...)`` followed by :meth:`load_state_dict` consumes nothing, and a run
    restored from :meth:`state_dict` plus the generator state continues bitwise identically.

    Parameters
    ----------
    rbm
        The start model, whose ``log Z`` is known (typically
        ``rbm.independent_site(a_init, n_hidden)`` with :func:`log_z_independent`).
    log_z
        Its exact ``log Z``.
    n_chains
        Number of chains (>= 2).
    generator
        Random generator on ``rbm``'s device (owned by the caller; its state is the caller's to
        save): initial states, and the sweeps and resampling uniforms unless ``fused_seed``.
    ess_threshold
        Resample when ``ESS < ess_threshold`` (in (0, 1]).
    burn_in_sweeps
        Gibbs sweeps for the initial chains when the start model has ``W != 0``.
    fused_seed
        Run the chains with :class:`~spikerbm.sampling.FusedChains` (CUDA, bf16 products)
        keyed by this Philox seed instead of :class:`~spikerbm.sampling.PersistentChains`.
    """

    def __init__(self, rbm: RBM, *, log_z: float, n_chains: int, generator: torch.Generator,
                 ess_threshold: float = 0.3, burn_in_sweeps: int = 200,
                 fused_seed: int | None = None) -> None:
        if n_chains < 2:
            raise ValueError(f"n_chains must be >= 2; got {n_chains}")
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
        self.n_chains = int(n_chains)
        self.ess_threshold = float(ess_threshold)
        self.burn_in_sweeps = int(burn_in_sweeps)
        dev, dt = rbm.device, rbm.dtype
        n, m = rbm.n_visible, rbm.n_hidden
        v0 = torch.zeros(n_chains, n, dtype=dt, device=dev)
        self._chains: PersistentChains | FusedChains
        if fused_seed is None:
            self._chains = PersistentChains(v0, n_hidden=m, dtype=dt)
        else:
            self._chains = FusedChains(v0, n_hidden=m, seed=fused_seed)
        self._log_w = torch.zeros(n_chains, dtype=torch.float64, device=dev)
        self._offset = torch.tensor(float(log_z), dtype=torch.float64, device=dev)
        self._n_resamples = torch.zeros((), dtype=torch.int64, device=dev)
        self._arange = torch.arange(n_chains, device=dev)
        self._initialised = False
        self.n_steps = 0

    # -- sampling --------------------------------------------------------------------------
    @property
    def _v(self) -> torch.Tensor:
        """Current visible states of the chains (n_chains, n_visible)."""
        return self._chains.v

    def _sweep(self, rbm: RBM) -> None:
        if isinstance(self._chains, FusedChains):
            self._chains.sweep(rbm)
        else:
            self._chains.sweep(rbm.to(dtype=self._v.dtype), generator=self._gen)

    def _uniform(self) -> torch.Tensor:
        """One float64 uniform (shape (1,)) for systematic resampling."""
        if isinstance(self._chains, FusedChains):
            return self._chains.uniform()
        return torch.rand(1, generator=self._gen, dtype=torch.float64, device=self._v.device)

    def _initialise(self) -> None:
        pv = torch.sigmoid(self._rbm.a.to(torch.float32)).expand(self._v.shape)
        u = torch.rand(self._v.shape, generator=self._gen, dtype=torch.float32,
                       device=self._v.device)
        self._v.copy_(u < pv)
        if bool((self._rbm.W != 0).any()):
            for _ in range(self.burn_in_sweeps):
                self._sweep(self._rbm)
        self._initialised = True

    # -- public ----------------------------------------------------------------------------
    @property
    def log_z(self) -> float:
        """Current estimate ``offset + logsumexp(log w) - log n_chains`` (float64)."""
        return float(self._estimate().item())

    def _estimate(self) -> torch.Tensor:
        return self._offset + torch.logsumexp(self._log_w, 0) - math.log(self.n_chains)

    @property
    def ess(self) -> float:
        """Effective sample size fraction ``(sum w)^2 / (n sum w^2)`` of the current weights."""
        return float(self._ess().item())

    def _ess(self) -> torch.Tensor:
        lw = self._log_w
        return torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)) / self.n_chains

    @property
    def n_resamples(self) -> int:
        """Number of resampling events so far."""
        return int(self._n_resamples.item())

    def step(self, rbm_next: RBM) -> float:
        """Advance the chains to new parameters and return the new ``log Z`` estimate.

        Parameters
        ----------
        rbm_next
            The parameters after the update (same shapes and device as the start model).

        Returns
        -------
        float
            The estimate of ``log Z(rbm_next)``.
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
        estimate = self.reweight(self.sweep_and_energy(self._rbm), nxt)
        self.set_current(nxt, n_steps=self.n_steps + 1)
        return float(estimate.item())

    def sweep_and_energy(self, rbm: RBM) -> torch.Tensor:
        """First half of a step: one sweep with the current parameters ``rbm``; returns their
        free energies ``E_t(v)`` of the moved chains (float64). No host synchronisation."""
        self._sweep(rbm)
        return free_energy(rbm, self._v)

    def reweight(self, energy_now: torch.Tensor, rbm_next: RBM) -> torch.Tensor:
        """Second half: ``log w += E_t(v) - E_{t+1}(v)``, estimate, resampling when the ESS is
        low; returns the estimate of ``log Z(rbm_next)`` as a 0-d device tensor.

        No host synchronisation and no data-dependent branch. The caller then declares the
        new parameters with :meth:`set_current` (``step`` does all three).
        """
        self._log_w += energy_now - free_energy(rbm_next, self._v)
        estimate = self._estimate()
        resample = self._ess() < self.ess_threshold
        cdf = torch.cumsum(torch.softmax(self._log_w, 0), 0)
        cdf[-1:].fill_(1.0)  # (fill_, not item assignment: no host copy inside a graph)
        pos = (self._uniform() + self._arange) / self.n_chains
        idx = torch.searchsorted(cdf, pos).clamp_(max=self.n_chains - 1)
        idx = torch.where(resample, idx, self._arange)
        self._v.copy_(self._v.index_select(0, idx))
        self._offset.copy_(torch.where(resample, estimate, self._offset))
        self._log_w.copy_(torch.where(resample, torch.zeros_like(self._log_w), self._log_w))
        self._n_resamples += resample
        return estimate

    def set_current(self, rbm: RBM, *, n_steps: int) -> None:
        """Declare the parameters the chains are now weighted for, and the step count (after
        steps run through :meth:`sweep_and_energy` / :meth:`reweight`)."""
        self._rbm = rbm
        self.n_steps = int(n_steps)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything needed to continue exactly, as CPU tensors (no Python objects).

        Keys: ``chains`` (uint8, n_chains x N), ``log_w`` (float64), ``offset`` (float64, 0-d),
        ``W``, ``a``, ``b`` (the current parameters, their dtype), ``initialised``,
        ``n_steps``, ``n_resamples`` (int64, 0-d), and ``philox`` (int64, (1,)) for fused
        chains.
        """
        state = {
            "chains": self._v.to(torch.uint8).cpu(),
            "log_w": self._log_w.detach().cpu().clone(),
            "offset": self._offset.detach().cpu().clone(),
            "W": self._rbm.W.cpu().clone(),
            "a": self._rbm.a.cpu().clone(),
            "b": self._rbm.b.cpu().clone(),
            "initialised": torch.tensor(int(self._initialised), dtype=torch.int64),
            "n_steps": torch.tensor(self.n_steps, dtype=torch.int64),
            "n_resamples": self._n_resamples.detach().cpu().clone(),
        }
        if isinstance(self._chains, FusedChains):
            state["philox"] = self._chains.seed.cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a :meth:`state_dict` (tensors may be on any device; shapes must match)."""
        missing = {"chains", "log_w", "offset", "W", "a", "b", "initialised"} - set(state)
        if isinstance(self._chains, FusedChains) and "philox" not in state:
            missing.add("philox")
        if missing:
            raise ValueError(f"trajectory-AIS state lacks {sorted(missing)}")
        chains = torch.as_tensor(state["chains"])
        if tuple(chains.shape) != tuple(self._v.shape):
            raise ValueError(
                f"trajectory-AIS state has chains of shape {tuple(chains.shape)}; this object "
                f"has {tuple(self._v.shape)} (n_chains x n_visible)"
            )
        dev = self._v.device
        self._v.copy_(chains.to(device=dev, dtype=self._v.dtype))
        self._log_w.copy_(torch.as_tensor(state["log_w"]).to(device=dev, dtype=torch.float64))
        self._offset.copy_(torch.as_tensor(state["offset"]).to(device=dev, dtype=torch.float64))
        self._rbm = RBM(*(torch.as_tensor(state[k]).to(device=dev).clone()
                          for k in ("W", "a", "b")))
        self._initialised = bool(int(torch.as_tensor(state["initialised"]).item()))
        self.n_steps = int(torch.as_tensor(state.get("n_steps", 0)).item())
        self._n_resamples.fill_(int(torch.as_tensor(state.get("n_resamples", 0)).item()))
        if isinstance(self._chains, FusedChains):
            self._chains.seed.copy_(torch.as_tensor(state["philox"]).to(dev))


# --------------------------------------------------------------------------------------------
# Data log-likelihoods
# --------------------------------------------------------------------------------------------


def mean_free_energy(rbm: RBM, data: torch.Tensor | np.ndarray, *,
                     batch_size: int = 8192) -> float:
    """Mean visible free energy ``<E(v)>_data`` in float64 (batched).

    Parameters
    ----------
    rbm
        The model.
    data
        Binary data, shape (n_samples, n_visible).
    batch_size
        Rows per batch.
    """
    data = torch.as_tensor(data)
    if data.ndim != 2 or data.shape[1] != rbm.n_visible:
        raise ValueError(
            f"data must have shape (n_samples, {rbm.n_visible}); got {tuple(data.shape)}"
        )
    if data.shape[0] == 0:
        raise ValueError("data has no rows; cannot compute a mean free energy")
    r64 = rbm.to(dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64, device=rbm.device)
    for start in range(0, data.shape[0], batch_size):
        total += free_energy(r64, data[start:start + batch_size].to(rbm.device)).sum()
    return float(total.item() / data.shape[0])


def log_likelihood(rbm: RBM, data: torch.Tensor | np.ndarray, *, log_z: float,
                   batch_size: int = 8192) -> float:
    """``LL(D) = -<E(v)>_D - log Z`` in nats per sample (float64)."""
    return -mean_free_energy(rbm, data, batch_size=batch_size) - float(log_z)


def independent_site_loglik(train: np.ndarray, test: np.ndarray, *,
                            eps: float = 1e-4) -> tuple[float, float]:
    """Train and test LL (nats per sample) of the independent-site model fitted on train.

    ``a_i = logit(clamp(<v_i>_train, eps, 1 - eps))`` (the same clamp as :func:`rbm.init_rbm`);
    ``LL = <sum_i v_i a_i - softplus(a_i)>``.
    """
    train = np.asarray(train, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(
            f"train {train.shape} and test {test.shape} must be 2-d with equal column counts"
        )
    if train.shape[0] == 0 or test.shape[0] == 0:
        raise ValueError(f"empty split: train {train.shape}, test {test.shape}")
    p = np.clip(train.mean(0), eps, 1 - eps)
    a = np.log(p) - np.log1p(-p)
    sp = np.logaddexp(0.0, a)
    return float((train @ a).mean() - sp.sum()), float((test @ a).mean() - sp.sum())


def checkpoint_loglik(model: xr.Dataset, train: np.ndarray, test: np.ndarray, *,
                      method: Method = "auto", exact_max_units: int = 22,
                      ais_chains: int = 200, ais_betas: int = 1000, ais_repeats: int = 2,
                      seed: int = 0, device: torch.device | str = "cpu",
                      batch_size: int = 8192) -> xr.Dataset:
    """Train and test log-likelihood at every checkpoint of a training trajectory.

    Parameters
    ----------
    model
        A ``model.nc`` dataset (dims checkpoint, visible, hidden; optional ``logz_tais``).
    train, test
        Binary data (n_samples, n_visible) of the two splits.
    method
        ``auto`` (exact if ``min(N, M) <= exact_max_units`` else AIS), ``exact``, ``ais``, or
        ``tais`` (the trajectory-AIS values stored in the model; spread NaN).
    exact_max_units, ais_chains, ais_betas, ais_repeats
        Estimator settings (see :func:`estimate_log_z`).
    seed
        Base seed; checkpoint ``c`` uses ``derive_seed(seed, "ais", c)``, so each checkpoint's
        value does not depend on which others are computed.
    device
        Where to compute.
    batch_size
        Rows per free-energy batch.

    Returns
    -------
    xr.Dataset
        dims ``checkpoint``; vars ``ll_train``, ``ll_test`` (nats/sample), ``ll_train_std``,
        ``ll_test_std``, ``ll_train_per_neuron``, ``ll_test_per_neuron`` (nats/neuron),
        ``log_z``, ``log_z_std``, ``log_z_tais``, ``ll_train_tais``, ``ll_test_tais``;
        attrs ``method``, ``floor_train``, ``floor_test`` (+ per neuron), ``n_hidden``,
        ``n_visible``, ``n_train``, ``n_test`` and the estimator settings.
    """
    if method not in ("auto", "exact", "ais", "tais"):
        raise ValueError(f"likelihood.method must be auto, exact, ais or tais; got {method!r}")
    n_vis = int(model.sizes["visible"])
    n_hid = int(model.sizes["hidden"])
    for name, arr in (("train", train), ("test", test)):
        if arr.ndim != 2 or arr.shape[1] != n_vis:
            raise ValueError(f"{name} data has shape {arr.shape}; the model has {n_vis} visible")
    device = torch.device(device)
    checkpoints = model["checkpoint"].values.astype(np.int64)
    tais = (model["logz_tais"].values.astype(np.float64) if "logz_tais" in model
            else np.full(checkpoints.shape, np.nan))
    if method == "tais" and not np.isfinite(tais).any():
        raise ValueError(
            "likelihood.method is tais but the model has no trajectory-AIS values (logz_tais "
            "missing or all NaN); train with train.tais_chains > 0 or use method auto"
        )
    if method == "auto":
        resolved = "exact" if min(n_vis, n_hid) <= exact_max_units else "ais"
    else:
        resolved = method
    train_t = torch.as_tensor(np.asarray(train))  # cast to float64 per batch
    test_t = torch.as_tensor(np.asarray(test))
    out = {k: np.full(checkpoints.shape, np.nan) for k in (
        "log_z", "log_z_std", "fe_train", "fe_test")}
    for i, ckpt in enumerate(checkpoints):
        rbm = rbm_from_dataset(model, checkpoint=int(ckpt), device=device)
        out["fe_train"][i] = mean_free_energy(rbm, train_t, batch_size=batch_size)
        out["fe_test"][i] = mean_free_energy(rbm, test_t, batch_size=batch_size)
        if resolved == "tais":
            out["log_z"][i], out["log_z_std"][i] = tais[i], np.nan
            continue
        gen = torch.Generator(device=device)
        gen.manual_seed(derive_seed(seed, "ais", int(ckpt)))
        est = estimate_log_z(rbm, method=resolved, exact_max_units=exact_max_units,
                             ais_chains=ais_chains, ais_betas=ais_betas,
                             ais_repeats=ais_repeats, generator=gen)
        out["log_z"][i], out["log_z_std"][i] = est.log_z, est.log_z_std
    floor_train, floor_test = independent_site_loglik(np.asarray(train), np.asarray(test))
    ll_train = -out["fe_train"] - out["log_z"]
    ll_test = -out["fe_test"] - out["log_z"]
    nats = {"units": "nats per sample"}
    per_n = {"units": "nats per neuron per sample"}
    data_vars = {
        "ll_train": ("checkpoint", ll_train, {**nats, "long_name": "train log-likelihood"}),
        "ll_test": ("checkpoint", ll_test, {**nats, "long_name": "test log-likelihood"}),
        "ll_train_std": ("checkpoint", out["log_z_std"].copy(),
                         {**nats, "long_name": "uncertainty of ll_train (= log_z_std)"}),
        "ll_test_std": ("checkpoint", out["log_z_std"].copy(),
                        {**nats, "long_name": "uncertainty of ll_test (= log_z_std)"}),
        "ll_train_per_neuron": ("checkpoint", ll_train / n_vis, per_n),
        "ll_test_per_neuron": ("checkpoint", ll_test / n_vis, per_n),
        "log_z": ("checkpoint", out["log_z"], {"units": "nats", "long_name": "log Z"}),
        "log_z_std": ("checkpoint", out["log_z_std"],
                      {"units": "nats", "long_name": "spread of log Z over AIS repeats"}),
        "log_z_tais": ("checkpoint", tais, {"units": "nats",
                                            "long_name": "trajectory-AIS log Z (from model)"}),
        "ll_train_tais": ("checkpoint", -out["fe_train"] - tais, nats),
        "ll_test_tais": ("checkpoint", -out["fe_test"] - tais, nats),
    }
    return xr.Dataset(
        data_vars,
        coords={"checkpoint": ("checkpoint", checkpoints, {"units": "updates"})},
        attrs={
            "method": resolved,
            "floor_train": floor_train,
            "floor_test": floor_test,
            "floor_train_per_neuron": floor_train / n_vis,
            "floor_test_per_neuron": floor_test / n_vis,
            "n_hidden": n_hid,
            "n_visible": n_vis,
            "n_train": int(train.shape[0]),
            "n_test": int(test.shape[0]),
            "exact_max_units": int(exact_max_units),
            "ais_chains": int(ais_chains),
            "ais_betas": int(ais_betas),
            "ais_repeats": int(ais_repeats),
        },
    )


def combine_loglik(per_model: list[xr.Dataset]) -> xr.Dataset:
    """Stack per-model log-likelihood datasets into one ``n_hidden x checkpoint`` dataset.

    Checkpoint coordinates are the union over models (sorted); a model lacking a checkpoint has
    NaN there (this happens only when models were trained with different ``n_updates`` or
    ``n_checkpoints``). ``method`` becomes a variable over ``n_hidden``; the floors must agree
    (same data) and stay attributes.

    Raises
    ------
    ValueError
        When the list is empty, hidden sizes repeat, or the floors disagree (different data).
    """
    if not per_model:
        raise ValueError("no per-model log-likelihood datasets to combine")
    sizes = [int(ds.attrs["n_hidden"]) for ds in per_model]
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"hidden sizes repeat among the log-likelihood files: {sizes}")
    ref = per_model[0].attrs
    for ds in per_model[1:]:
        for key in ("floor_train", "floor_test"):
            if not np.isclose(ds.attrs[key], ref[key], rtol=0, atol=1e-9):
                raise ValueError(
                    f"{key} differs between n_hidden={ref['n_hidden']} ({ref[key]}) and "
                    f"n_hidden={ds.attrs['n_hidden']} ({ds.attrs[key]}): the models were not "
                    "evaluated on the same data"
                )
    order = np.argsort(sizes)
    parts = []
    for i in order:
        ds = per_model[i]
        parts.append(ds.drop_attrs(deep=False).expand_dims(n_hidden=[sizes[i]]).assign(
            method=("n_hidden", [str(ds.attrs["method"])])))
    combined = xr.concat(parts, dim="n_hidden", join="outer", data_vars="all",
                         coords="different", compat="equals", combine_attrs="drop")
    combined = combined.sortby("checkpoint")
    combined["n_hidden"].attrs["units"] = "hidden units"
    keep = ("floor_train", "floor_test", "floor_train_per_neuron", "floor_test_per_neuron",
            "n_visible", "n_train", "n_test")
    combined.attrs = {k: ref[k] for k in keep if k in ref}
    return combined


# --------------------------------------------------------------------------------------------
# Model selection
# --------------------------------------------------------------------------------------------

FLOOR_BANNER = "!" * 78


def select_model(ll: xr.Dataset) -> xr.Dataset:
    """Pick the ``(n_hidden, checkpoint)`` with the highest test log-likelihood.

    Parameters
    ----------
    ll
        The combined dataset of :func:`combine_loglik` (dims n_hidden x checkpoint).

    Returns
    -------
    xr.Dataset
        The candidate table, dim ``candidate`` (one row per hidden size: its best checkpoint by
        test LL): ``cand_n_hidden``, ``cand_checkpoint``, ``cand_ll_train``, ``cand_ll_test``,
        ``cand_ll_test_std``, ``cand_selected`` (1 for the winner); attrs ``n_hidden``,
        ``checkpoint``, ``ll_train``, ``ll_test``, ``ll_test_std``, ``floor_train``,
        ``floor_test``, ``beats_floor`` (1 when the winner's test LL is strictly above the
        independent-site floor), ``method`` and, when it does not beat the floor, ``warning``
        (also logged as a loud ``logging.warning`` banner).

    Raises
    ------
    ValueError
        When no finite test log-likelihood exists.
    """
    test = ll["ll_test"].transpose("n_hidden", "checkpoint").values
    if not np.isfinite(test).any():
        raise ValueError("no finite test log-likelihood in the dataset; nothing to select")
    masked = np.where(np.isfinite(test), test, -np.inf)
    best_ck = masked.argmax(1)  # per n_hidden (first maximum: the earliest checkpoint)
    rows = np.arange(test.shape[0])
    ok = np.isfinite(test[rows, best_ck])
    rows = rows[ok]
    best_ck = best_ck[ok]
    hs = ll["n_hidden"].values[rows].astype(np.int64)
    cks = ll["checkpoint"].values[best_ck].astype(np.int64)

    def pick(var: str) -> np.ndarray:
        return ll[var].transpose("n_hidden", "checkpoint").values[rows, best_ck].astype(
            np.float64)

    c_test = pick("ll_test")
    win = int(np.argmax(c_test))  # first of equal maxima: the smallest hidden size
    floor_test = float(ll.attrs["floor_test"])
    beats = bool(c_test[win] > floor_test)
    methods = (ll["method"].values[rows] if "method" in ll
               else np.array(["unknown"] * len(rows)))
    nats = {"units": "nats per sample"}
    cand = xr.Dataset(
        {
            "cand_n_hidden": ("candidate", hs),
            "cand_checkpoint": ("candidate", cks, {"units": "updates"}),
            "cand_ll_train": ("candidate", pick("ll_train"), nats),
            "cand_ll_test": ("candidate", c_test, nats),
            "cand_ll_test_std": ("candidate", pick("ll_test_std"), nats),
            "cand_method": ("candidate", methods.astype(str)),
            "cand_selected": ("candidate", (np.arange(len(rows)) == win).astype(np.uint8)),
        },
        attrs={
            "n_hidden": int(hs[win]),
            "checkpoint": int(cks[win]),
            "ll_train": float(pick("ll_train")[win]),
            "ll_test": float(c_test[win]),
            "ll_test_std": float(pick("ll_test_std")[win]),
            "floor_train": float(ll.attrs["floor_train"]),
            "floor_test": floor_test,
            "beats_floor": int(beats),
            "method": str(methods[win]),
        },
    )
    if not beats:
        cand.attrs["warning"] = (
            f"no model beats the independent-site floor on test data: best test LL "
            f"{c_test[win]:.4f} (n_hidden={hs[win]}, checkpoint={cks[win]}) <= floor "
            f"{floor_test:.4f} nats/sample; the selected model is kept only so downstream "
            "stages run, its results are not evidence of structure beyond firing rates"
        )
        logger.warning("\n%s\n!!! WARNING: %s\n%s", FLOOR_BANNER, cand.attrs["warning"],
                       FLOOR_BANNER)
    return cand


def selected_dataset(model: xr.Dataset, selection: xr.Dataset, *,
                     rate_hz: np.ndarray | None = None) -> xr.Dataset:
    """The ``selected.nc`` dataset: parameters of the chosen checkpoint + candidate table.

    Parameters
    ----------
    model
        ``model.nc`` of the selected hidden size.
    selection
        Output of :func:`select_model`.
    rate_hz
        Firing rates (n_visible,) from the raster, stored as a coordinate on ``visible``.
    """
    n_hidden = int(selection.attrs["n_hidden"])
    ckpt = int(selection.attrs["checkpoint"])
    if int(model.sizes["hidden"]) != n_hidden:
        raise ValueError(
            f"model has {model.sizes['hidden']} hidden units; the selection is n_hidden="
            f"{n_hidden}: pass that model's model.nc"
        )
    if ckpt not in set(model["checkpoint"].values.tolist()):
        raise ValueError(f"checkpoint {ckpt} is not in the model's checkpoints")
    sel = model[["W", "a", "b"]].sel(checkpoint=ckpt, drop=True)
    sel = sel.astype(np.float32)
    if rate_hz is not None:
        rate = np.asarray(rate_hz, dtype=np.float64)
        if rate.shape != (sel.sizes["visible"],):
            raise ValueError(f"rate_hz has shape {rate.shape}; expected ({sel.sizes['visible']},)")
        sel = sel.assign_coords(rate_hz=("visible", rate, {"units": "Hz"}))
    out = xr.merge([sel, selection], combine_attrs="drop")
    out.attrs = dict(selection.attrs)
    return out
