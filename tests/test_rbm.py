"""rbm.py against brute-force enumeration of every (v, h) on tiny RBMs (distinct odd sizes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikerbm import rbm as R
from spikerbm.exact import binary_states

N, M = 7, 5  # distinct odd sizes: swapped axes fail


def all_states(n: int) -> torch.Tensor:
    return binary_states(n)


def random_rbm(n: int = N, m: int = M, seed: int = 0, scale: float = 1.0) -> R.RBM:
    g = torch.Generator().manual_seed(seed)
    return R.RBM(scale * torch.randn(n, m, generator=g, dtype=torch.float64),
                 0.5 * torch.randn(n, generator=g, dtype=torch.float64),
                 0.5 * torch.randn(m, generator=g, dtype=torch.float64))


def brute_energy(r: R.RBM, v: np.ndarray, h: np.ndarray) -> float:
    """E(v,h) = -sum_i a_i v_i - sum_mu b_mu h_mu - sum_{i,mu} v_i W_{i mu} h_mu, with loops."""
    W, a, b = (t.numpy() for t in (r.W, r.a, r.b))
    e = -sum(a[i] * v[i] for i in range(len(v))) - sum(b[m] * h[m] for m in range(len(h)))
    e -= sum(v[i] * W[i, m] * h[m] for i in range(len(v)) for m in range(len(h)))
    return float(e)


def test_energy_matches_loops():
    r = random_rbm()
    V, H = all_states(N), all_states(M)
    rng = np.random.default_rng(1)
    iv, ih = rng.integers(0, len(V), 40), rng.integers(0, len(H), 40)
    got = R.energy(r, V[iv], H[ih])
    want = [brute_energy(r, V[i].numpy(), H[j].numpy()) for i, j in zip(iv, ih, strict=True)]
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_free_energies_are_marginals_of_joint():
    """exp(-E(v)) = sum_h exp(-E(v,h)) and exp(-E(h)) = sum_v exp(-E(v,h)), over all states."""
    r = random_rbm(seed=2)
    V, H = all_states(N), all_states(M)
    Vg, Hg = V.repeat_interleave(len(H), 0), H.repeat(len(V), 1)
    joint = -R.energy(r, Vg, Hg).reshape(len(V), len(H))
    np.testing.assert_allclose(R.free_energy(r, V).numpy(),
                               -torch.logsumexp(joint, 1).numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(R.hidden_free_energy(r, H).numpy(),
                               -torch.logsumexp(joint, 0).numpy(), rtol=1e-12, atol=1e-12)


def test_conditionals_match_enumeration():
    """p(h_mu=1|v) and p(v_i=1|h) from the joint Boltzmann distribution, by enumeration."""
    r = random_rbm(seed=3)
    V, H = all_states(N), all_states(M)
    Vg, Hg = V.repeat_interleave(len(H), 0), H.repeat(len(V), 1)
    logp = (-R.energy(r, Vg, Hg)).reshape(len(V), len(H))
    p_h_given_v = torch.softmax(logp, dim=1)  # (2^N, 2^M)
    want_h = p_h_given_v @ H  # (2^N, M)
    np.testing.assert_allclose(R.hidden_probs(r, V).numpy(), want_h.numpy(), atol=1e-12)
    p_v_given_h = torch.softmax(logp, dim=0)
    want_v = p_v_given_h.T @ V  # (2^M, N)
    np.testing.assert_allclose(R.visible_probs(r, H).numpy(), want_v.numpy(), atol=1e-12)


def test_float32_rbm_energies_are_float64():
    r = random_rbm(seed=4).to(dtype=torch.float32)
    V = all_states(N)[:9].float()
    for e in (R.free_energy(r, V), R.energy(r, V, torch.ones(9, M))):
        assert e.dtype == torch.float64


def test_independent_site_log_z():
    a = torch.linspace(-2, 1, N, dtype=torch.float64)
    r = R.independent_site(a, M)
    log_z = torch.logsumexp(-R.free_energy(r, all_states(N)), 0).item()
    want = torch.nn.functional.softplus(a).sum().item() + M * np.log(2)
    assert log_z == pytest.approx(want, rel=1e-12)


def test_init_rbm_and_shape_errors():
    v_mean = torch.tensor([0.0, 0.2, 0.5, 1.0, 0.1, 0.3, 0.9])
    r = R.init_rbm(v_mean, n_hidden=M, weight_std=1e-4, generator=torch.Generator().manual_seed(0))
    assert r.W.shape == (N, M) and r.b.abs().max() == 0
    # logit(clamp(m, 1e-4, 1 - 1e-4)): finite at the clamp edges
    np.testing.assert_allclose(torch.sigmoid(r.a).numpy(), v_mean.clamp(1e-4, 1 - 1e-4).numpy(),
                               rtol=1e-4, atol=1e-6)
    assert 0 < r.W.std().item() < 1e-3
    with pytest.raises(ValueError, match="shapes disagree"):
        R.RBM(torch.zeros(N, M), torch.zeros(M), torch.zeros(M))
    with pytest.raises(ValueError, match="W must be 2-d"):
        R.RBM(torch.zeros(N), torch.zeros(N), torch.zeros(M))
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        R.resolve_device("gpu")


def test_check_rbm_dataset_accepts_replicas_with_nan_only_in_dropped_ones():
    import xarray as xr

    from spikerbm.rbm import check_rbm_dataset

    rng = np.random.default_rng(0)
    ds = xr.Dataset({"W": (("replica", "checkpoint", "neuron", "hidden"),
                           rng.normal(size=(3, 2, 5, 3)).astype(np.float32)),
                     "a": (("replica", "checkpoint", "neuron"), np.zeros((3, 2, 5), np.float32)),
                     "b": (("replica", "checkpoint", "hidden"), np.zeros((3, 2, 3), np.float32)),
                     "diverged": ("replica", np.array([0, 1, 0], np.int8))},
                    coords={"replica": [0, 1, 2], "checkpoint": [0, 10]})
    ds["W"].values[1, 1] = np.nan  # replica 1 blew up after update 0: allowed
    check_rbm_dataset(ds, n_visible=5)
    ds["W"].values[2, 1, 0, 0] = np.nan  # a live replica with NaN: corrupted
    with pytest.raises(ValueError, match=r"replica\(s\) \[2\] not marked diverged"):
        check_rbm_dataset(ds)
