"""Parallel trajectory tempering (PTT): replica exchange along a training trajectory.

Béreux, Decelle, Furtlehner, Rosset, Seoane, "Fast training and sampling of Restricted
Boltzmann Machines", ICLR 2025 (arXiv:2405.15376), Sec. 4, and their package ``fastrbm``
(``fastrbm/trajectory/pt.py``, ``ptt_sampling_bernoulli.py``); docs/methods.md §5.

Instead of a ladder of temperatures, PTT uses a ladder of *models*: the checkpoints
``theta_0, theta_1, ..., theta_L`` saved along one PCD training run (``model.nc``), the last
one the model to sample. Early checkpoints are close to the independent-site model and mix in
a few sweeps; the learned modes appear gradually along training, so neighbouring checkpoints
share most of their typical configurations and swaps between them are often accepted. One
PTT step is

1. ``swap_every`` block-Gibbs sweeps of every model's chains (the models are the replicas of
   one :class:`spikerbm.sampling.Chains`);
2. one pass of swap proposals between neighbours ``(0, 1), (1, 2), ..., (L-1, L)`` in this
   order (the pass of fastrbm's ``swap_config_multi``): chain ``c`` of model ``l`` (state
   ``x_l``) and chain ``c`` of model ``l+1`` (state ``x_{l+1}``) exchange their states with
   probability

       min(1, exp(E_l(x_l) + E_{l+1}(x_{l+1}) - E_l(x_{l+1}) - E_{l+1}(x_l)))

   with ``E_l`` the visible free energy of model ``l`` (float64, :func:`spikerbm.rbm.free_energy`).

Each swap is a Metropolis move that leaves the product distribution ``prod_l p_l(x_l)``
invariant (its acceptance ratio is exactly ``p_l(x_{l+1}) p_{l+1}(x_l) / (p_l(x_l)
p_{l+1}(x_{l+1}))``: the partition functions cancel), and so is every Gibbs sweep; the chains
of the last model therefore sample ``p_L`` exactly in the long run, whatever the ladder. The
ladder only decides how fast: a configuration found by the fast-mixing early models climbs to
the target through accepted swaps, so modes that a single Gibbs chain of ``p_L`` would need
exponentially long to reach are visited.

Implementation: the ladder is one :class:`~spikerbm.rbm.RBM` with a replica axis
(:meth:`~spikerbm.rbm.RBM.stack`) and its chains are replica chains of any
:class:`~spikerbm.sampling.Sampler` (module docstring of :mod:`spikerbm.sampling`): on CUDA
with the fused sampler, one kernel launch per half sweep samples every model of the ladder
(batched on the GPU); with library products the replicas' products run in turn. Every model
draws from the one generator given (fused chains: one Philox key per model drawn from it). The
swap pass is batched over chains (one ``torch.where`` per pair on views of the replica states,
no host synchronisation). Acceptance rates per neighbour pair are accumulated on the device.

:class:`TrajectoryTempering` is itself a :class:`~spikerbm.sampling.Chains` of the target
model: ``v`` are the target's chains and :meth:`~TrajectoryTempering.sweep` runs PTT steps, so
every consumer of chains (the equilibrium sampler of :mod:`spikerbm.statistics`, the model API
of :mod:`spikerbm.model`) uses it unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from spikerbm.rbm import RBM, free_energy
from spikerbm.sampling import Chains, Sampler

__all__ = ["TrajectoryTempering", "ladder_indices"]


def ladder_indices(checkpoints: Sequence[int], target: int, *, max_models: int | None = None
                   ) -> list[int]:
    """Indices of the checkpoints that form a PTT ladder ending at ``target``.

    Parameters
    ----------
    checkpoints
        Update numbers of the saved checkpoints, ascending (``model.nc`` coordinate
        ``checkpoint``).
    target
        The update to sample (must be one of ``checkpoints``).
    max_models
        Keep at most this many models (>= 2): the first and the target always, the rest
        evenly spaced in index between them (checkpoints are log-spaced in updates, so this is
        log-spaced too). ``None`` keeps every checkpoint up to the target.

    Returns
    -------
    list of int
        Ascending indices into ``checkpoints``; the last is the target's.

    Raises
    ------
    ValueError
        When ``target`` is not a checkpoint or ``max_models < 2``.
    """
    ck = [int(c) for c in checkpoints]
    if int(target) not in ck:
        raise ValueError(f"update {target} is not a saved checkpoint (checkpoints: {ck})")
    last = ck.index(int(target))
    idx = list(range(last + 1))
    if max_models is not None:
        if max_models < 2:
            raise ValueError(f"a PTT ladder needs at least 2 models; got max_models={max_models}")
        if len(idx) > max_models:
            idx = sorted({int(round(x)) for x in np.linspace(0, last, max_models)})
    return idx


class TrajectoryTempering:
    """PTT chains over a ladder of models (module docstring); a :class:`Chains` of the target.

    Parameters
    ----------
    models
        The ladder, in training order; the last model is the target. All share the numbers of
        visible and hidden units. At least 2 models.
    v0
        Initial visible states of every model's chains, shape (n_chains, n_visible) (the same
        for all models) or (n_models, n_chains, n_visible); values in {0, 1}.
    generator
        A ``torch.Generator`` on the sampler's device: the chains' randomness (unless the
        sampler is fused) and the swap uniforms.
    sampler
        How each model's chains are sampled (default: float32 library products on the
        generator's device, :class:`spikerbm.sampling.Sampler`).
    swap_every
        Gibbs sweeps of every model between two swap passes (fastrbm's ``increment``,
        default 1: a swap pass costs about two sweeps' worth of products per pair).
    labels
        Optional update numbers of the models (reported with the acceptance rates).

    Attributes
    ----------
    models
        The ladder (float32 on the device).
    ladder
        The same models as one RBM with a leading replica axis (n_models, ...).
    acceptance
        Swap acceptance rate of each neighbour pair ``(l, l+1)`` averaged over the swap passes
        so far, float64 numpy array of shape (n_models - 1,) (NaN before the first pass).
    n_swap_passes
        Swap passes so far.
    """

    def __init__(self, models: Sequence[RBM], *, v0: torch.Tensor, generator: torch.Generator,
                 sampler: Sampler | None = None, swap_every: int = 1,
                 labels: Sequence[int] | None = None) -> None:
        models = list(models)
        if len(models) < 2:
            raise ValueError(f"PTT needs a ladder of at least 2 models; got {len(models)}")
        shape = tuple(models[-1].W.shape)
        for k, m in enumerate(models):
            if tuple(m.W.shape) != shape:
                raise ValueError(f"ladder model {k} has W of shape {tuple(m.W.shape)}; the "
                                 f"target has {shape}: every model must have the same sizes")
        if int(swap_every) != swap_every or swap_every < 1:
            raise ValueError(f"swap_every must be an integer >= 1; got {swap_every!r}")
        if labels is not None and len(labels) != len(models):
            raise ValueError(f"{len(labels)} labels for {len(models)} models")
        device = generator.device
        self.sampler = sampler or Sampler(device)
        if self.sampler.device.type != device.type:
            raise ValueError(f"generator on {device}, sampler on {self.sampler.device}")
        self.models = [m.to(device=device, dtype=torch.float32) for m in models]
        self.ladder = RBM.stack(self.models)
        self._models64 = [m.to(device=device, dtype=torch.float64) for m in models]
        self.labels = None if labels is None else [int(x) for x in labels]
        self.swap_every = int(swap_every)
        self._gen = generator
        n_models = len(models)
        v0 = torch.as_tensor(v0).to(device)
        if v0.ndim == 2:
            v0 = v0.unsqueeze(0).expand(n_models, *v0.shape)
        if v0.ndim != 3 or v0.shape[0] != n_models or v0.shape[2] != shape[0]:
            raise ValueError(f"v0 must have shape (n_chains, {shape[0]}) or ({n_models}, "
                             f"n_chains, {shape[0]}); got {tuple(v0.shape)}")
        self._chains: Chains = self.sampler.chains(v0, n_hidden=shape[1],
                                                   generator=[generator] * n_models)
        self._accepted = torch.zeros(n_models - 1, dtype=torch.float64, device=device)
        self.n_swap_passes = 0

    # -- Chains protocol (of the target model) ----------------------------------------------
    @property
    def v(self) -> torch.Tensor:
        """The target model's chains (n_chains, n_visible); writable in place."""
        return self._chains.v[-1]

    @property
    def h(self) -> torch.Tensor:
        return self._chains.h[-1]

    @property
    def n_replicas(self) -> None:
        """None: the chains of one (target) model."""
        return None

    @property
    def n_chains(self) -> int:
        return self._chains.n_chains

    @property
    def n_visible(self) -> int:
        return self._chains.n_visible

    @property
    def n_hidden(self) -> int:
        return self._chains.n_hidden

    @property
    def n_models(self) -> int:
        return len(self.models)

    capturable = False

    def sweep(self, rbm: RBM | None = None, *, k: int = 1, beta: float = 1.0) -> None:
        """Run ``k`` PTT steps (each: ``swap_every`` sweeps of every model, then a swap pass).

        ``rbm``, when given, must be the target model (same shape; it is not used otherwise:
        the ladder is fixed at construction); ``beta`` must be 1 (PTT tempers along the
        trajectory, not in temperature).
        """
        if beta != 1.0:
            raise ValueError("PTT samples the ladder's models themselves; beta must be 1")
        if rbm is not None and tuple(rbm.W.shape) != tuple(self.models[-1].W.shape):
            raise ValueError(f"RBM of shape {tuple(rbm.W.shape)} is not this ladder's target "
                             f"{tuple(self.models[-1].W.shape)}")
        if k < 0:
            raise ValueError(f"k (number of PTT steps) must be >= 0; got {k}")
        for _ in range(k):
            self._chains.sweep(self.ladder, k=self.swap_every)
            self.swap()

    def hidden_means(self, rbm: RBM | None = None) -> torch.Tensor:
        return self._chains.hidden_means(self.ladder)[-1]

    def uniform(self) -> torch.Tensor:
        return torch.rand(1, generator=self._gen, dtype=torch.float64, device=self.v.device)

    # -- swaps --------------------------------------------------------------------------------
    def swap(self) -> torch.Tensor:
        """One pass of swap proposals between neighbours (0,1), (1,2), ... (in place).

        Returns
        -------
        torch.Tensor
            Fraction of chains that swapped for each pair in this pass, float64 (n_models - 1,)
            on the device.
        """
        m64 = self._models64
        dev = self.v.device
        n = self.n_chains
        rates = torch.empty(self.n_models - 1, dtype=torch.float64, device=dev)
        v = self._chains.v  # (n_models, n_chains, N): pairs are views of it
        x_lo = v[0]
        e_lo_lo = free_energy(m64[0], x_lo)  # E_l(x_l), carried along the pass
        for lo in range(self.n_models - 1):
            hi = lo + 1
            x_lo, x_hi = v[lo], v[hi]
            e_lo_hi = free_energy(m64[lo], x_hi)
            e_hi_lo = free_energy(m64[hi], x_lo)
            e_hi_hi = free_energy(m64[hi], x_hi)
            log_ratio = e_lo_lo + e_hi_hi - e_lo_hi - e_hi_lo
            u = torch.rand(n, generator=self._gen, dtype=torch.float64, device=dev)
            accept = torch.log(u) < log_ratio  # u < min(1, exp(log_ratio))
            mask = accept.unsqueeze(1)
            new_lo = torch.where(mask, x_hi, x_lo)
            new_hi = torch.where(mask, x_lo, x_hi)
            x_lo.copy_(new_lo)
            x_hi.copy_(new_hi)
            rates[lo] = accept.to(torch.float64).mean()
            # E_{l+1} of what now sits at l+1: x_lo if swapped, else x_hi
            e_lo_lo = torch.where(accept, e_hi_lo, e_hi_hi)
        self._accepted += rates
        self.n_swap_passes += 1
        return rates

    @property
    def acceptance(self) -> np.ndarray:
        if self.n_swap_passes == 0:
            return np.full(self.n_models - 1, np.nan)
        return (self._accepted / self.n_swap_passes).cpu().numpy()

    def chains_of(self, index: int) -> torch.Tensor:
        """Current visible states of the chains of ladder model ``index``."""
        return self._chains.v[index]

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """``v`` (target, uint8), ``ladder_v`` (all models, uint8, (n_models, n_chains, N)),
        ``rng`` (the generator state), ``philox`` with fused chains (one key per model),
        ``accepted``, ``n_swap_passes``."""
        chains = self._chains.state_dict()
        state: dict[str, torch.Tensor] = {
            "v": chains["v"][-1].clone(),
            "ladder_v": chains["v"],
            "rng": self._gen.get_state(),
            "accepted": self._accepted.cpu().clone(),
            "n_swap_passes": torch.tensor(self.n_swap_passes, dtype=torch.int64),
        }
        if "philox" in chains:
            state["philox"] = chains["philox"]
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore a :meth:`state_dict` of a ladder of the same shape."""
        ladder = torch.as_tensor(state["ladder_v"])
        if ladder.shape[0] != self.n_models:
            raise ValueError(f"state has {ladder.shape[0]} ladder models; this PTT has "
                             f"{self.n_models}")
        rng = torch.as_tensor(state["rng"]).to(torch.uint8).cpu()
        sub = {"v": ladder, "rng": rng.expand(self.n_models, -1)}  # one generator, every model
        if "philox" in state:
            sub["philox"] = state["philox"]
        self._chains.load_state_dict(sub)
        self._gen.set_state(rng.clone())
        self._accepted.copy_(torch.as_tensor(state["accepted"]).to(self._accepted.device))
        self.n_swap_passes = int(torch.as_tensor(state["n_swap_passes"]).item())
