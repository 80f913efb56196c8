"""Coverage of the atlas intervals on planted couplings: why neurons, and why a t interval.

Planted per-session couplings (3 areas): ``J_ij = mu_AB + u_AB + r_i + r_j + e_ij`` with a
session effect ``u`` (sd ``tau``), neuron effects ``r`` (sd ``sig_row``: pairs sharing a neuron
are dependent) and pair noise ``e`` (sd ``sig_pair``). Reports the fraction of intervals (all 6
area pairs, ``--seeds`` seeds) that cover ``mu`` for

* several sessions: the t interval over session estimates (``session_interval="t"``, default)
  and the two-stage hierarchical bootstrap (``"bootstrap"``), with and without a session effect;
* one session: the neuron bootstrap (expanded percentile, the atlas's), the same replicates as
  a plain normal interval (+- 1.96 SE), and a pair bootstrap (pairs resampled as if
  independent), in three regimes.

    python benchmarks/atlas_coverage.py --seeds 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from spikerbm import atlas as A

MU = np.array([[0.15, 0.02, 0.05], [0.02, 0.25, 0.10], [0.05, 0.10, 0.30]])
AREAS = ["LGd", "VISl", "VISp"]


def session(rng, sid, n_per, tau, sig_row, sig_pair):
    lab = np.repeat(AREAS, n_per)
    code = np.repeat(np.arange(3), n_per)
    n = lab.size
    u = np.triu(rng.normal(0.0, tau, (3, 3)))
    u = u + np.triu(u, 1).T
    r = rng.normal(0.0, sig_row, n)
    e = np.triu(rng.normal(0.0, sig_pair, (n, n)), 1)
    J = (MU + u)[code[:, None], code[None]] + r[:, None] + r[None] + e + e.T
    np.fill_diagonal(J, 0.0)
    return A.SessionCouplings(sid, lab, {"J": J})


def pair_bootstrap_cover(s, n_boot, rng, ci=0.95):
    """Percentile interval from resampling pairs of each block independently (the wrong unit)."""
    out = []
    for p in range(3):
        for q in range(p, 3):
            blk = s.matrices["J"][np.ix_(s.areas == AREAS[p], s.areas == AREAS[q])]
            vals = blk[np.triu_indices(blk.shape[0], 1)] if p == q else blk.ravel()
            boot = rng.choice(vals, size=(n_boot, vals.size)).mean(1)
            lo, hi = np.quantile(boot, [(1 - ci) / 2, (1 + ci) / 2])
            out.append(lo <= MU[p, q] <= hi)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--sessions", type=int, default=5)
    args = ap.parse_args()
    iu = np.triu_indices(3)
    sd = np.sqrt(0.95 * 0.05 / args.seeds)
    print(f"{args.seeds} seeds x 6 area pairs, nominal 0.95 (one entry's binomial sd {sd:.3f}); "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"\n{args.sessions} sessions, 30-60 neurons per area, sig_row 0.1, sig_pair 0.3")
    for how in ("t", "bootstrap"):
        for tau in (0.0, 0.05):
            cov = []
            for seed in range(args.seeds):
                rng = np.random.default_rng(seed)
                ss = [session(rng, f"s{i}", rng.integers(30, 60, 3), tau, 0.1, 0.3)
                      for i in range(args.sessions)]
                at = A.build_atlas(ss, quantities=["J"], n_boot=200, session_interval=how,
                                   seed=seed, min_area_neurons=20)
                lo, hi = at.area_ci_low.values[0], at.area_ci_high.values[0]
                cov.append(((lo <= MU) & (MU <= hi))[iu])
            print(f"  session_interval={how:9s} tau={tau:4.2f}: coverage "
                  f"{np.mean(cov):.3f}")
    print("\none session, 25-40 neurons per area, no session effect")
    for sig_row, sig_pair in ((0.1, 0.3), (0.0, 0.3), (0.2, 0.05)):
        cov_e, cov_p, cov_pair = [], [], []
        for seed in range(args.seeds):
            rng = np.random.default_rng(10_000 + seed)
            s = session(rng, "s", rng.integers(25, 40, 3), 0.0, sig_row, sig_pair)
            at = A.build_atlas([s], quantities=["J"], n_boot=400, seed=seed,
                               min_area_neurons=20)
            lo, hi = at.area_ci_low.values[0], at.area_ci_high.values[0]
            cov_e.append(((lo <= MU) & (MU <= hi))[iu])
            # the unexpanded normal interval from the same replicates: estimate +- 1.96 SE
            est, se = at.area_mean.values[0], at.area_se.values[0]
            cov_p.append((np.abs(est - MU) <= 1.96 * se)[iu])
            cov_pair.append(pair_bootstrap_cover(s, 400, rng))
        print(f"  sig_row {sig_row:.2f} sig_pair {sig_pair:.2f}: neuron bootstrap "
              f"(expanded percentile) {np.mean(cov_e):.3f}, neuron bootstrap +-1.96 SE "
              f"{np.mean(cov_p):.3f}, pair bootstrap {np.mean(cov_pair):.3f}")


if __name__ == "__main__":
    main()
