"""Persistent-contrastive-divergence training of RBMs with checkpoints and exact resume.

Pieces (METHODS §3):

- :class:`TrainConfig`: the frozen, validated training configuration, built once from the
  ``train`` section of the Snakemake config (:meth:`TrainConfig.from_config`).
- :func:`pcd_gradient` and :func:`sgd_step`: the pure update (centered or plain gradient from
  data and model moments; one SGD ascent step returning a new :class:`~spikerbm.rbm.RBM`).
- :func:`pcd_step`: ``k`` Gibbs sweeps of the persistent chains, then gradient and SGD step.
- :func:`train`: the loop. Checkpoints are log-spaced in update count
  (:func:`checkpoint_schedule`, update 0 = initialisation and the last update included). After each
  checkpoint the loop hands the full training state (trajectory so far, chains, every RNG state,
  minibatch order, trajectory-AIS state, update counter, config and data hashes) as an
  ``xarray.Dataset`` to a callback; :func:`train` started with that dataset continues exactly
  where it stopped (bitwise on CPU).
- :func:`train_to_files`: the file-level driver used by ``scripts/train.py`` (writes
  ``resume.nc`` after every checkpoint and ``model.nc`` at the end, atomically, through
  :mod:`spikerbm.io`; deletes ``resume.nc`` on success).

Precision (``train.precision``): parameters and gradients in float32; sampling products in
float32, TF32 (``tf32``, CUDA) or bfloat16 operands (``bf16``, CUDA: the fused kernels of
:mod:`spikerbm.kernels`, with one whole update, trajectory-AIS step included, replayed as a
CUDA graph by :class:`FusedPCD`); every energy / log Z (trajectory AIS) in float64.

This module imports xarray lazily, so the pure-torch parts (config, gradient, step) work without
netCDF libraries (``benchmarks/train_speed.py`` relies on that).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from spikerbm.config import PRECISIONS, TrainConfig  # noqa: F401 (re-exported)
from spikerbm.provenance import canonical_json, derive_seed
from spikerbm.rbm import (
    RBM,
    hidden_probs,
    independent_site,
    init_rbm,
    resolve_device,
    tf32_matmul,
)
from spikerbm.sampling import FusedChains, PersistentChains

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger(__name__)

#: Version of the resume-state layout; a resume file of another version is ignored.
RESUME_FORMAT = 2


class TrainingDivergedError(RuntimeError):
    """Training blew up: a parameter became NaN/inf or larger than :data:`MAX_ABS_PARAMETER`."""

    user_facing = True  # workflow scripts report it as one clear line (spikerbm.io.job_logger)


#: Training counts as diverged once any |parameter| exceeds this (or is NaN/inf). SGD steps are
#: bounded by ``lr`` times a bounded gradient, so a too-large ``train.lr`` makes the parameters
#: grow without limit long before float32 overflows (~3e38); at |W| ~ 1e4 every Gibbs
#: conditional is exactly 0 or 1 in float32 (|field| > 17 suffices), sampling is frozen and
#: the gradient meaningless. Paper-scale runs (lr 0.01, 10^4 updates) stay below ~10^2.
MAX_ABS_PARAMETER = 1e4

#: Updates between two divergence checks outside checkpoints (each check is one host sync).
DIVERGENCE_CHECK_EVERY = 100


# --------------------------------------------------------------------------------------------
# Pure update step
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gradient:
    """Log-likelihood ascent direction, same shapes as the RBM parameters."""

    W: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor

    def items(self) -> list[tuple[str, torch.Tensor]]:
        return [("W", self.W), ("a", self.a), ("b", self.b)]


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
    """Log-likelihood gradient estimate from data and model moments (METHODS §3).

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
    return Gradient(gc_w, g_a - gc_w @ hd, g_b - gc_w.T @ vd)


def sgd_step(rbm: RBM, grad: Gradient, *, lr: float) -> RBM:
    """One SGD ascent step; returns a new RBM (``rbm`` is not modified)."""
    return RBM(torch.add(rbm.W, grad.W, alpha=lr), torch.add(rbm.a, grad.a, alpha=lr),
               torch.add(rbm.b, grad.b, alpha=lr))


def pcd_step(rbm: RBM, batch: torch.Tensor, chains: PersistentChains, *, k: int, lr: float,
             centered: bool, generator: torch.Generator,
             tf32: bool = False) -> tuple[RBM, Gradient]:
    """One PCD update: ``k`` sweeps of the persistent chains, then gradient and SGD step.

    Parameters
    ----------
    rbm
        Current parameters (unchanged; the new ones are returned).
    batch
        Minibatch of data visible states (B, N), same dtype/device as ``rbm``.
    chains
        Persistent chains, advanced in place.
    k, lr, centered, tf32
        As in :class:`TrainConfig`.
    generator
        Generator of the chains' device.

    Returns
    -------
    (RBM, Gradient)
        The updated parameters and the gradient used.
    """
    chains.sweep(rbm, generator=generator, k=k, tf32=tf32)
    h_model = chains.hidden_means(rbm, tf32=tf32)
    with tf32_matmul(tf32):
        h_data = hidden_probs(rbm, batch)
        grad = pcd_gradient(batch, h_data, chains.v, h_model, centered=centered)
    return sgd_step(rbm, grad, lr=lr), grad


class DivergenceGuard:
    """Watch for blown-up parameters with no host-device synchronisation per update.

    :meth:`record` runs after every update and only queues device work: it keeps, in a device
    tensor, the first update whose parameters hold a NaN/inf or a value beyond
    :data:`MAX_ABS_PARAMETER`. :meth:`check` reads that flag (one sync) and raises
    :class:`TrainingDivergedError`. The training loop checks before storing every checkpoint
    (so ``resume.nc`` only ever holds good states) and every :data:`DIVERGENCE_CHECK_EVERY`
    updates (bounding the work wasted after a blow-up); on CUDA that is one sync per 100
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

    def check(self, update: int, rbm: RBM, *, last_checkpoint: int) -> None:
        """Raise :class:`TrainingDivergedError` if any recorded update blew up (one sync)."""
        bad = int(self.first_bad)
        if bad == 0:
            return
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
        raise TrainingDivergedError(
            f"training diverged at update {bad}: {'; '.join(parts)} (found at the check after "
            f"update {update}). train.lr = {self.lr:g} is too large for this data: lower it "
            f"(e.g. train.lr: {self.lr / 100:g}) and rerun. The last good checkpoint (update "
            f"{last_checkpoint}) is kept in resume.nc; no model.nc is written"
        )


# --------------------------------------------------------------------------------------------
# Schedule and minibatches
# --------------------------------------------------------------------------------------------
def checkpoint_schedule(n_updates: int, n_checkpoints: int) -> np.ndarray:
    """Update numbers of the checkpoints: 0, then log-spaced up to ``n_updates``.

    Exactly ``min(n_checkpoints, n_updates + 1)`` distinct increasing integers, starting at 0
    and ending at ``n_updates``; rounding collisions at small counts are resolved by
    shifting to neighbouring integers.
    """
    if n_updates < 1 or n_checkpoints < 2:
        raise ValueError(f"need n_updates >= 1 and n_checkpoints >= 2; got {n_updates}, "
                         f"{n_checkpoints}")
    q = min(n_checkpoints, n_updates + 1) - 1  # points after update 0
    x = np.geomspace(1, n_updates, q)
    c = np.empty(q + 1, dtype=np.int64)
    c[0] = 0
    for j in range(1, q + 1):
        c[j] = max(int(round(x[j - 1])), c[j - 1] + 1)
    c[q] = n_updates
    for j in range(q - 1, 0, -1):
        c[j] = min(c[j], c[j + 1] - 1)
    return c


class MinibatchStream:
    """Minibatches of the train split in shuffled order: a fresh permutation per epoch.

    An epoch's incomplete last batch is dropped. The permutation comes from ``generator`` (CPU);
    the state (generator, permutation, position) round-trips through :meth:`state_dict`.
    """

    def __init__(self, n_samples: int, *, batch_size: int, generator: torch.Generator) -> None:
        if batch_size > n_samples:
            raise ValueError(
                f"batch_size = {batch_size} exceeds the {n_samples} training bins; lower "
                "train.batch_size (or use more data)"
            )
        self.n_samples, self.batch_size, self.generator = n_samples, batch_size, generator
        self.perm = torch.arange(n_samples, dtype=torch.int64)
        self.pos = n_samples  # forces a fresh permutation at the first batch

    def next_indices(self) -> torch.Tensor:
        """Indices (CPU int64) of the next minibatch."""
        if self.pos + self.batch_size > self.n_samples:
            self.perm = torch.randperm(self.n_samples, generator=self.generator)
            self.pos = 0
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"rng": self.generator.get_state(), "perm": self.perm.clone(),
                "pos": torch.tensor(self.pos, dtype=torch.int64)}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.generator.set_state(state["rng"].to(torch.uint8).cpu())
        self.perm = state["perm"].to(torch.int64).cpu().clone()
        self.pos = int(state["pos"])


# --------------------------------------------------------------------------------------------
# Hashes, state <-> dataset
# --------------------------------------------------------------------------------------------
def data_hash(train: np.ndarray) -> str:
    """SHA-256 of the training array (shape, dtype and bytes)."""
    arr = np.ascontiguousarray(train)
    h = hashlib.sha256(f"{arr.shape}|{arr.dtype}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def config_hash(cfg: TrainConfig, *, seed: int, device: torch.device) -> str:
    """SHA-256 of everything that determines the trajectory besides the data."""
    text = canonical_json({"train": cfg.to_dict(), "seed": int(seed), "device": device.type,
                           "format": RESUME_FORMAT})
    return hashlib.sha256(text.encode()).hexdigest()


_TORCH_DTYPES = {str(d): d for d in (torch.float16, torch.bfloat16, torch.float32,
                                     torch.float64, torch.int8, torch.int16, torch.int32,
                                     torch.int64, torch.uint8, torch.bool)}


def _tensor_var(name: str, t: torch.Tensor) -> tuple[tuple[str, ...], np.ndarray, dict]:
    t = t.detach().cpu()
    dims = tuple(f"{name}_dim{i}" for i in range(t.ndim))
    arr = t.to(torch.uint8).numpy() if t.dtype == torch.bool else t.numpy()
    return dims, arr, {"torch_dtype": str(t.dtype)}


def _var_tensor(var: Any) -> torch.Tensor:
    dtype = _TORCH_DTYPES[var.attrs.get("torch_dtype", "torch.uint8")]
    return torch.as_tensor(np.asarray(var.values)).to(dtype)


@dataclass
class _Trajectory:
    updates: list[int]
    W: list[np.ndarray]
    a: list[np.ndarray]
    b: list[np.ndarray]
    logz: list[float]

    def add(self, update: int, rbm: RBM, logz: float) -> None:
        self.updates.append(int(update))
        for name, t in rbm.parameters().items():
            getattr(self, name).append(t.detach().cpu().numpy().copy())
        self.logz.append(float(logz))


def _state_dataset(*, cfg: TrainConfig, traj: _Trajectory,
                   chains: PersistentChains | FusedChains,
                   chain_gen: torch.Generator, batches: MinibatchStream, tais: Any,
                   tais_gen: torch.Generator, update: int, hashes: Mapping[str, str],
                   visible_coords: Mapping[str, Any], for_resume: bool) -> xr.Dataset:
    import xarray as xr

    data_vars: dict[str, Any] = {
        "W": (("checkpoint", "visible", "hidden"), np.stack(traj.W).astype(np.float32),
              {"units": "1", "long_name": "weights"}),
        "a": (("checkpoint", "visible"), np.stack(traj.a).astype(np.float32),
              {"units": "1", "long_name": "visible biases"}),
        "b": (("checkpoint", "hidden"), np.stack(traj.b).astype(np.float32),
              {"units": "1", "long_name": "hidden biases"}),
        "logz_tais": (("checkpoint",), np.asarray(traj.logz, dtype=np.float64),
                      {"units": "nats", "long_name": "trajectory-AIS log Z (NaN if disabled)"}),
        "chains": (("chain", "visible"), chains.v.detach().to(torch.uint8).cpu().numpy(),
                   {"units": "1", "long_name": "final persistent chains (visible states)"}),
        "rng_chains": (("rng_chains_byte",), chain_gen.get_state().numpy(),
                       {"long_name": "torch generator state of the chains (uint8 bytes)"}),
        "rng_shuffle": (("rng_shuffle_byte",), batches.generator.get_state().numpy(),
                        {"long_name": "torch generator state of the minibatch shuffle"}),
    }
    if isinstance(chains, FusedChains):
        data_vars["philox_chains"] = ((), np.int64(chains.seed.item()),
                                      {"long_name": "Philox key of the fused chains' next sweep"})
    if tais is not None:
        data_vars["rng_tais"] = (("rng_tais_byte",), tais_gen.get_state().numpy(),
                                 {"long_name": "torch generator state of trajectory AIS"})
    if for_resume:
        data_vars["batch_perm"] = (("train_bin",), batches.perm.numpy(),
                                   {"long_name": "current epoch's permutation of train bins"})
        data_vars["batch_pos"] = ((), np.int64(batches.pos))
        if tais is not None:
            for key, t in tais.state_dict().items():
                name = f"tais__{key}"
                data_vars[name] = _tensor_var(name, t)
    coords: dict[str, Any] = {"checkpoint": ("checkpoint", np.asarray(traj.updates, np.int64),
                                             {"units": "updates"})}
    for name, values in visible_coords.items():
        coords[name] = ("visible", np.asarray(values))
    attrs = {"n_hidden": cfg.n_hidden, "train_config": cfg.to_json(), "n_updates_done": update,
             "resume_format": RESUME_FORMAT, **hashes}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def _make_tais(rbm_init: RBM, cfg: TrainConfig, generator: torch.Generator,
               fused_seed: int | None) -> Any:
    from spikerbm.likelihood import TrajectoryAIS, log_z_independent  # imports xarray

    start = independent_site(rbm_init.a, rbm_init.n_hidden)
    return TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=cfg.tais_chains,
                         generator=generator, ess_threshold=cfg.ess_threshold,
                         fused_seed=fused_seed)


class FusedPCD:
    """PCD updates on CUDA with the fused bf16 sampler, each update one CUDA-graph replay.

    One update is: gather the minibatch (device indices), ``k`` fused sweeps of the persistent
    chains, hidden means of chains and data, the centered gradient (TF32 moments), the SGD
    step in place, and, with trajectory AIS, its sweep and float64 reweighting (resampling by
    ``torch.where``). Nothing in it synchronises with the host, so after one eager update
    (which compiles and autotunes the kernels) the whole update is captured once and replayed:
    one launch per update instead of ~10 per sweep. Parameters live in fixed tensors updated
    in place (``rbm``); the :class:`DivergenceGuard` records blow-ups on the device and is
    read by the training loop once per chunk of updates.

    Parameters
    ----------
    rbm
        Initial parameters (float32, CUDA); copied.
    chains
        Persistent chains (:class:`~spikerbm.sampling.FusedChains`).
    data
        Training split on the device, (T, N) uint8.
    cfg
        Training configuration (``k``, ``lr``, ``centered``, ``batch_size``).
    tais
        A fused :class:`~spikerbm.likelihood.TrajectoryAIS` (already initialised) or ``None``.
    guard
        The run's :class:`DivergenceGuard`; every update records into it on the device.
    first_update
        Number of the first update this engine runs (for the guard's record).
    """

    def __init__(self, rbm: RBM, *, chains: FusedChains, data: torch.Tensor,
                 cfg: TrainConfig, guard: DivergenceGuard, first_update: int,
                 tais: Any = None) -> None:
        dev = rbm.device
        self.rbm = RBM(*(t.detach().clone().contiguous() for t in (rbm.W, rbm.a, rbm.b)))
        self.chains, self.data, self.cfg, self.tais = chains, data, cfg, tais
        self.idx = torch.zeros(cfg.batch_size, dtype=torch.int64, device=dev)
        self._batch_u8 = torch.empty(cfg.batch_size, data.shape[1], dtype=torch.uint8,
                                     device=dev)
        self._batch = torch.empty(cfg.batch_size, data.shape[1], dtype=torch.float32,
                                  device=dev)
        self.logz = torch.full((), math.nan, dtype=torch.float64, device=dev)
        self.guard = guard
        self._update_no = torch.tensor(int(first_update), dtype=torch.int64, device=dev)
        self._graph: torch.cuda.CUDAGraph | None = None

    def _update(self) -> None:
        cfg, r, ch = self.cfg, self.rbm, self.chains
        torch.index_select(self.data, 0, self.idx, out=self._batch_u8)
        self._batch.copy_(self._batch_u8)
        ch.sweep(r, k=cfg.k)
        h_model = ch.hidden_means(r)
        with tf32_matmul(True):
            h_data = hidden_probs(r, self._batch)
            grad = pcd_gradient(self._batch, h_data, ch.v.float(), h_model,
                                centered=cfg.centered)
        energy_now = self.tais.sweep_and_energy(r) if self.tais is not None else None
        for name, t in r.parameters().items():
            t.add_(getattr(grad, name), alpha=cfg.lr)
        self.guard.record(self._update_no, r)
        self._update_no += 1
        if self.tais is not None:
            self.logz.copy_(self.tais.reweight(energy_now, r))

    def step(self, idx: torch.Tensor) -> None:
        """One update with the minibatch rows ``idx`` (int64, any device; copied)."""
        self.idx.copy_(idx, non_blocking=True)
        if self._graph is None:
            # eager first update on a side stream (compiles, autotunes, warms cuBLAS), then
            # capture the same update once; later updates replay it
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._update()
            torch.cuda.current_stream().wait_stream(side)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._update()
            return
        self._graph.replay()


def _use_fused(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether this run uses the fused bf16 CUDA path (logs why not when bf16 was asked)."""
    if cfg.precision != "bf16":
        return False
    from spikerbm import kernels

    if kernels.available(device):
        return True
    if device.type == "cuda":
        log.warning("train.precision bf16 needs Triton, which this torch build lacks: sampling "
                    "runs in TF32 with the library products instead")
    else:
        log.info("train.precision bf16 applies to CUDA only: sampling runs in float32 on %s",
                 device)
    return False


def resume_mismatch(resume: xr.Dataset, hashes: Mapping[str, str]) -> str | None:
    """Why a resume state cannot be used (``None`` when it matches)."""
    if int(resume.attrs.get("resume_format", -1)) != RESUME_FORMAT:
        return (f"resume format {resume.attrs.get('resume_format')} != {RESUME_FORMAT}")
    for key, what in (("config_hash", "training config/seed/device"),
                      ("data_hash", "training data")):
        if resume.attrs.get(key) != hashes[key]:
            return f"the {what} changed ({key} {resume.attrs.get(key)} != {hashes[key]})"
    return None


def train(train_data: np.ndarray | torch.Tensor, *, cfg: TrainConfig, seed: int,
          resume: xr.Dataset | None = None,
          on_checkpoint: Callable[[xr.Dataset], None] | None = None,
          visible_coords: Mapping[str, Any] | None = None,
          progress: bool = False) -> xr.Dataset:
    """Train an RBM by PCD and return its ``model.nc`` dataset (without provenance attrs).

    Parameters
    ----------
    train_data
        Training split, (T, N) in {0, 1} (uint8 preferred), any order (minibatches are drawn in
        shuffled order).
    cfg
        Training configuration.
    seed
        The job's seed; initial weights, chains, minibatch order and trajectory AIS use
        generators seeded by ``derive_seed(seed, "init" | "chains" | "shuffle" | "tais")``.
    resume
        A state dataset previously passed to ``on_checkpoint``; used when its config and data
        hashes match (continuing bitwise-exactly on CPU), otherwise ignored (logged).
    on_checkpoint
        Called with the full training state after each checkpoint (e.g. to write
        ``resume.nc``).
    visible_coords
        Coordinates on the ``visible`` dim (e.g. ``unit_id``, ``area``).
    progress
        Show a tqdm progress bar (updates per second).

    Returns
    -------
    xarray.Dataset
        dims ``checkpoint``, ``visible``, ``hidden``, ``chain``: ``W``, ``a``, ``b`` at every
        checkpoint, final ``chains`` (uint8), ``logz_tais``, RNG states; attrs ``n_hidden``,
        ``train_config`` (JSON), hashes.

    Raises
    ------
    TrainingDivergedError
        When a parameter becomes NaN/inf or exceeds :data:`MAX_ABS_PARAMETER` (checked by
        :class:`DivergenceGuard` before each checkpoint and every
        :data:`DIVERGENCE_CHECK_EVERY` updates; the last good checkpoint state was already
        handed to ``on_checkpoint``).
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    data_np = np.asarray(train_data.cpu() if isinstance(train_data, torch.Tensor)
                         else train_data)
    if data_np.ndim != 2:
        raise ValueError(f"train_data must be (time_bin, neuron); got shape {data_np.shape}")
    if not np.isin(data_np, (0, 1)).all():
        raise ValueError("train_data must contain only 0 and 1 (a binarized raster)")
    data_u8 = np.ascontiguousarray(data_np, dtype=np.uint8)
    n_samples, n_visible = data_u8.shape
    hashes = {"config_hash": config_hash(cfg, seed=seed, device=device),
              "data_hash": data_hash(data_u8)}
    visible_coords = dict(visible_coords or {})
    log.info("train config: %s", cfg.to_json())
    log.info("device: %s (torch %s, %s); seed %d; data %d train bins x %d neurons",
             device, torch.__version__,
             torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
             seed, n_samples, n_visible)

    data = torch.from_numpy(data_u8).to(device)
    fused = _use_fused(cfg, device)
    batch_u8 = torch.empty(cfg.batch_size, n_visible, dtype=torch.uint8, device=device)
    batch = torch.empty(cfg.batch_size, n_visible, dtype=torch.float32, device=device)
    chain_gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "chains"))
    shuffle_gen = torch.Generator().manual_seed(derive_seed(seed, "shuffle"))
    tais_gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "tais"))
    batches = MinibatchStream(n_samples, batch_size=cfg.batch_size, generator=shuffle_gen)
    schedule = checkpoint_schedule(cfg.n_updates, cfg.n_checkpoints)
    is_checkpoint = set(schedule.tolist())

    tais_seed = derive_seed(seed, "philox-tais") if fused else None
    why = resume_mismatch(resume, hashes) if resume is not None else "no resume state"
    if resume is not None and why is None:
        update = int(resume.attrs["n_updates_done"])
        traj = _Trajectory([int(u) for u in resume["checkpoint"].values],
                           list(resume["W"].values), list(resume["a"].values),
                           list(resume["b"].values), [float(x) for x in resume["logz_tais"]])
        rbm = RBM(*(torch.from_numpy(np.array(x[-1], dtype=np.float32)).to(device)
                    for x in (traj.W, traj.a, traj.b)))
        v_resume = torch.from_numpy(resume["chains"].values).to(device)
        chains = (FusedChains(v_resume, n_hidden=cfg.n_hidden,
                              seed=int(resume["philox_chains"]))
                  if fused else PersistentChains(v_resume, n_hidden=cfg.n_hidden))
        chain_gen.set_state(torch.from_numpy(resume["rng_chains"].values.astype(np.uint8)))
        batches.load_state_dict({
            "rng": torch.from_numpy(resume["rng_shuffle"].values.astype(np.uint8)),
            "perm": torch.from_numpy(resume["batch_perm"].values),
            "pos": torch.tensor(int(resume["batch_pos"]))})
        tais = None
        if cfg.tais_chains > 0:
            rbm_init = RBM(*(torch.from_numpy(np.array(x[0], dtype=np.float32)).to(device)
                             for x in (traj.W, traj.a, traj.b)))
            tais = _make_tais(rbm_init, cfg, tais_gen, fused_seed=tais_seed)
            tais.load_state_dict({
                name[len("tais__"):]: _var_tensor(var).to(device)
                for name, var in resume.data_vars.items() if name.startswith("tais__")})
            tais_gen.set_state(
                torch.from_numpy(resume["rng_tais"].values.astype(np.uint8)))
        log.info("resuming from update %d (checkpoint %d of %d)", update, len(traj.updates),
                 len(schedule))
    else:
        if resume is not None:
            log.warning("starting fresh: resume state not usable because %s", why)
        else:
            log.info("starting fresh (%s)", why)
        update = 0
        v_mean = torch.from_numpy(data_u8.mean(axis=0, dtype=np.float64)).to(torch.float32)
        init_gen = torch.Generator().manual_seed(derive_seed(seed, "init"))
        rbm = init_rbm(v_mean, n_hidden=cfg.n_hidden, weight_std=cfg.weight_std,
                       generator=init_gen).to(device)
        chains = PersistentChains.random(n_chains=cfg.n_chains, n_visible=n_visible,
                                         n_hidden=cfg.n_hidden, generator=chain_gen)
        if fused:
            chains = FusedChains(chains.v, n_hidden=cfg.n_hidden,
                                 seed=derive_seed(seed, "philox-chains"))
        tais = None
        logz0 = math.nan
        if cfg.tais_chains > 0:
            tais = _make_tais(rbm, cfg, tais_gen, fused_seed=tais_seed)
            logz0 = tais.step(rbm)
        traj = _Trajectory([], [], [], [], [])
        traj.add(0, rbm, logz0)

    def state(for_resume: bool) -> xr.Dataset:
        return _state_dataset(cfg=cfg, traj=traj, chains=chains, chain_gen=chain_gen,
                              batches=batches, tais=tais, tais_gen=tais_gen, update=update,
                              hashes=hashes, visible_coords=visible_coords,
                              for_resume=for_resume)

    if update == 0 and on_checkpoint is not None:
        on_checkpoint(state(True))
        log.info("checkpoint written: update 0 (initialisation)")

    t_loop = time.perf_counter()
    start_update = update
    bar = tqdm(total=cfg.n_updates, initial=update, unit="update", disable=not progress,
               mininterval=1.0 if sys.stderr.isatty() else 30.0, smoothing=0.1,
               desc=f"train n_hidden={cfg.n_hidden}")
    guard = DivergenceGuard(device, lr=cfg.lr)
    try:
        engine = (FusedPCD(rbm, chains=chains, data=data, cfg=cfg, tais=tais, guard=guard,
                           first_update=update + 1)
                  if isinstance(chains, FusedChains) else None)
        tais_steps = tais.n_steps if tais is not None else 0
        while update < cfg.n_updates:
            if engine is not None:
                # minibatch rows of the updates up to the next checkpoint (at most
                # DIVERGENCE_CHECK_EVERY), uploaded at once; one divergence check per chunk
                n_next = min(int(schedule[schedule > update][0]) - update,
                             DIVERGENCE_CHECK_EVERY)
                rows = torch.stack([batches.next_indices() for _ in range(n_next)]).to(device)
                for j in range(n_next):
                    engine.step(rows[j])
                    bar.update(1)
                update += n_next
                rbm = engine.rbm
                guard.check(update, rbm, last_checkpoint=traj.updates[-1])
                if update not in is_checkpoint:
                    continue
                logz = math.nan
                if tais is not None:
                    logz = float(engine.logz.item())
                    tais.set_current(rbm, n_steps=tais_steps + update - start_update)
            else:
                idx = batches.next_indices().to(device)
                torch.index_select(data, 0, idx, out=batch_u8)
                batch.copy_(batch_u8)
                new, grad = pcd_step(rbm, batch, chains, k=cfg.k, lr=cfg.lr,
                                     centered=cfg.centered, generator=chain_gen,
                                     tf32=cfg.precision != "float32")
                update += 1
                rbm = new
                guard.record(update, rbm)
                if update in is_checkpoint or update % DIVERGENCE_CHECK_EVERY == 0:
                    guard.check(update, rbm, last_checkpoint=traj.updates[-1])
                logz = tais.step(rbm) if tais is not None else math.nan
                bar.update(1)
                if update not in is_checkpoint:
                    continue
            traj.add(update, rbm, logz)
            elapsed = time.perf_counter() - t_loop
            rate = (update - start_update) / elapsed if elapsed > 0 else math.inf
            if on_checkpoint is not None:
                on_checkpoint(state(True))
            log.info("checkpoint written: update %d (%d/%d), %.1f s, %.1f updates/s, "
                     "logz_tais %.4f", update, len(traj.updates), len(schedule), elapsed,
                     rate, logz)
    except TrainingDivergedError:
        raise
    except Exception:
        guard.check(update, rbm, last_checkpoint=traj.updates[-1])  # a blow-up caused it?
        raise
    finally:
        bar.close()
    total = time.perf_counter() - t_start
    done = update - start_update
    log.info("training done: %d updates this run in %.1f s (%.2f ms/update, %.1f s total)",
             done, time.perf_counter() - t_loop,
             1e3 * (time.perf_counter() - t_loop) / max(done, 1), total)
    return state(False)


# --------------------------------------------------------------------------------------------
# File-level driver
# --------------------------------------------------------------------------------------------
def train_to_files(train_data: np.ndarray, *, cfg: TrainConfig, seed: int,
                   model_path: str | os.PathLike, resume_path: str | os.PathLike,
                   attrs: Mapping[str, Any] | None = None,
                   visible_coords: Mapping[str, Any] | None = None,
                   progress: bool = False) -> xr.Dataset:
    """Train with exact resume through files; write ``model_path`` on success.

    Resumes from ``resume_path`` when it exists and matches (see :func:`train`), writes it
    atomically after every checkpoint, writes ``model_path`` atomically at the end and then
    deletes ``resume_path``. Stale temporary files of killed writers are removed first, so a
    killed job never leaves a half-written output behind. All I/O goes through
    :mod:`spikerbm.io`.

    Returns
    -------
    xarray.Dataset
        The model dataset as written.
    """
    from spikerbm import io

    for stale in io.stale_temporaries(model_path) + io.stale_temporaries(resume_path):
        log.info("removing temporary file of a killed writer: %s", stale)
        io.remove_file(stale)
    resume = None
    if io.file_exists(resume_path):
        try:
            resume = io.read_netcdf(resume_path)
        except (OSError, ValueError, KeyError) as err:  # unreadable: start fresh
            log.warning("cannot read resume state %s (%s); starting fresh", resume_path, err)
    else:
        log.info("no resume state at %s", resume_path)
    attrs = dict(attrs or {})

    def write_resume(ds: xr.Dataset) -> None:
        io.write_netcdf(ds, resume_path, attrs=attrs)

    model = train(train_data, cfg=cfg, seed=seed, resume=resume, on_checkpoint=write_resume,
                  visible_coords=visible_coords, progress=progress)
    io.write_netcdf(model, model_path, attrs=attrs)
    log.info("model written: %s", model_path)
    io.remove_file(resume_path)
    log.info("resume state removed: %s", resume_path)
    model.attrs.update(attrs)
    return model

