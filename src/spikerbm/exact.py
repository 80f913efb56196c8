"""Exact quantities of small RBMs by enumerating binary states (the references of every test).

The one enumeration of binary states lives here (:func:`binary_states`, :func:`state_chunks`):
row ``x`` of the enumeration of ``{0,1}^n`` has ``bit k = (x >> k) & 1`` (least significant bit
first), so the integer code of a state ``s`` is ``sum_k s_k 2^k``. Everything that enumerates
states uses it:

* ``log Z`` of an RBM (:func:`spikerbm.partition.exact_log_z`, the smaller layer) and the exact
  marginals of the synthetic planted model (:mod:`spikerbm.synthetic`, the hidden layer);
* the Walsh-Hadamard (Ising) expansion of the marginal energy over all ``2^N`` visible states
  (:func:`walsh_expansion`, :func:`exact_couplings`): the reference of the effective couplings
  (docs/methods.md §6);
* the exact block-Gibbs sweep transition matrix and the relaxation it implies
  (:func:`sweep_transition`, :func:`relaxation`): the reference of the dynamics stage
  (docs/methods.md §7).

All sums are float64.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from spikerbm.rbm import RBM

__all__ = [
    "EXACT_MAX_VISIBLE",
    "binary_states",
    "exact_couplings",
    "parity",
    "relaxation",
    "state_chunks",
    "sweep_transition",
    "walsh_energy",
    "walsh_expansion",
]

#: Largest visible layer for which the exact sweep transition matrix (2^N x 2^N) is built.
EXACT_MAX_VISIBLE = 12


def binary_states(n_bits: int, start: int = 0, stop: int | None = None, *,
                  dtype: torch.dtype = torch.float64,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Rows ``start..stop-1`` of the enumeration of ``{0,1}^n_bits``, shape (stop-start, n_bits).

    Row ``x`` has ``bit k = (x >> k) & 1`` (least significant bit first); ``stop`` defaults to
    ``2**n_bits``.
    """
    if n_bits < 0 or n_bits > 62:
        raise ValueError(f"n_bits must be in [0, 62]; got {n_bits}")
    stop = (1 << n_bits) if stop is None else stop
    idx = torch.arange(start, stop, dtype=torch.int64, device=device)
    shifts = torch.arange(n_bits, dtype=torch.int64, device=device)
    return ((idx[:, None] >> shifts) & 1).to(dtype)


def state_chunks(n_bits: int, chunk_size: int, *, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """All ``2**n_bits`` states in order, as consecutive chunks of at most ``chunk_size`` rows."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    total = 1 << n_bits
    for start in range(0, total, chunk_size):
        yield binary_states(n_bits, start, min(start + chunk_size, total), dtype=dtype,
                            device=device)


def parity(n_bits: int) -> torch.Tensor:
    """``(-1)^popcount(x)`` for every code ``x < 2**n_bits``, float64, shape (2**n_bits,)."""
    return 1.0 - 2.0 * (binary_states(n_bits).sum(1) % 2)


# --------------------------------------------------------------------------------------------
# Walsh-Hadamard (Ising) expansion of the marginal energy: the couplings' reference
# --------------------------------------------------------------------------------------------
def _fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised Walsh-Hadamard transform along the last axis (length 2^N)."""
    n = x.shape[-1]
    h = 1
    y = x.clone()
    while h < n:
        y = y.view(-1, n // (2 * h), 2, h)
        y = torch.stack([y[:, :, 0] + y[:, :, 1], y[:, :, 0] - y[:, :, 1]], dim=2)
        h *= 2
    return y.reshape(x.shape)


def walsh_expansion(rbm: RBM, *, max_visible: int = 22) -> np.ndarray:
    """Exact Ising expansion of the marginal energy over all ``2^N`` visible states (float64).

    State ``x`` (an integer) has ``v_i = bit i of x``; ``s = 2v - 1``. The returned ``K`` obeys

        E(v) = -sum_S K[S] prod_{i in S} s_i,   S encoded as a bit mask,

    so ``K[0]`` is minus the constant, ``K[1 << j] = H_j``, ``K[(1<<j)|(1<<k)] = J_jk``, etc.

    Raises
    ------
    ValueError
        When ``N > max_visible`` (2^N states would not fit).
    """
    n = rbm.n_visible
    if n > max_visible:
        raise ValueError(f"walsh_expansion enumerates 2^N states; N={n} > max_visible="
                         f"{max_visible}: use the Gaussian formulas for larger N")
    r = rbm.to(device="cpu", dtype=torch.float64)
    v = binary_states(n)
    e = -(v @ r.a) - F.softplus(r.b + v @ r.W).sum(-1)
    # sum_x E(x) (-1)^{popcount(x & S)} = sum_x E prod_{i in S} (-s_i)
    hat = _fwht(e) / 2**n
    return (-(hat * parity(n))).numpy()


def walsh_energy(coeffs: np.ndarray) -> np.ndarray:
    """Inverse of :func:`walsh_expansion`: the marginal energy ``E(v)`` of every state ``x``."""
    k = torch.as_tensor(np.asarray(coeffs, dtype=np.float64))
    size = k.shape[0]
    if size & (size - 1):
        raise ValueError(f"coeffs length must be a power of two; got {size}")
    return (-_fwht(k * parity(size.bit_length() - 1))).numpy()


def exact_couplings(rbm: RBM, *, max_visible: int = 22) -> dict[str, np.ndarray | float]:
    """Exact fields, pairwise and 3-body couplings from :func:`walsh_expansion`.

    Returns
    -------
    dict
        ``H`` (N,), ``J`` (N, N) symmetric with zero diagonal, ``J3`` (N, N, N) symmetric with
        zero entries where indices repeat, ``const`` (the Ising energy's constant).
    """
    k = walsh_expansion(rbm, max_visible=max_visible)
    n = rbm.n_visible
    bit = 1 << np.arange(n)
    H = k[bit]
    J = k[bit[:, None] | bit[None, :]]
    np.fill_diagonal(J, 0.0)
    J3 = k[bit[:, None, None] | bit[None, :, None] | bit[None, None, :]].copy()
    ii, jj, kk = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
    J3[(ii == jj) | (jj == kk) | (ii == kk)] = 0.0
    return {"H": H, "J": J, "J3": J3, "const": float(-k[0])}


# --------------------------------------------------------------------------------------------
# Block-Gibbs dynamics: the dynamics stage's reference
# --------------------------------------------------------------------------------------------
def sweep_transition(W: np.ndarray, a: np.ndarray, b: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact block-Gibbs sweep transition matrix over all visible states.

    Parameters
    ----------
    W, a, b
        RBM parameters (numpy, used in float64), ``n_visible <= EXACT_MAX_VISIBLE``.

    Returns
    -------
    states, T, pi
        ``states`` (2^N, N) 0/1 in the order of :func:`binary_states`;
        ``T[v, v'] = sum_h p(h|v) p(v'|h)`` (rows sum to 1); ``pi`` the stationary
        distribution ``exp(-E(v)) / Z``.
    """
    W, a, b = (np.asarray(x, dtype=np.float64) for x in (W, a, b))
    n, m = W.shape
    if n > EXACT_MAX_VISIBLE or m > 20:
        raise ValueError(f"exact enumeration needs n_visible <= {EXACT_MAX_VISIBLE} and "
                         f"n_hidden <= 20; got {n}, {m}")
    vs, hs = binary_states(n).numpy(), binary_states(m).numpy()

    def cond(field: np.ndarray, states: np.ndarray) -> np.ndarray:
        # p(states | field) = prod_j sigma(field_j)^s_j (1 - sigma(field_j))^(1 - s_j)
        logp1 = -np.logaddexp(0.0, -field)
        logp0 = -np.logaddexp(0.0, field)
        return np.exp(logp1 @ states.T + logp0 @ (1 - states).T)

    p_h_given_v = cond(b + vs @ W, hs)  # (2^N, 2^M)
    p_v_given_h = cond(a + hs @ W.T, vs)  # (2^M, 2^N)
    t = p_h_given_v @ p_v_given_h
    free = -(vs @ a) - np.logaddexp(0.0, b + vs @ W).sum(1)
    logp = -free - np.logaddexp.reduce(-free)
    return vs, t, np.exp(logp)


def relaxation(W: np.ndarray, a: np.ndarray, b: np.ndarray, *, max_lag: int,
               p0: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Exact ``C(tau)`` of ``K = sum_i v_i`` at equilibrium, and relaxation from ``p0``.

    Parameters
    ----------
    W, a, b
        Tiny RBM (see :func:`sweep_transition`).
    max_lag
        Largest lag in sweeps.
    p0
        Initial distribution over the 2^N visible states (order of :func:`binary_states`);
        default the stationary one.

    Returns
    -------
    dict
        ``C`` (max_lag + 1,) equilibrium autocorrelation of ``K``; ``K`` and ``q``: mean
        population activity and overlap with the start state after ``tau`` sweeps from ``p0``;
        ``states``, ``T``, ``pi``.
    """
    states, t, pi = sweep_transition(W, a, b)
    k = states.sum(1)
    s = 2 * states - 1
    n = states.shape[1]
    p0 = pi if p0 is None else np.asarray(p0, dtype=np.float64)
    mean = pi @ k
    var = pi @ k**2 - mean**2
    c, kk, q = (np.empty(max_lag + 1) for _ in range(3))
    tk, ts = k.copy(), s.copy()  # T^tau K, T^tau S
    for tau in range(max_lag + 1):
        if tau:
            tk, ts = t @ tk, t @ ts
        c[tau] = ((pi * k) @ tk - mean**2) / var
        kk[tau] = p0 @ tk
        q[tau] = p0 @ (s * ts).sum(1) / n
    return {"C": c, "K": kk, "q": q, "states": states, "T": t, "pi": pi}
