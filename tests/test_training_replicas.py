"""Replicas (train.replicas = R): R RBMs from different seeds trained in lockstep by one job.

Each replica must be exactly the single-model run of its seed (CPU, bitwise) up to where the
common stopping rule ends it; the run stops when every live replica's rule holds; a replica
that blows up is dropped (NaN from its divergence on) while the others continue; the R states
resume exactly through resume.nc; and R = 1 is today's single-model run, dataset and hashes.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import SGD_RECIPE

from spikerbm import io
from spikerbm import rbm as R
from spikerbm.pcd import TrainingDivergedError
from spikerbm.train_state import replica_seeds, unstack_replica
from spikerbm.training import TrainConfig, checkpoint_schedule, train, train_to_files

NV, NH = 21, 5  # distinct odd sizes
#: per-replica variables of model.nc that equal the single run's on its own checkpoints / evals
CKPT_VARS = ("W", "a", "b", "log_z_tais", "log_z_tais_std")
EVAL_VARS = ("ll_train_online", "ll_test_online", "log_z_online", "log_z_online_std")


def _data(n: int, seed: int = 0) -> np.ndarray:
    """Correlated binary data (a shared latent), (n, NV) uint8."""
    rng = np.random.default_rng(seed)
    z = rng.random((n, 1)) < 0.3
    return (rng.random((n, NV)) < np.where(z, 0.6, 0.1)).astype(np.uint8)


def _cfg(**kw) -> TrainConfig:
    base = dict(n_hidden=NH, n_updates=150, n_checkpoints=9, n_chains=31, batch_size=37, k=3,
                lr=0.05, weight_std=0.1, tais_chains=30, eval_every=25, patience=0,
                device="cpu", **SGD_RECIPE)
    return TrainConfig(**{**base, **kw})


def _assert_replica_is_single_run(rep, one) -> None:
    """Replica ``rep`` (model.nc of the replicated run, one replica selected) holds bitwise the
    single run ``one`` at every checkpoint and evaluation ``one`` has."""
    for name in CKPT_VARS:
        np.testing.assert_array_equal(rep[name].sel(checkpoint=one["checkpoint"]).values,
                                      one[name].values, err_msg=name)
    n = one.sizes["eval"]
    assert rep["eval_update"].values[:n].tolist() == one["eval_update"].values.tolist()
    for name in EVAL_VARS:
        np.testing.assert_array_equal(rep[name].values[:n], one[name].values, err_msg=name)


def test_replicas_in_lockstep_are_the_single_runs_of_their_seeds():
    """Early stopping off: replica r of an R = 3 run is bitwise the single run with seed
    ``replica_seeds(seed, 3)[r]`` (replica 0: the job's seed), checkpoints, online curve, stop
    attributes and final sampler state alike; the replicas differ from each other (the
    comparison can fail)."""
    data, test = _data(301), _data(300, seed=5)
    cfg = _cfg(replicas=3)
    states: list = []
    ds = train(data, test_data=test, cfg=cfg, seed=3, on_checkpoint=states.append)
    seeds = replica_seeds(3, 3)
    assert seeds[0] == 3 and len(set(seeds)) == 3
    assert ds["replica"].values.tolist() == [0, 1, 2]
    assert ds["replica_seed"].values.tolist() == seeds
    assert ds["W"].dims == ("replica", "checkpoint", "neuron", "hidden")
    assert ds["ll_test_online"].dims == ("replica", "eval")
    assert ds.attrs["replicas"] == 3 and ds.attrs["replicas_dropped"] == ""
    assert ds["diverged"].values.tolist() == [0, 0, 0]
    # the common axis: the log-spaced schedule plus every replica's best update
    bests = ds["best_update"].values.tolist()
    assert set(ds["checkpoint"].values.tolist()) == set(checkpoint_schedule(150, 9)) | set(bests)
    for r, seed in enumerate(seeds):
        single: list = []
        one = train(data, test_data=test, cfg=_cfg(), seed=seed, on_checkpoint=single.append)
        rep = ds.sel(replica=r)
        _assert_replica_is_single_run(rep, one)
        assert rep["checkpoint"].values.tolist() == ds["checkpoint"].values.tolist()
        for name in ("stop_reason", "best_update", "still_improving", "n_updates_done",
                     "ll_test_online_gain", "best_ll_test_online"):
            assert rep[name].values.item() == one.attrs[name], name
        final = unstack_replica(states[-1], r)
        for name in single[-1].data_vars:  # chains, every generator, trajectory AIS, best
            np.testing.assert_array_equal(final[name].values, single[-1][name].values,
                                          err_msg=name)
    assert not np.array_equal(ds["W"].values[0, -1], ds["W"].values[1, -1])


def test_one_replica_is_a_plain_single_model_run():
    """``replicas: 1`` is today's run: no replica dim, the same dataset and config hash as a
    config without the key (to_dict leaves it out), the same recorded config."""
    data = _data(301)
    cfg1, cfg0 = _cfg(n_updates=60, replicas=1), _cfg(n_updates=60)
    assert cfg1 == cfg0 and "replicas" not in cfg1.to_dict()
    assert "replicas" in _cfg(replicas=2).to_dict()
    a, b = train(data, cfg=cfg1, seed=3), train(data, cfg=cfg0, seed=3)
    assert "replica" not in a.dims and a.identical(b)
    with pytest.raises(ValueError, match=r"train\.replicas must be >= 1; got 0"):
        _cfg(replicas=0)


@pytest.fixture(scope="module")
def stopped_pair():
    """An R = 2 run on 301 train bins (they overfit: the online test LL peaks and falls), with
    early stopping, its resume states, and its data."""
    data, test = _data(301), _data(700, seed=5)
    cfg = _cfg(n_updates=3000, n_checkpoints=12, patience=150, min_delta=0.01, replicas=2)
    states: list = []
    ds = train(data, test_data=test, cfg=cfg, seed=3, on_checkpoint=states.append)
    return data, test, cfg, ds, states


def test_common_stopping_rule(stopped_pair):
    """The run stops at the first evaluation at which every replica's rule holds (recomputed
    from the curves), not at the first replica's own stop; each replica's single run stops at
    or before it and is a bitwise prefix of the replica; each replica's best evaluation is a
    stored checkpoint of both replicas."""
    data, test, cfg, ds, _ = stopped_pair
    stop = int(ds["n_updates_done"].values[0])
    assert ds["n_updates_done"].values.tolist() == [stop, stop] and stop < cfg.n_updates
    assert ds["stop_reason"].values.tolist() == ["early_stop", "early_stop"]
    u = ds["eval_update"].values
    assert u.tolist() == list(range(0, stop + 1, cfg.eval_every))

    def gain(r: int, k: int) -> float:  # docs/methods.md §3, as in OnlineCurve.gain
        ll = ds["ll_test_online"].values[r, : k + 1]
        start = u[k] - cfg.patience
        return ll[u[: k + 1] > start].max() - ll[u[: k + 1] <= start].max()

    holds = [[gain(r, k) < cfg.min_delta if u[k] >= cfg.patience else False
              for k in range(len(u))] for r in (0, 1)]
    assert holds[0][-1] and holds[1][-1]
    assert not any(holds[0][k] and holds[1][k] for k in range(len(u) - 1))
    own_stops = []
    for r, seed in enumerate(replica_seeds(3, 2)):
        one = train(data, test_data=test, cfg=TrainConfig(**{**cfg.to_dict(), "replicas": 1}),
                    seed=seed)
        own_stops.append(int(one.attrs["n_updates_done"]))
        rep = ds.sel(replica=r)
        common = np.intersect1d(one["checkpoint"].values, rep["checkpoint"].values)
        for name in CKPT_VARS:
            np.testing.assert_array_equal(rep[name].sel(checkpoint=common).values,
                                          one[name].sel(checkpoint=common).values)
        n = one.sizes["eval"]
        for name in EVAL_VARS:
            np.testing.assert_array_equal(rep[name].values[:n], one[name].values, err_msg=name)
        best = int(rep["best_update"])
        assert best in ds["checkpoint"].values
        assert rep["ll_test_online"].values[u == best][0] == rep["ll_test_online"].max()
    assert max(own_stops) <= stop
    assert min(own_stops) < stop  # one replica alone would have stopped sooner
    assert np.isfinite(ds["W"].values).all()  # both replicas at both best updates


def test_replicated_run_resumes_bitwise_through_resume_nc(tmp_path, stopped_pair):
    """An R = 2 run killed after a checkpoint and rerun from its resume.nc (written to disk and
    read back) ends with the model (and, through train_to_files, the model.nc read back from
    disk) and the final state of the uninterrupted run, bitwise: from a state between the
    start and the stop, from one after both bests, and from the stop itself."""
    data, test, cfg, full, states = stopped_pair
    assert states[-1].sizes["replica"] == 2 and "held_W" in states[-1]
    model, resume = tmp_path / "model.nc", tmp_path / "resume.nc"
    io.write_netcdf(states[len(states) // 2], resume)
    train_to_files(data, test_data=test, cfg=cfg, seed=3, model_path=model, resume_path=resume)
    assert not resume.exists()
    back = io.read_netcdf(model)
    for name in full.data_vars:
        np.testing.assert_array_equal(back[name].values, full[name].values, err_msg=name)
    for name in ("checkpoint", "eval_update", "replica"):
        assert back[name].values.tolist() == full[name].values.tolist()
    for state in (states[-3], states[-1]):
        io.write_netcdf(state, resume)
        again: list = []
        out = train(data, test_data=test, cfg=cfg, seed=3, resume=io.read_netcdf(resume),
                    on_checkpoint=again.append)
        for name in full.data_vars:
            np.testing.assert_array_equal(out[name].values, full[name].values, err_msg=name)
        for name in states[-1].data_vars if again else ():  # at the stop: nothing left to do
            np.testing.assert_array_equal(again[-1][name].values, states[-1][name].values,
                                          err_msg=name)


#: SGD at lr = 3000 moves parameters by up to ~3000 per update: |W| crosses the divergence
#: bound (1e4) after a few dozen updates or never, depending on the seed's minibatches and
#: chains. With job seed 3 (CPU, bitwise reproducible) replica 0 blows up at update 43 and
#: replicas 1 and 2 stay finite over 60 updates; the test asserts these premises.
DIVERGE = dict(n_updates=60, n_checkpoints=14, lr=3000.0, eval_every=10)  # a checkpoint at 43


def test_one_diverging_replica_is_dropped_and_the_others_continue(tmp_path, caplog):
    """Replica 0 blows up: it is dropped (WARNING naming the update), its entries from the
    divergence on are NaN and before it equal its single run's; replicas 1 and 2 are exactly
    their single runs; a run resumed after the drop ends the same."""
    data, test = _data(301), _data(300, seed=5)
    cfg = _cfg(replicas=3, **DIVERGE)
    seeds = replica_seeds(3, 3)
    states: list = []
    with caplog.at_level(logging.WARNING, logger="spikerbm.training"):
        ds = train(data, test_data=test, cfg=cfg, seed=3, on_checkpoint=states.append)
    assert "replica 0: diverged at update 43" in caplog.text and "dropped" in caplog.text
    assert ds["diverged"].values.tolist() == [1, 0, 0] and ds.attrs["replicas_dropped"] == "0"
    assert ds["stop_reason"].values.tolist() == ["diverged", "max_updates", "max_updates"]
    assert ds["n_updates_done"].values.tolist() == [42, 60, 60]
    rep0 = ds.sel(replica=0)
    late, late_eval = ds["checkpoint"].values >= 43, ds["eval_update"].values >= 43
    assert np.isnan(rep0["W"].values[late]).all() and np.isnan(rep0["log_z_tais"][late]).all()
    assert np.isnan(rep0["ll_test_online"].values[late_eval]).all()
    assert np.isfinite(rep0["W"].values[~late]).all()
    assert np.isfinite(rep0["ll_test_online"].values[~late_eval]).all()
    kept: list = []
    with pytest.raises(TrainingDivergedError, match="at update 43"):
        train(data, test_data=test, cfg=_cfg(**DIVERGE), seed=seeds[0], on_checkpoint=kept.append)
    last = int(kept[-1].attrs["n_updates_done"])
    for name in CKPT_VARS:
        np.testing.assert_array_equal(rep0[name].sel(checkpoint=slice(0, last)).values,
                                      kept[-1][name].values, err_msg=name)
    for r in (1, 2):
        one = train(data, test_data=test, cfg=_cfg(**DIVERGE), seed=seeds[r])
        _assert_replica_is_single_run(ds.sel(replica=r), one)
    after = next(s for s in states if int(s["diverged_update"].values[0]))
    assert int(after["n_updates_done"].values[1]) == 43  # handed out right after the drop
    resume = tmp_path / "resume.nc"
    io.write_netcdf(after, resume)
    again = train(data, test_data=test, cfg=cfg, seed=3, resume=io.read_netcdf(resume))
    for name in ds.data_vars:
        np.testing.assert_array_equal(again[name].values, ds[name].values, err_msg=name)


def test_all_replicas_diverging_raises_and_keeps_the_last_good_state(tmp_path):
    """With job seed 2 both replicas blow up (updates 26 and 25 on CPU): one error naming
    each replica's update and the fix; resume.nc keeps the last finite checkpoint state;
    no model.nc."""
    data = _data(301)
    model, resume = tmp_path / "model.nc", tmp_path / "resume.nc"
    cfg = _cfg(replicas=2, tais_chains=0, **DIVERGE)
    with pytest.raises(TrainingDivergedError,
                       match=r"all 2 replicas blew up \(replica 0 at update 26, replica 1 at "
                             r"update 25\).*lower it"):
        train_to_files(data, cfg=cfg, seed=2, model_path=model, resume_path=resume)
    assert not model.exists()
    kept = io.read_netcdf(resume)
    assert kept.sizes["replica"] == 2 and np.isfinite(kept["W"].values).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("precision", "batched"),
                         [("float32", None), ("float32", True), ("bf16", None)])
def test_replicas_on_cuda_agree_with_single_runs_statistically(precision, batched, caplog):
    """On CUDA (float32 in turn and batched, and the fused bf16 kernels, where the batched
    engine is the default: one launch per half sweep for all replicas, the update of all of
    them one CUDA graph) an R = 3 run's
    replicas learn like the single runs of their seeds: the same initialisation (drawn on the
    CPU), the exact test LL (log Z by enumerating 2^5 hidden states) after 400 updates within
    0.05 nats of the single run's, each replica gaining > 1.5 nats over its initialisation,
    and trajectory AIS within 0.1 nats of the exact log Z. Measured on the CPU with this data
    and config (6 seeds, 2026-12-01): final test LL -9.750 +- 0.007 (s.d.; range 0.018), so two
    runs differ by ~0.01 s.d. and 0.05 is ~5 of it; gain 2.13-2.18 nats; |log_z_tais - exact|
    <= 0.031 (0.1 is 3x that). Batched kernels may change the random streams (then replicas
    and single runs differ bitwise), never these statistics."""
    from spikerbm.exact import binary_states

    data, test = _data(4001), _data(1999, seed=5)

    def exact_ll(ds, checkpoint) -> tuple[float, float]:
        r = R.rbm_from_dataset(ds, checkpoint=checkpoint, dtype=torch.float64)
        log_z = torch.logsumexp(-R.hidden_free_energy(r, binary_states(NH)), 0).item()
        return float(-R.free_energy(r, torch.as_tensor(test)).mean() - log_z), log_z

    base = dict(n_updates=400, n_checkpoints=4, n_chains=201, batch_size=201, k=5, lr=0.1,
                tais_chains=200, device="cuda", precision=precision)
    with caplog.at_level(logging.INFO, logger="spikerbm.training"):
        ds = train(data, cfg=_cfg(replicas=3, **base), seed=11, batched=batched)
    from spikerbm import kernels

    together = batched or (precision == "bf16" and kernels.available("cuda"))
    assert ("batched engine: 3 replicas" in caplog.text) == together
    for r, seed in enumerate(replica_seeds(11, 3)):
        one = train(data, cfg=_cfg(**base), seed=seed)
        rep = ds.sel(replica=r, drop=True)
        np.testing.assert_array_equal(rep["W"].isel(checkpoint=0).values,
                                      one["W"].isel(checkpoint=0).values)
        ll_rep, log_z = exact_ll(rep, 400)
        ll_one, _ = exact_ll(one, 400)
        assert abs(ll_rep - ll_one) < 0.05, (r, ll_rep, ll_one)
        assert ll_rep > exact_ll(rep, 0)[0] + 1.5
        assert abs(float(rep["log_z_tais"].sel(checkpoint=400)) - log_z) < 0.1


# ---------------------------------------------------------------------------------------------
# The batched engine (one PCDEngine over the replica axis; the default on the fused CUDA path)
# ---------------------------------------------------------------------------------------------
def _assert_same_run(a, b, states_a: list, states_b: list) -> None:
    """Same model dataset and the same resume states handed out at every checkpoint (chains
    and their generators, minibatch streams, optimizer moments, trajectory AIS, online curve,
    held parameters), bitwise."""
    assert a.identical(b)
    assert len(states_a) == len(states_b)
    for x, y in zip(states_a, states_b, strict=True):
        assert x.identical(y)


@pytest.mark.parametrize("kw", [dict(replicas=3),
                                dict(replicas=2, optimizer="adam", lr=0.03, lr_final=0.1,
                                     decay_start=0.5, n_updates=100)], ids=["sgd", "adam"])
def test_batched_engine_is_bitwise_the_replicas_in_turn(kw, caplog):
    """CPU: the batched engine (stacked parameters with per-replica views, one replica chains
    object continuing each replica's generator, each replica's own minibatch stream) gives
    every replica exactly the updates of the in-turn loop (so, by the test above, of the
    single run of its seed): model.nc and every resume state identical. The Adam run makes
    trajectory AIS split steps into stages, different per replica at times (seen [8, 4]), so
    the per-replica stage counts and Adam moments are covered. The batched path really ran
    (its log line), and the replicas differ (identical outputs are not trivial)."""
    data, test = _data(301), _data(300, seed=5)
    cfg = _cfg(**kw)
    turn: list = []
    ref = train(data, test_data=test, cfg=cfg, seed=3, on_checkpoint=turn.append,
                batched=False)
    together: list = []
    with caplog.at_level(logging.INFO, logger="spikerbm.training"):
        ds = train(data, test_data=test, cfg=cfg, seed=3, on_checkpoint=together.append,
                   batched=True)
    assert f"batched engine: {cfg.replicas} replicas" in caplog.text
    _assert_same_run(ds, ref, together, turn)
    assert not np.array_equal(ds["W"].values[0, -1], ds["W"].values[1, -1])


def test_batched_engine_drops_a_diverging_replica_and_the_others_continue(tmp_path):
    """The divergence case of the in-turn test above (replica 0 blows up at update 43, the
    others are their single runs) run by the batched engine: the same result bitwise, i.e.
    the dropped replica keeps the state it had and the engine re-stacked over replicas 1 and
    2 continues them unchanged; a batched run resumed from the state written right after the
    drop ends the same; all replicas diverging raises the same error."""
    data, test = _data(301), _data(300, seed=5)
    cfg = _cfg(replicas=3, **DIVERGE)
    turn: list = []
    ref = train(data, test_data=test, cfg=cfg, seed=3, on_checkpoint=turn.append,
                batched=False)
    together: list = []
    ds = train(data, test_data=test, cfg=cfg, seed=3, on_checkpoint=together.append,
               batched=True)
    assert ds["diverged"].values.tolist() == [1, 0, 0]  # the premise
    _assert_same_run(ds, ref, together, turn)
    after = next(s for s in together if int(s["diverged_update"].values[0]))
    resume = tmp_path / "resume.nc"
    io.write_netcdf(after, resume)
    again = train(data, test_data=test, cfg=cfg, seed=3, resume=io.read_netcdf(resume),
                  batched=True)
    assert again.identical(ds)
    with pytest.raises(TrainingDivergedError, match=r"all 2 replicas blew up \(replica 0 at "
                                                    r"update 26, replica 1 at update 25\)"):
        train(data, cfg=_cfg(replicas=2, tais_chains=0, **DIVERGE), seed=2, batched=True)


class _Killed(Exception):
    """Stands for a job killed right after it wrote a resume state."""


def test_batched_run_killed_midway_resumes_to_the_uninterrupted_end(tmp_path, stopped_pair):
    """A batched R = 2 run (early stopping) killed right after its 5th resume.nc and rerun
    through train_to_files from that file ends with the model.nc (read back from disk) of the
    uninterrupted run, bitwise; so does a batched run resumed from a resume.nc that the
    in-turn loop wrote (one on-disk layout for both)."""
    data, test, cfg, full, states = stopped_pair
    model, resume = tmp_path / "model.nc", tmp_path / "resume.nc"
    written: list = []

    def write_then_die(ds) -> None:
        io.write_netcdf(ds, resume)
        written.append(int(ds["n_updates_done"].values[0]))
        if len(written) == 5:
            raise _Killed

    with pytest.raises(_Killed):
        train(data, test_data=test, cfg=cfg, seed=3, on_checkpoint=write_then_die,
              batched=True)
    assert 0 < written[-1] < int(full["n_updates_done"].values[0])
    train_to_files(data, test_data=test, cfg=cfg, seed=3, model_path=model,
                   resume_path=resume, batched=True)
    back = io.read_netcdf(model)
    for name in full.data_vars:
        np.testing.assert_array_equal(back[name].values, full[name].values, err_msg=name)
    for name in ("checkpoint", "eval_update", "replica"):
        assert back[name].values.tolist() == full[name].values.tolist()
    io.write_netcdf(states[-3], resume)  # written by the in-turn loop
    out = train(data, test_data=test, cfg=cfg, seed=3, resume=io.read_netcdf(resume),
                batched=True)
    for name in full.data_vars:
        np.testing.assert_array_equal(out[name].values, full[name].values, err_msg=name)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_fused_engine_resumes_and_drops_a_replica_on_cuda(caplog):
    """The batched engine on the fused bf16 path (R = 3, Adam, so trajectory AIS runs staged
    updates with per-replica stage counts, several captured graphs): (1) a run resumed from a
    mid-training resume state ends where the uninterrupted run ends, to float32 rounding
    (1e-6, as the one-model fused resume tests of test_training.py: every replica's Philox
    keys, chain states, Adam moments and trajectory AIS are restored, the kernels are
    deterministic); (2) when replica 1's parameters hold a NaN in that resume state, it is
    dropped at the first update after the resume and replicas 0 and 2, re-stacked into an
    engine of two, end where the uninterrupted run ends (1e-6: at N = 21, M = 5 every padded
    reduction is one 64-wide block, so a launch over two replicas sums exactly as one over
    three, and each replica's random stream depends on its own key only)."""
    from spikerbm import kernels

    if not kernels.available("cuda"):
        pytest.skip("needs Triton")
    data, test = _data(4001), _data(1999, seed=5)
    cfg = _cfg(replicas=3, n_updates=120, n_checkpoints=6, n_chains=201, batch_size=201, k=5,
               lr=0.03, optimizer="adam", tais_chains=200, device="cuda", precision="bf16")
    states: list = []
    with caplog.at_level(logging.INFO, logger="spikerbm.training"):
        full = train(data, test_data=test, cfg=cfg, seed=3, on_checkpoint=states.append)
    assert "batched engine: 3 replicas" in caplog.text
    assert max(int(s["tais__n_stages"].max()) for s in states) > 1  # staged graphs ran
    mid = states[3]
    done = int(mid["n_updates_done"].values[0])
    assert 0 < done < cfg.n_updates and "chains__philox" in mid
    resumed = train(data, test_data=test, cfg=cfg, seed=3, resume=mid)
    for var in ("W", "a", "b", "log_z_tais", "ll_test_online"):
        np.testing.assert_allclose(resumed[var].values, full[var].values, rtol=0, atol=1e-6,
                                   err_msg=var)
    bad = mid.copy(deep=True)
    bad["W"].values[1, -1, 0, 0] = np.nan  # the current parameters of replica 1
    out = train(data, test_data=test, cfg=cfg, seed=3, resume=bad)
    assert out["diverged"].values.tolist() == [0, 1, 0]
    assert out["n_updates_done"].values.tolist() == [cfg.n_updates, done, cfg.n_updates]
    common = np.intersect1d(out["checkpoint"], full["checkpoint"])  # bests may differ
    assert out["eval_update"].values.tolist() == full["eval_update"].values.tolist()
    for r in (0, 2):
        for var in ("W", "a", "b", "log_z_tais", "ll_test_online"):
            got, want = (ds[var].sel(replica=r) for ds in (out, full))
            if "checkpoint" in got.dims:
                got, want = got.sel(checkpoint=common), want.sel(checkpoint=common)
            np.testing.assert_allclose(got.values, want.values, rtol=0, atol=1e-6,
                                       err_msg=f"replica {r}: {var}")
