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


# ------------------------------------------------- split bfloat16 products (float32 accuracy)


def split_test_matrix(n: int, m: int, seed: int) -> torch.Tensor:
    """float32 (n, m) with both signs, zeros and magnitudes from 1e-35 to 1e30 (every
    exponent range a float32 weight can take short of bfloat16's overflow at 3.39e38),
    plus entries just above and below 2**-110 where the exact 3-term split ends."""
    g = torch.Generator().manual_seed(seed)
    mant = 1 + torch.rand(n, m, generator=g, dtype=torch.float64)
    expo = torch.randint(-116, 100, (n, m), generator=g).double()
    sign = torch.where(torch.rand(n, m, generator=g) < 0.5, -1.0, 1.0).double()
    w = (sign * mant * 2.0**expo).float()
    w[0, :] = 0.0
    w[1, :3] = torch.tensor([2.0**-110 * 1.37, -(2.0**-111) * 1.21, 3.3e38])
    return w


def test_split_bf16_reproduces_w_to_its_bound():
    """|W - sum(parts)| <= 2^(-8 n) |W| + 2^-133 for n = 1, 2, 3 terms (rbm.split_bf16 Notes;
    float64 arithmetic on the exact values, so the check itself adds no rounding); the 3-term
    split is exact for |W| >= 2^-110, and parts[-1] is W rounded to bfloat16. Odd distinct
    sizes, both layouts (W and the non-contiguous W.T)."""
    w = split_test_matrix(37, 23, seed=0)
    w64 = w.double()
    for n_terms in (1, 2, 3):
        for mat, ref in ((w, w64), (w.T, w64.T)):
            parts = R.split_bf16(mat, n_terms)
            assert parts.shape == (n_terms, *mat.shape) and parts.dtype == torch.bfloat16
            assert parts.is_contiguous() and torch.isfinite(parts.float()).all()
            assert torch.equal(parts[-1], mat.bfloat16())
            err = (ref - parts.double().sum(0)).abs()
            bound = 2.0 ** (-8 * n_terms) * ref.abs() + 2.0**-133
            assert (err <= bound).all(), float((err / bound).max())
            if n_terms < 3:  # the bound is attained to within a factor 4: a real bound
                assert float((err / bound).max()) > 0.25
    exact = R.split_bf16(w).double().sum(0)
    big = w64.abs() >= 2.0**-110
    assert torch.equal(exact[big], w64[big])
    assert big[1, 0] and not big[1, 1] and (exact[0] == 0).all()
    out = torch.empty(3, 37, 23, dtype=torch.bfloat16)
    assert R.split_bf16(w, out=out).data_ptr() == out.data_ptr()
    with pytest.raises(ValueError, match="n_terms"):
        R.split_bf16(w, 0)
    with pytest.raises(ValueError, match="floating matrix"):
        R.split_bf16(w[0])
    with pytest.raises(ValueError, match="out must be"):
        R.split_bf16(w, out=torch.empty(3, 23, 37, dtype=torch.bfloat16))


def test_binary_mm_equals_the_float32_product_to_float32_accuracy():
    """binary_mm(x, split_bf16(W)) against the float64 product x @ W (CPU: the bfloat16
    products emulated with float32 operands, the same values the tensor cores multiply).

    Two checks: (1) the operands binary_mm multiplies, [x | x | x] and the stacked parts, have
    exactly the product x @ W (in float64, which holds every partial sum of these 24-bit
    values exactly here: the check of the layout); (2) binary_mm's float32 result is within
    the float32 accumulation bound of its Notes, gamma_n (1 + 2^-6) sum_i x_i |W_ic| with n
    nonzero terms, and so is the transposed use binary_mm(h, split_bf16(W.T)) = h @ W.T."""
    g = torch.Generator().manual_seed(1)
    n, m, c = 101, 13, 11
    w = (0.3 * torch.randn(n, m, generator=g)).float()
    x = (torch.rand(c, n, generator=g) < 0.4).float()
    h = (torch.rand(c, m, generator=g) < 0.4).float()
    parts = R.split_bf16(w)
    x3 = x.unsqueeze(1).expand(c, 3, n).reshape(c, 3 * n)
    assert torch.equal(x3.double() @ parts.double().reshape(3 * n, m), x.double() @ w.double())
    u = 2.0**-24
    for xx, mat, ps in ((x, w, parts), (h, w.T, R.split_bf16(w.T))):
        out = torch.empty(c, mat.shape[1])
        buf = torch.empty(c, 3, mat.shape[0], dtype=torch.bfloat16)
        got = R.binary_mm(xx, ps, out=out, x_buf=buf)
        assert got.data_ptr() == out.data_ptr() and got.dtype == torch.float32
        exact = xx.double() @ mat.double()
        k = 3 * int(xx.sum(1).max())
        bound = k * u / (1 - k * u) * (1 + 2.0**-6) * (xx.double() @ mat.double().abs())
        assert ((got.double() - exact).abs() <= bound).all()
        assert torch.equal(R.binary_mm(xx, ps), got)  # buffers allocated when not given
    with pytest.raises(ValueError, match="binary_mm needs"):
        R.binary_mm(h, parts)
    assert not R.split_products_available("cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_split_products_are_as_precise_as_float32():
    """On the GPU (bfloat16 tensor cores, torch.mm with float32 output): the split product
    v @ W and h @ W.T of an anchor-like shape (odd sizes near Nv 1560, Nh 1024, W of a
    trained model's scale) against the float64 product. Its largest error must be within 4x
    the largest error of a float32 (no TF32) addmm on the same data: the worst-case bounds
    differ by the 3 terms (x2 for truncating tensor-core adds; rbm.binary_mm Notes), the
    typical errors by ~1. The test can fail: a product with bfloat16 output (what
    torch.matmul of two bfloat16 tensors returns) is ~10^3 times worse, asserted too."""
    dev = torch.device("cuda")
    assert R.split_products_available(dev)
    g = torch.Generator(device=dev).manual_seed(0)
    n, m, c = 1561, 1023, 2001
    w = 0.07 * torch.randn(n, m, generator=g, device=dev)
    for x, mat in (((torch.rand(c, n, generator=g, device=dev) < 0.3).float(), w),
                   ((torch.rand(c, m, generator=g, device=dev) < 0.3).float(), w.T)):
        exact = x.double() @ mat.double()
        with R.tf32_matmul(False):
            err32 = float((torch.mm(x, mat).double() - exact).abs().max())
        got = R.binary_mm(x, R.split_bf16(mat))
        assert got.dtype == torch.float32
        err = float((got.double() - exact).abs().max())
        bias = float((got.double() - exact).mean())  # shown: tensor cores may truncate
        assert 0 < err <= 4 * err32, (err, err32, bias)
        rounded = float((torch.mm(x.bfloat16(), R.split_bf16(mat)[-1]).double()
                         - exact).abs().max())
        assert rounded > 100 * err32, (rounded, err32)
