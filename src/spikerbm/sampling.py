"""Block-Gibbs chains of RBMs: one interface, two implementations, one factory.

One Monte Carlo sweep (docs/methods.md §2) is ``h ~ p(h | v)`` then ``v ~ p(v | h)``. At inverse
temperature ``beta`` the sweep samples the model ``(beta W, a, beta b)``: the geometric path
``p_beta ∝ p_0^(1 - beta) p^beta`` from the independent-site model ``p_0`` (same visible bias
``a``, ``W = 0``, ``b = 0``) to the RBM, along which AIS anneals (docs/methods.md §4).

Every block-Gibbs sampler of the package is a :class:`Chains` object (persistent chains of PCD,
trajectory-AIS and AIS chains, the equilibrium chains of the statistics and dynamics stages, the
planted raster of :mod:`spikerbm.synthetic`), made by :meth:`Sampler.chains`. A
:class:`Sampler` is chosen once, from the ``train.precision`` setting and the device
(:meth:`Sampler.from_precision`) or from a model's own dtype (:meth:`Sampler.for_model`);
callers then only use the :class:`Chains` protocol and never look at the implementation:

* :class:`PersistentChains`: library matrix products in the chains' dtype (float32, or
  float64 for references), with TF32 on CUDA when the precision is ``tf32`` or ``bf16`` on a
  machine without Triton. Uniforms come from a ``torch.Generator`` (or another uniform source,
  see the class). Every buffer is preallocated, so a sweep allocates nothing.
* :class:`FusedChains`: CUDA only, one fused Triton kernel per half sweep
  (:func:`spikerbm.kernels.half_sweep`) with bfloat16 operands and counter-based Philox
  uniforms keyed by a device tensor, so the sweeps of a whole PCD update can be captured in a
  CUDA graph (``capturable``).

Randomness belongs to the chains: :meth:`Chains.sweep` and :meth:`Chains.uniform` draw from the
generator (or Philox key) given at construction, and :meth:`Chains.state_dict` carries its
state, so a run restored from a state dict continues bitwise identically (on CPU).

Batched replicas (several models sampled at once) would add a leading replica axis to the
parameters, to ``v``/``h`` and to ``beta``; the protocol's calls stay the same.

Nothing here computes an energy (energies are float64, :mod:`spikerbm.rbm`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from spikerbm.rbm import RBM, tf32_matmul

log = logging.getLogger(__name__)

__all__ = [
    "Chains",
    "FusedChains",
    "PersistentChains",
    "Sampler",
    "gibbs_sample",
    "random_states",
]

#: A source of uniforms: fills its argument in place with U[0, 1) draws.
UniformSource = Callable[[torch.Tensor], object]


@runtime_checkable
class Chains(Protocol):
    """Block-Gibbs chains of an RBM (module docstring).

    Attributes
    ----------
    v
        Current visible states (n_chains, n_visible), 0/1 in the chains' dtype; may be written in
        place (``chains.v.copy_(states)``) to set the states.
    h
        Hidden states (n_chains, n_hidden) drawn by the last sweep.
    n_chains, n_visible, n_hidden
        Sizes.
    capturable
        True when a sweep has no host synchronisation and draws its randomness from device
        state, so that it can be captured in a CUDA graph and replayed with fresh randomness.
    """

    v: torch.Tensor
    h: torch.Tensor

    @property
    def n_chains(self) -> int: ...

    @property
    def n_visible(self) -> int: ...

    @property
    def n_hidden(self) -> int: ...

    @property
    def capturable(self) -> bool: ...

    def sweep(self, rbm: RBM, *, k: int = 1, beta: float = 1.0) -> None:
        """Run ``k`` sweeps in place at inverse temperature ``beta`` (model ``(βW, a, βb)``)."""

    def hidden_means(self, rbm: RBM) -> torch.Tensor:
        """``p(h = 1 | v)`` of the current states at ``beta = 1`` (float32 or the chains'
        dtype; a buffer overwritten by the next call or sweep: clone it to keep it)."""

    def uniform(self, n: int = 1) -> torch.Tensor:
        """``n`` float64 uniforms in [0, 1), shape (n,), from the chains' randomness (one
        device call for any ``n``)."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The states (``v``, uint8) and the state of the randomness, as CPU tensors."""

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore a :meth:`state_dict` (shapes must match)."""


def random_states(*, n_chains: int, n_visible: int, generator: torch.Generator,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bernoulli(1/2) visible states (n_chains, n_visible), drawn with ``generator`` on its
    device (docs/methods.md §3: the initial PCD chains)."""
    u = torch.rand(n_chains, n_visible, generator=generator, dtype=dtype,
                   device=generator.device)
    return (u < 0.5).to(dtype)


@dataclass(frozen=True)
class Sampler:
    """How chains are sampled: implementation, device, dtype and TF32, chosen once.

    Attributes
    ----------
    device
        Where the chains live.
    fused
        Use :class:`FusedChains` (CUDA + Triton, bfloat16 operands).
    tf32
        Allow TF32 in the float32 products of :class:`PersistentChains` (CUDA only).
    dtype
        dtype of :class:`PersistentChains` (float32, or float64 for exact references).
    """

    device: torch.device
    fused: bool = False
    tf32: bool = False
    dtype: torch.dtype = torch.float32

    @classmethod
    def from_precision(cls, precision: str, device: torch.device | str) -> Sampler:
        """The sampler of a ``train.precision`` setting (``float32`` | ``tf32`` | ``bf16``).

        ``bf16`` runs :class:`FusedChains` where the fused kernels can run (CUDA with Triton)
        and otherwise falls back, saying so in the log: to TF32 library products on a CUDA
        device without Triton, to float32 on the CPU (TF32 does not exist there).
        """
        from spikerbm import kernels

        if precision not in ("float32", "tf32", "bf16"):
            raise ValueError(f"precision must be float32, tf32 or bf16; got {precision!r}")
        device = torch.device(device)
        if precision == "bf16" and kernels.available(device):
            return cls(device, fused=True, tf32=True)
        if precision == "bf16":
            if device.type == "cuda":
                log.warning("precision bf16 needs Triton, which this torch build lacks: "
                            "sampling runs in TF32 with the library products instead")
            else:
                log.info("precision bf16 applies to CUDA only: sampling runs in float32 on %s",
                         device)
        return cls(device, tf32=precision != "float32")

    @classmethod
    def for_model(cls, rbm: RBM) -> Sampler:
        """Library products in the model's own dtype on its device, no TF32."""
        return cls(rbm.device, dtype=rbm.dtype)

    def chains(self, v0: torch.Tensor, *, n_hidden: int,
               generator: torch.Generator | UniformSource | None = None,
               seed: int | None = None) -> Chains:
        """New chains started at the visible states ``v0`` (n_chains, n_visible); copied.

        Parameters
        ----------
        v0
            Initial visible states in {0, 1}.
        n_hidden
            Hidden units of the models the chains will be run with.
        generator
            Randomness of :class:`PersistentChains`: a ``torch.Generator`` on ``device`` or a
            uniform source; required unless ``fused``.
        seed
            Initial Philox key of :class:`FusedChains`; default: one draw from ``generator``.
        """
        v0 = v0.to(self.device)
        if self.fused:
            if seed is None:
                if not isinstance(generator, torch.Generator):
                    raise ValueError("fused chains need a Philox seed or a torch.Generator")
                seed = int(torch.randint(0, 2**62, (1,), generator=generator,
                                         device=generator.device).item())
            return FusedChains(v0, n_hidden=n_hidden, seed=seed)
        if generator is None:
            raise ValueError("PersistentChains need a generator (a torch.Generator on "
                             f"{self.device} or a uniform source)")
        return PersistentChains(v0, n_hidden=n_hidden, generator=generator, dtype=self.dtype,
                                tf32=self.tf32)


class PersistentChains:
    """Block-Gibbs chains with library products and preallocated buffers (:class:`Chains`).

    Parameters
    ----------
    v
        Initial visible states, shape (n_chains, n_visible), values in {0, 1}; copied.
    n_hidden
        Number of hidden units of the RBMs these chains will be run with.
    generator
        The only source of randomness: a ``torch.Generator`` on the chains' device, or any
        callable that fills a tensor in place with U[0, 1) draws (then :meth:`state_dict`
        holds no generator state). Each half sweep fills one buffer of the layer's shape:
        first the hidden, then the visible uniforms.
    dtype
        Floating dtype of the chains and buffers (float32 for training).
    tf32
        Allow TF32 in the two products of a sweep (CUDA float32 only; no effect on CPU).
    """

    capturable = False

    def __init__(self, v: torch.Tensor, *, n_hidden: int,
                 generator: torch.Generator | UniformSource,
                 dtype: torch.dtype = torch.float32, tf32: bool = False) -> None:
        if v.ndim != 2:
            raise ValueError(f"chains must have shape (n_chains, n_visible); got {tuple(v.shape)}")
        if n_hidden < 1:
            raise ValueError(f"n_hidden must be >= 1; got {n_hidden}")
        n_chains, n_visible = v.shape
        dev = v.device
        self.generator = generator
        self.tf32 = bool(tf32)
        self.v = v.to(dtype=dtype).clone()
        self.h = torch.zeros(n_chains, n_hidden, dtype=dtype, device=dev)
        self._ph = torch.empty(n_chains, n_hidden, dtype=dtype, device=dev)
        self._pv = torch.empty(n_chains, n_visible, dtype=dtype, device=dev)
        self._uh = torch.empty(n_chains, n_hidden, dtype=dtype, device=dev)
        self._uv = torch.empty(n_chains, n_visible, dtype=dtype, device=dev)
        self._mh = torch.empty(n_chains, n_hidden, dtype=torch.bool, device=dev)
        self._mv = torch.empty(n_chains, n_visible, dtype=torch.bool, device=dev)

    @property
    def n_chains(self) -> int:
        return int(self.v.shape[0])

    @property
    def n_visible(self) -> int:
        return int(self.v.shape[1])

    @property
    def n_hidden(self) -> int:
        return int(self.h.shape[1])

    def _check(self, rbm: RBM) -> None:
        if rbm.W.shape != (self.n_visible, self.n_hidden):
            raise ValueError(
                f"RBM of shape {tuple(rbm.W.shape)} does not match chains with "
                f"{self.n_visible} visible and {self.n_hidden} hidden units"
            )
        if rbm.dtype != self.v.dtype or rbm.device != self.v.device:
            raise ValueError(
                f"RBM ({rbm.dtype}, {rbm.device}) and chains ({self.v.dtype}, {self.v.device}) "
                "must share dtype and device; move one with .to(...)"
            )

    def _uniform_(self, out: torch.Tensor) -> torch.Tensor:
        if isinstance(self.generator, torch.Generator):
            return out.uniform_(generator=self.generator)
        self.generator(out)
        return out

    def sweep(self, rbm: RBM, *, k: int = 1, beta: float = 1.0) -> None:
        """Run ``k`` block-Gibbs sweeps in place (``h ~ p(h|v)``, then ``v ~ p(v|h)``) of the
        model ``(beta W, a, beta b)`` (``rbm``: same dtype and device as the chains)."""
        self._check(rbm)
        if k < 0:
            raise ValueError(f"k (number of sweeps) must be >= 0; got {k}")
        Wt = rbm.W.T
        hidden = {} if beta == 1.0 else {"beta": beta, "alpha": beta}  # (beta W, beta b)
        visible = {} if beta == 1.0 else {"alpha": beta}  # (beta W^T, a)
        with self._products():
            for _ in range(k):
                torch.addmm(rbm.b, self.v, rbm.W, out=self._ph, **hidden).sigmoid_()
                torch.lt(self._uniform_(self._uh), self._ph, out=self._mh)
                self.h.copy_(self._mh)
                torch.addmm(rbm.a, self.h, Wt, out=self._pv, **visible).sigmoid_()
                torch.lt(self._uniform_(self._uv), self._pv, out=self._mv)
                self.v.copy_(self._mv)

    def _products(self) -> contextlib.AbstractContextManager:
        """TF32 allowed or forbidden in the products on CUDA (no such setting on the CPU)."""
        return tf32_matmul(self.tf32) if self.v.is_cuda else contextlib.nullcontext()

    def hidden_means(self, rbm: RBM) -> torch.Tensor:
        """``p(h = 1 | v)`` of the current chains, written into (and returning) a buffer."""
        self._check(rbm)
        with self._products():
            return torch.addmm(rbm.b, self.v, rbm.W, out=self._ph).sigmoid_()

    def uniform(self, n: int = 1) -> torch.Tensor:
        """``n`` float64 uniforms, shape (n,)."""
        if isinstance(self.generator, torch.Generator):
            return torch.rand(n, generator=self.generator, dtype=torch.float64,
                              device=self.v.device)
        return self._uniform_(torch.empty(n, dtype=torch.float64, device=self.v.device))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``v`` (uint8) and, with a ``torch.Generator``, ``rng`` (its uint8 state)."""
        state = {"v": self.v.to(torch.uint8).cpu()}
        if isinstance(self.generator, torch.Generator):
            state["rng"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        _load_states(self.v, state)
        if isinstance(self.generator, torch.Generator):
            if "rng" not in state:
                raise ValueError("chain state lacks 'rng' (the generator state)")
            self.generator.set_state(torch.as_tensor(state["rng"]).to(torch.uint8).cpu())


def _load_states(v: torch.Tensor, state: Mapping[str, torch.Tensor]) -> None:
    if "v" not in state:
        raise ValueError("chain state lacks 'v' (the visible states)")
    new = torch.as_tensor(state["v"])
    if tuple(new.shape) != tuple(v.shape):
        raise ValueError(f"chain state has {tuple(new.shape)} states; these chains have "
                         f"{tuple(v.shape)} (n_chains x n_visible)")
    v.copy_(new.to(device=v.device, dtype=v.dtype))


def gibbs_sample(rbm: RBM, v0: torch.Tensor, *, k: int,
                 generator: torch.Generator) -> torch.Tensor:
    """Run ``k`` sweeps from ``v0`` in the RBM's dtype and return the final visible states.

    Convenience wrapper around :meth:`Sampler.for_model` chains for one-off sampling.
    """
    chains = Sampler.for_model(rbm).chains(v0, n_hidden=rbm.n_hidden, generator=generator)
    chains.sweep(rbm, k=k)
    return chains.v


class FusedChains:
    """Chains sampled on CUDA with one fused bfloat16 kernel per half sweep (:class:`Chains`).

    The same Markov chain as :class:`PersistentChains`, run with
    :func:`spikerbm.kernels.half_sweep`: product, bias, sigmoid, Philox uniforms and comparison
    in one kernel, states stored as bfloat16 0/1 (exact). ``W`` enters the products rounded to
    bfloat16 (see :mod:`spikerbm.kernels` for the precision argument and its test). Randomness
    is counter-based: the Philox key of half sweep ``j`` of a :meth:`sweep` call is
    ``seed + j`` and each call advances the device tensor ``seed``, so sweeps can be captured
    in a CUDA graph and replayed with fresh randomness.

    Parameters
    ----------
    v
        Initial visible states (n_chains, n_visible) in {0, 1} on a CUDA device; copied.
    n_hidden
        Hidden units of the RBMs these chains will be run with.
    seed
        Initial Philox key (e.g. ``derive_seed(seed, "philox-chains")``).
    """

    capturable = True

    def __init__(self, v: torch.Tensor, *, n_hidden: int, seed: int) -> None:
        from spikerbm import kernels

        if v.ndim != 2:
            raise ValueError(f"chains must have shape (n_chains, n_visible); got {tuple(v.shape)}")
        if not kernels.available(v.device):
            raise RuntimeError(f"fused CUDA kernels cannot run on {v.device} (need CUDA and "
                               "Triton); use PersistentChains")
        n_chains, n_visible = v.shape
        dev, bf16 = v.device, torch.bfloat16
        nv, nh = kernels.padded(n_visible), kernels.padded(n_hidden)
        self._n, self._m = int(n_visible), int(n_hidden)
        self._v = torch.zeros(n_chains, nv, dtype=bf16, device=dev)
        self._v[:, :n_visible] = v
        self._h = torch.zeros(n_chains, nh, dtype=bf16, device=dev)
        self._w = torch.zeros(nv, nh, dtype=bf16, device=dev)
        self._wt = torch.zeros(nh, nv, dtype=bf16, device=dev)
        self._ph = torch.empty(n_chains, nh, dtype=torch.float32, device=dev)
        self._u: dict[int, torch.Tensor] = {}  # uniform buffers by size
        self._beta = 1.0  # inverse temperature of the operands copied by the last load
        self.seed = torch.tensor([int(seed)], dtype=torch.int64, device=dev)

    @property
    def v(self) -> torch.Tensor:
        """Visible states (n_chains, n_visible), a bfloat16 view."""
        return self._v[:, :self._n]

    @property
    def h(self) -> torch.Tensor:
        """Hidden states drawn in the last sweep (n_chains, n_hidden), a bfloat16 view."""
        return self._h[:, :self._m]

    @property
    def n_chains(self) -> int:
        return int(self._v.shape[0])

    @property
    def n_visible(self) -> int:
        return self._n

    @property
    def n_hidden(self) -> int:
        return self._m

    def load(self, rbm: RBM, *, beta: float = 1.0) -> None:
        """Copy ``beta W`` (and its transpose) of ``rbm`` into the bfloat16 operands
        (graph-capturable)."""
        if rbm.W.shape != (self._n, self._m):
            raise ValueError(f"RBM of shape {tuple(rbm.W.shape)} does not match chains with "
                             f"{self._n} visible and {self._m} hidden units")
        self._w[:self._n, :self._m].copy_(rbm.W)
        self._wt[:self._m, :self._n].copy_(rbm.W.T)
        if beta != 1.0:
            self._w.mul_(beta)
            self._wt.mul_(beta)
        self._beta = float(beta)

    def sweep(self, rbm: RBM, *, k: int = 1, beta: float = 1.0, load: bool = True) -> None:
        """Run ``k`` sweeps in place of ``(beta W, a, beta b)`` (``rbm``: float32, on the
        chains' device).

        ``load=False`` reuses the operand copy of ``W`` made by the last :meth:`load` (which
        must have been at the same ``beta``).
        """
        from spikerbm.kernels import half_sweep

        if load:
            self.load(rbm, beta=beta)
        b = rbm.b if beta == 1.0 else beta * rbm.b
        for s in range(k):
            half_sweep(self._v, self._w, b, out=self._h, seed=self.seed, seed_offset=2 * s)
            half_sweep(self._h, self._wt, rbm.a, out=self._v, seed=self.seed,
                       seed_offset=2 * s + 1)
        self.seed.add_(2 * k)

    def hidden_means(self, rbm: RBM) -> torch.Tensor:
        """``p(h = 1 | v)`` (float32 view of a buffer overwritten by the next call), computed
        with the operand copy of ``W`` made by the last sweep or :meth:`load` (reloaded first
        when that was at another ``beta`` than 1)."""
        from spikerbm.kernels import half_sweep

        if self._beta != 1.0:
            self.load(rbm)
        half_sweep(self._v, self._w, rbm.b, out=None, prob=self._ph)
        return self._ph[:, :self._m]

    def uniform(self, n: int = 1) -> torch.Tensor:
        """``n`` float64 uniforms, shape (n,) (a buffer kept per ``n``, allocated at the first
        call, i.e. before any graph capture); advances ``seed`` by one."""
        from spikerbm.kernels import uniform_

        if n not in self._u:
            self._u[n] = torch.empty(n, dtype=torch.float64, device=self.seed.device)
        uniform_(self._u[n], seed=self.seed)
        self.seed.add_(1)
        return self._u[n]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``v`` (uint8) and ``philox`` (int64, (1,): the key of the next sweep)."""
        return {"v": self.v.to(torch.uint8).cpu(), "philox": self.seed.cpu().clone()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        _load_states(self.v, state)
        if "philox" not in state:
            raise ValueError("fused chain state lacks 'philox' (the Philox key)")
        self.seed.copy_(torch.as_tensor(state["philox"]).reshape(1).to(self.seed.device))
