"""Fused CUDA half-sweep kernels: exact stationary distribution, agreement with the float32
torch sampler at realistic sizes, determinism, and CUDA-graph replay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikerbm import kernels
from spikerbm import rbm as R
from spikerbm.exact import binary_states
from spikerbm.sampling import FusedChains, PersistentChains, Sampler

cuda = pytest.mark.skipif(not kernels.available("cuda"), reason="needs CUDA and Triton")
N, M = 7, 5


def tiny_rbm(seed: int = 0, device: str = "cuda") -> R.RBM:
    g = torch.Generator().manual_seed(seed)
    return R.RBM(torch.randn(N, M, generator=g), 0.5 * torch.randn(N, generator=g),
                 0.5 * torch.randn(M, generator=g)).to(device)


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
