"""Cross-session area atlas (spikerbm.atlas): planted area structure over sessions, interval
coverage over seeds, the single-session degradation, the sign-flip test and CCF grouping."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from spikerbm import atlas as A
from spikerbm import findings, plotting
from spikerbm.io import write_netcdf

#: planted area x area couplings (areas sorted by name, as the atlas sorts them)
AREAS = ["LGd", "VISl", "VISp"]
MU = np.array([[0.15, 0.02, 0.05],
               [0.02, 0.25, 0.10],
               [0.05, 0.10, 0.30]])
#: ../shared beside the checkout (CI, main), or beside the worktrees folder (wt/<name>)
_ROOT = Path(__file__).resolve().parents[1]
STEINMETZ = next((d / "shared" / "data" / "steinmetz2019" for d in (_ROOT.parent,
                                                                     _ROOT.parent.parent)
                  if (d / "shared").is_dir()), _ROOT / "no-shared-data")


def planted_session(rng: np.random.Generator, sid: str, n_per: list[int], *, tau: float,
                    sig_row: float = 0.1, sig_pair: float = 0.3, n_root: int = 7,
                    areas: list[str] = AREAS, mu: np.ndarray = MU) -> A.SessionCouplings:
    """J_ij = mu_AB + u_AB (session effect, sd tau) + r_i + r_j (neuron effects) + e_ij.

    ``root`` neurons get huge couplings (5.0): any leak of them into a block shows.
    """
    lab = np.concatenate([np.repeat(areas, n_per), np.repeat("root", n_root)])
    code = np.array([areas.index(a) if a != "root" else -1 for a in lab])
    n = lab.size
    k = len(areas)
    u = np.triu(rng.normal(0.0, tau, (k, k)))
    u = u + np.triu(u, 1).T
    inside = (code[:, None] >= 0) & (code[None] >= 0)
    base = np.where(inside, (mu + u)[code[:, None], code[None]], 5.0)
    r = rng.normal(0.0, sig_row, n)
    e = np.triu(rng.normal(0.0, sig_pair, (n, n)), 1)
    J = base + r[:, None] + r[None] + e + e.T
    np.fill_diagonal(J, 0.0)
    p = rng.permutation(n)  # areas interleaved, as in a recording
    J = J[np.ix_(p, p)]
    return A.SessionCouplings(sid, lab[p], {"J": J, "J_abs": np.abs(J)})


def coverage(lo: np.ndarray, hi: np.ndarray, truth: np.ndarray) -> np.ndarray:
    iu = np.triu_indices(truth.shape[0])
    return ((lo <= truth) & (truth <= hi))[iu]


# ------------------------------------------------------------------ structure recovery


def test_atlas_recovers_planted_structure_and_within_vs_across():
    rng = np.random.default_rng(0)
    sessions = [planted_session(rng, f"s{i}", [31, 37, 41], tau=0.02) for i in range(6)]
    at = A.build_atlas(sessions, quantities=["J", "J_abs"], n_boot=200, seed=1)
    assert list(at.region.values) == AREAS  # root and nothing else excluded, sorted
    assert "root" in at.attrs["excluded_areas"] and at.attrs["single_session"] == 0
    est = at.area_mean.sel(quantity="J").values
    se = at.area_se.sel(quantity="J").values
    # recovered within 4 standard errors (a 4-sigma miss has probability 6e-5 per entry)
    assert np.all(np.abs(est - MU) < 4 * se), (est, MU, se)
    np.testing.assert_array_equal(at.area_n_sessions.values, 6)
    np.testing.assert_array_equal(at.area_ci_from_sessions.values, 1)
    # pairs: 6 sessions x (n_A n_B, or n_A (n_A - 1) / 2 within)
    n = np.array([31, 37, 41])
    pairs = 6 * np.where(np.eye(3, dtype=bool), n[:, None] * (n[:, None] - 1) / 2,
                         n[:, None] * n[None])
    np.testing.assert_array_equal(at.area_n_pairs.sel(quantity="J").values, pairs)
    np.testing.assert_array_equal(at.session_n_neurons.values, np.tile(n, (6, 1)))
    # within - across: planted per area (across = pair-weighted mean over the other areas)
    for a in range(3):
        o = [b for b in range(3) if b != a]
        truth = MU[a, a] - (MU[a, o] * n[o]).sum() / n[o].sum()
        d = at.delta.sel(quantity="J").values[a]
        assert abs(d - truth) < 4 * at.delta_se.sel(quantity="J").values[a]
        assert at.delta_ci_low.sel(quantity="J").values[a] > 0  # every area: within > across
        # all six sessions agree in sign: the smallest attainable sign-flip p, 2 / 2^6
        assert at.delta_p_value.sel(quantity="J").values[a] == pytest.approx(2 / 64)
        assert at.delta_cohen_d.sel(quantity="J").values[a] > 0
    assert np.all(at.within.sel(quantity="J").values > at.across.sel(quantity="J").values)


def test_session_couplings_reads_a_couplings_dataset_and_ignores_nan_diagonal():
    rng = np.random.default_rng(3)
    s = planted_session(rng, "x", [12, 15, 13], tau=0.0, n_root=4)
    n = s.areas.size
    R = rng.uniform(0, 1, (n, n))
    R = (R + R.T) / 2
    np.fill_diagonal(R, np.nan)
    ds = xr.Dataset({"J": (("neuron", "neuron2"), s.matrices["J"]),
                     "R": (("neuron", "neuron2"), R)},
                    coords={"area": ("neuron", s.areas.astype(object)),
                            "unit_id": ("neuron", np.arange(n))})
    at = A.build_atlas({"x": ds}, min_area_neurons=10, n_boot=100)
    assert list(at.quantity.values) == ["J", "J_abs", "R"]
    # the point estimate is the plain block mean over i != j (METHODS §6), by brute force
    for q, M in (("J", s.matrices["J"]), ("J_abs", np.abs(s.matrices["J"])), ("R", R)):
        for p, ra in enumerate(AREAS):
            for r, rb in enumerate(AREAS):
                blk = np.ix_(s.areas == ra, s.areas == rb)
                off = ~np.eye(n, dtype=bool)[blk]
                want = np.nanmean(M[blk][off])
                got = at.area_mean.sel(quantity=q).values[p, r]
                assert got == pytest.approx(want, rel=1e-12, abs=1e-14)
        # Cohen's d of within (i<j in A) vs across (i in A, j in another area) pairs
        for p, ra in enumerate(AREAS):
            ia = np.flatnonzero(s.areas == ra)
            io = np.flatnonzero(np.isin(s.areas, AREAS) & (s.areas != ra))
            w = M[np.ix_(ia, ia)][np.triu_indices(ia.size, 1)]
            x = M[np.ix_(ia, io)].ravel()
            pooled = ((w.size - 1) * w.var(ddof=1) + (x.size - 1) * x.var(ddof=1)) / (
                w.size + x.size - 2)
            want = (w.mean() - x.mean()) / math.sqrt(pooled)
            got = at.session_cohen_d.sel(quantity=q, session="x").values[p]
            assert got == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError, match="no variable 'R'"):
        A.build_atlas({"x": ds.drop_vars("R")}, min_area_neurons=10, n_boot=100)


# ------------------------------------------------------------------ interval coverage


@pytest.mark.parametrize("tau", [0.0, 0.05])
def test_session_t_intervals_cover_at_nominal_rate(tau):
    # 300 seeds, 3 sessions each. tau = 0: sessions differ only by which neurons were recorded;
    # tau = 0.05: a session effect larger than the neuron noise. The t interval over session
    # estimates is exact in both regimes (the two-stage bootstrap is not: docs/methods.md §12).
    # Tolerance: coverage of one entry over 300 seeds ~ Binomial(300, 0.95)/300, sd 0.0126; the
    # average over the 6 (dependent) entries has sd <= that; +- 3.5 sd.
    cov = []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        ss = [planted_session(rng, f"s{i}", list(rng.integers(12, 20, 3)), tau=tau, n_root=2)
              for i in range(3)]
        at = A.build_atlas(ss, quantities=["J"], min_area_neurons=10, n_boot=100, seed=seed)
        cov.append(coverage(at.area_ci_low.values[0], at.area_ci_high.values[0], MU))
    rate = float(np.mean(cov))
    sd = math.sqrt(0.95 * 0.05 / 300)
    assert abs(rate - 0.95) < 3.5 * sd, rate


def test_single_session_degrades_to_neuron_bootstrap_and_covers():
    # One session: the expanded-percentile neuron bootstrap must cover the planted block means
    # (no session effect) at the nominal rate. Neuron effects (sd 0.1) make pairs sharing a
    # neuron dependent: a pair bootstrap would cover ~60% here. 300 seeds, 6 dependent entries:
    # sd <= sqrt(.95 .05 / 300) = 0.0126, +- 3.5 sd.
    cov = []
    for seed in range(300):
        rng = np.random.default_rng(10_000 + seed)
        s = planted_session(rng, "only", list(rng.integers(25, 40, 3)), tau=0.0, n_root=2)
        at = A.build_atlas([s], quantities=["J"], n_boot=400, seed=seed, min_area_neurons=20)
        cov.append(coverage(at.area_ci_low.values[0], at.area_ci_high.values[0], MU))
    rate = float(np.mean(cov))
    assert abs(rate - 0.95) < 3.5 * math.sqrt(0.95 * 0.05 / 300), rate
    assert at.attrs["single_session"] == 1
    assert "one session" in at.attrs["interval_note"]
    np.testing.assert_array_equal(at.area_ci_from_sessions.values, 0)
    np.testing.assert_array_equal(at.area_n_sessions.values, 1)
    # the within-vs-across p-value comes from the bootstrap: in (0, 1], finite
    p = at.delta_p_value.values
    assert np.all((p >= 0) & (p <= 1))


def test_entries_seen_in_one_session_say_so_in_a_multi_session_atlas():
    rng = np.random.default_rng(5)
    s1 = planted_session(rng, "a", [20, 20, 20], tau=0.0)
    s2 = planted_session(rng, "b", [20, 20, 3], tau=0.0)  # VISp too small in session b
    at = A.build_atlas([s1, s2], quantities=["J"], min_area_neurons=10, n_boot=100)
    n_s = at.area_n_sessions.values
    np.testing.assert_array_equal(n_s, [[2, 2, 1], [2, 2, 1], [1, 1, 1]])
    np.testing.assert_array_equal(at.area_ci_from_sessions.values, (n_s >= 2).astype(int))
    assert np.isnan(at.session_area_mean.sel(session="b", region="VISp").values).all()
    assert at.session_n_neurons.sel(session="b", region="VISp").item() == 0
    assert np.all(np.isfinite(at.area_ci_low.values))


def test_areas_never_recorded_together_stay_empty():
    rng = np.random.default_rng(6)
    s1 = planted_session(rng, "a", [15, 15], tau=0.0, areas=["LGd", "VISl"], mu=MU[:2, :2])
    s2 = planted_session(rng, "b", [15, 15], tau=0.0, areas=["VISl", "VISp"], mu=MU[1:, 1:])
    at = A.build_atlas([s1, s2], quantities=["J"], min_area_neurons=10, n_boot=100)
    n_s = at.area_n_sessions.values
    np.testing.assert_array_equal(n_s, [[1, 1, 0], [1, 2, 1], [0, 1, 1]])
    never = at.area_mean.sel(quantity="J", region="LGd", region2="VISp").item()
    assert np.isnan(never) and at.area_n_pairs.values[0, 0, 2] == 0
    assert np.isfinite(at.area_mean.values[0][n_s > 0]).all()
    # VISl is compared in both sessions (each has another area), LGd and VISp in one
    np.testing.assert_array_equal(at.delta_n_sessions.values, [1, 2, 1])


@pytest.mark.skipif(not STEINMETZ.is_dir(), reason="shared Steinmetz rasters not present")
def test_atlas_on_real_steinmetz_sessions():
    # Two real sessions with spike-count correlations standing in for couplings: root is
    # excluded, every area has >= 30 neurons where it counts, areas shared by the sessions get
    # intervals over sessions, and neurons of one area are more correlated with each other than
    # with other areas (a robust property of cortical recordings) in most areas.
    sessions = []
    for name in ("steinmetz_cori_20161214_s1.nc", "steinmetz_cori_20161218_s3.nc"):
        with xr.open_dataset(STEINMETZ / name) as ds:
            r = ds["raster"].transpose("time_bin", "neuron").values.astype(np.float64)
            area = np.asarray(ds["area"].values).astype(str)
        keep = r.std(0) > 0
        C = np.corrcoef(r[:, keep].T)
        sessions.append(A.SessionCouplings(name[10:-3], area[keep], {"J": C}))
    at = A.build_atlas(sessions, quantities=["J"], n_boot=200)
    regions = list(at.region.values)
    assert "root" not in regions and {"VISp", "DG"} <= set(regions)
    assert (at.session_n_neurons.values[at.session_n_neurons.values > 0] >= 30).all()
    shared = at.area_n_sessions.values == 2
    assert shared.any() and (at.area_ci_from_sessions.values == shared).all()
    delta = at.delta.values[0]
    assert np.mean(delta[np.isfinite(delta)] > 0) > 0.75


# ------------------------------------------------------------------ sign-flip test


def test_sign_flip_pvalue_exact_values():
    # all 5 positive: only the all-plus and all-minus patterns reach |mean| -> 2 / 32
    assert A.sign_flip_pvalue(np.array([1.0, 2.0, 0.5, 3.0, 1.0])) == pytest.approx(2 / 32)
    # by hand for (3, -1): patterns (+,+) 2, (+,-) 1... |mean| in {1, 2, 2, 1}; observed 1 -> 1
    assert A.sign_flip_pvalue(np.array([3.0, -1.0])) == pytest.approx(1.0)
    assert A.sign_flip_pvalue(np.array([3.0, 1.0])) == pytest.approx(0.5)
    assert math.isnan(A.sign_flip_pvalue(np.array([np.nan])))


def test_within_vs_across_test_holds_its_size_under_the_null():
    # within = across (a flat coupling matrix) with a session effect: the sign-flip test over
    # 6 sessions has exact size 2/64 at alpha = 0.05; over 150 seeds x 3 areas the rejection
    # rate must stay below 0.05 + 3.5 sd of Binomial(150, 0.05)/150 (areas are dependent).
    flat = np.full((3, 3), 0.1)
    rejections = []
    for seed in range(150):
        rng = np.random.default_rng(20_000 + seed)
        ss = [planted_session(rng, f"s{i}", [12, 12, 12], tau=0.03, mu=flat, n_root=0)
              for i in range(6)]
        at = A.build_atlas(ss, quantities=["J"], min_area_neurons=10, n_boot=100, seed=seed)
        rejections.append(at.delta_p_value.values[0] <= 0.05)
    assert np.mean(rejections) < 0.05 + 3.5 * math.sqrt(0.05 * 0.95 / 150)


# ------------------------------------------------------------------ models side by side, tables


def test_atlas_by_model_and_its_tables():
    rng = np.random.default_rng(3)
    rbm = [planted_session(rng, f"s{i}", [30, 35, 40], tau=0.0) for i in range(3)]
    for s in rbm:  # an R-like quantity for the RBM only
        s.matrices["R"] = np.abs(s.matrices["J"]) / (1 + np.abs(s.matrices["J"]))
    pw = [A.SessionCouplings(s.session, s.areas, {"J": 2 * s.matrices["J"],
                                                  "J_abs": 2 * s.matrices["J_abs"]})
          for s in rbm]
    a_rbm = A.build_atlas(rbm, quantities=["J", "J_abs", "R"], n_boot=200, seed=1)
    a_pw = A.build_atlas(pw, quantities=["J", "J_abs"], n_boot=200, seed=1)
    both = A.atlas_by_model({"rbm": a_rbm, "pairwise": a_pw})
    assert list(both["model"].values) == ["rbm", "pairwise"]
    assert list(both["quantity"].values) == ["J", "J_abs", "R"]
    assert both["area_mean"].dims == ("model", "quantity", "region", "region2")
    assert both["area_n_sessions"].dims == ("region", "region2")  # shared, not per model
    # the same sessions resampled with the same seeds: the pairwise atlas of 2 J is exactly 2x
    np.testing.assert_allclose(both["area_mean"].sel(model="pairwise", quantity="J"),
                               2 * both["area_mean"].sel(model="rbm", quantity="J"))
    np.testing.assert_allclose(both["delta_ci_high"].sel(model="pairwise", quantity="J"),
                               2 * both["delta_ci_high"].sel(model="rbm", quantity="J"))
    assert np.isnan(both["area_mean"].sel(model="pairwise", quantity="R")).all()
    assert (both["area_n_pairs"].sel(model="pairwise", quantity="R") == 0).all()
    assert both["area_n_pairs"].dtype == np.int64
    pairs, areas = A.atlas_tables(both)
    assert len(pairs) == (3 + 2) * 6 and len(areas) == (3 + 2) * 3  # 6 pairs A<=B, 3 areas
    row = pairs[(pairs.model == "rbm") & (pairs.quantity == "J") & (pairs.region == "VISp")
                & (pairs.region2 == "VISp")].iloc[0]
    at = a_rbm.sel(quantity="J", region="VISp", region2="VISp")
    assert row["mean"] == float(at.area_mean) and row["ci_low"] == float(at.area_ci_low)
    assert row["n_sessions"] == 3 and row["n_pairs"] == int(at.area_n_pairs)
    with pytest.raises(ValueError, match="same sessions"):
        A.atlas_by_model({"rbm": a_rbm, "other": A.build_atlas(pw[:2], quantities=["J"],
                                                               n_boot=200)})


def test_too_small_areas_give_an_empty_atlas_that_says_why(tmp_path):
    """The new-user case (one NWB session, areas of 10, 10 and 5 neurons, default threshold
    30): an empty atlas, not an error, whose tables, figure and finding name the fix."""
    rng = np.random.default_rng(11)
    one = [planted_session(rng, "nwb1", [10, 12, 5], tau=0.0)]
    for sessions in (one, one + [planted_session(rng, "nwb2", [9, 8, 13], tau=0.0)]):
        at = A.atlas_by_model({m: A.build_atlas(sessions, quantities=["J"], n_boot=100)
                               for m in ("rbm", "pairwise")})
        assert at.sizes["region"] == at.sizes["region2"] == 0 and at.attrs["n_regions"] == 0
        largest = 13 if len(sessions) == 2 else 12
        assert at.attrs["largest_area_neurons"] == largest
        assert f"with {largest} neurons in session" in at.attrs["empty_reason"]
        back = xr.open_dataset(write_netcdf(at, tmp_path / f"a{len(sessions)}.nc"))
        assert back.sizes["region"] == 0 and back.attrs["empty_reason"] == \
            at.attrs["empty_reason"]
        pairs, areas = A.atlas_tables(back)
        assert list(pairs.columns) == A.AREA_PAIR_COLUMNS and pairs.empty
        assert list(areas.columns) == A.WITHIN_ACROSS_COLUMNS and areas.empty
        (found,) = findings.atlas_findings(back)
        assert (found.level, found.code) == ("caution", "atlas_empty")
        assert "atlas.min_area_neurons (now 30; " + f"{largest} keeps" in found.message
        fig = plotting.fig_atlas(back)
        assert "Empty atlas" in " ".join(t.get_text() for t in fig.axes[0].texts)
        plt.close(fig)
    # with areas retained: one session is a caution, several are ok
    big = planted_session(rng, "s1", [31, 33, 35], tau=0.0)
    one_at = A.build_atlas([big], quantities=["J"], n_boot=100)
    assert findings.atlas_findings(one_at)[0].code == "atlas_one_session"
    two = A.build_atlas([big, planted_session(rng, "s2", [30, 30, 30], tau=0.0)],
                        quantities=["J"], n_boot=100)
    (ok,) = findings.atlas_findings(two)
    assert (ok.level, ok.code, ok.message) == ("ok", "atlas_pooled",
                                              "the atlas pools 3 areas over 2 sessions")


@pytest.mark.parametrize("n_areas", [3, 6])
def test_atlas_figure_cells_are_readable(n_areas):
    """Cell annotations at >= 7 pt (the trial's 5 pt were ~6 px in the PNG); intervals in the
    cells only for small matrices (else they are in the table, and the figure says so); values
    in the colour bar's power of ten, two significant digits."""
    rng = np.random.default_rng(5)
    names = [f"A{i}" for i in range(n_areas)]
    mu = 1e-4 * (1 + np.eye(n_areas))  # weak couplings: the scale moves into the label
    ss = [planted_session(rng, f"s{i}", [25] * n_areas, tau=0.0, areas=names, mu=mu,
                          sig_row=1e-5, sig_pair=1e-5) for i in range(2)]
    at = A.atlas_by_model({"rbm": A.build_atlas(ss, quantities=["J"], n_boot=100,
                                                min_area_neurons=20)})
    fig = plotting.fig_atlas(at)
    cells = [t for t in fig.axes[0].texts if t.get_text().count("n=")]
    assert len(cells) == n_areas**2
    assert min(t.get_fontsize() for t in cells) >= 7
    with_interval = [t for t in cells if "[" in t.get_text()]
    assert len(with_interval) == (n_areas**2 if n_areas <= plotting.ATLAS_CELL_INTERVAL_MAX_AREAS
                                  else 0)
    # values shown as 1.0-2.0 (x 1e-4), never 0.0001
    assert all(len(t.get_text().split("\n")[0]) <= 4 for t in cells), cells[0].get_text()
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert any("10^{-4}" in lab for lab in labels), labels
    note = fig._suptitle.get_text() if fig._suptitle else ""
    assert ("atlas_area_pairs" in note) == (n_areas > plotting.ATLAS_CELL_INTERVAL_MAX_AREAS)
    plt.close(fig)


# ------------------------------------------------------------------ Allen CCF grouping


def _need_iblatlas() -> None:
    """The CCF tests need iblatlas's structure table, which `make setup` installs (without its
    dependencies); under CI (CI=true) its absence is a failure, never a silent skip."""
    if importlib.util.find_spec("iblatlas") is None:
        if os.environ.get("CI"):
            pytest.fail("iblatlas is not installed: `make setup` installs it "
                        "(pip install --no-deps -c constraints.txt iblatlas); CI must test the "
                        "CCF grouping")
        pytest.skip("iblatlas not installed (make setup installs it)")


def test_ccf_table_is_read_without_iblatlas_code():
    """iblatlas is a data package here: reading its table imports none of its modules (so its
    runtime dependencies, which make setup leaves out, are never needed)."""
    _need_iblatlas()
    code = ("import sys; from spikerbm.atlas import ccf_group, ccf_structure_table; "
            "t = ccf_structure_table(); g = ccf_group(['VISp5', 'LGd'], 'beryl'); "
            "mods = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('iblatlas', 'one', 'iblutil', 'boto3', 'numba', 'pyarrow')); "
            "print(len(t), [str(x) for x in g], mods)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split(" ", 1)
    assert int(out[0]) > 1000  # the whole 2017 ontology (1327 structures)
    assert out[1].strip() == "['VISp', 'LGd'] ['iblatlas']", out  # the package, no submodule


def test_ccf_group_on_real_acronyms():
    _need_iblatlas()
    areas = ["VISp", "VISl", "VISpm", "VISam", "LGd", "LP", "PO", "CA1", "DG", "MRN"]
    got = A.ccf_group(areas, ["VIS", "TH", "HPF"])
    assert list(got) == ["VIS"] * 4 + ["TH"] * 3 + ["HPF"] * 2 + ["MRN"]  # MRN: no group
    cosmos = A.ccf_group(areas, "cosmos")
    assert list(cosmos) == ["Isocortex"] * 4 + ["TH"] * 3 + ["HPF"] * 2 + ["MB"]
    assert list(A.ccf_group(["VISp", "LGd", "TH"], 6)) == ["VIS", "GENd", "TH"]
    assert list(A.ccf_group(["VISp", "LGd"], 4)) == ["CTXpl", "TH"]
    assert list(A.ccf_group(["VISp5", "LGd-co"], "beryl")) == ["VISp", "LGd"]
    with pytest.raises(ValueError, match="not Allen CCF acronyms"):
        A.ccf_group(["A1", "VISp"], "cosmos")
    with pytest.raises(ValueError, match="not in the Allen structure tree"):
        A.ccf_group(["VISp"], ["VISUAL"])


def test_atlas_groups_by_ccf_before_the_size_threshold():
    _need_iblatlas()
    rng = np.random.default_rng(7)
    areas = ["LGd", "LP", "VISl", "VISp"]  # 20 neurons each: every area below 30 on its own
    mu = np.full((4, 4), 0.02)
    mu[:2, :2] = 0.2  # thalamus with itself
    mu[0, 1] = mu[1, 0] = 0.1  # ... LGd with LP weaker
    mu[2:, 2:] = 0.3  # visual cortex with itself
    ss = [planted_session(rng, f"s{i}", [20] * 4, tau=0.0, areas=areas, mu=mu, sig_row=0.02,
                          sig_pair=0.1) for i in range(3)]
    assert A.build_atlas(ss, quantities=["J"], n_boot=100).sizes["region"] == 0  # empty
    at = A.build_atlas(ss, quantities=["J"], n_boot=100, ccf_level=["VIS", "TH"])
    assert list(at.region.values) == ["TH", "VIS"] and at.attrs["ccf_level"] == "VIS,TH"
    np.testing.assert_array_equal(at.session_n_neurons.values, 40)
    est = at.area_mean.sel(quantity="J").values
    # the grouped block mean mixes the planted sub-blocks: 2 x 380 ordered within pairs at 0.2,
    # 800 LGd-LP pairs at 0.1. Per session sd ~ sqrt(4 .02^2 / 40 + 2 .1^2 / 1560) = 0.007,
    # over 3 sessions 0.004: tolerance 0.02 (and 0.2 would be 0.05 away).
    within = (2 * 380 * 0.2 + 800 * 0.1) / (2 * 380 + 800)
    assert est[0, 0] == pytest.approx(within, abs=0.02)
    assert est[0, 1] == pytest.approx(0.02, abs=0.02)
    assert est[1, 1] == pytest.approx(0.3, abs=0.02)


@pytest.mark.skipif(not STEINMETZ.is_dir(), reason="shared Steinmetz rasters not present")
def test_every_steinmetz_area_is_a_ccf_acronym():
    _need_iblatlas()
    areas = set()
    for f in sorted(STEINMETZ.glob("*.nc")):
        with xr.open_dataset(f) as ds:
            areas |= set(np.asarray(ds["area"].values).astype(str))
    areas.discard("root")
    assert len(areas) > 20
    grouped = dict(zip(sorted(areas), A.ccf_group(sorted(areas), "cosmos"), strict=True))
    assert grouped["VISp"] == "Isocortex" and grouped["LGd"] == "TH" and grouped["CA1"] == "HPF"
    assert set(grouped.values()) <= {"Isocortex", "OLF", "HPF", "CTXsp", "CNU", "TH", "HY",
                                     "MB", "HB", "CB"} | areas


# ------------------------------------------------------------------ bad input


def test_bad_options_and_inputs_fail_with_one_clear_line():
    rng = np.random.default_rng(9)
    s = planted_session(rng, "s", [12, 12, 12], tau=0.0)
    cases = [
        (dict(ci=1.0), "ci must be in"),
        (dict(session_interval="pairs"), "session_interval"),
        (dict(n_boot=10), "n_boot"),
        (dict(min_area_neurons=1), "min_area_neurons"),
        (dict(quantities=["J3"]), "quantities"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            A.build_atlas([s], **{"min_area_neurons": 10, **kw})
    with pytest.raises(ValueError, match="duplicate session"):
        A.build_atlas([s, s], min_area_neurons=10, n_boot=100)
    bad = A.SessionCouplings("b", s.areas[:-1], s.matrices)
    with pytest.raises(ValueError, match="one row and column per labelled neuron"):
        A.build_atlas([bad], min_area_neurons=10, n_boot=100, quantities=["J"])
