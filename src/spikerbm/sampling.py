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
