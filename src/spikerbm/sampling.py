"""Block Gibbs sampling of persistent RBM chains with fixed shapes and preallocated buffers.

One Monte Carlo sweep (METHODS §2) is ``h ~ p(h | v)`` then ``v ~ p(v | h)``. The chains live in
a :class:`PersistentChains` object that owns every buffer a sweep needs (hidden and visible
probabilities, uniforms, comparison masks), so a sweep allocates nothing: products go through
``torch.addmm(..., out=)``, nonlinearities are in place and the Bernoulli draws compare a buffer
of uniforms with the probabilities into a preallocated boolean mask.

The matrix products run in the chains' dtype (float32 in training) and may use TF32 on CUDA when
``tf32=True`` (:func:`spikerbm.rbm.tf32_matmul`); nothing here computes an energy.
"""

from __future__ import annotations

import torch

from spikerbm.rbm import RBM, tf32_matmul


class PersistentChains:
    """Persistent Gibbs chains of an RBM and the buffers one sweep needs.

    Parameters
    ----------
    v
        Initial visible states, shape (n_chains, n_visible), values in {0, 1}; copied.
    n_hidden
        Number of hidden units of the RBMs these chains will be run with.
    dtype
        Floating dtype of the chains and buffers (float32 for training).

    Attributes
    ----------
    v, h
        Current visible (n_chains, n_visible) and hidden (n_chains, n_hidden) states (0./1.).
        ``h`` is the hidden state drawn in the last sweep (a sweep starts from ``v``).
    """

    def __init__(self, v: torch.Tensor, *, n_hidden: int,
                 dtype: torch.dtype = torch.float32) -> None:
        if v.ndim != 2:
            raise ValueError(f"chains must have shape (n_chains, n_visible); got {tuple(v.shape)}")
        if n_hidden < 1:
            raise ValueError(f"n_hidden must be >= 1; got {n_hidden}")
        n_chains, n_visible = v.shape
        dev = v.device
        self.v = v.to(dtype=dtype).clone()
        self.h = torch.zeros(n_chains, n_hidden, dtype=dtype, device=dev)
        self._ph = torch.empty(n_chains, n_hidden, dtype=dtype, device=dev)
        self._pv = torch.empty(n_chains, n_visible, dtype=dtype, device=dev)
        self._uh = torch.empty(n_chains, n_hidden, dtype=dtype, device=dev)
        self._uv = torch.empty(n_chains, n_visible, dtype=dtype, device=dev)
        self._mh = torch.empty(n_chains, n_hidden, dtype=torch.bool, device=dev)
        self._mv = torch.empty(n_chains, n_visible, dtype=torch.bool, device=dev)

    @classmethod
    def random(cls, *, n_chains: int, n_visible: int, n_hidden: int,
               generator: torch.Generator, dtype: torch.dtype = torch.float32) -> PersistentChains:
        """Chains started from Bernoulli(1/2) visible states (METHODS §3).

        The draw uses ``generator`` (on the chains' device), so it is reproducible.
        """
        u = torch.rand(n_chains, n_visible, generator=generator, dtype=dtype,
                       device=generator.device)
        return cls((u < 0.5).to(dtype), n_hidden=n_hidden, dtype=dtype)

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

    def sweep(self, rbm: RBM, *, generator: torch.Generator, k: int = 1,
              tf32: bool = False) -> None:
        """Run ``k`` block-Gibbs sweeps in place (``h ~ p(h|v)``, then ``v ~ p(v|h)``).

        Parameters
        ----------
        rbm
            The model (same dtype and device as the chains).
        generator
            Random generator on the chains' device; the only source of randomness.
        k
            Number of sweeps.
        tf32
            Allow TF32 in the two matrix products (CUDA float32 only; no effect on CPU).
        """
        self._check(rbm)
        if k < 0:
            raise ValueError(f"k (number of sweeps) must be >= 0; got {k}")
        Wt = rbm.W.T
        with tf32_matmul(tf32):
            for _ in range(k):
                torch.addmm(rbm.b, self.v, rbm.W, out=self._ph).sigmoid_()
                self._uh.uniform_(generator=generator)
                torch.lt(self._uh, self._ph, out=self._mh)
                self.h.copy_(self._mh)
                torch.addmm(rbm.a, self.h, Wt, out=self._pv).sigmoid_()
                self._uv.uniform_(generator=generator)
                torch.lt(self._uv, self._pv, out=self._mv)
                self.v.copy_(self._mv)

    def hidden_means(self, rbm: RBM, *, tf32: bool = False) -> torch.Tensor:
        """``p(h = 1 | v)`` of the current chains, written into (and returning) a buffer.

        The returned tensor is overwritten by the next sweep; clone it to keep it.
        """
        self._check(rbm)
        with tf32_matmul(tf32):
            return torch.addmm(rbm.b, self.v, rbm.W, out=self._ph).sigmoid_()


def gibbs_sample(rbm: RBM, v0: torch.Tensor, *, k: int, generator: torch.Generator,
                 tf32: bool = False) -> torch.Tensor:
    """Run ``k`` sweeps from ``v0`` and return the final visible states (a new tensor).

    Convenience wrapper around :class:`PersistentChains` for one-off sampling.
    """
    chains = PersistentChains(v0.to(device=rbm.device), n_hidden=rbm.n_hidden, dtype=rbm.dtype)
    chains.sweep(rbm, generator=generator, k=k, tf32=tf32)
    return chains.v


class FusedChains:
    """Persistent chains sampled on CUDA with one fused bfloat16 kernel per half sweep.

    The same Markov chain as :class:`PersistentChains` (``h ~ p(h|v)``, then ``v ~ p(v|h)``),
    run with :func:`spikerbm.kernels.half_sweep`: product, bias, sigmoid, Philox uniforms and
    comparison in one kernel, states stored as bfloat16 0/1 (exact). ``W`` enters the products
    rounded to bfloat16 (see :mod:`spikerbm.kernels` for the precision argument and its test).
    Randomness is counter-based: the Philox key of half sweep ``j`` of a :meth:`sweep` call is
    ``seed + j`` and each call advances the device tensor ``seed``, so sweeps can be captured
    in a CUDA graph and replayed with fresh randomness.

    Parameters
    ----------
    v
        Initial visible states (n_chains, n_visible) in {0, 1} on a CUDA device; copied.
    n_hidden
        Hidden units of the RBMs these chains will be run with.
    seed
        Initial Philox key (e.g. ``derive_seed(seed, "chains")``).
    """

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
        self._u = torch.empty(1, dtype=torch.float64, device=dev)
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

    def load(self, rbm: RBM) -> None:
        """Copy ``W`` (and ``W^T``) of ``rbm`` into the bfloat16 operands (graph-capturable)."""
        if rbm.W.shape != (self._n, self._m):
            raise ValueError(f"RBM of shape {tuple(rbm.W.shape)} does not match chains with "
                             f"{self._n} visible and {self._m} hidden units")
        self._w[:self._n, :self._m].copy_(rbm.W)
        self._wt[:self._m, :self._n].copy_(rbm.W.T)

    def sweep(self, rbm: RBM, *, k: int = 1, load: bool = True) -> None:
        """Run ``k`` sweeps in place with ``rbm`` (float32, on the chains' device).

        ``load=False`` reuses the operand copy of ``W`` made by the last :meth:`load`.
        """
        from spikerbm.kernels import half_sweep

        if load:
            self.load(rbm)
        for s in range(k):
            half_sweep(self._v, self._w, rbm.b, out=self._h, seed=self.seed, seed_offset=2 * s)
            half_sweep(self._h, self._wt, rbm.a, out=self._v, seed=self.seed,
                       seed_offset=2 * s + 1)
        self.seed.add_(2 * k)

    def hidden_means(self, rbm: RBM) -> torch.Tensor:
        """``p(h = 1 | v)`` (float32 view of a buffer overwritten by the next call), computed
        with the operand copy of ``W`` made by the last :meth:`load`."""
        from spikerbm.kernels import half_sweep

        half_sweep(self._v, self._w, rbm.b, out=None, prob=self._ph)
        return self._ph[:, :self._m]

    def uniform(self) -> torch.Tensor:
        """One float64 uniform, shape (1,) (a buffer); advances ``seed`` by one."""
        from spikerbm.kernels import uniform_

        uniform_(self._u, seed=self.seed)
        self.seed.add_(1)
        return self._u
