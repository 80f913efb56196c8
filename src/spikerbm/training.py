"""Persistent-contrastive-divergence training of RBMs with checkpoints and exact resume.

docs/methods.md §3. :func:`train` is the loop: it builds (or restores) the run's
:class:`~spikerbm.train_state.TrainingState`, then advances it with a
:class:`~spikerbm.pcd.PCDEngine` in chunks that end at every checkpoint and at most
:data:`~spikerbm.pcd.DIVERGENCE_CHECK_EVERY` updates apart (with trajectory AIS
:data:`~spikerbm.partition.STAGE_CHECK_EVERY`); after each chunk it checks for divergence and
lets trajectory AIS choose its stages per update for the next chunk (docs/methods.md §4),
and at a checkpoint it records the parameters and hands the full state, as an
``xarray.Dataset``, to a callback. :func:`train` started with that dataset continues exactly
where it stopped (bitwise on CPU). Checkpoints are log-spaced in update count
(:func:`checkpoint_schedule`, update 0 = initialisation and the last update included).
:func:`train_to_files` is the file-level driver used by ``scripts/train.py`` (``resume.nc``
after every checkpoint, ``model.nc`` at the end, atomically, through :mod:`spikerbm.io`).

Replicas (``train.replicas`` R > 1, docs/methods.md §3): the same loop runs R training states,
one per seed (:func:`spikerbm.train_state.replica_seeds`), each with its own guard and online
evaluator, advancing them to every common boundary (lockstep); the run stops when every live
replica's stopping rule holds; a replica that blows up is dropped. On the fused bf16 CUDA path
the live replicas advance together in one batched :class:`~spikerbm.pcd.PCDEngine` (stacked
parameters whose views are the replicas' ``state.rbm``, one replica chains object, one launch
per half sweep for all replicas, the whole update one CUDA graph; re-stacked when a replica is
dropped); elsewhere (CPU) each has its own engine and they advance in turn. Both give every
replica the same updates (bitwise on CPU), so only the inner loop marked in :func:`train`
differs.

The pieces live in their own modules: the configuration in :mod:`spikerbm.config`, the update
and its runner in :mod:`spikerbm.pcd`, the state, its minibatch stream and its datasets in
:mod:`spikerbm.train_state`.

Precision (``train.precision``, :meth:`spikerbm.sampling.Sampler.from_precision`): parameters
and gradients in float32; sampling products in float32, TF32 (``tf32``, CUDA) or bfloat16
operands (``bf16``, CUDA: the fused kernels of :mod:`spikerbm.kernels`, with one whole update,
trajectory-AIS step included, replayed as a CUDA graph); every energy / log Z (trajectory AIS)
in float64.

This module imports xarray lazily, so the pure-torch parts work without netCDF libraries
(``benchmarks/train_speed.py`` relies on that).
"""

from __future__ import annotations

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
from spikerbm.partition import STAGE_CHECK_EVERY
from spikerbm.pcd import (  # noqa: F401 (re-exported)
    DIVERGENCE_CHECK_EVERY,
    MAX_ABS_PARAMETER,
    DivergenceGuard,
    PCDEngine,
    TrainingDivergedError,
)
from spikerbm.rbm import RBM, resolve_device
from spikerbm.sampling import Sampler
from spikerbm.train_state import (
    OnlineCurve,
    TrainingState,
    config_hash,
    data_hash,
    replica_seeds,
    resume_mismatch,
    stack_replicas,
    unstack_replica,
)

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger(__name__)


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


def _binary_uint8(train_data: np.ndarray | torch.Tensor) -> np.ndarray:
    data = np.asarray(train_data.cpu() if isinstance(train_data, torch.Tensor) else train_data)
    if data.ndim != 2:
        raise ValueError(f"train_data must be (time_bin, neuron); got shape {data.shape}")
    if not np.isin(data, (0, 1)).all():
        raise ValueError("train_data must contain only 0 and 1 (a binarized raster)")
    return np.ascontiguousarray(data, dtype=np.uint8)


class OnlineEvaluator:
    """Online train and test log-likelihood of the current parameters (docs/methods.md §3).

    ``LL = -<E(v)>_D - log Z`` with the mean free energy in float64
    (:func:`spikerbm.likelihood.mean_free_energy`) over the whole test split and over a fixed
    subsample of the train split of the same size (all train bins when there are fewer; the
    rows drawn once with ``derive_seed(seed, "eval-train")``), and ``log Z`` from trajectory
    AIS. Both splits are kept on the device (uint8).
    """

    def __init__(self, train_data: np.ndarray, test_data: np.ndarray, *, seed: int,
                 device: torch.device) -> None:
        from spikerbm.provenance import derive_seed

        rng = np.random.default_rng(derive_seed(seed, "eval-train"))
        n = min(test_data.shape[0], train_data.shape[0])
        rows = np.sort(rng.choice(train_data.shape[0], size=n, replace=False))
        self.train = torch.from_numpy(np.ascontiguousarray(train_data[rows])).to(device)
        self.test = torch.from_numpy(np.ascontiguousarray(test_data)).to(device)

    def __call__(self, rbm: RBM, log_z: float) -> tuple[float, float]:
        """``(ll_train, ll_test)`` in nats per sample (one host synchronisation each)."""
        from spikerbm.likelihood import mean_free_energy

        return (-mean_free_energy(rbm, self.train) - log_z,
                -mean_free_energy(rbm, self.test) - log_z)


def train(train_data: np.ndarray | torch.Tensor, *, cfg: TrainConfig, seed: int,
          test_data: np.ndarray | torch.Tensor | None = None,
          resume: xr.Dataset | None = None,
          on_checkpoint: Callable[[xr.Dataset], None] | None = None,
          neuron_coords: Mapping[str, Any] | None = None,
          progress: bool = False, batched: bool | None = None) -> xr.Dataset:
    """Train an RBM by PCD, with early stopping on the online test log-likelihood, and return
    its ``model.nc`` dataset (without provenance attrs).

    With ``cfg.replicas`` R > 1 it trains R replicas in lockstep and returns them stacked on a
    leading ``replica`` dim (docs/data-model.md; module docstring): replica 0 from ``seed``,
    replica ``r`` from ``derive_seed(seed, "replica", r)``, each bitwise the single run of its
    seed on CPU until the common stop.

    Every ``cfg.eval_every`` updates (and at the last one) the train and test log-likelihood
    are evaluated online (:class:`OnlineEvaluator`, trajectory-AIS log Z) at the loop's
    synchronisation points, outside the captured update; the best evaluation's parameters are
    kept and become a checkpoint of the result. Training stops early once the online test
    log-likelihood has not improved by ``cfg.min_delta`` over ``cfg.patience`` updates
    (:class:`~spikerbm.train_state.OnlineCurve`); ``cfg.n_updates`` is the maximum. The test
    split only decides when to stop and which parameters are best: gradients never see it.
    At the first evaluation, every ``cfg.anchor_every``-th one and the last update, trajectory
    AIS is anchored on an independent exact or AIS ``log Z`` (:meth:`_Replica.anchor`,
    docs/methods.md §4, "Anchors"), outside the captured update.

    Parameters
    ----------
    train_data
        Training split, (T, N) in {0, 1} (uint8 preferred), any order (minibatches are drawn in
        shuffled order).
    cfg
        Training configuration.
    seed
        The job's seed (:mod:`spikerbm.train_state` derives every generator from it).
    test_data
        Test split, (T_test, N) in {0, 1}, for the online log-likelihood and early stopping;
        ``None``: no online log-likelihood (NaN), no early stopping.
    resume
        A state dataset previously passed to ``on_checkpoint``; used when its config and data
        hashes match (continuing bitwise-exactly on CPU), otherwise ignored (logged).
    on_checkpoint
        Called with the full training state (``resume.nc`` contents) after each checkpoint.
    neuron_coords
        Coordinates on the ``neuron`` dim (e.g. ``unit_id``, ``area``).
    progress
        Show a tqdm progress bar (updates per second).
    batched
        Replicas only: advance them with one batched engine (:class:`~spikerbm.pcd.PCDEngine`
        over the replica axis: one launch per half sweep sweeps every replica's chains) rather
        than in turn. ``None`` (default): batched when the chains are capturable (the fused
        bf16 CUDA path) and R > 1, in turn otherwise (CPU). Both give every replica the same
        updates (bitwise on CPU), so this is a speed choice, not a config key.

    Returns
    -------
    xarray.Dataset
        dims ``checkpoint``, ``neuron``, ``hidden``, ``eval``: ``W``, ``a``, ``b`` at every
        checkpoint (the log-spaced schedule up to the last update, plus the best online
        evaluation), ``log_z_tais``, ``log_z_tais_std``, the online curve
        (``ll_train_online``, ``ll_test_online``, ``log_z_online`` and their ``*_std``, coord
        ``eval_update``), the anchors (``log_z_anchor``, ``log_z_anchor_std``,
        ``log_z_anchor_gap``; attr ``log_z_anchor_method``); attrs ``n_hidden``,
        ``train_config`` (JSON), ``n_updates_done``,
        ``stop_reason``, ``best_update``, ``still_improving``, ``ll_test_online_gain``,
        ``stop_window``, ``best_ll_test_online``, hashes (docs/data-model.md, ``model.nc``).
        R > 1: the same on a leading ``replica`` dim, the per-replica attrs as variables on
        ``replica``, plus ``replica_seed`` and ``diverged``; attrs ``replicas``,
        ``replicas_dropped``.

    Raises
    ------
    TrainingDivergedError
        When a parameter becomes NaN/inf or exceeds :data:`MAX_ABS_PARAMETER` (the last good
        checkpoint state was already handed to ``on_checkpoint``); with replicas, when every
        replica has (one that blows up alone is dropped with a WARNING).
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    data = _binary_uint8(train_data)
    test = None if test_data is None else _binary_uint8(test_data)
    if test is not None and test.shape[1] != data.shape[1]:
        raise ValueError(f"test_data has {test.shape[1]} neurons, train_data {data.shape[1]}")
    hashes = {"config_hash": config_hash(cfg, seed=seed, device=device),
              "data_hash": data_hash(data, test)}
    log.info("train config: %s", cfg.to_json())
    log.info("device: %s (torch %s, %s); seed %d; data %d train bins x %d neurons, %s test "
             "bins (early stopping only)", device, torch.__version__,
             torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
             seed, *data.shape, "no" if test is None else test.shape[0])
    sampler = Sampler.from_precision(cfg.precision, device)
    seeds = replica_seeds(seed, cfg.replicas)
    replicated = cfg.replicas > 1
    runs = []
    for r, (seed_r, resume_r) in enumerate(zip(seeds, _replica_resumes(resume, hashes, cfg),
                                               strict=True)):
        state = TrainingState.start(data, cfg=cfg, seed=seed_r, sampler=sampler, hashes=hashes,
                                    resume=resume_r)
        evaluator = (OnlineEvaluator(data, test, seed=seed_r, device=device)
                     if test is not None and state.tais is not None else None)
        runs.append(_Replica(r, seed_r, state, evaluator, DivergenceGuard(device, lr=cfg.lr),
                             f"replica {r}: " if replicated else ""))
    schedule = checkpoint_schedule(cfg.n_updates, cfg.n_checkpoints)
    if runs[0].evaluator is None:
        log.info("no online log-likelihood (%s): no early stopping",
                 "no test data" if test is None else "trajectory AIS is off")
    live = [run for run in runs if not run.state.diverged_update]
    update = live[0].state.update  # in lockstep: every live replica has done as many
    if batched is None:
        batched = replicated and sampler.fused
    batched = bool(batched) and replicated

    def hand_out() -> None:
        if on_checkpoint is not None:
            on_checkpoint(_dataset(runs, seeds, neuron_coords, for_resume=True))

    def evaluate(run: _Replica, log_z: float, log_z_std: float) -> None:
        state, online = run.state, run.state.online
        ll_train, ll_test = (run.evaluator(state.rbm, log_z) if run.evaluator
                             else (math.nan, math.nan))
        online.record(state.update, ll_train=ll_train, ll_test=ll_test, log_z=log_z,
                      log_z_std=log_z_std, rbm=state.rbm)
        log.info("%sonline update %d: ll_test %.4f ll_train %.4f (+- %.2g) nats/sample; best "
                 "%.4f at update %d; gain over the last %d updates %.4f", run.tag,
                 state.update, ll_test, ll_train, log_z_std, online.best_ll,
                 online.best_update, online.window, online.gain())

    if update == 0:
        for run in live:
            evaluate(run, run.state.trajectory.log_z[0], run.state.trajectory.log_z_std[0])
        if replicated:
            _hold_bests(runs, update)
        hand_out()
        log.info("checkpoint written: update 0 (initialisation)")
    data_on_device = torch.from_numpy(data).to(device)  # one copy for every replica
    if batched:
        _batch(live, data_on_device, cfg)
        log.info("batched engine: %d replicas advance together (one launch per half sweep "
                 "on the fused path)", len(live))
    else:
        for run in live:
            state = run.state
            run.engine = PCDEngine(state.rbm, chains=state.chains, data=data_on_device,
                                   k=cfg.k, optimizer=state.optimizer, centered=cfg.centered,
                                   tf32=cfg.precision != "float32", guard=run.guard,
                                   first_update=state.update + 1, batch_size=cfg.batch_size,
                                   tais=state.tais)

    t_loop, start_update = time.perf_counter(), update
    bar = tqdm(total=cfg.n_updates * len(runs), initial=update * len(live), unit="update",
               disable=not progress, mininterval=1.0 if sys.stderr.isatty() else 30.0,
               smoothing=0.1, desc=f"train n_hidden={cfg.n_hidden}"
               + (f" x {cfg.replicas} replicas" if replicated else ""))
    try:
        while not live[0].state.online.stop_reason:
            next_checkpoint = int(schedule[schedule > update][0])
            next_eval = min((update // cfg.eval_every + 1) * cfg.eval_every, cfg.n_updates)
            every = DIVERGENCE_CHECK_EVERY if live[0].state.tais is None else STAGE_CHECK_EVERY
            n = min(next_checkpoint, next_eval, update + every) - update
            # n updates of every live replica (lockstep at the boundaries of evaluation,
            # checkpoint and divergence check): all together in the batched engine, or in turn
            if batched:
                _advance_batched(live, n, device, bar)
            else:
                for run in live:
                    run.advance(n, device, bar)
            update += n
            n_live = len(live)
            for run in live:
                if replicated and run.guard.first_bad_update():
                    _drop(run, n_live=len(live))
                else:
                    run.guard.check(update, run.state.rbm,
                                    last_checkpoint=run.state.trajectory.updates[-1])
            live = [run for run in live if not run.state.diverged_update]
            if not live:
                raise _all_diverged(runs, cfg)
            if batched and len(live) < n_live:  # re-stack the live replicas
                _batch(live, data_on_device, cfg)
            for run in live:
                if run.state.tais is not None:
                    run.state.tais.adapt_stages()  # stages per update until the next sync (§4)
            at_checkpoint = update == next_checkpoint
            if update != next_eval and not at_checkpoint:
                continue
            if update == next_eval and _anchor_due(update, cfg):
                for run in live:
                    run.anchor(cfg, device)
            log_z = {run.index: run.log_z_now() for run in live}  # one synchronisation each
            if update == next_eval:
                for run in live:
                    evaluate(run, *log_z[run.index])
                if replicated:
                    _hold_bests(runs, update)
                stop = [run.state.online.should_stop() for run in live]
                if all(stop) or update >= cfg.n_updates:  # every live replica, or the maximum
                    for run, own in zip(live, stop, strict=True):
                        run.state.online.stop_reason = "early_stop" if own else "max_updates"
            if not (at_checkpoint or live[0].state.online.stop_reason):
                continue
            for run in live:
                run.state.record_checkpoint(*log_z[run.index])
            hand_out()
            elapsed = time.perf_counter() - t_loop
            log.info("checkpoint written: update %d (%d/%d), %.1f s, %.1f updates/s, "
                     "log_z_tais %s", update, len(live[0].state.trajectory.updates),
                     len(schedule), elapsed, (update - start_update) / max(elapsed, 1e-9),
                     ", ".join(f"{z:.4f} +- {e:.2g}" for z, e in log_z.values()))
    except TrainingDivergedError:
        raise
    except Exception:
        for run in live:  # did a blow-up cause it?
            run.guard.check(update, run.state.rbm,
                            last_checkpoint=run.state.trajectory.updates[-1])
        raise
    finally:
        bar.close()
    done, loop_s = update - start_update, time.perf_counter() - t_loop
    log.info("training done: %d updates this run in %.1f s (%.2f ms/update%s, %.1f s total)",
             done, loop_s, 1e3 * loop_s / max(done, 1),
             f" for {len(live)} replicas" if replicated else "", time.perf_counter() - t_start)
    for run in runs:
        if run.state.diverged_update:
            log.warning("%sdropped: diverged at update %d", run.tag, run.state.diverged_update)
        else:
            _log_stop(run.state.online, update, cfg, tag=run.tag)
    return _dataset(runs, seeds, neuron_coords, for_resume=False)


@dataclass
class _Replica:
    """One replica of a run: its state, online evaluator, divergence guard and update engine
    (a single-model run is one replica with an empty log ``tag``)."""

    index: int
    seed: int
    state: TrainingState
    evaluator: OnlineEvaluator | None
    guard: DivergenceGuard
    tag: str
    engine: PCDEngine | None = None
    slot: int | None = None  # the replica's index in a batched engine

    def advance(self, n: int, device: torch.device, bar: Any) -> None:
        """``n`` updates of this replica (its own minibatch stream)."""
        for i, idx in enumerate(self.state.batches.next_rows(n, device)):
            self.engine.step(idx, last=i == n - 1)
            bar.update(1)
        self.state.update += n

    def log_z_now(self) -> tuple[float, float]:
        """Trajectory-AIS ``log Z`` and its uncertainty after the last update (NaN without):
        the groups' error since the last anchor, the anchor's and the drift allowance
        (:meth:`~spikerbm.train_state.OnlineCurve.anchored_std`)."""
        state, online = self.state, self.state.online
        if state.tais is None:
            return math.nan, math.nan
        if online.anchor_updates and online.anchor_updates[-1] == state.update:
            return online.anchor_log_z[-1], online.anchor_log_z_std[-1]  # at the anchor
        est = state.tais.estimate(self._log_z_buffer())
        return est.log_z, online.anchored_std(est.log_z_std, state.update)

    def _log_z_buffer(self) -> torch.Tensor:
        """The engine's buffer of this replica's trajectory-AIS group estimates (a view of
        the batched engine's (R, G) buffer when batched)."""
        return self.engine.log_z if self.slot is None else self.engine.log_z[self.slot]

    def anchor(self, cfg: TrainConfig, device: torch.device) -> None:
        """Anchor trajectory AIS on an independent ``log Z`` of the current parameters
        (docs/methods.md §4, "Anchors"): exact or AIS (float32-accurate sampling, never TF32 or
        bf16: split bfloat16 products on CUDA, :func:`spikerbm.partition.ais_log_weights`; float64
        energies, its own generator ``derive_seed(seed, "anchor", update)``), recorded with
        the trajectory-AIS estimate's gap to it, then :meth:`TrajectoryAIS.reanchor`. Runs at
        a synchronisation point, outside any captured update; draws nothing from the
        training's or trajectory AIS's random streams."""
        from spikerbm.partition import ANCHOR_REPEATS, estimate_log_z
        from spikerbm.provenance import derive_seed

        state, tais = self.state, self.state.tais
        if tais is None:
            return
        t0 = time.perf_counter()
        buffer = self._log_z_buffer()
        before = tais.estimate(buffer)
        gen = torch.Generator(device=device).manual_seed(
            derive_seed(self.seed, "anchor", state.update))
        est = estimate_log_z(state.rbm, method="auto", exact_max_units=cfg.exact_max_units,
                             ais_chains=cfg.anchor_chains, ais_betas=cfg.anchor_betas,
                             ais_repeats=ANCHOR_REPEATS, generator=gen)
        if not math.isfinite(est.log_z):
            log.warning("%sanchor at update %d: %s log Z is not finite; trajectory AIS not "
                        "re-anchored", self.tag, state.update, est.method)
            return
        gap = before.log_z - est.log_z
        stated = state.online.anchored_std(before.log_z_std, state.update)
        state.online.add_anchor(state.update, log_z=est.log_z, log_z_std=est.log_z_std,
                                gap=gap, method=est.method)
        tais.reanchor(est.log_z, buffer)
        log.info("%sanchor at update %d: %s log Z %.4f +- %.2g; trajectory AIS was %.4f +- "
                 "%.2g (gap %+.4f = %.1f stated errors), re-anchored (%.2f s)", self.tag,
                 state.update, est.method, est.log_z, est.log_z_std, before.log_z, stated, gap,
                 abs(gap) / stated if stated > 0 else math.inf, time.perf_counter() - t0)


def _anchor_due(update: int, cfg: TrainConfig) -> bool:
    """Whether the evaluation at ``update`` anchors trajectory AIS: the first evaluation
    (``eval_every``: it measures the drift where the parameters move fastest), every
    ``anchor_every``-th evaluation and the last update (``anchor_every = 0``: never)."""
    return cfg.anchor_every > 0 and cfg.tais_chains > 0 and (
        update % (cfg.anchor_every * cfg.eval_every) == 0
        or update in (cfg.eval_every, cfg.n_updates))


def _batch(live: list[_Replica], data: torch.Tensor, cfg: TrainConfig) -> PCDEngine:
    """One batched :class:`PCDEngine` over the live replicas: their current parameters copied
    into stacked tensors (R, N, M), (R, N), (R, M) whose views ``W[r]``, ``a[r]``, ``b[r]``
    become each replica's ``state.rbm`` (so its optimizer, guard, trajectory AIS, evaluator
    and checkpoints work on them unchanged), their chains stacked into replica chains that
    continue each one's random stream (:func:`~spikerbm.sampling.stack_chains`). Called again
    after a replica is dropped: the dropped one keeps its state as it was (views of the old
    stack, no longer updated), the others are re-stacked, their last trajectory-AIS estimates
    carried over."""
    from spikerbm.sampling import stack_chains

    old = live[0].engine if live[0].slot is not None else None
    states = [run.state for run in live]
    stacked = RBM.stack([state.rbm for state in states])
    chains = stack_chains([state.chains for state in states])
    engine = PCDEngine(stacked, chains=chains, data=data, k=cfg.k,
                       optimizer=[state.optimizer for state in states],
                       centered=cfg.centered, tf32=cfg.precision != "float32",
                       guard=[run.guard for run in live], first_update=states[0].update + 1,
                       batch_size=cfg.batch_size,
                       tais=None if states[0].tais is None else [s.tais for s in states])
    if old is not None:
        engine.log_z.copy_(old.log_z[[run.slot for run in live]])
    for r, run in enumerate(live):
        run.state.rbm, run.engine, run.slot = stacked.replica(r), engine, r
    return engine


def _advance_batched(live: list[_Replica], n: int, device: torch.device, bar: Any) -> None:
    """``n`` updates of the live replicas of a batched engine, each with its own minibatch
    stream; then their chain states go back into each replica's own chains object (which
    :meth:`TrainingState.to_dataset` reads)."""
    from spikerbm.sampling import unstack_chains

    engine = live[0].engine
    rows = torch.stack([run.state.batches.next_rows(n, device) for run in live], dim=1)
    for i, idx in enumerate(rows):  # (R, batch_size) per update
        engine.step(idx, last=i == n - 1)
        bar.update(len(live))
    for run in live:
        run.state.update += n
    unstack_chains(engine.chains, [run.state.chains for run in live])


def _replica_resumes(resume: xr.Dataset | None, hashes: Mapping[str, str],
                     cfg: TrainConfig) -> list[xr.Dataset | None]:
    """The resume dataset of each replica: ``resume`` itself for a single-model run (checked by
    :meth:`TrainingState.start`), else its replicas when it matches (checked once here)."""
    if cfg.replicas == 1 or resume is None:
        return [resume] + [None] * (cfg.replicas - 1)
    why = resume_mismatch(resume, hashes)
    if why is None and resume.sizes.get("replica") != cfg.replicas:
        why = f"it has {resume.sizes.get('replica', 1)} replica(s), not {cfg.replicas}"
    if why is not None:
        log.warning("starting fresh: resume state not usable because %s", why)
        return [None] * cfg.replicas
    return [unstack_replica(resume, r) for r in range(cfg.replicas)]


def _hold_bests(runs: list[_Replica], update: int) -> None:
    """After the evaluation at ``update``: when ``update`` is some replica's best, every live
    replica keeps its parameters there (``TrainingState.held``); entries that are no
    replica's best any more are forgotten. So ``model.nc`` holds every replica at every
    replica's best update."""
    bests = {run.state.online.best_update for run in runs}
    for run in runs:
        state = run.state
        if update in bests and not state.diverged_update:
            state.held[update] = (*(t.detach().cpu().numpy().copy()
                                    for t in state.rbm.parameters().values()),
                                  state.online.log_z[-1], state.online.log_z_std[-1])
        for u in [u for u in state.held if u not in bests]:
            del state.held[u]


def _drop(run: _Replica, *, n_live: int) -> None:
    """Drop a replica whose parameters blew up (its state stays as it was; logged)."""
    state = run.state
    state.diverged_update = run.guard.first_bad_update()
    state.online.stop_reason = "diverged"
    if run.slot is not None:  # a batched engine: re-stacked without it (its memory freed)
        run.engine = run.slot = None
    log.warning("%sdiverged at update %d (%s); dropped (seed %d; its entries from that update "
                "on are NaN), the other %d replica(s) continue. If more replicas diverge, "
                "lower train.lr", run.tag, state.diverged_update,
                run.guard.describe(state.rbm), run.seed, n_live - 1)


def _all_diverged(runs: list[_Replica], cfg: TrainConfig) -> TrainingDivergedError:
    last = max(run.state.trajectory.updates[-1] for run in runs)
    at = ", ".join(f"replica {run.index} at update {run.state.diverged_update}" for run in runs)
    return TrainingDivergedError(
        f"training diverged: all {len(runs)} replicas blew up ({at}). train.lr = {cfg.lr:g} is "
        f"too large for this data: lower it (e.g. train.lr: {cfg.lr / 100:g}) and rerun. The "
        f"last good checkpoint (update {last}) is kept in resume.nc; no model.nc is written")


def _dataset(runs: list[_Replica], seeds: list[int], neuron_coords: Mapping[str, Any] | None,
             *, for_resume: bool) -> xr.Dataset:
    """``model.nc`` / ``resume.nc`` contents: the single model's, or the replicas' stacked."""
    sets = [run.state.to_dataset(neuron_coords=neuron_coords, for_resume=for_resume)
            for run in runs]
    return sets[0] if len(runs) == 1 else stack_replicas(sets, seeds, for_resume=for_resume)


def _log_stop(online: OnlineCurve, update: int, cfg: TrainConfig, *, tag: str = "") -> None:
    """One line saying why training stopped and whether it had reached its peak (``tag``:
    the replica's prefix)."""
    gain = online.gain()
    if online.stop_reason == "early_stop" and online.declined():
        drop, err = online.decline()
        log.info("%sstopped early at update %d of at most %d: past its peak, the best online "
                 "test log-likelihood of the last %d updates is %.4f nats/sample below the best "
                 "%.4f at update %d (%.1f times their combined stated error %.2g; threshold "
                 "max(min_delta %g, 2 errors)); the best is kept as a checkpoint", tag, update,
                 cfg.n_updates, online.window, drop, online.best_ll, online.best_update,
                 drop / err if err > 0 else math.inf, err, cfg.min_delta)
    elif online.still_improving() == -1:
        log.info("%sran the maximum of %d updates; without an online log-likelihood (no test "
                 "data or no trajectory AIS) it is unknown whether training reached its peak",
                 tag, update)
    elif online.stop_reason == "early_stop":
        log.info("%sstopped early at update %d of at most %d: the online test log-likelihood "
                 "gained %.4f < min_delta %g nats/sample over the last %d updates; best %.4f "
                 "at update %d (kept as a checkpoint)", tag, update, cfg.n_updates, gain,
                 cfg.min_delta, online.window, online.best_ll, online.best_update)
    elif online.still_improving() == 1:
        log.warning("%sreached the maximum of %d updates while the online test log-likelihood "
                    "was still improving (+%.4f >= min_delta %g nats/sample over the last %d "
                    "updates): training did not reach its peak; raise train.n_updates (or "
                    "train.lr)", tag, update, gain, cfg.min_delta, online.window)
    else:
        log.info("%sreached the maximum of %d updates; the online test log-likelihood had "
                 "levelled off (gain %.4f over the last %d updates); best %.4f at update %d",
                 tag, update, gain, online.window, online.best_ll, online.best_update)


def train_to_files(train_data: np.ndarray, *, cfg: TrainConfig, seed: int,
                   model_path: str | os.PathLike, resume_path: str | os.PathLike,
                   test_data: np.ndarray | None = None,
                   attrs: Mapping[str, Any] | None = None,
                   neuron_coords: Mapping[str, Any] | None = None,
                   progress: bool = False, batched: bool | None = None) -> xr.Dataset:
    """Train with exact resume through files; write ``model_path`` on success.

    Resumes from ``resume_path`` when it exists and matches (see :func:`train`), writes it
    atomically after every checkpoint, writes ``model_path`` atomically at the end and then
    deletes ``resume_path``. Stale temporary files of killed writers are removed first, so a
    killed job never leaves a half-written output behind. All I/O goes through
    :mod:`spikerbm.io`. ``batched``: as in :func:`train`.

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

    model = train(train_data, cfg=cfg, seed=seed, test_data=test_data, resume=resume,
                  on_checkpoint=write_resume, neuron_coords=neuron_coords, progress=progress,
                  batched=batched)
    io.write_netcdf(model, model_path, attrs=attrs)
    log.info("model written: %s", model_path)
    io.remove_file(resume_path)
    log.info("resume state removed: %s", resume_path)
    model.attrs.update(attrs)
    return model
