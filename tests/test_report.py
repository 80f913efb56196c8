"""The per-session summary: every field read from its artifact, warnings when checks fail."""

from __future__ import annotations

import xarray as xr

from spikerbm import report


def _artifacts(*, beats_floor: int, equilibrated: int) -> dict[str, xr.Dataset]:
    return {
        "selected": xr.Dataset(attrs={"n_hidden": 7, "ll_test": -51.25, "beats_floor": beats_floor,
                                      "warning": "floor -50.0 not beaten"}),
        "statistics": xr.Dataset(attrs={"equilibrated": equilibrated,
                                        "equilibration_reason": "burn-in 3 < 20 x tau 9.1",
                                        "score_covariance": 0.8125}),
        "couplings": xr.Dataset(attrs={"truth_pearson_J": 0.6875}),
        "dynamics": xr.Dataset(attrs={"ms_per_sweep": 21.5}),
    }


def test_summary_reads_each_field_from_its_artifact():
    table = report.session_summary(_artifacts(beats_floor=1, equilibrated=1))
    values = dict(zip(table.artifact + "." + table.quantity, table.value, strict=True))
    assert values["selected.n_hidden"] == "7"
    assert values["selected.ll_test"] == "-51.25"
    assert values["statistics.score_covariance"] == "0.8125"
    assert values["couplings.truth_pearson_J"] == "0.6875"
    assert values["dynamics.ms_per_sweep"] == "21.5"
    assert values["dynamics.truth_ms_per_sweep"] == "n/a"  # absent attribute, not invented
    assert len(table) == len(report.SUMMARY_FIELDS)


def test_no_warnings_when_checks_pass():
    assert report.session_warnings(_artifacts(beats_floor=1, equilibrated=1)) == []


def test_floor_and_equilibrium_failures_are_loud():
    warnings = report.session_warnings(_artifacts(beats_floor=0, equilibrated=0))
    assert len(warnings) == 2
    assert "NO MODEL BEATS THE INDEPENDENT-SITE FLOOR" in warnings[0]
    assert "floor -50.0 not beaten" in warnings[0]
    assert "EQUILIBRIUM CHECK" in warnings[1] and "burn-in 3 < 20 x tau 9.1" in warnings[1]
    html = report.summary_html(report.session_summary(_artifacts(beats_floor=0, equilibrated=0)),
                               warnings, session_id="s<1>")
    assert "s&lt;1&gt;" in html and html.count("&#9888;") == 2
