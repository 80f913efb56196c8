"""Effective couplings (spikerbm.couplings): exact Walsh reference, Gaussian formulas, spectral
3-body stream, area statistics, ground truth and the couplings.nc assembly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
from matplotlib.figure import Figure

from spikerbm import couplings as C
from spikerbm import exact as E
from spikerbm import io
from spikerbm.areas import area_matrix
from spikerbm.exact import binary_states
from spikerbm.rbm import RBM, free_energy

F64 = torch.float64


def random_rbm(n: int, m: int, *, scale: float, seed: int, bias: float = 0.5) -> RBM:
    g = torch.Generator().manual_seed(seed)
    return RBM(scale * torch.randn(n, m, generator=g, dtype=F64),
               bias * torch.randn(n, generator=g, dtype=F64),
               bias * torch.randn(m, generator=g, dtype=F64))


def all_states(n: int) -> torch.Tensor:
    return binary_states(n)


# ------------------------------------------------------------------ exact Walsh reference


# ------------------------------------------------------------------ Gaussian formulas vs exact


@pytest.mark.parametrize(
    ("n", "tol_h", "tol_j", "tol_j3"),
    # measured max relative errors (3 seeds) at n=6: 5e-3, 1.1e-2, 5.7e-2; n=14: 8e-4, 6.6e-3,
    # 2.2e-2 (the Gaussian approximation of the input from the other sites improves with n, as
    # a central-limit approximation should); tolerances are ~1.5-2x the measured values
    [(6, 1e-2, 2e-2, 1e-1), (14, 2e-3, 1e-2, 4e-2)],
)
def test_gaussian_formulas_match_exact_expansion(n, tol_h, tol_j, tol_j3):
    errs = []
    for seed in range(3):
        # width s_mu ~ 1 at every n (weights ~ 2/sqrt(n)), the regime of trained models
        rbm = random_rbm(n, 9, scale=2.0 / math.sqrt(n), seed=100 + seed)
        ex = E.exact_couplings(rbm)
        H = C.fields(rbm).numpy()
        J = C.pair_couplings(rbm).numpy()
        tr = C.sample_triplets(n, 10**6, seed=0)
        J3 = C.triplet_couplings(rbm, tr).numpy()
        J3e = ex["J3"][tuple(tr.T)]
        errs.append([np.abs(H - ex["H"]).max() / np.abs(ex["H"]).max(),
                     np.abs(J - ex["J"]).max() / np.abs(ex["J"]).max(),
                     np.abs(J3 - J3e).max() / np.abs(J3e).max()])
        assert C.pearson(J.ravel(), ex["J"].ravel()) > 0.999
    worst = np.max(errs, axis=0)
    assert worst[0] < tol_h and worst[1] < tol_j and worst[2] < tol_j3, worst


def test_methods_reference_case_n14_m40():
    # docs/methods.md §6 check: N=14, M=40, 40 nodes -> r = 1.0000 and small absolute differences
    rbm = random_rbm(14, 40, scale=0.3, seed=7)
    ex = E.exact_couplings(rbm)
    J = C.pair_couplings(rbm, n_nodes=40).numpy()
    iu = np.triu_indices(14, 1)
    assert C.pearson(J[iu], ex["J"][iu]) > 0.9999
    assert np.abs(J - ex["J"]).max() < 2e-4  # measured 7e-5 with these weights


def test_gauss_hermite_convergence_justifies_default():
    # widths up to s ~ 2 and c ~ -2 +- 1 (a trained model's range); reference: 200 nodes
    rbm = random_rbm(30, 11, scale=0.6, seed=3, bias=1.0)
    rbm = RBM(rbm.W, rbm.a, rbm.b - 2.0)
    ref = C.pair_couplings(rbm, n_nodes=200)
    scale = float(ref.abs().max())
    err = {q: float((C.pair_couplings(rbm, n_nodes=q) - ref).abs().max()) / scale
           for q in (5, 10, 20, 40)}
    # geometric convergence: measured 9e-3, 2e-4, 5e-6, 8e-9
    assert err[5] > err[10] > err[20] > err[40]
    assert err[40] < 1e-6, err  # default 40 nodes: far below the Gaussian-approx. error (~1e-2)
    assert err[5] > 1e-4  # the test can tell a poor rule
    # the spectral form is exact to round-off against the converged quadrature
    spec = C.pair_couplings_spectral(rbm)
    assert float((spec - ref).abs().max()) / scale < 1e-11
    hf = C.fields(rbm, n_nodes=40) - C.fields(rbm, n_nodes=200)
    assert float(hf.abs().max()) < 1e-6


def test_spectral_triplets_equal_quadrature_and_tolerance_knob():
    rbm = random_rbm(11, 13, scale=0.7, seed=5)
    tr = C.sample_triplets(11, 60, seed=1)
    ref = C.triplet_couplings_quadrature(rbm, tr, n_nodes=150)
    scale = float(ref.abs().max())
    tight = C.triplet_couplings(rbm, tr, log_tol=34.0)
    loose = C.triplet_couplings(rbm, tr, log_tol=3.0)
    assert float((tight - ref).abs().max()) / scale < 1e-10
    assert float((loose - ref).abs().max()) / scale > 1e-6  # a coarse step does alias
    # triplet order does not matter
    perm = C.triplet_couplings(rbm, tr[:, [2, 0, 1]])
    np.testing.assert_allclose(perm.numpy(), tight.numpy(), rtol=0, atol=1e-15)


def test_pair_chunking_does_not_change_result():
    rbm = random_rbm(17, 5, scale=0.5, seed=2)
    big = C.pair_couplings(rbm, n_nodes=12)
    small = C.pair_couplings(rbm, n_nodes=12, memory_budget_bytes=1)  # one row per chunk
    torch.testing.assert_close(big, small, rtol=0, atol=1e-15)
    assert torch.equal(big, big.T) and bool((big.diagonal() == 0).all())


# ------------------------------------------------------------------ 3-body stream


def test_stream_matches_dense_triplets():
    n = 13
    rbm = random_rbm(n, 9, scale=0.6, seed=11)
    f3 = C.spectral_factors(rbm, order=3)
    tr = C.sample_triplets(n, 10**6, seed=0)
    assert len(tr) == n * (n - 1) * (n - 2) // 6
    vals = C.triplet_couplings(f3, tr).numpy()
    dense = np.zeros((n, n, n))
    for p in [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]:
        dense[tr[:, p[0]], tr[:, p[1]], tr[:, p[2]]] = vals
    edges = np.linspace(-0.5 * np.abs(vals).max(), 0.5 * np.abs(vals).max(), 9)
    for budget, pairs in ((1, True), (2**30, True), (1, False), (2**30, False)):
        # one site per slab or all at once; full slabs (pair sums) or the j, k >= i corner
        st = C.stream_triplets(f3, edges=edges, n_strongest=7, memory_budget_bytes=budget,
                               pair_sums=pairs)
        assert st.sum_sq == pytest.approx(float((vals**2).sum()), rel=1e-12)
        np.testing.assert_array_equal(st.counts, np.histogram(vals, bins=edges)[0])
        assert st.underflow == int((vals < edges[0]).sum())
        assert st.overflow == int((vals > edges[-1]).sum())
        top = np.argsort(-np.abs(vals))[:7]
        np.testing.assert_array_equal(st.top_index, tr[top])
        np.testing.assert_allclose(st.top_value, vals[top], rtol=1e-12)
        if pairs:
            np.testing.assert_allclose(st.pair_abs_sum, np.abs(dense).sum(-1), rtol=1e-12,
                                       atol=1e-18)
        else:
            assert st.pair_abs_sum is None
    # a fraction of the first indices (benchmark extrapolation)
    part = C.stream_triplets(f3, i_range=(0, 4), pair_sums=False)
    assert part.sum_sq == pytest.approx(float((vals[tr[:, 0] < 4] ** 2).sum()), rel=1e-12)


# ------------------------------------------------------------------ statistics


def test_bad_input_raises_clear_errors():
    rbm = random_rbm(6, 3, scale=0.5, seed=0)
    with pytest.raises(ValueError, match="n_nodes"):
        C.fields(rbm, n_nodes=1)
    with pytest.raises(ValueError, match="distinct"):
        C.triplet_couplings(rbm, np.array([[0, 0, 1]]))
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        C.triplet_couplings_quadrature(rbm, np.array([[0, 1, 6]]))
    with pytest.raises(ValueError, match="order"):
        C.spectral_factors(rbm, order=4)
    with pytest.raises(ValueError, match="max_visible"):
        E.walsh_expansion(random_rbm(23, 1, scale=0.1, seed=0))
    with pytest.raises(ValueError, match="min_area_neurons"):
        area_matrix(np.zeros((6, 6)), np.array(["A"] * 6), min_area_neurons=0)
    with pytest.raises(ValueError, match="pair_method"):
        C.compute_couplings(_selected(rbm, ["A"] * 6), pair_method="magic")


# ------------------------------------------------------------------ ground truth


def _planted(seed: int) -> tuple[RBM, np.ndarray]:
    """21 neurons in 3 areas of 7; one strong assembly per area + one weak cross-area unit."""
    rng = np.random.default_rng(seed)
    n = 21
    areas = np.repeat(np.array(["A", "B", "C"]), 7)
    cols = []
    for k in range(3):
        w = np.zeros(n)
        idx = rng.choice(np.arange(7 * k, 7 * k + 7), 5, replace=False)
        w[idx] = 1.8 * (1 + 0.2 * rng.uniform(-1, 1, 5))
        cols.append(w)
    w = np.zeros(n)
    w[rng.choice(7, 3, replace=False)] = 0.6
    w[7 + rng.choice(7, 3, replace=False)] = 0.6
    cols.append(w)
    W = np.stack(cols, 1)
    a = -2.0 + 0.3 * rng.standard_normal(n)
    b = -2.5 * np.ones(W.shape[1])
    return RBM(*(torch.tensor(x) for x in (W, a, b))), areas


def _log_p_hidden(r: RBM, hs: torch.Tensor) -> torch.Tensor:
    return hs @ r.b + F.softplus(r.a + hs @ r.W.T).sum(-1)


def test_ground_truth_area_structure_and_recovery_after_fit():
    true, areas = _planted(3)
    n, m = true.W.shape
    hs = all_states(m)  # 2^4 hidden states: exact sampling and exact log Z
    gen = torch.Generator().manual_seed(0)
    p = torch.softmax(_log_p_hidden(true, hs), 0)
    h = hs[torch.multinomial(p, 10000, replacement=True, generator=gen)]
    v = torch.bernoulli(torch.sigmoid(true.a + h @ true.W.T), generator=gen)
    # maximum-likelihood fit with the exact gradient (log Z by hidden enumeration)
    Wf = (0.01 * torch.randn(n, m, generator=gen, dtype=F64)).requires_grad_()
    af = torch.logit(v.mean(0).clamp(1e-3, 1 - 1e-3)).requires_grad_()
    bf = torch.zeros(m, dtype=F64, requires_grad=True)
    opt = torch.optim.Adam([Wf, af, bf], lr=0.05)
    for _ in range(300):
        r = RBM(Wf, af, bf)
        nll = free_energy(r, v).mean() + torch.logsumexp(_log_p_hidden(r, hs), 0)
        opt.zero_grad()
        nll.backward()
        opt.step()
    fit = RBM(Wf.detach(), af.detach(), bf.detach())
    iu = np.triu_indices(n, 1)
    Jt, Jf = C.pair_couplings(true).numpy(), C.pair_couplings(fit).numpy()
    for J in (Jt, Jf):
        am = area_matrix(J, areas, min_area_neurons=7)["area_J_mean"].values
        within, cross = np.diag(am), am[~np.eye(3, dtype=bool)]
        assert within.min() > 5 * np.abs(cross).max(), am  # planted: ~0.045 vs <= 0.003
    # 10^4 samples give r ~ 0.99 (measured 0.988 with 2x the samples); 0.9 leaves room for
    # sampling noise but not for a wrong structure: couplings of a different planted model
    # (same recipe, other seed) correlate far less with the fit
    r_fit = C.pearson(Jf[iu], Jt[iu])
    other, _ = _planted(99)
    r_other = C.pearson(Jf[iu], C.pair_couplings(other).numpy()[iu])
    assert r_fit > 0.9 and r_other < 0.6, (r_fit, r_other)
    assert C.pearson(C.fields(fit).numpy(), C.fields(true).numpy()) > 0.95


# ------------------------------------------------------------------ stage assembly + figures


def _selected(rbm: RBM, areas) -> xr.Dataset:
    n = rbm.n_visible
    return xr.Dataset(
        {"W": (("neuron", "hidden"), rbm.W.numpy().astype(np.float32)),
         "a": ("neuron", rbm.a.numpy().astype(np.float32)),
         "b": ("hidden", rbm.b.numpy().astype(np.float32))},
        coords={"unit_id": ("neuron", 500 + np.arange(n, dtype=np.int64)),
                "area": ("neuron", np.array(areas, dtype=object))},
        attrs={"n_hidden": rbm.n_hidden, "checkpoint": 30},
    )


def test_compute_couplings_dataset_roundtrip_and_figures(tmp_path):
    true, areas = _planted(3)
    n = true.n_visible
    noisy = RBM(true.W + 0.05 * torch.randn(true.W.shape, generator=torch.Generator()
                                              .manual_seed(1), dtype=F64), true.a, true.b)
    sel = _selected(noisy, areas)
    ck = np.array([0, 3, 10, 30], dtype=np.int64)
    model = xr.Dataset(
        {"W": (("checkpoint", "neuron", "hidden"),
               np.stack([sel.W.values * t / 30 for t in ck])),
         "a": (("checkpoint", "neuron"), np.stack([sel.a.values] * 4)),
         "b": (("checkpoint", "hidden"), np.stack([sel.b.values] * 4))},
        coords={"checkpoint": ck},
    )
    truth = xr.Dataset({"W": (("neuron", "hidden_true"), true.W.numpy()),
                        "a": ("neuron", true.a.numpy()), "b": ("hidden_true", true.b.numpy())})
    ds = C.compute_couplings(sel, model=model, truth=truth, min_area_neurons=7,
                             n_triplets_stored=200, n_strongest_triplets=25, norm_checkpoints=2,
                             seed=4)
    n3 = n * (n - 1) * (n - 2) // 6
    assert ds.sizes["neuron"] == ds.sizes["neuron2"] == n
    assert ds.sizes["triplet"] == 200 and ds.sizes["strong"] == 25
    assert int(ds["J3_hist_counts"].sum()) + ds.attrs["J3_underflow"] + \
        ds.attrs["J3_overflow"] == n3
    assert list(ds["area2"].values) == list(areas)
    # no neuron without an area here; the default labels that name none are recorded
    assert ds.attrs["n_unassigned_neurons"] == 0
    assert ds.attrs["unassigned_areas"] == '["root", "unknown"]'
    assert ds.attrs["n_area_regions"] == 3 and ds.attrs["largest_area_neurons"] == 7
    assert ds.attrs["largest_area"] == "A"  # the first of three areas of 7 (np.unique order)
    # stored subset and strongest agree with direct evaluation
    rbm32 = RBM(*(torch.tensor(sel[k].values, dtype=F64) for k in ("W", "a", "b")))
    tr = np.stack([ds.triplet_i, ds.triplet_j, ds.triplet_k], 1)
    np.testing.assert_allclose(ds.triplet_J3.values, C.triplet_couplings(rbm32, tr).numpy(),
                               rtol=1e-10)
    # every stored triplet stronger than the weakest of the strongest list is in that list
    strong = {tuple(r) for r in np.stack([ds.strong_i, ds.strong_j, ds.strong_k], 1).tolist()}
    above = np.abs(ds.triplet_J3.values) > np.abs(ds.strong_J3.values).min()
    assert above.sum() >= 1 and {tuple(r) for r in tr[above].tolist()} <= strong
    assert np.all(np.diff(np.abs(ds.strong_J3.values)) <= 0)
    # norms: the selected checkpoint's norms equal the attrs (trajectory: spectral at exp(-20)
    # ~ 2e-9 relative; attrs: GH-40 pairs ~1e-8 here and spectral exp(-34) triplets)
    assert float(ds.norm.sel(checkpoint=30, order=2)) == pytest.approx(ds.attrs["norm_J2"],
                                                                        rel=1e-6)
    assert float(ds.norm.sel(checkpoint=30, order=3)) == pytest.approx(ds.attrs["norm_J3"],
                                                                        rel=1e-6)
    # norm_checkpoints=2: first and last (= selected) get J3; W = 0 at checkpoint 0
    np.testing.assert_array_equal(np.isnan(ds.norm.sel(order=3).values),
                                  [False, True, True, False])
    assert float(ds.norm.sel(checkpoint=0, order=3)) == 0.0
    assert float(ds.norm.sel(checkpoint=0, order=2)) == 0.0
    assert np.all(np.diff(ds.norm.sel(order=2).values) > 0)  # W grows linearly here
    assert ds.attrs["truth_pearson_J"] > 0.95 and ds.attrs["truth_pearson_H"] > 0.95
    assert ds.attrs["area_within_mean_J"] > 5 * abs(ds.attrs["area_cross_mean_J"])
    R = ds.R.values[np.triu_indices(n, 1)]
    assert np.all((R >= 0) & (R <= 1))
    path = io.write_netcdf(ds, tmp_path / "couplings.nc", attrs={"session_id": "t"})
    back = io.read_netcdf(path)
    np.testing.assert_array_equal(back.J.values, ds.J.values)
    assert isinstance(fig4 := __import__("spikerbm.plotting", fromlist=["x"]).fig_couplings(back),
                      Figure)
    from spikerbm.plotting import fig_areas, fig_couplings

    fig5 = fig_areas(back)
    assert isinstance(fig5, Figure) and len(fig4.axes) >= 5
    assert len(fig5.axes[0].get_legend().get_texts()) == 3
    # tiny couplings (a weakly coupled recording): the power of ten goes into the axis label and
    # the J ticks stay short numbers (they ran together as 0.00000.0002... before)
    small = fig_areas(back.assign(j_bin_edges=back["j_bin_edges"] * 1e-4))
    fig_x, small_x = fig5.axes[0].get_xlabel(), small.axes[0].get_xlabel()
    assert "10^{" not in fig_x and "10^{" in small_x, (fig_x, small_x)
    ratio = np.asarray(small.axes[0].get_xlim()) / np.asarray(fig5.axes[0].get_xlim())
    assert ratio[0] == pytest.approx(ratio[1], rel=1e-6)  # the same bins on a rescaled axis
    assert 1e-3 <= np.max(np.abs(small.axes[0].get_xlim())) < 1e3  # plain tick numbers
    # no area with min_area_neurons neurons (a small recording): both figures still build
    none = back.isel(region=slice(0, 0), region2=slice(0, 0))
    for fig in (fig_areas(none), fig_couplings(none)):
        assert any("no area with enough neurons" in t.get_text() for ax in fig.axes
                   for t in ax.texts)
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    rbm = random_rbm(40, 17, scale=0.4, seed=8)
    cu = rbm.to(device="cuda")
    torch.testing.assert_close(C.pair_couplings(cu).cpu(), C.pair_couplings(rbm),
                               rtol=0, atol=1e-12)
    f_cpu = C.spectral_factors(rbm, order=3)
    f_cu = C.spectral_factors(cu, order=3)
    a = C.stream_triplets(f_cpu, edges=np.linspace(-0.01, 0.01, 11), n_strongest=5)
    b = C.stream_triplets(f_cu, edges=np.linspace(-0.01, 0.01, 11), n_strongest=5)
    assert a.sum_sq == pytest.approx(b.sum_sq, rel=1e-9)
    np.testing.assert_array_equal(a.top_index, b.top_index)
    np.testing.assert_allclose(a.pair_abs_sum, b.pair_abs_sum, rtol=1e-9, atol=1e-15)


def test_reproducibility_metrics_on_constructed_replicas():
    rng = np.random.default_rng(7)
    n = 5
    J0 = rng.normal(size=(n, n))
    J0 = J0 + J0.T
    np.fill_diagonal(J0, 0.0)
    # replicas J0, 2 J0, -J0: r = +1 / -1 and slopes 2, -1, -1/2 exactly
    ds, s = C.reproducibility(np.stack([J0, 2 * J0, -J0]))
    np.testing.assert_allclose(ds["pair_pearson_J2"].values, [1, -1, -1], atol=1e-12)
    np.testing.assert_allclose(ds["pair_slope_J2"].values, [2, -1, -0.5], atol=1e-12)
    assert ds["replica_a"].values.tolist() == [0, 0, 1] and ds["replica_b"].values.tolist() == [
        1, 2, 2]
    assert s["J2_pearson_min"] == pytest.approx(-1) and s["J2_pearson_mean"] == pytest.approx(
        -1 / 3)
    # std(ddof=1) of (1, 2, -1) = sqrt(7/3): the spread is |J0| sqrt(7/3)
    np.testing.assert_allclose(ds["J_replica_std"].values, np.abs(J0) * np.sqrt(7 / 3),
                               atol=1e-12)
    # sign rule on 10 pairs of two replicas (upper triangle of N = 5, row-major)
    r0 = np.array([1, 1, -1, 0.1, 0.1, 0.01, 0.5, 0.3, 0.2, 2.0])
    r1 = np.array([1.2, 0.8, -1.1, -0.1, 0.1, 0.03, 0.5, 0.3, 0.2, -0.5])
    J = np.zeros((2, n, n))
    iu = np.triu_indices(n, 1)
    for k, vals in enumerate((r0, r1)):
        J[k][iu] = vals
        J[k] = J[k] + J[k].T
    area = np.array([[[1.0, 0.5], [0.5, 2.0]], [[1.5, 0.5], [0.5, 1.0]]])
    _, s = C.reproducibility(J, J3=np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]]), area_J=area)
    # spreads |r0 - r1| / sqrt(2): median (0.02 + 0.1) / 2 / sqrt(2); threshold 2x that =
    # 0.0849: pairs 3 (mean 0) and 5 (0.02) are out, 8 judged, 7 agree (pair 9 flips)
    assert s["J2_spread_median"] == pytest.approx(0.06 / np.sqrt(2), abs=1e-12)
    assert s["J2_sign_n_pairs"] == 8
    assert s["J2_sign_consistent_fraction"] == pytest.approx(7 / 8)
    assert s["J3_pearson_mean"] == pytest.approx(1) and s["J3_slope_min"] == pytest.approx(2)
    assert s["area_J_replica_std_max"] == pytest.approx(1 / np.sqrt(2), abs=1e-12)
    with pytest.raises(ValueError, match="R >= 2"):
        C.reproducibility(J[:1])
