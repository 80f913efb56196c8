"""Model selection: the (hidden size, checkpoint) with the highest test log-likelihood.

docs/methods.md §4 (the star of the paper's Fig. 2). :func:`select_model` reads the session's
``loglik.nc`` (:func:`spikerbm.likelihood.combine_loglik`) and returns the candidate table, one
candidate per hidden size (its best checkpoint), and says what the uncertainty of the values
allows: the sizes that are tied with the winner within their combined error (``tied_with``)
and the checkpoints where the online (trajectory-AIS) and the checkpoint estimates of the
log-likelihood disagree (``online_disagrees``). :func:`refine_tais_ties` makes sure a
trajectory-AIS value (``likelihood.method: tais``) never decides a selection its error cannot
decide: those entries are re-estimated with the checkpoint estimator (exact or AIS) first.
:func:`selected_dataset` builds ``selected.nc``: the winner's parameters plus that table. A
winner that does not beat the independent-site floor on test data is still written (so that
downstream stages run) but flagged loudly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import xarray as xr

from spikerbm.partition import LogZEstimate

__all__ = ["DISAGREE_Z", "FLOOR_BANNER", "TIE_Z", "refine_tais_ties", "replica_stats",
           "select_model", "select_one", "selected_dataset"]

logger = logging.getLogger(__name__)

FLOOR_BANNER = "!" * 78

#: Two log-likelihoods are tied when they differ by at most TIE_Z times their combined
#: uncertainty ``hypot(std_1, std_2)`` (not distinguishable at about 95 %; docs/methods.md §4).
TIE_Z = 2.0

#: The online and checkpoint estimates of a log-likelihood disagree when they differ by more
#: than DISAGREE_Z combined uncertainties (a 0.3 % false-alarm rate per comparison for honest
#: Gaussian errors: about one spurious flag in ten sessions of ~40 checkpoints).
DISAGREE_Z = 3.0

#: Per-model stop information carried into the candidate table (``loglik.nc`` variables).
STOP_VARS = ("stop_reason", "best_update", "still_improving", "n_updates_done")


def _std(x: np.ndarray) -> np.ndarray:
    """Uncertainties with NaN (unknown) read as infinite."""
    return np.where(np.isnan(x), np.inf, x)


def refine_tais_ties(ll: xr.Dataset, refine: Callable[[int, int], LogZEstimate]
                     ) -> xr.Dataset:
    """Re-estimate the trajectory-AIS entries that the selection cannot decide on.

    While the best test LL (the winner) is within :data:`TIE_Z` combined uncertainties of an
    entry (any hidden size, any checkpoint) and the winner or that entry still has a
    trajectory-AIS ``log Z`` (``log_z_method`` ``tais``), those trajectory-AIS entries get
    the checkpoint estimator's ``log Z`` (``refine(n_hidden, checkpoint)``: exact or AIS) and
    the log-likelihoods move by the difference; the winner is then recomputed. Each round
    replaces at least one entry, so this ends; an entry whose trajectory-AIS error is below
    the gap it decides is never recomputed. The reason is logged and stored.

    Parameters
    ----------
    ll
        The combined dataset of :func:`spikerbm.likelihood.combine_loglik`.
    refine
        ``(n_hidden, checkpoint) -> LogZEstimate`` with the checkpoint estimator.

    Returns
    -------
    xr.Dataset
        A copy with ``log_z``, ``log_z_std``, ``ll_train``, ``ll_test``, their ``*_std`` and
        ``*_per_neuron`` replaced at the re-estimated entries, a variable ``log_z_refined``
        (n_hidden, checkpoint; ``""`` or the method that replaced trajectory AIS) and the attr
        ``tais_fallback`` (the reason, ``""`` when nothing was re-estimated).
    """
    out = ll.copy(deep=True)
    dims = ("n_hidden", "checkpoint")
    methods = np.broadcast_to(np.asarray(out["log_z_method"].values, dtype=str)[:, None],
                              (out.sizes["n_hidden"], out.sizes["checkpoint"]))
    refined = np.full(methods.shape, "", dtype=object)
    hs, cks = out["n_hidden"].values, out["checkpoint"].values
    reasons = []
    while True:
        test = out["ll_test"].transpose(*dims).values
        std = _std(out["ll_test_std"].transpose(*dims).values)
        if not np.isfinite(test).any():
            break
        w = np.unravel_index(np.nanargmax(np.where(np.isfinite(test), test, -np.inf)),
                             test.shape)
        gap = test[w] - test
        close = np.isfinite(test) & (gap <= TIE_Z * np.hypot(std[w], std))
        # contested: another entry within the combined error (an unknown error reads as
        # infinite, so it is always contested); only its trajectory-AIS entries are redone
        todo = close & (methods == "tais") & (refined == "") if close.sum() > 1 else None
        if todo is None or not todo.any():
            break
        reasons.append(
            f"trajectory-AIS log Z cannot decide near the best test LL {test[w]:.4f} +- "
            f"{std[w]:.2g} (n_hidden {hs[w[0]]}, checkpoint {cks[w[1]]}): "
            f"{int(close.sum()) - 1} entr(ies) within {TIE_Z:g} combined errors; "
            "re-estimated with the checkpoint estimator: "
            + ", ".join(f"{hs[i]}@{cks[j]}" for i, j in zip(*np.nonzero(todo), strict=True)))
        logger.warning("%s", reasons[-1])
        for i, j in zip(*np.nonzero(todo), strict=True):
            est = refine(int(hs[i]), int(cks[j]))
            old = float(out["log_z"].values[i, j])
            for var in ("ll_train", "ll_test"):
                out[var].values[i, j] += old - est.log_z
                out[f"{var}_std"].values[i, j] = est.log_z_std
            out["log_z"].values[i, j], out["log_z_std"].values[i, j] = est.log_z, est.log_z_std
            refined[i, j] = est.method
    n_neurons = float(out.attrs.get("n_neurons", np.nan))
    for var in ("ll_train", "ll_test"):
        if f"{var}_per_neuron" in out:
            out[f"{var}_per_neuron"] = out[var] / n_neurons
    out["log_z_refined"] = (dims, refined.astype(str), {
        "long_name": "method that replaced the trajectory-AIS log Z at this entry "
        "(selection fallback; empty: not replaced)"})
    out.attrs["tais_fallback"] = "; ".join(reasons)
    return out


def select_model(ll: xr.Dataset) -> xr.Dataset:
    """The candidate table of a session: :func:`select_one` for one model per size, and with
    replicas (a ``replica`` dim, R > 1) the replica-mean selection of :func:`_over_replicas`.

    Each replica is first selected on its own (:func:`select_one`: its best checkpoint per
    size, its ties and online disagreements); a dataset without a ``replica`` dim gives exactly
    :func:`select_one`'s table (R = 1 is unchanged on disk).
    """
    if "replica" not in ll.dims:
        return select_one(ll)
    tables = {int(r): select_one(ll.sel(replica=r, drop=True)) for r in ll["replica"].values
              if np.isfinite(ll["ll_test"].sel(replica=r).values).any()}
    return _over_replicas(ll, tables)


def select_one(ll: xr.Dataset) -> xr.Dataset:
    """Pick the ``(n_hidden, checkpoint)`` with the highest test log-likelihood (one model per
    hidden size).

    Ties go to the earliest checkpoint, then to the smallest hidden size; NaN values are
    skipped. The uncertainty does not change the pick, but the result says which sizes are
    statistically tied with it (``|ll_w - ll_c| <= TIE_Z * hypot(std_w, std_c)``) and where
    the online and checkpoint estimates disagree (``|online_z| > DISAGREE_Z``), both in attrs
    and in the log.

    Parameters
    ----------
    ll
        The combined dataset of :func:`spikerbm.likelihood.combine_loglik` (dims n_hidden x
        checkpoint), possibly refined by :func:`refine_tais_ties`.

    Returns
    -------
    xr.Dataset
        The candidate table, dim ``candidate`` (one row per hidden size: its best checkpoint by
        test LL): coords ``n_hidden``, ``checkpoint``; vars ``ll_train``, ``ll_test``,
        ``ll_train_std``, ``ll_test_std``, ``ll_test_sem`` (nats per sample; NaN when the input
        lacks it), ``log_z``, ``log_z_std`` (nats; NaN where the input has none),
        ``log_z_method``, ``tied`` (1 when tied with the winner), ``selected`` (1 for the
        winner) and, when the input has them, ``stop_reason``, ``best_update``,
        ``still_improving``, ``n_updates_done``;
        attrs ``n_hidden``, ``checkpoint``, ``ll_train``, ``ll_test``, ``ll_test_std``,
        ``log_z``, ``log_z_std``,
        ``floor_train``, ``floor_test``, ``beats_floor`` (1 when the winner's test LL is
        strictly above the independent-site floor), ``log_z_method``, ``tied_with`` (the tied
        sizes, comma-separated, ``""`` when none), ``online_disagrees`` (``n_hidden@checkpoint``
        entries, ``;``-separated, ``""`` when none), ``online_max_abs_z``, ``tais_fallback``,
        the winner's stop information and, when it does not beat the floor, ``warning`` (also
        logged as a loud ``logging.warning`` banner).

    Raises
    ------
    ValueError
        When no finite test log-likelihood exists.
    """
    dims = ("n_hidden", "checkpoint")
    test = ll["ll_test"].transpose(*dims).values
    if not np.isfinite(test).any():
        raise ValueError("no finite test log-likelihood in the dataset; nothing to select")
    masked = np.where(np.isfinite(test), test, -np.inf)
    best_ck = masked.argmax(1)  # per n_hidden (first maximum: the earliest checkpoint)
    rows = np.arange(test.shape[0])
    ok = np.isfinite(test[rows, best_ck])
    rows = rows[ok]
    best_ck = best_ck[ok]
    hs = ll["n_hidden"].values[rows].astype(np.int64)
    cks = ll["checkpoint"].values[best_ck].astype(np.int64)

    def pick(var: str) -> np.ndarray:
        if var not in ll:
            return np.full(len(rows), np.nan)
        return ll[var].transpose(*dims).values[rows, best_ck].astype(np.float64)

    c_test, c_std = pick("ll_test"), pick("ll_test_std")
    win = int(np.argmax(c_test))  # first of equal maxima: the smallest hidden size
    floor_test = float(ll.attrs["floor_test"])
    beats = bool(c_test[win] > floor_test)
    methods = (ll["log_z_method"].values[rows] if "log_z_method" in ll
               else np.array(["unknown"] * len(rows))).astype(str)
    if "log_z_refined" in ll:
        ref = ll["log_z_refined"].transpose(*dims).values[rows, best_ck].astype(str)
        methods = np.where(ref != "", ref, methods)
    tied = np.abs(c_test - c_test[win]) <= TIE_Z * np.hypot(_std(c_std[win]), _std(c_std))
    tied[win] = False
    nats = {"units": "nats per sample"}
    data_vars = {
        "ll_train": ("candidate", pick("ll_train"), nats),
        "ll_test": ("candidate", c_test, nats),
        "ll_train_std": ("candidate", pick("ll_train_std"), nats),
        "ll_test_std": ("candidate", c_std, nats),
        "ll_test_sem": ("candidate", pick("ll_test_sem"), {
            **nats, "long_name": "standard error of ll_test over the test bins (data noise)"}),
        "log_z": ("candidate", pick("log_z"), {"units": "nats"}),
        "log_z_std": ("candidate", pick("log_z_std"), {"units": "nats"}),
        "log_z_method": ("candidate", methods),
        "tied": ("candidate", tied.astype(np.uint8), {
            "long_name": f"test LL within {TIE_Z:g} combined errors of the selected one"}),
        "selected": ("candidate", (np.arange(len(rows)) == win).astype(np.uint8)),
    }
    stop = {}
    for var in STOP_VARS:
        if var in ll:
            values = ll[var].values[rows]
            data_vars[var] = ("candidate", values.astype(str) if var == "stop_reason"
                              else values.astype(np.int64))
            stop[var] = values[win].item() if hasattr(values[win], "item") else values[win]
    disagrees, max_z = _online_disagreements(ll)
    tied_with = ",".join(str(h) for h in hs[tied])
    cand = xr.Dataset(
        data_vars,
        coords={"n_hidden": ("candidate", hs, {"units": "hidden units"}),
                "checkpoint": ("candidate", cks, {"units": "updates"})},
        attrs={
            "n_hidden": int(hs[win]),
            "checkpoint": int(cks[win]),
            "ll_train": float(pick("ll_train")[win]),
            "ll_test": float(c_test[win]),
            "ll_test_std": float(c_std[win]),
            "log_z": float(pick("log_z")[win]),
            "log_z_std": float(pick("log_z_std")[win]),
            "floor_train": float(ll.attrs["floor_train"]),
            "floor_test": floor_test,
            "beats_floor": int(beats),
            "log_z_method": str(methods[win]),
            "tied_with": tied_with,
            "tie_z": TIE_Z,
            "online_disagrees": disagrees,
            "online_max_abs_z": max_z,
            "disagree_z": DISAGREE_Z,
            "tais_fallback": str(ll.attrs.get("tais_fallback", "")),
            **{k: (str(v) if k == "stop_reason" else int(v)) for k, v in stop.items()},
        },
    )
    if tied_with:
        logger.info("selected n_hidden %d (test LL %.4f +- %.2g) is tied within %g combined "
                    "errors with n_hidden %s: the data do not distinguish these sizes",
                    hs[win], c_test[win], c_std[win], TIE_Z, tied_with)
    if not beats:
        cand.attrs["warning"] = (
            f"no model beats the independent-site floor on test data: best test LL "
            f"{c_test[win]:.4f} (n_hidden={hs[win]}, checkpoint={cks[win]}) <= floor "
            f"{floor_test:.4f} nats/sample; the selected model is kept only so downstream "
            "stages run, its results are not evidence of structure beyond firing rates"
        )
        logger.warning("\n%s\n!!! WARNING: %s\n%s", FLOOR_BANNER, cand.attrs["warning"],
                       FLOOR_BANNER)
    return cand


def replica_stats(best: np.ndarray) -> dict[str, np.ndarray | int]:
    """Replica-mean selection from each replica's best test log-likelihood per hidden size.

    docs/methods.md §4 ("Selection with replicas"). ``best[i, r]`` is replica ``r``'s best
    test LL at size ``i`` (NaN: replica not live at that size). Per size: the mean over its
    live replicas, the standard error ``std(ddof=1) / sqrt(R_live)`` (NaN with one live
    replica), ``R_live``. The winner is the size with the highest mean (first of equal maxima:
    the smallest size). ``replica_wins[i]``: for how many replicas ``r`` size ``i`` has the
    highest ``best[:, r]``; ``within_se[i]``: size ``i`` is not the winner and its mean is
    within one standard error of the difference, ``mean_w - mean_i <= hypot(se_w, se_i)``.

    Parameters
    ----------
    best
        (n_sizes, n_replicas) nats per sample.

    Returns
    -------
    dict
        ``mean``, ``se``, ``n_live``, ``replica_wins``, ``within_se`` (arrays over sizes) and
        ``winner`` (index).

    Raises
    ------
    ValueError
        When no size has a finite value.
    """
    best = np.asarray(best, dtype=np.float64)
    live = np.isfinite(best)
    n_live = live.sum(1)
    if not n_live.any():
        raise ValueError("no finite test log-likelihood in any replica; nothing to select")
    mean = _nan_mean(best)
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = np.where(live, best - mean[:, None], 0.0)
        se = np.where(n_live > 1, np.sqrt((dev ** 2).sum(1) / np.maximum(n_live - 1, 1))
                      / np.sqrt(n_live), np.nan)
    winner = int(np.argmax(np.where(np.isfinite(mean), mean, -np.inf)))
    col_ok = live.any(0)
    wins_of = np.argmax(np.where(live, best, -np.inf), axis=0)[col_ok]
    replica_wins = np.bincount(wins_of, minlength=best.shape[0]).astype(np.int64)
    within = (mean[winner] - mean) <= np.hypot(se[winner], se)  # NaN s.e.: never within
    within[winner] = False
    return {"mean": mean, "se": se, "n_live": n_live.astype(np.int64),
            "replica_wins": replica_wins, "within_se": within & np.isfinite(mean),
            "winner": winner}


def _nan_mean(x: np.ndarray) -> np.ndarray:
    """Row means over the finite entries (NaN for a row without any)."""
    ok = np.isfinite(x)
    return np.where(ok.any(1), np.where(ok, x, 0).sum(1) / np.maximum(ok.sum(1), 1), np.nan)


def _over_replicas(ll: xr.Dataset, tables: dict[int, xr.Dataset]) -> xr.Dataset:
    """The candidate table of R > 1 replicas from each replica's :func:`select_one` table
    (:func:`select_model`; columns in docs/data-model.md, ``selected.nc``)."""
    sizes = ll["n_hidden"].values.astype(np.int64)
    replicas = ll["replica"].values.astype(np.int64)
    shape = (len(sizes), len(replicas))
    per = {v: np.full(shape, np.nan) for v in ("ll_test", "ll_train", "ll_test_std",
                                               "ll_test_sem", "log_z", "log_z_std")}
    ck = np.full(shape, -1, dtype=np.int64)
    for j, r in enumerate(replicas):
        t = tables.get(int(r))
        if t is None:
            continue
        row = {int(h): i for i, h in enumerate(t["n_hidden"].values)}
        for i, h in enumerate(sizes):
            if int(h) in row:
                for v in per:
                    per[v][i, j] = float(t[v].values[row[int(h)]])
                ck[i, j] = int(t["checkpoint"].values[row[int(h)]])
    if "diverged" in ll:  # a dropped replica is not live at that size, whatever it reached
        dropped = ll["diverged"].transpose("n_hidden", "replica").values.astype(bool)
        for v in per:
            per[v][dropped] = np.nan
        ck[dropped] = -1
    stats = replica_stats(per["ll_test"])
    keep = np.isfinite(stats["mean"])
    win = int(np.flatnonzero(keep).tolist().index(stats["winner"]))
    sizes, ck = sizes[keep], ck[keep]
    per = {v: x[keep] for v, x in per.items()}
    stats = {k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in stats.items()}
    live = np.isfinite(per["ll_test"][win])
    # primary replica: 0 when it is live at the winner, else the live one with the best test LL
    p = 0 if live[0] else int(np.nanargmax(np.where(live, per["ll_test"][win], -np.inf)))
    primary = int(replicas[p])
    prim = tables[primary]
    prow = {int(h): i for i, h in enumerate(prim["n_hidden"].values)}

    def at_primary(var: str, fill):
        """The primary replica's ``var`` per candidate size (``fill`` where it has none)."""
        return [prim[var].values[prow[int(h)]] if int(h) in prow else fill for h in sizes]

    train = replica_stats(per["ll_train"])
    train_mean, train_se = train["mean"], train["se"]
    sem_mean = _nan_mean(per["ll_test_sem"])
    methods = np.array(at_primary("log_z_method", "unknown")).astype(str)  # (refined) method
    nats = {"units": "nats per sample"}
    mean_of = "mean over the live replicas of each replica's best {} (docs/methods.md §4)"
    se_of = "standard error of {} over the live replicas, std(ddof=1) / sqrt(R_live)"
    prim_of = "{} of the primary replica's best checkpoint"
    within = stats["within_se"]
    data_vars = {
        "ll_train": ("candidate", train_mean, {**nats, "long_name": mean_of.format(
            "checkpoint's train LL")}),
        "ll_test": ("candidate", stats["mean"], {**nats, "long_name": mean_of.format(
            "test LL")}),
        "ll_train_std": ("candidate", train_se, {**nats, "long_name": se_of.format(
            "ll_train")}),
        "ll_test_std": ("candidate", stats["se"], {**nats, "long_name": se_of.format(
            "ll_test") + " (the replicas' scatter includes each one's log Z estimator noise)"}),
        "ll_test_se": ("candidate", stats["se"], {**nats, "long_name": se_of.format(
            "ll_test")}),
        "ll_test_sem": ("candidate", sem_mean, {
            **nats, "long_name": "standard error of ll_test over the test bins (data noise), "
            "mean over the live replicas"}),
        "log_z": ("candidate", np.array(at_primary("log_z", np.nan), dtype=np.float64),
                  {"units": "nats", "long_name": prim_of.format("log Z")}),
        "log_z_std": ("candidate", np.array(at_primary("log_z_std", np.nan), dtype=np.float64),
                      {"units": "nats", "long_name": prim_of.format("log_z_std")}),
        "log_z_method": ("candidate", methods),
        "tied": ("candidate", within.astype(np.uint8), {
            "long_name": "mean test LL within one standard error of the selected one "
            "(= within_se)"}),
        "within_se": ("candidate", within.astype(np.uint8), {
            "long_name": "mean test LL within one standard error of the difference, "
            "hypot(se_selected, se), of the selected size"}),
        "selected": ("candidate", (np.arange(len(sizes)) == win).astype(np.uint8)),
        "replica_wins": ("candidate", stats["replica_wins"], {
            "long_name": "number of replicas whose best test LL is highest at this size"}),
        "replicas_live": ("candidate", stats["n_live"], {
            "long_name": "replicas live at this size (not dropped by divergence)"}),
        "replica_checkpoint": (("candidate", "replica"), ck, {
            "units": "updates", "long_name": "each replica's best checkpoint (-1: not live)"}),
        "replica_ll_test": (("candidate", "replica"), per["ll_test"], {
            **nats, "long_name": "each replica's best test LL (NaN: not live)"}),
        "replica_ll_train": (("candidate", "replica"), per["ll_train"], {
            **nats, "long_name": "each replica's train LL at its best checkpoint"}),
        "replica_ll_test_std": (("candidate", "replica"), per["ll_test_std"], {
            **nats, "long_name": "each replica's estimator uncertainty of its best test LL"}),
    }
    stop = {}
    for var in STOP_VARS:
        if var in prim:
            values = np.array(at_primary(var, "" if var == "stop_reason" else -1))
            data_vars[var] = ("candidate", values.astype(str) if var == "stop_reason"
                              else values.astype(np.int64))
            stop[var] = str(values[win]) if var == "stop_reason" else int(values[win])
    p_ck = np.array(at_primary("checkpoint", -1), dtype=np.int64)
    disagrees = ";".join(f"r{r}:{e}" for r, t in tables.items()
                         for e in str(t.attrs["online_disagrees"]).split(";") if e)
    zs = [float(t.attrs["online_max_abs_z"]) for t in tables.values()]
    floor_test = float(ll.attrs["floor_test"])
    beats = bool(stats["mean"][win] > floor_test)
    within_se = ",".join(str(h) for h in sizes[within])
    dropped = ",".join(str(r) for r, ok in zip(replicas, live, strict=True) if not ok)
    cand = xr.Dataset(
        data_vars,
        coords={"n_hidden": ("candidate", sizes, {"units": "hidden units"}),
                "checkpoint": ("candidate", p_ck, {
                    "units": "updates", "long_name": "the primary replica's best checkpoint"}),
                "replica": ("replica", replicas)},
        attrs={
            "n_hidden": int(sizes[win]),
            "checkpoint": int(p_ck[win]),
            "ll_train": float(train_mean[win]),
            "ll_test": float(stats["mean"][win]),
            "ll_test_std": float(stats["se"][win]),
            "ll_test_se": float(stats["se"][win]),
            "log_z": float(data_vars["log_z"][1][win]),
            "log_z_std": float(data_vars["log_z_std"][1][win]),
            "floor_train": float(ll.attrs["floor_train"]),
            "floor_test": floor_test,
            "beats_floor": int(beats),
            "log_z_method": str(methods[win]),
            "tied_with": within_se,
            "within_se": within_se,
            "tie_z": 1.0,
            "replicas": len(replicas),
            "replicas_live": int(stats["n_live"][win]),
            "replicas_dropped": dropped,
            "replica_wins": int(stats["replica_wins"][win]),
            "primary_replica": primary,
            "selection_rule": "highest replica-mean of each replica's best test LL",
            "online_disagrees": disagrees,
            "online_max_abs_z": float(np.nanmax(zs)) if np.isfinite(zs).any() else math.nan,
            "disagree_z": DISAGREE_Z,
            "tais_fallback": str(ll.attrs.get("tais_fallback", "")),
            **stop,
        },
    )
    logger.info("replicas: selected n_hidden %d, mean test LL %.4f +- %.2g (s.e. over %d "
                "live replicas), best in %d of %d replicas; within one s.e.: [%s]",
                sizes[win], stats["mean"][win], stats["se"][win], stats["n_live"][win],
                stats["replica_wins"][win], len(replicas), within_se)
    if not beats:
        cand.attrs["warning"] = (
            f"no model beats the independent-site floor on test data: best replica-mean test "
            f"LL {stats['mean'][win]:.4f} (n_hidden={sizes[win]}) <= floor {floor_test:.4f} "
            "nats/sample; the selected model is kept only so downstream stages run, its "
            "results are not evidence of structure beyond firing rates")
        logger.warning("\n%s\n!!! WARNING: %s\n%s", FLOOR_BANNER, cand.attrs["warning"],
                       FLOOR_BANNER)
    return cand


def _online_disagreements(ll: xr.Dataset) -> tuple[str, float]:
    """``n_hidden@checkpoint`` entries where ``|online_z| > DISAGREE_Z`` (logged), and the
    largest ``|online_z|`` (NaN without comparisons)."""
    if "online_z" not in ll:
        return "", math.nan
    z = ll["online_z"].transpose("n_hidden", "checkpoint")
    values = np.abs(z.values)
    if "log_z_refined" in ll:  # a re-estimated entry no longer holds the checkpoint value
        values = np.where(ll["log_z_refined"].transpose(*z.dims).values == "", values, np.nan)
    entries = []
    for i, j in zip(*np.nonzero(values > DISAGREE_Z), strict=True):
        h, c = int(ll["n_hidden"].values[i]), int(ll["checkpoint"].values[j])
        entries.append(f"{h}@{c}")
        logger.warning(
            "online and checkpoint estimates of the log-likelihood disagree at n_hidden %d, "
            "checkpoint %d: log Z %.4f +- %.2g (%s) vs trajectory AIS %.4f +- %.2g, %.1f "
            "combined errors (> %g)", h, c, float(ll["log_z"].values[i, j]),
            float(ll["log_z_std"].values[i, j]), str(ll["log_z_method"].values[i]),
            float(ll["log_z_tais"].values[i, j]), float(ll["log_z_tais_std"].values[i, j]),
            float(values[i, j]), DISAGREE_Z)
    finite = values[np.isfinite(values)]
    return ";".join(entries), float(finite.max()) if finite.size else math.nan


def selected_dataset(model: xr.Dataset, selection: xr.Dataset, *,
                     rate_hz: np.ndarray | None = None) -> xr.Dataset:
    """The ``selected.nc`` dataset: parameters of the chosen checkpoint + candidate table.

    Parameters
    ----------
    model
        ``model.nc`` of the selected hidden size.
    selection
        Output of :func:`select_model`.
    rate_hz
        Firing rates (n_neurons,) from the raster, stored as a coordinate on ``neuron``.
    """
    n_hidden = int(selection.attrs["n_hidden"])
    ckpt = int(selection.attrs["checkpoint"])
    if int(model.sizes["hidden"]) != n_hidden:
        raise ValueError(
            f"model has {model.sizes['hidden']} hidden units; the selection is n_hidden="
            f"{n_hidden}: pass that model's model.nc"
        )
    if ckpt not in set(model["checkpoint"].values.tolist()):
        raise ValueError(f"checkpoint {ckpt} is not in the model's checkpoints")
    if "replica" in selection.dims:  # every live replica at its own best checkpoint
        row = int(np.flatnonzero(selection["n_hidden"].values == n_hidden)[0])
        cks = selection["replica_checkpoint"].isel(candidate=row)
        live = [int(r) for r, c in zip(selection["replica"].values, cks.values, strict=True)
                if c >= 0]
        sel = xr.concat([model[["W", "a", "b"]].sel(replica=r, checkpoint=int(cks.sel(
            replica=r)), drop=True) for r in live], dim="replica").assign_coords(replica=live)
        selection = selection.sel(replica=live)
    else:
        sel = model[["W", "a", "b"]].sel(checkpoint=ckpt, drop=True)
    sel = sel.astype(np.float32)
    if rate_hz is not None:
        rate = np.asarray(rate_hz, dtype=np.float64)
        if rate.shape != (sel.sizes["neuron"],):
            raise ValueError(f"rate_hz has shape {rate.shape}; expected ({sel.sizes['neuron']},)")
        sel = sel.assign_coords(rate_hz=("neuron", rate, {"units": "Hz"}))
    out = xr.merge([sel, selection], combine_attrs="drop")
    out.attrs = dict(selection.attrs)
    return out
