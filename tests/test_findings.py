"""Findings (spikerbm.findings): every code is constructed from the attributes a stage stores,
and is absent from a clean session. The stages' own numbers (lag clamp, score reasons, split
comparison, unassigned areas) are tested with those stages (test_dynamics, test_statistics,
test_areas); the real-data workflow test (test_real_example) checks the whole chain."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from spikerbm import findings as F
from spikerbm import report


def _selected(grid=(5, 9, 17), chosen=9, checkpoints=(700, 600, 300), **attrs) -> xr.Dataset:
    i = list(grid).index(chosen)
    return xr.Dataset(
        {"ll_test": ("candidate", [-30.5, -30.0, -30.25][: len(grid)]),
         "selected": ("candidate", [int(g == chosen) for g in grid])},
        coords={"n_hidden": ("candidate", list(grid)),
                "checkpoint": ("candidate", list(checkpoints))},
        attrs={"n_hidden": chosen, "checkpoint": checkpoints[i], "ll_train": -29.5,
               "ll_test": -30.0, "ll_test_std": 0.01, "floor_test": -31.0, "beats_floor": 1,
               **attrs})


def _clean() -> dict:
    """A session every check passes: interior size, converged, equilibrated, scores in [0, 1]."""
    return {
        "selected": _selected(),
        "models": {5: {"n_updates_done": 1000}, 9: {"n_updates_done": 1000},
                   17: {"n_updates_done": 1000}},
        "loglik": {"n_train": 7001, "n_test": 3001},
        "statistics": {"equilibrated": 1, "tau_energy_sweeps": 3.0, "tau_k_sweeps": 2.5,
                       "burn_in_sweeps": 2000,
                       "score_covariance": 0.75, "score_covariance_reason": "in range",
                       "score_corr3": 0.5, "score_corr3_reason": "in range",
                       "covariance_r_train_test": 0.875, "corr3_r_train_test": 0.625,
                       "ll_test_minus_train": -0.5, "ll_test_minus_train_se": 0.125,
                       "k_mean_train": 30.0, "k_mean_train_se": 0.5, "k_mean_test": 29.5,
                       "k_mean_test_se": 0.75, "k_shift_z": -0.55},
        "couplings": {"n_unassigned_neurons": 0, "unassigned_areas": '["root"]'},
        "dynamics": {"lag_clamped": 0, "fit_first_lag_sweeps": 2.0, "fit_at_bound": 0,
                     "ms_per_sweep": 10.0, "bin_ms": 20.0, "fit_lag_lo": 1,
                     "fit_n_sub_sweep_lags": 0},
    }


def _codes(found, level=None) -> set[str]:
    return {f.code for f in found if level is None or f.level == level}


def test_clean_session_has_only_ok_findings():
    found = F.session_findings(_clean())
    assert {f.level for f in found} == {"ok"}
    assert _codes(found) == {"beats_floor", "grid_interior", "converged", "equilibrated"}
    # messages name the numbers
    msg = {f.code: f.message for f in found}
    assert "by 1 nats/sample" in msg["beats_floor"] and "[5, 9, 17]" in msg["grid_interior"]
    assert "peaked at update 600 of 1000" in msg["converged"]


def _with(**changes) -> dict:
    art = _clean()
    for key, value in changes.items():
        artifact, _, attr = key.partition("__")
        if artifact == "selected":
            art["selected"] = art["selected"].assign_attrs({attr: value})
        else:
            art[artifact] = {**art[artifact], attr: value}
    return art


def test_marginal_gain_over_the_floor_is_a_caution():
    # 0.004 nats/sample above the floor: below MIN_GAIN (0.01), so not reported as structure
    found = F.session_findings(_with(selected__ll_test=-30.996))
    assert "marginal_gain" in _codes(found) and "beats_floor" not in _codes(found)
    # a gain of 0.05 clears MIN_GAIN but not 2 x a log Z error of 0.03
    found = F.session_findings(_with(selected__ll_test=-30.95, selected__ll_test_std=0.03))
    assert "marginal_gain" in _codes(found)
    found = F.session_findings(_with(selected__ll_test=-30.95, selected__ll_test_std=0.001))
    assert "beats_floor" in _codes(found) and "marginal_gain" not in _codes(found)


def test_below_floor_is_a_problem():
    found = F.session_findings(_with(selected__beats_floor=0, selected__ll_test=-31.5))
    assert found[0].level == "problem" and found[0].code == "below_floor"
    assert "-31.5" in found[0].message and "beats_floor" not in _codes(found)


def test_grid_edge_suggests_the_next_size():
    art = _clean()
    art["selected"] = _selected(chosen=17, checkpoints=(700, 600, 300))
    (f,) = [f for f in F.session_findings(art) if f.code == "grid_edge"]
    assert f.level == "caution" and "add 32 to train.n_hidden" in f.message  # 17 * 17 / 9
    art["selected"] = _selected(grid=(8, 16, 32), chosen=8)
    (f,) = [f for f in F.session_findings(art) if f.code == "grid_edge"]
    assert "smallest" in f.message and "add 4 " in f.message
    art["selected"] = _selected(grid=(8, 16, 32), chosen=32, tied_with="[16, 32]")
    (f,) = [f for f in F.session_findings(art) if f.code == "grid_edge"]
    assert "tied within errors with [16]" in f.message and "add 64" in f.message
    art["selected"] = _selected(grid=(8,), chosen=8, checkpoints=(300,))
    assert "only one hidden size" in F.session_findings(art)[0].message


def test_grid_edge_of_an_unconverged_model_says_the_edge_is_not_meaningful():
    """New-user trial: the quick start's largest size won while still improving, and
    grid_edge asked for an even larger one (data planted with 15 hidden units)."""
    art = _clean()
    art["selected"] = _selected(chosen=17, checkpoints=(700, 600, 1000))
    art["models"][17] = {"n_updates_done": 1000, "stop_reason": "max_updates",
                         "best_update": 1000, "still_improving": 1}
    found = {f.code: f for f in F.session_findings(art)}
    assert found["not_converged"].level == "problem"
    msg = found["grid_edge"].message
    assert "did not converge (not_converged)" in msg and "raise train.n_updates first" in msg
    assert "add 32 to train.n_hidden if the edge remains" in msg
    # a converged edge keeps the plain advice; another size's non-convergence does not count
    art["models"][17] = {"n_updates_done": 1000, "stop_reason": "early_stop",
                         "best_update": 600, "still_improving": 0}
    art["models"][5] = {"n_updates_done": 1000, "still_improving": 1, "best_update": 1000}
    (f,) = [f for f in F.session_findings(art) if f.code == "grid_edge"]
    assert "not_converged" not in f.message and "may lie beyond; add 32" in f.message


def test_truth_recovery_of_synthetic_sessions():
    art = _with(couplings__truth_pearson_J=0.79, couplings__truth_pearson_H=0.97,
                dynamics__truth_ms_per_sweep=20.0, dynamics__ms_per_sweep=24.6)
    (f,) = [f for f in F.session_findings(art) if f.code.startswith("truth_")]
    assert (f.level, f.code) == ("ok", "truth_recovered")
    assert "J_ij with the planted ones 0.79" in f.message and "H_i 0.97" in f.message
    assert "24.6 ms per sweep vs planted 20 (+23%)" in f.message
    (f,) = [f for f in F.session_findings(_with(couplings__truth_pearson_J=0.31))
            if f.code.startswith("truth_")]
    assert (f.level, f.code) == ("caution", "truth_not_recovered") and "0.31" in f.message
    assert not [f for f in F.session_findings(_clean()) if f.code.startswith("truth_")]


def test_not_converged_from_the_last_checkpoint_without_stopping_state():
    art = _clean()
    art["selected"] = _selected(checkpoints=(700, 1000, 1000))
    found = [f for f in F.session_findings(art) if f.code == "not_converged"]
    # the selected size (9) is a problem, the other size at its last update (17) a caution
    assert [(f.level, "the selected model" in f.message) for f in found] == [
        ("problem", True), ("caution", False)]
    assert "n_hidden 17" in found[1].message and "raise train.n_updates" in found[0].message
    assert "converged" not in _codes(F.session_findings(art))


def test_not_converged_from_the_online_stopping_state():
    art = _clean()
    art["models"] = {5: {"n_updates_done": 1000}, 17: {"n_updates_done": 1000},
                     9: {"n_updates_done": 5000, "stop_reason": "max_updates",
                         "best_update": 4950, "still_improving": 1}}
    (f,) = [f for f in F.session_findings(art) if f.code == "not_converged"]
    assert f.level == "problem" and "maximum of 5000 updates" in f.message and "4950" in f.message
    art["models"][9] = {"n_updates_done": 2400, "stop_reason": "early_stop",
                        "best_update": 1400, "still_improving": 0}
    found = F.session_findings(art)
    assert "not_converged" not in _codes(found)
    (f,) = [f for f in found if f.code == "converged"]
    assert "stopped early at update 2400" in f.message and "best update 1400" in f.message
    # stopped early without ever leaving the floor (best online LL 0.005 above it < 0.01)
    art["models"][9] = {"n_updates_done": 300, "stop_reason": "early_stop", "best_update": 200,
                        "still_improving": 0, "best_ll_test_online": -30.995,
                        "train_config": '{"min_delta": 0.01, "patience": 300}'}
    found = F.session_findings(art)
    (f,) = [f for f in found if f.code == "stopped_on_plateau"]
    assert f.level == "problem" and "only 0.005 nats/sample above" in f.message
    assert "converged" not in _codes(found) and "train.patience" in f.message
    art["models"][9]["best_ll_test_online"] = -30.5  # 0.5 above the floor: a real stop
    assert "converged" in _codes(F.session_findings(art))
    # still_improving = -1 (no online log-likelihood): judged by the checkpoints instead
    art["selected"] = _selected(checkpoints=(700, 1000, 300))
    art["models"][9] = {"n_updates_done": 1000, "stop_reason": "max_updates",
                        "best_update": -1, "still_improving": -1}
    (f,) = [f for f in F.session_findings(art) if f.code == "not_converged"]
    assert f.level == "problem" and "its last update (1000)" in f.message


def test_online_disagreement_is_reported():
    # the selection's format: n_hidden@checkpoint entries, ';'-separated ("" when none)
    found = F.session_findings(_with(selected__online_disagrees="9@600;17@300",
                                     selected__online_max_abs_z=4.5, selected__disagree_z=3.0))
    (f,) = [f for f in found if f.code == "online_disagrees"]
    assert f.level == "caution" and "9@600, 17@300" in f.message and "|z| = 4.5 > 3" in f.message
    clean = F.session_findings(_with(selected__online_disagrees=""))
    assert "online_disagrees" not in _codes(clean)


def test_test_above_train_names_the_shift_of_activity():
    art = _with(statistics__ll_test_minus_train=0.5, statistics__k_mean_test=25.0,
                statistics__k_shift_z=-5.4)
    (f,) = [f for f in F.session_findings(art) if f.code == "test_above_train"]
    assert f.level == "caution" and "0.5 +- 0.12" in f.message and "z = 4" in f.message
    assert "test 25" in f.message and "splits differ in activity" in f.message
    # within the noise (z = 1.6 < Z_NOISE): nothing
    art = _with(statistics__ll_test_minus_train=0.2)
    assert "test_above_train" not in _codes(F.session_findings(art))


def test_split_shift_without_test_above_train():
    # test below train as expected, but the test split is 20 % more active
    art = _with(statistics__k_mean_test=36.0, statistics__k_shift_z=F.Z_SHIFT + 3.5)
    (f,) = [f for f in F.session_findings(art) if f.code == "split_shift"]
    assert f.level == "caution" and "train 30 +- 0.5, test 36 +- 0.75" in f.message
    assert "z = 6.5, +20%" in f.message and "binarize.n_blocks" in f.message
    # a shift within Z_SHIFT standard errors is not reported
    art = _with(statistics__k_shift_z=F.Z_SHIFT - 0.25)
    assert "split_shift" not in _codes(F.session_findings(art))


def test_few_test_bins():
    (f,) = [f for f in F.session_findings(_with(loglik__n_test=F.MIN_TEST_BINS - 1))
            if f.code == "few_test_bins"]
    assert f.level == "caution" and f"only {F.MIN_TEST_BINS - 1} test bins" in f.message
    assert "few_test_bins" not in _codes(F.session_findings(_with(loglik__n_test=F.MIN_TEST_BINS)))


def test_equilibrium_failed_is_a_problem_with_its_reason():
    art = _with(statistics__equilibrated=0,
                statistics__equilibration_reason="burn-in 3 < 20 x tau 9.1")
    f = F.session_findings(art)[0]
    assert (f.level, f.code) == ("problem", "equilibrium_failed")
    assert "burn-in 3 < 20 x tau 9.1" in f.message and "equilibrated" not in _codes([f])


@pytest.mark.parametrize(("score", "level", "code", "prefix"), [
    (math.nan, "caution", "score_undefined", "undefined: "),
    (-0.51, "problem", "score_out_of_range", "negative: "),
    (1.34, "caution", "score_out_of_range", "above 1: "),
])
def test_scores_outside_the_unit_interval_carry_their_reason(score, level, code, prefix):
    # reasons as spikerbm.statistics.score_reason words them; the finding drops the prefix
    art = _with(statistics__score_covariance=score,
                statistics__score_covariance_reason=f"{prefix}the stage's reason")
    (f,) = [f for f in F.session_findings(art) if f.code == code]
    assert f.level == level and "covariances" in f.message and "the stage's reason" in f.message
    assert prefix not in f.message
    # with the score's Monte Carlo error: outside [0, 1] by less than Z_NOISE s.d. is noise
    art = _with(statistics__score_covariance=score, statistics__score_covariance_std=0.3,
                statistics__score_covariance_reason=f"{prefix}the stage's reason")
    found = [f for f in F.session_findings(art) if f.code == code]
    if code == "score_out_of_range":  # 0.51 or 0.34 outside, < 2 x 0.3
        (f,) = found
        assert f.level == "caution" and "+- 0.3" in f.message and "within 2 s.d." in f.message
        art["statistics"]["score_covariance_std"] = 0.1  # now 3.4 or 5.1 s.d. outside
        (f,) = [f for f in F.session_findings(art) if f.code == code]
        assert f.level == level and "within" not in f.message
    for edge in (0.0, 1.0):  # the closed interval is in range
        assert not _codes(F.session_findings(_with(statistics__score_corr3=edge))) & {
            "score_undefined", "score_out_of_range"}


def test_data_limited_below_the_reliability_threshold():
    art = _with(statistics__covariance_r_train_test=0.44)
    (f,) = [f for f in F.session_findings(art) if f.code == "data_limited"]
    assert f.level == "caution" and "r = 0.44" in f.message and "covariances" in f.message
    art = _with(statistics__covariance_r_train_test=F.MIN_R_TRAIN_TEST)
    assert "data_limited" not in _codes(F.session_findings(art))


def test_lag_clamp_and_rescale_findings():
    art = _with(dynamics__lag_clamped=1, dynamics__longest_segment_bins=40,
                dynamics__lag_clamp_reason="dynamics.max_lag_bins = 100 exceeds ...",
                dynamics__fit_first_lag_sweeps=0.4, dynamics__ms_per_sweep=25.0,
                dynamics__bin_ms=10.0, dynamics__fit_n_sub_sweep_lags=2,
                dynamics__fit_at_bound=1)
    found = {f.code: f for f in F.session_findings(art)}
    assert "max_lag_bins <= 39" in found["lag_clamped"].message
    assert "fitted 25 ms per sweep" in found["rescale_below_bin"].message
    assert "2 fitted lag(s)" in found["rescale_below_bin"].message
    assert "at lag 3" in found["rescale_below_bin"].message  # ceil(25 / 10)
    assert "max_lag_sweeps" in found["rescale_at_bound"].message
    assert {found[c].level for c in ("lag_clamped", "rescale_below_bin", "rescale_at_bound")} == {
        "caution"}
    # exactly one sweep at the first lag is not interpolation
    assert "rescale_below_bin" not in _codes(F.session_findings(
        _with(dynamics__fit_first_lag_sweeps=1.0)))


def test_unassigned_areas_and_stage_warnings():
    art = _with(couplings__n_unassigned_neurons=156, couplings__unassigned_areas='["root"]',
                dynamics__warning="something the stage said")
    found = {f.code: f for f in F.session_findings(art)}
    assert found["unassigned_areas"].level == "ok" and "156 neurons carry a label" in found[
        "unassigned_areas"].message
    assert found["stage_warning"].level == "problem"
    assert found["stage_warning"].message == "dynamics: something the stage said"


def test_areas_too_small_names_the_largest_area_and_the_key():
    """The new-user NWB file: areas of 10, 10 and 5 neurons under the default threshold 30."""
    small = {"n_area_regions": 0, "min_area_neurons": 30, "largest_area": "CA1",
             "largest_area_neurons": 10}
    found = {f.code: f for f in F.session_findings(_with(**{f"couplings__{k}": v
                                                           for k, v in small.items()}))}
    assert found["areas_too_small"].level == "caution"
    msg = found["areas_too_small"].message
    assert "couplings.min_area_neurons = 30" in msg and "CA1 with 10" in msg and "to 10" in msg
    # an area at the threshold, or no neuron with an area at all (unassigned_areas says it)
    for attrs in ({**small, "n_area_regions": 1}, {**small, "largest_area_neurons": 0}):
        art = _with(**{f"couplings__{k}": v for k, v in attrs.items()})
        assert "areas_too_small" not in _codes(F.session_findings(art))


def test_order_is_most_severe_first_and_levels_are_checked():
    art = _with(statistics__equilibrated=0, loglik__n_test=10)
    levels = [f.level for f in F.session_findings(art)]
    assert levels == sorted(levels, key=["problem", "caution", "ok"].index)
    with pytest.raises(ValueError, match="level"):
        F.Finding("warning", "x", "y")


def test_findings_travel_through_summary_tsv_and_the_report_table():
    found = F.session_findings(_with(statistics__covariance_r_train_test=0.44))
    table = report.session_summary({"selected": _clean()["selected"]}, found)
    assert report.findings_of_summary(table) == found
    page = report.summary_html(table, found, session_id="s<1>")
    assert "s&lt;1&gt;" in page and page.count("<li") == len(found)
    assert report.LEVEL_COLOURS["caution"] in page and report.LEVEL_COLOURS["ok"] in page
    cross = report.findings_report_table({"a": found, "b": found[:1]})
    assert list(cross.columns) == ["session", "level", "code", "message"]
    assert list(cross.session) == ["a"] * len(found) + ["b"]
    html = report.table_html(cross, title="Findings")
    assert html.count(report.LEVEL_COLOURS["caution"]) == int((cross.level == "caution").sum())
    assert np.all(cross.code.values[: len(found)] == [f.code for f in found])
