"""The state of a PCD training run, its minibatch stream, and its round trip through datasets.

A run's state (:class:`TrainingState`) is everything that determines the rest of the run: the
parameter trajectory so far (:class:`Trajectory`, the current parameters are updated in place),
the persistent chains, the minibatch stream (:class:`MinibatchStream`), the trajectory-AIS
object and the update counter, plus the config and data hashes that say which run it belongs
to. :meth:`TrainingState.to_dataset` writes it as an ``xarray.Dataset`` (``model.nc`` holds the
trajectory only; ``resume.nc`` adds every component's ``state_dict()``), and
:meth:`TrainingState.start` restores it from such a dataset when the hashes match (continuing
bitwise on CPU) or builds a fresh one (docs/data-model.md: ``model.nc``, ``resume.nc``).

Replicas (``train.replicas`` R > 1, docs/methods.md §3): R states advanced in lockstep, one
per seed (:func:`replica_seeds`); :func:`stack_replicas` writes them as one dataset with a
leading ``replica`` dim (``model.nc`` and ``resume.nc`` of a replicated run) and
:func:`unstack_replica` gives back one replica's dataset in the single-model layout.

Seeds: the run's ``seed`` derives independent generators for the initial weights, the chains,
the minibatch order and trajectory AIS (``derive_seed(seed, "init" | "chains" | "shuffle" |
"tais")``) and the Philox keys of fused chains (``"philox-chains"``, ``"philox-tais"``).

This module imports xarray lazily, so the pure-torch parts work without netCDF libraries.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from spikerbm.config import TrainConfig
from spikerbm.pcd import Optimizer
from spikerbm.provenance import canonical_json, derive_seed
from spikerbm.rbm import RBM, independent_site, init_rbm
from spikerbm.sampling import Chains, Sampler, random_states

if TYPE_CHECKING:
    import xarray as xr

    from spikerbm.partition import TrajectoryAIS

log = logging.getLogger(__name__)

__all__ = [
    "RESUME_FORMAT",
    "STOP_REASONS",
    "OnlineCurve",
    "MinibatchStream",
    "Trajectory",
    "TrainingState",
    "config_hash",
    "data_hash",
    "replica_seeds",
    "resume_mismatch",
    "stack_replicas",
    "unstack_replica",
]

#: Version of the resume-state layout; a resume file of another version is ignored.
RESUME_FORMAT = 5


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

    def next_rows(self, n: int, device: torch.device) -> torch.Tensor:
        """Indices of the next ``n`` minibatches, (n, batch_size) int64, uploaded at once."""
        return torch.stack([self.next_indices() for _ in range(n)]).to(device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"rng": self.generator.get_state(), "perm": self.perm.clone(),
                "pos": torch.tensor(self.pos, dtype=torch.int64)}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.generator.set_state(torch.as_tensor(state["rng"]).to(torch.uint8).cpu())
        self.perm = torch.as_tensor(state["perm"]).to(torch.int64).cpu().clone()
        self.pos = int(state["pos"])


def data_hash(train: np.ndarray, test: np.ndarray | None = None) -> str:
    """SHA-256 of the training array and, when given, the test array that early stopping
    reads (shape, dtype and bytes of each)."""
    h = hashlib.sha256()
    for arr in (train,) if test is None else (train, test):
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.shape}|{arr.dtype}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def config_hash(cfg: TrainConfig, *, seed: int, device: torch.device) -> str:
    """SHA-256 of everything that determines the trajectory besides the data."""
    text = canonical_json({"train": cfg.to_dict(), "seed": int(seed), "device": device.type,
                           "format": RESUME_FORMAT})
    return hashlib.sha256(text.encode()).hexdigest()


def resume_mismatch(resume: xr.Dataset, hashes: Mapping[str, str]) -> str | None:
    """Why a resume state cannot be used (``None`` when it matches)."""
    if int(resume.attrs.get("resume_format", -1)) != RESUME_FORMAT:
        return f"resume format {resume.attrs.get('resume_format')} != {RESUME_FORMAT}"
    for key, what in (("config_hash", "training config/seed/device"),
                      ("data_hash", "training data")):
        if resume.attrs.get(key) != hashes[key]:
            return f"the {what} changed ({key} {resume.attrs.get(key)} != {hashes[key]})"
    return None


@dataclass
class Trajectory:
    """The checkpoints so far: update numbers, parameters (CPU copies) and trajectory-AIS log Z
    with its uncertainty."""

    updates: list[int] = field(default_factory=list)
    W: list[np.ndarray] = field(default_factory=list)
    a: list[np.ndarray] = field(default_factory=list)
    b: list[np.ndarray] = field(default_factory=list)
    log_z: list[float] = field(default_factory=list)
    log_z_std: list[float] = field(default_factory=list)

    def add(self, update: int, rbm: RBM | tuple[np.ndarray, ...], log_z: float,
            log_z_std: float) -> None:
        """Append checkpoint ``update``: parameters from an RBM or a ``(W, a, b)`` tuple."""
        self.updates.append(int(update))
        params = (rbm if isinstance(rbm, tuple) else
                  tuple(t.detach().cpu().numpy() for t in rbm.parameters().values()))
        for name, x in zip(("W", "a", "b"), params, strict=True):
            getattr(self, name).append(np.array(x, copy=True))
        self.log_z.append(float(log_z))
        self.log_z_std.append(float(log_z_std))

    def with_checkpoint(self, update: int, params: tuple[np.ndarray, ...], log_z: float,
                        log_z_std: float) -> Trajectory:
        """A copy with checkpoint ``update`` inserted in order (unchanged if present)."""
        out = Trajectory(*(list(x) for x in (self.updates, self.W, self.a, self.b, self.log_z,
                                             self.log_z_std)))
        if update in out.updates:
            return out
        i = int(np.searchsorted(out.updates, update))
        out.updates.insert(i, int(update))
        for name, x in zip(("W", "a", "b"), params, strict=True):
            getattr(out, name).insert(i, np.array(x, copy=True))
        out.log_z.insert(i, float(log_z))
        out.log_z_std.insert(i, float(log_z_std))
        return out

    def rbm(self, index: int, device: torch.device) -> RBM:
        """The float32 parameters of checkpoint ``index`` (a copy on ``device``)."""
        return RBM(*(torch.from_numpy(np.array(x[index], dtype=np.float32)).to(device)
                     for x in (self.W, self.a, self.b)))

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> Trajectory:
        return cls([int(u) for u in ds["checkpoint"].values], list(ds["W"].values),
                   list(ds["a"].values), list(ds["b"].values),
                   [float(x) for x in ds["log_z_tais"].values],
                   [float(x) for x in ds["log_z_tais_std"].values])

    def data_vars(self) -> dict[str, Any]:
        return {
            "W": (("checkpoint", "neuron", "hidden"), np.stack(self.W).astype(np.float32),
                  {"units": "1", "long_name": "weights"}),
            "a": (("checkpoint", "neuron"), np.stack(self.a).astype(np.float32),
                  {"units": "1", "long_name": "visible biases"}),
            "b": (("checkpoint", "hidden"), np.stack(self.b).astype(np.float32),
                  {"units": "1", "long_name": "hidden biases"}),
            "log_z_tais": (("checkpoint",), np.asarray(self.log_z, dtype=np.float64),
                           {"units": "nats",
                            "long_name": "trajectory-AIS log Z (NaN if disabled)"}),
            "log_z_tais_std": (("checkpoint",), np.asarray(self.log_z_std, dtype=np.float64),
                               {"units": "nats", "long_name": "uncertainty of log_z_tais "
                                "(spread of the chain groups, bias-covering)"}),
        }


#: Stop reasons (``model.nc`` attr ``stop_reason``; docs/methods.md §3); ``diverged``: a
#: replica dropped while the others continued (replicated runs only).
STOP_REASONS = ("early_stop", "max_updates", "diverged")


@dataclass
class OnlineCurve:
    """The online log-likelihood curve of a run and its early-stopping state (§3).

    Every ``train.eval_every`` updates the training loop :meth:`record` s the train and test
    log-likelihood (float64 mean free energies with the trajectory-AIS ``log Z``) and its
    uncertainty. The best evaluation (highest online test LL) keeps a copy of its parameters.
    :meth:`gain` is the improvement over the last ``window`` updates: the best test LL of the
    evaluations in ``(u - window, u]`` minus the best one up to ``u - window`` (``u``: the last
    evaluated update; ``u - window`` is clamped at 0), counting only evaluations from
    ``decay_from`` on. Training stops early (:meth:`should_stop`) on a plateau, once
    ``u >= armed_from`` and ``gain < min_delta``, or on a significant decline, in every phase
    of the schedule: once ``u >= patience`` and the best test LL of the last ``window``
    updates is below the best one before them by more than ``max(min_delta, 2 x`` their
    combined stated error``)`` (:meth:`decline`, docs/methods.md §3).

    Attributes
    ----------
    patience, min_delta
        ``train.patience`` (updates; 0 disables early stopping) and ``train.min_delta``
        (nats per sample).
    window
        The window of :meth:`gain`: ``patience``, or a quarter of ``n_updates`` (at least
        ``eval_every``) when early stopping is off.
    decay_from
        With a decaying learning rate (``lr_final < 1``) the first update of the decay,
        ``decay_start * n_updates``, else 0: :meth:`gain` compares only evaluations from
        there on, so the decay (which averages out the noise of the constant-rate phase) is
        judged against itself, never against a lucky evaluation of the noisier constant-rate
        curve (docs/methods.md §3).
    armed_from
        First update at which training may stop early: ``decay_from + patience``.
    updates, ll_train, ll_test, log_z, log_z_std
        The curve: evaluated updates and their values (NaN without trajectory AIS or test
        data).
    best_update, best_ll, best_params, best_log_z, best_log_z_std
        The best evaluation (``best_update`` -1 before any finite value).
    anchor_updates, anchor_log_z, anchor_log_z_std, anchor_gap
        The anchors of trajectory AIS so far (docs/methods.md §4, "Anchors"; each at an
        evaluated update): the independent ``log Z``, its error, and the trajectory-AIS
        estimate minus it just before re-anchoring (nats).
    anchor_method
        ``exact`` or ``ais`` (the same at every anchor of a run); ``none`` without anchors.
    stop_reason
        ``""`` while training runs, then one of :data:`STOP_REASONS`.
    """

    patience: int
    min_delta: float
    window: int
    armed_from: int = 0
    decay_from: int = 0
    updates: list[int] = field(default_factory=list)
    ll_train: list[float] = field(default_factory=list)
    ll_test: list[float] = field(default_factory=list)
    log_z: list[float] = field(default_factory=list)
    log_z_std: list[float] = field(default_factory=list)
    best_update: int = -1
    best_ll: float = -math.inf
    best_params: tuple[np.ndarray, ...] | None = None
    best_log_z: float = math.nan
    best_log_z_std: float = math.nan
    anchor_updates: list[int] = field(default_factory=list)
    anchor_log_z: list[float] = field(default_factory=list)
    anchor_log_z_std: list[float] = field(default_factory=list)
    anchor_gap: list[float] = field(default_factory=list)
    anchor_method: str = "none"
    stop_reason: str = ""

    @classmethod
    def for_config(cls, cfg: TrainConfig) -> OnlineCurve:
        window = cfg.patience or max(cfg.n_updates // 4, min(cfg.eval_every, cfg.n_updates))
        decay = int(cfg.decay_start * cfg.n_updates) if cfg.lr_final < 1 else 0
        return cls(cfg.patience, float(cfg.min_delta), int(window), cfg.patience + decay, decay)

    def record(self, update: int, *, ll_train: float, ll_test: float, log_z: float,
               log_z_std: float, rbm: RBM) -> None:
        """Append an evaluation; keep the parameters when it is the best so far."""
        self.updates.append(int(update))
        for name, value in (("ll_train", ll_train), ("ll_test", ll_test), ("log_z", log_z),
                            ("log_z_std", log_z_std)):
            getattr(self, name).append(float(value))
        if math.isfinite(ll_test) and ll_test > self.best_ll:
            self.best_update, self.best_ll = int(update), float(ll_test)
            self.best_params = tuple(t.detach().cpu().numpy().copy()
                                     for t in rbm.parameters().values())
            self.best_log_z, self.best_log_z_std = float(log_z), float(log_z_std)

    def add_anchor(self, update: int, *, log_z: float, log_z_std: float, gap: float,
                   method: str) -> None:
        """Record an anchor at ``update`` (before the evaluation there is recorded)."""
        self.anchor_updates.append(int(update))
        self.anchor_log_z.append(float(log_z))
        self.anchor_log_z_std.append(float(log_z_std))
        self.anchor_gap.append(float(gap))
        self.anchor_method = str(method)

    def anchored_std(self, groups_std: float, update: int) -> float:
        """Stated error of the trajectory-AIS ``log Z`` at ``update`` (docs/methods.md §4,
        "Anchors"): the last anchor's error, the groups' error ``groups_std`` of the
        increments since, and the drift allowance :func:`~spikerbm.partition.anchor_bias_rate`
        times the updates since the anchor (:func:`~spikerbm.partition.anchored_log_z_std`;
        ``groups_std`` itself before the first anchor)."""
        from spikerbm.partition import anchor_bias_rate, anchored_log_z_std

        if not self.anchor_updates:
            return float(groups_std)
        return anchored_log_z_std(
            groups_std=groups_std, anchor_std=self.anchor_log_z_std[-1],
            bias_rate=anchor_bias_rate(self.anchor_updates, self.anchor_gap),
            updates_since=int(update) - self.anchor_updates[-1])

    def _bests(self, since: int = 0) -> tuple[np.ndarray, int, int] | None:
        """The online test LLs (NaN as -inf) and the indices of the best of the last ``window``
        updates and of the best before them, among the evaluations from update ``since`` on
        (``None`` before two such evaluations or with one side empty)."""
        u = np.asarray(self.updates)
        ll = np.nan_to_num(np.asarray(self.ll_test, dtype=np.float64), nan=-np.inf)
        keep = np.flatnonzero(u >= since)
        if len(keep) < 2:
            return None
        start = max(int(u[-1]) - self.window, 0)
        inside, before = keep[u[keep] > start], keep[u[keep] <= start]
        if not inside.size or not before.size:
            return None
        return ll, int(inside[np.argmax(ll[inside])]), int(before[np.argmax(ll[before])])

    def gain(self) -> float:
        """Improvement of the best online test LL over the last ``window`` updates (nats per
        sample; NaN before two evaluations or without finite values before the window), among
        the evaluations from ``decay_from`` on."""
        bests = self._bests(self.decay_from)
        if bests is None or not np.isfinite(bests[0][bests[2]]):
            return math.nan
        ll, i, j = bests
        return float(ll[i] - ll[j])

    def decline(self) -> tuple[float, float]:
        """How far the best online test LL of the last ``window`` updates lies below the best
        one before them, among **all** evaluations (nats per sample), and the combined stated
        error of the two (``hypot`` of their ``log_z_std``: an online LL's error is that of its
        ``log Z``); NaN, NaN before two evaluations or without finite values on both sides.
        Negative when the last window holds a new best."""
        bests = self._bests()
        if bests is None or not np.isfinite(bests[0][[bests[1], bests[2]]]).all():
            return math.nan, math.nan
        ll, i, j = bests
        return float(ll[j] - ll[i]), float(np.hypot(self.log_z_std[i], self.log_z_std[j]))

    def declined(self) -> bool:
        """The decline rule of :meth:`should_stop`: ``patience > 0``, at least ``patience``
        updates done, and :meth:`decline` beyond ``max(min_delta, 2 x`` its error``)`` (False
        when the error is unknown)."""
        drop, err = self.decline()
        return bool(self.patience and self.updates and self.updates[-1] >= self.patience
                    and math.isfinite(drop) and math.isfinite(err)
                    and drop > max(self.min_delta, 2.0 * err))

    def should_stop(self) -> bool:
        """Early stop: ``patience > 0`` and either a plateau (at least ``armed_from`` updates
        done and the test LL gained less than ``min_delta`` over the last ``window`` updates
        of the decay phase, :meth:`gain`) or a significant decline in any phase
        (:meth:`declined`)."""
        gain = self.gain()
        plateau = bool(self.patience and self.updates
                       and self.updates[-1] >= max(self.patience, self.armed_from)
                       and math.isfinite(gain) and gain < self.min_delta)
        return plateau or self.declined()

    def still_improving(self) -> int:
        """1 when the test LL gained at least ``min_delta`` over the last ``window`` updates,
        0 when not (or when it declined significantly, :meth:`declined`, also before the decay
        phase that :meth:`gain` judges), -1 when unknown (no online log-likelihood)."""
        gain = self.gain()
        if math.isnan(gain):
            return 0 if self.declined() else -1
        return int(gain >= self.min_delta)

    def data_vars(self) -> dict[str, Any]:
        """The curve on dim ``eval`` (``model.nc``, docs/data-model.md)."""
        nats = {"units": "nats per sample"}
        f64 = {k: np.asarray(getattr(self, k), dtype=np.float64)
               for k in ("ll_train", "ll_test", "log_z", "log_z_std")}
        return {
            "ll_train_online": ("eval", f64["ll_train"], {
                **nats, "long_name": "online train log-likelihood (train subsample the size "
                "of the test split, trajectory-AIS log Z)"}),
            "ll_train_online_std": ("eval", f64["log_z_std"].copy(), {
                **nats, "long_name": "uncertainty of ll_train_online (= log_z_online_std)"}),
            "ll_test_online": ("eval", f64["ll_test"], {
                **nats, "long_name": "online test log-likelihood (trajectory-AIS log Z)"}),
            "ll_test_online_std": ("eval", f64["log_z_std"].copy(), {
                **nats, "long_name": "uncertainty of ll_test_online (= log_z_online_std)"}),
            "log_z_online": ("eval", f64["log_z"], {
                "units": "nats", "long_name": "trajectory-AIS log Z at the evaluated updates"}),
            "log_z_online_std": ("eval", f64["log_z_std"], {
                "units": "nats", "long_name": "uncertainty of log_z_online (anchor error, "
                "spread of the chain groups since the anchor, drift allowance; bias-covering)"}),
            **self._anchor_vars(),
        }

    def _anchor_vars(self) -> dict[str, Any]:
        """The anchors on dim ``eval`` (NaN at evaluations without one)."""
        pos = np.searchsorted(np.asarray(self.updates, dtype=np.int64),
                              np.asarray(self.anchor_updates, dtype=np.int64))
        out = {}
        for name, values, long_name in (
                ("log_z_anchor", self.anchor_log_z, "independent log Z of the parameters at "
                 "the evaluation (exact or AIS, log_z_anchor_method) on which trajectory AIS "
                 "was re-anchored; NaN where there was no anchor"),
                ("log_z_anchor_std", self.anchor_log_z_std, "uncertainty of log_z_anchor "
                 "(0 when exact; AIS: bias-covering)"),
                ("log_z_anchor_gap", self.anchor_gap, "trajectory-AIS log Z minus "
                 "log_z_anchor just before re-anchoring (its drift since the previous "
                 "anchor)")):
            x = np.full(len(self.updates), np.nan)
            x[pos] = values
            out[name] = ("eval", x, {"units": "nats", "long_name": long_name})
        return out

    def coords(self) -> dict[str, Any]:
        return {"eval_update": ("eval", np.asarray(self.updates, dtype=np.int64),
                                {"units": "updates"})}

    def attrs(self) -> dict[str, Any]:
        """The stop attributes of ``model.nc`` (docs/data-model.md)."""
        return {"stop_reason": self.stop_reason, "best_update": int(self.best_update),
                "still_improving": self.still_improving(),
                "ll_test_online_gain": self.gain(), "stop_window": int(self.window),
                "best_ll_test_online": float(self.best_ll),
                "log_z_anchor_method": self.anchor_method}

    def resume_vars(self) -> dict[str, Any]:
        """The best parameters as state variables (``resume.nc``)."""
        if self.best_params is None:
            return {}
        return _state_vars("best", {k: torch.from_numpy(np.asarray(x))
                                    for k, x in zip(("W", "a", "b"), self.best_params,
                                                    strict=True)})

    def resume_attrs(self) -> dict[str, Any]:
        return {"stop_reason": self.stop_reason, "best_update": int(self.best_update),
                "best_ll_test_online": float(self.best_ll),
                "best_log_z_online": float(self.best_log_z),
                "best_log_z_online_std": float(self.best_log_z_std),
                "log_z_anchor_method": self.anchor_method}

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, cfg: TrainConfig) -> OnlineCurve:
        """Restore from a ``resume.nc`` dataset."""
        out = cls.for_config(cfg)
        out.updates = [int(u) for u in ds["eval_update"].values]
        out.ll_train = [float(x) for x in ds["ll_train_online"].values]
        out.ll_test = [float(x) for x in ds["ll_test_online"].values]
        out.log_z = [float(x) for x in ds["log_z_online"].values]
        out.log_z_std = [float(x) for x in ds["log_z_online_std"].values]
        out.best_update = int(ds.attrs["best_update"])
        out.best_ll = float(ds.attrs["best_ll_test_online"])
        out.best_log_z = float(ds.attrs["best_log_z_online"])
        out.best_log_z_std = float(ds.attrs["best_log_z_online_std"])
        out.stop_reason = str(ds.attrs.get("stop_reason", ""))
        out.anchor_method = str(ds.attrs["log_z_anchor_method"])
        anchored = np.isfinite(ds["log_z_anchor"].values)
        out.anchor_updates = [int(u) for u in ds["eval_update"].values[anchored]]
        out.anchor_log_z = [float(x) for x in ds["log_z_anchor"].values[anchored]]
        out.anchor_log_z_std = [float(x) for x in ds["log_z_anchor_std"].values[anchored]]
        out.anchor_gap = [float(x) for x in ds["log_z_anchor_gap"].values[anchored]]
        best = _state_dict(ds, "best")
        if best:
            out.best_params = tuple(best[k].numpy() for k in ("W", "a", "b"))
        return out


_TORCH_DTYPES = {str(d): d for d in (torch.float16, torch.bfloat16, torch.float32,
                                     torch.float64, torch.int8, torch.int16, torch.int32,
                                     torch.int64, torch.uint8, torch.bool)}


def _state_vars(prefix: str, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """A component's ``state_dict()`` as dataset variables ``{prefix}__{key}`` (dims
    ``{name}_dim{i}``, attr ``torch_dtype``)."""
    out = {}
    for key, t in state.items():
        name = f"{prefix}__{key}"
        t = torch.as_tensor(t).detach().cpu()
        arr = t.to(torch.uint8).numpy() if t.dtype == torch.bool else t.numpy()
        out[name] = (tuple(f"{name}_dim{i}" for i in range(t.ndim)), arr,
                     {"torch_dtype": str(t.dtype)})
    return out


def _state_dict(ds: xr.Dataset, prefix: str) -> dict[str, torch.Tensor]:
    """Inverse of :func:`_state_vars`."""
    head = f"{prefix}__"
    return {name[len(head):]: torch.as_tensor(np.asarray(var.values)).to(
                _TORCH_DTYPES[var.attrs.get("torch_dtype", "torch.uint8")])
            for name, var in ds.data_vars.items() if name.startswith(head)}


def _optimizer(rbm: RBM, cfg: TrainConfig) -> Optimizer:
    return Optimizer(rbm, kind=cfg.optimizer, lr=cfg.lr, n_updates=cfg.n_updates,
                     lr_final=cfg.lr_final, decay_start=cfg.decay_start,
                     momentum=cfg.momentum)


@dataclass
class TrainingState:
    """Everything that determines the rest of a PCD run (module docstring).

    Attributes
    ----------
    cfg
        The run's training configuration.
    hashes
        ``config_hash`` and ``data_hash`` of the run.
    rbm
        Current parameters (float32, on the device; updated in place by the update runner;
        with the batched replica engine, views of its stacked parameters).
    chains
        The persistent chains.
    batches
        The minibatch stream.
    optimizer
        The ascent step and its state (Adam moments).
    tais
        Trajectory AIS (``None`` when ``cfg.tais_chains == 0``).
    trajectory
        The checkpoints so far.
    update
        Updates done.
    online
        The online log-likelihood curve and the early-stopping state.
    held
        Replicated runs: this replica's parameters (CPU copies) and online ``log Z`` with its
        uncertainty at the updates that are some replica's best evaluation, so that every
        replica's ``model.nc`` entry holds every replica's best update (empty for R = 1).
    diverged_update
        Replicated runs: the first update at which this replica's parameters blew up (it was
        dropped; 0 while it trains).
    """

    cfg: TrainConfig
    hashes: dict[str, str]
    rbm: RBM
    chains: Chains
    batches: MinibatchStream
    optimizer: Optimizer
    tais: TrajectoryAIS | None
    trajectory: Trajectory
    update: int
    online: OnlineCurve
    held: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, float, float]] = field(
        default_factory=dict)
    diverged_update: int = 0

    @classmethod
    def start(cls, data: np.ndarray, *, cfg: TrainConfig, seed: int, sampler: Sampler,
              hashes: Mapping[str, str], resume: xr.Dataset | None = None) -> TrainingState:
        """The state of a run on ``data`` (T, N) uint8: restored from ``resume`` when its
        format and hashes match, else fresh (the reason is logged)."""
        why = resume_mismatch(resume, hashes) if resume is not None else "no resume state"
        if resume is not None and why is None:
            state = cls._restore(resume, data, cfg=cfg, seed=seed, sampler=sampler,
                                 hashes=hashes)
            log.info("resuming from update %d (checkpoint %d)", state.update,
                     len(state.trajectory.updates))
            return state
        if resume is not None:
            log.warning("starting fresh: resume state not usable because %s", why)
        else:
            log.info("starting fresh (%s)", why)
        return cls._fresh(data, cfg=cfg, seed=seed, sampler=sampler, hashes=hashes)

    @classmethod
    def _components(cls, data: np.ndarray, rbm_init: RBM, *, cfg: TrainConfig, seed: int,
                    sampler: Sampler, v0: torch.Tensor | None
                    ) -> tuple[Chains, MinibatchStream, TrajectoryAIS | None]:
        """Chains, minibatch stream and trajectory AIS with their generators seeded; ``v0``:
        the initial chain states (``None``: Bernoulli(1/2) drawn from the chains' generator)."""
        device = sampler.device
        chain_gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "chains"))
        shuffle_gen = torch.Generator().manual_seed(derive_seed(seed, "shuffle"))
        tais_gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "tais"))
        if v0 is None:
            v0 = random_states(n_chains=cfg.n_chains, n_visible=data.shape[1],
                               generator=chain_gen)
        chains = sampler.chains(v0, n_hidden=cfg.n_hidden, generator=chain_gen,
                                seed=derive_seed(seed, "philox-chains"))
        batches = MinibatchStream(data.shape[0], batch_size=cfg.batch_size,
                                  generator=shuffle_gen)
        tais = None
        if cfg.tais_chains > 0:
            from spikerbm.partition import TrajectoryAIS, log_z_independent

            start = independent_site(rbm_init.a, rbm_init.n_hidden)
            tais = TrajectoryAIS(start, log_z=log_z_independent(start), n_chains=cfg.tais_chains,
                                 n_groups=cfg.tais_groups, generator=tais_gen,
                                 ess_threshold=cfg.ess_threshold, sampler=sampler,
                                 seed=derive_seed(seed, "philox-tais"))
        return chains, batches, tais

    @classmethod
    def _fresh(cls, data: np.ndarray, *, cfg: TrainConfig, seed: int, sampler: Sampler,
               hashes: Mapping[str, str]) -> TrainingState:
        """Update 0 (docs/methods.md §3): ``init_rbm`` from the train means, Bernoulli(1/2)
        chains, trajectory AIS moved from the independent-site model to the initialisation."""
        v_mean = torch.from_numpy(data.mean(axis=0, dtype=np.float64)).to(torch.float32)
        init_gen = torch.Generator().manual_seed(derive_seed(seed, "init"))
        rbm = init_rbm(v_mean, n_hidden=cfg.n_hidden, weight_std=cfg.weight_std,
                       generator=init_gen).to(sampler.device)
        chains, batches, tais = cls._components(data, rbm, cfg=cfg, seed=seed, sampler=sampler,
                                                v0=None)
        if tais is not None:
            from spikerbm.partition import MAX_STAGES

            # the step from the independent-site model to the initialisation is one large
            # jump (every weight from 0 to its N(0, weight_std^2) draw; in one stage its
            # log-weight s.d. reached ~1 nat at N 1057, M 64, and the estimate 0.34 nats off
            # (H200, 2026-12-01)): take it in the most stages (docs/methods.md §4, "Stages")
            tais.n_stages = MAX_STAGES
            tais.step(rbm)
            est = tais.estimate()
            log_z0, std0 = est.log_z, est.log_z_std
            # the first update's step is unmeasured and often the largest (the first gradient
            # meets random chains; Adam's first step moves every entry by lr): run it in the
            # most stages too and let adapt_stages halve them per synchronisation point as the
            # measured increments allow (docs/methods.md §4, "Stages for large steps")
        else:
            log_z0 = std0 = math.nan
        trajectory = Trajectory()
        trajectory.add(0, rbm, log_z0, std0)
        return cls(cfg, dict(hashes), rbm, chains, batches, _optimizer(rbm, cfg), tais,
                   trajectory, 0, OnlineCurve.for_config(cfg))

    @classmethod
    def _restore(cls, ds: xr.Dataset, data: np.ndarray, *, cfg: TrainConfig, seed: int,
                 sampler: Sampler, hashes: Mapping[str, str]) -> TrainingState:
        trajectory = Trajectory.from_dataset(ds)
        device = sampler.device
        chain_state = _state_dict(ds, "chains")
        chains, batches, tais = cls._components(
            data, trajectory.rbm(0, device), cfg=cfg, seed=seed, sampler=sampler,
            v0=chain_state["v"].to(torch.float32))
        chains.load_state_dict(chain_state)
        batches.load_state_dict(_state_dict(ds, "batches"))
        if tais is not None:
            tais.load_state_dict(_state_dict(ds, "tais"))
        rbm = trajectory.rbm(-1, device)
        optimizer = _optimizer(rbm, cfg)
        optimizer.load_state_dict(_state_dict(ds, "optimizer"))
        held = {}
        if "held_update" in ds.coords:
            for i, u in enumerate(ds["held_update"].values):
                held[int(u)] = (*(ds[f"held_{k}"].values[i].copy() for k in ("W", "a", "b")),
                                float(ds["held_log_z"].values[i]),
                                float(ds["held_log_z_std"].values[i]))
        return cls(cfg, dict(hashes), rbm, chains, batches, optimizer, tais, trajectory,
                   int(ds.attrs["n_updates_done"]), OnlineCurve.from_dataset(ds, cfg), held,
                   int(ds.attrs.get("diverged_update", 0)))

    def record_checkpoint(self, log_z: float, log_z_std: float) -> None:
        """Add the current parameters (and trajectory-AIS ``log_z`` with its uncertainty) as
        checkpoint ``update``."""
        self.trajectory.add(self.update, self.rbm, log_z, log_z_std)

    def to_dataset(self, *, neuron_coords: Mapping[str, Any] | None = None,
                   for_resume: bool) -> xr.Dataset:
        """``model.nc`` (``for_resume=False``: the trajectory, with the best online evaluation
        inserted as a checkpoint, the online curve and the stop attributes) or ``resume.nc``
        (plus every component's state and the best parameters) as a dataset, without
        provenance attributes."""
        import xarray as xr

        trajectory = self.trajectory
        online = self.online
        if not for_resume and online.best_params is not None:
            trajectory = trajectory.with_checkpoint(online.best_update, online.best_params,
                                                    online.best_log_z, online.best_log_z_std)
        if not for_resume:
            for u, (*params, log_z, log_z_std) in self.held.items():
                trajectory = trajectory.with_checkpoint(u, tuple(params), log_z, log_z_std)
        data_vars = {**trajectory.data_vars(), **online.data_vars()}
        attrs = {"n_hidden": self.cfg.n_hidden, "train_config": self.cfg.to_json(),
                 "n_updates_done": self.update, "resume_format": RESUME_FORMAT, **self.hashes}
        coords: dict[str, Any] = {}
        if self.diverged_update:
            attrs["diverged_update"] = self.diverged_update
        if for_resume and self.held:
            held = sorted(self.held)
            coords["held_update"] = ("held", np.asarray(held, np.int64), {"units": "updates"})
            for i, (k, dims) in enumerate((("W", ("neuron", "hidden")), ("a", ("neuron",)),
                                          ("b", ("hidden",)))):
                data_vars[f"held_{k}"] = (("held", *dims),
                                          np.stack([self.held[u][i] for u in held]))
            for i, k in ((3, "log_z"), (4, "log_z_std")):
                data_vars[f"held_{k}"] = ("held", np.asarray([self.held[u][i] for u in held],
                                                             np.float64))
        if for_resume:
            data_vars.update(_state_vars("chains", self.chains.state_dict()))
            data_vars.update(_state_vars("batches", self.batches.state_dict()))
            data_vars.update(_state_vars("optimizer", self.optimizer.state_dict()))
            if self.tais is not None:
                data_vars.update(_state_vars("tais", self.tais.state_dict()))
            data_vars.update(online.resume_vars())
            attrs.update(online.resume_attrs())
        else:
            attrs.update(online.attrs())
        coords.update({"checkpoint": ("checkpoint", np.asarray(trajectory.updates, np.int64),
                                      {"units": "updates"}),
                       **online.coords()})
        for name, values in (neuron_coords or {}).items():
            coords[name] = ("neuron", np.asarray(values))
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)


# --------------------------------------------------------------------------------------------
# Replicas (train.replicas > 1): R states in one dataset with a leading ``replica`` dim
# --------------------------------------------------------------------------------------------
def replica_seeds(seed: int, n_replicas: int) -> list[int]:
    """Seeds of the replicas of a run: ``seed`` itself for replica 0 (a single-model run is
    replica 0) and ``derive_seed(seed, "replica", r)`` for replica ``r >= 1``."""
    return [int(seed)] + [derive_seed(seed, "replica", r) for r in range(1, n_replicas)]


#: Attributes of a single-model dataset that become variables on ``replica`` in a replicated
#: one, with the value of a replica whose dataset lacks them (docs/data-model.md).
_REPLICA_ATTRS: dict[str, Any] = {
    "n_updates_done": -1, "stop_reason": "", "best_update": -1, "still_improving": -1,
    "ll_test_online_gain": math.nan, "best_ll_test_online": math.nan,
    "best_log_z_online": math.nan, "best_log_z_online_std": math.nan, "diverged_update": 0}

#: The dims along which replicas can hold different entries (a dropped replica stops early),
#: with the coordinate that labels them.
_RAGGED_DIMS = {"checkpoint": "checkpoint", "eval": "eval_update", "held": "held_update"}


def _on_labels(values: np.ndarray, dims: tuple[str, ...], own: Mapping[str, np.ndarray],
               labels: Mapping[str, np.ndarray]) -> np.ndarray:
    """``values`` (dims ``dims``) placed on the common ``labels`` of its ragged dims (``own``:
    its own labels there, a sorted subset), NaN where it has no entry."""
    ragged = [d for d in dims if d in labels and len(own[d]) != len(labels[d])]
    if not ragged:
        return values
    if not np.issubdtype(values.dtype, np.floating):
        raise TypeError(f"only float variables can be padded; got {values.dtype} on {dims}")
    (dim,) = ragged  # checkpoint, eval and held never share a variable
    axis = dims.index(dim)
    shape = list(values.shape)
    shape[axis] = len(labels[dim])
    out = np.full(shape, np.nan, dtype=values.dtype)
    index: list[Any] = [slice(None)] * len(dims)
    index[axis] = np.searchsorted(labels[dim], own[dim])
    out[tuple(index)] = values
    return out


def stack_replicas(datasets: list[xr.Dataset], seeds: list[int], *,
                   for_resume: bool) -> xr.Dataset:
    """The datasets of R replicas (:meth:`TrainingState.to_dataset`) as one dataset with a
    leading ``replica`` dim (docs/data-model.md, ``model.nc`` of a replicated run).

    Entries a replica lacks (a dropped replica's checkpoints and evaluations after it
    diverged, variables such as ``best__W`` it never had) are NaN; the per-replica attributes
    (:data:`_REPLICA_ATTRS`) become variables on ``replica``; ``replica_seed(replica)`` is
    added, and the attrs ``replicas`` (R) and ``replicas_dropped`` (comma-separated indices,
    ``""`` if none). ``model.nc`` (``for_resume=False``) has ``diverged(replica)`` (0/1)
    instead of ``diverged_update``, and a dropped replica's ``n_updates_done`` is the last
    update before it blew up.
    """
    import xarray as xr

    templates: dict[str, Any] = {}
    for ds in datasets:
        for name in ds.data_vars:
            templates.setdefault(name, ds[name].variable)
    labels = {dim: np.unique(np.concatenate([ds[coord].values for ds in datasets
                                             if coord in ds.coords])).astype(np.int64)
              for dim, coord in _RAGGED_DIMS.items()
              if any(coord in ds.coords for ds in datasets)}
    owns = [{dim: ds.variables[coord].values if coord in ds.coords else np.empty(0, np.int64)
             for dim, coord in _RAGGED_DIMS.items() if dim in labels} for ds in datasets]
    data_vars: dict[str, Any] = {}
    for name, tpl in templates.items():
        shape = [len(labels[d]) if d in labels else n for d, n in zip(tpl.dims, tpl.shape,
                                                                       strict=True)]
        parts = [_on_labels(ds.variables[name].values, tpl.dims, own, labels)
                 if name in ds.variables else np.full(shape, np.nan, tpl.dtype)
                 for ds, own in zip(datasets, owns, strict=True)]
        data_vars[name] = (("replica", *tpl.dims), np.stack(parts), tpl.attrs)
    for key, default in _REPLICA_ATTRS.items():
        if any(key in ds.attrs for ds in datasets) or key == "diverged_update":
            data_vars[key] = ("replica", np.asarray([ds.attrs.get(key, default)
                                                     for ds in datasets]))
    first_bad = np.asarray(data_vars["diverged_update"][1], np.int64)
    data_vars["replica_seed"] = ("replica", np.asarray(seeds, np.int64),
                                 {"long_name": "seed of the replica (replica 0: the job's seed)"})
    if not for_resume:
        done = np.where(first_bad > 0, first_bad - 1, data_vars["n_updates_done"][1])
        data_vars["n_updates_done"] = ("replica", done.astype(np.int64))
        data_vars["diverged"] = ("replica", (first_bad > 0).astype(np.int8), {
            "long_name": "1: the replica blew up and was dropped (its entries from "
                         "n_updates_done + 1 on are NaN)"})
        del data_vars["diverged_update"]
    coords: dict[str, Any] = {"replica": ("replica", np.arange(len(datasets), dtype=np.int64))}
    for name, var in datasets[0].coords.items():
        dim = var.dims[0]
        coords[name] = (dim, labels[dim], var.attrs) if dim in labels else var
    for dim, coord in _RAGGED_DIMS.items():  # a ragged axis the first replica lacks
        if dim in labels and coord not in coords:
            ref = next(ds for ds in datasets if coord in ds.coords)
            coords[coord] = (dim, labels[dim], ref[coord].attrs)
    attrs = {k: v for k, v in datasets[0].attrs.items() if k not in _REPLICA_ATTRS}
    attrs.update(replicas=len(datasets),
                 replicas_dropped=",".join(str(r) for r in np.nonzero(first_bad)[0]))
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def unstack_replica(ds: xr.Dataset, replica: int) -> xr.Dataset:
    """Replica ``replica`` of a :func:`stack_replicas` resume dataset, in the single-model
    layout that :meth:`TrainingState.start` reads (without the padding of a dropped one)."""
    one = ds.isel(replica=replica).drop_vars(["replica", "replica_seed"])
    attrs = {k: v for k, v in one.attrs.items() if k not in ("replicas", "replicas_dropped")}
    for name in _REPLICA_ATTRS:
        if name in one.data_vars:
            attrs[name] = one[name].values.item()
            one = one.drop_vars(name)
    first_bad = int(attrs.get("diverged_update", 0))
    if not first_bad:
        attrs.pop("diverged_update", None)
    for dim, coord in _RAGGED_DIMS.items():
        if coord not in one.coords:
            continue
        keep = (one[coord].values < first_bad) if first_bad else np.ones(one.sizes[dim], bool)
        one = one.isel({dim: np.nonzero(keep)[0]})
        if dim == "held" and not one.sizes["held"]:
            one = one.drop_dims("held")
    if int(attrs.get("best_update", -1)) < 0:
        one = one.drop_vars([n for n in one.data_vars if n.startswith("best__")])
    one.attrs = attrs
    return one
