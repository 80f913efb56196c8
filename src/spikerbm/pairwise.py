"""Pairwise maximum-entropy (Ising) baseline: fit, Gibbs sampling, log Z, likelihood (issue 20).

The model on the neurons' binary states ``v in {0,1}^N`` is

    P(v) = exp(-E(v)) / Z,    E(v) = -sum_i h_i v_i - sum_{i<j} J_ij v_i v_j,

with fields ``h`` (N,) and symmetric couplings ``J`` (N, N, zero diagonal) in the {0,1}
convention (Schneidman et al., *Nature* 440, 1007, 2006). It is the maximum-entropy model that
matches the rates ``<v_i>`` and pair moments ``<v_i v_j>``: the baseline an RBM must beat to
claim structure beyond pairwise.

* **Fit: pseudo-likelihood maximisation** (Besag, *The Statistician* 24, 1975; Aurell &
  Ekeberg, *PRL* 108, 090201, 2012; Ravikumar, Wainwright & Lafferty, *Ann. Stat.* 38, 2010).
  Each conditional ``P(v_i | v_-i) = sigmoid(x_i)^v_i (1 - sigmoid(x_i))^(1-v_i)`` with
  ``x_i = h_i + sum_j J_ij v_j`` is exact, so the objective

      L(h, J) = (1/T) sum_t sum_i [softplus(x_ti) - v_ti x_ti] + l2 sum_{i<j} J_ij^2
                + l2_field sum_i h_i^2

  is convex, costs ``O(T N^2)`` per evaluation (one ``(T, N) @ (N, N)`` product) and needs no
  sampling. It is minimised jointly over ``h`` and the upper triangle of ``J`` (the symmetric
  variant: both conditionals of a pair inform one ``J_ij``) by full-batch L-BFGS with a strong
  Wolfe line search, rows in chunks so memory stays bounded. Pseudo-likelihood is consistent
  (Besag 1975) and, for the weak couplings of neural data, nearly as efficient as maximum
  likelihood; it is the standard inverse-Ising method at hundreds to thousands of units
  (Nguyen, Zecchina & Berg, *Adv. Phys.* 66, 197, 2017).
* **Refinement: Boltzmann learning** (Ackley, Hinton & Sejnowski, *Cogn. Sci.* 9, 1985)
  from the pseudo-likelihood solution: gradient ``<v v^T>_data - <v v^T>_model`` with the
  model side from persistent Gibbs chains (:func:`refine_boltzmann`); it converges to the
  maximum-likelihood (moment-matching) fit. Needed at large ``N``: pseudo-likelihood only fits
  the conditionals at observed states, and on a Steinmetz session with N = 1000 its model's
  equilibrium sat at ~4x the data's population activity; refinement brought it back
  (docs/methods.md §11).
* **Sampling: single-site Gibbs.** With dense ``J`` no two sites are conditionally independent,
  so the exact sampler updates one site at a time (systematic scan; each update leaves ``P``
  invariant). Chains are a batch; sites go in blocks of ``block`` columns: at a block's start
  its local fields come from one matrix product ``V @ J[:, block]``, then each site's draw
  updates the block's fields by a rank-one term. A sweep costs ``O(n_chains N^2)`` flops and
  ``N`` small sequential steps (:class:`IsingChains`).
* **log Z: AIS** (Neal, *Stat. Comput.* 11, 2001) from the independent-site model ``h0``
  (``log Z_0 = sum_i softplus(h0_i)``) along the geometric path
  ``E_beta(v) = -(h0 + beta (h - h0)).v - beta sum_{i<j} J_ij v_i v_j``, linear ``beta`` grid,
  one Gibbs sweep per ``beta``, repeats for the spread (as the RBM's AIS, docs/methods.md §4);
  exact enumeration for small ``N`` (the states of :mod:`spikerbm.exact`).

Spin convention: with ``s = 2v - 1`` the same energy reads (:func:`spin_couplings`)

    E = const - sum_i H_i s_i - sum_{i<j} K_ij s_i s_j,  H_i = h_i/2 + (1/4) sum_j J_ij,
    K_ij = J_ij / 4,  const = -(1/2) sum_i h_i - (1/4) sum_{i<j} J_ij,

(substitute ``v = (1 + s)/2``: the lattice-gas/Ising correspondence, e.g. Huang, *Statistical
Mechanics*, 2nd ed., 1987, the lattice gas), the convention of the RBM's effective couplings
(docs/methods.md §6, ``couplings.nc``), so the two models' ``J`` compare directly.

Precision: energies, log-weights and ``log Z`` are float64; sampling runs in the model's dtype.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from scipy import stats

from spikerbm.diagnostics import equilibration_check
from spikerbm.exact import binary_states, state_chunks
from spikerbm.partition import LogZEstimate
from spikerbm.provenance import derive_seed

__all__ = [
    "IsingModel",
    "IsingChains",
    "PairwiseFit",
    "fit_pseudolikelihood",
    "refine_boltzmann",
    "energy",
    "spin_couplings",
    "exact_log_z",
    "exact_moments",
    "ais_log_z",
    "estimate_log_z",
    "log_likelihood",
    "sample_model",
    "sample_equilibrium",
    "effective_fields",
    "fit_session",
    "compare_couplings",
    "model_dataset",
    "model_from_dataset",
]

#: largest N :func:`exact_log_z` enumerates (2^N states)
EXACT_MAX_NEURONS = 25


@dataclass(frozen=True)
class IsingModel:
    """Pairwise maximum-entropy model in the {0,1} convention.

    Attributes
    ----------
    h
        Fields, shape (N,).
    J
        Couplings, shape (N, N), symmetric with zero diagonal;
        ``E(v) = -h.v - sum_{i<j} J_ij v_i v_j = -h.v - v^T J v / 2``.
    """

    h: torch.Tensor
    J: torch.Tensor

    def __post_init__(self) -> None:
        n = self.h.shape[0] if self.h.ndim == 1 else -1
        if n < 1 or self.J.shape != (n, n):
            raise ValueError(f"Ising shapes disagree: h {tuple(self.h.shape)}, J "
                             f"{tuple(self.J.shape)}; expected h (N,) and J (N, N)")

    @property
    def n_neurons(self) -> int:
        return int(self.h.shape[0])

    @property
    def device(self) -> torch.device:
        return self.h.device

    @property
    def dtype(self) -> torch.dtype:
        return self.h.dtype

    def to(self, device: torch.device | str | None = None,
           dtype: torch.dtype | None = None) -> IsingModel:
        """Copy to another device and/or dtype."""
        return IsingModel(self.h.to(device=device, dtype=dtype),
                          self.J.to(device=device, dtype=dtype))

    @classmethod
    def from_numpy(cls, h: np.ndarray, J: np.ndarray, *, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float64) -> IsingModel:
        """Build from arrays; ``J`` is symmetrised and its diagonal zeroed."""
        Jt = torch.as_tensor(np.asarray(J), dtype=dtype, device=device)
        Jt = 0.5 * (Jt + Jt.T)
        Jt.fill_diagonal_(0.0)
        return cls(torch.as_tensor(np.asarray(h), dtype=dtype, device=device), Jt)


def energy(model: IsingModel, v: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``E(v) = -h.v - v^T J v / 2`` in float64, shape (B,) for ``v`` of shape (B, N)."""
    v = torch.as_tensor(v).to(device=model.device, dtype=torch.float64)
    h, J = model.h.to(torch.float64), model.J.to(torch.float64)
    return -(v @ h) - 0.5 * ((v @ J) * v).sum(-1)


def spin_couplings(model: IsingModel) -> tuple[np.ndarray, np.ndarray, float]:
    """Fields and couplings in the Ising-spin convention ``s = 2v - 1`` (float64 numpy).

    ``E = const - sum_i H_i s_i - sum_{i<j} K_ij s_i s_j`` with ``H_i = h_i/2 + sum_j J_ij/4``,
    ``K_ij = J_ij/4``, ``const = -sum_i h_i/2 - sum_{i<j} J_ij/4`` (module docstring; the
    convention of ``couplings.nc``).

    Returns
    -------
    H, K, const
        ``H`` (N,), ``K`` (N, N) symmetric with zero diagonal, and the constant.
    """
    h = model.h.detach().to(torch.float64).cpu().numpy()
    J = model.J.detach().to(torch.float64).cpu().numpy()
    H = 0.5 * h + 0.25 * J.sum(1)
    const = float(-0.5 * h.sum() - 0.125 * J.sum())
    return H, 0.25 * J, const


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------


@dataclass
class PairwiseFit:
    """A fitted model and how the fit went.

    Attributes
    ----------
    model
        The fitted :class:`IsingModel` (float64, on the fit device).
    objective
        Final pseudo-likelihood objective (nats per sample, incl. the penalty).
    n_iter
        L-BFGS iterations (or Boltzmann steps after :func:`refine_boltzmann`).
    converged
        Whether L-BFGS stopped on its gradient or objective-change tolerance before
        ``max_iter``.
    grad_max
        Largest absolute gradient entry at the end.
    seconds
        Wall time of the fit.
    rates
        Train firing rates ``<v_i>`` (the default AIS base model).
    info
        Settings and extra diagnostics (JSON-able).
    """

    model: IsingModel
    objective: float
    n_iter: int
    converged: bool
    grad_max: float
    seconds: float
    rates: np.ndarray
    info: dict = field(default_factory=dict)


def _as_data(v: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (n_samples, n_neurons) array; got "
                         f"shape {tuple(t.shape)}")
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if not bool(((t == 0) | (t == 1)).all()):
        raise ValueError(f"{name} must hold only 0 and 1 (a binarized raster)")
    return t


def _check_train(v: torch.Tensor) -> np.ndarray:
    rates = v.to(torch.float64).mean(0).cpu().numpy()
    dead = np.flatnonzero((rates == 0) | (rates == 1))
    if dead.size:
        what = "silent" if rates[dead[0]] == 0 else "always on"
        raise ValueError(f"neurons {dead[:10].tolist()} are {what} in the train data: their "
                         "fields are infinite; drop them (the binarize stage drops train-silent "
                         "neurons)")
    return rates


def fit_pseudolikelihood(train: np.ndarray | torch.Tensor, *, l2: float = 3e-3,
                         l2_field: float = 0.0, max_iter: int = 500, tol: float = 1e-6,
                         history_size: int = 20, chunk_rows: int | None = None,
                         init: IsingModel | None = None, device: torch.device | str = "cpu",
                         dtype: torch.dtype = torch.float64) -> PairwiseFit:
    """Fit fields and couplings by symmetric pseudo-likelihood maximisation (L-BFGS).

    Parameters
    ----------
    train
        Binary train data, shape (T, N) (uint8/bool/float); no neuron may be always 0 or 1.
    l2
        L2 penalty on the couplings, ``l2 sum_{i<j} J_ij^2`` (per sample; keeps pairs that never
        fire together finite: their unpenalised ``J`` is ``-inf``). It is a Gaussian prior of
        sd ``1 / sqrt(2 l2 T)`` on each ``J_ij``. Default 3e-3: the best test log-likelihood of
        {3e-4, 1e-3, 3e-3, 1e-2} on a Steinmetz session (160 neurons, T = 7028 bins of 10 ms;
        docs/methods.md §11); choose it by test log-likelihood for other data.
    l2_field
        L2 penalty on the fields.
    max_iter
        Largest number of L-BFGS iterations.
    tol
        Stop when the largest gradient entry is below ``tol`` (or the objective changes by less
        than ``tol * 1e-3`` between iterations).
    history_size
        L-BFGS memory.
    chunk_rows
        Rows per chunk of the objective (memory ``~4 chunk_rows N`` floats); default: all rows
        up to ``2^24 / N``.
    init
        Starting point; default the independent-site model (``h = logit(rates)``, ``J = 0``).
    device, dtype
        Where and in which precision to fit (float64 default; float32 halves memory and time on
        a GPU at the price of a looser optimum).

    Returns
    -------
    PairwiseFit
        The model in float64.

    Notes
    -----
    Cost ``O(n_iter T N^2)`` flops (two ``(T, N) x (N, N)`` products per evaluation and
    typically 1-2 evaluations per iteration), memory ``O(T N + N^2)``.
    """
    if not l2 >= 0 or not l2_field >= 0:
        raise ValueError(f"l2 and l2_field must be >= 0; got {l2}, {l2_field}")
    if max_iter < 1 or not tol > 0:
        raise ValueError(f"need max_iter >= 1 and tol > 0; got {max_iter}, {tol}")
    t0 = time.perf_counter()
    dev = torch.device(device)
    data = _as_data(train, "train")
    rates = _check_train(data)
    n_rows, n = data.shape
    v = data.to(device=dev, dtype=dtype)
    step = int(chunk_rows or max(1, min(n_rows, 2**24 // n)))
    if init is None:
        h0 = torch.as_tensor(np.log(rates) - np.log1p(-rates), dtype=dtype, device=dev)
        u0 = torch.zeros(n, n, dtype=dtype, device=dev)
    else:
        if init.n_neurons != n:
            raise ValueError(f"init has {init.n_neurons} neurons, the data {n}")
        h0 = init.h.to(device=dev, dtype=dtype)
        u0 = torch.triu(init.J.to(device=dev, dtype=dtype), 1)
    h = h0.clone().requires_grad_(True)
    u = u0.clone().requires_grad_(True)
    mask = torch.triu(torch.ones(n, n, dtype=torch.bool, device=dev), 1)
    opt = torch.optim.LBFGS([h, u], lr=1.0, max_iter=max_iter, history_size=history_size,
                            tolerance_grad=tol, tolerance_change=tol * 1e-3,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        J = torch.where(mask, u, torch.zeros((), dtype=dtype, device=dev))
        J = J + J.T
        total = torch.zeros((), dtype=dtype, device=dev)
        for r0 in range(0, n_rows, step):
            vb = v[r0:r0 + step]
            x = torch.addmm(h, vb, J)
            part = (F.softplus(x) - vb * x).sum() / n_rows
            part.backward(retain_graph=r0 + step < n_rows)
            total += part.detach()
        pen = l2 * (u[mask] ** 2).sum() + l2_field * (h * h).sum()
        pen.backward()
        u.grad.masked_fill_(~mask, 0.0)
        return total + pen.detach()

    opt.step(closure)
    n_iter = int(opt.state[h].get("n_iter", 0))  # LBFGS keeps its state on the first param
    obj = float(closure())  # value and gradient at the final point
    grad_max = float(max(h.grad.abs().max(), u.grad.abs().max()))
    Jf = torch.triu(u.detach(), 1)
    model = IsingModel(h.detach().to(torch.float64), (Jf + Jf.T).to(torch.float64))
    return PairwiseFit(model=model, objective=obj, n_iter=n_iter,
                       converged=grad_max < tol or n_iter < max_iter, grad_max=grad_max,
                       seconds=time.perf_counter() - t0, rates=rates,
                       info={"method": "pseudolikelihood", "l2": float(l2),
                             "l2_field": float(l2_field), "max_iter": int(max_iter),
                             "tol": float(tol), "n_train": int(n_rows),
                             "dtype": str(dtype).replace("torch.", ""), "device": str(dev)})


def refine_boltzmann(fit: PairwiseFit, train: np.ndarray | torch.Tensor, *, n_steps: int,
                     n_chains: int = 500, sweeps_per_step: int = 1, lr: float = 0.005,
                     l2: float | None = None, generator: torch.Generator,
                     dtype: torch.dtype | None = None) -> PairwiseFit:
    """Refine a fit by Boltzmann learning with persistent single-site Gibbs chains.

    Gradient ascent on the log-likelihood per sample, ``dh = <v> - <v>_chains``,
    ``dJ_ij = <v_i v_j> - <v_i v_j>_chains - 2 l2 J_ij``, with Adam steps of size ``lr`` (Kingma
    & Ba, ICLR 2015); the chains start from train rows and carry over between steps (persistent
    contrastive divergence, Tieleman, ICML 2008). The returned parameters are the average of the
    iterates over the second half of the steps (Polyak & Juditsky, *SIAM J. Control Optim.* 30,
    1992), which removes most of the step-to-step noise of the chain estimates.

    Parameters
    ----------
    fit
        Starting fit (usually :func:`fit_pseudolikelihood`'s).
    train
        The same train data.
    n_steps, n_chains, sweeps_per_step, lr
        Number of updates, chains, Gibbs sweeps per update, Adam step size (a step moves each
        parameter by up to ``lr``; with ``N`` ~ 1000 couplings per field, keep it small:
        measured on a Steinmetz session, 300 steps of 500 chains at ``lr = 0.005`` brought the
        chains' mean activity from a runaway ~130 active neurons back to ~28 (data: 31),
        docs/methods.md §11).
    l2
        L2 penalty on ``J`` (default: the fit's).
    generator
        Random generator on the fit's device.
    dtype
        Sampling dtype (default the model's).

    Returns
    -------
    PairwiseFit
        With ``info["method"] = "pseudolikelihood+boltzmann"`` and ``info["moment_error"]`` (the
        largest |data - chain| pair moment over the last 10% of steps, averaged).
    """
    if n_steps < 1 or n_chains < 1 or sweeps_per_step < 1 or not lr > 0:
        raise ValueError(f"need n_steps, n_chains, sweeps_per_step >= 1 and lr > 0; got "
                         f"{n_steps}, {n_chains}, {sweeps_per_step}, {lr}")
    t0 = time.perf_counter()
    m = fit.model
    dev = m.device
    dt = dtype or m.dtype
    data = _as_data(train, "train").to(device=dev, dtype=torch.float64)
    n = data.shape[1]
    if n != m.n_neurons:
        raise ValueError(f"train has {n} neurons, the model {m.n_neurons}")
    mean_d = data.mean(0)
    pair_d = data.T @ data / data.shape[0]
    l2 = float(fit.info.get("l2", 0.0) if l2 is None else l2)
    ph = torch.nn.Parameter(m.h.detach().to(torch.float64).clone())
    pJ = torch.nn.Parameter(m.J.detach().to(torch.float64).clone())
    adam = torch.optim.Adam([ph, pJ], lr=lr)
    rows = torch.randint(0, data.shape[0], (n_chains,), generator=generator, device=dev)
    chains = IsingChains(data[rows].to(dt), generator=generator)
    off = ~torch.eye(n, dtype=torch.bool, device=dev)
    errs = []
    avg_h, avg_J, k_avg = torch.zeros_like(ph), torch.zeros_like(pJ), 0
    for step in range(n_steps):
        chains.sweep(IsingModel(ph.detach().to(dt), pJ.detach().to(dt)), k=sweeps_per_step)
        vc = chains.v.to(torch.float64)
        d_pair = pair_d - vc.T @ vc / n_chains
        # Adam minimises: the gradients of minus the penalised log-likelihood
        ph.grad = -(mean_d - vc.mean(0))
        pJ.grad = torch.where(off, -d_pair + 2 * l2 * pJ.detach(),
                              torch.zeros((), dtype=torch.float64, device=dev))
        adam.step()
        if step >= n_steps // 2:  # Polyak-Ruppert average of the second half
            k_avg += 1
            avg_h += (ph.detach() - avg_h) / k_avg
            avg_J += (pJ.detach() - avg_J) / k_avg
        if step >= n_steps - max(1, n_steps // 10):
            errs.append(float(d_pair[off].abs().max()))
    model = IsingModel(avg_h, 0.5 * (avg_J + avg_J.T))
    info = {**fit.info, "method": "pseudolikelihood+boltzmann", "boltzmann_steps": int(n_steps),
            "boltzmann_chains": int(n_chains), "boltzmann_sweeps": int(sweeps_per_step),
            "boltzmann_lr": float(lr), "moment_error": float(np.mean(errs))}
    return PairwiseFit(model=model, objective=float("nan"), n_iter=int(n_steps),
                       converged=fit.converged, grad_max=float("nan"),
                       seconds=fit.seconds + time.perf_counter() - t0, rates=fit.rates,
                       info=info)


# --------------------------------------------------------------------------------------------
# single-site Gibbs sampling
# --------------------------------------------------------------------------------------------


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run Gibbs sweeps on one CPU thread (no effect on other devices).

    A sweep is ``N`` sequential steps of ``n_chains x block`` numbers each: intra-op threads
    only add a synchronisation per step, which on a loaded 2-core machine costs ~10 ms per
    operation (measured: a (13, 13) x (13, 1200) product 37 us on one thread, 11.7 ms on two).
    """
    old = torch.get_num_threads()
    if device.type != "cpu" or old == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class IsingChains:
    """A batch of single-site Gibbs chains of an Ising model (systematic scan).

    The pairwise counterpart of :class:`spikerbm.sampling.PersistentChains`: randomness belongs
    to the chains (``generator``, given once), ``sweep(model, k=, beta=)``, ``state_dict`` /
    ``load_state_dict`` for a bitwise restart on CPU. (It is not a :class:`Chains`: an Ising
    model has no hidden layer.)

    Parameters
    ----------
    v
        Initial states, shape (n_chains, N), values in {0, 1}; copied (float32 unless floating).
    generator
        ``torch.Generator`` on the chains' device, the only source of randomness.
    block
        Sites per block: local fields of a block come from one matrix product, then rank-one
        updates inside the block (memory ``n_chains x block``). The chain does not depend on it.

    Attributes
    ----------
    v
        Current states (n_chains, N), 0./1. floats.
    """

    def __init__(self, v: torch.Tensor, *, generator: torch.Generator, block: int = 64) -> None:
        if v.ndim != 2:
            raise ValueError(f"chains must have shape (n_chains, N); got {tuple(v.shape)}")
        if block < 1:
            raise ValueError(f"block must be >= 1; got {block}")
        if generator.device.type != v.device.type:
            raise ValueError(f"generator is on {generator.device}, the chains on {v.device}")
        self.v = (v if v.is_floating_point() else v.to(torch.float32)).clone()
        self.generator = generator
        self.block = int(block)

    @property
    def n_chains(self) -> int:
        return int(self.v.shape[0])

    @property
    def n_visible(self) -> int:
        return int(self.v.shape[1])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``v`` (uint8) and ``rng`` (the generator state), CPU tensors."""
        return {"v": self.v.to(torch.uint8).cpu(), "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a :meth:`state_dict` (same number of chains and neurons)."""
        if "v" not in state or "rng" not in state:
            raise ValueError("chain state needs 'v' (the states) and 'rng' (the generator)")
        new = torch.as_tensor(state["v"])
        if tuple(new.shape) != tuple(self.v.shape):
            raise ValueError(f"chain state has {tuple(new.shape)} states; these chains have "
                             f"{tuple(self.v.shape)} (n_chains x N)")
        self.v.copy_(new.to(device=self.v.device, dtype=self.v.dtype))
        self.generator.set_state(torch.as_tensor(state["rng"]).to(torch.uint8).cpu())

    def sweep(self, model: IsingModel, *, k: int = 1, beta: float = 1.0,
              h0: torch.Tensor | None = None) -> None:
        """``k`` systematic-scan sweeps in place, at inverse temperature ``beta`` of the path.

        Site ``i`` is drawn from ``P(v_i = 1 | v_-i) = sigmoid(hb_i + beta sum_j J_ij v_j)`` with
        ``hb = h0 + beta (h - h0)`` (the AIS path; ``h0`` None means 0). At ``beta = 1`` this is
        the model itself.
        """
        if model.J.shape[0] != self.v.shape[1]:
            raise ValueError(f"model has {model.n_neurons} neurons, chains {self.v.shape[1]}")
        if k < 0:
            raise ValueError(f"k must be >= 0; got {k}")
        dt = self.v.dtype
        h = model.h.to(dt)
        J = model.J.to(dt)
        hb = h * beta if h0 is None else h0.to(dt) + beta * (h - h0.to(dt))
        with _one_cpu_thread(self.v.device):
            self._sweeps(J, hb, beta, k)

    def _sweeps(self, J: torch.Tensor, hb: torch.Tensor, beta: float, k: int) -> None:
        dt = self.v.dtype
        n, nc = self.v.shape[1], self.v.shape[0]
        vt = self.v.T.contiguous()  # (N, chains): a site's states are one contiguous row
        new = torch.empty(nc, dtype=dt, device=vt.device)
        # per-site views made once (indexing costs as much Python time as a kernel launch)
        rows = vt.unbind(0)
        blocks = [(b0, min(n, b0 + self.block)) for b0 in range(0, n, self.block)]
        cols = [J[b0:b1, b0:b1].unbind(1) for b0, b1 in blocks]
        for _ in range(k):
            for (b0, b1), J_cols in zip(blocks, cols, strict=True):
                # local fields of the block's sites: (b, chains)
                x = torch.addmm(hb[b0:b1, None], J[b0:b1], vt, alpha=beta)
                # v_i = 1 iff x_i > logistic noise  <=>  U < sigmoid(x_i)
                noise = torch.rand(b1 - b0, nc, generator=self.generator, dtype=dt,
                                   device=vt.device).logit_()
                for row, x_i, u_i, J_i in zip(rows[b0:b1], x.unbind(0), noise.unbind(0),
                                              J_cols, strict=True):
                    # four kernels a site (their launch cost dominates a sweep on a GPU)
                    torch.gt(x_i, u_i, out=new)  # the draw, as 0./1. in dt
                    d = new - row  # in {-1, 0, 1}
                    row.copy_(new)
                    x.addr_(J_i, d, alpha=beta)
        self.v.copy_(vt.T)


def sample_model(model: IsingModel, *, n_samples: int, n_chains: int, burn_in_sweeps: int,
                 thin_sweeps: int, seed: int, init: np.ndarray | None = None,
                 dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Equilibrium samples of the model, shape (n_samples, N) uint8, for the statistics stage.

    ``n_chains`` chains start from rows of ``init`` drawn at random (e.g. train bins) or, when
    ``init`` is None, from the independent-site model ``Bernoulli(sigmoid(h))``; after
    ``burn_in_sweeps`` sweeps each chain is recorded every ``thin_sweeps`` sweeps until
    ``n_samples`` states are collected (chain-major interleaving: sample ``s`` is chain
    ``s % n_chains``). Deterministic given ``seed`` and the device.
    """
    for name, val, lo in (("n_samples", n_samples, 1), ("n_chains", n_chains, 1),
                          ("burn_in_sweeps", burn_in_sweeps, 0), ("thin_sweeps", thin_sweeps, 1)):
        if not isinstance(val, int | np.integer) or val < lo:
            raise ValueError(f"{name} must be an integer >= {lo}; got {val!r}")
    dev = model.device
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed))
    m = model.to(dtype=dtype)
    if init is None:
        p = torch.sigmoid(m.h).expand(n_chains, -1)
        v0 = (torch.rand(p.shape, generator=gen, dtype=dtype, device=dev) < p).to(dtype)
    else:
        x = _as_data(init, "init")
        if x.shape[1] != model.n_neurons:
            raise ValueError(f"init has {x.shape[1]} neurons, the model {model.n_neurons}")
        rows = torch.randint(0, x.shape[0], (n_chains,), generator=gen, device=dev)
        v0 = x.to(device=dev, dtype=dtype)[rows]
    chains = IsingChains(v0, generator=gen)
    chains.sweep(m, k=burn_in_sweeps)
    per_chain = math.ceil(n_samples / n_chains)
    out = torch.empty(per_chain, n_chains, model.n_neurons, dtype=torch.uint8, device=dev)
    for r in range(per_chain):
        chains.sweep(m, k=thin_sweeps)
        out[r] = chains.v.to(torch.uint8)
    return out.reshape(-1, model.n_neurons)[:n_samples].cpu().numpy()


def effective_fields(model: IsingModel, v: np.ndarray | torch.Tensor, *,
                     batch_size: int = 8192) -> np.ndarray:
    """Exact conditional fields ``x_i(v) = h_i + sum_{j != i} J_ij v_j`` (float64 numpy).

    ``P(v_i = 1 | v_-i) = sigmoid(x_i)``: the pairwise model's counterpart of the RBM's
    effective field (:func:`spikerbm.statistics.effective_fields`), for the calibration of
    the conditional activity (docs/methods.md §5). Shape (n_samples, N).
    """
    x = _as_data(v, "v")
    if x.shape[1] != model.n_neurons:
        raise ValueError(f"v has {x.shape[1]} neurons, the model {model.n_neurons}")
    h, J = model.h.to(torch.float64), model.J.to(torch.float64)  # J has a zero diagonal
    return torch.cat([torch.addmm(h, x[r:r + batch_size].to(model.device, torch.float64), J)
                      for r in range(0, x.shape[0], batch_size)]).cpu().numpy()


def sample_equilibrium(model: IsingModel, *, init_data: np.ndarray, n_samples: int,
                       n_chains: int, burn_in_sweeps: int, thin_sweeps: int, seed: int,
                       tau_factor: float = 20.0, z_max: float = 4.0,
                       dtype: torch.dtype = torch.float32) -> xr.Dataset:
    """Equilibrium samples of the pairwise model with the RBM's equilibration check.

    The counterpart of :func:`spikerbm.statistics.sample_equilibrium` with single-site Gibbs
    chains (:class:`IsingChains`): half of the ``n_chains`` chains start from train bins drawn at
    random, half from Bernoulli(1/2) states; after ``burn_in_sweeps`` sweeps each chain is
    sampled every ``thin_sweeps`` sweeps. The check passes when the integrated autocorrelation
    times of the energy ``E(v)`` and of ``K = sum_i v_i`` (traced on up to 128 chains per start
    set from half-way through the burn-in) are reliably estimated with ``burn_in_sweeps >=
    tau_factor * tau``, and the two start sets agree on the mean ``E`` and ``K`` of their
    samples within ``z_max`` standard errors (the chains are independent). A pairwise model in
    the wrong phase (docs/methods.md §11: pseudo-likelihood alone at N ~ 1000) fails it.

    Returns
    -------
    xarray.Dataset
        ``samples(sample, neuron)`` uint8, ``trace_energy``/``trace_k`` (start, record) with
        ``record_sweep``, and the attrs of :func:`spikerbm.statistics.sample_equilibrium`
        (``equilibrated``, ``equilibration_reason``, ``tau_energy_sweeps``, ``tau_k_sweeps``,
        ``tau_converged``, ``z_energy``, ``z_k``, ...).
    """
    from spikerbm.statistics import MAX_TRACE_CHAINS, MAX_TRACE_RECORDS

    for name, val, lo in (("n_samples", n_samples, 1), ("n_chains", n_chains, 4),
                          ("burn_in_sweeps", burn_in_sweeps, 1), ("thin_sweeps", thin_sweeps, 1)):
        if not isinstance(val, int | np.integer) or val < lo:
            raise ValueError(f"{name} must be an integer >= {lo}; got {val!r}")
    if not (tau_factor > 0 and z_max > 0):
        raise ValueError(f"tau_factor and z_max must be > 0; got {tau_factor}, {z_max}")
    data = _as_data(init_data, "init_data")
    n = model.n_neurons
    if data.shape[1] != n:
        raise ValueError(f"init_data has {data.shape[1]} neurons, the model {n}")
    dev = model.device
    gen = torch.Generator(device=dev)
    gen.manual_seed(derive_seed(seed, "gibbs"))
    n_data = n_chains // 2
    n_rand = n_chains - n_data
    rows = torch.randint(0, data.shape[0], (n_data,), generator=gen, device=dev)
    v0 = torch.cat([data.to(device=dev, dtype=dtype)[rows],
                    torch.bernoulli(torch.full((n_rand, n), 0.5, dtype=dtype, device=dev),
                                    generator=gen)])
    chains = IsingChains(v0, generator=gen)
    m = model.to(dtype=dtype)
    per_chain = math.ceil(n_samples / n_chains)
    total = burn_in_sweeps + per_chain * thin_sweeps
    every = max(1, math.ceil(total / MAX_TRACE_RECORDS))
    n_rec = total // every
    n_td, n_tr = min(n_data, MAX_TRACE_CHAINS), min(n_rand, MAX_TRACE_CHAINS)
    traced = torch.cat([torch.arange(n_td), n_data + torch.arange(n_tr)]).to(dev)
    tr_e = np.empty((n_rec, n_td + n_tr))
    tr_k = np.empty((n_rec, n_td + n_tr))
    samples = torch.empty(per_chain, n_chains, n, dtype=torch.uint8, device=dev)
    rec = 0
    for sweep in range(1, total + 1):
        chains.sweep(m)
        if sweep % every == 0 and rec < n_rec:
            vt = chains.v[traced]
            tr_e[rec] = energy(model, vt).cpu().numpy()
            tr_k[rec] = vt.sum(1, dtype=torch.float64).cpu().numpy()
            rec += 1
        after = sweep - burn_in_sweeps
        if after > 0 and after % thin_sweeps == 0:
            samples[after // thin_sweeps - 1] = chains.v.to(torch.uint8)
    s_energy = energy(model, samples.reshape(-1, n)).reshape(per_chain, -1).cpu().numpy()
    rec_sweep = (np.arange(n_rec) + 1) * every
    check = equilibration_check(
        tr_e, tr_k, s_energy.mean(0), samples.sum(2, dtype=torch.float64).mean(0).cpu().numpy(),
        n_data=n_data, every=every, burn_in_sweeps=burn_in_sweeps, tau_factor=tau_factor,
        z_max=z_max)
    reasons = check.pop("reasons")
    ok = not reasons
    return xr.Dataset(
        {
            "samples": (("sample", "neuron"),
                        samples.reshape(-1, n)[:n_samples].cpu().numpy()),
            "trace_energy": (("start", "record"), np.stack(
                [tr_e[:, :n_td].mean(1), tr_e[:, n_td:].mean(1)]), {"units": "1"}),
            "trace_k": (("start", "record"), np.stack(
                [tr_k[:, :n_td].mean(1), tr_k[:, n_td:].mean(1)]), {"units": "active neurons"}),
        },
        coords={"start": ["data", "random"], "record_sweep": ("record", rec_sweep)},
        attrs={
            "equilibrated": int(ok),
            "equilibration_reason": "passed" if ok else "; ".join(reasons),
            **check, "z_max": float(z_max), "tau_factor": float(tau_factor),
            "burn_in_sweeps": int(burn_in_sweeps), "thin_sweeps": int(thin_sweeps),
            "n_chains": int(n_chains), "n_chains_data": int(n_data),
            "n_chains_random": int(n_rand), "sampler": "single-site Gibbs (systematic scan)",
        },
    )


# --------------------------------------------------------------------------------------------
# log Z and likelihood
# --------------------------------------------------------------------------------------------


def exact_log_z(model: IsingModel, *, chunk_size: int = 1 << 14) -> float:
    """Exact ``log Z`` by enumerating all ``2^N`` states (float64, chunked logsumexp).

    Raises
    ------
    ValueError
        When ``N > EXACT_MAX_NEURONS``.
    """
    n = model.n_neurons
    if n > EXACT_MAX_NEURONS:
        raise ValueError(f"exact log Z enumerates 2^N states; N={n} > {EXACT_MAX_NEURONS}: "
                         "use AIS")
    parts = [torch.logsumexp(-energy(model, v), 0)
             for v in state_chunks(n, chunk_size, device=model.device)]
    return float(torch.logsumexp(torch.stack(parts), 0))


def exact_moments(model: IsingModel) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``<v_i>`` (N,) and ``<v_i v_j>`` (N, N) by enumeration (N <= 20)."""
    n = model.n_neurons
    if n > 20:
        raise ValueError(f"exact_moments enumerates 2^N states; N={n} > 20")
    v = binary_states(n, device=model.device)
    p = torch.softmax(-energy(model, v), 0)
    return (p @ v).cpu().numpy(), (v.T @ (v * p[:, None])).cpu().numpy()


def ais_log_z(model: IsingModel, *, n_chains: int, n_betas: int, generator: torch.Generator,
              n_repeats: int = 2, base_rates: np.ndarray | None = None,
              dtype: torch.dtype | None = None) -> LogZEstimate:
    """AIS estimate of ``log Z`` from the independent-site model (module docstring).

    Parameters
    ----------
    model
        The target model.
    n_chains
        Chains per repeat.
    n_betas
        Inverse temperatures including 0 and 1 (>= 2), linear grid.
    generator
        Random generator on the model's device.
    n_repeats
        Independent repeats (one batch of ``n_repeats * n_chains`` chains); their standard
        deviation is ``log_z_std`` (NaN with one repeat), as for the RBM.
    base_rates
        Rates of the independent-site start model, ``h0 = logit(rates)`` (clamped to
        ``[1e-6, 1 - 1e-6]``); default ``sigmoid(h)`` (``h0 = h``). The train rates are the
        better start for a fitted model (they are close to its marginals).
    dtype
        Sampling dtype (default the model's); weights are float64.

    Returns
    -------
    LogZEstimate
        Method ``"ais"``.
    """
    if n_chains < 1 or n_repeats < 1 or n_betas < 2:
        raise ValueError(f"need n_chains, n_repeats >= 1 and n_betas >= 2; got {n_chains}, "
                         f"{n_repeats}, {n_betas}")
    dev = model.device
    dt = dtype or model.dtype
    h = model.h.to(torch.float64)
    if base_rates is None:
        h0 = h.clone()
    else:
        r = np.clip(np.asarray(base_rates, dtype=np.float64), 1e-6, 1 - 1e-6)
        if r.shape != (model.n_neurons,):
            raise ValueError(f"base_rates has shape {r.shape}; expected ({model.n_neurons},)")
        h0 = torch.as_tensor(np.log(r) - np.log1p(-r), dtype=torch.float64, device=dev)
    J64 = model.J.to(torch.float64)
    dh = h - h0
    n_tot = n_chains * n_repeats
    p0 = torch.sigmoid(h0).to(dt).expand(n_tot, -1)
    chains = IsingChains((torch.rand(p0.shape, generator=generator, dtype=dt, device=dev)
                          < p0).to(dt), generator=generator)
    m_s = model.to(dtype=dt)
    h0_s = h0.to(dt)
    betas = torch.linspace(0.0, 1.0, n_betas, dtype=torch.float64).tolist()
    log_w = torch.zeros(n_tot, dtype=torch.float64, device=dev)
    with _one_cpu_thread(dev):
        for k in range(1, n_betas):
            v = chains.v.to(torch.float64)
            # log p*_k(v) - log p*_{k-1}(v) = (beta_k - beta_{k-1}) [dh.v + v^T J v / 2]
            log_w += (betas[k] - betas[k - 1]) * (v @ dh + 0.5 * ((v @ J64) * v).sum(-1))
            if k < n_betas - 1:
                chains.sweep(m_s, beta=betas[k], h0=h0_s)
    log_z0 = float(F.softplus(h0).sum())
    est = (log_z0 + torch.logsumexp(log_w.view(n_repeats, n_chains), 1)
           - math.log(n_chains)).cpu().numpy()
    std = float(np.std(est, ddof=1)) if n_repeats > 1 else float("nan")
    return LogZEstimate(float(np.mean(est)), std, "ais", tuple(float(e) for e in est))


def estimate_log_z(model: IsingModel, *, method: str = "auto", exact_max_neurons: int = 20,
                   ais_chains: int = 500, ais_betas: int = 1000, ais_repeats: int = 2,
                   base_rates: np.ndarray | None = None,
                   generator: torch.Generator | None = None) -> LogZEstimate:
    """``log Z`` by ``exact`` enumeration, ``ais``, or ``auto`` (exact when N is small)."""
    if method not in ("auto", "exact", "ais"):
        raise ValueError(f"method must be auto, exact or ais; got {method!r}")
    if method == "auto":
        method = "exact" if model.n_neurons <= exact_max_neurons else "ais"
    if method == "exact":
        lz = exact_log_z(model)
        return LogZEstimate(lz, 0.0, "exact", (lz,))
    if generator is None:
        raise ValueError("AIS needs a torch.Generator (generator=...) on the model's device")
    return ais_log_z(model, n_chains=ais_chains, n_betas=ais_betas, n_repeats=ais_repeats,
                     generator=generator, base_rates=base_rates)


def log_likelihood(model: IsingModel, data: np.ndarray | torch.Tensor, log_z: LogZEstimate,
                   *, batch_size: int = 8192) -> dict[str, float]:
    """Log-likelihood per sample ``-<E(v)>_data - log Z`` (nats) with its uncertainty.

    Returns
    -------
    dict
        ``ll`` (nats per sample), ``ll_std`` (= ``log_z_std``, the convention of the RBM's
        ``ll_*_std``), ``ll_per_neuron``, ``ll_sem`` (standard error of the mean energy over the
        data rows, for information).
    """
    x = _as_data(data, "data")
    if x.shape[1] != model.n_neurons:
        raise ValueError(f"data has {x.shape[1]} neurons, the model {model.n_neurons}")
    e = torch.cat([energy(model, x[r:r + batch_size].to(model.device))
                   for r in range(0, x.shape[0], batch_size)])
    ll = float(-e.mean()) - log_z.log_z
    sem = float(e.std() / math.sqrt(e.numel())) if e.numel() > 1 else float("nan")
    return {"ll": ll, "ll_std": float(log_z.log_z_std), "ll_per_neuron": ll / model.n_neurons,
            "ll_sem": sem}


# --------------------------------------------------------------------------------------------
# comparison with the RBM and disk format
# --------------------------------------------------------------------------------------------


def compare_couplings(J_pairwise: np.ndarray, J_rbm: np.ndarray) -> dict[str, float]:
    """Pearson r and least-squares line of the RBM's ``J2`` against the pairwise ``K``, i<j.

    Both in the spin convention (:func:`spin_couplings`, ``couplings.nc`` ``J``). The line is
    ``J_rbm ~ slope * K + intercept`` (``scipy.stats.linregress``).

    Returns
    -------
    dict
        ``pearson_r``, ``slope``, ``intercept``, ``n_pairs``.
    """
    a, b = np.asarray(J_pairwise, dtype=np.float64), np.asarray(J_rbm, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"coupling matrices must be equal (N, N); got {a.shape}, {b.shape}")
    iu = np.triu_indices(a.shape[0], 1)
    x, y = a[iu], b[iu]
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0:
        return {"pearson_r": float("nan"), "slope": float("nan"), "intercept": float("nan"),
                "n_pairs": int(ok.sum())}
    fit = stats.linregress(x[ok], y[ok])
    return {"pearson_r": float(fit.rvalue), "slope": float(fit.slope),
            "intercept": float(fit.intercept), "n_pairs": int(ok.sum())}


def model_dataset(fit: PairwiseFit, *, unit_id: np.ndarray, area: np.ndarray,
                  log_z: LogZEstimate | None = None, ll_train: dict | None = None,
                  ll_test: dict | None = None) -> xr.Dataset:
    """The fitted model as an xarray Dataset (dims ``neuron``, ``neuron2``).

    Variables: ``h01`` (neuron), ``J01`` (neuron, neuron2) in the {0,1} convention; ``H``,
    ``J`` in the spin convention (as ``couplings.nc``); ``rate_train``; attrs: fit diagnostics,
    ``log_z``, ``log_z_std``, ``log_z_method`` and ``ll_train``/``ll_test`` (+ ``_std``,
    ``_per_neuron``) when given.
    """
    m = fit.model
    n = m.n_neurons
    unit_id = np.asarray(unit_id, dtype=np.int64)
    area = np.asarray(area).astype(str)
    if unit_id.shape != (n,) or area.shape != (n,):
        raise ValueError(f"unit_id {unit_id.shape} and area {area.shape} must be ({n},)")
    H, K, const = spin_couplings(m)
    attrs: dict = {k: v for k, v in fit.info.items() if isinstance(v, str | int | float)}
    attrs.update(objective=fit.objective, n_iter=fit.n_iter, converged=int(fit.converged),
                 grad_max=fit.grad_max, spin_const=const)  # no wall time: reruns are bitwise
    if log_z is not None:
        attrs.update(log_z=log_z.log_z, log_z_std=log_z.log_z_std, log_z_method=log_z.method)
    for name, ll in (("ll_train", ll_train), ("ll_test", ll_test)):
        if ll is not None:
            attrs.update({name: ll["ll"], f"{name}_std": ll["ll_std"],
                          f"{name}_per_neuron": ll["ll_per_neuron"]})
    return xr.Dataset(
        {
            "h01": ("neuron", m.h.cpu().numpy(), {"units": "1", "long_name": "field h_i, "
                                                  "E = -h.v - sum_{i<j} J_ij v_i v_j"}),
            "J01": (("neuron", "neuron2"), m.J.cpu().numpy(),
                    {"units": "1", "long_name": "coupling J_ij ({0,1} convention)"}),
            "H": ("neuron", H, {"units": "1", "long_name": "field H_i (Ising spins s = 2v-1)"}),
            "J": (("neuron", "neuron2"), K, {"units": "1", "long_name": "coupling J_ij (Ising "
                                             "spins), = J01 / 4"}),
            "rate_train": ("neuron", fit.rates, {"units": "1", "long_name": "train <v_i>"}),
        },
        coords={"unit_id": ("neuron", unit_id), "area": ("neuron", area.astype(object)),
                "unit_id2": ("neuron2", unit_id), "area2": ("neuron2", area.astype(object))},
        attrs=attrs,
    )


def model_from_dataset(ds: xr.Dataset, *, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float64) -> IsingModel:
    """The :class:`IsingModel` of a :func:`model_dataset` dataset."""
    for name in ("h01", "J01"):
        if name not in ds:
            raise ValueError(f"not a pairwise model dataset: no variable {name!r}")
    return IsingModel.from_numpy(ds["h01"].values,
                                 ds["J01"].transpose("neuron", "neuron2").values,
                                 device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------
# one session, as the workflow runs it
# --------------------------------------------------------------------------------------------


def fit_session(train: np.ndarray, test: np.ndarray, *, unit_id: np.ndarray, area: np.ndarray,
                seed: int, l2: float = 3e-3, max_iter: int = 500, refine_steps: int = 0,
                refine_chains: int = 500, refine_lr: float = 0.005, exact_max_neurons: int = 20,
                ais_chains: int = 500, ais_betas: int = 1000, ais_repeats: int = 2,
                device: torch.device | str = "cpu") -> tuple[IsingModel, xr.Dataset]:
    """Fit the pairwise baseline on a session's train split and score its log-likelihood.

    Pseudo-likelihood (:func:`fit_pseudolikelihood`), then ``refine_steps`` Boltzmann-learning
    steps (:func:`refine_boltzmann`; 0 skips it), then ``log Z`` exactly when
    ``N <= exact_max_neurons``, else by AIS from the independent-site model of the train rates
    (:func:`ais_log_z`), and the train and test log-likelihoods (:func:`log_likelihood`), with
    the independent-site floor of :func:`spikerbm.likelihood.independent_site_loglik` for
    reference (docs/methods.md §11).

    Parameters
    ----------
    train, test
        Binary rasters (bins, N) of the session's split (the RBM's).
    unit_id, area
        Neuron coordinates, shape (N,).
    seed
        Seed of the refinement chains and of AIS (``derive_seed(seed, "refine")``,
        ``derive_seed(seed, "ais")``).
    l2, max_iter
        Pseudo-likelihood penalty and iteration limit.
    refine_steps, refine_chains, refine_lr
        Boltzmann refinement.
    exact_max_neurons, ais_chains, ais_betas, ais_repeats
        ``log Z``.
    device
        Where the fit, refinement and AIS run.

    Returns
    -------
    model, dataset
        The fitted :class:`IsingModel` (float64 on ``device``) and its :func:`model_dataset`
        with attrs ``log_z*``, ``ll_train*``, ``ll_test*``, ``ll_test_sem`` (standard error of
        the mean test energy), ``pl_objective``, ``pl_n_iter``, ``pl_converged``,
        ``floor_train``, ``floor_test`` (+ ``_per_neuron``), ``mean_k_train``.
    """
    from spikerbm.likelihood import independent_site_loglik

    dev = torch.device(device)
    fit = fit_pseudolikelihood(train, l2=l2, max_iter=max_iter, device=dev)
    pl = {"pl_objective": fit.objective, "pl_n_iter": fit.n_iter,
          "pl_converged": int(fit.converged), "pl_grad_max": fit.grad_max}
    if refine_steps > 0:
        gen = torch.Generator(device=dev)
        gen.manual_seed(derive_seed(seed, "refine"))
        fit = refine_boltzmann(fit, train, n_steps=int(refine_steps),
                               n_chains=int(refine_chains), lr=float(refine_lr), generator=gen)
    gen = torch.Generator(device=dev)
    gen.manual_seed(derive_seed(seed, "ais"))
    log_z = estimate_log_z(fit.model, exact_max_neurons=exact_max_neurons,
                           ais_chains=ais_chains, ais_betas=ais_betas, ais_repeats=ais_repeats,
                           base_rates=fit.rates, generator=gen)
    ll_train = log_likelihood(fit.model, train, log_z)
    ll_test = log_likelihood(fit.model, test, log_z)
    floor_train, floor_test = independent_site_loglik(np.asarray(train), np.asarray(test))
    n = fit.model.n_neurons
    ds = model_dataset(fit, unit_id=unit_id, area=area, log_z=log_z, ll_train=ll_train,
                       ll_test=ll_test)
    ds.attrs.update(pl)
    ds.attrs.update(ll_test_sem=ll_test["ll_sem"], floor_train=floor_train,
                    floor_test=floor_test, floor_train_per_neuron=floor_train / n,
                    floor_test_per_neuron=floor_test / n, n_neurons=n,
                    mean_k_train=float(np.asarray(train, dtype=np.float64).sum(1).mean()),
                    log_z_repeats=",".join(f"{r:.6g}" for r in log_z.repeats))
    return fit.model, ds


def model_comparison(*, session: str, selected: dict, statistics: dict, couplings: xr.Dataset,
                     pairwise: xr.Dataset, pairwise_statistics: dict,
                     test_energies: tuple[np.ndarray, np.ndarray] | None = None
                     ) -> dict[str, object]:
    """What the RBM's hidden units buy over the pairwise model, for one session.

    Parameters
    ----------
    session
        Session id.
    selected, statistics
        Attributes of the RBM's ``selected.nc`` and ``statistics.nc``.
    couplings
        The RBM's ``couplings.nc`` (its effective ``J``, spin convention, docs/methods.md §6).
    pairwise
        ``pairwise.nc`` (:func:`fit_session`; ``J`` in the same convention).
    pairwise_statistics
        Attributes of ``pairwise_statistics.nc`` (scored like the RBM's statistics).
    test_energies
        Optional ``(F_rbm, E_pairwise)``, the RBM's free energy and the pairwise energy of every
        test bin (shape (T,) each): then ``rbm_minus_pairwise_sem`` is the standard error of
        the paired per-bin log-likelihood difference over the test bins (the log Z terms are
        constants and cancel), the test-set sampling error of the gain that ``*_std`` (log Z
        only) leaves out.

    Returns
    -------
    dict
        ``session``, ``n_neurons``, ``n_hidden``; test log-likelihoods per neuron (nats per
        neuron per sample) ``ll_test_rbm``, ``ll_test_pairwise``, ``ll_test_independent`` with
        ``*_std`` (the log Z uncertainty per neuron; 0 for the independent model, whose
        ``log Z`` is exact), ``ll_test_pairwise_sem`` (standard error of the mean test energy,
        per neuron), the gains ``rbm_minus_pairwise`` and ``pairwise_minus_independent`` (with
        ``*_std`` = the log Z uncertainties added in quadrature); the scores
        ``score_covariance_*``, ``score_corr3_*`` (rbm, pairwise; the independent model scores
        0 by definition) and ``equilibrated_*``; ``log_z_method_*``; the couplings comparison
        ``j_pearson_r``, ``j_slope``, ``j_intercept``, ``j_n_pairs``
        (:func:`compare_couplings`, RBM ``J`` against pairwise ``J``); with ``test_energies``,
        ``rbm_minus_pairwise_sem`` (per neuron; NaN without).

    Raises
    ------
    ValueError
        When the two models do not describe the same neurons.
    """
    u_rbm = np.asarray(couplings["unit_id"].values)
    u_pw = np.asarray(pairwise["unit_id"].values)
    if u_rbm.shape != u_pw.shape or not np.array_equal(u_rbm, u_pw):
        raise ValueError(f"session {session}: couplings.nc and pairwise.nc list different "
                         "neurons; recompute both from the same raster.nc")
    n = u_rbm.size
    j = compare_couplings(pairwise["J"].transpose("neuron", "neuron2").values,
                          couplings["J"].transpose("neuron", "neuron2").values)
    ll_rbm = float(selected["ll_test"]) / n
    ll_rbm_std = float(selected.get("ll_test_std", math.nan)) / n
    ll_pw = float(pairwise.attrs["ll_test_per_neuron"])
    ll_pw_std = float(pairwise.attrs["ll_test_std"]) / n
    ll_ind = float(selected.get("floor_test", pairwise.attrs["floor_test"])) / n
    paired_sem = math.nan
    if test_energies is not None:
        f_rbm, e_pw = (np.asarray(x, dtype=np.float64) for x in test_energies)
        if f_rbm.shape != e_pw.shape or f_rbm.ndim != 1 or f_rbm.size < 2:
            raise ValueError(f"test energies must be two equal 1-d arrays; got {f_rbm.shape}, "
                             f"{e_pw.shape}")
        # per-bin LL difference = (E_pw - F_rbm) + const: its sem over the test bins
        paired_sem = float(np.std(e_pw - f_rbm, ddof=1) / math.sqrt(f_rbm.size)) / n
    return {
        "session": session,
        "n_neurons": n,
        "n_hidden": int(selected["n_hidden"]),
        "ll_test_rbm": ll_rbm,
        "ll_test_rbm_std": ll_rbm_std,
        "ll_test_pairwise": ll_pw,
        "ll_test_pairwise_std": ll_pw_std,
        "ll_test_pairwise_sem": float(pairwise.attrs.get("ll_test_sem", math.nan)) / n,
        "ll_test_independent": ll_ind,
        "ll_test_independent_std": 0.0,
        "rbm_minus_pairwise": ll_rbm - ll_pw,
        "rbm_minus_pairwise_std": math.hypot(ll_rbm_std, ll_pw_std),
        "rbm_minus_pairwise_sem": paired_sem,
        "pairwise_minus_independent": ll_pw - ll_ind,
        "pairwise_minus_independent_std": ll_pw_std,
        "log_z_method_rbm": str(selected.get("log_z_method", "n/a")),
        "log_z_method_pairwise": str(pairwise.attrs.get("log_z_method", "n/a")),
        "score_covariance_rbm": float(statistics.get("score_covariance", math.nan)),
        "score_covariance_pairwise": float(pairwise_statistics.get("score_covariance", math.nan)),
        "score_corr3_rbm": float(statistics.get("score_corr3", math.nan)),
        "score_corr3_pairwise": float(pairwise_statistics.get("score_corr3", math.nan)),
        "equilibrated_rbm": int(statistics.get("equilibrated", -1)),
        "equilibrated_pairwise": int(pairwise_statistics.get("equilibrated", -1)),
        "j_pearson_r": j["pearson_r"],
        "j_slope": j["slope"],
        "j_intercept": j["intercept"],
        "j_n_pairs": j["n_pairs"],
    }
