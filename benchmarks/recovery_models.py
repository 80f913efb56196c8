"""Planted models for the recovery benchmark: exact enumeration, exact sampling, ML noise floor.

Conventions (those of the pipeline's couplings, METHODS §6): a state is an integer ``x`` in
``[0, 2^N)``, ``v_i = (x >> i) & 1`` and Ising spins ``s_i = 2 v_i - 1``. A model is a vector
``theta`` over subsets ``S`` (bit masks) with

    log p(x) = sum_S theta_S chi_S(x) - log Z,     chi_S(x) = prod_{i in S} s_i,

so ``theta[1 << i] = H_i``, ``theta[(1 << i) | (1 << j)] = J_ij`` and ``theta[...|...|...] =
J_ijk``: the same coefficients ``spikerbm.couplings.exact_couplings`` returns for an RBM
(the Walsh expansion of minus its marginal energy). Everything below is exact enumeration over
the ``2^N`` states (N <= 20), through the Walsh-Hadamard transform:

* energies of all states from ``theta``: ``sum_S theta_S chi_S(x) = FWHT(theta * sign)[x]`` with
  ``sign_S = (-1)^|S|`` (``chi_S(x) = sign_S (-1)^popcount(x & S)``);
* all moments ``<chi_S>`` of a distribution ``p`` at once: ``sign_S * FWHT(p)[S]``;
* covariances of two monomials: ``<chi_S chi_T> = <chi_{S xor T}>``, which gives the Fisher
  information of any sub-family (hence the asymptotic standard error of its ML fit) for free.

The noise floor is the maximum-likelihood fit of the true model family on the sampled data
(convex in ``theta``; scipy L-BFGS on exact moments). For a planted RBM the true family is the
RBM with the planted number of hidden units; its ML fit is found by L-BFGS on the exact
log-likelihood started at the truth (non-convex, but the optimum near the truth is the one
whose error is the data's noise).

Written here rather than in ``src/spikerbm`` because it is benchmark machinery (an Ising
generator and an Ising ML fitter are not pipeline stages); the Walsh transform is 10 lines of
numpy and ``spikerbm.couplings`` exposes only its RBM-specific use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import logsumexp

from spikerbm.exact import exact_couplings
from spikerbm.rbm import RBM, rbm_from_numpy

MAX_N = 20


# --------------------------------------------------------------------------------------------
# Walsh machinery
# --------------------------------------------------------------------------------------------
def fwht(a: np.ndarray) -> np.ndarray:
    """Unnormalised Walsh-Hadamard transform of a length-2^N vector (float64 copy)."""
    y = np.array(a, dtype=np.float64)
    n = y.size
    if n & (n - 1):
        raise ValueError(f"length must be a power of two; got {n}")
    h = 1
    while h < n:
        y = y.reshape(-1, 2, h)
        y = np.stack([y[:, 0] + y[:, 1], y[:, 0] - y[:, 1]], axis=1)
        h *= 2
    return y.reshape(n)


def popcount(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64).copy()
    c = np.zeros_like(x)
    while (x > 0).any():
        c += x & 1
        x >>= 1
    return c


@dataclass(frozen=True)
class Basis:
    """Index sets of the order-1, -2 and -3 monomials of N spins (bit masks)."""

    n: int
    pairs: np.ndarray = field(repr=False)     # (P, 2)
    triples: np.ndarray = field(repr=False)   # (T, 3)
    sign: np.ndarray = field(repr=False)      # (2^N,) (-1)^|S|

    @classmethod
    def of(cls, n: int) -> Basis:
        if not 3 <= n <= MAX_N:
            raise ValueError(f"N must be in [3, {MAX_N}] for enumeration; got {n}")
        pairs = np.array(list(combinations(range(n), 2)), dtype=np.int64)
        triples = np.array(list(combinations(range(n), 3)), dtype=np.int64)
        sign = 1.0 - 2.0 * (popcount(np.arange(1 << n)) % 2)
        return cls(n, pairs, triples, sign)

    def mask1(self) -> np.ndarray:
        return 1 << np.arange(self.n, dtype=np.int64)

    def mask2(self, pairs: np.ndarray | None = None) -> np.ndarray:
        p = self.pairs if pairs is None else np.asarray(pairs)
        return (1 << p[:, 0]) | (1 << p[:, 1])

    def mask3(self, triples: np.ndarray | None = None) -> np.ndarray:
        t = self.triples if triples is None else np.asarray(triples)
        return (1 << t[:, 0]) | (1 << t[:, 1]) | (1 << t[:, 2])

    def states(self) -> np.ndarray:
        """All states as 0/1 rows, (2^N, N) uint8."""
        x = np.arange(1 << self.n, dtype=np.int64)
        return ((x[:, None] >> np.arange(self.n)) & 1).astype(np.uint8)

    def log_weights(self, theta: np.ndarray) -> np.ndarray:
        """``sum_S theta_S chi_S(x)`` for every state (unnormalised log-probabilities)."""
        return fwht(theta * self.sign)

    def moments(self, p: np.ndarray) -> np.ndarray:
        """``<chi_S>_p`` for every subset S (p: probabilities or normalised counts)."""
        return fwht(p) * self.sign

    def split(self, coeffs: np.ndarray, triples: np.ndarray | None = None
              ) -> dict[str, np.ndarray]:
        """H (N,), J (N, N) symmetric, J3 over ``triples`` (default: all) from a 2^N vector."""
        H = coeffs[self.mask1()]
        J = np.zeros((self.n, self.n))
        J[self.pairs[:, 0], self.pairs[:, 1]] = coeffs[self.mask2()]
        J = J + J.T
        t = self.triples if triples is None else triples
        return {"H": H, "J": J, "J3": coeffs[self.mask3(t)]}


def state_counts(rows: np.ndarray) -> np.ndarray:
    """Histogram of 0/1 rows (T, N) over the 2^N states, float64 counts."""
    rows = np.asarray(rows, dtype=np.int64)
    x = (rows << np.arange(rows.shape[1], dtype=np.int64)).sum(1)
    return np.bincount(x, minlength=1 << rows.shape[1]).astype(np.float64)


def counts_to_rows(counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Rows (shuffled) of a histogram over the 2^N states, uint8 (T, N)."""
    x = np.repeat(np.arange(counts.size, dtype=np.int64), counts.astype(np.int64))
    rng.shuffle(x)
    return ((x[:, None] >> np.arange(n)) & 1).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Truths
# --------------------------------------------------------------------------------------------
@dataclass
class Truth:
    """A planted distribution over N spins with its Ising coefficients up to order 3.

    ``log_p`` is exact over the 2^N states; ``H``, ``J`` are the exact Walsh coefficients;
    ``J3_all`` those of every triple of ``basis.triples``; ``planted`` marks the triples that
    were planted (for an RBM truth: none are; its largest exact |J3| are listed instead).
    """

    name: str
    kind: str          # "ising" | "rbm"
    areas: np.ndarray  # (N,) str
    log_p: np.ndarray  # (2^N,)
    H: np.ndarray
    J: np.ndarray
    J3_all: np.ndarray
    planted: np.ndarray  # (T_all,) bool over basis.triples
    basis: Basis
    params: dict
    rbm: RBM | None = None  # the planted RBM (kind "rbm")

    @property
    def n(self) -> int:
        return self.basis.n

    @property
    def p(self) -> np.ndarray:
        return np.exp(self.log_p)

    def sample_counts(self, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        return rng.multinomial(n_samples, self.p / self.p.sum()).astype(np.float64)

    def rates(self) -> np.ndarray:
        m = self.basis.moments(self.p)[self.basis.mask1()]
        return (1 + m) / 2


def _normalise(logw: np.ndarray) -> np.ndarray:
    return logw - logsumexp(logw)


def planted_ising(*, n: int = 16, n_areas: int = 2, seed: int = 0, strength: float = 1.0,
                  cross: str = "zero", within_density: float = 0.5, n_triplets: int = 8,
                  rate_range: tuple[float, float] = (0.05, 0.3), name: str | None = None
                  ) -> Truth:
    """An Ising model with areas, fields calibrated to sparse rates, pairs and triplets.

    * areas: ``n_areas`` contiguous near-equal blocks ``A1, A2, ...``;
    * within-area pairs: each present with probability ``within_density``, value
      ``strength * 0.25 * (U(0.3, 1) or, one time in five, -U(0.3, 1))`` (mostly excitatory);
    * cross-area pairs: ``cross="zero"`` none; ``"positive"`` a fraction 0.25 of the cross pairs
      with ``strength * 0.1 * U(0.3, 1)``;
    * triplets: ``n_triplets`` distinct within-area triples, ``strength * 0.2 * (+-U(0.5, 1))``;
    * fields: calibrated so that every neuron's exact rate ``p(v_i = 1)`` equals a target drawn
      uniformly in ``rate_range`` (Newton on the exact marginals).
    """
    basis = Basis.of(n)
    rng = np.random.default_rng(seed)
    area_idx = (np.arange(n) * n_areas) // n
    areas = np.array([f"A{k + 1}" for k in area_idx])
    J = np.zeros((n, n))
    same = area_idx[:, None] == area_idx[None, :]
    for i, j in basis.pairs:
        if same[i, j]:
            if rng.random() < within_density:
                sgn = -1.0 if rng.random() < 0.2 else 1.0
                J[i, j] = strength * 0.25 * sgn * rng.uniform(0.3, 1.0)
        elif cross == "positive":
            if rng.random() < 0.25:
                J[i, j] = strength * 0.1 * rng.uniform(0.3, 1.0)
        elif cross != "zero":
            raise ValueError(f"cross must be 'zero' or 'positive'; got {cross!r}")
    J = J + J.T
    within3 = [t for t in basis.triples if len(set(area_idx[t])) == 1]
    pick = rng.choice(len(within3), size=n_triplets, replace=False)
    planted_t = np.array([within3[i] for i in sorted(pick)])
    J3p = strength * 0.2 * rng.choice([-1.0, 1.0], n_triplets) * rng.uniform(0.5, 1.0, n_triplets)
    target = rng.uniform(*rate_range, n)

    theta = np.zeros(1 << n)
    theta[basis.mask2()] = J[basis.pairs[:, 0], basis.pairs[:, 1]]
    theta[basis.mask3(planted_t)] = J3p
    m1 = basis.mask1()
    H = 0.5 * np.log(target / (1 - target))
    for _ in range(100):  # Newton on H given the rest: d<s_i>/dH_i = 1 - <s_i>^2 (diagonal)
        theta[m1] = H
        p = np.exp(_normalise(basis.log_weights(theta)))
        m = basis.moments(p)[m1]
        resid = (2 * target - 1) - m
        if np.abs(resid).max() < 1e-12:
            break
        H = H + np.clip(resid / np.maximum(1 - m**2, 1e-3), -1, 1)
    theta[m1] = H
    log_p = _normalise(basis.log_weights(theta))
    planted = np.zeros(len(basis.triples), dtype=bool)
    code = {int(c): k for k, c in enumerate(basis.mask3())}
    for c in basis.mask3(planted_t):
        planted[code[int(c)]] = True
    name = name or f"ising{n}-{cross}-s{strength:g}-seed{seed}"
    return Truth(name=name, kind="ising", areas=areas, log_p=log_p, H=H, J=J,
                 J3_all=theta[basis.mask3()], planted=planted, basis=basis,
                 params={"n": n, "n_areas": n_areas, "seed": seed, "strength": strength,
                         "cross": cross, "within_density": within_density,
                         "n_triplets": n_triplets, "rate_range": list(rate_range)})


def rbm_log_p(rbm: RBM, basis: Basis) -> np.ndarray:
    """Exact normalised log p(v) of an RBM over the 2^N visible states (float64)."""
    r = rbm.to(device="cpu", dtype=torch.float64)
    v = torch.from_numpy(basis.states()).to(torch.float64)
    neg_e = v @ r.a + torch.nn.functional.softplus(r.b + v @ r.W).sum(-1)
    return _normalise(neg_e.numpy())


def planted_rbm_truth(*, n: int = 16, seed: int = 0, name: str | None = None,
                      **overrides) -> Truth:
    """The project's planted-RBM session generator (``spikerbm.synthetic.planted_rbm``) at small
    N, with its exact Walsh couplings as the truth.

    Defaults: 2 areas, 2 assemblies of 6 neurons per area, 1 cross unit, the global drive unit,
    rates 2-20 Hz at 20 ms bins; every other parameter as in ``config/config.yaml``.
    """
    from spikerbm import synthetic

    params = dict(n_neurons=n, n_areas=2, assemblies_per_area=2, assembly_size=6,
                  within_area_weight=1.6, cross_area_weight=0.5, n_cross_assemblies=1,
                  drive_weight=0.35, rate_min_hz=2.0, rate_max_hz=20.0, bin_ms=20,
                  hidden_activity=0.1, drive_activity=0.5, weight_jitter=0.25)
    params.update(overrides)
    ds = synthetic.planted_rbm(**params, rng=np.random.default_rng(seed))
    rbm = rbm_from_numpy(ds["W"].values, ds["a"].values, ds["b"].values, dtype=torch.float64)
    basis = Basis.of(n)
    ex = exact_couplings(rbm, max_visible=MAX_N)
    t = basis.triples
    J3_all = ex["J3"][t[:, 0], t[:, 1], t[:, 2]]
    # "planted" triplets of an RBM truth: none are planted as such; mark the 2% largest |J3|
    thr = np.quantile(np.abs(J3_all), 0.98)
    return Truth(name=name or f"rbm{n}-seed{seed}", kind="rbm",
                 areas=ds["area"].values.astype(str), log_p=rbm_log_p(rbm, basis), H=ex["H"],
                 J=ex["J"], J3_all=J3_all, planted=np.abs(J3_all) >= thr, basis=basis,
                 params={**params, "seed": seed}, rbm=rbm)


# --------------------------------------------------------------------------------------------
# Noise floor: ML fit of the true family on the sampled data
# --------------------------------------------------------------------------------------------
@dataclass
class Fit:
    H: np.ndarray
    J: np.ndarray
    J3_all: np.ndarray
    theta: np.ndarray | None
    info: dict


def fit_ising(counts: np.ndarray, basis: Basis, *, triples: np.ndarray | None,
              l2: float = 0.0, tol: float = 1e-10) -> Fit:
    """Exact ML fit of fields + all pairs (+ the given triples) to a histogram of states.

    Minimises ``-<log p>_data + l2/2 |theta|^2`` (convex) by L-BFGS with exact moments. Returns
    the fitted coefficients (J3 of triples not in the family are 0) and, in ``info``, the
    inverse Fisher information per sample (``cov``), i.e. the asymptotic covariance of the ML
    estimator times ``n_samples`` (``<chi_S chi_T> - <chi_S><chi_T>`` from ``chi_{S xor T}``).
    """
    n_samples = counts.sum()
    m_data = basis.moments(counts / n_samples)
    masks = [basis.mask1(), basis.mask2()]
    if triples is not None and len(triples):
        masks.append(basis.mask3(triples))
    idx = np.concatenate(masks)
    target = m_data[idx]

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta = np.zeros(1 << basis.n)
        theta[idx] = x
        logw = basis.log_weights(theta)
        lz = logsumexp(logw)
        p = np.exp(logw - lz)
        m = basis.moments(p)[idx]
        nll = -(x @ target) + lz + 0.5 * l2 * (x @ x)
        return float(nll), (m - target) + l2 * x

    res = minimize(f, np.zeros(idx.size), jac=True, method="L-BFGS-B",
                   options={"maxiter": 20000, "ftol": tol, "gtol": 1e-9, "maxcor": 30})
    theta = np.zeros(1 << basis.n)
    theta[idx] = res.x
    p = np.exp(_normalise(basis.log_weights(theta)))
    m_all = basis.moments(p)
    fisher = m_all[idx[:, None] ^ idx[None, :]] - np.outer(m_all[idx], m_all[idx])
    cov = np.linalg.inv(fisher + l2 * np.eye(idx.size))
    out = basis.split(theta)
    return Fit(out["H"], out["J"], out["J3"], theta,
               {"converged": bool(res.success), "n_iter": int(res.nit), "nll": float(res.fun),
                "grad_max": float(np.abs(res.jac).max()), "idx": idx, "cov": cov,
                "n_samples": float(n_samples)})


def fit_rbm_exact(counts: np.ndarray, basis: Basis, rbm0: RBM, *, tol: float = 1e-10,
                  maxiter: int = 5000, l2: float = 0.0) -> Fit:
    """ML fit of an RBM family (the shape of ``rbm0``) to a histogram of states, from ``rbm0``.

    Exact log-likelihood over the 2^N visible states (float64), L-BFGS on (W, a, b), with an
    optional ``l2/2 |W|^2`` penalty. Non-convex: the optimum found is the one L-BFGS reaches from
    ``rbm0``. Returns the fit's exact Walsh couplings; ``info['rbm']`` is the fitted RBM.
    """
    r0 = rbm0.to(device="cpu", dtype=torch.float64)
    n, m = r0.W.shape
    v = torch.from_numpy(basis.states()).to(torch.float64)
    w = torch.from_numpy(counts / counts.sum())

    def unpack(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(x).requires_grad_(True)
        return t, t[: n * m].view(n, m), t[n * m: n * m + n], t[n * m + n:]

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        t, W, a, b = unpack(x)
        neg_e = v @ a + torch.nn.functional.softplus(b + v @ W).sum(-1)
        nll = -(w @ neg_e) + torch.logsumexp(neg_e, 0) + 0.5 * l2 * (W * W).sum()
        nll.backward()
        return float(nll.detach()), t.grad.numpy().copy()

    x0 = torch.cat([r0.W.reshape(-1), r0.a, r0.b]).numpy()
    res = minimize(f, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter, "ftol": tol, "gtol": 1e-9})
    _, W, a, b = unpack(res.x)
    rbm = RBM(W.detach().clone(), a.detach().clone(), b.detach().clone())
    ex = exact_couplings(rbm, max_visible=MAX_N)
    t = basis.triples
    return Fit(ex["H"], ex["J"], ex["J3"][t[:, 0], t[:, 1], t[:, 2]], None,
               {"converged": bool(res.success), "n_iter": int(res.nit), "nll": float(res.fun),
                "rbm": rbm})


def fit_rbm_from_truth(counts: np.ndarray, truth: Truth, *, tol: float = 1e-10) -> Fit:
    """ML fit of the planted RBM family (same number of hidden units) started at the truth."""
    return fit_rbm_exact(counts, truth.basis, truth.rbm, tol=tol)


def area_mean_se(fit: Fit, basis: Basis, areas: np.ndarray) -> np.ndarray:
    """Asymptotic standard error of the area-matrix entries of an Ising ML fit.

    Entry (A, B) is a linear functional ``c^T theta`` (the mean of J_ij over the pairs i in A,
    j in B, i != j); its variance is ``c^T Cov c / n_samples`` with ``Cov`` the inverse Fisher
    information of the fitted family (``fit.info['cov']``).
    """
    idx = fit.info["idx"]
    pos = {int(c): k for k, c in enumerate(idx)}
    regs = sorted(set(areas.tolist()))
    se = np.full((len(regs), len(regs)), np.nan)
    cov = fit.info["cov"]
    for p_, ra in enumerate(regs):
        for q_, rb in enumerate(regs):
            c = np.zeros(idx.size)
            n_terms = 0
            for i in range(basis.n):
                for j in range(basis.n):
                    if i != j and areas[i] == ra and areas[j] == rb:
                        c[pos[(1 << i) | (1 << j)]] += 1.0
                        n_terms += 1
            c /= max(n_terms, 1)
            se[p_, q_] = math.sqrt(max(c @ cov @ c, 0.0) / fit.info["n_samples"])
    return se


def rbm_couplings_by_support(rbm: RBM, *, max_support: int = MAX_N
                             ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Fields and pair couplings of an RBM of any N, exact for every hidden unit whose support
    (sites with W != 0) has at most ``max_support`` sites.

    The minus-energy ``a.v + sum_mu softplus(b_mu + W_mu . v)`` is a sum over hidden units and
    unit mu depends only on the sites of its support, so its Walsh coefficients are those of a
    function of ``|support|`` spins (enumerated exactly) and vanish on every other subset. Units
    with a larger support (the planted session's global drive unit) use the pipeline's Gaussian
    formulas (``couplings.fields``, ``couplings.pair_couplings``), accurate when every weight is
    small against the width of the summed input. Used as the truth of the 160-neuron planted
    session, where the assemblies' strong weights on 12 sites make the Gaussian formulas
    approximate. Returns ``H`` (N,), ``J`` (N, N) and ``info`` (which units were exact).
    """
    from spikerbm import couplings

    r = rbm.to(device="cpu", dtype=torch.float64)
    W, a, b = r.W.numpy(), r.a.numpy(), r.b.numpy()
    n, m = W.shape
    H = 0.5 * a.copy()
    J = np.zeros((n, n))
    exact_units, gauss_units = [], []
    for mu in range(m):
        sup = np.flatnonzero(W[:, mu] != 0)
        s = sup.size
        if s == 0:
            continue
        if s <= max_support:
            x = np.arange(1 << s, dtype=np.int64)
            v = ((x[:, None] >> np.arange(s)) & 1).astype(np.float64)
            f = np.logaddexp(0.0, b[mu] + v @ W[sup, mu])
            sign = 1.0 - 2.0 * (popcount(x) % 2)
            coef = fwht(f) * sign / (1 << s)
            H[sup] += coef[1 << np.arange(s)]
            for p_, q_ in combinations(range(s), 2):
                c = coef[(1 << p_) | (1 << q_)]
                J[sup[p_], sup[q_]] += c
                J[sup[q_], sup[p_]] += c
            exact_units.append(mu)
        else:
            one = RBM(r.W[:, [mu]], torch.zeros_like(r.a), r.b[[mu]])
            H += couplings.fields(one, n_nodes=40).numpy()
            J += couplings.pair_couplings(one, n_nodes=40).numpy()
            gauss_units.append(mu)
    return H, J, {"exact_units": exact_units, "gaussian_units": gauss_units}
