"""The per-session summary (every field read from its artifact, findings first) and the report
tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import xarray as xr

from spikerbm import report
from spikerbm.findings import Finding


def _artifacts() -> dict[str, xr.Dataset]:
    return {
        "selected": xr.Dataset(attrs={"n_hidden": 7, "ll_test": -51.25, "beats_floor": 1}),
        "model": xr.Dataset(attrs={"stop_reason": "early_stop", "best_update": 1400}),
        "loglik": xr.Dataset(attrs={"n_test": 3011}),
        "statistics": xr.Dataset(attrs={"equilibrated": 1, "score_covariance": 0.8125,
                                        "k_mean_train": 31.5}),
        "couplings": xr.Dataset(attrs={"truth_pearson_J": 0.6875}),
        "dynamics": xr.Dataset(attrs={"ms_per_sweep": 21.5, "max_lag_bins": 39}),
    }


def test_summary_reads_each_field_from_its_artifact():
    table = report.session_summary(_artifacts())
    values = dict(zip(table.artifact + "." + table.quantity, table.value, strict=True))
    assert values["selected.n_hidden"] == "7"
    assert values["selected.ll_test"] == "-51.25"
    assert values["model.stop_reason"] == "early_stop" and values["model.best_update"] == "1400"
    assert values["loglik.n_test"] == "3011" and values["statistics.k_mean_train"] == "31.5"
    assert values["statistics.score_covariance"] == "0.8125"
    assert values["couplings.truth_pearson_J"] == "0.6875"
    assert values["dynamics.ms_per_sweep"] == "21.5" and values["dynamics.max_lag_bins"] == "39"
    assert values["dynamics.truth_ms_per_sweep"] == "n/a"  # absent attribute, not invented
    assert len(table) == len(report.SUMMARY_FIELDS)


def test_summary_lists_findings_first_in_colour():
    found = [Finding("problem", "below_floor", "no model beats the floor"),
             Finding("ok", "equilibrated", "passed")]
    table = report.session_summary(_artifacts(), found)
    assert list(table.artifact[:2]) == ["finding", "finding"]
    assert list(table.value[:2]) == ["problem", "ok"]
    assert len(table) == 2 + len(report.SUMMARY_FIELDS)
    page = report.summary_html(table, found, session_id="s<1>")
    assert "s&lt;1&gt;" in page and "1 problem" in page and "0 caution" in page
    assert page.index(report.LEVEL_COLOURS["problem"]) < page.index("Key numbers")
    assert "no model beats the floor" in page and page.count("<li") == 2


def _selected(floor: float) -> xr.Dataset:
    return xr.Dataset(
        {"ll_train": ("candidate", [-9.5, -9.75, -9.25]),
         "ll_test": ("candidate", [-10.5, -10.0, -10.25]),
         "ll_test_std": ("candidate", [0.0, 0.0, 0.125]),
         "log_z_method": ("candidate", ["exact", "exact", "ais"]),
         "selected": ("candidate", [0, 1, 0])},
        coords={"n_hidden": ("candidate", [3, 7, 11]), "checkpoint": ("candidate", [5, 0, 13])},
        attrs={"floor_test": floor, "n_hidden": 7})


def test_selected_models_table_has_one_row_per_size_and_flags_the_floor():
    table = report.selected_models_table({"s1": _selected(-10.25), "s2": _selected(-11.0)})
    assert len(table) == 6 and list(table.session) == ["s1"] * 3 + ["s2"] * 3
    s1 = table[table.session == "s1"].set_index("hidden units")
    assert list(s1.index) == ["3", "7", "11"]
    assert s1.loc["11", "best checkpoint"] == "13" and s1.loc["11", "LL test"] == "-10.25"
    assert s1.loc["11", "log Z method"] == "ais" and s1.loc["11", "LL test s.d."] == "0.125"
    # -10.25 is not strictly above the floor -10.25; -10.5 is below; -10.0 beats it by 0.25
    assert list(s1["beats floor"]) == ["NO", "yes", "NO"]
    assert list(s1["LL test - floor"]) == ["-0.25", "0.25", "0"]
    assert list(s1["selected"]) == ["", "selected", ""]
    assert set(table[table.session == "s2"]["beats floor"]) == {"yes"}
    with pytest.raises(ValueError, match="session bad: .*candidate table"):
        report.selected_models_table({"bad": xr.Dataset(attrs={"n_hidden": 7})})


def test_attrs_table_keeps_session_order_and_marks_missing_values():
    fields = (("ms_per_sweep", "fitted"), ("truth_ms_per_sweep", "planted"))
    table = report.attrs_table({"z": {"ms_per_sweep": 21.5}, "a": {"ms_per_sweep": float("nan"),
                                                                 "truth_ms_per_sweep": 20.0}},
                               fields)
    assert list(table.columns) == ["session", "fitted", "planted"]
    assert table.values.tolist() == [["z", "21.5", "n/a"], ["a", "n/a", "20"]]
    for name, (artifact, table_fields) in report.TABLE_FIELDS.items():
        assert artifact in {"statistics", "couplings", "dynamics"} and name in report.TABLE_TITLES
        assert len({title for _, title in table_fields}) == len(table_fields)


def test_table_html_escapes_and_marks_failed_checks_red():
    table = report.selected_models_table({"s<1>": _selected(-10.25)})
    page = report.table_html(table, title="T & U", note="n<1")
    assert "s&lt;1&gt;" in page and "T &amp; U" in page and "n&lt;1" in page
    assert page.count('style="color:#b00;font-weight:bold">NO<') == 2
    assert page.count("<tr>") == 1 + len(table)


def test_tables_keep_the_digits_their_uncertainty_resolves():
    """model_comparison.tsv printed 17-digit floats (new-user trial): each value keeps the
    decimal of its uncertainty's 2nd significant digit and at least 4 significant digits."""
    assert report.round_to_error(-0.31336861200109706, 8.1e-5) == -0.313369
    assert report.round_to_error(-0.31336861200109706) == -0.3134
    assert report.round_to_error(1234.5678, 0.5) == 1234.57
    assert report.round_to_error(1234.5678, 30.0) == 1235.0  # never below 4 digits
    assert math.isnan(report.round_to_error(math.nan, 0.1))
    table = pd.DataFrame({"session": ["a", "b"],
                          "rbm_minus_pairwise": [1.53212e-4, 2.0e-3],
                          "rbm_minus_pairwise_std": [8.12345e-5, 0.0],  # exact log Z: 0
                          "rbm_minus_pairwise_sem": [3.3333e-6, math.nan],
                          "j_slope": [1.23456789, math.nan], "n_neurons": [3, 4]})
    out = report.rounded(table, report.MODEL_COMPARISON_ERRORS)
    # the smaller positive error (3.3e-6) sets the precision; no error: 4 digits
    assert list(out["rbm_minus_pairwise"]) == [1.532e-4, 2.0e-3]
    assert list(out["rbm_minus_pairwise_std"]) == [8.1e-5, 0.0]
    assert out["rbm_minus_pairwise_sem"][0] == 3.3e-6 and out["j_slope"][0] == 1.235
    assert list(out["n_neurons"]) == [3, 4] and math.isnan(out["j_slope"][1])
    assert "-0.313369" in report.rounded(
        pd.DataFrame({"mean": [-0.31336861200109706], "se": [8.1e-5]}),
        report.ATLAS_ERRORS).to_csv(sep="\t")
    text = report.formatted(out, digits=None)
    assert list(text["j_slope"]) == ["1.235", "n/a"]
