"""Model selection (highest test LL), combination of per-model files, selected.nc, Fig. 2."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import xarray as xr
from matplotlib.figure import Figure

from spikerbm import io
from spikerbm.likelihood import checkpoint_loglik, combine_loglik
from spikerbm.partition import LogZEstimate
from spikerbm.plotting import fig_loglik
from spikerbm.rbm import rbm_from_dataset
from spikerbm.selection import refine_tais_ties, select_model, selected_dataset

N_VIS = 7


def fake_loglik(n_hidden: int, checkpoints: list[int], ll_test: list[float], *,
                floor_test: float = -5.0, method: str = "exact") -> xr.Dataset:
    """A per-model loglik dataset with chosen test values (train = test + 0.1)."""
    test = np.asarray(ll_test, dtype=float)
    var = ("checkpoint", test)
    return xr.Dataset(
        {"ll_test": var, "ll_train": ("checkpoint", test + 0.1),
         "ll_test_std": ("checkpoint", np.zeros_like(test)),
         "ll_train_std": ("checkpoint", np.zeros_like(test)),
         "log_z": ("checkpoint", np.ones_like(test))},
        coords={"checkpoint": np.asarray(checkpoints, dtype=np.int64)},
        attrs={"n_hidden": n_hidden, "log_z_method": method, "floor_train": -4.9,
               "floor_test": floor_test, "n_neurons": N_VIS},
    )


def fake_model(n_hidden: int, checkpoints: list[int], *, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    c = len(checkpoints)
    return xr.Dataset(
        {"W": (("checkpoint", "neuron", "hidden"),
               rng.normal(size=(c, N_VIS, n_hidden)).astype(np.float32)),
         "a": (("checkpoint", "neuron"), rng.normal(size=(c, N_VIS)).astype(np.float32)),
         "b": (("checkpoint", "hidden"), rng.normal(size=(c, n_hidden)).astype(np.float32)),
         "log_z_tais": ("checkpoint", np.full(c, np.nan))},
        coords={"checkpoint": np.asarray(checkpoints, dtype=np.int64),
                "unit_id": ("neuron", np.arange(100, 100 + N_VIS, dtype=np.int64)),
                "area": ("neuron", np.array(["VISp"] * 4 + ["CA1"] * 3))},
    )


def test_selection_picks_known_best_with_unequal_checkpoints(caplog) -> None:
    # n_hidden 3 peaks at checkpoint 10 (-4.2); n_hidden 5 peaks at 30 (-4.0, the best);
    # n_hidden 9 was trained longer (checkpoint 100 exists only there) and overfits.
    per = [fake_loglik(5, [0, 10, 30], [-5.1, -4.5, -4.0]),
           fake_loglik(3, [0, 10, 30], [-5.1, -4.2, -4.3]),
           fake_loglik(9, [0, 10, 30, 100], [-5.1, -4.1, np.nan, -4.6], method="ais")]
    ll = combine_loglik(per)
    assert ll["n_hidden"].values.tolist() == [3, 5, 9]  # sorted
    assert ll["checkpoint"].values.tolist() == [0, 10, 30, 100]  # union
    assert np.isnan(ll["ll_test"].sel(n_hidden=3, checkpoint=100))  # NaN padding
    assert ll["log_z_method"].values.tolist() == ["exact", "exact", "ais"]
    with caplog.at_level(logging.WARNING):
        sel = select_model(ll)
    assert (sel.attrs["n_hidden"], sel.attrs["checkpoint"]) == (5, 30)
    assert sel.attrs["ll_test"] == -4.0 and sel.attrs["beats_floor"] == 1
    assert "warning" not in sel.attrs and not caplog.records
    # candidate table: best checkpoint per hidden size (NaN skipped), winner flagged
    assert sel["ll_test"].dims == ("candidate",)
    assert sel["n_hidden"].values.tolist() == [3, 5, 9]
    assert sel["checkpoint"].values.tolist() == [10, 30, 10]
    assert sel["ll_test"].values.tolist() == [-4.2, -4.0, -4.1]
    assert sel["selected"].values.tolist() == [0, 1, 0]
    assert sel["log_z_method"].values.tolist() == ["exact", "exact", "ais"]
    np.testing.assert_allclose(sel["ll_train"].values, [-4.1, -3.9, -4.0])


def test_selection_flags_loudly_when_nothing_beats_floor(caplog) -> None:
    per = [fake_loglik(3, [0, 10], [-5.3, -5.2], floor_test=-5.0),
           fake_loglik(5, [0, 10], [-5.3, -5.1], floor_test=-5.0)]
    with caplog.at_level(logging.WARNING):
        sel = select_model(combine_loglik(per))
    assert (sel.attrs["n_hidden"], sel.attrs["checkpoint"]) == (5, 10)  # still written
    assert sel.attrs["beats_floor"] == 0
    assert "independent-site floor" in sel.attrs["warning"]
    assert any("!!!!!!" in r.getMessage() and "WARNING" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)


def test_combine_and_select_bad_input() -> None:
    with pytest.raises(ValueError, match="floor_test differs"):
        combine_loglik([fake_loglik(3, [0], [-4.0], floor_test=-5.0),
                        fake_loglik(5, [0], [-4.0], floor_test=-6.0)])
    with pytest.raises(ValueError, match="repeat"):
        combine_loglik([fake_loglik(3, [0], [-4.0]), fake_loglik(3, [0], [-4.0])])
    with pytest.raises(ValueError, match="no finite"):
        select_model(combine_loglik([fake_loglik(3, [0], [np.nan])]))


def test_selected_dataset_round_trip(tmp_path) -> None:
    model = fake_model(5, [0, 10, 30], seed=1)
    sel = select_model(combine_loglik([fake_loglik(5, [0, 10, 30], [-5.0, -4.0, -4.5]),
                                       fake_loglik(3, [0, 10, 30], [-5.0, -4.4, -4.5])]))
    rate = np.linspace(1.0, 7.0, N_VIS)
    ds = selected_dataset(model, sel, rate_hz=rate)
    path = io.write_netcdf(ds, tmp_path / "selected.nc")
    back = io.read_netcdf(path)
    assert back.sizes["neuron"] == N_VIS and back.sizes["hidden"] == 5
    assert back.sizes["candidate"] == 2
    for k in ("W", "a", "b"):
        assert back[k].dtype == np.float32
    np.testing.assert_array_equal(back["W"].values, model["W"].sel(checkpoint=10).values)
    np.testing.assert_array_equal(back["rate_hz"].values, rate)
    np.testing.assert_array_equal(back["unit_id"].values, model["unit_id"].values)
    assert back.attrs["checkpoint"] == 10 and back.attrs["n_hidden"] == 5
    rbm = rbm_from_dataset(back)
    assert torch.equal(rbm.b, torch.as_tensor(model["b"].sel(checkpoint=10).values))
    with pytest.raises(ValueError, match="n_hidden=5"):
        selected_dataset(fake_model(3, [0, 10, 30], seed=2), sel)
    with pytest.raises(ValueError, match="rate_hz"):
        selected_dataset(model, sel, rate_hz=rate[:3])


def test_selection_on_real_loglik_picks_argmax() -> None:
    """End to end on real (exact) log-likelihoods of two random trajectories: the selection is
    the arg max of the exact test LL over every (n_hidden, checkpoint)."""
    rng = np.random.default_rng(0)
    train = (rng.random((301, N_VIS)) < 0.3).astype(np.uint8)
    test = (rng.random((101, N_VIS)) < 0.3).astype(np.uint8)
    per = [checkpoint_loglik(fake_model(m, [0, 3, 17], seed=m).assign(
        W=lambda d: d["W"] * 0.1), train, test) for m in (3, 5)]
    ll = combine_loglik(per)
    sel = select_model(ll)
    flat = ll["ll_test"].stack(k=("n_hidden", "checkpoint"))
    best = flat.isel(k=int(np.argmax(flat.values)))
    assert (sel.attrs["n_hidden"], sel.attrs["checkpoint"]) == (
        int(best["n_hidden"]), int(best["checkpoint"]))
    assert sel.attrs["ll_test"] == pytest.approx(float(best))


def _with_std(ds: xr.Dataset, std: list[float]) -> xr.Dataset:
    values = np.asarray(std, dtype=float)
    return ds.assign(ll_test_std=("checkpoint", values), ll_train_std=("checkpoint", values),
                     log_z_std=("checkpoint", values))


def test_selection_reports_ties_within_combined_error(caplog) -> None:
    """Winner n_hidden 5 (-4.00 +- 0.02); n_hidden 3 (-4.05 +- 0.02) is within 2 combined
    errors (0.057), n_hidden 9 (-4.2 +- 0.01) is not: tied_with = "3", logged."""
    per = [_with_std(fake_loglik(5, [0, 10], [-5.0, -4.0]), [0.0, 0.02]),
           _with_std(fake_loglik(3, [0, 10], [-5.0, -4.05]), [0.0, 0.02]),
           _with_std(fake_loglik(9, [0, 10], [-5.0, -4.2]), [0.0, 0.01])]
    with caplog.at_level(logging.INFO, logger="spikerbm.selection"):
        sel = select_model(combine_loglik(per))
    assert sel.attrs["n_hidden"] == 5 and sel.attrs["tied_with"] == "3"
    assert sel["tied"].values.tolist() == [1, 0, 0]  # sizes 3, 5, 9
    assert sel["ll_test_std"].values.tolist() == [0.02, 0.02, 0.01]
    assert "tied within 2 combined errors with n_hidden 3" in caplog.text
    exact = select_model(combine_loglik([fake_loglik(5, [0, 10], [-5.0, -4.0]),
                                         fake_loglik(3, [0, 10], [-5.0, -4.05])]))
    assert exact.attrs["tied_with"] == ""  # exact log Z: no error, no tie


def test_online_checkpoint_disagreement_is_reported(caplog) -> None:
    per = [fake_loglik(5, [0, 10, 30], [-5.0, -4.5, -4.0]),
           fake_loglik(3, [0, 10, 30], [-5.0, -4.2, -4.3])]
    for ds, z in zip(per, ([0.1, -3.5, 1.0], [0.0, 2.9, -0.4]), strict=True):
        ds["online_z"] = ("checkpoint", np.array(z))
        ds["log_z_tais"] = ("checkpoint", np.ones(3))
        ds["log_z_tais_std"] = ("checkpoint", np.full(3, 0.01))
        ds["log_z_std"] = ("checkpoint", np.zeros(3))
    with caplog.at_level(logging.WARNING, logger="spikerbm.selection"):
        sel = select_model(combine_loglik(per))
    assert sel.attrs["online_disagrees"] == "5@10"
    assert sel.attrs["online_max_abs_z"] == pytest.approx(3.5)
    assert "disagree at n_hidden 5, checkpoint 10" in caplog.text


def test_tais_never_decides_a_gap_below_its_error(caplog) -> None:
    """Trajectory-AIS values (method tais, each +- 0.05): the best, n_hidden 5 at checkpoint
    30 (-4.00), is within 2 combined errors of n_hidden 3 at 10 (-4.03), so both are
    re-estimated with the checkpoint estimator (exact: -4.30 and -4.25). The new leader,
    n_hidden 3 at 30 (-4.15, out of reach before), is now within reach of those exact values
    and is re-estimated in turn (exact: unchanged), and wins; n_hidden 5 at 10 (-4.30 +- 0.05)
    stays out of reach and is never recomputed. A clear gap (n_hidden 9 far ahead) is decided
    by trajectory AIS without any re-estimation."""
    per = [_with_std(fake_loglik(5, [0, 10, 30], [-5.0, -4.3, -4.0], method="tais"),
                     [0.05] * 3),
           _with_std(fake_loglik(3, [0, 10, 30], [-5.0, -4.03, -4.15], method="tais"),
                     [0.05] * 3)]
    truth = {(5, 30): 1.30, (3, 10): 1.22, (3, 30): 1.0}  # exact log Z; tais said 1.0
    calls = []

    def refine(n_hidden: int, checkpoint: int) -> LogZEstimate:
        calls.append((n_hidden, checkpoint))
        lz = truth[(n_hidden, checkpoint)]
        return LogZEstimate(lz, 0.0, "exact", (lz,))

    with caplog.at_level(logging.WARNING, logger="spikerbm.selection"):
        refined = refine_tais_ties(combine_loglik(per), refine)
    assert calls == [(3, 10), (5, 30), (3, 30)]  # two rounds
    sel = select_model(refined)
    assert (sel.attrs["n_hidden"], sel.attrs["checkpoint"]) == (3, 30)
    assert sel.attrs["ll_test"] == pytest.approx(-4.15)
    assert sel.attrs["log_z_method"] == "exact" and sel.attrs["ll_test_std"] == 0.0
    assert sel["log_z_method"].values.tolist() == ["exact", "tais"]  # size 5: its best is @10
    assert sel.attrs["tied_with"] == ""  # -4.30 +- 0.05 is 3 errors below
    assert sel.attrs["tais_fallback"].count("trajectory-AIS log Z cannot decide") == 2
    assert "trajectory-AIS log Z cannot decide" in caplog.text
    assert refined["log_z_refined"].sel(n_hidden=5, checkpoint=10).item() == ""
    assert float(refined["ll_train"].sel(n_hidden=5, checkpoint=30)) == pytest.approx(
        -4.0 + 0.1 - 0.3)  # train moves with log Z too
    assert float(refined["ll_test_std"].sel(n_hidden=5, checkpoint=30)) == 0.0
    calls.clear()
    clear = [_with_std(fake_loglik(9, [0, 10], [-5.0, -3.0], method="tais"), [0.05, 0.05]),
             _with_std(fake_loglik(5, [0, 10], [-5.0, -4.0], method="tais"), [0.05, 0.05])]
    kept = refine_tais_ties(combine_loglik(clear), refine)
    assert not calls and kept.attrs["tais_fallback"] == ""
    assert select_model(kept).attrs["log_z_method"] == "tais"


def test_candidate_table_carries_the_stop_state() -> None:
    per = [fake_loglik(5, [0, 10], [-5.0, -4.0]), fake_loglik(3, [0, 10], [-5.0, -4.2])]
    per[0].attrs.update(stop_reason="early_stop", best_update=10, still_improving=0,
                        n_updates_done=12)
    per[1].attrs.update(stop_reason="max_updates", best_update=10, still_improving=1,
                        n_updates_done=10)
    sel = select_model(combine_loglik(per))
    assert sel["stop_reason"].values.tolist() == ["max_updates", "early_stop"]
    assert sel["still_improving"].values.tolist() == [1, 0]
    assert sel.attrs["stop_reason"] == "early_stop" and sel.attrs["n_updates_done"] == 12


def test_fig_loglik_draws_online_curve_best_and_stop_markers() -> None:
    """With the online curve: thin lines, a diamond at each size's best online update, an x
    where training stopped early, a triangle where the maximum was reached still rising."""
    per = []
    for n_hidden, reason, rising in ((5, "early_stop", 0), (3, "max_updates", 1)):
        ds = _with_std(fake_loglik(n_hidden, [0, 10, 30], [-5.1, -4.5, -4.0]), [0, 0.1, 0.1])
        ds = ds.assign_coords(eval_update=("eval", np.array([0, 10, 20, 30])))
        ds["ll_test_online"] = ("eval", np.array([-5.1, -4.45, -3.9, -4.05]))
        ds["ll_train_online"] = ("eval", np.array([-5.0, -4.35, -3.8, -3.95]))
        ds.attrs.update(stop_reason=reason, best_update=20, still_improving=rising,
                        n_updates_done=30)
        per.append(ds)
    fig = fig_loglik(combine_loglik(per))
    ax = fig.axes[0]
    diamonds = [ln for ln in ax.lines if ln.get_marker() == "D" and len(ln.get_xdata())]
    assert sorted(float(d.get_xdata()[0]) for d in diamonds) == [20.0, 20.0]
    assert [float(ln.get_ydata()[0]) for ln in ax.lines
            if ln.get_marker() == "x" and len(ln.get_xdata())] == [-4.05]
    assert len([ln for ln in ax.lines if ln.get_marker() == ">" and len(ln.get_xdata())]) == 1
    thin = [ln for ln in ax.lines if ln.get_linestyle() == "-" and len(ln.get_xdata()) == 3]
    assert len(thin) == 2 and all(float(ln.get_xdata()[0]) == 10.0 for ln in thin)
    assert len([c for c in ax.containers if len(c.lines[0].get_xdata())]) == 2  # error bars
    assert len([ln for ln in ax.lines if list(ln.get_ydata()) == [-5.0, -5.0]]) == 1  # floor


def test_fig_loglik_draws_curves_stars_and_floor() -> None:
    per = [fake_loglik(5, [0, 10, 30], [-5.1, -4.5, -4.0]),
           fake_loglik(3, [0, 10, 100], [-5.1, -4.2, -4.3])]
    ll = combine_loglik(per)
    fig = fig_loglik(ll)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    stars = [ln for ln in ax.lines if ln.get_marker() == "*"]
    assert len(stars) == 2
    assert sorted(float(s.get_ydata()[0]) for s in stars) == [-4.2, -4.0]
    # update 0 drawn at x = 0.5
    solid = [ln for ln in ax.lines if ln.get_linestyle() == "-" and len(ln.get_xdata()) > 2]
    assert all(float(ln.get_xdata()[0]) == 0.5 for ln in solid)
    floors = [ln for ln in ax.lines if list(ln.get_ydata()) == [-5.0, -5.0]]
    assert len(floors) == 1
    fig_pn = fig_loglik(ll, per_neuron=True)
    assert any(np.isclose(ln.get_ydata()[0], -4.0 / N_VIS) for ln in fig_pn.axes[0].lines
               if ln.get_marker() == "*")


@pytest.mark.workflow
def test_rules_run_in_snakemake(tmp_path) -> None:
    """The real rules and scripts (loglik -> select_model -> fig_loglik) on a hand-made raster
    and two model trajectories, in a throw-away workflow that includes only common.smk and
    likelihood.smk (the raster and models are source files there)."""
    pytest.importorskip("spikerbm.binarize", reason="split_arrays (helper A) not there yet")
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[1]
    wf = tmp_path / "wf"
    for name in ("workflow", "scripts", "config", "envs"):
        if (repo / name).is_dir():
            shutil.copytree(repo / name, wf / name)
    if not (wf / "envs" / "spikerbm.yaml").exists():  # snakemake hashes the conda: file
        (wf / "envs").mkdir(exist_ok=True)
        (wf / "envs" / "spikerbm.yaml").write_text("name: spikerbm\ndependencies: [python]\n")
    cfg = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    cfg["device"] = "cpu"
    cfg["train"]["n_hidden"] = [3, 5]
    cfg["likelihood"].update(exact_max_units=4, ais_chains=20, ais_betas=30, ais_repeats=2)
    (wf / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (wf / "config" / "sessions.tsv").write_text(
        "session_id\tsource\tparams\ns1\traster\tpath=results/s1/raster.nc\n")
    (wf / "Snakefile").write_text(
        'configfile: "config/config.yaml"\n'
        'include: "workflow/rules/common.smk"\n'
        'include: "workflow/rules/likelihood.smk"\n')
    rng = np.random.default_rng(3)
    n_bins = 400
    raster = xr.Dataset(
        {"raster": (("time_bin", "neuron"), (rng.random((n_bins, N_VIS)) < 0.2).astype(np.uint8))},
        coords={"time": ("time_bin", np.arange(n_bins) * 0.02),
                "epoch": ("time_bin", np.array(["all"] * n_bins)),
                "block": ("time_bin", np.repeat(np.arange(4), n_bins // 4)),
                "split": ("time_bin", np.repeat(np.array(["train", "test", "train", "train"]),
                                                n_bins // 4)),
                "unit_id": ("neuron", np.arange(100, 100 + N_VIS, dtype=np.int64)),
                "area": ("neuron", np.array(["VISp"] * 4 + ["CA1"] * 3)),
                "rate_hz": ("neuron", np.linspace(1.0, 7.0, N_VIS))},
        attrs={"bin_ms": 20.0, "dropped_units": "[]", "session_id": "s1"})
    io.write_netcdf(raster, wf / "results/s1/raster.nc")
    for m in (3, 5):
        model = fake_model(m, [0, 4, 20], seed=m).assign(W=lambda d: d["W"] * 0.2)
        io.write_netcdf(model, wf / f"results/s1/hidden~{m}/model.nc")
    env = dict(__import__("os").environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "-c1", "--nolock",
         "results/s1/selected.nc", "results/s1/figures/fig2_loglik.png"],
        cwd=wf, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    per3 = io.read_netcdf(wf / "results/s1/hidden~3/loglik.nc")
    per5 = io.read_netcdf(wf / "results/s1/hidden~5/loglik.nc")
    assert per3.attrs["log_z_method"] == "exact" and per5.attrs["log_z_method"] == "ais"  # 5 > 4
    assert "git_commit" in per3.attrs and per3.attrs["session_id"] == "s1"
    sel = io.read_netcdf(wf / "results/s1/selected.nc")
    both = io.read_netcdf(wf / "results/s1/loglik.nc")
    best = both["ll_test"].where(np.isfinite(both["ll_test"]))
    assert sel.attrs["ll_test"] == pytest.approx(float(best.max()))
    assert sel["rate_hz"].values.tolist() == raster["rate_hz"].values.tolist()
    assert (wf / "results/s1/figures/fig2_loglik.png").stat().st_size > 1000
    assert (wf / "results/logs/loglik/s1/hidden~3.log").exists()


# ------------------------------------------------------------------------ replicas (R > 1)
def test_replica_stats_on_a_constructed_table() -> None:
    from spikerbm.selection import replica_stats

    # rows: sizes; columns: replicas; NaN = not live (size 2 lost replica 1)
    best = np.array([[-5.0, -5.2, -5.1], [-4.9, -5.3, -5.0], [-6.0, np.nan, -6.2]])
    out = replica_stats(best)
    np.testing.assert_allclose(out["mean"], [-5.1, -76 / 15, -6.1], rtol=0, atol=1e-12)
    # by hand: s.e. = std(ddof=1) / sqrt(R_live): 0.1/sqrt(3); sqrt(39)/30/sqrt(3) = sqrt(13)/30
    # (deviations 1/6, -7/30, 1/15); 0.1*sqrt(2)/sqrt(2) = 0.1
    np.testing.assert_allclose(out["se"], [0.1 / np.sqrt(3), np.sqrt(13) / 30, 0.1],
                               rtol=0, atol=1e-12)
    assert out["winner"] == 1
    np.testing.assert_array_equal(out["n_live"], [3, 3, 2])
    np.testing.assert_array_equal(out["replica_wins"], [1, 2, 0])  # replica 1 prefers size 0
    # size 0 is 1/30 below the winner, inside hypot(0.120, 0.058) = 0.133; size 2 is not
    np.testing.assert_array_equal(out["within_se"], [True, False, False])
    one = replica_stats(best[:, :1])  # one replica: no standard error, nothing within it
    assert np.isnan(one["se"]).all() and not one["within_se"].any()
    with pytest.raises(ValueError, match="no finite test log-likelihood"):
        replica_stats(np.full((2, 2), np.nan))


def _replica_ll(best_by_replica: list[list[list[float]]], diverged: list[list[int]]
                ) -> xr.Dataset:
    """Session loglik of sizes 3 and 5, replicas from the nested lists [size][replica][ck]."""
    per = []
    for i, h in enumerate((3, 5)):
        reps = [fake_loglik(h, [0, 10, 30], vals) for vals in best_by_replica[i]]
        ds = xr.concat(reps, dim="replica", combine_attrs="override").assign_coords(
            replica=np.arange(len(reps)))
        per.append(ds.assign(diverged=("replica", np.asarray(diverged[i], dtype=np.int8))))
    return combine_loglik(per)


def test_replica_selection_drops_diverged_and_picks_primary(caplog) -> None:
    # size 5 wins on the replica mean (-4.0 vs -4.1); replica 0 of size 5 diverged (its -3.0
    # must not count) so the primary replica is the best live one, replica 2 (-3.9)
    ll = _replica_ll([[[-5, -4.1, -4.2], [-5, -4.0, -4.3], [-5, -4.2, -4.3]],
                      [[-5, -3.0, np.nan], [-5, -4.2, -4.1], [-5, -3.9, -4.0]]],
                     diverged=[[0, 0, 0], [1, 0, 0]])
    assert ll["ll_test"].dims == ("n_hidden", "replica", "checkpoint")
    with caplog.at_level(logging.INFO, logger="spikerbm.selection"):
        sel = select_model(ll)
    assert sel.attrs["n_hidden"] == 5 and sel.attrs["primary_replica"] == 2
    assert sel.attrs["ll_test"] == pytest.approx(-4.0, abs=1e-12)  # mean(-4.1, -3.9)
    assert sel.attrs["ll_test_se"] == pytest.approx(0.1, abs=1e-12)  # 0.2/sqrt(2)/sqrt(2)
    assert sel.attrs["replicas_live"] == 2 and sel.attrs["replicas_dropped"] == "0"
    # only replica 2 prefers size 5: replica 1 peaks at size 3 (-4.0 > -4.1), replica 0 has
    # no live size 5
    assert sel.attrs["replica_wins"] == 1
    np.testing.assert_array_equal(sel["replica_wins"].values, [2, 1])
    assert sel.attrs["checkpoint"] == 10  # the primary's best checkpoint
    np.testing.assert_array_equal(sel["replica_checkpoint"].values, [[10, 10, 10], [-1, 30, 10]])
    # size 3: mean -4.1 +- 0.0577; within hypot(0.1, 0.0577) = 0.115 of -4.0
    assert sel.attrs["within_se"] == "3" and sel.attrs["tied_with"] == "3"
    assert "best in 1 of 3 replicas" in caplog.text
    # selected.nc: every live replica's parameters at its own best checkpoint
    base = fake_model(5, [0, 10, 30], seed=1)
    model = xr.concat([base, fake_model(5, [0, 10, 30], seed=2),
                       fake_model(5, [0, 10, 30], seed=3)], dim="replica")
    model = model.assign_coords(replica=[0, 1, 2])
    out = selected_dataset(model, sel)
    assert out["replica"].values.tolist() == [1, 2]
    np.testing.assert_array_equal(out["W"].sel(replica=1).values,
                                  model["W"].sel(replica=1, checkpoint=30).values)
    np.testing.assert_array_equal(out["W"].sel(replica=2).values,
                                  model["W"].sel(replica=2, checkpoint=10).values)
    from spikerbm.model import primary_replica

    np.testing.assert_array_equal(primary_replica(out)["W"].values, out["W"].sel(replica=2))


def test_one_replica_dataset_selects_as_a_single_model() -> None:
    from spikerbm.model import with_replica_dim

    per = [fake_loglik(5, [0, 10, 30], [-5.1, -4.5, -4.0]),
           fake_loglik(3, [0, 10, 30], [-5.1, -4.2, -4.3])]
    ll = combine_loglik(per)
    single = select_model(ll)
    assert "replica" not in single.dims and "replicas" not in single.attrs
    wrapped = with_replica_dim(ll)
    assert wrapped["ll_test"].dims == ("replica", "n_hidden", "checkpoint")
    assert with_replica_dim(wrapped) is wrapped
    one = select_model(wrapped)  # R = 1 written with the dim: same pick, no s.e.
    assert one.attrs["n_hidden"] == single.attrs["n_hidden"] == 5
    assert one.attrs["ll_test"] == single.attrs["ll_test"] and np.isnan(one.attrs["ll_test_se"])
