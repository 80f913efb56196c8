"""Block Gibbs sampler: exact stationary distribution, determinism, no per-sweep allocations,
tempered sweeps, one interface and its state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikerbm import rbm as R
from spikerbm.exact import binary_states
from spikerbm.sampling import (
    Chains,
    PersistentChains,
    Sampler,
    gibbs_sample,
    random_states,
    stack_chains,
    unstack_chains,
)

N, M, C = 7, 5, 4001  # odd distinct sizes; C chains
CODE = 2 ** np.arange(N)  # integer code of a state in the order of exact.binary_states


def all_states(n: int) -> torch.Tensor:
    return binary_states(n, dtype=torch.float32)


def random_chains(n_chains: int, n_hidden: int, generator: torch.Generator,
                  tf32: bool = False) -> Chains:
    """Bernoulli(1/2) chains on the generator's device, their randomness from ``generator``."""
    v0 = random_states(n_chains=n_chains, n_visible=N, generator=generator)
    return Sampler(generator.device, tf32=tf32).chains(v0, n_hidden=n_hidden,
                                                       generator=generator)


def random_rbm(seed: int = 0) -> R.RBM:
    g = torch.Generator().manual_seed(seed)
    return R.RBM(torch.randn(N, M, generator=g), 0.5 * torch.randn(N, generator=g),
                 0.5 * torch.randn(M, generator=g))


def test_chains_reach_exact_distribution():
    """Histogram of C independent chains after 60 sweeps vs exact p(v) (enumeration of 2^7).

    The mixing time of this small model is a few sweeps, so after 60 the chains are independent
    exact samples; total variation of an empirical distribution over 128 states from 4001
    samples is ~ sqrt(128 / (2 pi C)) ~ 0.07 for exact sampling; a wrong conditional (e.g. W
    transposed, biases swapped) gives TV > 0.2. Chi-square checks the same with 5 sigma.
    """
    r = random_rbm()
    g = torch.Generator().manual_seed(1)
    chains = random_chains(C, M, g)
    chains.sweep(r, k=60)
    V = all_states(N)
    logp = -R.free_energy(r, V)
    p = torch.softmax(logp, 0).numpy()
    idx = (chains.v.numpy() @ CODE).astype(int)
    emp = np.bincount(idx, minlength=2**N) / C
    assert 0.5 * np.abs(emp - p).sum() < 0.1
    keep = p * C > 5
    chi2 = ((emp[keep] - p[keep]) ** 2 * C / p[keep]).sum()
    dof = keep.sum() - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof)
    # hidden layer of the last sweep is drawn from p(h|v): its mean matches the exact marginal
    ph_exact = (torch.from_numpy(p).float() @ R.hidden_probs(r, V)).numpy()
    # a Bernoulli mean over C chains has s.d. <= 0.5 / sqrt(C): 5 s.d. tolerance
    np.testing.assert_allclose(chains.h.mean(0).numpy(), ph_exact, atol=5 * 0.5 / np.sqrt(C))


def test_deterministic_given_generator_and_split_runs_agree():
    r = random_rbm(2)
    v0 = (torch.rand(11, N, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    a = gibbs_sample(r, v0, k=9, generator=torch.Generator().manual_seed(5))
    ch = PersistentChains(v0, n_hidden=M, generator=torch.Generator().manual_seed(5))
    ch.sweep(r, k=4)
    state = ch.state_dict()
    ch.sweep(r, k=5)
    assert torch.equal(a, ch.v)
    # a state dict (states + generator) continues identically in other chains
    other = PersistentChains(torch.zeros(11, N), n_hidden=M, generator=torch.Generator())
    other.load_state_dict(state)
    other.sweep(r, k=5)
    assert torch.equal(other.v, a)
    assert set(torch.unique(a).tolist()) <= {0.0, 1.0}
    c = gibbs_sample(r, v0, k=9, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(a, c)


def test_sweep_allocates_nothing():
    """All state and buffers keep their storage across sweeps (in-place / out= only), and the
    sweep works for k=0 (no change)."""
    r = random_rbm(3)
    ch = random_chains(13, M, torch.Generator().manual_seed(0))
    ptrs = {k: v.data_ptr() for k, v in vars(ch).items() if isinstance(v, torch.Tensor)}
    v_before = ch.v.clone()
    ch.sweep(r, k=0)
    assert torch.equal(ch.v, v_before)
    ch.sweep(r, k=3)
    ch.hidden_means(r)
    assert {k: v.data_ptr() for k, v in vars(ch).items() if isinstance(v, torch.Tensor)} == ptrs
    # CPU allocator: no new tensor storage is created inside sweeps (profile memory events)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        ch.sweep(r, k=5)
        ch.sweep(r, k=2, beta=0.5)
    allocated = sum(e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0)
    assert allocated == 0, f"sweep allocated {allocated} bytes"


def test_errors_are_clear():
    r = random_rbm()
    ch = random_chains(3, M + 2, torch.Generator())
    with pytest.raises(ValueError, match="does not match chains"):
        ch.sweep(r)
    ch = random_chains(3, M, torch.Generator())
    with pytest.raises(ValueError, match="share dtype"):
        ch.sweep(r.to(dtype=torch.float64))
    with pytest.raises(ValueError, match="n_chains, n_visible"):
        PersistentChains(torch.zeros(N), n_hidden=M, generator=torch.Generator())
    with pytest.raises(ValueError, match="chain state has"):
        ch.load_state_dict({"v": torch.zeros(4, N), "rng": torch.Generator().get_state()})
    with pytest.raises(ValueError, match="precision"):
        Sampler.from_precision("fp8", "cpu")


def test_tempered_sweeps_sample_the_ais_path():
    """At inverse temperature beta the chains sample (beta W, a, beta b) exactly (the AIS path
    p_0^(1-beta) p^beta): total variation against the exact distribution as in the first test
    (a sweep that tempered a, or forgot to temper b, is off by TV > 0.2 for this model); at
    beta = 0 one sweep gives exact independent-site samples."""
    r = random_rbm(4)
    for beta in (0.0, 0.4):
        g = torch.Generator().manual_seed(3)
        chains = random_chains(C, M, g)
        chains.sweep(r, k=40, beta=beta)
        tempered = R.RBM(beta * r.W, r.a, beta * r.b)
        p = torch.softmax(-R.free_energy(tempered, all_states(N)), 0).numpy()
        emp = np.bincount((chains.v.numpy() @ CODE).astype(int), minlength=2**N) / C
        assert 0.5 * np.abs(emp - p).sum() < 0.1, beta


def test_sampler_is_chosen_once_from_the_precision():
    """float32 and tf32 give library-product chains (TF32 only where it exists); bf16 falls
    back to them off CUDA, and every sampler's chains satisfy the one protocol."""
    assert Sampler.from_precision("float32", "cpu") == Sampler(torch.device("cpu"))
    assert Sampler.from_precision("tf32", "cpu").tf32
    bf16 = Sampler.from_precision("bf16", "cpu")
    assert not bf16.fused
    ch = bf16.chains(torch.zeros(3, N), n_hidden=M, generator=torch.Generator())
    assert isinstance(ch, Chains) and not ch.capturable
    u = ch.uniform()
    assert u.shape == (1,) and u.dtype == torch.float64 and 0 <= float(u) < 1
    with pytest.raises(ValueError, match="generator"):
        bf16.chains(torch.zeros(3, N), n_hidden=M)


def test_split_bf16_chains_follow_float32_chains(monkeypatch):
    """Split bfloat16 products (Sampler(split_bf16=True); on the CPU emulated in float32) are
    float32-accurate: with the same generators, replica and one-model chains run the very
    trajectories of float32 chains, at beta = 1 and tempered (a flip needs a uniform within
    ~1e-7 of a probability: expected ~1e-3 flips over these ~10^4 draws; a wrong layout, bias
    or beta changes the probabilities by O(0.1) and the states at once). W and W.T are split
    once per weight tensor and again after an in-place change (which a stale split would
    miss: W halved changes the chains), and contradictory settings fail in one line."""
    from spikerbm import sampling

    calls = []
    monkeypatch.setattr(sampling, "split_bf16",
                        lambda w, **kw: calls.append(w.shape) or R.split_bf16(w, **kw))
    models, batch, v0 = replica_setup()
    cpu = torch.device("cpu")
    for v, rbm in ((v0, batch), (v0[0], models[0])):
        rbm = rbm.clone()
        runs = []
        for split in (False, True):
            gens = [torch.Generator().manual_seed(70 + r) for r in range(3)]
            ch = Sampler(cpu, split_bf16=split).chains(
                v, n_hidden=M, generator=gens if v.ndim == 3 else gens[0])
            assert ch.split_bf16 is split
            calls.clear()
            ch.sweep(rbm, k=6)
            ch.sweep(rbm, k=3, beta=0.4)
            means = ch.hidden_means(rbm).clone()
            assert len(calls) == (2 * (rbm.n_replicas or 1) if split else 0)
            rbm.W.mul_(0.5)  # in place: the next sweep splits again
            ch.sweep(rbm, k=6)
            assert len(calls) == (4 * (rbm.n_replicas or 1) if split else 0)
            rbm.W.mul_(2.0)
            runs.append((ch.v.clone(), ch.h.clone(), means))
        (v32, h32, m32), (vs, hs, ms) = runs
        assert torch.equal(vs, v32) and torch.equal(hs, h32)
        torch.testing.assert_close(ms, m32, rtol=0, atol=1e-6)
    one = Sampler(cpu, split_bf16=True).chains(v0[0], n_hidden=M, generator=torch.Generator())
    assert stack_chains([one, one]).split_bf16
    with torch.inference_mode():  # no version counter: split at every call
        w_inf = models[0].W.clone()
    calls.clear()
    for _ in range(2):
        one.sweep(R.RBM(w_inf, models[0].a, models[0].b), k=2)
    assert len(calls) == 4
    with pytest.raises(ValueError, match="split_bf16 runs float32 products"):
        Sampler(cpu, tf32=True, split_bf16=True)
    with pytest.raises(ValueError, match="split_bf16 runs float32 products"):
        Sampler(cpu, dtype=torch.float64, split_bf16=True)
    with pytest.raises(ValueError, match="split_bf16 chains are float32"):
        PersistentChains(v0[0], n_hidden=M, generator=torch.Generator(), dtype=torch.float64,
                         split_bf16=True)


def replica_setup(n_rep: int = 3, n_chains: int = 13):
    models = [random_rbm(s) for s in range(5, 5 + n_rep)]
    v0 = (torch.rand(n_rep, n_chains, N, generator=torch.Generator().manual_seed(8)) < 0.5)
    return models, R.RBM.stack(models), v0.float()


def test_replicas_batched_equal_replicas_run_one_by_one():
    """Three different models sampled by one replica Chains object (one generator each) are
    bitwise the chains of each model sampled alone with the same seed: states, hidden states,
    hidden means and uniforms, at beta = 1 and tempered (CPU; the replicas' products run in
    turn with the one-model calls)."""
    models, batch, v0 = replica_setup()
    gens = [torch.Generator().manual_seed(40 + r) for r in range(3)]
    chains = Sampler(torch.device("cpu")).chains(v0, n_hidden=M, generator=gens)
    assert isinstance(chains, Chains) and chains.n_replicas == 3
    assert chains.v.shape == (3, 13, N) and chains.h.shape == (3, 13, M)
    chains.sweep(batch, k=5)
    chains.sweep(batch, k=3, beta=0.4)
    means = chains.hidden_means(batch).clone()
    u = chains.uniform(2)
    assert u.shape == (3, 2)
    for r, model in enumerate(models):
        one = Sampler(torch.device("cpu")).chains(
            v0[r], n_hidden=M, generator=torch.Generator().manual_seed(40 + r))
        assert one.n_replicas is None
        one.sweep(model, k=5)
        one.sweep(model, k=3, beta=0.4)
        assert torch.equal(chains.v[r], one.v) and torch.equal(chains.h[r], one.h)
        assert torch.equal(means[r], one.hidden_means(model))
        assert torch.equal(u[r], one.uniform(2))
    # different seeds give different chains (the replicas do not share randomness)
    assert not torch.equal(chains.v[0], chains.v[1])


def test_stacked_chains_continue_each_one_model_stream_and_go_back():
    """stack_chains over three one-model chains (already advanced) makes replica chains whose
    replica r continues chains r bitwise (its generator is shared, not copied);
    unstack_chains writes the states back, so each one-model object then holds (and its
    state dict carries) what it would hold had it been swept alone; mixed shapes are
    refused in one line."""
    models, batch, v0 = replica_setup()
    ones = [Sampler(torch.device("cpu")).chains(v0[r], n_hidden=M,
                                                generator=torch.Generator().manual_seed(60 + r))
            for r in range(3)]
    refs = [Sampler(torch.device("cpu")).chains(v0[r], n_hidden=M,
                                                generator=torch.Generator().manual_seed(60 + r))
            for r in range(3)]
    for one, ref, model in zip(ones, refs, models, strict=True):
        one.sweep(model, k=2)
        ref.sweep(model, k=6)
    stacked = stack_chains(ones)
    assert stacked.n_replicas == 3
    stacked.sweep(batch, k=4)
    unstack_chains(stacked, ones)
    for one, ref in zip(ones, refs, strict=True):
        assert torch.equal(one.v, ref.v)
        for key, value in ref.state_dict().items():
            assert torch.equal(one.state_dict()[key], value), key
    assert not torch.equal(ones[0].v, ones[1].v)
    with pytest.raises(ValueError, match="one-model chains of one kind and shape"):
        stack_chains([ones[0], random_chains(5, M, torch.Generator().manual_seed(1))])


def test_replica_state_round_trip_and_errors():
    """A replica state dict (states (R, C, N), generator states (R, S)) continues bitwise in
    other chains; mismatched replica counts fail with a clear message."""
    models, batch, v0 = replica_setup()
    chains = PersistentChains(v0, n_hidden=M,
                              generator=[torch.Generator().manual_seed(r) for r in range(3)])
    chains.sweep(batch, k=4)
    state = chains.state_dict()
    assert state["v"].shape == (3, 13, N) and state["v"].dtype == torch.uint8
    assert state["rng"].shape[0] == 3
    other = PersistentChains(torch.zeros(3, 13, N), n_hidden=M,
                             generator=[torch.Generator() for _ in range(3)])
    other.load_state_dict(state)
    chains.sweep(batch, k=5)
    other.sweep(batch, k=5)
    assert torch.equal(chains.v, other.v) and torch.equal(chains.h, other.h)
    with pytest.raises(ValueError, match="3 replicas need a sequence of 3 generators"):
        PersistentChains(v0, n_hidden=M, generator=torch.Generator())
    with pytest.raises(ValueError, match="3 replicas need a sequence of 3 generators"):
        PersistentChains(v0, n_hidden=M, generator=[torch.Generator()] * 2)
    with pytest.raises(ValueError, match="one model take one generator"):
        PersistentChains(v0[0], n_hidden=M, generator=[torch.Generator()])
    with pytest.raises(ValueError, match="of 3 replicas"):
        chains.sweep(models[0])
    with pytest.raises(ValueError, match="of one model"):
        PersistentChains(v0[0], n_hidden=M, generator=torch.Generator()).sweep(batch)
    with pytest.raises(ValueError, match="one state row each"):
        other.load_state_dict({"v": state["v"], "rng": state["rng"][:2]})
    with pytest.raises(ValueError, match="n_replicas, n_chains, n_visible"):
        PersistentChains(torch.zeros(2, 3, 4, N), n_hidden=M, generator=torch.Generator())
    with pytest.raises(ValueError, match="W must be 2-d"):
        R.RBM(torch.zeros(2, 2, N, M), torch.zeros(2, 2, N), torch.zeros(2, 2, M))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sampler_matches_exact_distribution():
    r = random_rbm().to("cuda")
    g = torch.Generator(device="cuda").manual_seed(1)
    chains = random_chains(C, M, g, tf32=True)
    chains.sweep(r, k=60)
    p = torch.softmax(-R.free_energy(r, all_states(N).cuda()), 0).cpu().numpy()
    idx = (chains.v.cpu().numpy() @ CODE).astype(int)
    emp = np.bincount(idx, minlength=2**N) / C
    assert 0.5 * np.abs(emp - p).sum() < 0.1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_split_chains_match_exact_distribution_and_allocate_nothing():
    """Split bfloat16 chains on the GPU (the AIS sampler there): the exact stationary
    distribution (TV and chi-square as in the first test), the same trajectories as float32
    chains (no TF32) with the same generator but for rare flips (a uniform within ~1e-7 of
    a probability; a wrong product changes most states), and no allocation in sweeps once
    the split of W is made (the CUDA caching allocator's allocation count)."""
    r = random_rbm().to("cuda")
    runs = {}
    for split in (False, True):
        g = torch.Generator(device="cuda").manual_seed(1)
        v0 = random_states(n_chains=C, n_visible=N, generator=g)
        chains = Sampler(torch.device("cuda"), split_bf16=split).chains(v0, n_hidden=M,
                                                                       generator=g)
        chains.sweep(r, k=2)
        chains.sweep(r, k=2, beta=0.5)
        chains.hidden_means(r)
        torch.cuda.synchronize()
        before = torch.cuda.memory_stats()["allocation.all.allocated"]
        chains.sweep(r, k=2, beta=0.5)
        chains.sweep(r, k=56)
        chains.hidden_means(r)
        torch.cuda.synchronize()
        assert torch.cuda.memory_stats()["allocation.all.allocated"] == before, split
        runs[split] = chains.v.clone()
    assert float((runs[True] != runs[False]).float().mean()) < 0.01
    chains_v = runs[True]
    p = torch.softmax(-R.free_energy(r, all_states(N).cuda()), 0).cpu().numpy()
    emp = np.bincount((chains_v.cpu().numpy() @ CODE).astype(int), minlength=2**N) / C
    assert 0.5 * np.abs(emp - p).sum() < 0.1
    keep = p * C > 5
    chi2 = ((emp[keep] - p[keep]) ** 2 * C / p[keep]).sum()
    dof = keep.sum() - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof)
