"""Fused half-sweep kernels: the exact Philox uniforms and Bernoulli test (Triton's CPU
interpreter), the exact stationary distribution per replica, replicas batched = replicas one by
one, agreement with the float32 torch sampler at realistic sizes, determinism, CUDA-graph
replay and state round trips.

The interpreter tests (marker ``interpreter``) need Triton (``pip install triton``; CPU torch
is enough) and run in a subprocess started with ``TRITON_INTERPRET=1``; the ``cuda`` tests need
a GPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from spikerbm import kernels
from spikerbm import rbm as R
from spikerbm.exact import binary_states
from spikerbm.sampling import FusedChains, PersistentChains, Sampler

cuda = pytest.mark.skipif(not kernels.available("cuda"), reason="needs CUDA and Triton")
N, M = 7, 5


def _interpreter_usable() -> str | None:
    """Why Triton's interpreter cannot run the kernels here (``None``: it can)."""
    if importlib.util.find_spec("triton") is None:
        return "needs Triton (pip install triton) for its CPU interpreter"
    import triton

    if (np.lib.NumpyVersion(np.__version__) >= "2.4.0"
            and tuple(int(x) for x in triton.__version__.split(".")[:2]) <= (3, 6)):
        # the interpreter converts 1-element arrays to int, an error since numpy 2.4
        return "Triton <= 3.6's interpreter needs numpy < 2.4 (triton-lang/triton#9171)"
    return None


#: Tests of the kernels' logic in Triton's CPU interpreter. Triton decides at import whether
#: its functions are interpreted, so these run in a process started with TRITON_INTERPRET=1:
#: ``TRITON_INTERPRET=1 pytest tests/test_kernels.py -m interpreter``, which
#: test_interpreter_tests_pass_in_a_subprocess below runs whenever Triton is importable.
interpreter = [pytest.mark.interpreter,
               pytest.mark.skipif(not kernels.interpreting() or _interpreter_usable() is not None,
                                  reason=str(_interpreter_usable() or "runs with "
                                             "TRITON_INTERPRET=1 (see the subprocess test)"))]


def with_interpreter(fn):
    for mark in interpreter:
        fn = mark(fn)
    return fn


@pytest.mark.skipif(kernels.interpreting() or _interpreter_usable() is not None,
                    reason=str(_interpreter_usable() or "already in the interpreter"))
def test_interpreter_tests_pass_in_a_subprocess():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-m", "interpreter",
                           "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]


def philox4x32(counter: np.ndarray, key: int, rounds: int = 10) -> tuple[np.ndarray, ...]:
    """Reference Philox-4x32 (Salmon et al. 2011) of the counters ``(counter, 0, 0, 0)`` with a
    64-bit key, in uint64 arithmetic; checked against Random123's known-answer vector below."""
    m32 = np.uint64(0xFFFFFFFF)
    c0 = np.asarray(counter, dtype=np.uint64) & m32
    c1, c2, c3 = (np.zeros_like(c0) for _ in range(3))
    k0, k1 = np.uint64(key & 0xFFFFFFFF), np.uint64((key >> 32) & 0xFFFFFFFF)
    for _ in range(rounds):
        p0, p2 = np.uint64(0xD2511F53) * c0, np.uint64(0xCD9E8D57) * c2  # < 2^64: exact
        c0, c1, c2, c3 = ((p2 >> np.uint64(32)) ^ c1 ^ k0, p2 & m32,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & m32)
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & m32, (k1 + np.uint64(0xBB67AE85)) & m32
    return c0, c1, c2, c3


def reference_uniforms(rows: int, nb: int, key: int, *, bits: int, rounds: int) -> np.ndarray:
    """The uniform of every entry (rows, nb) of one replica, as the kernel documents them:
    entry (i, j) takes Philox call ``i nb/n + j // n`` (n = 4 entries a call for 32 bits, 8
    for 16) and, within the call's tile of n columns, the word (and half) given below; a
    32-bit word's top 23 bits m give u = (2m + 1) 2^-24, a 16-bit half j gives
    u = (j + 1/2) 2^-16."""
    per = 32 // bits * 4
    i, j = np.meshgrid(np.arange(rows), np.arange(nb), indexing="ij")
    words = philox4x32(i * (nb // per) + j // per, key, rounds)
    if bits == 32:
        order = np.array([0, 2, 1, 3])  # tl.join(tl.join(r0, r1), tl.join(r2, r3)) reshaped
        w = np.choose(order[j % 4], words)
        return ((w >> np.uint64(9)).astype(np.float64) * 2 + 1) * 2.0**-24
    order = np.array([0, 0, 2, 2, 1, 1, 3, 3])
    w = np.choose(order[j % 8], words)
    half = np.where(j % 2 == 0, w & np.uint64(0xFFFF), w >> np.uint64(16))
    return (half.astype(np.float64) + 0.5) * 2.0**-16


def test_reference_philox_matches_random123_known_answer():
    """Random123's kat_vectors: philox4x32-10, counter 0, key 0 -> 6627e8d5 e169c58d
    bc57ac4c 9b00dbd8 (the reference used below is the published generator)."""
    out = [int(w[0]) for w in philox4x32(np.zeros(1), 0)]
    assert out == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


def padded_model(n_rep: int, n: int, m: int, rows: int, seed: int):
    """bf16 states/weights of ``n_rep`` replicas, zero-padded as the kernel wants them."""
    g = torch.Generator().manual_seed(seed)
    nv, nh = kernels.padded(n), kernels.padded(m)
    x = torch.zeros(n_rep, rows, nv, dtype=torch.bfloat16)
    x[:, :, :n] = (torch.rand(n_rep, rows, n, generator=g) < 0.3).to(torch.bfloat16)
    w = torch.zeros(n_rep, nv, nh, dtype=torch.bfloat16)
    w[:, :n, :m] = (0.5 * torch.randn(n_rep, n, m, generator=g)).to(torch.bfloat16)
    b = torch.randn(n_rep, m, generator=g)
    return x, w, b


@with_interpreter
@pytest.mark.parametrize("bits,rounds", [(32, 10), (16, 10), (32, 7)])
def test_kernel_draws_the_documented_philox_uniforms(bits, rounds):
    """Interpreted kernel vs an independent reference: for 3 replicas with their own keys,
    every sample equals [u < sigmoid(x)] with u the documented Philox uniform of that entry
    and key, and the stored probabilities equal float64 sigmoids. Entries whose u lies within
    2e-6 of p are skipped (float32 exp and rounding decide those: a handful of the
    420,000 entries): an off-by-one in the counter, the word order, the key of a replica, the
    bit extraction or the test direction flips about half of all entries."""
    n_rep, rows, n, m = 3, 1101, 70, 90  # odd sizes; rows span two tiles of the interpreter
    x, w, b = padded_model(n_rep, n, m, rows, seed=bits + rounds)
    nb = w.shape[2]
    keys = torch.tensor([2**40 + 7, 3, 2**62 - 5])
    out = torch.full((n_rep, rows, nb), 7.0, dtype=torch.bfloat16)
    prob = torch.empty(n_rep, rows, nb)
    kernels.half_sweep(x, w, b, out=out, prob=prob, seed=keys, seed_offset=11, rounds=rounds,
                       bits=bits)
    pad_b = torch.nn.functional.pad(b, (0, nb - m)).double()
    p = torch.sigmoid(x.double() @ w.double() + pad_b[:, None, :]).numpy()
    np.testing.assert_allclose(prob.numpy(), p, rtol=0, atol=2e-6)
    skipped = 0
    for r in range(n_rep):
        u = reference_uniforms(rows, nb, int(keys[r]) + 11, bits=bits, rounds=rounds)
        clear = np.abs(u - p[r]) > 2e-6
        skipped += int((~clear).sum())
        np.testing.assert_array_equal(out[r].float().numpy()[clear], (u < p[r])[clear])
    assert skipped < 20, skipped


@with_interpreter
def test_interpreted_replicas_batched_equal_replicas_one_by_one():
    """Fused replica chains (3 tiny models, one launch per half sweep) are bitwise the chains
    of each model run alone with the same Philox key (same arithmetic in the interpreter);
    the hidden means and the per-replica uniforms too; a state dict continues bitwise."""
    n_rep, c = 3, 37
    models = [tiny_rbm(s, device="cpu") for s in range(n_rep)]
    batch = R.RBM.stack(models)
    v0 = (torch.rand(n_rep, c, N, generator=torch.Generator().manual_seed(4)) < 0.5).float()
    seeds = [101, 2**45, 7]
    chains = FusedChains(v0, n_hidden=M, seed=seeds)
    assert chains.n_replicas == n_rep and chains.v.shape == (n_rep, c, N)
    chains.sweep(batch, k=3)
    chains.sweep(batch, k=2, beta=0.5)
    alone = []
    for r in range(n_rep):
        one = FusedChains(v0[r], n_hidden=M, seed=seeds[r])
        assert one.n_replicas is None
        one.sweep(models[r], k=3)
        one.sweep(models[r], k=2, beta=0.5)
        alone.append(one)
        assert torch.equal(chains.v[r], one.v) and torch.equal(chains.h[r], one.h)
    means = chains.hidden_means(batch)
    for r in range(n_rep):
        assert torch.equal(means[r], alone[r].hidden_means(models[r]))
    u = chains.uniform(2)
    assert u.shape == (n_rep, 2)
    for r, a in enumerate(alone):
        assert torch.equal(u[r], a.uniform(2))
    state = chains.state_dict()
    assert state["v"].shape == (n_rep, c, N) and state["philox"].shape == (n_rep,)
    other = FusedChains(torch.zeros(n_rep, c, N), n_hidden=M, seed=[0, 0, 0])
    other.load_state_dict(state)
    chains.sweep(batch, k=2)
    other.sweep(batch, k=2)
    assert torch.equal(chains.v, other.v)
    with pytest.raises(ValueError, match="one per replica"):
        other.load_state_dict({"v": state["v"], "philox": state["philox"][:2]})
    with pytest.raises(ValueError, match="3 replicas need a sequence of 3 seeds"):
        FusedChains(v0, n_hidden=M, seed=5)
    with pytest.raises(ValueError, match="does not match chains"):
        chains.sweep(models[0])


@with_interpreter
def test_interpreted_replica_chains_reach_each_exact_distribution():
    """Two different tiny models swept together (one launch per half sweep): each replica's
    histogram of 4001 chains after 25 sweeps matches its own exact p(v) (chi-square, 5 sigma;
    a kernel that mixed up the replicas' weights, biases or keys fails by far: the two models'
    distributions differ by a chi-square of thousands at this size)."""
    c, models = 4001, [tiny_rbm(11, device="cpu"), tiny_rbm(12, device="cpu")]
    v0 = (torch.rand(2, c, N, generator=torch.Generator().manual_seed(5)) < 0.5).float()
    chains = FusedChains(v0, n_hidden=M, seed=[3, 4])
    chains.sweep(R.RBM.stack(models), k=25)
    for r, model in enumerate(models):
        chi2, dof = chi_square(chains.v[r], model)
        assert chi2 < dof + 5 * np.sqrt(2 * dof), (r, chi2, dof)
        other, _ = chi_square(chains.v[r], models[1 - r])
        assert other > dof + 10 * np.sqrt(2 * dof), (r, other)


@with_interpreter
def test_interpreted_batched_training_engine_equals_replicas_in_turn(monkeypatch):
    """The batched training engine on fused chains (the path ``train.replicas`` takes on
    CUDA; here eagerly, since graph capture needs CUDA): replica chains stacked from each
    replica's one-model fused chains (Philox keys copied on the device), one launch per half
    sweep for both replicas, per-replica fused trajectory AIS, keys and states written back.
    Model and every resume state (the Philox keys included) are bitwise those of the replicas
    in turn (each its own one-model engine), and a batched run resumed from a mid-run state
    ends the same."""
    from spikerbm.training import TrainConfig, train

    monkeypatch.setattr(Sampler, "from_precision",
                        classmethod(lambda cls, precision, device: cls(torch.device("cpu"),
                                                                       fused=True)))
    monkeypatch.setattr(FusedChains, "capturable", False)  # eager updates: no CUDA graph
    g = np.random.default_rng(0)
    data = (g.random((101, N)) < 0.3).astype(np.uint8)
    test = (g.random((60, N)) < 0.3).astype(np.uint8)
    cfg = TrainConfig(n_hidden=M, n_updates=6, n_checkpoints=3, n_chains=31, batch_size=17,
                      k=1, lr=0.05, optimizer="sgd", lr_final=1.0, decay_start=0.0,
                      weight_std=0.1, tais_chains=20, eval_every=3, patience=0,
                      replicas=2, device="cpu", precision="bf16")
    runs = {}
    for batched in (False, True):
        states: list = []
        runs[batched] = train(data, test_data=test, cfg=cfg, seed=3,
                              on_checkpoint=states.append, batched=batched), states
    (turn, turn_states), (together, together_states) = runs[False], runs[True]
    assert "chains__philox" in together_states[-1] and "tais__philox" in together_states[-1]
    assert together.identical(turn)
    assert len(together_states) == len(turn_states)
    assert all(a.identical(b) for a, b in zip(together_states, turn_states, strict=True))
    again = train(data, test_data=test, cfg=cfg, seed=3, resume=together_states[1],
                  batched=True)
    assert again.identical(together)
    assert not np.array_equal(together["W"].values[0, -1], together["W"].values[1, -1])


def chi_square(v: torch.Tensor, model: R.RBM) -> tuple[float, int]:
    """Chi-square of the histogram of the states ``v`` (C, N) against the exact p(v) of
    ``model`` over the cells with >= 5 expected counts, and its degrees of freedom."""
    c = v.shape[0]
    states = binary_states(N, dtype=torch.float64)
    p = torch.softmax(-R.free_energy(model.to("cpu"), states), 0).numpy()
    emp = np.bincount((v.float().cpu().numpy() @ (2 ** np.arange(N))).astype(int),
                      minlength=2**N) / c
    keep = p * c > 5
    return float(((emp[keep] - p[keep]) ** 2 * c / p[keep]).sum()), int(keep.sum() - 1)


def tiny_rbm(seed: int = 0, device: str = "cuda") -> R.RBM:
    g = torch.Generator().manual_seed(seed)
    return R.RBM(torch.randn(N, M, generator=g), 0.5 * torch.randn(N, generator=g),
                 0.5 * torch.randn(M, generator=g)).to(device)


@pytest.mark.skipif(kernels.interpreting(), reason="the interpreter runs fused chains on CPU")
def test_fused_chains_refuse_cpu_with_a_clear_error():
    with pytest.raises(RuntimeError, match="PersistentChains"):
        FusedChains(torch.zeros(3, N), n_hidden=M, seed=0)
    assert not kernels.available("cpu")
    assert kernels.padded(1) == kernels.padded(64) == 64 and kernels.padded(65) == 128


@pytest.mark.cuda
@cuda
def test_fused_sampler_matches_exact_distribution():
    """40001 independent chains after 60 sweeps vs exact p(v) by enumeration of 2^7 states.

    Chi-square with 5 sigma over the cells with >= 5 expected counts. The bf16 rounding of W
    (relative 2^-9, |W| ~ 1 here) moves log p(v) by < 0.02, i.e. a chi-square shift
    C * sum (dp)^2 / p < 2, far inside the 5-sigma band (~ 80): the test sees sampling errors
    (wrong conditional, transposed W, swapped biases, a broken RNG) that shift it by >> 100.
    """
    C = 40001
    r = tiny_rbm()
    v0 = (torch.rand(C, N, generator=torch.Generator().manual_seed(1)) < 0.5).float().cuda()
    ch = FusedChains(v0, n_hidden=M, seed=12345)
    ch.sweep(r, k=60)
    V = binary_states(N, dtype=torch.float32, device="cuda")
    p = torch.softmax(-R.free_energy(r, V), 0).cpu().numpy()
    idx = (ch.v.float().cpu().numpy() @ (2 ** np.arange(N))).astype(int)
    emp = np.bincount(idx, minlength=2**N) / C
    keep = p * C > 5
    chi2 = ((emp[keep] - p[keep]) ** 2 * C / p[keep]).sum()
    dof = keep.sum() - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)
    # the hidden states of the last sweep follow p(h|v): mean within 5 s.d. of the exact one
    ph = (torch.from_numpy(p).float().cuda() @ R.hidden_probs(r, V)).cpu().numpy()
    np.testing.assert_allclose(ch.h.float().mean(0).cpu().numpy(), ph, atol=5 * 0.5 / C**0.5)
    # hidden means equal p(h|v) in float32: bf16 W (|W| < 3, 7 terms) moves the logit by
    # < 7 * 3 * 2^-9 = 0.04, so the probability by < 0.01
    ref = R.hidden_probs(r, ch.v.float()).cpu().numpy()
    np.testing.assert_allclose(ch.hidden_means(r).cpu().numpy(), ref, atol=1e-2)


@pytest.mark.cuda
@cuda
def test_bf16_fused_sampling_statistics_equal_float32_torch_sampling():
    """A realistic RBM (N=301, M=67, weights s.d. 0.15, sparse rates ~ 0.1): means of v and h
    and the covariance of v from 4001 chains of the bf16 fused sampler equal those of the
    float32 torch sampler within 5 combined standard errors of two independent estimates
    (chains are independent after the 200-sweep burn-in; s.e. from the chain spread)."""
    n, m, c = 301, 67, 4001
    g = torch.Generator().manual_seed(3)
    r = R.RBM(0.15 * torch.randn(n, m, generator=g), -2.0 + 0.3 * torch.randn(n, generator=g),
              0.2 * torch.randn(m, generator=g)).to("cuda")
    v0 = (torch.rand(c, n, generator=g) < 0.1).float().cuda()
    fused = FusedChains(v0, n_hidden=m, seed=7)
    fused.sweep(r, k=200)
    ref = PersistentChains(v0, n_hidden=m, generator=torch.Generator(device="cuda").manual_seed(8))
    ref.sweep(r, k=200)
    for a, b in ((fused.v.float(), ref.v), (fused.h.float(), ref.h)):
        se = torch.sqrt((a.var(0) + b.var(0)) / c).clamp_min(1e-3)
        z = ((a.mean(0) - b.mean(0)) / se).abs().max().item()
        assert z < 5.5, z  # max over <= 301 units of |z|: P(> 5.5) ~ 1e-5 per test
    ca, cb = torch.cov(fused.v.float().T), torch.cov(ref.v.T)
    off = ~torch.eye(n, dtype=torch.bool, device="cuda")
    # s.e. of a covariance estimate ~ sqrt(var_i var_j / c); mean |difference| / s.e. of
    # two independent estimates is sqrt(2) * sqrt(2/pi) ~ 1.13 when both sample one law
    se = torch.sqrt(torch.outer(ca.diag(), ca.diag()) / c) * 2**0.5
    ratio = ((ca - cb).abs()[off] / se[off].clamp_min(1e-6)).mean().item()
    assert ratio < 1.3, ratio


@pytest.mark.cuda
@cuda
def test_fused_sweeps_are_deterministic_and_graph_replay_matches_eager():
    r = tiny_rbm(2)
    v0 = (torch.rand(11, N, generator=torch.Generator().manual_seed(0)) < 0.5).float().cuda()
    a = FusedChains(v0, n_hidden=M, seed=5)
    a.sweep(r, k=9)
    b = FusedChains(v0, n_hidden=M, seed=5)
    b.sweep(r, k=4)
    b.sweep(r, k=5)  # different key layout: same law, other draws
    c = FusedChains(v0, n_hidden=M, seed=5)
    c.sweep(r, k=9)
    assert torch.equal(a.v, c.v) and int(a.seed) == 5 + 18
    assert set(torch.unique(a.v.float()).tolist()) <= {0.0, 1.0}
    # a CUDA graph of 3 sweeps replayed twice equals 2 eager calls of 3 sweeps
    eager = FusedChains(v0, n_hidden=M, seed=99)
    graphed = FusedChains(v0, n_hidden=M, seed=99)
    eager.sweep(r, k=3)
    eager.sweep(r, k=3)
    FusedChains(v0, n_hidden=M, seed=0).sweep(r, k=1)  # compile and autotune before capture
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        graphed.sweep(r, k=3)
    g.replay()
    g.replay()
    torch.cuda.synchronize()
    assert torch.equal(eager.v, graphed.v) and int(graphed.seed) == int(eager.seed)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("n_visible", [64, 77, 301])
def test_hidden_means_equal_float32_products_for_every_padded_width(n_visible):
    """The kernel has no mask along the reduction: every reduction width (64, 128 and 320
    after padding; tiles of BLOCK_K 64 and 128 are autotuned) must give p(h|v) of the float32
    product. bf16 W (|W| <= 0.1 * 4 s.d.) moves a logit by at most sum_i |W_i| 2^-9 < 0.08
    for 301 inputs, so the probability by < 0.02; reading past the buffer moves it by O(1)."""
    m = 67
    g = torch.Generator().manual_seed(n_visible)
    r = R.RBM(0.1 * torch.randn(n_visible, m, generator=g), torch.zeros(n_visible),
              0.1 * torch.randn(m, generator=g)).to("cuda")
    v = (torch.rand(203, n_visible, generator=g) < 0.3).float().cuda()
    ch = FusedChains(v, n_hidden=m, seed=0)
    ch.load(r)
    np.testing.assert_allclose(ch.hidden_means(r).cpu().numpy(),
                               R.hidden_probs(r, v).cpu().numpy(), atol=0.02)


@pytest.mark.cuda
@cuda
def test_fused_tempered_sweeps_and_state_round_trip():
    """At beta = 0.4 the fused chains sample (beta W, a, beta b) exactly (chi-square as in the
    first test; a sweep that tempered a or forgot b fails by far), hidden_means afterwards is
    at beta = 1, and a state dict (states + Philox key) continues bitwise identically; the
    bf16 sampler is what Sampler.from_precision("bf16", "cuda") builds."""
    C, beta = 40001, 0.4
    r = tiny_rbm(5)
    v0 = (torch.rand(C, N, generator=torch.Generator().manual_seed(2)) < 0.5).float().cuda()
    sampler = Sampler.from_precision("bf16", "cuda")
    assert sampler.fused
    ch = sampler.chains(v0, n_hidden=M, seed=77)
    assert isinstance(ch, FusedChains) and ch.capturable
    ch.sweep(r, k=60, beta=beta)
    tempered = R.RBM(beta * r.W, r.a, beta * r.b)
    p = torch.softmax(-R.free_energy(tempered, binary_states(N, device="cuda")), 0).cpu().numpy()
    emp = np.bincount((ch.v.float().cpu().numpy() @ (2 ** np.arange(N))).astype(int),
                      minlength=2**N) / C
    keep = p * C > 5
    chi2 = ((emp[keep] - p[keep]) ** 2 * C / p[keep]).sum()
    dof = keep.sum() - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof), (chi2, dof)
    ref = R.hidden_probs(r, ch.v.float()).cpu().numpy()
    np.testing.assert_allclose(ch.hidden_means(r).cpu().numpy(), ref, atol=1e-2)
    state = ch.state_dict()
    other = sampler.chains(torch.zeros(C, N, device="cuda"), n_hidden=M, seed=0)
    other.load_state_dict(state)
    ch.sweep(r, k=3)
    other.sweep(r, k=3)
    assert torch.equal(ch.v, other.v)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("bits,rounds", [(32, 10), (16, 10), (32, 7)])
def test_fused_replicas_sample_each_exact_distribution(monkeypatch, bits, rounds):
    """Three different tiny models swept by one launch per half sweep, 40001 chains each, 60
    sweeps: each replica's histogram matches its own exact p(v) (chi-square, 5 sigma, as in
    the one-model test) and not its neighbour's; for the default uniforms and for the two
    benchmarked variants (16-bit uniforms: probabilities off by <= 2^-17, a chi-square shift
    of C sum 2^-34 / p < 1e-3 here; Philox-7)."""
    monkeypatch.setattr(kernels, "UNIFORM_BITS", bits)
    monkeypatch.setattr(kernels, "PHILOX_ROUNDS", rounds)
    c, models = 40001, [tiny_rbm(s) for s in (20, 21, 22)]
    v0 = (torch.rand(3, c, N, generator=torch.Generator().manual_seed(9)) < 0.5).float().cuda()
    chains = Sampler.from_precision("bf16", "cuda").chains(v0, n_hidden=M, seed=[1, 2, 3])
    assert isinstance(chains, FusedChains) and chains.n_replicas == 3
    chains.sweep(R.RBM.stack(models), k=60)
    for r, model in enumerate(models):
        chi2, dof = chi_square(chains.v[r], model)
        assert chi2 < dof + 5 * np.sqrt(2 * dof), (r, chi2, dof)
        other, _ = chi_square(chains.v[r], models[(r + 1) % 3])
        assert other > dof + 10 * np.sqrt(2 * dof), (r, other)


@pytest.mark.cuda
@cuda
def test_fused_replicas_batched_equal_one_by_one_and_float32_sampling():
    """Realistic replicas (N=301, M=67, three weight draws): (1) after one sweep from the same
    states with the same keys, a replica swept in the batch and the same model swept alone
    agree on all but a few entries (the random stream is the same; only the float32 summation
    order of differently autotuned tiles can flip an entry whose u is within ~1e-6 of p: a
    fraction ~1e-5; a replica that read another's key or weights differs on ~30 %); (2) after
    200 sweeps the batch's means of v and h equal those of the float32 torch sampler run on
    each model with its own generator, within 5.5 standard errors (as the one-model test)."""
    n, m, c, n_rep = 301, 67, 4001, 3
    g = torch.Generator().manual_seed(3)
    models = [R.RBM(0.15 * torch.randn(n, m, generator=g),
                    -2.0 + 0.3 * torch.randn(n, generator=g),
                    0.2 * torch.randn(m, generator=g)).to("cuda") for _ in range(n_rep)]
    batch = R.RBM.stack(models)
    v0 = (torch.rand(n_rep, c, n, generator=g) < 0.1).float().cuda()
    seeds = [17, 2**50 + 3, 99]
    chains = FusedChains(v0, n_hidden=m, seed=seeds)
    chains.sweep(batch, k=1)
    for r in range(n_rep):
        one = FusedChains(v0[r], n_hidden=m, seed=seeds[r])
        one.sweep(models[r], k=1)
        assert (one.h != chains.h[r]).float().mean().item() < 1e-3
        assert (one.v != chains.v[r]).float().mean().item() < 1e-3
    chains.sweep(batch, k=199)
    for r in range(n_rep):
        ref = PersistentChains(v0[r], n_hidden=m,
                               generator=torch.Generator(device="cuda").manual_seed(50 + r))
        ref.sweep(models[r], k=200)
        for a, b in ((chains.v[r].float(), ref.v), (chains.h[r].float(), ref.h)):
            se = torch.sqrt((a.var(0) + b.var(0)) / c).clamp_min(1e-3)
            z = ((a.mean(0) - b.mean(0)) / se).abs().max().item()
            assert z < 5.5, (r, z)


@pytest.mark.cuda
@cuda
def test_fused_replica_graph_replay_independent_keys_and_state_round_trip():
    """A CUDA graph of 3 batched sweeps replayed twice equals 2 eager calls; a state dict
    continues bitwise; two replicas of the same model from the same states but with different
    keys decorrelate: after 60 sweeps (this model mixes in a few) the correlation of their
    chain-by-chain fluctuations (each unit's mean removed) is below 5/sqrt(n), as for
    independent streams (shared keys would give 1)."""
    c, r_same = 2001, tiny_rbm(7)
    batch = R.RBM.stack([r_same, r_same])
    v0 = (torch.rand(c, N, generator=torch.Generator().manual_seed(1)) < 0.5).float().cuda()
    v0 = torch.stack([v0, v0])
    eager = FusedChains(v0, n_hidden=M, seed=[5, 6])
    graphed = FusedChains(v0, n_hidden=M, seed=[5, 6])
    eager.sweep(batch, k=3)
    eager.sweep(batch, k=3)
    FusedChains(v0, n_hidden=M, seed=[0, 1]).sweep(batch, k=1)  # compile and autotune first
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        graphed.sweep(batch, k=3)
    g.replay()
    g.replay()
    torch.cuda.synchronize()
    assert torch.equal(eager.v, graphed.v) and torch.equal(eager.seed, graphed.seed)
    state = eager.state_dict()
    other = FusedChains(torch.zeros_like(v0), n_hidden=M, seed=[0, 0])
    other.load_state_dict(state)
    eager.sweep(batch, k=4)
    other.sweep(batch, k=4)
    assert torch.equal(eager.v, other.v) and torch.equal(eager.h, other.h)
    eager.sweep(batch, k=54)
    a, b = (x.float() - x.float().mean(0) for x in eager.v)
    corr = ((a * b).sum() / (a.norm() * b.norm())).item()
    assert abs(corr) < 5 / a.numel() ** 0.5, corr
