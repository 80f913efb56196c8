"""One persistent-contrastive-divergence update (docs/methods.md §3) and the runner of updates.

- :func:`pcd_gradient`: the centered (or plain) log-likelihood gradient from data and model
  moments; :func:`pcd_direction`: ``k`` sweeps of the persistent chains, then that gradient;
  :func:`pcd_step`: one SGD ascent step, returning new parameters (pure in the parameters).
- :class:`Optimizer`: the in-place ascent step of a training run (``train.optimizer``: SGD or
  Adam) with its learning rate (``train.lr``, held, then optionally decayed geometrically to
  ``lr * lr_final``), all on the device, so the step can be captured in a CUDA graph.
- :class:`DivergenceGuard`: blown-up parameters are recorded on the device at every update and
  checked (one host synchronisation) at the loop's chosen points.
- :class:`PCDEngine`: the update of a training run, applied in place to the run's parameters:
  gather the minibatch, ``k`` sweeps, gradient, ascent step (SGD or Adam), divergence record
  and, with trajectory AIS, its sweep and reweighting. The same update body runs
  eagerly, or, when the chains are capturable (the fused bf16 CUDA chains), is captured once
  as a CUDA graph and replayed: one launch per update instead of ~10 per sweep. Given R
  replicas (parameters and chains with a leading replica axis) it runs all of them in one
  update: one fused launch per half sweep sweeps every replica's chains, and each replica's
  gradient and steps run on its views, exactly as for one model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from spikerbm.rbm import RBM, hidden_probs, tf32_matmul
from spikerbm.sampling import Chains

if TYPE_CHECKING:
    from spikerbm.partition import TrajectoryAIS

__all__ = [
    "DIVERGENCE_CHECK_EVERY",
    "MAX_ABS_PARAMETER",
    "DivergenceGuard",
    "Gradient",
    "Optimizer",
    "PCDEngine",
    "TrainingDivergedError",
    "pcd_direction",
    "pcd_gradient",
    "pcd_step",
    "sgd_step",
]

#: Training counts as diverged once any |parameter| exceeds this (or is NaN/inf). SGD steps are
#: bounded by ``lr`` times a bounded gradient, so a too-large ``train.lr`` makes the parameters
#: grow without limit long before float32 overflows (~3e38); at |W| ~ 1e4 every Gibbs
#: conditional is exactly 0 or 1 in float32 (|field| > 17 suffices), sampling is frozen and
#: the gradient meaningless. Paper-scale runs (lr 0.01, 10^4 updates) stay below ~10^2.
MAX_ABS_PARAMETER = 1e4

#: Most updates between two divergence checks outside checkpoints (each check is one host sync).
DIVERGENCE_CHECK_EVERY = 100


class TrainingDivergedError(RuntimeError):
    """Training blew up: a parameter became NaN/inf or larger than :data:`MAX_ABS_PARAMETER`."""

    user_facing = True  # workflow scripts report it as one clear line (spikerbm.io.job_logger)


@dataclass(frozen=True)
class Gradient:
    """Log-likelihood ascent direction, same shapes as the RBM parameters.

    A centered direction (:func:`pcd_gradient`) also carries its offsets ``v_offset`` = v̄ (N,)
    and ``h_offset`` = h̄ (M,), so that a step can be taken in the centered parametrisation
    ``(W, a + W h̄, b + Wᵀ v̄)`` (:meth:`in_centered_coordinates`, :meth:`step_from_centered`);
    both are ``None`` for the plain gradient.
    """

    W: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    v_offset: torch.Tensor | None = None
    h_offset: torch.Tensor | None = None

    def items(self) -> list[tuple[str, torch.Tensor]]:
        return [("W", self.W), ("a", self.a), ("b", self.b)]

    def in_centered_coordinates(self) -> dict[str, torch.Tensor]:
        """The gradient with respect to the centered parameters ``(W, a + W h̄, b + Wᵀ v̄)``:
        ``(G_W, G_a + G_W h̄, G_b + G_Wᵀ v̄)`` (docs/methods.md §3); the gradient itself when it
        has no offsets."""
        if self.h_offset is None:
            return dict(self.items())
        return {"W": self.W, "a": self.a + self.W @ self.h_offset,
                "b": self.b + self.W.T @ self.v_offset}

    def step_from_centered(self, step: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a step of the centered parameters back to ``(W, a, b)``:
        ``(ΔW, Δa' − ΔW h̄, Δb' − ΔWᵀ v̄)`` (the inverse of :meth:`in_centered_coordinates`);
        the step itself when the gradient has no offsets."""
        if self.h_offset is None:
            return step
        return {"W": step["W"], "a": step["a"] - step["W"] @ self.h_offset,
                "b": step["b"] - step["W"].T @ self.v_offset}


def _moments(v: torch.Tensor, h: torch.Tensor, w: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``<v>``, ``<h>``, ``<v h^T>`` with uniform (``w=None``) or given sample weights."""
    if w is None:
        n = v.shape[0]
        return v.mean(0), h.mean(0), (v.T @ h) / n
    w = w.to(dtype=v.dtype, device=v.device)
    return w @ v, w @ h, (v * w[:, None]).T @ h


def pcd_gradient(v_data: torch.Tensor, h_data: torch.Tensor, v_model: torch.Tensor,
                 h_model: torch.Tensor, *, centered: bool = True,
                 w_data: torch.Tensor | None = None,
                 w_model: torch.Tensor | None = None) -> Gradient:
    """Log-likelihood gradient estimate from data and model moments (docs/methods.md §3).

    Parameters
    ----------
    v_data, h_data
        Data visible states (B, N) and their hidden means ``p(h|v)`` (B, M).
    v_model, h_model
        Model (chain) visible states (C, N) and hidden means or samples (C, M).
    centered
        Return the centered direction; otherwise the plain gradient
        ``<v h>_d - <v h>_m``, ``<v>_d - <v>_m``, ``<h>_d - <h>_m``.
    w_data, w_model
        Optional sample weights summing to 1 (e.g. exact probabilities of enumerated states);
        uniform averages by default.

    Returns
    -------
    Gradient
        Ascent direction. Centered (with ``v̄ = <v>_d``, ``h̄ = <h>_d``):
        ``G_W = <(v-v̄)(h-h̄)>_d - <(v-v̄)(h-h̄)>_m = g_W - v̄ g_b^T - g_a h̄^T``,
        ``G_a = g_a - G_W h̄``, ``G_b = g_b - G_W^T v̄``, where ``g`` is the plain gradient.
    """
    vd, hd, vhd = _moments(v_data, h_data, w_data)
    vm, hm, vhm = _moments(v_model, h_model, w_model)
    g_w, g_a, g_b = vhd - vhm, vd - vm, hd - hm
    if not centered:
        return Gradient(g_w, g_a, g_b)
    gc_w = g_w - torch.outer(vd, g_b) - torch.outer(g_a, hd)
    return Gradient(gc_w, g_a - gc_w @ hd, g_b - gc_w.T @ vd, v_offset=vd, h_offset=hd)


def pcd_direction(rbm: RBM, batch: torch.Tensor, chains: Chains, *, k: int, centered: bool,
                  tf32: bool = False) -> Gradient | list[Gradient]:
    """``k`` sweeps of the persistent chains (advanced in place), then :func:`pcd_gradient`
    with the data's and the chains' hidden means (products in TF32 when ``tf32``).

    Replicas (``rbm`` (R, N, M), ``batch`` (R, B, N), replica ``chains``): one batched sweep
    call for all replicas (one fused launch per half sweep), then each replica's gradient on
    its views, with the very calls of one model (so replica ``r``'s direction is bitwise the
    one-model direction of its parameters, minibatch and chain states); returns a list of
    R gradients.
    """
    chains.sweep(rbm, k=k)
    h_model = chains.hidden_means(rbm)
    with tf32_matmul(tf32):
        if rbm.n_replicas is None:
            return _direction(rbm, batch, chains.v, h_model, centered=centered)
        v_model = chains.v
        return [_direction(rbm.replica(r), batch[r], v_model[r], h_model[r], centered=centered)
                for r in range(rbm.n_replicas)]


def _direction(rbm: RBM, batch: torch.Tensor, v_model: torch.Tensor, h_model: torch.Tensor,
               *, centered: bool) -> Gradient:
    """:func:`pcd_gradient` of one model from its minibatch and its chains' states and hidden
    means."""
    h_data = hidden_probs(rbm, batch)
    return pcd_gradient(batch, h_data, v_model.to(batch.dtype), h_model, centered=centered)


def sgd_step(rbm: RBM, grad: Gradient, *, lr: float) -> RBM:
    """One SGD ascent step; returns a new RBM (``rbm`` is not modified)."""
    return RBM(torch.add(rbm.W, grad.W, alpha=lr), torch.add(rbm.a, grad.a, alpha=lr),
               torch.add(rbm.b, grad.b, alpha=lr))


def pcd_step(rbm: RBM, batch: torch.Tensor, chains: Chains, *, k: int, lr: float,
             centered: bool, tf32: bool = False) -> tuple[RBM, Gradient]:
    """One PCD update: ``k`` sweeps of the persistent chains, then gradient and SGD step.

    Parameters
    ----------
    rbm
        Current parameters (unchanged; the new ones are returned).
    batch
        Minibatch of data visible states (B, N), same dtype/device as ``rbm``.
    chains
        Persistent chains, advanced in place.
    k, lr, centered
        As in :class:`spikerbm.config.TrainConfig`.
    tf32
        TF32 in the data-side products (CUDA float32 only).

    Returns
    -------
    (RBM, Gradient)
        The updated parameters and the gradient used.
    """
    grad = pcd_direction(rbm, batch, chains, k=k, centered=centered, tf32=tf32)
    return sgd_step(rbm, grad, lr=lr), grad


def lr_schedule(update: int | torch.Tensor, *, lr: float, n_updates: int, lr_final: float,
                decay_start: float) -> float | torch.Tensor:
    """Learning rate of update ``update`` (1-based): held at ``lr`` for the first
    ``decay_start * n_updates`` updates, then decayed geometrically to ``lr * lr_final`` at
    update ``n_updates`` (docs/methods.md §3).

    ``lr(u) = lr * lr_final ** x`` with ``x = clip((u - s) / (n_updates - s), 0, 1)``,
    ``s = decay_start * n_updates``; ``lr_final = 1`` is a constant rate. ``update`` may be a
    device tensor (the result is then a float64 0-d tensor, computed without synchronising).
    """
    start = decay_start * n_updates
    span = max(n_updates - start, 1.0)
    if isinstance(update, torch.Tensor):
        x = ((update.to(torch.float64) - start) / span).clamp(0.0, 1.0)
        # lr_final ** x as exp(x log lr_final): Python scalars only, since a tensor made from
        # one would be a host-to-device copy, which a CUDA graph capture refuses
        return lr * torch.exp(x * math.log(lr_final))
    x = min(max((update - start) / span, 0.0), 1.0)
    return lr * lr_final ** x


class Optimizer:
    """The ascent step of a training run, applied in place: SGD or Adam, with
    :func:`lr_schedule` (docs/methods.md §3).

    SGD: ``theta += lr(u) * G``. Adam (Kingma & Ba, ICLR 2015, Algorithm 1, as ascent):
    ``m = b1 m + (1 - b1) G``, ``s = b2 s + (1 - b2) G^2``,
    ``theta += lr(u) * (m / (1 - b1^u)) / (sqrt(s / (1 - b2^u)) + eps)`` with
    ``b1, b2, eps = 0.9, 0.999, 1e-8``, per parameter entry; ``G`` is the PCD direction of
    :func:`pcd_gradient`. For a centered direction Adam runs in the centered parametrisation
    ``(W, a + W h̄, b + Wᵀ v̄)``: its moments follow ``Gradient.in_centered_coordinates`` and
    its step is mapped back by ``Gradient.step_from_centered`` (docs/methods.md §3: entrywise
    Adam on the mapped-back direction breaks the bias compensation of centering and drifts
    along flat directions; SGD is the same in both coordinates). Every quantity that changes
    with the update number lives on the device, so the step runs inside a captured CUDA graph.
    SGD at a constant rate is exactly ``theta.add_(G, alpha=lr)`` (bitwise the step of earlier
    versions). SGD with Nesterov momentum ``mu`` (Sutskever et al., ICML 2013, in the form of
    ``torch.optim.SGD(nesterov=True)``): ``v = mu v + G``, ``theta += lr(u) (G + mu v)``, run
    in the centered parametrisation like Adam (``v`` holds centered-coordinate directions).

    Parameters
    ----------
    rbm
        The run's parameters (their shapes, dtype and device size the Adam moments).
    kind
        ``sgd`` or ``adam``.
    lr, n_updates, lr_final, decay_start
        As in :func:`lr_schedule` (``train.lr``, ``train.n_updates``, ``train.lr_final``,
        ``train.decay_start``).
    momentum
        Nesterov momentum of SGD in [0, 1) (``train.momentum``; 0: plain SGD).

    Raises
    ------
    ValueError
        On an unknown ``kind`` or a momentum with Adam.
    """

    BETA1, BETA2, EPS = 0.9, 0.999, 1e-8

    def __init__(self, rbm: RBM, *, kind: str, lr: float, n_updates: int,
                 lr_final: float = 1.0, decay_start: float = 0.0,
                 momentum: float = 0.0) -> None:
        if kind not in ("sgd", "adam"):
            raise ValueError(f"train.optimizer must be sgd or adam; got {kind!r}")
        if momentum and kind != "sgd":
            raise ValueError(f"train.momentum is an SGD option; got momentum {momentum} with "
                             f"optimizer {kind!r}: set train.momentum: 0 or optimizer: sgd")
        self.kind, self.lr, self.n_updates = kind, lr, n_updates
        self.lr_final, self.decay_start, self.momentum = lr_final, decay_start, momentum
        self.moments: dict[str, torch.Tensor] = {}
        if kind == "adam":
            for name, t in rbm.parameters().items():
                self.moments[f"m_{name}"] = torch.zeros_like(t)
                self.moments[f"s_{name}"] = torch.zeros_like(t)
        elif momentum:
            for name, t in rbm.parameters().items():
                self.moments[f"v_{name}"] = torch.zeros_like(t)

    def step(self, rbm: RBM, grad: Gradient, update: torch.Tensor) -> None:
        """Apply the ascent step of update ``update`` (1-based, int64 0-d device tensor) to
        ``rbm`` in place."""
        params = rbm.parameters()
        if self.kind == "sgd" and self.lr_final == 1.0 and not self.momentum:
            for name, t in params.items():
                t.add_(getattr(grad, name), alpha=self.lr)
            return
        lr = lr_schedule(update, lr=self.lr, n_updates=self.n_updates, lr_final=self.lr_final,
                         decay_start=self.decay_start)
        if self.momentum:
            # Nesterov momentum (Sutskever et al., ICML 2013, in PyTorch's form) in the
            # centered parametrisation: v = mu v + G_c, step = lr (G_c + mu v), mapped back
            steps = {}
            for name, g in grad.in_centered_coordinates().items():
                v = self.moments[f"v_{name}"]
                v.mul_(self.momentum).add_(g)
                steps[name] = (g + self.momentum * v) * lr.to(v.dtype)
            for name, d in grad.step_from_centered(steps).items():
                params[name].add_(d)
            return
        if self.kind == "sgd":
            for name, t in params.items():
                t.add_(getattr(grad, name) * lr.to(t.dtype))
            return
        u = update.to(torch.float64)
        step = (lr / (1 - torch.pow(self.BETA1, u))).to(torch.float32)
        bias2 = (1 - torch.pow(self.BETA2, u)).to(torch.float32)
        steps = {}
        for name, g in grad.in_centered_coordinates().items():
            m, s = self.moments[f"m_{name}"], self.moments[f"s_{name}"]
            m.mul_(self.BETA1).add_(g, alpha=1 - self.BETA1)
            s.mul_(self.BETA2).addcmul_(g, g, value=1 - self.BETA2)
            steps[name] = m * step / ((s / bias2).sqrt() + self.EPS)
        for name, d in grad.step_from_centered(steps).items():
            params[name].add_(d)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Copies of the Adam moments or the momentum buffers (empty for plain SGD: its state is
        the update number alone)."""
        return {key: t.clone() for key, t in self.moments.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` (copied into the device tensors)."""
        if set(state) != set(self.moments):
            raise ValueError(f"optimizer state has {sorted(state)}; {self.kind} needs "
                             f"{sorted(self.moments)}")
        for key, t in state.items():
            self.moments[key].copy_(t)


class DivergenceGuard:
    """Watch for blown-up parameters with no host-device synchronisation per update.

    :meth:`record` runs after every update and only queues device work: it keeps, in a device
    tensor, the first update whose parameters hold a NaN/inf or a value beyond
    :data:`MAX_ABS_PARAMETER`. :meth:`check` reads that flag (one sync) and raises
    :class:`TrainingDivergedError`. The training loop checks before storing every checkpoint
    (so ``resume.nc`` only ever holds good states) and at most :data:`DIVERGENCE_CHECK_EVERY`
    updates apart (bounding the work wasted after a blow-up); on CUDA that is one sync per 100
    updates instead of one per update.
    """

    def __init__(self, device: torch.device, *, lr: float) -> None:
        self.first_bad = torch.zeros((), dtype=torch.int64, device=device)
        self.lr = lr

    def record(self, update: int | torch.Tensor, rbm: RBM) -> None:
        """Note ``update`` as the first bad one if ``rbm`` has blown up (device-side only).

        Checking the parameters covers the gradient too: a NaN/inf gradient makes the updated
        parameters NaN/inf.
        """
        # max |x| is NaN when x has a NaN, so the comparison is False for NaN, inf and too large
        peak = torch.stack([t.detach().abs().amax() for t in rbm.parameters().values()]).amax()
        ok = peak <= MAX_ABS_PARAMETER
        # in place, so that a CUDA graph that captured this call keeps updating the flag
        self.first_bad.copy_(torch.where(ok | (self.first_bad > 0), self.first_bad, update))

    def first_bad_update(self) -> int:
        """The first recorded update that blew up, 0 if none (one sync)."""
        return int(self.first_bad)

    def describe(self, rbm: RBM) -> str:
        """Which parameters of ``rbm`` are NaN/inf or too large, and the largest finite one."""
        parts = []
        for name, t in rbm.parameters().items():
            t = t.detach()
            n_bad = int((~(t.abs() <= MAX_ABS_PARAMETER)).sum())
            if n_bad:
                finite = t[torch.isfinite(t)]
                peak = float(finite.abs().max()) if finite.numel() else math.nan
                parts.append(f"parameter {name} has {n_bad} value(s) NaN/inf or beyond "
                             f"{MAX_ABS_PARAMETER:g} in absolute value (largest finite "
                             f"|{name}| = {peak:.3g})")
        return "; ".join(parts)

    def check(self, update: int, rbm: RBM, *, last_checkpoint: int) -> None:
        """Raise :class:`TrainingDivergedError` if any recorded update blew up (one sync)."""
        bad = self.first_bad_update()
        if bad == 0:
            return
        raise TrainingDivergedError(
            f"training diverged at update {bad}: {self.describe(rbm)} (found at the check after "
            f"update {update}). train.lr = {self.lr:g} is too large for this data: lower it "
            f"(e.g. train.lr: {self.lr / 100:g}) and rerun. The last good checkpoint (update "
            f"{last_checkpoint}) is kept in resume.nc; no model.nc is written"
        )


class PCDEngine:
    """PCD updates applied in place to a run's parameters, chains and trajectory AIS, for one
    model or for R replicas batched (one launch per half sweep for all of them).

    One update (:meth:`step`) is: gather the minibatch (device indices), :func:`pcd_direction`
    (``k`` sweeps, hidden means of chains and data, the centered gradient), the
    :class:`Optimizer` step in place, the divergence record and, with trajectory AIS, its
    sweep with the parameters of its last step (kept in a buffer) and its reweighting from
    those to the parameters after the update (the free-energy difference of
    :func:`spikerbm.rbm.free_energy_difference`; resampling by ``torch.where``), in
    ``tais.n_stages`` interpolated stages when the step is large
    (:meth:`~spikerbm.partition.TrajectoryAIS.advance`), or only every ``tais.stride``-th
    update (and the last before a synchronisation point) when the steps are small
    (:meth:`~spikerbm.partition.TrajectoryAIS.due`).
    Nothing in it synchronises with the host. With capturable chains the first update runs
    eagerly on a side stream (which compiles and autotunes the kernels) and is then captured
    once as a CUDA graph that every later update replays; each number of trajectory-AIS stages
    (fixed between two synchronisation points; one per replica), with and without the
    trajectory-AIS step, gets its own graph, captured the same way.

    Replicas (docs/methods.md §3, "Replicas"): ``rbm`` has a leading replica axis (R, N, M),
    ``chains`` are replica chains (R, C, N), and ``optimizer``, ``guard`` and ``tais`` are
    sequences with one entry per replica, each working on its replica's views ``rbm.W[r]``,
    ``rbm.a[r]``, ``rbm.b[r]``. An update gathers every replica's own minibatch (``idx``
    (R, B)), sweeps all replicas' chains with one call per sweep (:func:`pcd_direction`: one
    fused launch per half sweep on CUDA), then takes each replica's gradient, ascent step,
    divergence record and trajectory-AIS step on its views with the calls of one model. Every
    replica's update is therefore the one-model update of its own state: bitwise on CPU, the
    same random streams on CUDA (the fused kernels key each replica by its own Philox key).
    The whole update of all replicas is one CUDA graph. Only the sweeps (``2k`` of the
    ``2k + 3`` products of an update) are batched: the gradient products and the small
    per-replica steps cost a few per cent of an update inside the graph, and batching them
    (``bmm``) would change their summation order, i.e. lose the bitwise identity with the
    one-model update.

    Parameters
    ----------
    rbm
        The run's parameters (float32, on the device), updated in place; ([R,] N, M).
    chains
        The persistent chains (with the replica axis of ``rbm``).
    data
        Training split on the device, (T, N) uint8 (shared by the replicas).
    k, centered, tf32
        Sweeps per update, centered gradient, TF32 in the data-side products.
    optimizer
        The run's :class:`Optimizer` (ascent step and learning rate); one per replica.
    guard
        The run's :class:`DivergenceGuard`, into which every update records on the device; one
        per replica.
    first_update
        Number of the first update this engine runs (for the guard's record).
    batch_size
        Minibatch rows per update (per replica).
    tais
        The run's (initialised) trajectory AIS, or ``None``; it follows ``rbm`` (its replica's
        views) by reference; one per replica (or ``None`` for none).

    Attributes
    ----------
    log_z
        The trajectory-AIS groups' estimates after the last update, ([R,] n_groups) float64 on
        the device (NaN without trajectory AIS); pooled at the loop's synchronisation points.
    """

    def __init__(self, rbm: RBM, *, chains: Chains, data: torch.Tensor, k: int,
                 optimizer: Optimizer | Sequence[Optimizer], centered: bool, tf32: bool,
                 guard: DivergenceGuard | Sequence[DivergenceGuard], first_update: int,
                 batch_size: int,
                 tais: TrajectoryAIS | Sequence[TrajectoryAIS] | None = None) -> None:
        dev, n_rep = rbm.device, rbm.n_replicas
        if chains.n_replicas != n_rep:
            raise ValueError(f"the chains have {chains.n_replicas} replicas, the RBM {n_rep} "
                             "(None: one model)")
        lead = () if n_rep is None else (n_rep,)
        if n_rep is None:
            models, optimizers, guards, taises = [rbm], [optimizer], [guard], [tais]
        else:
            models = [rbm.replica(r) for r in range(n_rep)]
            optimizers, guards = list(optimizer), list(guard)
            taises = [None] * n_rep if tais is None else list(tais)
            if not len(optimizers) == len(guards) == len(taises) == n_rep:
                raise ValueError(f"{n_rep} replicas need one optimizer, guard and trajectory "
                                 f"AIS each; got {len(optimizers)}, {len(guards)}, "
                                 f"{len(taises)}")
        if len({t is None for t in taises}) > 1:
            raise ValueError("either every replica has trajectory AIS or none")
        self.rbm, self.chains, self.data, self.tais = rbm, chains, data, tais
        self.k, self.centered, self.tf32 = k, centered, tf32
        self.optimizer, self.guard = optimizer, guard
        self.idx = torch.zeros(*lead, batch_size, dtype=torch.int64, device=dev)
        self._batch_u8 = torch.empty(*lead, batch_size, data.shape[1], dtype=torch.uint8,
                                     device=dev)
        self._batch = torch.empty(*lead, batch_size, data.shape[1], dtype=torch.float32,
                                  device=dev)
        self._tais = [t for t in taises if t is not None]
        self.log_z = torch.full((*lead, self._tais[0].n_groups if self._tais else 1),
                                math.nan, dtype=torch.float64, device=dev)
        self._update_no = torch.tensor(int(first_update), dtype=torch.int64, device=dev)
        # one captured graph per tuple of trajectory-AIS stage counts (chosen at sync points),
        # all drawing their memory from one pool: every tensor that outlives an update is
        # allocated before the first capture (buffers, states, the eager first update's lazy
        # allocations), so a graph's memory holds only temporaries, written before they are
        # read within the graph, and graphs replayed one at a time may share it (memory = the
        # largest graph's, not the sum over up to 6^R stage tuples)
        self._graphs: dict[tuple[int, ...], torch.cuda.CUDAGraph] = {}
        self._pool = None
        before = RBM(*(t.detach().clone() for t in (rbm.W, rbm.a, rbm.b)))
        befores = [before] if n_rep is None else [before.replica(r) for r in range(n_rep)]
        log_zs = [self.log_z] if n_rep is None else list(self.log_z)
        # per model: parameters (views), optimizer, guard, trajectory AIS, the parameters
        # before the step (trajectory AIS reweights from them), its log Z estimates
        self._models = list(zip(models, optimizers, guards, taises, befores, log_zs,
                                strict=True))
        for model, _, _, t, _, _ in self._models:
            if t is not None:
                t.set_current(model, n_steps=t.n_steps)

    def _update(self, due: tuple[bool, ...]) -> None:
        n = self.data.shape[1]
        torch.index_select(self.data, 0, self.idx.view(-1), out=self._batch_u8.view(-1, n))
        self._batch.copy_(self._batch_u8)
        grads = pcd_direction(self.rbm, self._batch, self.chains, k=self.k,
                              centered=self.centered, tf32=self.tf32)
        flags = iter(due)
        for (r, optimizer, guard, tais, before, log_z), grad in zip(
                self._models, grads if isinstance(grads, list) else [grads], strict=True):
            # trajectory AIS steps from the parameters of its last step (``before``) to the
            # current ones on the updates ``due`` marks (every one, unless its stride is > 1)
            step_tais = tais is not None and next(flags)
            if step_tais:
                tais.sweep(before)
            optimizer.step(r, grad, self._update_no)
            guard.record(self._update_no, r)
            if step_tais:
                log_z.copy_(tais.advance(before, r))
                for t, b in zip(r.parameters().values(), before.parameters().values(),
                                strict=True):
                    b.copy_(t)
        self._update_no += 1

    def step(self, idx: torch.Tensor, *, last: bool = True) -> None:
        """One update with the minibatch rows ``idx`` (int64, ([R,] batch_size), any device;
        copied; replica ``r`` takes rows ``idx[r]``). ``last``: the last update before the
        caller reads :attr:`log_z` or the state (a trajectory-AIS step ends there whatever the
        stride, :meth:`~spikerbm.partition.TrajectoryAIS.due`)."""
        self.idx.copy_(idx, non_blocking=True)
        due = tuple(t.due(last) for t in self._tais)
        key = tuple(zip((t.n_stages for t in self._tais), due, strict=True))
        graph = self._graphs.get(key)
        if not self.chains.capturable:
            self._update(due)
        elif graph is None:
            # eager first update on a side stream (compiles, autotunes, warms cuBLAS), then
            # capture the same update once; later updates with these numbers of
            # trajectory-AIS stages replay it
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._update(due)
            torch.cuda.current_stream().wait_stream(side)
            graph = self._graphs[key] = torch.cuda.CUDAGraph()
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            with torch.cuda.graph(graph, pool=self._pool):
                self._update(due)
        else:
            graph.replay()
        for t in self._tais:
            t.n_steps += 1
