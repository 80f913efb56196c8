"""The one enumeration of binary states and the exact references built on it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_couplings import F64, random_rbm
from test_dynamics import N_VIS, tiny_rbm

from spikerbm import exact as E
from spikerbm.rbm import RBM, free_energy


def all_states(n: int) -> torch.Tensor:
    return E.binary_states(n)


def test_binary_states_enumerate_every_state_once_in_code_order():
    """Row x is the state with bits (x >> k) & 1: every state of {0,1}^n exactly once, chunks
    concatenate to the whole, parity is (-1)^popcount."""
    n = 5
    s = E.binary_states(n)
    assert s.shape == (32, n) and s.dtype == torch.float64
    assert {tuple(r) for r in s.int().tolist()} == set(itertools.product([0, 1], repeat=n))
    np.testing.assert_array_equal(s.numpy() @ (2 ** np.arange(n)), np.arange(32))
    assert torch.equal(torch.cat(list(E.state_chunks(n, 7))), s)
    assert torch.equal(E.binary_states(n, 3, 9), s[3:9])
    np.testing.assert_array_equal(E.parity(n).numpy(), (-1.0) ** s.sum(1).numpy())
    with pytest.raises(ValueError, match="chunk_size"):
        next(E.state_chunks(n, 0))


def test_walsh_inverse_reproduces_marginal_energy():
    rbm = random_rbm(9, 7, scale=0.8, seed=0)
    k = E.walsh_expansion(rbm)
    e = free_energy(rbm, all_states(9)).numpy()
    # float64 butterfly over 2^9 terms of size O(10): round-off ~1e-14
    np.testing.assert_allclose(E.walsh_energy(k), e, rtol=0, atol=1e-12)
    # and the expansion itself, evaluated term by term at a few states, gives E(v)
    s = 2 * all_states(9).numpy() - 1
    masks = np.arange(2**9)
    chi = np.prod(np.where((masks[:, None] >> np.arange(9)) & 1, s[[5, 300]][:, None, :], 1.0),
                  axis=-1)  # (2 states, 2^9 subsets)
    np.testing.assert_allclose(-(chi * k).sum(-1), e[[5, 300]], atol=1e-12)


def test_walsh_signs_on_closed_forms():
    # independent sites: E(v) = -a.v - M log 2 -> H_j = a_j / 2, no couplings
    n, m = 5, 3
    a = torch.tensor([0.3, -1.2, 2.0, 0.1, -0.7], dtype=F64)
    ind = RBM(torch.zeros(n, m, dtype=F64), a, torch.zeros(m, dtype=F64))
    ex = E.exact_couplings(ind)
    np.testing.assert_allclose(ex["H"], a.numpy() / 2, atol=1e-14)
    assert np.abs(ex["J"]).max() < 1e-14 and np.abs(ex["J3"]).max() < 1e-14
    # one hidden unit, two sites: J_12 = 1/4 [sp(b+W1+W2) - sp(b+W1) - sp(b+W2) + sp(b)]
    W = torch.tensor([[1.3], [-0.4]], dtype=F64)
    b = torch.tensor([-0.6], dtype=F64)
    two = RBM(W, torch.zeros(2, dtype=F64), b)
    sp = F.softplus
    want = 0.25 * float(sp(b + W[0] + W[1]) - sp(b + W[0]) - sp(b + W[1]) + sp(b))
    ex2 = E.exact_couplings(two)
    assert ex2["J"][0, 1] == pytest.approx(want, abs=1e-15)
    assert want > 0 or W[0, 0] * W[1, 0] < 0  # sign sanity: same-sign weights excite


def test_exact_transition_is_stochastic_and_stationary():
    W, a, b = tiny_rbm()
    states, t, pi = E.sweep_transition(W, a, b)
    assert t.shape == (2**N_VIS, 2**N_VIS)
    np.testing.assert_allclose(t.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(pi @ t, pi, atol=1e-12)
    with pytest.raises(ValueError, match="n_visible"):
        E.sweep_transition(np.zeros((13, 2)), np.zeros(13), np.zeros(2))
