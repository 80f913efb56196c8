"""Honest uncertainties (issue 17 items 3-4): AIS and trajectory-AIS error vs exact log Z, and
the autocorrelation time of the statistics stage's Gibbs chains.

* :func:`ais_coverage`: for models along a training trajectory (small enough for exact log Z),
  ``n_total`` independent AIS repeats (``spikerbm.likelihood.ais_log_z``) per setting; the
  single-repeat bias and spread against exact log Z, and, for R repeats grouped as the pipeline
  groups them (``log_z`` = mean of R, ``log_z_std`` = their sample s.d.), how often the stated
  error covers the true error, for the stated errors ``sd`` (what the pipeline stores),
  ``sd / sqrt(R)`` (the standard error of the mean) and ``sqrt(sd^2 / R + b^2)`` with ``b`` the
  delta-method bias estimate ``Var(w) / (2 n mean(w)^2)`` of log-mean-exp from the pooled
  log-weights (computed here from the repeats' spread: ``b ~= sd^2 / 2``, see below).
* :func:`tais_drift`: a training run with several independent trajectory-AIS chain sets
  (:class:`recovery_train.Variant` ``tais_sets``) and exact log Z at every checkpoint.
* :func:`chain_tau`: integrated autocorrelation times of ``K = sum_i v_i`` and ``E(v)`` in the
  statistics stage's sampler (``spikerbm.statistics.sample_equilibrium``) and from a trace
  recorded every sweep (``integrated_autocorr_time``), against its thinning.

Why ``b ~= sd^2 / 2``: one AIS repeat returns ``log(mean_n w)``; for log-normal-ish weights
its bias is ``-Var(log mean w) / 2`` to leading order (delta method: E[log X] ~= log E[X] -
Var(X) / (2 E[X]^2) and Var(log X) ~= Var(X) / E[X]^2), and ``Var(log mean w)`` is exactly
what the spread over repeats estimates. So the estimator is biased low by about half its
variance, which the repeats measure; the measured bias is compared with it in the table.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from spikerbm import likelihood
from spikerbm.provenance import derive_seed
from spikerbm.rbm import RBM
from spikerbm.statistics import integrated_autocorr_time, sample_equilibrium


def ais_coverage(rbms: list[tuple[int, RBM]], *, settings: list[tuple[int, int]],
                 n_total: int = 16, group_sizes: tuple[int, ...] = (2, 4, 8),
                 seed: int = 0) -> list[dict]:
    """AIS against exact log Z for each (checkpoint, RBM) and (ais_chains, ais_betas) setting.

    Returns one record per (checkpoint, setting): exact log Z, the ``n_total`` single-repeat
    estimates, their bias (mean - exact) and s.d., seconds per repeat, and per group size R the
    coverage of the three stated errors over the ``n_total // R`` disjoint groups.
    """
    out = []
    for ck, rbm in rbms:
        r32 = rbm.to(dtype=torch.float32)
        exact = likelihood.exact_log_z(rbm)
        for chains, betas in settings:
            gen = torch.Generator().manual_seed(derive_seed(seed, "ais-cov", ck, chains, betas))
            t0 = time.perf_counter()
            est = likelihood.ais_log_z(r32, n_chains=chains, n_betas=betas, generator=gen,
                                       n_repeats=n_total)
            sec = (time.perf_counter() - t0) / n_total
            x = np.asarray(est.repeats)
            rec = {"checkpoint": int(ck), "ais_chains": chains, "ais_betas": betas,
                   "exact": exact, "repeats": x.tolist(), "bias": float(x.mean() - exact),
                   "sd": float(x.std(ddof=1)), "delta_bias": float(-x.var(ddof=1) / 2),
                   "seconds_per_repeat": sec, "coverage": {}}
            for R in group_sizes:
                g = x[: (n_total // R) * R].reshape(-1, R)
                err = np.abs(g.mean(1) - exact)
                sd = g.std(1, ddof=1)
                se = sd / math.sqrt(R)
                corr = np.sqrt(se**2 + (sd**2 / 2) ** 2)
                rec["coverage"][R] = {
                    "n_groups": int(g.shape[0]),
                    "sd": float(np.mean(err <= sd)),
                    "se": float(np.mean(err <= se)),
                    "se_bias": float(np.mean(err <= corr)),
                    "corrected_se": float(np.mean(np.abs(g.mean(1) + sd**2 / 2 - exact) <= se)),
                    "mean_abs_err": float(err.mean()),
                }
            out.append(rec)
    return out


def tais_drift(model, exact_log_z: np.ndarray) -> dict:
    """Errors of the independent trajectory-AIS sets of a ``train_variant`` model."""
    sets = model["logz_tais_sets"].values  # (checkpoint, set)
    err = sets - exact_log_z[:, None]
    k = sets.shape[1]
    spread = sets.std(1, ddof=1)
    mean_err = sets.mean(1) - exact_log_z
    return {
        "checkpoint": model["checkpoint"].values.tolist(),
        "exact": exact_log_z.tolist(),
        "err_per_set": err.tolist(),
        "max_abs_err_single": float(np.abs(err).max()),
        "max_abs_err_mean": float(np.abs(mean_err).max()),
        "spread_sd": spread.tolist(),
        "cover_single_by_sd": float(np.mean(np.abs(err) <= spread[:, None])),
        "cover_single_by_2sd": float(np.mean(np.abs(err) <= 2 * spread[:, None])),
        "cover_mean_by_se": float(np.mean(np.abs(mean_err) <= spread / math.sqrt(k))),
        "cover_mean_by_2se": float(np.mean(np.abs(mean_err) <= 2 * spread / math.sqrt(k))),
        "n_sets": int(k),
    }


def chain_tau(rbm: RBM, data: np.ndarray, *, n_chains: int = 200, sweeps: int = 6000,
              seed: int = 0, stage_kwargs: dict | None = None) -> dict:
    """tau of K and E: the statistics stage's own estimate (its burn-in traces) and one from a
    trace recorded at every sweep of ``n_chains`` chains started from data (after a burn-in of
    a quarter of ``sweeps``)."""
    from spikerbm.rbm import free_energy
    from spikerbm.sampling import PersistentChains

    kw = dict(n_samples=10000, n_chains=1000, burn_in_sweeps=2000, thin_sweeps=10,
              tau_factor=20.0, z_max=4.0)
    kw.update(stage_kwargs or {})
    t0 = time.perf_counter()
    st = sample_equilibrium(rbm.to(dtype=torch.float32), init_data=data, seed=seed, **kw)
    stage_sec = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    v0 = torch.as_tensor(data[rng.choice(len(data), n_chains)], dtype=torch.float32)
    r32 = rbm.to(dtype=torch.float32)
    r64 = rbm.to(dtype=torch.float64)
    ch = PersistentChains(v0, n_hidden=rbm.n_hidden)
    gen = torch.Generator().manual_seed(derive_seed(seed, "tau"))
    burn = sweeps // 4
    ch.sweep(r32, generator=gen, k=burn)
    k_tr = np.empty((sweeps - burn, n_chains))
    e_tr = np.empty((sweeps - burn, n_chains))
    for t in range(sweeps - burn):
        ch.sweep(r32, generator=gen, k=1)
        k_tr[t] = ch.v.sum(1).numpy()
        e_tr[t] = free_energy(r64, ch.v).numpy()
    tau_k, ok_k = integrated_autocorr_time(k_tr)
    tau_e, ok_e = integrated_autocorr_time(e_tr)
    thin = kw["thin_sweeps"]
    tau_max = max(tau_k, tau_e)
    per_chain = math.ceil(kw["n_samples"] / kw["n_chains"])
    # samples of one chain spaced by `thin` sweeps: integrated time in samples ~ tau / thin
    # (>= 1); effective independent samples = n_samples / that
    n_eff = kw["n_samples"] / max(1.0, tau_max / thin)
    return {"stage_tau_k": st.attrs["tau_k_sweeps"], "stage_tau_e": st.attrs["tau_energy_sweeps"],
            "stage_equilibrated": int(st.attrs["equilibrated"]),
            "stage_reason": st.attrs["equilibration_reason"], "stage_seconds": stage_sec,
            "tau_k": tau_k, "tau_e": tau_e, "tau_converged": bool(ok_k and ok_e),
            "thin_sweeps": thin, "samples_per_chain": per_chain,
            "n_samples": kw["n_samples"], "n_eff": n_eff,
            "thin_for_independent": int(math.ceil(2 * tau_max))}
