"""Training variants for the recovery benchmark, as a small loop around the library's pieces.

:func:`train_variant` with ``Variant()`` (or ``Variant(optimizer="adam", lr_schedule="exp",
...)``) reproduces ``spikerbm.training.train`` (CPU, no trajectory AIS) bit for bit: same
seeds (``derive_seed(seed, "init" | "chains" | "shuffle")``), same initialisation
(``init_rbm``), same minibatch stream (``MinibatchStream``), same chains (``PersistentChains``),
same gradient (``pcd_gradient``) and step (``spikerbm.pcd.Optimizer``), same checkpoint
schedule (``checkpoint_schedule``); :func:`check_matches_library` asserts it. Every
variant below changes one thing of that loop, so comparisons are apples to apples:

* ``lr_schedule``: ``constant`` / ``exp`` (the library's ``train.lr_final``/``decay_start``:
  geometric decay from ``lr`` to ``lr * lr_final`` over the updates after ``decay_start``),
  ``cosine`` (same ends), ``linear``;
* ``chains``: ``persistent`` (PCD, the library), ``restart`` (the chains restart from
  Bernoulli(1/2) before every update: the "Rdm" scheme of Decelle et al., NeurIPS 2021),
  ``data`` (restart from the minibatch: CD-k);
* ``l1``, ``l2``: penalties on W (ascent direction minus ``l1 sign(W) + 2 l2 W``, the
  convention of the ``rbms`` package);
* ``negative``: ``chains`` (sampled) or ``exact`` (the model moments by enumeration of the
  2^N visible states, N <= 20: PCD without sampling error or bias);
* ``positive``: ``minibatch`` or ``full`` (the data moments of the whole train split);
* ``optimizer``: ``sgd`` or ``adam`` (the library's ``spikerbm.pcd.Optimizer``).

Everything else (hidden size, k, chains, batch, init s.d., centering, updates) is the
``TrainConfig``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import xarray as xr

from spikerbm.pcd import Optimizer, pcd_gradient
from spikerbm.provenance import derive_seed
from spikerbm.rbm import RBM, hidden_probs, init_rbm, resolve_device
from spikerbm.sampling import PersistentChains, random_states
from spikerbm.train_state import MinibatchStream
from spikerbm.training import TrainConfig, checkpoint_schedule, train


@dataclass(frozen=True)
class Variant:
    lr_schedule: str = "constant"   # constant | exp | cosine | linear
    lr_final: float = 0.01          # final lr as a fraction of lr (decaying schedules)
    decay_start: float = 0.0        # fraction of the updates before the decay begins
    chains: str = "persistent"      # persistent | restart | data
    l1: float = 0.0
    l2: float = 0.0
    negative: str = "chains"        # chains | exact
    positive: str = "minibatch"     # minibatch | full
    optimizer: str = "sgd"          # sgd | adam

    def label(self) -> str:
        d = asdict(Variant())
        parts = [f"{k}={v}" for k, v in asdict(self).items() if v != d[k]]
        return ",".join(parts) or "library"


def lr_at(variant: Variant, lr: float, update: int, n_updates: int) -> float:
    """Learning rate of update ``update`` (1-based) under the variant's schedule."""
    if variant.lr_schedule == "constant":
        return lr
    start = variant.decay_start * n_updates
    if update <= start:
        return lr
    x = (update - start) / max(n_updates - start, 1)
    lo = lr * variant.lr_final
    if variant.lr_schedule == "exp":
        return lr * variant.lr_final ** x
    if variant.lr_schedule == "cosine":
        return lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi * x))
    if variant.lr_schedule == "linear":
        return lr + (lo - lr) * x
    raise ValueError(f"unknown lr_schedule {variant.lr_schedule!r}")


class ExactMoments:
    """Model (or data-histogram) moments by enumerating the 2^N visible states."""

    def __init__(self, n_visible: int) -> None:
        if n_visible > 20:
            raise ValueError(f"exact moments enumerate 2^N states; N = {n_visible} > 20")
        x = torch.arange(1 << n_visible)
        self.v = ((x[:, None] >> torch.arange(n_visible)) & 1).to(torch.float32)

    def weights(self, rbm: RBM) -> torch.Tensor:
        r = rbm.to(dtype=torch.float64)
        v = self.v.to(torch.float64)
        neg_e = v @ r.a + torch.nn.functional.softplus(r.b + v @ r.W).sum(-1)
        return torch.softmax(neg_e, 0).to(torch.float32)

    def histogram(self, data_u8: np.ndarray) -> torch.Tensor:
        rows = data_u8.astype(np.int64)
        x = (rows << np.arange(rows.shape[1], dtype=np.int64)).sum(1)
        c = np.bincount(x, minlength=self.v.shape[0]).astype(np.float64)
        return torch.from_numpy(c / c.sum()).to(torch.float32)


def _model_dataset(ckpts: list[int], params: list[RBM], cfg: TrainConfig, variant: Variant,
                   seconds: float) -> xr.Dataset:
    W = np.stack([p.W.cpu().numpy() for p in params])
    a = np.stack([p.a.cpu().numpy() for p in params])
    b = np.stack([p.b.cpu().numpy() for p in params])
    ds = xr.Dataset(
        {"W": (("checkpoint", "neuron", "hidden"), W), "a": (("checkpoint", "neuron"), a),
         "b": (("checkpoint", "hidden"), b)},
        coords={"checkpoint": np.asarray(ckpts, dtype=np.int64)},
        attrs={"n_hidden": cfg.n_hidden, "train_config": cfg.to_json(),
               "variant": variant.label(), "train_seconds": seconds},
    )
    return ds


def train_variant(train_data: np.ndarray, *, cfg: TrainConfig, seed: int,
                  variant: Variant = Variant(),
                  checkpoints: np.ndarray | None = None,
                  init: RBM | None = None) -> xr.Dataset:
    """Train one RBM with a variant of the library's PCD loop (module docstring).

    Runs on ``cfg.device`` (float32 sampling, no TF32, no fused kernels: on CUDA compare
    variants with each other through this loop, not with the library's bf16 path).

    Returns a ``model.nc``-like dataset (``W``, ``a``, ``b`` over ``checkpoint``) that
    ``spikerbm.likelihood.checkpoint_loglik`` accepts; attrs ``train_seconds`` (wall time of
    the loop), ``train_cpu_seconds`` (process CPU time: robust to other jobs on shared cores),
    ``variant``. ``init`` replaces the library's initialisation (e.g. the planted model, for an
    oracle start); the init generator is still drawn so nothing else changes.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    data_u8 = np.ascontiguousarray(train_data, dtype=np.uint8)
    n_samples, n_visible = data_u8.shape
    device = resolve_device(cfg.device)
    if device.type != "cpu" and (variant.negative == "exact" or variant.positive == "full"):
        raise ValueError("exact moments run on CPU only (N <= 20); use device cpu")
    data = torch.from_numpy(data_u8).to(device)
    chain_gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "chains"))
    shuffle_gen = torch.Generator().manual_seed(derive_seed(seed, "shuffle"))
    init_gen = torch.Generator().manual_seed(derive_seed(seed, "init"))
    batches = MinibatchStream(n_samples, batch_size=cfg.batch_size, generator=shuffle_gen)
    schedule = checkpoint_schedule(cfg.n_updates, cfg.n_checkpoints) if checkpoints is None \
        else np.asarray(checkpoints, dtype=np.int64)
    is_ckpt = set(schedule.tolist())
    v_mean = torch.from_numpy(data_u8.mean(axis=0, dtype=np.float64)).to(torch.float32)
    rbm = init_rbm(v_mean, n_hidden=cfg.n_hidden, weight_std=cfg.weight_std,
                   generator=init_gen).to(device)
    if init is not None:
        if init.W.shape != rbm.W.shape:
            raise ValueError(f"init has shape {tuple(init.W.shape)}; config wants "
                             f"{tuple(rbm.W.shape)}")
        rbm = init.to(device=device, dtype=torch.float32).clone()
    def fresh_chains() -> PersistentChains:
        v0 = random_states(n_chains=cfg.n_chains, n_visible=n_visible, generator=chain_gen)
        return PersistentChains(v0, n_hidden=cfg.n_hidden, generator=chain_gen)

    chains = fresh_chains()
    exact = ExactMoments(n_visible) if "exact" in (variant.negative,) or \
        variant.positive == "full" else None
    w_data_full = exact.histogram(data_u8) if variant.positive == "full" else None
    ckpts, params = [0], [rbm.clone()]
    lr_final, decay_start = (variant.lr_final, variant.decay_start) \
        if variant.lr_schedule == "exp" else (1.0, 0.0)
    opt = Optimizer(rbm, kind=variant.optimizer, lr=cfg.lr, n_updates=cfg.n_updates,
                    lr_final=lr_final, decay_start=decay_start)
    for update in range(1, cfg.n_updates + 1):
        idx = batches.next_indices().to(device)
        batch = data.index_select(0, idx).to(torch.float32)
        if variant.chains == "restart":
            chains = fresh_chains()
        elif variant.chains == "data":
            rows = batch[torch.arange(cfg.n_chains, device=device) % batch.shape[0]]
            chains = PersistentChains(rows, n_hidden=cfg.n_hidden, generator=chain_gen)
        elif variant.chains != "persistent":
            raise ValueError(f"unknown chains variant {variant.chains!r}")
        if variant.negative == "exact":
            w_model = exact.weights(rbm)
            v_model, h_model = exact.v, hidden_probs(rbm, exact.v)
        else:
            chains.sweep(rbm, k=cfg.k)
            v_model, h_model, w_model = chains.v, chains.hidden_means(rbm), None
        if w_data_full is not None:
            v_data, w_data = exact.v, w_data_full
        else:
            v_data, w_data = batch, None
        grad = pcd_gradient(v_data, hidden_probs(rbm, v_data), v_model, h_model,
                            centered=cfg.centered, w_data=w_data, w_model=w_model)
        if variant.l1 or variant.l2:
            grad = replace(grad, W=grad.W - variant.l1 * torch.sign(rbm.W)
                           - 2 * variant.l2 * rbm.W)
        if variant.lr_schedule not in ("constant", "exp"):  # cosine / linear
            opt.lr, opt.lr_final = lr_at(variant, cfg.lr, update, cfg.n_updates), 1.0
        opt.step(rbm, grad, torch.tensor(update))
        if (update % 100 == 0 or update in is_ckpt) and not bool(torch.isfinite(rbm.W).all()):
            raise RuntimeError(f"variant {variant.label()} diverged at update {update}")
        if update in is_ckpt:
            ckpts.append(update)
            params.append(rbm.clone())
    ds = _model_dataset(ckpts, params, cfg, variant, time.perf_counter() - t0)
    ds.attrs["train_cpu_seconds"] = time.process_time() - c0
    return ds


def check_matches_library(train_data: np.ndarray, *, seed: int = 3) -> float:
    """Max |difference| of all checkpoint parameters between :func:`train_variant` and
    ``spikerbm.training.train`` on CPU, for the default (SGD) and for Adam with the decay;
    0.0 when the loop is the library's."""
    base = dict(n_hidden=7, n_updates=60, n_checkpoints=6, n_chains=40, batch_size=50, k=3,
                tais_chains=0, device="cpu")
    pairs = [(TrainConfig(**base, lr=0.05, optimizer="sgd", lr_final=1.0, decay_start=0.0),
              Variant()),
             (TrainConfig(**base, lr=0.03, optimizer="adam", lr_final=0.01, decay_start=0.5),
              Variant(optimizer="adam", lr_schedule="exp", lr_final=0.01, decay_start=0.5))]
    worst = 0.0
    for cfg, variant in pairs:
        lib = train(train_data, cfg=cfg, seed=seed)
        ours = train_variant(train_data, cfg=TrainConfig(**{**cfg.to_dict(), "lr": cfg.lr}),
                             seed=seed, variant=variant)
        if not np.array_equal(lib["checkpoint"].values, ours["checkpoint"].values):
            raise AssertionError("checkpoint schedules differ")
        worst = max(worst, *(float(np.abs(lib[k].values - ours[k].values).max())
                             for k in ("W", "a", "b")))
    return worst
