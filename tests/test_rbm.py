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


# ------------------------------------------------------ free-energy difference (trajectory AIS)

EPS64 = float(np.finfo(np.float64).eps)


def stepped(r: R.RBM, *, seed: int, scale: float) -> R.RBM:
    """``r`` plus a random step of s.d. ``scale`` in every parameter."""
    g = torch.Generator().manual_seed(seed)
    return R.RBM(*(t + scale * torch.randn(t.shape, generator=g, dtype=t.dtype)
                   for t in (r.W, r.a, r.b)))


def test_free_energy_difference_equals_difference_of_free_energies():
    """E_now(v) - E_next(v) from the difference formula (docs/methods.md §4, "Increments")
    against the difference of two free energies, for every visible state of N = 7, M = 5, small
    and large steps; and against a float64 numpy reference with exact softplus
    (np.logaddexp(0, x): torch's softplus returns x itself above 20, off by up to 2e-9) at
    weights of s.d. 30 and steps of s.d. 50 (|x| and |d| up to ~300). Tolerance: the
    round-off of the reference, 16 eps (|E_now| + |E_next|): a missing term, a wrong sign or a
    swapped model is off by >= 1e-3 here."""
    V = all_states(N)
    for scale, step in ((1.0, 1e-3), (1.0, 1.0)):
        now = random_rbm(seed=5, scale=scale)
        nxt = stepped(now, seed=6, scale=step)
        e_now, e_next = R.free_energy(now, V), R.free_energy(nxt, V)
        got = R.free_energy_difference(now, nxt, V)
        assert got.dtype == torch.float64
        tol = 16 * EPS64 * (e_now.abs() + e_next.abs())
        assert torch.all((got - (e_now - e_next)).abs() <= tol)

    def exact_free_energy(r: R.RBM, v: np.ndarray) -> np.ndarray:
        W, a, b = (t.numpy() for t in (r.W, r.a, r.b))
        return -(v @ a) - np.logaddexp(0.0, b + v @ W).sum(-1)

    now = random_rbm(seed=7, scale=30.0)
    nxt = stepped(now, seed=8, scale=50.0)
    e_now, e_next = exact_free_energy(now, V.numpy()), exact_free_energy(nxt, V.numpy())
    got = R.free_energy_difference(now, nxt, V).numpy()
    assert np.abs(e_now - e_next).max() > 100  # the test reaches large |x| and |d|
    np.testing.assert_array_less(np.abs(got - (e_now - e_next)),
                                 16 * EPS64 * (np.abs(e_now) + np.abs(e_next)) + 1e-300)


def test_free_energy_difference_is_stable_for_extreme_fields_and_steps():
    """One hidden unit, one active visible unit: the increment is softplus(x + d) -
    softplus(x) with x = W_now, d = W_next - W_now, on a grid of x and d from -800 to 800,
    against 50-digit mpmath. Required: within 4 eps (|x| + |d| + 1) (float64 round-off of the
    log-of-a-sum form). The form log1p(sigmoid(x) expm1(d)) fails this: -inf at x = 40,
    d = -80 (sigmoid(40) rounds to 1, expm1(-80) to -1) and inf for d > 709."""
    import mpmath

    mpmath.mp.dps = 50
    grid = [-800.0, -40.0, -3.0, -1e-6, 0.0, 1e-6, 0.5, 40.0, 800.0]
    v = torch.ones(1, 1, dtype=torch.float64)
    zero = torch.zeros(1, dtype=torch.float64)
    for x in grid:
        for d in grid:
            now = R.RBM(torch.tensor([[x]], dtype=torch.float64), zero, zero)
            nxt = R.RBM(torch.tensor([[x + d]], dtype=torch.float64), zero, zero)
            got = float(R.free_energy_difference(now, nxt, v)[0])
            y = mpmath.mpf(float(nxt.W))  # x + d as represented in float64
            want = float(mpmath.log1p(mpmath.exp(y)) - mpmath.log1p(mpmath.exp(mpmath.mpf(x))))
            assert abs(got - want) <= 4 * EPS64 * (abs(x) + abs(d) + 1), (x, d, got, want)


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs CUDA")])])
def test_split_bf16_increment_within_its_rounding_bound(device):
    """The fused path's increment (split bfloat16 products, float32 accumulation; on the CPU
    as float32 products of the same bfloat16 values, since a CPU bf16 matmul rounds its
    output to bfloat16) against the float64 one, N = 301, M = 67, paper-like weights (s.d.
    0.1) and a training step of s.d. 1e-3, 401 states with 20 % of units active.

    Bound per state (rbm.py, "Precision policy"): each product entry is off by at most
    g (sum_i v_i |W_i mu|) with g = 2^-18 (the two-term split) + (n + 2) 2^-23 (float32
    accumulation of n = sum_i v_i terms and the sum of the two parts, Higham's gamma_n with
    2u per addition so that truncating tensor-core adders are covered too), and
    softplus(x + d) - softplus(x) moves by at most |e_d| + |d| |e_x| / 4 for errors e_x, e_d
    in x and d, so |split - float64| <= sum_mu g (S_dW + |d_mu| S_W / 4) with S_M = v @ |M|
    (observed on the CPU: at most 0.6 % of it, 2.3e-7 on increments of mean size 0.021). The
    bound is informative: rounding W and dW to one bfloat16 term (no lo part) exceeds it at
    34 % of the states."""
    g = torch.Generator().manual_seed(13)
    n, m, c = 301, 67, 401
    now = R.RBM(0.1 * torch.randn(n, m, generator=g),
                torch.logit(0.02 + 0.2 * torch.rand(n, generator=g)),
                -0.5 + 0.3 * torch.randn(m, generator=g))
    nxt = stepped(now, seed=14, scale=1e-3)
    v = (torch.rand(c, n, generator=g) < 0.2).float()
    now, nxt, v = now.to(device), nxt.to(device), v.to(device)
    exact = R.free_energy_difference(now, nxt, v)
    split = R.free_energy_difference(now, nxt, v, split_bf16=True)
    v64 = v.double()
    w64, dw64 = now.W.double(), nxt.W.double() - now.W.double()
    d = (nxt.b.double() - now.b.double()) + v64 @ dw64
    gam = 2.0 ** -18 + (v64.sum(1, keepdim=True) + 2) * 2.0 ** -23
    bound = (gam * (v64 @ dw64.abs() + d.abs() / 4 * (v64 @ w64.abs()))).sum(1) + 1e-13
    assert torch.all((split - exact).abs() <= bound), float(((split - exact).abs() / bound).max())
    assert float(bound.max()) < 1e-2 * float(exact.abs().mean())  # the bound is not vacuous
    # one bfloat16 term per matrix, in float64 (no accumulation error at all)
    x1 = now.b.double() + v64 @ now.W.bfloat16().double()
    d1 = (nxt.b.double() - now.b.double()) + v64 @ dw64.float().bfloat16().double()
    one_term = v64 @ (nxt.a.double() - now.a.double()) + torch.logaddexp(
        torch.nn.functional.logsigmoid(-x1), torch.nn.functional.logsigmoid(x1) + d1).sum(1)
    assert float(((one_term - exact).abs() > bound).float().mean()) > 0.2


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
