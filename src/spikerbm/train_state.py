"""The state of a PCD training run, its minibatch stream, and its round trip through datasets.

A run's state (:class:`TrainingState`) is everything that determines the rest of the run: the
parameter trajectory so far (:class:`Trajectory`, the current parameters are updated in place),
the persistent chains, the minibatch stream (:class:`MinibatchStream`), the trajectory-AIS
object and the update counter, plus the config and data hashes that say which run it belongs
to. :meth:`TrainingState.to_dataset` writes it as an ``xarray.Dataset`` (``model.nc`` holds the
trajectory only; ``resume.nc`` adds every component's ``state_dict()``), and
:meth:`TrainingState.start` restores it from such a dataset when the hashes match (continuing
bitwise on CPU) or builds a fresh one (docs/data-model.md: ``model.nc``, ``resume.nc``).

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
from spikerbm.provenance import canonical_json, derive_seed
from spikerbm.rbm import RBM, independent_site, init_rbm
from spikerbm.sampling import Chains, Sampler, random_states

if TYPE_CHECKING:
    import xarray as xr

    from spikerbm.partition import TrajectoryAIS

log = logging.getLogger(__name__)

__all__ = [
    "RESUME_FORMAT",
    "MinibatchStream",
    "Trajectory",
    "TrainingState",
    "config_hash",
    "data_hash",
    "resume_mismatch",
]

#: Version of the resume-state layout; a resume file of another version is ignored.
RESUME_FORMAT = 3


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
    """The checkpoints so far: update numbers, parameters (CPU copies) and trajectory-AIS log Z."""

    updates: list[int] = field(default_factory=list)
    W: list[np.ndarray] = field(default_factory=list)
    a: list[np.ndarray] = field(default_factory=list)
    b: list[np.ndarray] = field(default_factory=list)
    log_z: list[float] = field(default_factory=list)

    def add(self, update: int, rbm: RBM, log_z: float) -> None:
        self.updates.append(int(update))
        for name, t in rbm.parameters().items():
            getattr(self, name).append(t.detach().cpu().numpy().copy())
        self.log_z.append(float(log_z))

    def rbm(self, index: int, device: torch.device) -> RBM:
        """The float32 parameters of checkpoint ``index`` (a copy on ``device``)."""
        return RBM(*(torch.from_numpy(np.array(x[index], dtype=np.float32)).to(device)
                     for x in (self.W, self.a, self.b)))

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> Trajectory:
        return cls([int(u) for u in ds["checkpoint"].values], list(ds["W"].values),
                   list(ds["a"].values), list(ds["b"].values),
                   [float(x) for x in ds["log_z_tais"].values])

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
        }


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
        Current parameters (float32, on the device; updated in place by the update runner).
    chains
        The persistent chains.
    batches
        The minibatch stream.
    tais
        Trajectory AIS (``None`` when ``cfg.tais_chains == 0``).
    trajectory
        The checkpoints so far.
    update
        Updates done.
    """

    cfg: TrainConfig
    hashes: dict[str, str]
    rbm: RBM
    chains: Chains
    batches: MinibatchStream
    tais: TrajectoryAIS | None
    trajectory: Trajectory
    update: int

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
                                 generator=tais_gen, ess_threshold=cfg.ess_threshold,
                                 sampler=sampler, seed=derive_seed(seed, "philox-tais"))
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
        log_z0 = tais.step(rbm) if tais is not None else math.nan
        trajectory = Trajectory()
        trajectory.add(0, rbm, log_z0)
        return cls(cfg, dict(hashes), rbm, chains, batches, tais, trajectory, 0)

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
        return cls(cfg, dict(hashes), trajectory.rbm(-1, device), chains, batches, tais,
                   trajectory, int(ds.attrs["n_updates_done"]))

    def record_checkpoint(self, log_z: float) -> None:
        """Add the current parameters (and trajectory-AIS ``log_z``) as checkpoint ``update``."""
        self.trajectory.add(self.update, self.rbm, log_z)

    def to_dataset(self, *, neuron_coords: Mapping[str, Any] | None = None,
                   for_resume: bool) -> xr.Dataset:
        """``model.nc`` (``for_resume=False``: the trajectory) or ``resume.nc`` (plus every
        component's state) as a dataset, without provenance attributes."""
        import xarray as xr

        data_vars = self.trajectory.data_vars()
        if for_resume:
            data_vars.update(_state_vars("chains", self.chains.state_dict()))
            data_vars.update(_state_vars("batches", self.batches.state_dict()))
            if self.tais is not None:
                data_vars.update(_state_vars("tais", self.tais.state_dict()))
        coords: dict[str, Any] = {"checkpoint": ("checkpoint",
                                                 np.asarray(self.trajectory.updates, np.int64),
                                                 {"units": "updates"})}
        for name, values in (neuron_coords or {}).items():
            coords[name] = ("neuron", np.asarray(values))
        attrs = {"n_hidden": self.cfg.n_hidden, "train_config": self.cfg.to_json(),
                 "n_updates_done": self.update, "resume_format": RESUME_FORMAT, **self.hashes}
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)
