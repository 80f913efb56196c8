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
  machine without Triton, or as split bfloat16 products with float32 accuracy
  (``split_bf16``: :func:`spikerbm.rbm.binary_mm`; AIS on CUDA). Uniforms come from a
  ``torch.Generator`` (or another uniform source, see the class). Every buffer is
  preallocated, so a sweep allocates nothing.
* :class:`FusedChains`: CUDA only, one fused Triton kernel per half sweep
  (:func:`spikerbm.kernels.half_sweep`) with bfloat16 operands and counter-based Philox
  uniforms keyed by a device tensor, so the sweeps of a whole PCD update can be captured in a
  CUDA graph (``capturable``).

Randomness belongs to the chains: :meth:`Chains.sweep` and :meth:`Chains.uniform` draw from the
generator (or Philox key) given at construction, and :meth:`Chains.state_dict` carries its
state, so a run restored from a state dict continues bitwise identically (on CPU).

Replicas
--------
R models of one shape (e.g. trained from R seeds: an :class:`~spikerbm.rbm.RBM` whose
parameters have a leading replica axis) are sampled by one :class:`Chains` object whose states
have the same leading axis: ``v0`` of shape (R, n_chains, n_visible) makes replica chains, and
the protocol's calls stay the same (``v``, ``h``, :meth:`Chains.hidden_means` and
:meth:`Chains.uniform` gain the leading axis; ``beta`` is shared). Each replica has its own
randomness (one generator, or one Philox key, per replica), so replica ``r`` of a batch runs
the chain that one-model chains with replica ``r``'s parameters, states and randomness run:
bitwise on CPU (:class:`PersistentChains` runs the replicas' products in turn), the same
random stream on CUDA (:class:`FusedChains` sweeps all replicas in one launch per half sweep).
:func:`stack_chains` makes replica chains out of R one-model chains, continuing each one's
random stream (the batched training engine, :class:`spikerbm.pcd.PCDEngine`), and
:func:`unstack_chains` copies their states back.

Nothing here computes an energy (energies are float64, :mod:`spikerbm.rbm`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from spikerbm.rbm import (
    RBM,
    SPLIT_TERMS,
    binary_mm,
    split_bf16,
    split_products_available,
    tf32_matmul,
)

log = logging.getLogger(__name__)

__all__ = [
    "Chains",
    "FusedChains",
    "PersistentChains",
    "Sampler",
    "gibbs_sample",
    "random_states",
    "stack_chains",
    "unstack_chains",
]

#: A source of uniforms: fills its argument in place with U[0, 1) draws.
UniformSource = Callable[[torch.Tensor], object]
#: The randomness of one model's :class:`PersistentChains`.
Randomness = torch.Generator | UniformSource


@runtime_checkable
class Chains(Protocol):
    """Block-Gibbs chains of an RBM, or of R replicas (module docstring).

    Attributes
    ----------
    v
        Current visible states ([n_replicas,] n_chains, n_visible), 0/1 in the chains' dtype;
        may be written in place (``chains.v.copy_(states)``) to set the states.
    h
        Hidden states ([n_replicas,] n_chains, n_hidden) drawn by the last sweep.
    n_replicas
        Number of replicas, or ``None`` for chains of one model (no replica axis).
    n_chains, n_visible, n_hidden
        Sizes (per replica).
    capturable
        True when a sweep has no host synchronisation and draws its randomness from device
        state, so that it can be captured in a CUDA graph and replayed with fresh randomness.
    """

    v: torch.Tensor
    h: torch.Tensor

    @property
    def n_replicas(self) -> int | None: ...

    @property
    def n_chains(self) -> int: ...

    @property
    def n_visible(self) -> int: ...

    @property
    def n_hidden(self) -> int: ...

    @property
    def capturable(self) -> bool: ...

    def sweep(self, rbm: RBM, *, k: int = 1, beta: float = 1.0) -> None:
        """Run ``k`` sweeps in place at inverse temperature ``beta`` (model ``(βW, a, βb)``;
        ``rbm`` has the chains' replica axis, or none)."""

    def hidden_means(self, rbm: RBM) -> torch.Tensor:
        """``p(h = 1 | v)`` of the current states at ``beta = 1`` (float32 or the chains'
        dtype; a buffer overwritten by the next call or sweep: clone it to keep it)."""

    def uniform(self, n: int = 1) -> torch.Tensor:
        """``n`` float64 uniforms in [0, 1) per replica from the chains' randomness, shape
        (n_replicas, n) (or (n,) without a replica axis; one device call for any ``n``)."""

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
    split_bf16
        Run the float32 products of :class:`PersistentChains` as split bfloat16 products
        (:func:`spikerbm.rbm.binary_mm`: bfloat16 tensor cores, float32 accuracy; use where
        :func:`spikerbm.rbm.split_products_available`). Off CUDA they are emulated in float32
        (for tests). Needs float32, excludes ``fused`` and ``tf32``.
    """

    device: torch.device
    fused: bool = False
    tf32: bool = False
    dtype: torch.dtype = torch.float32
    split_bf16: bool = False

    def __post_init__(self) -> None:
        if self.split_bf16 and (self.fused or self.tf32 or self.dtype != torch.float32):
            raise ValueError("split_bf16 runs float32 products: it needs dtype float32 and "
                             f"neither fused nor tf32; got fused={self.fused}, "
                             f"tf32={self.tf32}, dtype={self.dtype}")

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
    def for_model(cls, rbm: RBM, *, split_bf16: bool = False) -> Sampler:
        """Library products in the model's own dtype on its device, no TF32 (with
        ``split_bf16``: split bfloat16 products of float32 accuracy, see the attribute)."""
        return cls(rbm.device, dtype=rbm.dtype, split_bf16=split_bf16)

    def chains(self, v0: torch.Tensor, *, n_hidden: int,
               generator: Randomness | Sequence[Randomness] | None = None,
               seed: int | Sequence[int] | None = None) -> Chains:
        """New chains started at the visible states ``v0``; copied.

        Parameters
        ----------
        v0
            Initial visible states in {0, 1}: (n_chains, n_visible) for one model, or
            (n_replicas, n_chains, n_visible) for replicas.
        n_hidden
            Hidden units of the models the chains will be run with.
        generator
            Randomness of :class:`PersistentChains`: a ``torch.Generator`` on ``device`` or a
            uniform source, one per replica (a sequence) for replicas; required unless
            ``fused``.
        seed
            Initial Philox key of :class:`FusedChains` (one per replica for replicas);
            default: one draw from each ``generator``.
        """
        v0 = v0.to(self.device)
        replicas = v0.ndim == 3
        if self.split_bf16 and self.device.type == "cuda" and not split_products_available(
                self.device):
            raise ValueError(f"split_bf16 needs bfloat16 tensor cores (compute capability >= "
                             f"8.0) and torch.mm with float32 output on {self.device}; use "
                             "Sampler(device) (float32 products) there")
        if self.fused:
            if seed is None:
                gens = _per_replica(generator, v0, "generator")
                if gens is None or not all(isinstance(g, torch.Generator) for g in gens):
                    raise ValueError("fused chains need Philox seeds or torch.Generators")
                seeds = [int(torch.randint(0, 2**62, (1,), generator=g, device=g.device).item())
                         for g in gens]
                seed = seeds if replicas else seeds[0]
            return FusedChains(v0, n_hidden=n_hidden, seed=seed)
        if generator is None:
            raise ValueError("PersistentChains need a generator (a torch.Generator on "
                             f"{self.device} or a uniform source; one per replica)")
        return PersistentChains(v0, n_hidden=n_hidden, generator=generator, dtype=self.dtype,
                                tf32=self.tf32, split_bf16=self.split_bf16)


def _per_replica(value, v: torch.Tensor, name: str) -> list | None:
    """``value`` as a list with one entry per replica of the states ``v`` (one entry without
    a replica axis); ``None`` stays ``None``."""
    if value is None:
        return None
    if v.ndim == 2:
        if isinstance(value, (list, tuple)):
            raise ValueError(f"chains of one model take one {name}, not a sequence")
        return [value]
    if not isinstance(value, (list, tuple)) or len(value) != v.shape[0]:
        raise ValueError(f"{v.shape[0]} replicas need a sequence of {v.shape[0]} {name}s, one "
                         f"per replica; got {type(value).__name__}"
                         + (f" of length {len(value)}" if isinstance(value, (list, tuple))
                            else ""))
    return list(value)


def _check_states(v: torch.Tensor) -> None:
    if v.ndim not in (2, 3):
        raise ValueError("chains must have shape (n_chains, n_visible), or (n_replicas, "
                         f"n_chains, n_visible) for replicas; got {tuple(v.shape)}")


def _check_model(rbm: RBM, *, n_replicas: int | None, n_visible: int, n_hidden: int) -> None:
    if rbm.n_replicas != n_replicas or (rbm.n_visible, rbm.n_hidden) != (n_visible, n_hidden):
        what = "one model" if n_replicas is None else f"{n_replicas} replicas"
        raise ValueError(
            f"RBM of shape {tuple(rbm.W.shape)} does not match chains with {n_visible} visible "
            f"and {n_hidden} hidden units of {what}"
        )


class PersistentChains:
    """Block-Gibbs chains with library products and preallocated buffers (:class:`Chains`).

    Parameters
    ----------
    v
        Initial visible states, shape (n_chains, n_visible), or (n_replicas, n_chains,
        n_visible) for replicas; values in {0, 1}; copied.
    n_hidden
        Number of hidden units of the RBMs these chains will be run with.
    generator
        The only source of randomness: a ``torch.Generator`` on the chains' device, or any
        callable that fills a tensor in place with U[0, 1) draws (then :meth:`state_dict`
        holds no generator state); for replicas a sequence of them, one per replica. Each half
        sweep of a replica fills one buffer of the layer's shape: first the hidden, then the
        visible uniforms.
    dtype
        Floating dtype of the chains and buffers (float32 for training).
    tf32
        Allow TF32 in the two products of a sweep (CUDA float32 only; no effect on CPU).
    split_bf16
        Run the two products as split bfloat16 products of float32 accuracy
        (:func:`spikerbm.rbm.split_bf16`, :func:`spikerbm.rbm.binary_mm`; float32 chains only):
        the biases and ``beta`` are applied to their float32 output. The split of ``W`` (and
        of ``W.T``) is computed at the first :meth:`sweep` or :meth:`hidden_means` with a
        weight tensor and kept while that tensor is unchanged: a new tensor, or an in-place
        change through torch (which advances its version counter), makes the next call
        split again. (Writes that bypass the counter, e.g. through ``W.data`` or a NumPy
        view, are not seen: do not change weights that way between sweeps; an inference
        tensor, which has no version counter, is split at every call.) Splitting allocates
        its float32 remainder; the sweeps allocate nothing. Off CUDA the products are
        emulated in float32 (for tests).

    Replicas run in turn, each with the very calls of one-model chains on views of the shared
    buffers, so replica ``r`` is bitwise the chain of one-model chains with its parameters,
    states and generator (on CPU; the products of one replica do not depend on the others).
    """

    capturable = False

    def __init__(self, v: torch.Tensor, *, n_hidden: int,
                 generator: Randomness | Sequence[Randomness],
                 dtype: torch.dtype = torch.float32, tf32: bool = False,
                 split_bf16: bool = False) -> None:
        _check_states(v)
        if n_hidden < 1:
            raise ValueError(f"n_hidden must be >= 1; got {n_hidden}")
        if split_bf16 and dtype != torch.float32:
            raise ValueError(f"split_bf16 chains are float32; got dtype {dtype}")
        self.generators = _per_replica(generator, v, "generator")
        self.generator = self.generators[0] if v.ndim == 2 else None
        self._replicas = int(v.shape[0]) if v.ndim == 3 else None
        v3 = v if v.ndim == 3 else v.unsqueeze(0)
        n_rep, n_chains, n_visible = v3.shape
        dev = v.device
        self.tf32 = bool(tf32)
        self._v = v3.to(dtype=dtype).clone()
        self._h = torch.zeros(n_rep, n_chains, n_hidden, dtype=dtype, device=dev)
        self._ph = torch.empty(n_rep, n_chains, n_hidden, dtype=dtype, device=dev)
        self._pv = torch.empty(n_rep, n_chains, n_visible, dtype=dtype, device=dev)
        self._uh = torch.empty(n_rep, n_chains, n_hidden, dtype=dtype, device=dev)
        self._uv = torch.empty(n_rep, n_chains, n_visible, dtype=dtype, device=dev)
        self._mh = torch.empty(n_rep, n_chains, n_hidden, dtype=torch.bool, device=dev)
        self._mv = torch.empty(n_rep, n_chains, n_visible, dtype=torch.bool, device=dev)
        self.split_bf16 = bool(split_bf16)
        if self.split_bf16:  # operands of the split products, and the splits of W and W.T
            bf16, s = torch.bfloat16, SPLIT_TERMS
            self._xv = torch.empty(n_rep, n_chains, s, n_visible, dtype=bf16, device=dev)
            self._xh = torch.empty(n_rep, n_chains, s, n_hidden, dtype=bf16, device=dev)
            self._parts = torch.empty(n_rep, s, n_visible, n_hidden, dtype=bf16, device=dev)
            self._parts_t = torch.empty(n_rep, s, n_hidden, n_visible, dtype=bf16, device=dev)
            self._split_of: list[tuple | None] = [None] * n_rep  # (W, its key) per replica

    def _out(self, t: torch.Tensor) -> torch.Tensor:
        """A buffer as the caller sees it: with the replica axis, or replica 0's view."""
        return t if self._replicas is not None else t[0]

    @property
    def v(self) -> torch.Tensor:
        """Visible states ([n_replicas,] n_chains, n_visible) (a view; writable in place)."""
        return self._out(self._v)

    @property
    def h(self) -> torch.Tensor:
        """Hidden states drawn in the last sweep ([n_replicas,] n_chains, n_hidden)."""
        return self._out(self._h)

    @property
    def n_replicas(self) -> int | None:
        return self._replicas

    @property
    def n_chains(self) -> int:
        return int(self._v.shape[1])

    @property
    def n_visible(self) -> int:
        return int(self._v.shape[2])

    @property
    def n_hidden(self) -> int:
        return int(self._h.shape[2])

    def _check(self, rbm: RBM) -> None:
        _check_model(rbm, n_replicas=self._replicas, n_visible=self.n_visible,
                     n_hidden=self.n_hidden)
        if rbm.dtype != self._v.dtype or rbm.device != self._v.device:
            raise ValueError(
                f"RBM ({rbm.dtype}, {rbm.device}) and chains ({self._v.dtype}, "
                f"{self._v.device}) must share dtype and device; move one with .to(...)"
            )

    def _models(self, rbm: RBM) -> list[RBM]:
        return [rbm] if self._replicas is None else [rbm.replica(r)
                                                     for r in range(self._replicas)]

    @staticmethod
    def _uniform_(out: torch.Tensor, generator: Randomness) -> torch.Tensor:
        if isinstance(generator, torch.Generator):
            return out.uniform_(generator=generator)
        generator(out)
        return out

    def sweep(self, rbm: RBM, *, k: int = 1, beta: float = 1.0) -> None:
        """Run ``k`` block-Gibbs sweeps in place (``h ~ p(h|v)``, then ``v ~ p(v|h)``) of the
        model ``(beta W, a, beta b)`` (``rbm``: same dtype, device and replica axis as the
        chains)."""
        self._check(rbm)
        if k < 0:
            raise ValueError(f"k (number of sweeps) must be >= 0; got {k}")
        with self._products():
            for r, (model, gen) in enumerate(zip(self._models(rbm), self.generators, strict=True)):
                v, h, ph, pv = self._v[r], self._h[r], self._ph[r], self._pv[r]
                uh, uv, mh, mv = self._uh[r], self._uv[r], self._mh[r], self._mv[r]
                if self.split_bf16 and k > 0:
                    self._split(r, model.W)
                for _ in range(k):
                    self._hidden_input(r, model, beta).sigmoid_()
                    torch.lt(self._uniform_(uh, gen), ph, out=mh)
                    h.copy_(mh)
                    self._visible_input(r, model, beta).sigmoid_()
                    torch.lt(self._uniform_(uv, gen), pv, out=mv)
                    v.copy_(mv)

    def _hidden_input(self, r: int, model: RBM, beta: float) -> torch.Tensor:
        """``beta (b + v W)`` of replica ``r`` into its buffer ``_ph`` (returned)."""
        v, out = self._v[r], self._ph[r]
        if not self.split_bf16:
            scale = {} if beta == 1.0 else {"beta": beta, "alpha": beta}
            return torch.addmm(model.b, v, model.W, out=out, **scale)
        binary_mm(v, self._parts[r], out=out, x_buf=self._xv[r])
        out.add_(model.b)
        return out if beta == 1.0 else out.mul_(beta)

    def _visible_input(self, r: int, model: RBM, beta: float) -> torch.Tensor:
        """``a + beta h W^T`` of replica ``r`` into its buffer ``_pv`` (returned)."""
        h, out = self._h[r], self._pv[r]
        if not self.split_bf16:
            scale = {} if beta == 1.0 else {"alpha": beta}
            return torch.addmm(model.a, h, model.W.T, out=out, **scale)
        binary_mm(h, self._parts_t[r], out=out, x_buf=self._xh[r])
        return torch.add(model.a, out, alpha=beta, out=out)

    def _split(self, r: int, W: torch.Tensor) -> None:
        """Split replica ``r``'s ``W`` and ``W.T`` into the bfloat16 parts, unless they hold
        this very tensor's current values already (same storage, shape, strides and version
        counter; the cached reference keeps the storage alive, so no other tensor can take
        its address)."""
        version = None if W.is_inference() else W._version  # inference tensors have none
        key = (W.data_ptr(), tuple(W.shape), W.stride(), version)
        cached = self._split_of[r]
        if cached is not None and version is not None and cached[1] == key:
            return
        split_bf16(W, out=self._parts[r])
        split_bf16(W.T, out=self._parts_t[r])
        self._split_of[r] = (W, key)

    def _products(self) -> contextlib.AbstractContextManager:
        """TF32 allowed or forbidden in the products on CUDA (no such setting on the CPU)."""
        return tf32_matmul(self.tf32) if self._v.is_cuda else contextlib.nullcontext()

    def hidden_means(self, rbm: RBM) -> torch.Tensor:
        """``p(h = 1 | v)`` of the current chains, written into (and returning) a buffer."""
        self._check(rbm)
        with self._products():
            for r, model in enumerate(self._models(rbm)):
                if self.split_bf16:
                    self._split(r, model.W)
                self._hidden_input(r, model, 1.0).sigmoid_()
        return self._out(self._ph)

    def uniform(self, n: int = 1) -> torch.Tensor:
        """``n`` float64 uniforms per replica, shape (n_replicas, n) (or (n,))."""
        out = torch.empty(len(self.generators), n, dtype=torch.float64, device=self._v.device)
        for r, gen in enumerate(self.generators):
            if isinstance(gen, torch.Generator):
                out[r] = torch.rand(n, generator=gen, dtype=torch.float64,
                                    device=self._v.device)
            else:
                self._uniform_(out[r], gen)
        return self._out(out)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``v`` (uint8) and, with ``torch.Generator`` randomness, ``rng`` (uint8 generator
        state; (n_replicas, state size) for replicas)."""
        state = {"v": self.v.to(torch.uint8).cpu()}
        if all(isinstance(g, torch.Generator) for g in self.generators):
            rngs = [g.get_state() for g in self.generators]
            state["rng"] = rngs[0] if self._replicas is None else torch.stack(rngs)
        return state

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        _load_states(self.v, state)
        if all(isinstance(g, torch.Generator) for g in self.generators):
            if "rng" not in state:
                raise ValueError("chain state lacks 'rng' (the generator state)")
            rng = torch.as_tensor(state["rng"]).to(torch.uint8).cpu()
            rngs = [rng] if self._replicas is None else list(rng)
            if self._replicas is not None and (rng.ndim != 2 or len(rngs) != self._replicas):
                raise ValueError(f"chain state has generator states of shape "
                                 f"{tuple(rng.shape)}; these chains have {self._replicas} "
                                 "replicas (one state row each)")
            for g, st in zip(self.generators, rngs, strict=True):
                g.set_state(st.clone())  # its own storage: set_state ignores view offsets


def _load_states(v: torch.Tensor, state: Mapping[str, torch.Tensor]) -> None:
    if "v" not in state:
        raise ValueError("chain state lacks 'v' (the visible states)")
    new = torch.as_tensor(state["v"])
    if tuple(new.shape) != tuple(v.shape):
        raise ValueError(f"chain state has {tuple(new.shape)} states; these chains have "
                         f"{tuple(v.shape)} ([n_replicas x] n_chains x n_visible)")
    v.copy_(new.to(device=v.device, dtype=v.dtype))


def stack_chains(chains: Sequence[Chains]) -> Chains:
    """One replica :class:`Chains` object (R, n_chains, n_visible) over R one-model chains of
    one kind and shape, continuing each one's random stream.

    The states are copied; :class:`PersistentChains` replicas share the one-model chains'
    generators (the very objects, so those advance as the replicas draw), :class:`FusedChains`
    replicas start from the one-model chains' Philox keys (copied on the device, no host
    synchronisation). Replica ``r`` then runs exactly the chain that ``chains[r]`` would run
    (module docstring). :func:`unstack_chains` copies the states (and keys) back.

    Raises
    ------
    ValueError
        When the chains are not all one-model chains of one kind and shape.
    """
    first = chains[0] if chains else None
    if first is None or any(type(c) is not type(first) or c.n_replicas is not None
                            or c.v.shape != first.v.shape or c.n_hidden != first.n_hidden
                            for c in chains):
        raise ValueError("stack_chains needs one or more one-model chains of one kind and shape; "
                         f"got {[(type(c).__name__, tuple(c.v.shape)) for c in chains]}")
    v = torch.stack([c.v for c in chains])
    if isinstance(first, FusedChains):
        out = FusedChains(v, n_hidden=first.n_hidden, seed=[0] * len(chains))
        out.seed.copy_(torch.cat([c.seed for c in chains]))
        return out
    if isinstance(first, PersistentChains):
        return PersistentChains(v, n_hidden=first.n_hidden,
                                generator=[c.generators[0] for c in chains],
                                dtype=first.v.dtype, tf32=first.tf32,
                                split_bf16=first.split_bf16)
    raise ValueError(f"stack_chains cannot stack {type(first).__name__}")


def unstack_chains(batched: Chains, chains: Sequence[Chains]) -> None:
    """Copy the states of the replica chains ``batched`` (made by :func:`stack_chains`) back
    into the one-model ``chains``, and with them the Philox keys of fused chains (the
    generators of :class:`PersistentChains` are shared already), so that each one-model
    object's :meth:`Chains.state_dict` is its replica's state. No host synchronisation."""
    if batched.n_replicas != len(chains):
        raise ValueError(f"{batched.n_replicas} replicas cannot go back into {len(chains)} "
                         "chains")
    for r, c in enumerate(chains):
        c.v.copy_(batched.v[r])
        if isinstance(c, FusedChains):
            c.seed.copy_(batched.seed[r:r + 1])


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
    :func:`spikerbm.kernels.half_sweep`: product, bias, Philox uniforms and Bernoulli test in
    one kernel, states stored as bfloat16 0/1 (exact). ``W`` enters the products rounded to
    bfloat16 (see :mod:`spikerbm.kernels` for the precision argument and its test). Randomness
    is counter-based: the Philox key of half sweep ``j`` of a :meth:`sweep` call is
    ``seed[r] + j`` for replica ``r`` and each call advances the device tensor ``seed``, so
    sweeps can be captured in a CUDA graph and replayed with fresh randomness. All replicas
    are swept by one launch per half sweep; replica ``r``'s random stream depends on its own
    key only (the same as one-model chains with that key).

    Parameters
    ----------
    v
        Initial visible states (n_chains, n_visible), or (n_replicas, n_chains, n_visible) for
        replicas, in {0, 1} on a CUDA device; copied. (With ``TRITON_INTERPRET=1`` the chains
        also run on the CPU, in Triton's interpreter: slow, for tests.)
    n_hidden
        Hidden units of the RBMs these chains will be run with.
    seed
        Initial Philox key (e.g. ``derive_seed(seed, "philox-chains")``); for replicas one key
        per replica (a sequence of ints), e.g. derived from the replica's own seed. Keys are
        used as ``seed[r] + t`` for t up to the number of half sweeps run, so keys drawn at
        random from 2^62 never make two replicas share a stream in practice.
    """

    capturable = True

    def __init__(self, v: torch.Tensor, *, n_hidden: int, seed: int | Sequence[int]) -> None:
        from spikerbm import kernels

        _check_states(v)
        if not (kernels.available(v.device) or (v.device.type == "cpu"
                                                and kernels.interpreting())):
            raise RuntimeError(f"fused CUDA kernels cannot run on {v.device} (need CUDA and "
                               "Triton); use PersistentChains")
        seeds = _per_replica(seed, v, "seed")
        self._replicas = int(v.shape[0]) if v.ndim == 3 else None
        v3 = v if v.ndim == 3 else v.unsqueeze(0)
        n_rep, n_chains, n_visible = v3.shape
        dev, bf16 = v.device, torch.bfloat16
        nv, nh = kernels.padded(n_visible), kernels.padded(n_hidden)
        self._n, self._m = int(n_visible), int(n_hidden)
        self._v = torch.zeros(n_rep, n_chains, nv, dtype=bf16, device=dev)
        self._v[:, :, :n_visible] = v3
        self._h = torch.zeros(n_rep, n_chains, nh, dtype=bf16, device=dev)
        self._w = torch.zeros(n_rep, nv, nh, dtype=bf16, device=dev)
        self._wt = torch.zeros(n_rep, nh, nv, dtype=bf16, device=dev)
        self._ph = torch.empty(n_rep, n_chains, nh, dtype=torch.float32, device=dev)
        self._u: dict[int, torch.Tensor] = {}  # uniform buffers (n_rep, n) by n
        self._beta = 1.0  # inverse temperature of the operands copied by the last load
        self.seed = torch.tensor([int(s) for s in seeds], dtype=torch.int64, device=dev)

    def _out(self, t: torch.Tensor) -> torch.Tensor:
        return t if self._replicas is not None else t[0]

    @property
    def v(self) -> torch.Tensor:
        """Visible states ([n_replicas,] n_chains, n_visible), a bfloat16 view."""
        return self._out(self._v[:, :, :self._n])

    @property
    def h(self) -> torch.Tensor:
        """Hidden states drawn in the last sweep ([n_replicas,] n_chains, n_hidden), a
        bfloat16 view."""
        return self._out(self._h[:, :, :self._m])

    @property
    def n_replicas(self) -> int | None:
        return self._replicas

    @property
    def n_chains(self) -> int:
        return int(self._v.shape[1])

    @property
    def n_visible(self) -> int:
        return self._n

    @property
    def n_hidden(self) -> int:
        return self._m

    def load(self, rbm: RBM, *, beta: float = 1.0) -> None:
        """Copy ``beta W`` (and its transpose) of ``rbm`` into the bfloat16 operands
        (graph-capturable)."""
        _check_model(rbm, n_replicas=self._replicas, n_visible=self._n, n_hidden=self._m)
        self._w[:, :self._n, :self._m].copy_(rbm.W)
        self._wt[:, :self._m, :self._n].copy_(rbm.W.transpose(-1, -2))
        if beta != 1.0:
            self._w.mul_(beta)
            self._wt.mul_(beta)
        self._beta = float(beta)

    def sweep(self, rbm: RBM, *, k: int = 1, beta: float = 1.0, load: bool = True) -> None:
        """Run ``k`` sweeps in place of ``(beta W, a, beta b)`` (``rbm``: float32, on the
        chains' device, with their replica axis).

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
        return self._out(self._ph[:, :, :self._m])

    def uniform(self, n: int = 1) -> torch.Tensor:
        """``n`` float64 uniforms per replica, shape (n_replicas, n) (or (n,)), a buffer kept
        per ``n`` (allocated at the first call, i.e. before any graph capture); advances
        ``seed`` by one."""
        from spikerbm.kernels import uniform_

        if n not in self._u:
            self._u[n] = torch.empty(self.seed.shape[0], n, dtype=torch.float64,
                                     device=self.seed.device)
        uniform_(self._u[n], seed=self.seed)
        self.seed.add_(1)
        return self._out(self._u[n])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``v`` (uint8) and ``philox`` (int64, (n_replicas,) or (1,): the keys of the next
        sweep)."""
        return {"v": self.v.to(torch.uint8).cpu(), "philox": self.seed.cpu().clone()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        _load_states(self.v, state)
        if "philox" not in state:
            raise ValueError("fused chain state lacks 'philox' (the Philox key)")
        keys = torch.as_tensor(state["philox"]).reshape(-1)
        if keys.shape != self.seed.shape:
            raise ValueError(f"fused chain state has {keys.numel()} Philox keys; these chains "
                             f"have {self.seed.numel()} (one per replica)")
        self.seed.copy_(keys.to(self.seed.device))
