"""The project's default synthetic session (160 neurons, 4 areas) through the pipeline's steps.

Reproduces what ``snakemake`` does for ``synth-a`` with ``config/config.yaml`` (same seeds:
``derive_seed(seed, "synthetic", session, 1)``, ``derive_seed(seed, "binarize", session)``,
``derive_seed(seed, "train", session, n_hidden)``), then scores the couplings of the selected
model against the planted RBM's. N = 160 is too large for enumeration of the visible layer, so:

* truth: :func:`recovery_models.rbm_couplings_by_support` (exact for the assembly and cross
  units, whose supports have <= 12 sites; the Gaussian formulas for the global drive unit, whose
  160 weights of ~0.35 are each small against their summed width ~2.2), beside the pipeline's
  own truth (Gaussian formulas for every unit, as ``couplings.compute_couplings`` computes
  ``J_truth``);
* log-likelihood and selection: ``checkpoint_loglik`` with the pipeline's settings (``auto``:
  exact for min(N, M) <= 22, i.e. M = 16 by enumerating the hidden layer; AIS with the config's
  ais_chains/ais_betas/ais_repeats for M = 48);
* no noise floor (no exact ML fit at N = 160): the area-matrix errors are reported in absolute
  terms and against the truth's own scale.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import yaml
from recovery_core import area_matrix, hidden_unit_area_contributions, line_scores
from recovery_models import rbm_couplings_by_support
from recovery_train import Variant, train_variant

from spikerbm import binarize, couplings, likelihood, partition, selection, synthetic
from spikerbm.provenance import derive_seed
from spikerbm.rbm import rbm_from_dataset, rbm_from_numpy
from spikerbm.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def load_config() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def default_session(cfg: dict | None = None, *, session: str = "synth-a", row_seed: int = 1,
                    overrides: dict | None = None) -> dict:
    """The default session's raster splits, areas, planted RBM and truth couplings."""
    cfg = cfg or load_config()
    params = {**cfg["synthetic"], **(overrides or {})}
    seed = derive_seed(cfg["seed"], "synthetic", session, row_seed)
    spikes, truth = synthetic.generate_session(**params, seed=seed, session_id=session)
    b = cfg["binarize"]
    raster = binarize.binarize(spikes, bin_ms=b["bin_ms"], epochs=b["epochs"],
                               n_blocks=b["n_blocks"], n_test_blocks=b["n_test_blocks"],
                               seed=derive_seed(cfg["seed"], "binarize", session),
                               session_id=session)
    split = binarize.split_arrays(raster)
    areas = raster["area"].values.astype(str)
    keep = np.isin(truth["unit_id"].values, raster["unit_id"].values)
    t_rbm = rbm_from_numpy(truth["W"].values[keep], truth["a"].values[keep], truth["b"].values,
                           dtype=torch.float64)
    H, J, info = rbm_couplings_by_support(t_rbm, max_support=20)
    Hg = couplings.fields(t_rbm, n_nodes=40).numpy()
    Jg = couplings.pair_couplings(t_rbm, n_nodes=40).numpy()
    return {"train": split["train"], "test": split["test"], "areas": areas, "truth_rbm": t_rbm,
            "H": H, "J": J, "H_gauss": Hg, "J_gauss": Jg, "truth_info": info,
            "session": session, "cfg": cfg}


def train_select(sess: dict, *, train_cfg: dict, sizes: list[int],
                 variant: Variant | None = None, lik: dict | None = None,
                 device: str = "cpu") -> dict:
    """Train each size and select by test LL with the pipeline's likelihood settings."""
    cfg = sess["cfg"]
    lik = {**cfg["likelihood"], **(lik or {})}
    models, lls, secs, cpu = {}, [], {}, {}
    for m in sizes:
        tc = TrainConfig.from_config({**train_cfg, "tais_chains": 0, "patience": 0}, n_hidden=m,
                                     device=device)
        s = derive_seed(cfg["seed"], "train", sess["session"], m)
        t0, c0 = time.perf_counter(), time.process_time()
        models[m] = train(sess["train"], cfg=tc, seed=s) if variant is None else \
            train_variant(sess["train"], cfg=tc, seed=s, variant=variant)
        secs[m], cpu[m] = time.perf_counter() - t0, time.process_time() - c0
        lls.append(likelihood.checkpoint_loglik(
            models[m], sess["train"], sess["test"], method=lik["method"],
            exact_max_units=lik["exact_max_units"], ais_chains=lik["ais_chains"],
            ais_betas=lik["ais_betas"], ais_repeats=lik["ais_repeats"], device=device,
            seed=derive_seed(cfg["seed"], "loglik", sess["session"], m)))
    ll = likelihood.combine_loglik(lls)
    sel = selection.select_model(ll)
    m_sel, ck = int(sel.attrs["n_hidden"]), int(sel.attrs["checkpoint"])
    return {"n_hidden": m_sel, "checkpoint": ck, "model": models[m_sel], "models": models,
            "train_seconds": secs, "cpu_seconds": cpu,
            "ms_per_update": {m: 1e3 * cpu[m] / int(train_cfg["n_updates"]) for m in sizes},
            "ll_test": {int(m): ll["ll_test"].sel(n_hidden=m).values.tolist() for m in sizes},
            "checkpoints": ll["checkpoint"].values.tolist(),
            "floor_test": float(ll.attrs["floor_test"])}


def run_session(sess: dict, *, train_cfg: dict, sizes: list[int],
                variant: Variant | None = None, lik: dict | None = None,
                device: str = "cpu") -> dict:
    """:func:`train_select`, then the couplings of the selected and last checkpoints scored
    against the truth, the per-hidden-unit shares of the cross-area mean and the SVD modes."""
    res = train_select(sess, train_cfg=train_cfg, sizes=sizes, variant=variant, lik=lik,
                       device=device)
    model, ck = res.pop("model"), res["checkpoint"]
    res.pop("models")
    r_sel = rbm_from_dataset(model, checkpoint=ck, dtype=torch.float64)
    res["params_selected"] = {k: t.numpy().tolist() for k, t in r_sel.parameters().items()}
    res["selected"] = score_session(r_sel, sess)
    res["last"] = score_session(rbm_from_dataset(model, dtype=torch.float64), sess)
    res["units"] = {k: v.tolist() for k, v in hidden_unit_area_contributions(
        r_sel, sess["areas"]).items()}
    res["modes"] = svd_modes(r_sel, sess["areas"])
    return res


def truth_test_ll(sess: dict) -> float:
    """Test LL of the planted RBM (exact: its 15 hidden units are enumerated)."""
    r = sess["truth_rbm"]
    lz = partition.exact_log_z(r)
    return likelihood.log_likelihood(r, torch.from_numpy(sess["test"]), log_z=lz)


def score_session(rbm, sess: dict) -> dict:
    """H, J (all / within / across areas) and the area matrix of an RBM vs the truth."""
    H = couplings.fields(rbm, n_nodes=40).numpy()
    J = couplings.pair_couplings(rbm, n_nodes=40).numpy()
    areas = sess["areas"]
    iu = np.triu_indices(len(areas), 1)
    same = (areas[:, None] == areas[None, :])[iu]
    at, ae = area_matrix(sess["J"], areas), area_matrix(J, areas)
    off = ~np.eye(at.shape[0], dtype=bool)
    return {"H": line_scores(sess["H"], H), "J": line_scores(sess["J"][iu], J[iu]),
            "J_within": line_scores(sess["J"][iu][same], J[iu][same]),
            "J_across": line_scores(sess["J"][iu][~same], J[iu][~same]),
            "area": {"true": at.tolist(), "est": ae.tolist(),
                     "true_gauss": area_matrix(sess["J_gauss"], areas).tolist(),
                     "cross_true": float(at[off].mean()), "cross_est": float(ae[off].mean()),
                     "cross_est_min": float(ae[off].min()), "cross_est_max": float(ae[off].max()),
                     "within_true": float(np.diag(at).mean()),
                     "within_est": float(np.diag(ae).mean())}}


def svd_modes(rbm, areas: np.ndarray) -> dict:
    """Singular modes of W (the spectral picture of RBM learning, Decelle et al.) and their
    share of the cross-area mean coupling.

    ``W = sum_a s_a u_a v_a^T``; to first order in W the pair couplings are
    ``J ~= 1/4 W diag(kappa) W^T`` (kappa_mu = E[sigma'] of unit mu), so every left singular
    vector ``u_a`` (a direction in neuron space) adds ``~ s_a^2 u_a u_a^T`` to J. Returned per
    mode: the singular value, ``sum_i u_ai / sqrt(N)`` (1 for the uniform vector, ~0 for one
    orthogonal to it), the mean of ``u_a`` per area, and the mode's share of the cross-area and
    within-area means of ``W W^T``.
    """
    W = rbm.W.numpy()
    U, S, _ = np.linalg.svd(W, full_matrices=False)
    regs = sorted(set(areas.tolist()))
    off = ~np.eye(len(regs), dtype=bool)
    n = W.shape[0]
    out = {"s": S.tolist(), "uniformity": [], "area_mean": [], "cross_share": [],
           "within_share": []}
    for a_ in range(len(S)):
        u = U[:, a_] * np.sign(U[:, a_].sum() or 1.0)
        out["uniformity"].append(float(u.sum() / np.sqrt(n)))
        out["area_mean"].append([float(u[areas == g].mean()) for g in regs])
        A = area_matrix(S[a_] ** 2 * np.outer(u, u), areas)
        out["cross_share"].append(float(A[off].mean()))
        out["within_share"].append(float(np.diag(A).mean()))
    A = area_matrix(W @ W.T, areas)
    out["WWt_cross"] = float(A[off].mean())
    out["WWt_within"] = float(np.diag(A).mean())
    return out
