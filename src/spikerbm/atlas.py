"""Cross-session brain-area atlas of effective couplings (issue 20; docs/methods.md §6).

Each session gives effective couplings ``J_ij`` (and ``R_ij``, the involvement of the pair in
3-body terms) between its neurons, each neuron labelled with its brain area. The paper's
coarse-graining (docs/methods.md §6, paper Fig. 4d) is, for areas ``A``, ``B`` with at least
``min_area_neurons`` neurons,

    Jbar_AB = mean of J_ij over i in A, j in B, i != j

(also mean ``|J_ij|`` and mean ``R_ij``). The atlas pools it over every session that recorded
both areas and attaches uncertainty:

* **Point estimate**: the mean over sessions of the per-session ``Jbar_AB^s`` (each session one
  replicate of the brain: a session with more neurons does not outweigh the others, and the
  couplings of different sessions come from different models whose scales need not agree).
* **Within-session uncertainty: neuron (vertex) bootstrap.** Pairs that share a neuron are not
  independent (a neuron's rate and its place in the network shift all its couplings: a row
  effect), so the pair is not the exchangeable unit, the neuron is. Resampling neurons with
  replacement inside each area, and taking all pairs of distinct neurons among the draws, keeps
  the row/column dependence (Snijders & Borgatti, *Connections* 22, 1999; for the crossed
  ``A != B`` blocks it is Owen's pigeonhole bootstrap, *Ann. Appl. Stat.* 1, 2007, which is
  mildly conservative). Resampling pairs instead would treat ``n_A n_B`` dependent values as
  independent and give intervals too narrow by about ``sqrt(n)`` when row effects dominate.
  A draw with counts ``c_i`` gives ``sum c_i c_j J_ij / sum c_i c_j`` over ``i != j`` (a
  neuron drawn twice never pairs with itself), computed for all replicates as matrix products.
* **Between sessions: t interval on the session estimates** (``session_interval="t"``, the
  default): ``mean +- t_{n-1} sd / sqrt(n)`` over the ``n >= 2`` sessions that recorded the
  pair. The spread of the session estimates already contains both the session-to-session
  variability and each session's neuron-sampling noise, so the interval is exact for normal
  session estimates whatever their split (it is the random-effects meta-analysis interval of
  Hartung-Knapp-Sidik-Jonkman with equal weights). The two-stage hierarchical bootstrap
  (``session_interval="bootstrap"``: sessions with replacement, then neurons within each drawn
  session; Saravanan et al., *NBDT* 3, 2020) counts the within-session noise twice (too wide
  when sessions agree) and, with the few sessions an atlas has, lacks the ``t`` correction (too
  narrow when they do not): docs/methods.md §12 gives the measured coverage of both.
* **One session** (per entry, or the whole atlas): the interval comes from the neuron bootstrap
  alone (percentile) and describes which neurons were recorded, not session-to-session
  variability; ``ci_from_sessions`` is 0 there and the attribute ``interval_note`` says so.

Per area ``A`` the atlas compares within-area pairs (``i, j in A``) with across pairs (``i in
A``, ``j`` in any other retained area of the same session): per session the difference
``d_s = within_s - across_s`` and Cohen's ``d`` (difference / pooled pair SD); pooled, the mean
of ``d_s`` with the same intervals, and a two-sided sign-flip permutation test over sessions
(exact enumeration of the ``2^n`` sign patterns; the smallest attainable p is ``2 / 2^n``), so
sessions, not pairs, are the units of the test. With one session the p-value is the neuron
bootstrap's, ``2 (1 + min(#{d* <= 0}, #{d* >= 0})) / (B + 1)`` (never 0; North, Curtis &
Sham, *Am. J. Hum. Genet.* 71, 439, 2002), again conditional on that session.

Areas: neurons labelled ``root`` (not assigned to an area; Steinmetz et al. 2019) are excluded
by default (``exclude_areas``), and so are areas with fewer than ``min_area_neurons`` neurons in
a session (in that session). Optionally areas are grouped by the Allen CCF hierarchy first
(:func:`ccf_group`, the structure table shipped by ``iblatlas``). When no area of any session
reaches ``min_area_neurons`` (small recordings) the atlas is empty, ``region`` of size 0, and
its attribute ``empty_reason`` names the largest area; the workflow goes on and the findings
say which key to lower (:func:`spikerbm.findings.atlas_findings`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from spikerbm.provenance import derive_seed

__all__ = [
    "QUANTITIES",
    "SessionCouplings",
    "session_couplings",
    "ccf_structure_table",
    "ccf_group",
    "build_atlas",
    "sign_flip_pvalue",
    "expanded_alpha",
    "atlas_by_model",
    "atlas_tables",
    "AREA_PAIR_COLUMNS",
    "WITHIN_ACROSS_COLUMNS",
]

#: quantities of a session: name -> long name
QUANTITIES: dict[str, str] = {
    "J": "pairwise coupling J_ij",
    "J_abs": "|J_ij|",
    "R": "R_ij = sum_k|J_ijk| / (|J_ij| + sum_k|J_ijk|)",
}

#: columns of the two tables of :func:`atlas_tables` (also when the atlas is empty)
AREA_PAIR_COLUMNS = ["model", "quantity", "region", "region2", "mean", "se", "ci_low",
                     "ci_high", "n_sessions", "n_pairs", "ci_from_sessions"]
WITHIN_ACROSS_COLUMNS = ["model", "quantity", "region", "within", "across", "delta",
                         "delta_se", "delta_ci_low", "delta_ci_high", "cohen_d", "p_value",
                         "n_sessions"]

#: largest number of sessions for which the sign-flip test enumerates all 2^n patterns
_EXACT_FLIPS = 16


@dataclass(frozen=True)
class SessionCouplings:
    """One session's pair quantities and the area of each neuron.

    Attributes
    ----------
    session
        Session id.
    areas
        Area label per neuron, shape (N,), str.
    matrices
        Quantity name -> symmetric (N, N) float64 array; the diagonal is ignored, NaN marks a
        pair without a value (excluded from every mean).
    """

    session: str
    areas: np.ndarray
    matrices: Mapping[str, np.ndarray]


def session_couplings(ds: xr.Dataset, session: str, *,
                      quantities: Sequence[str] = ("J", "J_abs", "R")) -> SessionCouplings:
    """The atlas input of one session from a ``couplings.nc`` dataset (docs/data-model.md).

    Parameters
    ----------
    ds
        Needs ``J(neuron, neuron2)`` and the coordinate ``area(neuron)``; ``R(neuron, neuron2)``
        when ``"R"`` is requested. ``J_abs`` is ``|J|``.
    session
        Session id.
    quantities
        Subset of :data:`QUANTITIES`.

    Raises
    ------
    ValueError
        On an unknown quantity, a missing variable or a non-square matrix.
    """
    bad = [q for q in quantities if q not in QUANTITIES]
    if bad:
        raise ValueError(f"unknown atlas quantities {bad}; choose from {list(QUANTITIES)}")
    if "area" not in ds.coords and "area" not in ds:
        raise ValueError(f"session {session}: couplings have no 'area' coordinate on 'neuron'; "
                         "recompute couplings.nc with this version")
    areas = np.asarray(ds["area"].values).astype(str)
    mats = {}
    for q in quantities:
        src = "J" if q == "J_abs" else q
        if src not in ds:
            raise ValueError(f"session {session}: couplings.nc has no variable {src!r} needed "
                             f"for the atlas quantity {q!r}; drop {q!r} from the quantities")
        m = np.asarray(ds[src].transpose("neuron", "neuron2").values, dtype=np.float64)
        mats[q] = np.abs(m) if q == "J_abs" else m
    return _checked(SessionCouplings(session, areas, mats))


def _checked(s: SessionCouplings) -> SessionCouplings:
    n = s.areas.shape[0]
    if s.areas.ndim != 1:
        raise ValueError(f"session {s.session}: areas must be 1-d; got shape {s.areas.shape}")
    for q, m in s.matrices.items():
        if q not in QUANTITIES:
            raise ValueError(f"unknown atlas quantity {q!r}; choose from {list(QUANTITIES)}")
        if np.shape(m) != (n, n):
            raise ValueError(f"session {s.session}: {q} has shape {np.shape(m)}; expected "
                             f"({n}, {n}), one row and column per labelled neuron")
    return s


# --------------------------------------------------------------------------------------------
# Allen CCF hierarchy (structure table shipped by iblatlas)
# --------------------------------------------------------------------------------------------


@cache
def ccf_structure_table() -> pd.DataFrame:
    """The Allen CCF structure tree (2017 ontology) as shipped by ``iblatlas``, indexed by id.

    Columns used: ``acronym``, ``name``, ``depth`` (root = 0), ``parent_structure_id`` and
    ``path`` (list of ancestor ids from root to the structure itself). Read from the package's
    ``allen_structure_tree.csv`` (offline; ``iblatlas`` imports nothing at package level).

    Raises
    ------
    ImportError
        When ``iblatlas`` is not installed, with the install line.
    """
    try:
        files = resources.files("iblatlas")
    except ModuleNotFoundError as err:
        raise ImportError("CCF grouping reads the Allen structure table shipped by iblatlas: "
                          "pip install 'iblatlas==1.3.0' (or set the grouping off)") from err
    with (files / "allen_structure_tree.csv").open("r") as fh:
        df = pd.read_csv(fh, usecols=["id", "acronym", "name", "depth", "parent_structure_id",
                                      "structure_id_path"])
    df = df[df["id"] > 0].copy()  # row 0 is "void"
    df["id"] = df["id"].astype(np.int64)
    df["depth"] = df["depth"].astype(np.int64)
    df["path"] = [[int(x) for x in str(p).strip("/").split("/")] for p in df["structure_id_path"]]
    return df.set_index("id", drop=False)


def _ccf_ids(level_file: str) -> set[int]:
    with (resources.files("iblatlas") / level_file).open("rb") as fh:
        return {int(x) for x in np.load(fh).ravel()}


def ccf_group(areas: Sequence[str] | np.ndarray,
              level: str | int | Sequence[str]) -> np.ndarray:
    """Map Allen CCF acronyms to a coarser level of the CCF hierarchy.

    Parameters
    ----------
    areas
        Allen CCF acronyms (e.g. ``VISp``, ``LGd``), shape (N,).
    level
        * ``"cosmos"``: IBL's Cosmos parcellation (10 major divisions: Isocortex, OLF, HPF,
          CTXsp, CNU, TH, HY, MB, HB, CB), shipped with iblatlas;
        * ``"beryl"``: IBL's Beryl parcellation (~300 regions; cortical layers and subnuclei
          merged into their area);
        * an ``int`` ``d``: the ancestor at tree depth ``d`` (root = 0; e.g. ``VIS`` is at 6,
          ``TH`` at 4); areas at depth ``<= d`` stay as they are;
        * a sequence of acronyms (e.g. ``["VIS", "TH", "HPF"]``): each area goes to its nearest
          ancestor-or-self in the list (``VISp -> VIS``, ``LGd -> TH``); areas with none in the
          list stay as they are.

        Each area maps to the nearest ancestor-or-self at that level; an area above the level
        (e.g. ``MB`` with ``"beryl"``) stays as it is.

    Returns
    -------
    np.ndarray
        The grouped acronyms, shape (N,), str.

    Raises
    ------
    ValueError
        When an area is not a CCF acronym (synthetic labels such as ``A1``: turn grouping off),
        or on an unknown level.
    """
    tab = ccf_structure_table()
    by_acr = {a: int(i) for a, i in zip(tab["acronym"], tab["id"], strict=True)}
    areas = np.asarray(areas).astype(str)
    unknown = sorted({a for a in areas if a not in by_acr})
    if unknown:
        raise ValueError(f"areas {unknown[:10]} are not Allen CCF acronyms, so they cannot be "
                         "grouped by the CCF hierarchy: turn the CCF grouping off for these "
                         "sessions")
    if isinstance(level, str):
        key = level.lower()
        if key not in ("cosmos", "beryl"):
            raise ValueError(f"CCF level {level!r}: use 'cosmos', 'beryl', a tree depth (int) "
                             "or a list of CCF acronyms")
        targets = _ccf_ids(f"{key}.npy")
    elif isinstance(level, int | np.integer) and not isinstance(level, bool):
        if level < 0:
            raise ValueError(f"CCF depth must be >= 0 (root = 0); got {level}")
        targets = None
    else:
        names = [str(x) for x in level]
        missing = [x for x in names if x not in by_acr]
        if missing or not names:
            raise ValueError(f"CCF group acronyms {missing or names} are not in the Allen "
                             "structure tree: give CCF acronyms such as VIS, TH, HPF")
        targets = {by_acr[x] for x in names}
    out = {}
    for a in set(areas):
        path = tab.at[by_acr[a], "path"]
        if targets is None:
            anc = path[min(int(level), len(path) - 1)]
        else:
            anc = next((p for p in reversed(path) if p in targets), by_acr[a])
        out[a] = str(tab.at[anc, "acronym"])
    return np.array([out[a] for a in areas], dtype=str)


# --------------------------------------------------------------------------------------------
# per-session block means with the neuron bootstrap
# --------------------------------------------------------------------------------------------


def _neuron_counts(labels: np.ndarray, k: int, n_boot: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Row 0: every retained neuron once; rows 1..n_boot: multinomial draws within each area."""
    counts = np.zeros((n_boot + 1, labels.size))
    for a in range(k):
        idx = np.flatnonzero(labels == a)
        if idx.size == 0:  # area not retained in this session
            continue
        counts[0, idx] = 1.0
        if n_boot:
            counts[1:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size),
                                              size=n_boot)
    return counts


def _block_sums(Q: np.ndarray, counts: np.ndarray, labels: np.ndarray,
                k: int) -> tuple[np.ndarray, np.ndarray]:
    """``num[r, A, B] = sum c_i c_j Q_ij``, ``den[r, A, B] = sum c_i c_j`` over valid ``i != j``.

    Valid = finite off-diagonal entries. Cost ``O(R N n_A)`` per area, ``O(R N^2)`` in all.
    """
    valid = np.isfinite(Q)
    np.fill_diagonal(valid, False)
    Qz = np.where(valid, Q, 0.0)
    onehot = np.zeros((labels.size, k))
    keep = labels >= 0
    onehot[np.flatnonzero(keep), labels[keep]] = 1.0
    r = counts.shape[0]
    num = np.empty((r, k, k))
    den = np.empty((r, k, k))
    holes = not valid[np.ix_(keep, keep)].sum() == keep.sum() * (keep.sum() - 1)
    tot = counts @ onehot  # (R, K): S_A = sum of counts in A
    for a in range(k):
        idx = np.flatnonzero(labels == a)
        ca = counts[:, idx]
        num[:, a, :] = ((ca @ Qz[idx]) * counts) @ onehot
        if holes:
            den[:, a, :] = ((ca @ valid[idx].astype(np.float64)) * counts) @ onehot
        else:
            den[:, a, :] = tot[:, a:a + 1] * tot
            den[:, a, a] -= (ca * ca).sum(1)
    return num, den


@dataclass
class _Session:
    """Per-session block means (row 0 = estimate, rows 1.. = bootstrap replicates)."""

    regions: list[str]
    n_neurons: np.ndarray  # (K,)
    means: dict[str, np.ndarray]  # (R, K, K)
    n_pairs: dict[str, np.ndarray]  # (K, K) unordered pairs with a value
    delta: dict[str, np.ndarray]  # (R, K): within - across (NaN without another area)
    within: dict[str, np.ndarray]  # (K,)
    across: dict[str, np.ndarray]  # (K,)
    cohen_d: dict[str, np.ndarray]  # (K,)


def _session_tables(s: SessionCouplings, labels_str: np.ndarray, regions: list[str],
                    n_boot: int, seed: int) -> _Session:
    k = len(regions)
    code = {r: i for i, r in enumerate(regions)}
    labels = np.array([code.get(a, -1) for a in labels_str], dtype=np.int64)
    rng = np.random.default_rng(derive_seed(seed, "atlas", s.session))
    counts = _neuron_counts(labels, k, n_boot, rng)
    out = _Session(regions, np.bincount(labels[labels >= 0], minlength=k), {}, {}, {}, {}, {},
                   {})
    diag = np.eye(k, dtype=bool)
    for q, Q in s.matrices.items():
        Q = np.asarray(Q, dtype=np.float64)
        num, den = _block_sums(Q, counts, labels, k)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.means[q] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
            out.n_pairs[q] = np.where(diag, den[0] / 2, den[0]).round().astype(np.int64)
            # within: the (A, A) block; across: row A over the other retained areas
            w_num, w_den = num[:, diag], den[:, diag]
            x_num, x_den = num.sum(2) - w_num, den.sum(2) - w_den
            within = w_num / w_den
            across = np.where(x_den > 0, x_num / np.where(x_den > 0, x_den, 1.0), np.nan)
        out.delta[q] = within - across
        out.within[q], out.across[q] = within[0], across[0]
        sq, _ = _block_sums(Q * Q, counts[:1], labels, k)
        out.cohen_d[q] = _cohen_d(within[0], across[0], w_den[0], x_den[0], sq[0])
    return out


def _cohen_d(within: np.ndarray, across: np.ndarray, w_den: np.ndarray, x_den: np.ndarray,
             sq: np.ndarray) -> np.ndarray:
    """Per area: (mean within - mean across) / pooled SD of the pair values (one session).

    From block sums over ordered pairs: a within pair appears twice in the (A, A) block (its
    count ``w_den / 2``), an across pair once in row ``A``; ``sq`` are the block sums of
    ``Q^2``. Sample variances with ``ddof = 1``, pooled as in Cohen, *Statistical Power
    Analysis*, 2nd ed., 1988.
    """
    d = np.diagonal(sq)
    m_w, m_x = w_den / 2, x_den
    with np.errstate(invalid="ignore", divide="ignore"):
        ss_w = d / 2 - m_w * within**2
        ss_x = (sq.sum(1) - d) - m_x * across**2
        pooled = (ss_w + ss_x) / (m_w + m_x - 2)
        out = (within - across) / np.sqrt(pooled)
    return np.where((m_w >= 2) & (m_x >= 2) & (pooled > 0), out, np.nan)


# --------------------------------------------------------------------------------------------
# pooling over sessions
# --------------------------------------------------------------------------------------------


def sign_flip_pvalue(d: np.ndarray, *, n_random: int = 1 << 16,
                     rng: np.random.Generator | None = None) -> float:
    """Two-sided sign-flip permutation p-value of ``mean(d) = 0`` over independent units.

    Under H0 each ``d_s`` is symmetric about 0, so every sign pattern is equally likely; the
    p-value is the fraction of patterns with ``|mean| >= |observed mean|`` (exact enumeration
    for ``n <= 16``, else ``n_random`` random patterns plus the observed one). Smallest value
    ``2 / 2^n``. Source: Fisher, *The Design of Experiments* (1935); Good, *Permutation Tests*
    (2000).

    Parameters
    ----------
    d
        Per-unit differences, shape (n,), n >= 1 (NaNs dropped).
    """
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = d.size
    if n == 0:
        return float("nan")
    if n <= _EXACT_FLIPS:
        pat = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2.0 - 1.0
    else:
        rng = rng or np.random.default_rng(0)
        pat = np.vstack([np.ones(n), rng.choice([-1.0, 1.0], size=(n_random, n))])
    obs = abs(d.mean())
    stat = np.abs(pat @ d) / n
    return float(np.mean(stat >= obs * (1 - 1e-12) - 1e-300))


@cache
def _t_quantile(p: float, df: int) -> float:
    return float(stats.t.ppf(p, df))


@cache
def expanded_alpha(alpha: float, n: int) -> float:
    """Tail level of Hesterberg's expanded percentile interval for ``n`` resampled units.

    ``alpha' = 2 Phi(-sqrt(n / (n - 1)) t_{1 - alpha/2, n - 1})``: the percentile interval of a
    bootstrap over ``n`` units is too narrow by the factors ``sqrt((n-1)/n)`` (plug-in variance)
    and ``t / z``; reading the bootstrap quantiles at ``alpha'/2`` instead of ``alpha/2`` undoes
    both (Hesterberg, *Am. Stat.* 69, 371-386, 2015). ``n < 2`` returns ``alpha``.
    """
    if n < 2:
        return alpha
    x = math.sqrt(n / (n - 1)) * _t_quantile(1 - alpha / 2, n - 1)
    return float(2 * stats.norm.sf(x))


def _pool(y: np.ndarray, reps: np.ndarray, *, ci: float, how: str, rng: np.random.Generator,
          n_units: int) -> tuple[float, float, float, float, bool]:
    """Pool one entry over the sessions that have it.

    ``y`` (n,) session estimates, ``reps`` (n, B) their neuron-bootstrap replicates;
    ``n_units`` the fewest neurons of an area behind the entry when ``n == 1`` (the expanded
    percentile interval). Returns ``(estimate, se, low, high, from_sessions)``.
    """
    n = y.size
    alpha = 1.0 - ci
    if n == 0:
        return (math.nan,) * 4 + (False,)
    est = float(y.mean())
    if n == 1:
        r = reps[0][np.isfinite(reps[0])]
        if r.size < 2:
            return est, math.nan, math.nan, math.nan, False
        a = expanded_alpha(alpha, n_units)
        lo, hi = np.quantile(r, [a / 2, 1 - a / 2])
        return est, float(r.std(ddof=1)), float(lo), float(hi), False
    if how == "t":
        se = float(y.std(ddof=1) / math.sqrt(n))
        half = _t_quantile(1 - alpha / 2, n - 1) * se
        return est, se, est - half, est + half, True
    b = reps.shape[1]
    pick_s = rng.integers(0, n, size=(b, n))
    pick_r = rng.integers(0, b, size=(b, n))
    boot = np.nanmean(reps[pick_s, pick_r], axis=1)
    lo, hi = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2])
    return est, float(np.nanstd(boot, ddof=1)), float(lo), float(hi), True


def build_atlas(sessions: Mapping[str, xr.Dataset] | Sequence[SessionCouplings], *,
                quantities: Sequence[str] = ("J", "J_abs", "R"), min_area_neurons: int = 30,
                exclude_areas: Sequence[str] = ("root",),
                ccf_level: str | int | Sequence[str] | None = None, ci: float = 0.95,
                n_boot: int = 1000, session_interval: str = "t", seed: int = 0) -> xr.Dataset:
    """Area x area atlas of coarse-grained couplings pooled over sessions, with intervals.

    Parameters
    ----------
    sessions
        ``{session_id: couplings.nc dataset}`` (see :func:`session_couplings`) or a sequence of
        :class:`SessionCouplings`. Session ids must be unique.
    quantities
        Which pair quantities (:data:`QUANTITIES`): ``J`` (mean J, docs/methods.md §6),
        ``J_abs`` (mean ``|J|``), ``R``.
    min_area_neurons
        An area enters a session's blocks when it has at least this many neurons there (after
        grouping and exclusion); docs/methods.md §6 default 30.
    exclude_areas
        Labels dropped before anything else (default ``root``: neurons not assigned to an
        area). Matched before CCF grouping.
    ccf_level
        None (areas as labelled) or a level for :func:`ccf_group`.
    ci
        Confidence level of the intervals (0 < ci < 1).
    n_boot
        Neuron-bootstrap replicates per session (>= 100 for percentile intervals).
    session_interval
        ``"t"`` (default; t interval over session estimates) or ``"bootstrap"`` (two-stage
        hierarchical bootstrap); see the module docstring.
    seed
        Base seed; session ``s`` resamples with ``derive_seed(seed, "atlas", s)``, so its
        replicates do not depend on the other sessions.

    Returns
    -------
    xr.Dataset
        Dims ``quantity``, ``region``, ``region2`` (areas retained in at least one session,
        sorted), ``session``. Variables (float64 unless said):

        * ``area_mean``, ``area_se``, ``area_ci_low``, ``area_ci_high`` (quantity, region,
          region2): pooled coarse-grained value and its interval;
        * ``area_n_sessions`` (region, region2) int64, ``area_n_pairs`` (quantity, region,
          region2) int64 (unordered pairs of distinct neurons with a value, all sessions),
          ``area_ci_from_sessions`` (region, region2) int8 (1: interval over sessions, 0: from
          the neuron bootstrap of a single session);
        * ``session_area_mean``, ``session_area_se`` (quantity, session, region, region2),
          ``session_n_neurons`` (session, region) int64;
        * per area: ``within``, ``across`` (quantity, region; means over sessions),
          ``delta`` (= within - across, pooled), ``delta_se``, ``delta_ci_low``,
          ``delta_ci_high``, ``delta_cohen_d`` (mean over sessions of the per-session Cohen's
          d), ``delta_p_value`` (quantity, region); ``delta_n_sessions`` (region) int64;
          ``session_delta``, ``session_cohen_d`` (quantity, session, region).

        Attributes: ``ci_level``, ``n_boot``, ``session_interval``, ``min_area_neurons``,
        ``excluded_areas``, ``ccf_level``, ``n_sessions``, ``single_session`` (0/1),
        ``interval_note``, ``p_value_method``, ``seed``, ``n_regions``,
        ``largest_area_neurons`` (the largest area of any session before the size threshold)
        and ``empty_reason``: when no area reaches ``min_area_neurons`` the atlas is empty
        (``region`` of size 0) and this says why, naming the largest area; else ``""``.

    Raises
    ------
    ValueError
        On bad options, duplicate sessions or mismatched shapes.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")
    if session_interval not in ("t", "bootstrap"):
        raise ValueError(f"session_interval must be 't' or 'bootstrap'; got {session_interval!r}")
    if not isinstance(n_boot, int | np.integer) or n_boot < 100:
        raise ValueError(f"n_boot must be an integer >= 100 (percentile intervals); got "
                         f"{n_boot!r}")
    if min_area_neurons < 2:
        raise ValueError(f"min_area_neurons must be >= 2 (a within-area pair needs two "
                         f"neurons); got {min_area_neurons}")
    quantities = list(quantities)
    if not quantities or any(q not in QUANTITIES for q in quantities):
        raise ValueError(f"quantities {quantities}: choose a non-empty subset of "
                         f"{list(QUANTITIES)}")
    if isinstance(sessions, Mapping):
        items = [session_couplings(ds, str(sid), quantities=quantities)
                 for sid, ds in sessions.items()]
    else:
        items = [_checked(s) for s in sessions]
    if not items:
        raise ValueError("the atlas needs at least one session")
    ids = [s.session for s in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate session ids {sorted({i for i in ids if ids.count(i) > 1})}")
    for s in items:
        missing = [q for q in quantities if q not in s.matrices]
        if missing:
            raise ValueError(f"session {s.session} lacks the quantities {missing}")

    excluded = {str(a) for a in exclude_areas}
    labels: list[np.ndarray] = []
    largest = (0, "", "")  # (neurons, area, session) of the largest area before the threshold
    for s in items:
        lab = s.areas.astype(str).astype(object)  # "" = not retained
        drop = np.isin(lab, list(excluded)) | (lab == "")
        if ccf_level is not None:
            lab[~drop] = ccf_group(lab[~drop], ccf_level)
        lab[drop] = ""
        names, cnt = np.unique(lab[~drop], return_counts=True)
        if cnt.size and int(cnt.max()) > largest[0]:
            largest = (int(cnt.max()), str(names[np.argmax(cnt)]), s.session)
        lab[np.isin(lab, names[cnt < min_area_neurons])] = ""
        labels.append(lab.astype(str))
    regions = sorted({a for lab in labels for a in lab if a})
    # no area retained: an empty atlas (region dims of size 0) that says why, not an error, so
    # a run on small recordings still ends with its report (findings.atlas_findings judges it)
    empty_reason = "" if regions else (
        f"no area has >= min_area_neurons = {min_area_neurons} neurons in any session (after "
        f"excluding {sorted(excluded)}" + ("" if ccf_level is None else " and grouping") +
        "; largest: " + (f"{largest[1]} with {largest[0]} neurons in session {largest[2]})"
                         if largest[0] else "none, every neuron excluded)"))
    k, n_s, n_q = len(regions), len(items), len(quantities)
    tables = [_session_tables(s, lab, regions, n_boot, seed) for s, lab in zip(items, labels,
                                                                               strict=True)]
    rng = np.random.default_rng(derive_seed(seed, "atlas", "pool"))

    shape_e = (n_q, k, k)
    a_mean, a_se, a_lo, a_hi = (np.full(shape_e, np.nan) for _ in range(4))
    a_npairs = np.zeros(shape_e, dtype=np.int64)
    s_mean = np.full((n_q, n_s, k, k), np.nan)
    s_se = np.full((n_q, n_s, k, k), np.nan)
    s_nn = np.array([t.n_neurons for t in tables], dtype=np.int64)
    present = s_nn > 0  # (S, K)
    both = present[:, :, None] & present[:, None, :]  # (S, K, K); retained areas have >= 2
    n_sess = both.sum(0).astype(np.int64)
    from_sess = (n_sess >= 2).astype(np.int8)
    d_mean, d_se, d_lo, d_hi, d_p, d_cd, w_m, x_m = (np.full((n_q, k), np.nan)
                                                     for _ in range(8))
    s_delta = np.full((n_q, n_s, k), np.nan)
    s_cd = np.full((n_q, n_s, k), np.nan)
    # a session compares area A when it retained A and at least one other area
    has_delta = present & (present.sum(1, keepdims=True) >= 2)  # (S, K)
    d_nsess = has_delta.sum(0).astype(np.int64)

    for qi, q in enumerate(quantities):
        for si, t in enumerate(tables):
            m = t.means[q]
            s_mean[qi, si] = np.where(both[si], m[0], np.nan)
            with warnings.catch_warnings():  # all-NaN replicates where an area is absent
                warnings.simplefilter("ignore", RuntimeWarning)
                s_se[qi, si] = np.where(both[si], np.nanstd(m[1:], axis=0, ddof=1), np.nan)
            a_npairs[qi] += np.where(both[si], t.n_pairs[q], 0)
            s_delta[qi, si] = np.where(has_delta[si], t.delta[q][0], np.nan)
            s_cd[qi, si] = np.where(has_delta[si], t.cohen_d[q], np.nan)
        for a in range(k):
            for b in range(a, k):
                idx = np.flatnonzero(both[:, a, b])
                if idx.size == 0:  # never recorded together: NaN, n_sessions 0
                    continue
                y = np.array([tables[i].means[q][0, a, b] for i in idx])
                reps = np.array([tables[i].means[q][1:, a, b] for i in idx]).reshape(idx.size, -1)
                ok = np.isfinite(y)
                first = idx[ok][0] if ok.any() else 0
                n_units = int(min(s_nn[first, a], s_nn[first, b]))
                res = _pool(y[ok], reps[ok], ci=ci, how=session_interval, rng=rng,
                            n_units=n_units)
                for arr, v in zip((a_mean, a_se, a_lo, a_hi), res[:4], strict=True):
                    arr[qi, a, b] = arr[qi, b, a] = v
            idx = np.flatnonzero(has_delta[:, a])
            idx = idx[np.isfinite([tables[i].delta[q][0, a] for i in idx])]
            if idx.size == 0:
                continue
            y = np.array([tables[i].delta[q][0, a] for i in idx])
            reps = np.array([tables[i].delta[q][1:, a] for i in idx])
            d_mean[qi, a], d_se[qi, a], d_lo[qi, a], d_hi[qi, a], _ = _pool(
                y, reps, ci=ci, how=session_interval, rng=rng, n_units=int(s_nn[idx[0], a]))
            w_m[qi, a] = np.mean([tables[i].within[q][a] for i in idx])
            x_m[qi, a] = np.mean([tables[i].across[q][a] for i in idx])
            d_cd[qi, a] = np.nanmean(s_cd[qi, idx, a]) if np.isfinite(s_cd[qi, idx, a]).any() \
                else np.nan
            if idx.size >= 2:
                d_p[qi, a] = sign_flip_pvalue(y, rng=rng)
            else:
                r = reps[0][np.isfinite(reps[0])]
                tail = min(int((r <= 0).sum()), int((r >= 0).sum()))
                d_p[qi, a] = min(1.0, 2 * (1 + tail) / (r.size + 1)) if r.size else np.nan

    single = n_s == 1
    if single:
        note = ("one session: every interval and p-value comes from resampling neurons within "
                "that session; it describes which neurons were recorded, not session-to-session "
                "variability")
    else:
        how = "t" if session_interval == "t" else "two-stage hierarchical bootstrap"
        note = (f"entries seen in >= 2 sessions: {how} interval over the session estimates; "
                "entries seen in one session (area_ci_from_sessions = 0): neuron bootstrap "
                "within that session only, which ignores session-to-session variability")
    q_attrs = {"long_name": "pair quantity", "description": "; ".join(
        f"{q}: {QUANTITIES[q]}" for q in quantities)}
    e3 = ("quantity", "region", "region2")
    e4 = ("quantity", "session", "region", "region2")
    pq = ("quantity", "region")
    ds = xr.Dataset(
        {
            "area_mean": (e3, a_mean, {"units": "1", "long_name": "mean over sessions of the "
                                       "per-session mean over i in A, j in B, i != j"}),
            "area_se": (e3, a_se, {"units": "1", "long_name": "standard error of area_mean"}),
            "area_ci_low": (e3, a_lo, {"units": "1"}),
            "area_ci_high": (e3, a_hi, {"units": "1"}),
            "area_n_sessions": (("region", "region2"), n_sess,
                                {"long_name": "sessions that recorded both areas"}),
            "area_n_pairs": (e3, a_npairs, {"long_name": "pairs of distinct neurons with a "
                                            "value, summed over sessions"}),
            "area_ci_from_sessions": (("region", "region2"), from_sess,
                                      {"long_name": "1: interval over sessions; 0: neuron "
                                       "bootstrap of one session"}),
            "session_area_mean": (e4, s_mean, {"units": "1"}),
            "session_area_se": (e4, s_se, {"units": "1", "long_name": "neuron-bootstrap SE"}),
            "session_n_neurons": (("session", "region"), s_nn),
            "within": (pq, w_m, {"units": "1", "long_name": "mean over sessions of the mean "
                                 "over within-area pairs"}),
            "across": (pq, x_m, {"units": "1", "long_name": "mean over sessions of the mean "
                                 "over pairs from the area to other retained areas"}),
            "delta": (pq, d_mean, {"units": "1", "long_name": "within - across, mean over "
                                   "sessions"}),
            "delta_se": (pq, d_se, {"units": "1"}),
            "delta_ci_low": (pq, d_lo, {"units": "1"}),
            "delta_ci_high": (pq, d_hi, {"units": "1"}),
            "delta_cohen_d": (pq, d_cd, {"units": "1", "long_name": "mean over sessions of "
                                         "(within - across) / pooled SD of pair values"}),
            "delta_p_value": (pq, d_p, {"long_name": "two-sided p of within = across"}),
            "delta_n_sessions": ("region", d_nsess),
            "session_delta": (("quantity", "session", "region"), s_delta, {"units": "1"}),
            "session_cohen_d": (("quantity", "session", "region"), s_cd, {"units": "1"}),
        },
        coords={
            "quantity": ("quantity", np.array(quantities, dtype=object), q_attrs),
            "region": np.array(regions, dtype=object),
            "region2": np.array(regions, dtype=object),
            "session": np.array(ids, dtype=object),
        },
        attrs={
            "ci_level": float(ci),
            "n_boot": int(n_boot),
            "session_interval": session_interval,
            "min_area_neurons": int(min_area_neurons),
            "excluded_areas": ",".join(sorted(excluded)),
            "ccf_level": "none" if ccf_level is None else (
                str(ccf_level) if isinstance(ccf_level, str | int) else ",".join(ccf_level)),
            "n_sessions": n_s,
            "single_session": int(single),
            "interval_note": note,
            "p_value_method": ("sign-flip permutation over sessions (exact for <= 16 "
                               "sessions); neuron bootstrap where one session"),
            "seed": int(seed),
            "n_regions": int(k),
            "largest_area_neurons": int(largest[0]),
            "empty_reason": empty_reason,
        },
    )
    return ds


# --------------------------------------------------------------------------------------------
# several models side by side, and flat tables
# --------------------------------------------------------------------------------------------


def atlas_by_model(atlases: Mapping[str, xr.Dataset]) -> xr.Dataset:
    """Atlases of several models of the same sessions on one new dim ``model``.

    Parameters
    ----------
    atlases
        ``{model name: build_atlas(...)}`` built from the same sessions and neurons (e.g. the
        RBM's effective couplings and the pairwise baseline's ``J``), so their regions and
        sessions agree; their quantities may differ (a missing one is NaN, 0 pairs).

    Returns
    -------
    xr.Dataset
        Every variable with a ``quantity`` dim gains the leading dim ``model``; the others
        (``area_n_sessions``, ``area_ci_from_sessions``, ``session_n_neurons``,
        ``delta_n_sessions``) and the attributes are the first model's.

    Raises
    ------
    ValueError
        When the atlases disagree on regions or sessions.
    """
    if not atlases:
        raise ValueError("atlas_by_model needs at least one atlas")
    items = list(atlases.items())
    first = items[0][1]
    for name, at in items[1:]:
        for dim in ("region", "session"):
            if list(at[dim].values) != list(first[dim].values):
                raise ValueError(f"atlas {name!r} has {dim}s {list(at[dim].values)}, atlas "
                                 f"{items[0][0]!r} {list(first[dim].values)}: build both from "
                                 "the same sessions and neurons")
    quantities = list(dict.fromkeys(str(q) for _, at in items for q in at["quantity"].values))
    per = [at.reindex(quantity=np.array(quantities, dtype=object),
                      fill_value={"area_n_pairs": 0}) for _, at in items]
    qvars = [v for v in first.data_vars if "quantity" in first[v].dims]
    stacked = xr.concat([p[qvars] for p in per], dim="model", coords="minimal",
                        compat="override", combine_attrs="override")
    out = xr.merge([stacked, per[0].drop_vars(qvars)], combine_attrs="override")
    out = out.assign_coords(model=np.array([n for n, _ in items], dtype=object))
    out["area_n_pairs"] = out["area_n_pairs"].astype(np.int64)
    out.attrs = dict(first.attrs)
    return out


def atlas_tables(ds: xr.Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The atlas as two long tables (full precision).

    Parameters
    ----------
    ds
        :func:`build_atlas` output, or :func:`atlas_by_model` (one block of rows per model).

    Returns
    -------
    area_pairs : pandas.DataFrame
        One row per (model, quantity, region, region2 with region <= region2) that has a
        value: ``mean``, ``se``, ``ci_low``, ``ci_high``, ``n_sessions``, ``n_pairs``,
        ``ci_from_sessions``.
    within_across : pandas.DataFrame
        One row per (model, quantity, region) with a value: ``within``, ``across``, ``delta``,
        ``delta_se``, ``delta_ci_low``, ``delta_ci_high``, ``cohen_d``, ``p_value``,
        ``n_sessions``.
    """
    if "model" not in ds.dims:
        ds = ds.expand_dims(model=["model"])
    regions = [str(r) for r in ds["region"].values]
    pairs, areas = [], []
    for model in ds["model"].values:
        for q in ds["quantity"].values:
            sub = ds.sel(model=model, quantity=q)
            for a, ra in enumerate(regions):
                for b in range(a, len(regions)):
                    m = float(sub["area_mean"].values[a, b])
                    if not np.isfinite(m):
                        continue
                    pairs.append({
                        "model": str(model), "quantity": str(q), "region": ra,
                        "region2": regions[b], "mean": m,
                        "se": float(sub["area_se"].values[a, b]),
                        "ci_low": float(sub["area_ci_low"].values[a, b]),
                        "ci_high": float(sub["area_ci_high"].values[a, b]),
                        "n_sessions": int(ds["area_n_sessions"].values[a, b]),
                        "n_pairs": int(sub["area_n_pairs"].values[a, b]),
                        "ci_from_sessions": int(ds["area_ci_from_sessions"].values[a, b]),
                    })
                d = float(sub["delta"].values[a])
                if np.isfinite(d):
                    areas.append({
                        "model": str(model), "quantity": str(q), "region": ra,
                        "within": float(sub["within"].values[a]),
                        "across": float(sub["across"].values[a]), "delta": d,
                        "delta_se": float(sub["delta_se"].values[a]),
                        "delta_ci_low": float(sub["delta_ci_low"].values[a]),
                        "delta_ci_high": float(sub["delta_ci_high"].values[a]),
                        "cohen_d": float(sub["delta_cohen_d"].values[a]),
                        "p_value": float(sub["delta_p_value"].values[a]),
                        "n_sessions": int(ds["delta_n_sessions"].values[a]),
                    })
    return (pd.DataFrame(pairs, columns=AREA_PAIR_COLUMNS),
            pd.DataFrame(areas, columns=WITHIN_ACROSS_COLUMNS))
