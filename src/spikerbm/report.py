"""Per-session summary and cross-session tables of the HTML report, with the session's findings
(:mod:`spikerbm.findings`) in colour: green = ok, amber = caution, red = problem."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from spikerbm.findings import LEVELS, Finding

#: (artifact, attribute, what it means) rows of the summary, in report order. ``model`` is the
#: selected size's ``model.nc``, ``loglik`` the session's combined ``loglik.nc``.
SUMMARY_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("loglik", "n_neurons", "neurons in the model"),
    ("loglik", "n_train", "train bins"),
    ("loglik", "n_test", "test bins"),
    ("selected", "n_hidden", "selected number of hidden units"),
    ("selected", "checkpoint", "selected checkpoint (update)"),
    ("model", "n_updates_done", "updates trained (selected size)"),
    ("model", "stop_reason", "why training stopped (selected size)"),
    ("model", "best_update", "update of the best online test log-likelihood"),
    ("model", "still_improving", "still improving at the maximum number of updates (1/0)"),
    ("selected", "log_z_method", "log Z method"),
    ("selected", "ll_train", "train log-likelihood (nats/sample)"),
    ("selected", "ll_test", "test log-likelihood (nats/sample)"),
    ("selected", "ll_test_std", "uncertainty of the test log-likelihood (nats/sample)"),
    ("selected", "floor_test", "independent-site test log-likelihood (floor)"),
    ("selected", "beats_floor", "selected model beats the floor (1/0)"),
    ("statistics", "ll_test_minus_train", "test minus train log-likelihood (nats/sample)"),
    ("statistics", "ll_test_minus_train_se", "its standard error"),
    ("statistics", "k_mean_train", "mean population activity K, train (active neurons/bin)"),
    ("statistics", "k_mean_test", "mean population activity K, test"),
    ("statistics", "k_shift_z", "K shift test vs train (standard errors)"),
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
    ("couplings", "n_unassigned_neurons", "neurons without a brain area (not in area analyses)"),
    ("couplings", "truth_pearson_J", "Pearson r of J with the planted model's J"),
    ("couplings", "truth_pearson_H", "Pearson r of H with the planted model's H"),
    ("dynamics", "max_lag_bins", "largest data lag used (bins)"),
    ("dynamics", "longest_segment_bins", "longest contiguous segment of the raster (bins)"),
    ("dynamics", "ms_per_sweep", "fitted time rescale (ms per sweep)"),
    ("dynamics", "fit_first_lag_sweeps", "first fitted lag in sweeps (< 1: interpolated)"),
    ("dynamics", "truth_ms_per_sweep", "planted time rescale (ms per sweep)"),
    ("dynamics", "ms_per_sweep_rel_error", "relative error of the fitted rescale"),
    ("dynamics", "fit_max_abs_dev", "max |C_data - C_model| on the fit range"),
    ("dynamics", "baseline_max_abs_dev_fit", "same for the independent-site baseline"),
    ("dynamics", "tau_e_data_ms", "1/e decay time of C(tau), data (ms)"),
    ("dynamics", "tau_int_data_ms", "integrated correlation time, data (ms)"),
)

#: Text colour of each finding level (green, amber, red) in every HTML page.
LEVEL_COLOURS: dict[str, str] = {"ok": "#1a7f37", "caution": "#b35900", "problem": "#b00"}
#: Background of each level's badge.
LEVEL_BACKGROUNDS: dict[str, str] = {"ok": "#e6f4ea", "caution": "#fff4e0", "problem": "#fde8e8"}


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "n/a" if not np.isfinite(value) else f"{float(value):.4g}"
    return str(value)


def session_summary(artifacts: Mapping[str, xr.Dataset | Mapping[str, object]],
                    findings: Sequence[Finding] = ()) -> pd.DataFrame:
    """Table of the session's findings and key numbers (``summary.tsv``).

    Parameters
    ----------
    artifacts
        Datasets (or their attributes) by artifact name: ``selected``, ``model``, ``loglik``,
        ``statistics``, ``couplings``, ``dynamics``.
    findings
        The session's findings (:func:`spikerbm.findings.session_findings`).

    Returns
    -------
    pandas.DataFrame
        Columns ``artifact``, ``quantity``, ``description``, ``value``. First one row per
        finding (``artifact = finding``, ``quantity`` = its code, ``description`` = its
        message, ``value`` = its level), then one row per :data:`SUMMARY_FIELDS` entry; an
        attribute the artifact does not have (e.g. ground truth of a real session) is ``n/a``.
    """
    rows = [{"artifact": "finding", "quantity": f.code, "description": f.message,
             "value": f.level} for f in findings]
    for artifact, attr, description in SUMMARY_FIELDS:
        ds = artifacts.get(artifact)
        attrs = (ds.attrs if isinstance(ds, xr.Dataset) else ds) if ds is not None else {}
        rows.append({"artifact": artifact, "quantity": attr, "description": description,
                     "value": _fmt(attrs.get(attr, "n/a"))})
    return pd.DataFrame(rows, columns=["artifact", "quantity", "description", "value"])


def findings_of_summary(table: pd.DataFrame) -> list[Finding]:
    """The findings rows of a ``summary.tsv`` table (inverse of :func:`session_summary`)."""
    rows = table[table["artifact"] == "finding"]
    return [Finding(str(r.value), str(r.quantity), str(r.description))
            for r in rows.itertuples(index=False)]


def _badge(level: str) -> str:
    return (f'<span style="color:{LEVEL_COLOURS[level]};background:{LEVEL_BACKGROUNDS[level]};'
            f'font-weight:bold;padding:0 4px;border-radius:3px">{html.escape(level)}</span>')


def findings_html(findings: Sequence[Finding]) -> str:
    """HTML list of findings, each line in its level's colour, with a count headline."""
    if not findings:
        return "<p>No findings (no artifact with something to judge).</p>"
    counts = {lv: sum(f.level == lv for f in findings) for lv in LEVELS}
    head = ", ".join(f'<span style="color:{LEVEL_COLOURS[lv]};font-weight:bold">{counts[lv]} '
                     f"{lv}</span>" for lv in reversed(LEVELS))
    items = "".join(
        f'<li style="color:{LEVEL_COLOURS[f.level]};margin:2px 0">{_badge(f.level)} '
        f"<code>{html.escape(f.code)}</code>: {html.escape(f.message)}</li>" for f in findings)
    return (f"<h3>Findings: {head}</h3>"
            f'<ul style="list-style:none;padding-left:0">{items}</ul>')


def summary_html(table: pd.DataFrame, findings: Sequence[Finding], *, session_id: str) -> str:
    """A small self-contained HTML page: the findings in colour, then the key numbers."""
    numbers = table[table["artifact"] != "finding"]
    body = numbers.to_html(index=False, escape=True, border=0)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>spikerbm summary: {html.escape(session_id)}</title>"
        "<style>body{font-family:sans-serif;margin:1em}td,th{padding:2px 8px;text-align:left}"
        "td:last-child{white-space:nowrap}"
        "tr:nth-child(even){background:#f3f3f3}</style></head><body>"
        f"<h2>Session {html.escape(session_id)}</h2>{findings_html(findings)}"
        f"<h3>Key numbers</h3>{body}</body></html>"
    )


# ----------------------------------------------------------------------------- report tables
#: Cross-session tables of the HTML report: name -> (artifact, [(attribute, column), ...]).
#: The selected-models table is built from the candidate variables instead (one row per size).
TABLE_FIELDS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "statistics_scores": ("statistics", (
        ("n_hidden", "hidden units"),
        ("equilibrated", "equilibrated (1/0)"),
        ("score_covariance", "score cov"),
        ("score_corr3", "score 3pt"),
        ("error_ratio_rate", "rate error ratio"),
        ("rate_r_train_generated", "r rate tr-gen"),
        ("covariance_r_train_test", "r cov tr-test"),
        ("covariance_r_train_generated", "r cov tr-gen"),
        ("corr3_r_train_test", "r 3pt tr-test"),
        ("corr3_r_train_generated", "r 3pt tr-gen"),
    )),
    "couplings_summary": ("couplings", (
        ("n_hidden", "hidden units"),
        ("checkpoint", "checkpoint"),
        ("norm_per_coupling_H", "|H| / field"),
        ("norm_per_coupling_J2", "|J2| / pair"),
        ("norm_per_coupling_J3", "|J3| / triplet"),
        ("area_within_mean_J", "mean J within area"),
        ("area_cross_mean_J", "mean J across areas"),
        ("truth_pearson_H", "r(H, planted)"),
        ("truth_pearson_J", "r(J, planted)"),
    )),
    "dynamics_summary": ("dynamics", (
        ("n_hidden", "hidden units"),
        ("ms_per_sweep", "fitted ms per sweep"),
        ("truth_ms_per_sweep", "planted ms per sweep"),
        ("fit_max_abs_dev", "max dev. C model"),
        ("baseline_max_abs_dev_fit", "max dev. C indep."),
        ("tau_e_data_ms", "tau_e data (ms)"),
        ("tau_e_model_ms", "tau_e model (ms)"),
        ("tau_int_data_ms", "tau_int data (ms)"),
        ("tau_int_model_ms", "tau_int model (ms)"),
    )),
}


#: Columns (couplings.nc attributes) of the replica table ``couplings_replicas`` (rule
#: ``replica_table``, only with ``train.replicas`` > 1; docs/methods.md §6).
REPLICA_TABLE_FIELDS: tuple[tuple[str, str], ...] = (
    ("n_hidden", "hidden units"),
    ("replicas", "replicas"),
    ("primary_replica", "primary replica"),
    ("J2_pearson_mean", "r J2 (mean)"),
    ("J2_pearson_min", "r J2 (min)"),
    ("J2_slope_mean", "slope J2 (mean)"),
    ("J2_slope_min", "slope J2 (min)"),
    ("J3_pearson_mean", "r J3 strongest (mean)"),
    ("J3_pearson_min", "r J3 strongest (min)"),
    ("J2_spread_median", "median std J2"),
    ("J2_sign_consistent_fraction", "sign-consistent"),
    ("J2_sign_n_pairs", "pairs judged"),
    ("area_J_replica_std_max", "max std area J"),
)


#: Titles of the report tables (the HTML page heading).
TABLE_TITLES: dict[str, str] = {
    "findings": "Findings of every session (green: ok, amber: caution, red: problem)",
    "selected_models": "Selected models: best checkpoint of every hidden size",
    "statistics_scores": "Generated vs real statistics of the selected models",
    "couplings_summary": "Effective couplings of the selected models",
    "couplings_replicas": "Effective couplings across replicas (reproducibility)",
    "dynamics_summary": "Relaxation dynamics of the selected models",
}


def attrs_table(attrs: Mapping[str, Mapping[str, object]],
                fields: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    """One row per session of the given attributes (``n/a`` where a file lacks one).

    Parameters
    ----------
    attrs
        Global attributes of one kind of artifact, by session id (row order is kept); e.g.
        ``{session: io.read_attrs(path)}``.
    fields
        ``(attribute, column title)`` pairs.

    Returns
    -------
    pandas.DataFrame
        Column ``session`` then one column per field, values formatted as in the summary.
    """
    rows = []
    for session, values in attrs.items():
        row = {"session": session}
        row.update({title: _fmt(values.get(attr, "n/a")) for attr, title in fields})
        rows.append(row)
    return pd.DataFrame(rows, columns=["session", *(title for _, title in fields)])


def selected_models_table(selected: Mapping[str, xr.Dataset]) -> pd.DataFrame:
    """Model selection of every session: one row per (session, hidden size).

    Each row is the best checkpoint of that hidden size (the ``candidate`` table of
    ``selected.nc``), with the independent-site floor and whether it is the selected model.

    Parameters
    ----------
    selected
        ``selected.nc`` datasets by session id.

    Returns
    -------
    pandas.DataFrame
        Columns ``session``, ``hidden units``, ``best checkpoint``, ``LL train``, ``LL test``,
        ``LL test s.d.``, ``log Z method``, ``floor test``, ``LL test - floor``,
        ``beats floor`` (strictly above the floor, as in the selection), ``selected``; with
        replicas (R > 1) ``LL`` is the replica mean, its s.d. the standard error, plus
        ``replica wins`` (``k/R``) and ``within 1 s.e.`` (docs/methods.md §4).

    Raises
    ------
    ValueError
        When a dataset lacks the candidate table (not a ``selected.nc``).
    """
    rows = []
    for session, ds in selected.items():
        if "candidate" not in ds.dims or "ll_test" not in ds:
            raise ValueError(f"session {session}: the dataset has no candidate table "
                             "(candidate dim with ll_test); pass the selected.nc written by the "
                             "select_model rule")
        floor = float(ds.attrs.get("floor_test", np.nan))
        for c in range(ds.sizes["candidate"]):
            ll_test = float(ds["ll_test"].values[c])
            std = ds["ll_test_std"].values[c] if "ll_test_std" in ds else np.nan
            method = ds["log_z_method"].values[c] if "log_z_method" in ds else "n/a"
            is_selected = (bool(ds["selected"].values[c]) if "selected" in ds else
                           int(ds["n_hidden"].values[c]) == int(ds.attrs["n_hidden"]))
            rows.append({
                "session": session,
                "hidden units": _fmt(int(ds["n_hidden"].values[c])),
                "best checkpoint": _fmt(int(ds["checkpoint"].values[c])),
                "LL train": _fmt(float(ds["ll_train"].values[c])),
                "LL test": _fmt(ll_test),
                "LL test s.d.": _fmt(float(std)),
                "log Z method": str(method),
                "floor test": _fmt(floor),
                "LL test - floor": _fmt(ll_test - floor),
                "beats floor": "yes" if ll_test > floor else "NO",
                "selected": "selected" if is_selected else "",
            })
            if "replica_wins" in ds:  # R > 1: the replica-mean selection (LL = mean, s.d. = s.e.)
                rows[-1]["replica wins"] = (f"{int(ds['replica_wins'].values[c])}/"
                                            f"{int(ds.attrs['replicas'])}")
                rows[-1]["within 1 s.e."] = "yes" if int(ds["within_se"].values[c]) else ""
    return pd.DataFrame(rows)


#: (column, value) cells the report tables show in red: a failed check.
ALARM_CELLS: frozenset[tuple[str, str]] = frozenset({
    ("beats floor", "NO"), ("equilibrated (1/0)", "0"),
    ("equilibrated RBM", "0"), ("equilibrated pairwise", "0"),
})


def findings_report_table(findings: Mapping[str, Sequence[Finding]]) -> pd.DataFrame:
    """All sessions' findings: one row per finding, problems first within a session.

    Parameters
    ----------
    findings
        Findings by session id (row order of the sessions is kept).

    Returns
    -------
    pandas.DataFrame
        Columns ``session``, ``level``, ``code``, ``message``.
    """
    rows = [{"session": session, "level": f.level, "code": f.code, "message": f.message}
            for session, found in findings.items() for f in found]
    return pd.DataFrame(rows, columns=["session", "level", "code", "message"])


def table_html(table: pd.DataFrame, *, title: str, note: str = "") -> str:
    """A small self-contained HTML page of one table (for the report's table entries).

    Cells listed in :data:`ALARM_CELLS` (a model below the floor, failed equilibrium) are red;
    a ``level`` column (findings) is shown as a badge in its level's colour.
    """
    def cell(column: str, value: object) -> str:
        text = html.escape(str(value))
        if column == "level" and str(value) in LEVEL_COLOURS:
            return f"<td>{_badge(str(value))}</td>"
        if (column, str(value)) in ALARM_CELLS:
            return f'<td style="color:#b00;font-weight:bold">{text}</td>'
        if column == "message":  # long text: wrap, left-aligned
            return f'<td style="white-space:normal;text-align:left;min-width:40em">{text}</td>'
        return f"<td>{text}</td>"

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = "".join(
        "<tr>" + "".join(cell(c, v) for c, v in zip(table.columns, rec, strict=True)) + "</tr>"
        for rec in table.itertuples(index=False)
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>spikerbm: {html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:0.5em;font-size:12px}"
        "h2{font-size:15px}table{border-collapse:collapse}"
        "td,th{padding:2px 5px;text-align:right}td{white-space:nowrap}"
        "td:first-child,th:first-child{text-align:left}"
        "th{border-bottom:1px solid #888;vertical-align:bottom}"
        "tr:nth-child(even){background:#f3f3f3}</style>"
        f"</head><body><h2>{html.escape(title)}</h2>"
        + (f"<p>{html.escape(note)}</p>" if note else "")
        + f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></body></html>"
    )


# ----------------------------------------------------------------------------- issue 20
#: Columns of the RBM-vs-pairwise-vs-independent table: (key of
#: :func:`spikerbm.pairwise.model_comparison`, key of its error or None, column title).
MODEL_COMPARISON_COLUMNS: tuple[tuple[str, str | None, str], ...] = (
    ("n_neurons", None, "neurons"),
    ("n_hidden", None, "RBM hidden units"),
    ("ll_test_rbm", "ll_test_rbm_std", "LL test/neuron RBM"),
    ("ll_test_pairwise", "ll_test_pairwise_std", "LL test/neuron pairwise"),
    ("ll_test_independent", None, "LL test/neuron independent"),
    ("rbm_minus_pairwise", "rbm_minus_pairwise_std", "RBM - pairwise"),
    ("rbm_minus_pairwise_sem", None, "RBM - pairwise: test s.e."),
    ("pairwise_minus_independent", "pairwise_minus_independent_std",
     "pairwise - independent"),
    ("score_covariance_rbm", None, "score cov RBM"),
    ("score_covariance_pairwise", None, "score cov pairwise"),
    ("score_corr3_rbm", None, "score 3pt RBM"),
    ("score_corr3_pairwise", None, "score 3pt pairwise"),
    ("equilibrated_rbm", None, "equilibrated RBM"),
    ("equilibrated_pairwise", None, "equilibrated pairwise"),
    ("j_pearson_r", None, "r(J pairwise, J2 RBM)"),
    ("j_slope", None, "slope J2 RBM ~ J pairwise"),
)


#: Uncertainties that set the TSV precision of each column (:func:`rounded`): the log Z error
#: and the test-set standard error of the log-likelihoods per neuron, the errors of the gains.
MODEL_COMPARISON_ERRORS: dict[str, tuple[str, ...]] = {
    "ll_test_rbm": ("ll_test_rbm_std", "ll_test_pairwise_sem"),
    "ll_test_pairwise": ("ll_test_pairwise_std", "ll_test_pairwise_sem"),
    "ll_test_independent": ("ll_test_pairwise_sem",),
    "rbm_minus_pairwise": ("rbm_minus_pairwise_std", "rbm_minus_pairwise_sem"),
    "pairwise_minus_independent": ("pairwise_minus_independent_std",),
}
#: The same for the atlas tables (:func:`spikerbm.atlas.atlas_tables`).
ATLAS_ERRORS: dict[str, tuple[str, ...]] = {
    "mean": ("se",), "ci_low": ("se",), "ci_high": ("se",),
    "within": ("delta_se",), "across": ("delta_se",), "delta": ("delta_se",),
    "delta_ci_low": ("delta_se",), "delta_ci_high": ("delta_se",),
}


def model_comparison_table(rows: list[Mapping[str, object]]) -> pd.DataFrame:
    """The RBM-vs-pairwise-vs-independent table, one row per session (formatted for display).

    Parameters
    ----------
    rows
        :func:`spikerbm.pairwise.model_comparison` dicts. Log-likelihoods are nats per neuron
        per sample; ``a ± b`` shows the log Z uncertainty (1 s.d.); the independent model scores 0
        by definition (docs/methods.md §5). ``equilibrated`` is 1/0 (-1: not checked).

    Returns
    -------
    pandas.DataFrame
        Column ``session`` then one per :data:`MODEL_COMPARISON_COLUMNS`.
    """
    out = []
    for row in rows:
        rec = {"session": str(row["session"])}
        for key, err, title in MODEL_COMPARISON_COLUMNS:
            value = row.get(key, "n/a")
            text = _fmt(value)
            if err is not None and text != "n/a":
                e = row.get(err, np.nan)
                text = f"{float(value):.5f} ± {_fmt(e)}" if np.isfinite(e) and e > 0 else \
                    f"{float(value):.5f}"
            rec[title] = text
        out.append(rec)
    return pd.DataFrame(out, columns=["session", *(t for _, _, t in MODEL_COMPARISON_COLUMNS)])


#: Significant digits of an uncertainty in the TSV tables, and the fewest of any value.
ERROR_DIGITS = 2
VALUE_DIGITS = 4


def round_to_error(value: float, error: float = math.nan, *, error_digits: int = ERROR_DIGITS,
                   value_digits: int = VALUE_DIGITS) -> float:
    """``value`` rounded to the decimal of the ``error_digits``-th significant digit of its
    uncertainty ``error``, and to at least ``value_digits`` significant digits.

    So a value keeps every digit its uncertainty resolves (``-0.313368612 +- 0.000081`` ->
    ``-0.313369``) and no more; without a positive finite error it keeps ``value_digits``
    (as the other report tables). Convention: two significant digits of the uncertainty
    (Particle Data Group, *Review of Particle Physics*, "Rounding").

    Parameters
    ----------
    value, error
        Floats; NaN/inf values are returned unchanged.
    """
    v = float(value)
    if not math.isfinite(v) or v == 0.0:
        return v
    decimals = value_digits - 1 - math.floor(math.log10(abs(v)))
    e = float(error)
    if math.isfinite(e) and e > 0:
        decimals = max(decimals, error_digits - 1 - math.floor(math.log10(e)))
    return round(v, decimals)


def rounded(table: pd.DataFrame, errors: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """A copy of ``table`` with its float columns rounded for a TSV (:func:`round_to_error`).

    Parameters
    ----------
    table
        Numbers at full precision.
    errors
        Column -> the columns of its uncertainties (the smallest positive one per row sets the
        precision). Those uncertainty columns get :data:`ERROR_DIGITS` significant digits;
        every other float column :data:`VALUE_DIGITS`.
    """
    out = table.copy()
    error_columns = {c for cols in errors.values() for c in cols}
    for col in out.columns:
        if out[col].dtype.kind != "f":
            continue
        if col in error_columns:
            out[col] = [round_to_error(v, value_digits=ERROR_DIGITS) for v in table[col]]
        elif col in errors:
            errs = np.array([[float(x) for x in table[c]] for c in errors[col] if c in table])
            errs = (np.where(errs > 0, errs, np.inf).min(axis=0) if errs.size
                    else np.full(len(table), np.nan))
            out[col] = [round_to_error(v, e) for v, e in zip(table[col], errs, strict=True)]
        else:
            out[col] = [round_to_error(v) for v in table[col]]
    return out


def formatted(table: pd.DataFrame, *, digits: int | None = 4) -> pd.DataFrame:
    """A copy of ``table`` with its float columns as text: ``digits`` significant digits (as in
    the summary), or with ``None`` every digit of values already rounded (:func:`rounded`);
    NaN as ``n/a``."""
    out = table.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f":
            out[col] = ["n/a" if not np.isfinite(v) else f"{v:.{digits or 15}g}"
                        for v in out[col]]
    return out
