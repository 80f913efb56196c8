"""Effective Ising couplings of an RBM: fields, pairwise and 3-body terms (docs/methods.md §6).

Marginalising the hidden layer and writing ``s = 2v - 1`` gives the Ising energy

    H(s) = const - sum_j H_j s_j - sum_{j<k} J_jk s_j s_k - sum_{j<k<l} J_jkl s_j s_k s_l - ...

(Decelle et al., SciPost Phys. 16, 095, 2024). With ``c_mu = b_mu + 1/2 sum_k W_kmu`` and the
Gaussian width of the input from the sites *outside* ``S``,
``s_mu^S = (1/4 sum_{k not in S} W_kmu^2)^(1/2)``, the Gaussian approximation gives each
coupling as a finite difference of ``G_mu(x) = E_z[softplus(c_mu + x + s_mu^S z)]``.

Two evaluators of the same formulas live here:

* **Gauss-Hermite** (``n_nodes`` probabilists' nodes in ``z``): :func:`fields`,
  :func:`pair_couplings` (chunked over ``i``: the tensor ``(chunk, N, M, n_nodes)`` is sized from
  a memory budget) and :func:`triplet_couplings_quadrature` (explicit triplet lists).
* **Spectral** (exact rewriting, used for the 3-body stream): since ``softplus'' = rho`` (the
  logistic density, characteristic function ``phi(w) = pi w / sinh(pi w)``), the ``n``-th mixed
  difference of ``G`` is a Fourier integral in which every site enters through its own factor,
  *including* the excluded-site width ``exp(-s_S^2 w^2 / 2) = prod_{i in S} exp(-(s^2/n -
  W_i^2/4) w^2 / 2)``. For the 3-body term

      J_jkl = -(1/2pi) sum_mu int_R sin(w c_mu) phi(w) e^{-s_jkl^2 w^2/2}
              prod_{i in jkl} sin(w W_imu / 2) / w^2 dw,

  discretised by the trapezoidal rule (spectrally accurate: by Poisson summation its error is the
  aliased copy of the coupling at ``c +- 2pi/h``, which decays like ``exp(-|y| + s^2/2)``), gives
  a CP decomposition ``J_jkl = sum_r beta_r A_jr A_kr A_lr`` of rank ``sum_mu n_mu``. All triplets
  then come from matrix products (:func:`stream_triplets`), never from an N^3 loop.

The exact Walsh-Hadamard expansion over all ``2^N`` states, the test reference for small ``N``,
is :func:`spikerbm.exact.exact_couplings`; the brain-area analysis of the couplings is
:mod:`spikerbm.areas`. :func:`compute_couplings` assembles the stage's dataset.

Everything is float64 by default (couplings are energy coefficients), device-agnostic torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from spikerbm.areas import area_matrix, area_statistics, r_statistic
from spikerbm.rbm import RBM, rbm_from_dataset
from spikerbm.statistics import compare_statistic, sample_triplets

__all__ = [
    "gauss_hermite",
    "fields",
    "pair_couplings",
    "triplet_couplings_quadrature",
    "SpectralFactors",
    "spectral_factors",
    "pair_couplings_spectral",
    "triplet_couplings",
    "TripletStream",
    "stream_triplets",
    "pearson",
    "coupling_norms",
    "pick_checkpoints",
    "compute_couplings",
    "SIGN_NOISE_FACTOR",
    "replica_couplings",
    "reproducibility",
]

#: A pair enters the sign-consistency fraction when ``|mean_r J_ij|`` exceeds this many times the
#: median across-replica spread of all pairs (``reproducibility``; docs/methods.md §6).
SIGN_NOISE_FACTOR = 2.0

#: exponent cap for the per-site spectral factors (float64 overflows at ~709)
_EXP_CAP = 600.0


def _f(rbm: RBM, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return rbm.W.to(dtype), rbm.a.to(dtype), rbm.b.to(dtype)


def _check_nodes(n_nodes: int) -> None:
    if not isinstance(n_nodes, int | np.integer) or n_nodes < 2:
        raise ValueError(f"n_nodes must be an integer >= 2 (Gauss-Hermite nodes); got {n_nodes!r}")


def gauss_hermite(n_nodes: int, *, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilists' Gauss-Hermite rule for ``E_z[f(z)]``, ``z ~ N(0, 1)``.

    Returns
    -------
    nodes, weights
        Tensors of shape (n_nodes,); the weights sum to 1.
    """
    _check_nodes(n_nodes)
    z, w = np.polynomial.hermite_e.hermegauss(int(n_nodes))
    w = w / w.sum()
    return (torch.as_tensor(z, dtype=dtype, device=device),
            torch.as_tensor(w, dtype=dtype, device=device))


def _chunk_rows(per_row_bytes: float, memory_budget_bytes: int, n_rows: int) -> int:
    if memory_budget_bytes <= 0:
        raise ValueError(f"memory_budget_bytes must be > 0; got {memory_budget_bytes}")
    return int(max(1, min(n_rows, memory_budget_bytes // max(per_row_bytes, 1))))


def fields(rbm: RBM, *, n_nodes: int = 40, memory_budget_bytes: int = 2**28,
           dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Effective fields ``H_j`` (Gauss-Hermite), shape (N,), on the RBM's device.

    ``H_j = a_j/2 + 1/2 sum_mu E_z[sp(c + W_j/2 + s^j z) - sp(c - W_j/2 + s^j z)]``.
    """
    W, a, b = _f(rbm, dtype)
    z, w = gauss_hermite(n_nodes, device=W.device, dtype=dtype)
    c = b + 0.5 * W.sum(0)
    s2 = 0.25 * (W * W).sum(0)
    n, m = W.shape
    out = torch.empty(n, dtype=dtype, device=W.device)
    step = _chunk_rows(4 * m * n_nodes * W.element_size(), memory_budget_bytes, n)
    for i0 in range(0, n, step):
        Wi = W[i0:i0 + step]
        s = (s2 - 0.25 * Wi * Wi).clamp_min(0).sqrt()
        base = (c + 0.0 * Wi).unsqueeze(-1) + s.unsqueeze(-1) * z
        half = (0.5 * Wi).unsqueeze(-1)
        diff = F.softplus(base + half) - F.softplus(base - half)
        out[i0:i0 + step] = 0.5 * a[i0:i0 + step] + 0.5 * (diff @ w).sum(-1)
    return out


def pair_couplings(rbm: RBM, *, n_nodes: int = 40, memory_budget_bytes: int = 2**28,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """All pairwise couplings ``J_jk`` (Gauss-Hermite), shape (N, N), zero diagonal, symmetric.

    Chunked over ``j``: each chunk builds tensors of shape ``(chunk, N, M, n_nodes)``; the chunk
    is the largest whose ~4 such live tensors fit ``memory_budget_bytes``.
    """
    W, _, b = _f(rbm, dtype)
    z, w = gauss_hermite(n_nodes, device=W.device, dtype=dtype)
    c = b + 0.5 * W.sum(0)
    s2 = 0.25 * (W * W).sum(0)
    n, m = W.shape
    J = torch.zeros(n, n, dtype=dtype, device=W.device)
    step = _chunk_rows(4 * n * m * n_nodes * W.element_size(), memory_budget_bytes, n)
    for j0 in range(0, n, step):
        Wj = W[j0:j0 + step].unsqueeze(1)  # (c, 1, M)
        Wk = W[j0:].unsqueeze(0)  # (1, N - j0, M): upper triangle only (k >= j0)
        s = (s2 - 0.25 * Wj * Wj - 0.25 * Wk * Wk).clamp_min(0).sqrt()  # (c, N - j0, M)
        base = c.unsqueeze(-1) + s.unsqueeze(-1) * z  # (c, N - j0, M, Q)
        p = (0.5 * (Wj + Wk)).unsqueeze(-1)
        q = (0.5 * (Wj - Wk)).unsqueeze(-1)
        val = F.softplus(base + p) - F.softplus(base + q)
        val -= F.softplus(base - q)
        val += F.softplus(base - p)
        J[j0:j0 + step, j0:] = 0.25 * (val @ w).sum(-1)
        del base, val
    J = torch.triu(J, diagonal=1)
    J = J + J.T
    return J


def _as_triplets(triplets: torch.Tensor | np.ndarray, n: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(triplets) if not isinstance(triplets, torch.Tensor)
                        else triplets).to(device=device, dtype=torch.long)
    if t.ndim != 2 or t.shape[1] != 3:
        raise ValueError(f"triplets must have shape (T, 3); got {tuple(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
        raise ValueError(f"triplet indices must lie in [0, {n}); got range "
                         f"[{int(t.min())}, {int(t.max())}]")
    if t.numel() and bool(((t[:, 0] == t[:, 1]) | (t[:, 0] == t[:, 2])
                           | (t[:, 1] == t[:, 2])).any()):
        raise ValueError("triplets must have three distinct sites (i, j, k)")
    return t


_SIGNS = torch.tensor([[s1, s2, s3] for s1 in (1, -1) for s2 in (1, -1) for s3 in (1, -1)],
                      dtype=torch.float64)


def triplet_couplings_quadrature(rbm: RBM, triplets: torch.Tensor | np.ndarray, *,
                                 n_nodes: int = 40, memory_budget_bytes: int = 2**28,
                                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """3-body couplings ``J_ijk`` of explicit triplets by Gauss-Hermite quadrature (reference).

    ``J_ijk = 1/8 sum_mu sum_sigma s1 s2 s3 E_z[sp(c + (s1 W_i + s2 W_j + s3 W_k)/2 + s^ijk z)]``.

    Parameters
    ----------
    triplets
        Integer array (T, 3) of distinct site indices.

    Returns
    -------
    torch.Tensor
        Shape (T,).
    """
    W, _, b = _f(rbm, dtype)
    t = _as_triplets(triplets, W.shape[0], W.device)
    z, w = gauss_hermite(n_nodes, device=W.device, dtype=dtype)
    c = b + 0.5 * W.sum(0)
    s2 = 0.25 * (W * W).sum(0)
    m = W.shape[1]
    signs = _SIGNS.to(device=W.device, dtype=dtype)
    prod = signs.prod(-1)  # (8,)
    out = torch.empty(t.shape[0], dtype=dtype, device=W.device)
    step = _chunk_rows(3 * 8 * m * n_nodes * W.element_size(), memory_budget_bytes, len(t))
    for t0 in range(0, len(t), step):
        Wt = W[t[t0:t0 + step]]  # (T, 3, M)
        s = (s2 - 0.25 * (Wt * Wt).sum(1)).clamp_min(0).sqrt()  # (T, M)
        shift = 0.5 * torch.einsum("gd,tdm->tgm", signs, Wt)  # (T, 8, M)
        x = (c + shift).unsqueeze(-1) + (s.unsqueeze(1) * 1.0).unsqueeze(-1) * z  # (T, 8, M, Q)
        val = F.softplus(x) @ w  # (T, 8, M)
        out[t0:t0 + step] = 0.125 * torch.einsum("g,tgm->t", prod, val)
    return out


# --------------------------------------------------------------------------------------------
# spectral (CP) representation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpectralFactors:
    """CP factors of an order-``order`` coupling tensor.

    ``J_{i_1..i_n} = sum_r beta_r prod_k A[i_k, r]`` for distinct sites.

    Attributes
    ----------
    A
        Site factors, shape (N, R).
    beta
        Weights, shape (R,).
    hidden
        Hidden unit of each rank-one term, shape (R,) (long).
    order
        2 or 3.
    """

    A: torch.Tensor
    beta: torch.Tensor
    hidden: torch.Tensor
    order: int

    @property
    def rank(self) -> int:
        return int(self.beta.shape[0])


def _phi(w: torch.Tensor) -> torch.Tensor:
    """Characteristic function of the logistic density, ``pi w / sinh(pi w)`` (1 at 0)."""
    x = math.pi * w
    safe = torch.where(x.abs() < 1e-8, torch.ones_like(x), x)
    return torch.where(x.abs() < 1e-8, torch.ones_like(x), safe / torch.sinh(safe))


def spectral_factors(rbm: RBM, *, order: int = 3, log_tol: float = 34.0,
                     dtype: torch.dtype = torch.float64) -> SpectralFactors:
    """CP factors of the Gaussian-approximation couplings of order 2 or 3 (trapezoidal rule).

    For each hidden unit the step ``h`` is chosen so that the aliased copies (Poisson summation)
    sit at ``|y| >= |c| + sum of the ``order`` largest |W|/2 + s^2/2 + log_tol`` where the
    coupling kernel is below ``exp(-log_tol)``, and the frequency range is cut where
    ``phi(w) exp(-s_lb^2 w^2 / 2) < exp(-log_tol)`` (``s_lb`` the smallest width over all
    ``order``-sets). The truncation error is thus ~``exp(-log_tol)`` per hidden unit, relative
    to the kernel scale.

    Parameters
    ----------
    order
        2 (pairwise) or 3 (3-body).
    log_tol
        ``-log`` of the target relative accuracy (34 ~ 1.7e-15).
    """
    if order not in (2, 3):
        raise ValueError(f"order must be 2 or 3; got {order!r}")
    if not log_tol > 0:
        raise ValueError(f"log_tol must be > 0; got {log_tol!r}")
    W, _, b = _f(rbm, dtype)
    n, m = W.shape
    if n < order:
        raise ValueError(f"order-{order} couplings need at least {order} visible units; N={n}")
    c = b + 0.5 * W.sum(0)
    W2 = W * W
    s2 = 0.25 * W2.sum(0)
    top_abs = W.abs().topk(order, dim=0).values.sum(0)  # (M,)
    top_sq = W2.topk(order, dim=0).values.sum(0)
    s2_lb = (s2 - 0.25 * top_sq).clamp_min(0)
    big_y = c.abs() + 0.5 * top_abs + 0.5 * s2 + log_tol
    h = 2 * math.pi / big_y
    L = log_tol + 2.0
    # pi w + s_lb^2 w^2 / 2 = L
    disc = torch.sqrt(math.pi**2 + 2 * s2_lb * L)
    w_max = torch.where(s2_lb > 1e-12, (disc - math.pi) / s2_lb.clamp_min(1e-12),
                        torch.full_like(s2_lb, L / math.pi))
    # keep every per-site exponent w^2 |W_i^2/4 - s^2/order| / 2 below the float64 range
    w_cap = torch.sqrt(2 * _EXP_CAP / (s2 * (1 - 1 / order)).clamp_min(1e-300))
    w_max = torch.minimum(w_max, w_cap)
    n_mu = torch.ceil(w_max / h).to(torch.long).clamp_min(1)
    hidden = torch.repeat_interleave(torch.arange(m, device=W.device), n_mu)
    # node index 1..n_mu within each hidden unit
    starts = torch.cumsum(n_mu, 0) - n_mu
    idx = torch.arange(hidden.shape[0], device=W.device) - starts[hidden] + 1
    om = idx.to(dtype) * h[hidden]  # (R,)
    hh = h[hidden]
    cc = c[hidden]
    gauss_share = s2[hidden] / order
    Wr = W[:, hidden]  # (N, R)
    expo = 0.5 * om * om * (0.25 * Wr * Wr - gauss_share)
    A = torch.sin(0.5 * om * Wr) * torch.exp(expo.clamp(max=_EXP_CAP))
    if order == 3:
        beta = -(hh / math.pi) * torch.sin(om * cc) * _phi(om) / (om * om)
    else:
        beta = (hh / math.pi) * torch.cos(om * cc) * _phi(om) / (om * om)
        # the w = 0 node of the trapezoid: h/(2 pi) * (W_j/2)(W_k/2)
        A = torch.cat([A, 0.5 * W], dim=1)
        beta = torch.cat([beta, h / (2 * math.pi)])
        hidden = torch.cat([hidden, torch.arange(m, device=W.device)])
    return SpectralFactors(A=A, beta=beta, hidden=hidden, order=order)


def pair_couplings_spectral(rbm: RBM, *, log_tol: float = 34.0,
                            dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """All pairwise couplings by the spectral (CP) form: one matrix product. Shape (N, N)."""
    f = spectral_factors(rbm, order=2, log_tol=log_tol, dtype=dtype)
    J = (f.A * f.beta) @ f.A.T
    J = 0.5 * (J + J.T)
    J.fill_diagonal_(0.0)
    return J


def triplet_couplings(rbm: RBM | SpectralFactors, triplets: torch.Tensor | np.ndarray, *,
                      log_tol: float = 34.0, dtype: torch.dtype = torch.float64,
                      batch: int = 4096) -> torch.Tensor:
    """3-body couplings of explicit triplets from the spectral factors, shape (T,)."""
    f = (rbm if isinstance(rbm, SpectralFactors)
         else spectral_factors(rbm, order=3, log_tol=log_tol, dtype=dtype))
    if f.order != 3:
        raise ValueError(f"triplet_couplings needs order-3 factors; got order {f.order}")
    t = _as_triplets(triplets, f.A.shape[0], f.A.device)
    out = torch.empty(t.shape[0], dtype=f.A.dtype, device=f.A.device)
    for t0 in range(0, len(t), batch):
        tt = t[t0:t0 + batch]
        out[t0:t0 + batch] = (f.A[tt[:, 0]] * f.A[tt[:, 1]] * f.A[tt[:, 2]]) @ f.beta
    return out


@dataclass
class TripletStream:
    """Summaries of all ``i<j<k`` 3-body couplings, computed without the N^3 tensor.

    Attributes
    ----------
    edges
        Histogram bin edges, shape (n_bins + 1,) (CPU float64 numpy).
    counts
        Counts per bin, (n_bins,); ``underflow`` / ``overflow`` count values outside the edges.
    sum_sq
        Sum of ``J_ijk^2`` over ``i<j<k`` (the squared Frobenius norm).
    n_triplets
        Number of triplets ``N(N-1)(N-2)/6``.
    pair_abs_sum
        ``sum_k |J_ijk|`` over ``k != i, j`` (N, N), or None when not requested.
    top_index, top_value
        The ``n_strongest`` triplets by ``|J|`` (int64 (K, 3), float64 (K,)), strongest first.
    """

    edges: np.ndarray
    counts: np.ndarray
    underflow: int
    overflow: int
    sum_sq: float
    n_triplets: int
    pair_abs_sum: np.ndarray | None
    top_index: np.ndarray
    top_value: np.ndarray


def stream_triplets(factors: SpectralFactors, *, edges: np.ndarray | None = None,
                    n_strongest: int = 0, pair_sums: bool = True,
                    memory_budget_bytes: int = 2**28, i_range: tuple[int, int] | None = None
                    ) -> TripletStream:
    """Stream over all ``i<j<k`` triplets: histogram, Frobenius norm, strongest, ``sum_k |J|``.

    For each chunk of first indices ``i`` it forms the slab ``J[i, :, :]`` as one matrix product
    ``((A_i * beta) * A) @ A.T`` (memory ``chunk * N * R``), so the work is ``N^3 R`` flops and
    the memory stays within ``memory_budget_bytes`` (plus the factors themselves).

    Parameters
    ----------
    edges
        Fixed histogram edges (increasing); None skips the histogram.
    n_strongest
        How many of the largest ``|J_ijk|`` to keep.
    pair_sums
        Also accumulate ``sum_k |J_ijk|`` for every pair (the R statistic needs it).
    i_range
        Only first indices ``i`` in ``[start, stop)`` (for timing a fraction); the summaries then
        cover those slabs only.
    """
    if factors.order != 3:
        raise ValueError(f"stream_triplets needs order-3 factors; got order {factors.order}")
    A, beta = factors.A, factors.beta
    n, r = A.shape
    dev, dt = A.device, A.dtype
    if edges is not None:
        edges = np.asarray(edges, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
            raise ValueError("edges must be a strictly increasing 1-D array of >= 2 values")
        t_edges = torch.as_tensor(edges, device=dev, dtype=dt)
        counts = torch.zeros(edges.size + 1, dtype=torch.long, device=dev)
    start, stop = (0, n) if i_range is None else (int(i_range[0]), int(i_range[1]))
    if not 0 <= start <= stop <= n:
        raise ValueError(f"i_range must satisfy 0 <= start <= stop <= N={n}; got {i_range}")
    step = _chunk_rows(2 * n * r * A.element_size() + 4 * n * n * A.element_size(),
                       memory_budget_bytes, max(stop - start, 1))
    ar = torch.arange(n, device=dev)
    pair = torch.zeros(n, n, dtype=dt, device=dev) if pair_sums else None
    sum_sq = torch.zeros((), dtype=dt, device=dev)
    top_v = torch.empty(0, dtype=dt, device=dev)
    top_i = torch.empty(0, 3, dtype=torch.long, device=dev)
    for i0 in range(start, stop, step):
        i1 = min(stop, i0 + step)
        ci = i1 - i0
        # without pair sums only j, k >= i0 matter (i < j < k): a slab of (N - i0)^2
        off = 0 if pair is not None else i0
        Ak = A[off:]
        nk = n - off
        B = (A[i0:i1] * beta).unsqueeze(1) * Ak.unsqueeze(0)  # (c, nk, R)
        T = (B.reshape(ci * nk, r) @ Ak.T).reshape(ci, nk, nk)
        del B
        gi = ar[i0:i1].view(ci, 1, 1)
        jj = ar[off:].view(1, nk, 1)
        kk = ar[off:].view(1, 1, nk)
        valid = (jj != gi) & (kk != gi) & (jj != kk)
        T = torch.where(valid, T, torch.zeros((), dtype=dt, device=dev))
        if pair is not None:
            pair[i0:i1] = T.abs().sum(-1)
        ordered = (jj > gi) & (kk > jj)
        vals = T[ordered.expand(ci, nk, nk)]
        sum_sq += (vals * vals).sum()
        if edges is not None and vals.numel():
            counts += torch.bincount(torch.bucketize(vals, t_edges, right=True),
                                     minlength=edges.size + 1)
        if n_strongest > 0 and vals.numel():
            score = torch.where(ordered, T.abs(), torch.full((), -1.0, dtype=dt, device=dev))
            k = min(n_strongest, int(ordered.sum()))
            tv, ti = score.reshape(-1).topk(k)
            a_i = ti // (nk * nk) + i0
            a_j = (ti // nk) % nk + off
            a_k = ti % nk + off
            cand_i = torch.cat([top_i, torch.stack([a_i, a_j, a_k], 1)])
            cand_v = torch.cat([top_v, T.reshape(-1)[ti]])
            keep = cand_v.abs().topk(min(n_strongest, cand_v.numel())).indices
            top_i, top_v = cand_i[keep], cand_v[keep]
    if edges is not None:
        c_np = counts.cpu().numpy()
        hist, under, over = c_np[1:-1], int(c_np[0]), int(c_np[-1])
    else:
        hist, under, over = np.zeros(0, dtype=np.int64), 0, 0
    order_ = top_v.abs().argsort(descending=True)
    return TripletStream(
        edges=edges if edges is not None else np.zeros(0),
        counts=hist.astype(np.int64), underflow=under, overflow=over,
        sum_sq=float(sum_sq.cpu()), n_triplets=n * (n - 1) * (n - 2) // 6,
        pair_abs_sum=pair.cpu().numpy() if pair is not None else None,
        top_index=top_i[order_].cpu().numpy().astype(np.int64),
        top_value=top_v[order_].cpu().numpy().astype(np.float64),
    )


# --------------------------------------------------------------------------------------------
# norms and the stage
# --------------------------------------------------------------------------------------------


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two equal-size arrays (NaN when either is constant)."""
    return compare_statistic(x, y)["r"]


def coupling_norms(rbm: RBM, *, n_nodes: int = 40, log_tol: float = 34.0,
                   with_triplets: bool = True, memory_budget_bytes: int = 2**28
                   ) -> dict[str, float]:
    """Frobenius norms of fields, pairwise and 3-body couplings (``i<j``, ``i<j<k``).

    Fields by Gauss-Hermite, pairs and triplets by the spectral form (one matrix product and
    the triplet stream). Keys ``H``, ``J2``, ``J3`` (NaN when ``with_triplets`` is False).
    """
    H = fields(rbm, n_nodes=n_nodes, memory_budget_bytes=memory_budget_bytes)
    J = pair_couplings_spectral(rbm, log_tol=log_tol)
    out = {"H": float(torch.linalg.vector_norm(H).cpu()),
           "J2": float(torch.sqrt(0.5 * (J * J).sum()).cpu()), "J3": float("nan")}
    if with_triplets and rbm.n_visible >= 3:
        st = stream_triplets(spectral_factors(rbm, order=3, log_tol=log_tol), pair_sums=False,
                             memory_budget_bytes=memory_budget_bytes)
        out["J3"] = math.sqrt(st.sum_sq)
    return out


def pick_checkpoints(checkpoints: np.ndarray, n_max: int, *, must: list[int] | None = None
                     ) -> np.ndarray:
    """Up to ``n_max`` checkpoints spread evenly in log(1 + update), always incl. first/last.

    ``must`` lists checkpoints added regardless (e.g. the selected one). ``n_max <= 0`` or
    ``n_max >= len(checkpoints)`` keeps them all.
    """
    ck = np.asarray(checkpoints, dtype=np.int64)
    if ck.size == 0:
        return ck
    if n_max <= 0 or n_max >= ck.size:
        chosen = ck
    else:
        target = np.linspace(np.log1p(ck.min()), np.log1p(ck.max()), n_max)
        pos = np.log1p(ck)
        chosen = ck[np.unique([int(np.abs(pos - t).argmin()) for t in target])]
    extra = [c for c in (must or []) if c in set(ck.tolist())]
    return np.unique(np.concatenate([chosen, np.asarray(extra, dtype=np.int64)]))


# --------------------------------------------------------------------------------------------
# the whole stage: selected model (+ trajectory, + truth) -> couplings dataset
# --------------------------------------------------------------------------------------------


def _pairs(rbm: RBM, *, method: str, n_nodes: int, log_tol: float,
           memory_budget_bytes: int) -> torch.Tensor:
    if method == "quadrature":
        return pair_couplings(rbm, n_nodes=n_nodes, memory_budget_bytes=memory_budget_bytes)
    if method == "spectral":
        return pair_couplings_spectral(rbm, log_tol=log_tol)
    raise ValueError(f"pair_method must be 'quadrature' or 'spectral'; got {method!r}")


def _largest_area(areas: np.ndarray, unassigned: Sequence[str]) -> dict[str, int | str]:
    """``largest_area`` (label) and ``largest_area_neurons`` among the assigned neurons ("", 0
    when none): what the findings name when no area reaches ``min_area_neurons``."""
    names, counts = np.unique(areas[~np.isin(areas, list(unassigned))], return_counts=True)
    if not counts.size:
        return {"largest_area": "", "largest_area_neurons": 0}
    return {"largest_area": str(names[np.argmax(counts)]),
            "largest_area_neurons": int(counts.max())}


def compute_couplings(selected: xr.Dataset, *, areas: np.ndarray | None = None,
                      model: xr.Dataset | None = None, truth: xr.Dataset | None = None,
                      quadrature_nodes: int = 40, pair_method: str = "quadrature",
                      spectral_log_tol: float = 34.0, min_area_neurons: int = 30,
                      unassigned_areas: Sequence[str] = ("root", "unknown"),
                      n_triplets_stored: int = 20000, n_strongest_triplets: int = 1000,
                      n_hist_bins: int = 101, hist_margin: float = 1.5,
                      norm_checkpoints: int = 10, memory_budget_mb: float = 256.0,
                      seed: int = 0, device: torch.device | str = "cpu") -> xr.Dataset:
    """Effective couplings of the selected model, area structure and norms along training.

    Parameters
    ----------
    selected
        ``selected.nc`` contract (``W``, ``a``, ``b`` on ``neuron``/``hidden``; coords
        ``unit_id``, ``area`` on ``neuron``; attr ``checkpoint``).
    areas
        Area label per visible unit (default: ``selected.area``).
    model
        ``model.nc`` of the selected ``n_hidden`` (norms along its checkpoints), or None.
    truth
        ``truth.nc`` (planted ``W``, ``a``, ``b``), or None; adds ``H_truth``, ``J_truth`` and the
        attrs ``truth_pearson_H``, ``truth_pearson_J``.
    quadrature_nodes
        Gauss-Hermite nodes (fields; pairs when ``pair_method='quadrature'``).
    pair_method
        ``quadrature`` (Gauss-Hermite) or ``spectral`` (exact CP form) for ``J_ij``.
    spectral_log_tol
        Spectral accuracy ``exp(-log_tol)`` (3-body terms, norms along training).
    min_area_neurons
        Smallest area (neurons) that enters the area matrix and per-area statistics.
    unassigned_areas
        Area labels that name no brain area (e.g. ``root``): their neurons keep their
        couplings but form no region (attrs ``unassigned_areas``, ``n_unassigned_neurons``).
    n_triplets_stored, n_strongest_triplets
        Sizes of the seeded triplet subset and of the strongest-|J3| list.
    n_hist_bins, hist_margin
        3-body histogram: ``n_hist_bins`` bins on ``[-X, X]``, ``X = hist_margin * max|J3|``
        over the seeded subset (values outside are counted in under/overflow).
    norm_checkpoints
        At most this many checkpoints (log-spread, plus the selected one) get the streamed
        3-body norm; fields and pair norms are computed at every checkpoint. ``0`` = all.
        Norms along training use the spectral form at ``min(spectral_log_tol, 20)``.
    memory_budget_mb
        Bound on the chunked working tensors (pairs: ``(chunk, N, M, n_nodes)``; 3-body stream:
        ``(chunk, N, R)``).
    seed
        Seed of the triplet subset.
    device
        torch device for the computation.

    Returns
    -------
    xr.Dataset
        See docs/data-model.md (couplings.nc).
    """
    for name, val in (("n_triplets_stored", n_triplets_stored),
                      ("n_strongest_triplets", n_strongest_triplets)):
        if val < 0:
            raise ValueError(f"{name} must be >= 0; got {val}")
    if n_hist_bins < 1 or not hist_margin >= 1:
        raise ValueError(f"need n_hist_bins >= 1 and hist_margin >= 1; got {n_hist_bins}, "
                         f"{hist_margin}")
    if not memory_budget_mb > 0:
        raise ValueError(f"memory_budget_mb must be > 0; got {memory_budget_mb!r}")
    memory_budget_bytes = int(memory_budget_mb * 2**20)
    n_nodes, log_tol = quadrature_nodes, spectral_log_tol
    dev = torch.device(device)
    rbm = rbm_from_dataset(selected, device=dev, dtype=torch.float64)
    n = rbm.n_visible
    if n < 3:
        raise ValueError(f"couplings need at least 3 visible units; got N={n}")
    areas = np.asarray(selected["area"].values if areas is None else areas).astype(str)
    if areas.shape != (n,):
        raise ValueError(f"areas has shape {areas.shape}; expected ({n},), one per visible unit")
    H = fields(rbm, n_nodes=n_nodes, memory_budget_bytes=memory_budget_bytes)
    J = _pairs(rbm, method=pair_method, n_nodes=n_nodes, log_tol=log_tol,
               memory_budget_bytes=memory_budget_bytes)
    f3 = spectral_factors(rbm, order=3, log_tol=log_tol)
    sub = sample_triplets(n, n_triplets_stored, seed=seed) if n_triplets_stored else \
        np.zeros((0, 3), dtype=np.int64)
    sub_J = triplet_couplings(f3, sub).cpu().numpy() if len(sub) else np.zeros(0)
    lim = hist_margin * float(np.abs(sub_J).max()) if sub_J.size else 0.0
    if not lim > 0:  # no subset, or all zero: bound from the slab of the first site
        probe = triplet_couplings(f3, sample_triplets(n, 1000, seed=seed)).abs().max()
        lim = hist_margin * float(probe.cpu()) or 1e-12
    edges = np.linspace(-lim, lim, n_hist_bins + 1)
    st = stream_triplets(f3, edges=edges, n_strongest=n_strongest_triplets, pair_sums=True,
                         memory_budget_bytes=memory_budget_bytes)
    H_np, J_np = H.cpu().numpy(), J.cpu().numpy()
    R = r_statistic(J_np, st.pair_abs_sum)
    iu = np.triu_indices(n, 1)

    neuron = {"unit_id": ("neuron", np.asarray(selected["unit_id"].values, dtype=np.int64)),
              "area": ("neuron", areas.astype(object))}
    neuron2 = {"unit_id2": ("neuron2", neuron["unit_id"][1]),
               "area2": ("neuron2", areas.astype(object))}
    ds = xr.Dataset(
        {
            "H": ("neuron", H_np, {"units": "1", "long_name": "effective field H_i (Ising)"}),
            "J": (("neuron", "neuron2"), J_np,
                  {"units": "1", "long_name": "pairwise coupling J_ij (Ising), zero diagonal"}),
            "R": (("neuron", "neuron2"), R,
                  {"units": "1", "long_name": "sum_k|J_ijk| / (|J_ij| + sum_k|J_ijk|)"}),
            "J3_abs_sum": (("neuron", "neuron2"), st.pair_abs_sum,
                           {"units": "1", "long_name": "sum_k |J_ijk| over k != i, j"}),
            "triplet_i": ("triplet", sub[:, 0]),
            "triplet_j": ("triplet", sub[:, 1]),
            "triplet_k": ("triplet", sub[:, 2]),
            "triplet_J3": ("triplet", sub_J, {"units": "1", "long_name": "J_ijk (seeded subset)"}),
            "strong_i": ("strong", st.top_index[:, 0]),
            "strong_j": ("strong", st.top_index[:, 1]),
            "strong_k": ("strong", st.top_index[:, 2]),
            "strong_J3": ("strong", st.top_value, {"units": "1",
                                                   "long_name": "strongest J_ijk by |J|"}),
            "J3_hist_edges": ("j3_edge", edges, {"units": "1"}),
            "J3_hist_counts": ("j3_bin", st.counts, {"long_name": "all i<j<k triplets"}),
        },
        coords={**neuron, **neuron2},
    )
    unassigned = sorted({str(x) for x in unassigned_areas})
    ds = ds.merge(area_matrix(J_np, areas, min_area_neurons=min_area_neurons,
                              exclude=unassigned))
    ds = ds.merge(area_statistics(J_np, R, areas, min_area_neurons=min_area_neurons,
                                  exclude=unassigned))
    norms = {"H": float(np.linalg.norm(H_np)), "J2": float(np.linalg.norm(J_np[iu])),
             "J3": math.sqrt(st.sum_sq)}
    n_terms = {"H": n, "J2": n * (n - 1) // 2, "J3": st.n_triplets}
    attrs: dict[str, float | int | str] = {
        "n_hidden": int(rbm.n_hidden), "checkpoint": int(selected.attrs.get("checkpoint", -1)),
        "J3_underflow": st.underflow, "J3_overflow": st.overflow,
        "n_triplets_total": int(st.n_triplets), "quadrature_nodes": int(n_nodes),
        "pair_method": pair_method, "spectral_log_tol": float(log_tol),
        "spectral_rank": f3.rank, "min_area_neurons": int(min_area_neurons),
        "unassigned_areas": json.dumps(unassigned),
        "n_unassigned_neurons": int(np.isin(areas, unassigned).sum()),
        "n_area_regions": int(ds.sizes.get("region", 0)),
        **_largest_area(areas, unassigned),
        "triplet_subset": "all" if len(sub) == st.n_triplets else f"seeded sample of {len(sub)}",
    }
    for key in ("H", "J2", "J3"):
        attrs[f"norm_{key}"] = norms[key]
        attrs[f"norm_per_coupling_{key}"] = norms[key] / n_terms[key]
    if ds.sizes.get("region", 0):
        diag = np.diag(ds["area_J_mean"].values)
        offd = ds["area_J_mean"].values[~np.eye(len(diag), dtype=bool)]
        attrs["area_within_mean_J"] = float(np.nanmean(diag))
        attrs["area_cross_mean_J"] = float(np.nanmean(offd)) if offd.size else float("nan")

    if model is not None:
        ds = ds.merge(_trajectory_norms(model, n_nodes=n_nodes, log_tol=log_tol,
                                        norm_checkpoints=norm_checkpoints,
                                        selected_checkpoint=attrs["checkpoint"],
                                        memory_budget_bytes=memory_budget_bytes, device=dev))
    if truth is not None:
        t_rbm = rbm_from_dataset(truth, device=dev, dtype=torch.float64)
        if t_rbm.n_visible != n:
            raise ValueError(f"truth has {t_rbm.n_visible} visible units, model has {n}")
        tH = fields(t_rbm, n_nodes=n_nodes, memory_budget_bytes=memory_budget_bytes).cpu().numpy()
        tJ = _pairs(t_rbm, method=pair_method, n_nodes=n_nodes, log_tol=log_tol,
                    memory_budget_bytes=memory_budget_bytes).cpu().numpy()
        ds["H_truth"] = ("neuron", tH, {"units": "1", "long_name": "fields of the planted RBM"})
        ds["J_truth"] = (("neuron", "neuron2"), tJ,
                         {"units": "1", "long_name": "pair couplings of the planted RBM"})
        attrs["truth_pearson_H"] = pearson(H_np, tH)
        attrs["truth_pearson_J"] = pearson(J_np[iu], tJ[iu])
    ds.attrs.update(attrs)
    return ds


def _trajectory_norms(model: xr.Dataset, *, n_nodes: int, log_tol: float, norm_checkpoints: int,
                      selected_checkpoint: int, memory_budget_bytes: int,
                      device: torch.device) -> xr.Dataset:
    ck = np.asarray(model["checkpoint"].values, dtype=np.int64)
    with3 = set(pick_checkpoints(ck, norm_checkpoints, must=[selected_checkpoint]).tolist())
    n = int(model.sizes["neuron"])
    n_terms = np.array([n, n * (n - 1) // 2, n * (n - 1) * (n - 2) // 6], dtype=np.float64)
    out = np.full((ck.size, 3), np.nan)
    for p, c in enumerate(ck):
        r = rbm_from_dataset(model, checkpoint=int(c), device=device, dtype=torch.float64)
        # norms only: exp(-20) ~ 2e-9 relative accuracy is ample and ~3x cheaper than 34
        nm = coupling_norms(r, n_nodes=n_nodes, log_tol=min(log_tol, 20.0),
                            with_triplets=int(c) in with3,
                            memory_budget_bytes=memory_budget_bytes)
        out[p] = [nm["H"], nm["J2"], nm["J3"]]
    order = np.array([1, 2, 3], dtype=np.int64)
    return xr.Dataset(
        {
            "norm": (("checkpoint", "order"), out,
                     {"units": "1", "long_name": "Frobenius norm of the order-n couplings "
                      "(i1<...<in); NaN where not computed"}),
            "norm_per_coupling": (("checkpoint", "order"), out / n_terms,
                                  {"units": "1", "long_name": "norm / number of terms"}),
        },
        coords={"checkpoint": ck, "order": order},
    )


def reproducibility(J: np.ndarray, J3: np.ndarray | None = None,
                    area_J: np.ndarray | None = None) -> tuple[xr.Dataset, dict[str, float]]:
    """Reproducibility of the couplings across R replicas (docs/methods.md §6, "Replicas").

    For every replica pair ``(a, b)``, ``a < b``: the Pearson r and the least-squares slope
    of ``J2`` of replica b on that of replica a over the ``i < j`` pairs
    (:func:`spikerbm.statistics.compare_statistic`; slope 1 and r 1 for identical couplings),
    and the same for the 3-body couplings ``J3`` of the given triplets. Per neuron pair: the
    across-replica spread ``std(ddof=1)``. Sign consistency: among the pairs whose
    ``|mean J_ij|`` exceeds :data:`SIGN_NOISE_FACTOR` times the median spread over all pairs
    (couplings clearly above the replica noise level; the pair's own spread would make the
    rule a tautology at R = 2), the fraction whose sign is the same in every replica. The area
    matrix's across-replica spread is ``std(ddof=1)`` per area pair.

    Parameters
    ----------
    J
        (R, N, N) pair couplings of each replica (symmetric; the diagonal is ignored), R >= 2.
    J3
        (R, K) 3-body couplings of the same K triplets in each replica, or None.
    area_J
        (R, A, A) area matrices (mean J per area pair) of each replica, or None.

    Returns
    -------
    (xr.Dataset, dict)
        Variables on dim ``replica_pair`` (coords ``replica_a``, ``replica_b``: positions in
        the replica axis) ``pair_pearson_J2``, ``pair_slope_J2``, ``pair_pearson_J3``,
        ``pair_slope_J3``; ``J_replica_std(neuron, neuron2)``; ``area_J_mean_replica_std
        (region, region2)`` when ``area_J`` is given; and the summary (attrs): ``J2_pearson_mean``,
        ``J2_pearson_min``, ``J2_slope_mean``, ``J2_slope_min`` (and ``J3_*``),
        ``J2_spread_median``, ``J2_sign_consistent_fraction``, ``J2_sign_n_pairs``,
        ``area_J_replica_std_max``.

    Raises
    ------
    ValueError
        With fewer than two replicas or mismatched shapes.
    """
    J = np.asarray(J, dtype=np.float64)
    if J.ndim != 3 or J.shape[0] < 2 or J.shape[1] != J.shape[2]:
        raise ValueError(f"J must have shape (R >= 2, N, N); got {J.shape}")
    n_rep, n = J.shape[0], J.shape[1]
    iu = np.triu_indices(n, 1)
    pairs = [(a, b) for a in range(n_rep) for b in range(a + 1, n_rep)]
    flat = J[:, iu[0], iu[1]]
    out: dict[str, tuple] = {}
    summary: dict[str, float] = {}
    sets = {"J2": flat}
    if J3 is not None:
        J3 = np.asarray(J3, dtype=np.float64)
        if J3.ndim != 2 or J3.shape[0] != n_rep:
            raise ValueError(f"J3 must have shape ({n_rep}, K); got {J3.shape}")
        sets["J3"] = J3
    for name, x in sets.items():
        cmp = [compare_statistic(x[a], x[b]) for a, b in pairs]
        for stat in ("r", "slope"):
            vals = np.array([c[stat] for c in cmp])
            key = "pearson" if stat == "r" else "slope"
            what = "Pearson r" if stat == "r" else "least-squares slope"
            out[f"pair_{key}_{name}"] = ("replica_pair", vals, {
                "units": "1", "long_name": f"{what} of {name} of replica b on replica a"})
            finite = vals[np.isfinite(vals)]
            summary[f"{name}_{key}_mean"] = float(finite.mean()) if finite.size else math.nan
            summary[f"{name}_{key}_min"] = float(finite.min()) if finite.size else math.nan
    spread = J.std(axis=0, ddof=1)
    np.fill_diagonal(spread, 0.0)
    out["J_replica_std"] = (("neuron", "neuron2"), spread, {
        "units": "1", "long_name": "across-replica std (ddof=1) of J_ij"})
    noise = float(np.median(spread[iu]))
    strong = np.abs(flat.mean(0)) > SIGN_NOISE_FACTOR * noise
    same = (np.all(flat > 0, axis=0) | np.all(flat < 0, axis=0))[strong]
    summary["J2_spread_median"] = noise
    summary["J2_sign_n_pairs"] = int(strong.sum())
    summary["J2_sign_consistent_fraction"] = float(same.mean()) if same.size else math.nan
    summary["J2_sign_rule"] = (f"pairs with |mean J| > {SIGN_NOISE_FACTOR:g} x median "
                               "across-replica std; sign equal in every replica")
    if area_J is not None:
        area_J = np.asarray(area_J, dtype=np.float64)
        a_std = area_J.std(axis=0, ddof=1)
        out["area_J_mean_replica_std"] = (("region", "region2"), a_std, {
            "units": "1", "long_name": "across-replica std (ddof=1) of area_J_mean"})
        summary["area_J_replica_std_max"] = (float(np.nanmax(a_std)) if np.isfinite(a_std).any()
                                             else math.nan)
    ds = xr.Dataset(out, coords={
        "replica_a": ("replica_pair", np.array([a for a, _ in pairs], dtype=np.int64)),
        "replica_b": ("replica_pair", np.array([b for _, b in pairs], dtype=np.int64))})
    return ds, summary


def replica_couplings(selected: xr.Dataset, couplings: xr.Dataset, *, pair_method: str,
                      quadrature_nodes: int = 40, spectral_log_tol: float = 34.0,
                      min_area_neurons: int = 30, memory_budget_mb: float = 256.0,
                      device: torch.device | str = "cpu") -> xr.Dataset:
    """Add every replica's couplings and their reproducibility to the primary replica's
    ``couplings.nc`` dataset (R > 1; docs/data-model.md, "Replicas").

    ``J2`` of every live replica of ``selected.nc`` (the pair method of
    :func:`compute_couplings`), ``J3`` of the primary replica's strongest triplets
    (``strong_i/j/k``) in every replica (spectral form), each replica's area matrix on the
    primary's regions, then :func:`reproducibility`.

    Parameters
    ----------
    selected
        ``selected.nc`` with a ``replica`` dim (attr ``primary_replica``).
    couplings
        :func:`compute_couplings` of the primary replica.
    pair_method, quadrature_nodes, spectral_log_tol, min_area_neurons, memory_budget_mb, device
        As in :func:`compute_couplings`.

    Returns
    -------
    xr.Dataset
        ``couplings`` plus ``replica_J(replica, neuron, neuron2)``,
        ``replica_strong_J3(replica, strong)``, ``replica_area_J_mean(replica, region,
        region2)`` and :func:`reproducibility`'s variables; attrs ``replicas``,
        ``primary_replica`` and the reproducibility summary. With one live replica, only
        ``replicas`` and ``primary_replica`` are added.
    """
    dev = torch.device(device)
    budget = int(memory_budget_mb * 2**20)
    reps = selected["replica"].values.astype(np.int64)
    out = couplings.copy()
    out.attrs.update(replicas=len(reps), primary_replica=int(selected.attrs["primary_replica"]))
    if len(reps) < 2:
        return out
    strong = np.stack([couplings[k].values for k in ("strong_i", "strong_j", "strong_k")], 1)
    areas = couplings["area"].values.astype(str)
    regions = couplings["region"].values.astype(str) if "region" in couplings.dims else []
    Js, J3s, areas_J = [], [], []
    for r in reps:
        rbm = rbm_from_dataset(selected.sel(replica=r), device=dev, dtype=torch.float64)
        J = _pairs(rbm, method=pair_method, n_nodes=quadrature_nodes, log_tol=spectral_log_tol,
                   memory_budget_bytes=budget).cpu().numpy()
        Js.append(J)
        J3s.append(triplet_couplings(spectral_factors(rbm, order=3, log_tol=spectral_log_tol),
                                     strong).cpu().numpy() if len(strong) else np.zeros(0))
        if len(regions):
            am = area_matrix(J, areas, min_area_neurons=min_area_neurons,
                             exclude=json.loads(couplings.attrs["unassigned_areas"]))
            areas_J.append(am["area_J_mean"].sel(region=regions, region2=regions).values)
    rep_ds, summary = reproducibility(np.stack(Js), np.stack(J3s) if len(strong) else None,
                                      np.stack(areas_J) if len(regions) else None)
    out["replica_J"] = (("replica", "neuron", "neuron2"), np.stack(Js), {
        "units": "1", "long_name": "pairwise coupling J_ij of each replica"})
    out["replica_strong_J3"] = (("replica", "strong"), np.stack(J3s), {
        "units": "1", "long_name": "J_ijk of the primary replica's strongest triplets, in "
        "each replica"})
    if len(regions):
        out["replica_area_J_mean"] = (("replica", "region", "region2"), np.stack(areas_J), {
            "units": "1", "long_name": "area matrix (mean J) of each replica"})
    out = out.assign_coords(replica=reps).merge(rep_ds)
    out.attrs.update(summary)
    return out
