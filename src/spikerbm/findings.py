"""Findings: what a scientist must know about a session's results, judged in one place.

Every stage stores what it has to say as attributes of its own artifact (numbers and reasons:
``selected.nc``, ``model.nc``, ``loglik.nc``, ``statistics.nc``, ``couplings.nc``,
``dynamics.nc``); :func:`session_findings` only reads them and judges. Each finding is a
:class:`Finding` with a level (``ok`` = a check passed, ``caution`` = the result holds with a
stated limitation, ``problem`` = the result must not be trusted as it stands), a stable
snake_case code and a one-line message that names the number and the fix. The summary job
writes them to its log, ``summary.tsv`` and ``summary.html``; the report tables gather them in
``tables/findings.tsv`` (docs/data-model.md).

Checks (code when the check fails / when it passes) and their thresholds:

========================  ==============  ===================================================
code                      level           condition
========================  ==============  ===================================================
``below_floor``           problem         selected test LL not above the independent-site floor
``marginal_gain``         caution         above it by less than :data:`MIN_GAIN` nats/sample
                                          or 2 of its log Z error (``ll_test_std``)
``beats_floor``           ok              otherwise
``grid_edge``             caution         selected size is the largest (or smallest) of the
                                          grid, or the grid has one size (when the selected
                                          model is ``not_converged`` it says so: the edge then
                                          reflects training speed, not size)
``grid_interior``         ok              otherwise
``within_se``             caution         replicas (R > 1): another size's replica-mean test
                                          LL within one standard error of the difference
                                          of the selected one (``selected.nc`` ``within_se``)
``replicas_agree``        ok              otherwise (R > 1; message: mean +- s.e., wins)
``replica_dropped``       caution         a replica of the selected size diverged (dropped)
``not_converged``         problem/caution training still improving at its maximum
                                          (``still_improving`` = 1), or, without the online
                                          stopping state (absent or -1), best checkpoint =
                                          last update
                                          (problem for the selected size, caution for others)
``stopped_on_plateau``    problem/caution stopped early with the best online test LL less than
                                          ``min_delta`` above the independent-site floor (the
                                          initial plateau mistaken for the end)
``converged``             ok              otherwise (selected size)
``online_disagrees``      caution         ``selected.nc`` attr ``online_disagrees`` lists
                                          ``n_hidden@checkpoint`` entries
``test_above_train``      caution         test LL above train LL by more than
                                          :data:`Z_NOISE` standard errors (the message gives
                                          the shift of mean population activity between splits)
``split_shift``           caution         otherwise, mean population activity of test and
                                          train differs by more than :data:`Z_SHIFT` s.e.
``few_test_bins``         caution         fewer than :data:`MIN_TEST_BINS` test bins
``equilibrium_failed``    problem         generated samples failed the equilibrium check
``equilibrated``          ok              the check passed
``score_undefined``       caution         covariance / 3-point score NaN (reason stored by the
                                          statistics stage)
``score_out_of_range``    problem/caution score < 0 (problem) or > 1 (caution), with reason;
                                          caution when within :data:`Z_NOISE` of its own
                                          Monte Carlo error (``score_*_std``) of [0, 1]
``data_limited``          caution         Pearson r(train, test) of covariances or 3-point
                                          correlations below :data:`MIN_R_TRAIN_TEST`
``lag_clamped``           caution         dynamics lags clamped to the longest segment
``rescale_below_bin``     caution         fitted ms per sweep longer than the first fitted lag
``rescale_at_bound``      caution         rescale fit at the end of its grid (only a bound)
``unassigned_areas``      ok              neurons without a brain area (e.g. ``root``) kept
                                          in the model, left out of area analyses
``areas_too_small``       caution         no area has ``couplings.min_area_neurons``
                                          neurons: the area matrix and Fig. 5 are empty
``truth_not_recovered``   caution         synthetic session: Pearson r of J_ij with the
                                          planted J_ij below :data:`MIN_R_TRUTH`
``truth_recovered``       ok              otherwise (with r of H_i and the time rescale)
``stage_warning``         problem         a stage stored a ``warning`` attribute
========================  ==============  ===================================================

The cross-session atlas is judged on its own (:func:`atlas_findings`, session
``atlas (all sessions)`` of ``tables/findings.tsv``):

========================  ==============  ===================================================
``atlas_empty``           caution         no area of any session has ``atlas.min_area_neurons``
                                          neurons: the atlas is empty
``atlas_one_session``     caution         one session: intervals resample its neurons only
``atlas_pooled``          ok              otherwise
========================  ==============  ===================================================
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr

__all__ = [
    "LEVELS",
    "MIN_R_TRAIN_TEST",
    "MIN_R_TRUTH",
    "MIN_TEST_BINS",
    "Z_NOISE",
    "Z_SHIFT",
    "Finding",
    "atlas_findings",
    "findings_table",
    "session_findings",
]

Level = Literal["ok", "caution", "problem"]
#: Levels from the least to the most severe.
LEVELS: tuple[str, ...] = ("ok", "caution", "problem")

#: Fewest test bins for a stated comparison. A pair covariance at spike probability p per bin
#: and correlation coefficient rho is ~ rho p; its estimate from T bins has s.e. ~ p / sqrt(T)
#: (Var(v_i v_j) ~ p^2 for small p), so its signal-to-noise ratio is ~ rho sqrt(T). Pairwise
#: correlations of cortical neurons at 10-20 ms bins are typically rho ~ 0.02-0.1 (Cohen & Kohn,
#: Nat. Neurosci. 14, 811 (2011)): at T = 1000 a typical pair (rho = 0.05) has SNR ~ 1.6, below
#: it single pair statistics of the test set are mostly noise, and the test log-likelihood's
#: sampling error grows as 1/sqrt(T).
MIN_TEST_BINS = 1000

#: Smallest gain of the selected model's test LL over the independent-site floor (nats per
#: sample) reported as learned structure: the default ``train.min_delta``, the change the
#: early stopping counts as an improvement; smaller gains are within what the online
#: evaluation treats as noise.
MIN_GAIN = 0.01

#: Smallest Pearson r between the train and test values of a statistic (over pairs or
#: triplets) for a comparison of models on it. With equal-size splits, r(train, test) is the
#: split-half reliability rho of the statistic: the fraction of its variance across pairs that
#: is reproducible signal rather than sampling noise. Below 0.5, more than half of that
#: variance is noise: even the true model reaches only r(train, model) ~ sqrt(rho) < 0.71,
#: and differences between models drown in the noise (the data are too short, not the model
#: too poor).
MIN_R_TRAIN_TEST = 0.5

#: Smallest Pearson r of the model's J_ij with the planted J_ij (synthetic sessions) reported
#: as recovered: below 0.5 the model explains less than a quarter (r^2) of the variance of the
#: planted couplings across pairs, i.e. most of what Figs. 4-5 would show is not the truth.
MIN_R_TRUTH = 0.5

#: Standard errors by which the test log-likelihood must exceed the train log-likelihood to
#: be reported: a fitted model is expected to do worse on held-out data, so a significant
#: excess (one-sided, ~2.3 % by chance) points to splits that differ.
Z_NOISE = 2.0

#: Standard errors (autocorrelation-corrected) by which the mean population activity of the
#: test split must differ from the train split's to be reported on its own (``split_shift``):
#: stricter than :data:`Z_NOISE` because it is judged in both directions and matters only when
#: clearly present (two-sided ~0.3 % by chance).
Z_SHIFT = 3.0


@dataclass(frozen=True)
class Finding:
    """One judged fact about a session.

    Attributes
    ----------
    level
        ``ok``, ``caution`` or ``problem``.
    code
        Stable snake_case identifier (module table).
    message
        One line: the number(s) and the fix.
    """

    level: Level
    code: str
    message: str

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"finding level must be one of {LEVELS}; got {self.level!r}")


# --------------------------------------------------------------------------------------------
# attribute access
# --------------------------------------------------------------------------------------------
def _attrs(obj: xr.Dataset | Mapping[str, Any] | None) -> Mapping[str, Any]:
    if obj is None:
        return {}
    return obj.attrs if isinstance(obj, xr.Dataset) else obj


def _num(attrs: Mapping[str, Any], key: str) -> float:
    """``attrs[key]`` as float (NaN when absent or not a number)."""
    value = attrs.get(key)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _flag(attrs: Mapping[str, Any], key: str) -> bool | None:
    """A 1/0 attribute as bool (None when absent)."""
    value = attrs.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no")
    return bool(int(value))


def _sizes(text: Any) -> list[int]:
    """A list of hidden sizes from an attribute (JSON list, comma list or number)."""
    if text is None:
        return []
    if isinstance(text, int | np.integer):
        return [int(text)]
    if isinstance(text, list | tuple | np.ndarray):
        return [int(x) for x in text]
    try:
        value = json.loads(str(text))
    except ValueError:
        value = [x for x in str(text).replace(";", ",").split(",") if x.strip()]
    return [int(x) for x in (value if isinstance(value, list) else [value])]


def _train_config(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``train_config`` JSON attribute of a model.nc (empty when absent or unreadable)."""
    try:
        value = json.loads(str(attrs.get("train_config", "{}")))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _fmt_sizes(sizes: Sequence[int]) -> str:
    return "[" + ", ".join(str(s) for s in sizes) + "]"


# --------------------------------------------------------------------------------------------
# the checks (one per concern, in pipeline order)
# --------------------------------------------------------------------------------------------
def _floor(sel: Mapping[str, Any]) -> list[Finding]:
    if "beats_floor" not in sel:
        return []
    gain = _num(sel, "ll_test") - _num(sel, "floor_test")
    if not _flag(sel, "beats_floor"):
        return [Finding("problem", "below_floor",
                        f"no model beats the independent-site floor on test data (best test LL "
                        f"{_num(sel, 'll_test'):.4g} vs floor {_num(sel, 'floor_test'):.4g} "
                        "nats/sample): nothing beyond firing rates was learned; train longer "
                        "(train.n_updates), check train.lr, or record more data")]
    margin = max(MIN_GAIN, Z_NOISE * _num(sel, "ll_test_std"))  # a NaN error counts as 0
    if math.isfinite(gain) and not gain > margin:
        return [Finding("caution", "marginal_gain",
                        f"the selected model beats the independent-site floor by only "
                        f"{gain:.4g} nats/sample (test LL {_num(sel, 'll_test'):.4g} vs "
                        f"{_num(sel, 'floor_test'):.4g}; below {margin:.4g}, the larger of "
                        f"{MIN_GAIN} and {Z_NOISE:g} x its log Z error): hardly more than "
                        "firing rates was learned; train longer (train.n_updates, train.lr) "
                        "or record more data")]
    return [Finding("ok", "beats_floor",
                    f"selected model beats the independent-site floor by {gain:.4g} nats/sample "
                    f"(test LL {_num(sel, 'll_test'):.4g} vs {_num(sel, 'floor_test'):.4g})")]


def _grid(selected: xr.Dataset | Mapping[str, Any], *, unconverged: bool = False
          ) -> list[Finding]:
    """``grid_edge`` / ``grid_interior``; ``unconverged``: the selected model is
    ``not_converged``, so the edge says more about training length than about size."""
    sel = _attrs(selected)
    if "n_hidden" not in sel:
        return []
    chosen = int(sel["n_hidden"])
    grid = (sorted(int(x) for x in selected["n_hidden"].values)
            if isinstance(selected, xr.Dataset) and "n_hidden" in selected.variables
            and selected["n_hidden"].ndim == 1 else [chosen])
    tied = [s for s in _sizes(sel.get("tied_with")) if s != chosen]
    tie_note = f" (tied within errors with {_fmt_sizes(tied)})" if tied else ""
    if len(grid) < 2:
        return [Finding("caution", "grid_edge",
                        f"only one hidden size ({chosen}) was trained: nothing was selected; "
                        f"add sizes around it to train.n_hidden (e.g. {max(chosen // 2, 1)}, "
                        f"{2 * chosen})")]
    def edge(which: str, where: str, nxt: int) -> list[Finding]:
        text = f"selected the {which} hidden size of the grid {_fmt_sizes(grid)}{tie_note}"
        if unconverged:  # the comparison of sizes is one of training speed, not of models
            return [Finding("caution", "grid_edge",
                            f"{text}, but that model did not converge (not_converged): at a "
                            "fixed number of updates a larger RBM learns faster, not "
                            "necessarily better, so the edge is not yet meaningful; raise "
                            f"train.n_updates first, then add {nxt} to train.n_hidden if the "
                            "edge remains")]
        return [Finding("caution", "grid_edge",
                        f"{text}: the optimum may lie {where}; add {nxt} to train.n_hidden")]

    if chosen == grid[-1]:
        return edge("largest", "beyond", int(round(grid[-1] * grid[-1] / grid[-2])))
    if chosen == grid[0] and chosen > 1:
        nxt = max(1, int(round(grid[0] * grid[0] / grid[1])))
        if nxt < grid[0]:
            return edge("smallest", "below", nxt)
    return [Finding("ok", "grid_interior",
                    f"selected {chosen} hidden units, inside the grid {_fmt_sizes(grid)}"
                    f"{tie_note}")]


def _replicas(sel: Mapping[str, Any]) -> list[Finding]:
    """R > 1: is the selected size distinguishable from the others over the replicas?"""
    if "replicas" not in sel or int(_num(sel, "replicas")) <= 1:
        return []
    chosen, n_rep = int(sel["n_hidden"]), int(_num(sel, "replicas"))
    live, wins = int(_num(sel, "replicas_live")), int(_num(sel, "replica_wins"))
    head = (f"selected {chosen} hidden units: replica-mean test LL {_num(sel, 'll_test'):.4g} "
            f"+- {_num(sel, 'll_test_se'):.2g} (s.e. over {live} live replicas), best in "
            f"{wins} of {n_rep} replicas")
    out = []
    close = _sizes(sel.get("within_se"))
    if close:
        out.append(Finding("caution", "within_se",
                           f"{head}; n_hidden {_fmt_sizes(close)} within one standard error of "
                           "it: the replicas do not distinguish these sizes (prefer the "
                           "smallest, or add replicas: train.replicas)"))
    else:
        out.append(Finding("ok", "replicas_agree",
                           f"{head}; no other size within one standard error"))
    if sel.get("replicas_dropped"):
        out.append(Finding("caution", "replica_dropped",
                           f"replica(s) {sel['replicas_dropped']} of the selected size diverged "
                           "and were dropped: the mean and its error use the live ones; lower "
                           "train.lr"))
    return out


def _convergence(selected: xr.Dataset | Mapping[str, Any],
                 models: Mapping[int, Mapping[str, Any]]) -> list[Finding]:
    sel = _attrs(selected)
    if "n_hidden" not in sel:
        return []
    chosen = int(sel["n_hidden"])
    best_ckpt = {}
    if isinstance(selected, xr.Dataset) and "checkpoint" in selected.variables and \
            selected["checkpoint"].ndim == 1:
        best_ckpt = {int(h): int(c) for h, c in zip(selected["n_hidden"].values,
                                                    selected["checkpoint"].values, strict=True)}
    best_ckpt.setdefault(chosen, int(_num(sel, "checkpoint")) if "checkpoint" in sel else -1)
    out = []
    for size in sorted(set(models) | {chosen}):
        m = _attrs(models.get(size))
        done = int(_num(m, "n_updates_done")) if "n_updates_done" in m else None
        level: Level = "problem" if size == chosen else "caution"
        who = "the selected model" if size == chosen else f"n_hidden {size}"
        improving = int(_num(m, "still_improving")) if "still_improving" in m else -1
        if improving in (0, 1):  # online stopping state of the train stage (-1: unknown)
            best = int(_num(m, "best_update")) if "best_update" in m else best_ckpt.get(size)
            gain = _num(m, "best_ll_test_online") - _num(sel, "floor_test")
            min_delta = _num(_train_config(m), "min_delta")
            if improving == 1:
                out.append(Finding(level, "not_converged",
                                   f"{who} reached the maximum of {done} updates with the "
                                   f"online test log-likelihood still rising (best update "
                                   f"{best}): not converged; raise train.n_updates"))
            elif m.get("stop_reason") == "early_stop" and gain < min_delta:
                out.append(Finding(level, "stopped_on_plateau",
                                   f"{who} stopped early at update {done} with its best online "
                                   f"test log-likelihood only {gain:.3g} nats/sample above the "
                                   f"independent-site floor (< min_delta {min_delta:g}): it "
                                   "never left the initial plateau; raise train.patience above "
                                   "the plateau, or train.lr / train.weight_std"))
            elif size == chosen:
                how = ("stopped early" if m.get("stop_reason") == "early_stop"
                       else "reached the maximum with the online test log-likelihood level")
                out.append(Finding("ok", "converged",
                                   f"training of {who} {how} at update {done} "
                                   f"(stop_reason {m.get('stop_reason', 'n/a')}); best update "
                                   f"{best}"))
            continue
        best = best_ckpt.get(size)
        if done is None or best is None or best < 0:
            continue
        if best >= done:
            out.append(Finding(level, "not_converged",
                               f"the best checkpoint of {who} is its last update ({done}): the "
                               "test log-likelihood may still be rising; raise train.n_updates"))
        elif size == chosen:
            out.append(Finding("ok", "converged",
                               f"the test log-likelihood of {who} peaked at update {best} of "
                               f"{done}"))
    return out


def _online(sel: Mapping[str, Any]) -> list[Finding]:
    """``online_disagrees``: ``n_hidden@checkpoint`` entries, ``;``-separated (selection)."""
    value = str(sel.get("online_disagrees", "")).strip()
    if not value or value == "0":
        return []
    z, zmax = _num(sel, "online_max_abs_z"), _num(sel, "disagree_z")
    detail = (f" (largest |z| = {z:.3g} > {zmax:g})" if math.isfinite(z) and math.isfinite(zmax)
              else "")
    return [Finding("caution", "online_disagrees",
                    "the online test log-likelihood (trajectory AIS) and the checkpoint estimate "
                    "(exact/AIS) disagree by more than their stated uncertainty at "
                    f"n_hidden@update {value.replace(';', ', ')}{detail}; the checkpoint "
                    "estimate decides the selection; raise train.tais_chains or "
                    "likelihood.ais_betas / ais_chains")]


def _splits(sel: Mapping[str, Any], stats: Mapping[str, Any],
            ll: Mapping[str, Any]) -> list[Finding]:
    out = []
    gap, gap_se = _num(stats, "ll_test_minus_train"), _num(stats, "ll_test_minus_train_se")
    if not math.isfinite(gap):
        gap = _num(sel, "ll_test") - _num(sel, "ll_train")
    if math.isfinite(gap) and math.isfinite(gap_se) and gap_se > 0 and gap > Z_NOISE * gap_se:
        kz = _num(stats, "k_shift_z")
        shift = (f"mean population activity K: train {_num(stats, 'k_mean_train'):.4g} +- "
                 f"{_num(stats, 'k_mean_train_se'):.2g}, test {_num(stats, 'k_mean_test'):.4g} "
                 f"+- {_num(stats, 'k_mean_test_se'):.2g} active neurons per bin "
                 f"(z = {kz:.2g})")
        if math.isfinite(kz) and abs(kz) > Z_NOISE:
            why = ("the splits differ in activity (drift, engagement): the test bins are "
                   "easier, not the model better")
        else:
            why = "the splits differ in a way mean activity does not show"
        out.append(Finding("caution", "test_above_train",
                           f"test LL exceeds train LL by {gap:.3g} +- {gap_se:.2g} nats/sample "
                           f"(z = {gap / gap_se:.2g}); {shift}: {why}; interleave more, shorter "
                           "test blocks (raise binarize.n_blocks)"))
    else:
        kz = _num(stats, "k_shift_z")
        if math.isfinite(kz) and abs(kz) > Z_SHIFT:
            kt, ke = _num(stats, "k_mean_train"), _num(stats, "k_mean_test")
            out.append(Finding(
                "caution", "split_shift",
                f"mean population activity differs between the splits: train {kt:.4g} +- "
                f"{_num(stats, 'k_mean_train_se'):.2g}, test {ke:.4g} +- "
                f"{_num(stats, 'k_mean_test_se'):.2g} active neurons per bin (z = {kz:.2g}, "
                f"{(ke - kt) / kt:+.0%}); the test split is not a draw from the train "
                "distribution (drift, engagement), so part of the train-test gap of every "
                "log-likelihood and statistic is the data's, not the model's: compare hidden "
                "sizes by differences of test LL; interleave more, shorter test blocks "
                "(raise binarize.n_blocks)"))
    n_test = _num(ll, "n_test")
    if math.isfinite(n_test) and n_test < MIN_TEST_BINS:
        out.append(Finding("caution", "few_test_bins",
                           f"only {int(n_test)} test bins (< {MIN_TEST_BINS}): the test "
                           "log-likelihood and the test statistics are noisy; record longer or "
                           "raise binarize.n_test_blocks"))
    return out


def _statistics(stats: Mapping[str, Any]) -> list[Finding]:
    if not stats:
        return []
    out = []
    eq = stats.get("equilibrated")
    if eq is not None and int(eq) == 0:
        out.append(Finding("problem", "equilibrium_failed",
                           "generated samples failed the equilibrium check "
                           f"({stats.get('equilibration_reason', '')}): Fig. 3 statistics are not "
                           "equilibrium statistics; raise statistics.burn_in_sweeps"))
    elif eq is not None and int(eq) == 1:
        out.append(Finding("ok", "equilibrated",
                           f"generated samples passed the equilibrium check (tau_E "
                           f"{_num(stats, 'tau_energy_sweeps'):.3g}, tau_K "
                           f"{_num(stats, 'tau_k_sweeps'):.3g} sweeps; burn-in "
                           f"{stats.get('burn_in_sweeps', 'n/a')})"))
    names = {"covariance": "covariances", "corr3": "3-point correlations"}
    for st, label in names.items():
        score = _num(stats, f"score_{st}")
        reason = str(stats.get(f"score_{st}_reason", "no reason stored"))
        for prefix in ("undefined: ", "negative: ", "above 1: "):  # the level says it already
            reason = reason.removeprefix(prefix)
        if f"score_{st}" not in stats:
            continue
        if not math.isfinite(score):
            out.append(Finding("caution", "score_undefined",
                               f"score of {label} is undefined (NaN): {reason}; judge by "
                               "r(train, generated) and the error ratio instead"))
        elif score < 0 or score > 1:
            # the score's own Monte Carlo error (statistics stage, docs/methods.md §5)
            std = _num(stats, f"score_{st}_std")
            outside = -score if score < 0 else score - 1
            noise = math.isfinite(std) and outside <= Z_NOISE * std
            level: Level = "problem" if score < 0 and not noise else "caution"
            err = f" +- {std:.2g}" if math.isfinite(std) else ""
            within = (f" (within {Z_NOISE:g} s.d. of [0, 1]: the excess is Monte Carlo noise "
                      "of the score itself)" if noise else "")
            out.append(Finding(level, "score_out_of_range",
                               f"score of {label} is {score:.3g}{err} "
                               f"{'< 0' if score < 0 else '> 1'}{within}: {reason}"))
        r = _num(stats, f"{st}_r_train_test")
        if math.isfinite(r) and r < MIN_R_TRAIN_TEST:
            out.append(Finding("caution", "data_limited",
                               f"{label} of train and test agree only to Pearson r = {r:.2f} "
                               f"(< {MIN_R_TRAIN_TEST}): more than half of their variance "
                               "across neurons is sampling noise, so no model can be judged on "
                               "them; record longer (more bins)"))
    return out


def _couplings(coup: Mapping[str, Any]) -> list[Finding]:
    out = []
    largest = int(_num(coup, "largest_area_neurons")) if "largest_area_neurons" in coup else 0
    if "n_area_regions" in coup and int(_num(coup, "n_area_regions")) == 0 and largest > 0:
        m = int(_num(coup, "min_area_neurons"))
        out.append(Finding("caution", "areas_too_small",
                           f"no brain area has >= couplings.min_area_neurons = {m} neurons "
                           f"(largest: {coup.get('largest_area')} with {largest}): the area "
                           "matrix (Fig. 4d) and the per-area histograms (Fig. 5) are empty; "
                           f"lower couplings.min_area_neurons (e.g. to {max(largest, 2)}) to "
                           "see the area structure, knowing that small areas give noisy "
                           "block means"))
    n = int(_num(coup, "n_unassigned_neurons")) if "n_unassigned_neurons" in coup else 0
    if n > 0:
        labels = ", ".join(json.loads(coup.get("unassigned_areas", "[]")))
        out.append(Finding("ok", "unassigned_areas",
                           f"{n} neurons carry a label that names no brain area (one of "
                           f"couplings.unassigned_areas: {labels}): they are in the model and "
                           "every statistic but left out of the area analyses"))
    return out


def _truth(coup: Mapping[str, Any], dyn: Mapping[str, Any]) -> list[Finding]:
    """Recovery of the planted model (synthetic sessions: the stages score themselves)."""
    r_j = _num(coup, "truth_pearson_J")
    if not math.isfinite(r_j):
        return []
    parts = [f"Pearson r of the pairwise couplings J_ij with the planted ones {r_j:.2f}"]
    if math.isfinite(r_h := _num(coup, "truth_pearson_H")):
        parts.append(f"of the fields H_i {r_h:.2f}")
    fit, true = _num(dyn, "ms_per_sweep"), _num(dyn, "truth_ms_per_sweep")
    if math.isfinite(fit) and math.isfinite(true) and true > 0:
        parts.append(f"time rescale {fit:.3g} ms per sweep vs planted {true:.3g} "
                     f"({fit / true - 1:+.0%})")
    text = "planted truth: " + "; ".join(parts)
    if r_j < MIN_R_TRUTH:
        return [Finding("caution", "truth_not_recovered",
                        f"{text}: below {MIN_R_TRUTH}, most of the planted couplings' variance "
                        "is not recovered; train longer (train.n_updates) or on more data "
                        "(synthetic.duration_s) before trusting couplings on real data")]
    return [Finding("ok", "truth_recovered", text)]


def _dynamics(dyn: Mapping[str, Any]) -> list[Finding]:
    if not dyn:
        return []
    out = []
    if _flag(dyn, "lag_clamped"):
        usable = int(_num(dyn, "longest_segment_bins")) - 1
        out.append(Finding("caution", "lag_clamped",
                           f"{dyn.get('lag_clamp_reason', 'data lags clamped')}; set "
                           f"dynamics.max_lag_bins <= {usable} for these data"))
    first = _num(dyn, "fit_first_lag_sweeps")
    if math.isfinite(first) and first < 1:
        lo, bin_ms, r = int(_num(dyn, "fit_lag_lo")), _num(dyn, "bin_ms"), _num(dyn, "ms_per_sweep")
        need = int(math.ceil(r / bin_ms)) if bin_ms > 0 else lo + 1
        n_sub = int(_num(dyn, "fit_n_sub_sweep_lags"))
        out.append(Finding("caution", "rescale_below_bin",
                           f"fitted {r:.3g} ms per sweep exceeds the first fitted lag ({lo} bin = "
                           f"{lo * bin_ms:.3g} ms): {n_sub} fitted lag(s) are shorter than one "
                           "Gibbs sweep, where the model curve is "
                           "interpolated between C(0) = 1 and C(1); start dynamics.fit_lag_range "
                           f"at lag {need} or read the rescale as an upper bound"))
    if _flag(dyn, "fit_at_bound"):
        out.append(Finding("caution", "rescale_at_bound",
                           "the time-rescale fit hit the end of its grid "
                           f"({_num(dyn, 'ms_per_sweep'):.3g} ms per sweep is only a bound): "
                           "raise dynamics.max_lag_sweeps"))
    return out


def _stage_warnings(artifacts: Mapping[str, Any]) -> list[Finding]:
    out = []
    for name, obj in artifacts.items():
        if name in ("selected", "models"):
            continue  # the selection's warning is below_floor
        attrs = _attrs(obj)
        if attrs.get("warning"):
            out.append(Finding("problem", "stage_warning", f"{name}: {attrs['warning']}"))
    return out


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def session_findings(artifacts: Mapping[str, Any]) -> list[Finding]:
    """Judge a session's artifacts: the list of findings, most severe first.

    Parameters
    ----------
    artifacts
        By name, each an ``xarray.Dataset`` or a mapping of its global attributes (absent
        artifacts skip their checks): ``selected`` (``selected.nc``; a Dataset gives the
        candidate table: the grid of hidden sizes and each size's best checkpoint), ``loglik``
        (the session's ``loglik.nc``), ``models`` (``{n_hidden: model.nc attrs}``),
        ``statistics``, ``couplings``, ``dynamics``.

    Returns
    -------
    list of Finding
        Problems first, then cautions, then passed checks (``ok``); within a level in pipeline
        order (module table).
    """
    selected = artifacts.get("selected")
    sel = _attrs(selected)
    stats = _attrs(artifacts.get("statistics"))
    models = {int(k): _attrs(v) for k, v in (artifacts.get("models") or {}).items()}
    found: list[Finding] = []
    if selected is not None:
        conv = _convergence(selected, models)
        unconverged = any(f.code == "not_converged" and f.level == "problem" for f in conv)
        found += (_floor(sel) + _grid(selected, unconverged=unconverged) + _replicas(sel) + conv
                  + _online(sel))
    found += _splits(sel, stats, _attrs(artifacts.get("loglik")))
    found += _statistics(stats)
    found += _couplings(_attrs(artifacts.get("couplings")))
    found += _truth(_attrs(artifacts.get("couplings")), _attrs(artifacts.get("dynamics")))
    found += _dynamics(_attrs(artifacts.get("dynamics")))
    found += _stage_warnings({k: v for k, v in artifacts.items() if k != "models"})
    rank = {level: i for i, level in enumerate(reversed(LEVELS))}
    return sorted(found, key=lambda f: rank[f.level])  # stable: pipeline order within a level


def atlas_findings(atlas: xr.Dataset | Mapping[str, Any]) -> list[Finding]:
    """Judge the cross-session atlas (``atlas/atlas.nc``; docs/methods.md §12).

    Parameters
    ----------
    atlas
        The atlas dataset or its attributes (:func:`spikerbm.atlas.build_atlas`):
        ``empty_reason``, ``largest_area_neurons``, ``min_area_neurons``, ``single_session``,
        ``n_regions``, ``n_sessions``, ``interval_note``.

    Returns
    -------
    list of Finding
        One finding: ``atlas_empty`` (caution: no area reached ``atlas.min_area_neurons``; the
        message names the key and a value that retains the largest area),
        ``atlas_one_session`` (caution: intervals from one session's neurons) or
        ``atlas_pooled`` (ok).
    """
    at = _attrs(atlas)
    reason = str(at.get("empty_reason", "") or "")
    if reason:
        largest = int(_num(at, "largest_area_neurons")) if "largest_area_neurons" in at else 0
        fix = (f"lower atlas.min_area_neurons (now {int(_num(at, 'min_area_neurons'))}; "
               f"{max(largest, 2)} keeps the largest area) or group areas with "
               "atlas.ccf_level" if largest >= 2 else "label the neurons' brain areas")
        return [Finding("caution", "atlas_empty",
                        f"the cross-session atlas is empty: {reason}; {fix} (small areas give "
                        "noisy block means), or set atlas.enabled: false")]
    k, n = _num(at, "n_regions"), _num(at, "n_sessions")
    if _flag(at, "single_session"):
        return [Finding("caution", "atlas_one_session",
                        f"the atlas of {k:.0f} areas has one session: "
                        f"{at.get('interval_note', '')}; add sessions for intervals over "
                        "recordings")]
    return [Finding("ok", "atlas_pooled", f"the atlas pools {k:.0f} areas over {n:.0f} sessions")]


def findings_table(findings: Sequence[Finding]) -> list[dict[str, str]]:
    """Rows ``{"level", "code", "message"}`` of a findings list (for TSV and HTML tables)."""
    return [{"level": f.level, "code": f.code, "message": f.message} for f in findings]
