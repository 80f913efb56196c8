"""Block Gibbs sampler: exact stationary distribution, determinism, no per-sweep allocations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from spikerbm import rbm as R
from spikerbm.sampling import PersistentChains, gibbs_sample

N, M, C = 7, 5, 4001  # odd distinct sizes; C chains


def all_states(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))


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
    chains = PersistentChains.random(n_chains=C, n_visible=N, n_hidden=M, generator=g)
    chains.sweep(r, generator=g, k=60)
    V = all_states(N)
    logp = -R.free_energy(r, V)
    p = torch.softmax(logp, 0).numpy()
    idx = (chains.v.numpy() @ (2 ** np.arange(N - 1, -1, -1))).astype(int)
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
    ch = PersistentChains(v0, n_hidden=M)
    g = torch.Generator().manual_seed(5)
    ch.sweep(r, generator=g, k=4)
    ch.sweep(r, generator=g, k=5)
    assert torch.equal(a, ch.v)
    assert set(torch.unique(a).tolist()) <= {0.0, 1.0}
    c = gibbs_sample(r, v0, k=9, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(a, c)


def test_sweep_allocates_nothing():
    """All state and buffers keep their storage across sweeps (in-place / out= only), and the
    sweep works for k=0 (no change)."""
    r = random_rbm(3)
    ch = PersistentChains.random(n_chains=13, n_visible=N, n_hidden=M,
                                 generator=torch.Generator().manual_seed(0))
    ptrs = {k: v.data_ptr() for k, v in vars(ch).items() if isinstance(v, torch.Tensor)}
    v_before = ch.v.clone()
    ch.sweep(r, generator=torch.Generator(), k=0)
    assert torch.equal(ch.v, v_before)
    ch.sweep(r, generator=torch.Generator().manual_seed(1), k=3)
    ch.hidden_means(r)
    assert {k: v.data_ptr() for k, v in vars(ch).items() if isinstance(v, torch.Tensor)} == ptrs
    # CPU allocator: no new tensor storage is created inside sweeps (profile memory events)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        ch.sweep(r, generator=torch.Generator().manual_seed(2), k=5)
    allocated = sum(e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0)
    assert allocated == 0, f"sweep allocated {allocated} bytes"


def test_errors_are_clear():
    r = random_rbm()
    ch = PersistentChains.random(n_chains=3, n_visible=N, n_hidden=M + 2,
                                 generator=torch.Generator())
    with pytest.raises(ValueError, match="does not match chains"):
        ch.sweep(r, generator=torch.Generator())
    ch = PersistentChains.random(n_chains=3, n_visible=N, n_hidden=M, generator=torch.Generator())
    with pytest.raises(ValueError, match="share dtype"):
        ch.sweep(r.to(dtype=torch.float64), generator=torch.Generator())
    with pytest.raises(ValueError, match="n_chains, n_visible"):
        PersistentChains(torch.zeros(N), n_hidden=M)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sampler_matches_exact_distribution():
    r = random_rbm().to("cuda")
    g = torch.Generator(device="cuda").manual_seed(1)
    chains = PersistentChains.random(n_chains=C, n_visible=N, n_hidden=M, generator=g)
    chains.sweep(r, generator=g, k=60, tf32=True)
    p = torch.softmax(-R.free_energy(r, all_states(N).cuda()), 0).cpu().numpy()
    idx = (chains.v.cpu().numpy() @ (2 ** np.arange(N - 1, -1, -1))).astype(int)
    emp = np.bincount(idx, minlength=2**N) / C
    assert 0.5 * np.abs(emp - p).sum() < 0.1
