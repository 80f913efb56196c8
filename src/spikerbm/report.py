"""Per-session summary for the HTML report: the key numbers of every stage and loud warnings."""

from __future__ import annotations

import html
from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

#: (artifact, attribute, what it means) rows of the summary, in report order.
SUMMARY_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("selected", "n_hidden", "selected number of hidden units"),
    ("selected", "checkpoint", "selected checkpoint (update)"),
    ("selected", "method", "log Z method"),
    ("selected", "ll_train", "train log-likelihood (nats/sample)"),
    ("selected", "ll_test", "test log-likelihood (nats/sample)"),
    ("selected", "floor_test", "independent-site test log-likelihood (floor)"),
    ("selected", "beats_floor", "selected model beats the floor (1/0)"),
    ("statistics", "equilibrated", "equilibrium check passed (1/0)"),
    ("statistics", "equilibration_reason", "equilibrium check"),
    ("statistics", "score_covariance", "score: covariances (0 = independent model, 1 = test set)"),
    ("statistics", "score_corr3", "score: 3-point correlations"),
    ("statistics", "covariance_r_train_test", "Pearson r covariances, train vs test"),
    ("statistics", "covariance_r_train_generated", "Pearson r covariances, train vs generated"),
    ("statistics", "corr3_r_train_test", "Pearson r 3-point, train vs test"),
    ("statistics", "corr3_r_train_generated", "Pearson r 3-point, train vs generated"),
    ("statistics", "rate_r_train_generated", "Pearson r rates, train vs generated"),
    ("statistics", "error_ratio_rate", "rates: d(train, generated) / d(train, test)"),
    ("couplings", "area_within_mean_J", "mean within-area J"),
    ("couplings", "area_cross_mean_J", "mean cross-area J"),
    ("couplings", "truth_pearson_J", "Pearson r of J with the planted model's J"),
    ("couplings", "truth_pearson_H", "Pearson r of H with the planted model's H"),
    ("dynamics", "ms_per_sweep", "fitted time rescale (ms per sweep)"),
    ("dynamics", "truth_ms_per_sweep", "planted time rescale (ms per sweep)"),
    ("dynamics", "ms_per_sweep_rel_error", "relative error of the fitted rescale"),
    ("dynamics", "fit_max_abs_dev", "max |C_data - C_model| on the fit range"),
    ("dynamics", "baseline_max_abs_dev_fit", "same for the independent-site baseline"),
    ("dynamics", "tau_e_data_ms", "1/e decay time of C(tau), data (ms)"),
    ("dynamics", "tau_int_data_ms", "integrated correlation time, data (ms)"),
)


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "n/a" if not np.isfinite(value) else f"{float(value):.4g}"
    return str(value)


def session_summary(artifacts: Mapping[str, xr.Dataset]) -> pd.DataFrame:
    """Table of the key numbers of a session.

    Parameters
    ----------
    artifacts
        Datasets by artifact name (``selected``, ``statistics``, ``couplings``, ``dynamics``).

    Returns
    -------
    pandas.DataFrame
        Columns ``artifact``, ``quantity``, ``description``, ``value``; an attribute the
        artifact does not have (e.g. ground truth of a real session) is ``n/a``.
    """
    rows = []
    for artifact, attr, description in SUMMARY_FIELDS:
        ds = artifacts.get(artifact)
        value = ds.attrs.get(attr, "n/a") if ds is not None else "n/a"
        rows.append({"artifact": artifact, "quantity": attr, "description": description,
                     "value": _fmt(value)})
    return pd.DataFrame(rows)


def session_warnings(artifacts: Mapping[str, xr.Dataset]) -> list[str]:
    """Loud warnings: no model beats the floor, samples not at equilibrium, stage warnings."""
    out = []
    selected = artifacts.get("selected")
    if selected is not None and int(selected.attrs.get("beats_floor", 1)) == 0:
        out.append("NO MODEL BEATS THE INDEPENDENT-SITE FLOOR on test data: "
                   + str(selected.attrs.get("warning", "")))
    stats = artifacts.get("statistics")
    if stats is not None and int(stats.attrs.get("equilibrated", 1)) == 0:
        out.append("GENERATED SAMPLES FAILED THE EQUILIBRIUM CHECK (statistics are not "
                   f"equilibrium statistics): {stats.attrs.get('equilibration_reason', '')}")
    for name, ds in artifacts.items():
        if name != "selected" and ds is not None and ds.attrs.get("warning"):
            out.append(f"{name}: {ds.attrs['warning']}")
    return out


def summary_html(table: pd.DataFrame, warnings: list[str], *, session_id: str) -> str:
    """A small self-contained HTML page of the summary table and warnings."""
    warn = "".join(
        f'<p style="color:#b00;font-weight:bold">&#9888; {html.escape(w)}</p>' for w in warnings
    ) or '<p style="color:#070">No warnings.</p>'
    body = table.to_html(index=False, escape=True, border=0)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>spikerbm summary: {html.escape(session_id)}</title>"
        "<style>body{font-family:sans-serif;margin:1em}td,th{padding:2px 8px;text-align:left}"
        "tr:nth-child(even){background:#f3f3f3}</style></head><body>"
        f"<h2>Session {html.escape(session_id)}</h2>{warn}{body}</body></html>"
    )
