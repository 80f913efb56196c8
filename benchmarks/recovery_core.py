"""Core of the recovery benchmark: run the pipeline's training, selection and coupling
extraction on exactly sampled data, and score the result against the truth and the noise floor.

The pipeline's steps, as the workflow runs them for one session:

1. train one RBM per hidden size (``spikerbm.training.train``, or the apples-to-apples loop
   :func:`recovery_train.train_variant` for variants the library lacks);
2. exact log-likelihood of every checkpoint on train and test
   (``spikerbm.likelihood.checkpoint_loglik``, method ``exact``: N <= 20 here),
   ``combine_loglik`` and ``select_model`` (highest test LL over sizes x checkpoints);
3. couplings of the selected model by the pipeline's formulas: ``couplings.fields`` and
   ``couplings.pair_couplings`` (Gauss-Hermite, 40 nodes, config default) and 3-body terms from
   ``couplings.spectral_factors`` / ``triplet_couplings`` (the spectral form the couplings stage
   uses for triplets); beside them the exact Walsh couplings of the same RBM
   (``spikerbm.exact.exact_couplings``).

Scores (learned vs true): Pearson r, least-squares slope of learned on true
(``cov(t, l) / var(t)``), RMS of the difference; for the area matrix (mean J_ij over i in A,
j in B, i != j; ``spikerbm.areas.area_matrix``) each entry's error in units of the noise floor's
standard error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr
from recovery_models import Basis, Fit, Truth, area_mean_se, fit_ising, fit_rbm_from_truth
from recovery_train import Variant, train_variant

from spikerbm import couplings, exact, likelihood, selection
from spikerbm.areas import area_matrix as _area_matrix
from spikerbm.provenance import derive_seed
from spikerbm.rbm import RBM, rbm_from_dataset
from spikerbm.training import TrainConfig, train

TEST_FRACTION = 0.3  # the pipeline's default split: 3 of 10 blocks are test


# --------------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------------
def line_scores(true: np.ndarray, est: np.ndarray) -> dict[str, float]:
    """r, slope (least squares of est on true), RMS error, mean error (bias)."""
    t = np.asarray(true, dtype=np.float64).ravel()
    e = np.asarray(est, dtype=np.float64).ravel()
    out = {"rms": float(np.sqrt(np.mean((e - t) ** 2))) if t.size else np.nan,
           "bias": float(np.mean(e - t)) if t.size else np.nan,
           "mean_true": float(t.mean()) if t.size else np.nan,
           "mean_est": float(e.mean()) if t.size else np.nan}
    if t.size > 2 and t.std() > 0 and e.std() > 0:
        out["r"] = float(np.corrcoef(t, e)[0, 1])
        out["slope"] = float(np.cov(t, e)[0, 1] / t.var(ddof=1))
    else:
        out["r"] = out["slope"] = np.nan
    return out


def area_matrix(J: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Mean J_ij over i in A, j in B, i != j (areas sorted by name); the pipeline's function."""
    return _area_matrix(J, areas, min_area_neurons=1)["area_J_mean"].values


def score(est: dict[str, np.ndarray], truth: Truth, area_se: np.ndarray,
          area_se_all3: np.ndarray | None = None) -> dict[str, object]:
    """All scores of one estimate ``{"H", "J", "J3_all"}`` against the truth.

    ``area_se``: standard errors of the area-matrix entries of the true-family ML fit (the noise
    floor); ``area_se_all3``: those of the fields + pairs + all-triplets family (a fit that does
    not know which triplets were planted, like the RBM).
    """
    b = truth.basis
    iu = np.triu_indices(b.n, 1)
    same = (truth.areas[:, None] == truth.areas[None, :])[iu]
    Jt, Je = truth.J[iu], est["J"][iu]
    out: dict[str, object] = {
        "H": line_scores(truth.H, est["H"]),
        "J": line_scores(Jt, Je),
        "J_within": line_scores(Jt[same], Je[same]),
        "J_across": line_scores(Jt[~same], Je[~same]),
        "J3_planted": line_scores(truth.J3_all[truth.planted], est["J3_all"][truth.planted]),
        "J3_null": line_scores(truth.J3_all[~truth.planted], est["J3_all"][~truth.planted]),
        "J3_all": line_scores(truth.J3_all, est["J3_all"]),
    }
    at, ae = area_matrix(truth.J, truth.areas), area_matrix(est["J"], truth.areas)
    z = (ae - at) / area_se
    off = ~np.eye(at.shape[0], dtype=bool)
    out["area"] = {"true": at.tolist(), "est": ae.tolist(), "se_floor": area_se.tolist(),
                   "z": z.tolist(), "max_abs_z": float(np.abs(z).max()),
                   "cross_true": float(at[off].mean()), "cross_est": float(ae[off].mean()),
                   "cross_se": float(area_se[off].mean())}
    if area_se_all3 is not None:
        z3 = (ae - at) / area_se_all3
        out["area"].update(se_all3=area_se_all3.tolist(), z_all3=z3.tolist(),
                           max_abs_z_all3=float(np.abs(z3).max()),
                           cross_se_all3=float(area_se_all3[off].mean()))
    return out


# --------------------------------------------------------------------------------------------
# data and noise floor
# --------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    truth: Truth
    n_samples: int
    seed: int
    train: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)
    counts_all: np.ndarray = field(repr=False)


def sample_dataset(truth: Truth, *, n_samples: int, seed: int) -> Dataset:
    """``n_samples`` exact i.i.d. samples of the truth, split 70/30 into train/test."""
    from recovery_models import counts_to_rows

    rng = np.random.default_rng(derive_seed(seed, "sample", truth.name, n_samples))
    counts = truth.sample_counts(n_samples, rng)
    rows = counts_to_rows(counts, truth.n, rng)
    n_test = int(round(TEST_FRACTION * n_samples))
    return Dataset(truth, n_samples, seed, rows[n_test:], rows[:n_test], counts)


@dataclass
class Floor:
    fits: dict[str, Fit]
    area_se: np.ndarray        # true family (Ising: true support; RBM truth: all triplets)
    area_se_all3: np.ndarray   # fields + pairs + all triplets
    seconds: float


def noise_floor(ds: Dataset) -> Floor:
    """ML fits of the true family on the train split the RBMs are trained on (the RBM never
    sees the test split either; it only selects among checkpoints and sizes with it).

    Ising truth: fields + all pairs + the planted triplets (the true support, ``true``) and
    fields + all pairs + all triplets (``all3``, what a fit that does not know the support gets).
    RBM truth: the planted RBM family (``true``) and the all-triplet Ising family (``all3``).
    The area-matrix standard errors come from the Fisher information of the Ising family fit
    (true support for an Ising truth, all triplets for an RBM truth).
    """
    from recovery_models import state_counts

    t0 = time.perf_counter()
    b, tr = ds.truth.basis, ds.truth
    counts = state_counts(ds.train)
    fits: dict[str, Fit] = {}
    fits["all3"] = fit_ising(counts, b, triples=b.triples)
    se3 = area_mean_se(fits["all3"], b, tr.areas)
    if tr.kind == "ising":
        fits["true"] = fit_ising(counts, b, triples=b.triples[tr.planted])
        se = area_mean_se(fits["true"], b, tr.areas)
    else:
        fits["true"] = fit_rbm_from_truth(counts, tr)
        se = se3
    return Floor(fits, se, se3, time.perf_counter() - t0)


def fit_estimate(fit: Fit) -> dict[str, np.ndarray]:
    return {"H": fit.H, "J": fit.J, "J3_all": fit.J3_all}


# --------------------------------------------------------------------------------------------
# pipeline: train, select, extract
# --------------------------------------------------------------------------------------------
@dataclass
class PipelineResult:
    models: dict[int, xr.Dataset] = field(repr=False)
    ll: xr.Dataset = field(repr=False)
    selection: xr.Dataset = field(repr=False)
    n_hidden: int = 0
    checkpoint: int = 0
    train_seconds: dict[int, float] = field(default_factory=dict)
    n_updates: int = 0
    cpu_seconds: dict[int, float] = field(default_factory=dict)

    def ll_gap(self, truth: Truth, ds: Dataset) -> float:
        """Test LL of the truth minus that of the selected model (nats per sample)."""
        x = (ds.test.astype(np.int64) << np.arange(truth.n, dtype=np.int64)).sum(1)
        return float(truth.log_p[x].mean() - self.selection.attrs["ll_test"])

    def rbm(self, n_hidden: int | None = None, checkpoint: int | None = None) -> RBM:
        m = self.models[self.n_hidden if n_hidden is None else n_hidden]
        ck = self.checkpoint if checkpoint is None and n_hidden is None else checkpoint
        return rbm_from_dataset(m, checkpoint=ck, dtype=torch.float64)


def run_pipeline(ds: Dataset, *, train_cfg: dict, sizes: list[int], seed: int,
                 variant: Variant | None = None, device: str = "cpu") -> PipelineResult:
    """Train every size, compute exact train/test LL per checkpoint, select (the pipeline's).

    ``variant=None`` trains with ``spikerbm.training.train`` itself; a ``Variant`` with the
    benchmark's loop (identical to the library for ``Variant()``). ``device``: where training
    runs (``cuda``: the config's precision, e.g. the fused bf16 kernels); likelihoods, selection
    and couplings run on CPU in float64.
    """
    models, lls, secs, cpu = {}, [], {}, {}
    for m in sizes:
        cfg = TrainConfig.from_config({**train_cfg, "tais_chains": 0, "patience": 0},
                                      n_hidden=m, device=device)
        s = derive_seed(seed, "train", ds.truth.name, m)
        t0, c0 = time.perf_counter(), time.process_time()
        model = train(ds.train, cfg=cfg, seed=s) if variant is None else \
            train_variant(ds.train, cfg=cfg, seed=s, variant=variant)
        if cfg.device != "cpu" and torch.cuda.is_available():
            torch.cuda.synchronize()
        secs[m], cpu[m] = time.perf_counter() - t0, time.process_time() - c0
        models[m] = model
        lls.append(likelihood.checkpoint_loglik(model, ds.train, ds.test, method="exact"))
    ll = likelihood.combine_loglik(lls)
    sel = selection.select_model(ll)
    return PipelineResult(models, ll, sel, int(sel.attrs["n_hidden"]),
                          int(sel.attrs["checkpoint"]), secs, int(train_cfg["n_updates"]), cpu)


def extract(rbm: RBM, basis: Basis, *, method: str = "pipeline") -> dict[str, np.ndarray]:
    """Couplings of an RBM: ``pipeline`` (Gaussian formulas as the couplings stage computes
    them) or ``exact`` (Walsh expansion)."""
    t = basis.triples
    if method == "exact":
        ex = exact.exact_couplings(rbm, max_visible=20)
        return {"H": ex["H"], "J": ex["J"], "J3_all": ex["J3"][t[:, 0], t[:, 1], t[:, 2]]}
    r = rbm.to(dtype=torch.float64)
    H = couplings.fields(r, n_nodes=40).numpy()
    J = couplings.pair_couplings(r, n_nodes=40).numpy()
    f3 = couplings.spectral_factors(r, order=3, log_tol=34.0)
    J3 = couplings.triplet_couplings(f3, t).numpy()
    return {"H": H, "J": J, "J3_all": J3}


def hidden_unit_area_contributions(rbm: RBM, areas: np.ndarray) -> dict[str, np.ndarray]:
    """Per-hidden-unit share of the area matrix (the pair formula is a sum over hidden units).

    Returns ``cross`` (M,): unit mu's contribution to the mean cross-area J (off-diagonal
    entries of the area matrix averaged), ``within`` (M,) likewise for the diagonal, and
    ``w_mean`` (M, n_areas): the unit's mean weight on each area (sorted area names).
    """
    r = rbm.to(dtype=torch.float64)
    regs = sorted(set(np.asarray(areas).tolist()))
    off = ~np.eye(len(regs), dtype=bool)
    cross, within = [], []
    for mu in range(r.n_hidden):
        one = RBM(r.W[:, [mu]], r.a, r.b[[mu]])
        A = area_matrix(couplings.pair_couplings(one, n_nodes=40).numpy(), areas)
        cross.append(A[off].mean())
        within.append(np.diag(A).mean())
    W = r.W.numpy()
    w_mean = np.stack([W[np.asarray(areas) == g].mean(0) for g in regs], axis=1)
    return {"cross": np.array(cross), "within": np.array(within), "w_mean": w_mean}
