"""Bernoulli-Bernoulli Restricted Boltzmann Machine: parameters, energies, conditionals.

Conventions (docs/methods.md §2): visible ``v`` in {0,1}^N, hidden ``h`` in {0,1}^M, weights
``W`` of shape (N, M), visible bias ``a`` (N,), hidden bias ``b`` (M,). On disk visible unit
``i`` is neuron ``i``: ``W(neuron, hidden)``, ``a(neuron)``, ``b(hidden)``.

Precision policy
----------------
Matrix products inside sampling run in the RBM's dtype (float32) and may use TF32 on CUDA when
the training config asks for it (``precision: tf32``; ``bf16`` samples with the fused kernels of
:mod:`spikerbm.kernels`). Every *energy* and *likelihood* is computed in float64
(:func:`free_energy`, :func:`energy`, :func:`hidden_free_energy` cast to float64 first), so
reduced-precision products can never touch them, with one exception: the trajectory-AIS
increment :func:`free_energy_difference` on the fused bf16 path (``split_bf16``). There the
products ``x = b + v W`` and ``d = db + v dW`` (``dW`` the parameter step) come from one
bfloat16 tensor-core product of the 0/1 states (exact in bfloat16) with ``W`` and ``dW`` each
split into two bfloat16 terms, ``W = hi + lo`` (``hi = bf16(W)``, ``lo = bf16(W - hi)``:
``|W - hi - lo| <= 2^-18 |W|``), accumulated in float32: ``x`` and ``d`` are float32-accurate
(relative ~2^-18 per entry plus the float32 accumulation), the rest of the increment is
float64. That is precise enough because ``x`` enters only at second order: an error ``e`` in
``x`` changes ``softplus(x + d) - softplus(x)`` by ``(sigmoid(x + d) - sigmoid(x)) e ~
sigmoid'(x) d e <= |d e| / 4``, while an error in ``d`` enters at first order but ``d`` is small
and float32-accurate, so each increment is off by about ``1e-5`` of its own size (float64
products of the same quantities cost 2 x 2 x chains x N x M float64 flops per update: at least
a third of the cost of trajectory AIS on an H200, far more on GPUs with slow float64;
docs/methods.md §4, "Increments").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class RBM:
    """Parameters of a Bernoulli RBM, or of R replicas of one (a leading replica axis).

    Attributes
    ----------
    W
        Weights, shape ([R,] n_visible, n_hidden).
    a
        Visible biases, shape ([R,] n_visible).
    b
        Hidden biases, shape ([R,] n_hidden).

    Replicas (R models of the same shape, e.g. trained from different seeds) are sampled
    together by :mod:`spikerbm.sampling`; the energy and probability functions of this module
    take one model (:meth:`replica` gives replica ``r``).
    """

    W: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor

    def __post_init__(self) -> None:
        if self.W.ndim not in (2, 3):
            raise ValueError(
                "W must be 2-d (n_visible, n_hidden), or 3-d (n_replicas, n_visible, "
                f"n_hidden) for replicas; got shape {tuple(self.W.shape)}"
            )
        *lead, n, m = self.W.shape
        if tuple(self.a.shape) != (*lead, n) or tuple(self.b.shape) != (*lead, m):
            raise ValueError(
                f"RBM shapes disagree: W {tuple(self.W.shape)}, a {tuple(self.a.shape)}, "
                f"b {tuple(self.b.shape)}; expected a {(*lead, n)} and b {(*lead, m)}"
            )

    @property
    def n_visible(self) -> int:
        return int(self.W.shape[-2])

    @property
    def n_hidden(self) -> int:
        return int(self.W.shape[-1])

    @property
    def n_replicas(self) -> int | None:
        """Number of replicas (the leading axis), or ``None`` for one model without it."""
        return int(self.W.shape[0]) if self.W.ndim == 3 else None

    @property
    def device(self) -> torch.device:
        return self.W.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W.dtype

    def to(self, device: torch.device | str | None = None,
           dtype: torch.dtype | None = None) -> RBM:
        """Copy to another device and/or dtype."""
        return RBM(*(t.to(device=device, dtype=dtype) for t in (self.W, self.a, self.b)))

    def clone(self) -> RBM:
        return RBM(self.W.clone(), self.a.clone(), self.b.clone())

    def parameters(self) -> dict[str, torch.Tensor]:
        return {"W": self.W, "a": self.a, "b": self.b}

    def replica(self, r: int) -> RBM:
        """Replica ``r`` as one model (views of the parameters, no copy)."""
        if self.W.ndim != 3:
            raise ValueError("this RBM has no replica axis")
        return RBM(self.W[r], self.a[r], self.b[r])

    @staticmethod
    def stack(models: list[RBM]) -> RBM:
        """R models of one shape as one RBM with a leading replica axis (copies)."""
        if not models or any(m.W.ndim != 2 for m in models):
            raise ValueError("stack needs one or more models without a replica axis")
        return RBM(*(torch.stack([m.parameters()[k] for m in models]) for k in ("W", "a", "b")))


def independent_site(a: torch.Tensor, n_hidden: int) -> RBM:
    """The independent-site model: ``W = 0``, ``b = 0``, visible bias ``a``.

    Its log partition function is ``sum_i softplus(a_i) + n_hidden * log 2``.
    """
    n = a.shape[0]
    return RBM(
        torch.zeros(n, n_hidden, dtype=a.dtype, device=a.device),
        a.clone(),
        torch.zeros(n_hidden, dtype=a.dtype, device=a.device),
    )


def _f64(rbm: RBM, x: torch.Tensor) -> tuple[RBM, torch.Tensor]:
    return rbm.to(dtype=torch.float64), x.to(device=rbm.device, dtype=torch.float64)


def energy(rbm: RBM, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Joint energy ``E(v, h)`` in float64, shape (batch,)."""
    r, v = _f64(rbm, v)
    h = h.to(device=r.device, dtype=torch.float64)
    return -(v @ r.a) - (h @ r.b) - ((v @ r.W) * h).sum(-1)


def free_energy(rbm: RBM, v: torch.Tensor) -> torch.Tensor:
    """Marginal energy ``E(v) = -a.v - sum_mu softplus(b_mu + (vW)_mu)`` in float64, (batch,)."""
    r, v = _f64(rbm, v)
    return -(v @ r.a) - F.softplus(r.b + v @ r.W).sum(-1)


def free_energy_difference(rbm_now: RBM, rbm_next: RBM, v: torch.Tensor, *,
                           split_bf16: bool = False) -> torch.Tensor:
    """``E_now(v) - E_next(v)``: the change of the visible free energy of the states ``v``
    from one model to another of the same shape (the trajectory-AIS log-weight increment),
    float64, shape (batch,).

    Written as a difference, so the products are of the parameter step and never cancel
    (docs/methods.md §4, "Increments")::

        E_now(v) - E_next(v) = (a_next - a_now).v + sum_mu [softplus(x_mu + d_mu) - softplus(x_mu)]
        x = b_now + v W_now,   d = (b_next - b_now) + v (W_next - W_now)
        softplus(x + d) - softplus(x) = log(sigmoid(-x) + sigmoid(x) e^d)
                                      = logaddexp(logsigmoid(-x), logsigmoid(x) + d)

    The last line is the log of a sum of two positive terms: finite and accurate to float64
    round-off (absolute ~1e-16 (|x| + |d| + 1)) for every ``x`` and ``d``. The same quantity as
    ``log1p(sigmoid(x) expm1(d))`` loses everything where ``sigmoid(x) expm1(d)`` is near -1
    (``x = 40, d = -80`` gives -inf) and overflows for ``d > 709``.

    Parameters
    ----------
    rbm_now, rbm_next
        One model each (no replica axis), same shapes and device, any float dtype.
    v
        Visible states in {0, 1}, (batch, n_visible).
    split_bf16
        ``False`` (default): ``x`` and ``d`` from float64 products. ``True`` (the fused bf16
        path): from one bfloat16 product with ``W_now`` and ``W_next - W_now`` split into two
        bfloat16 terms each, accumulated in float32 (module docstring, "Precision policy");
        the rest in float64.

    Returns
    -------
    torch.Tensor
        float64, (batch,), on the models' device.
    """
    v64 = v.to(device=rbm_now.device, dtype=torch.float64)
    a_now, b_now = rbm_now.a.to(torch.float64), rbm_now.b.to(torch.float64)
    db = rbm_next.b.to(torch.float64) - b_now
    if split_bf16:
        (x_hi, x_lo), (d_hi, d_lo) = _split_bf16_products(
            v, (rbm_now.W, rbm_next.W - rbm_now.W))
        x, d = b_now + x_hi + x_lo, db + d_hi + d_lo  # float64: the biases are
    else:
        w_now = rbm_now.W.to(torch.float64)
        x, d = b_now + v64 @ w_now, db + v64 @ (rbm_next.W.to(torch.float64) - w_now)
    terms = torch.logaddexp(F.logsigmoid(-x), F.logsigmoid(x) + d)
    return v64 @ (rbm_next.a.to(torch.float64) - a_now) + terms.sum(-1)


#: ``torch.mm(a, b, out_dtype)`` exists (torch >= 2.8; CUDA: bfloat16 operands, float32 result).
_MM_OUT_DTYPE = "dtype" in torch.ops.aten.mm.overloads()


def _split_bf16_products(v: torch.Tensor, mats: tuple[torch.Tensor, ...]
                         ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(v @ M_hi, v @ M_lo)`` (float32, whose float64 sum is ``v @ M`` to float32 accuracy) for
    each ``M`` of ``mats`` (n_visible, m), from one product of bfloat16 operands: ``v`` in
    {0, 1} (exact in bfloat16) times the columns ``[M0_hi | M0_lo | M1_hi | ...]`` with
    ``hi = bf16(M)``, ``lo = bf16(M - hi)``, accumulated and returned in float32
    (``torch.mm(..., out_dtype)`` on CUDA with torch >= 2.8); elsewhere the same arithmetic as
    a float32 product of the bfloat16 values (exact in float32 and in TF32, so TF32 tensor
    cores may run it)."""
    parts = []
    for w in mats:
        hi = w.to(torch.bfloat16)
        parts += [hi, (w - hi.to(w.dtype)).to(torch.bfloat16)]
    rhs = torch.cat(parts, dim=1)
    lhs = v.to(device=rhs.device, dtype=torch.bfloat16)
    if lhs.device.type == "cuda" and _MM_OUT_DTYPE:
        out = torch.mm(lhs, rhs, torch.float32)
    else:
        with tf32_matmul(True):
            out = lhs.float() @ rhs.float()
    out = out.view(out.shape[0], len(mats), 2, -1)
    return [(out[:, k, 0], out[:, k, 1]) for k in range(len(mats))]


def hidden_free_energy(rbm: RBM, h: torch.Tensor) -> torch.Tensor:
    """Marginal energy of the hidden layer, ``-b.h - sum_i softplus(a_i + (W h)_i)``, float64."""
    r, h = _f64(rbm, h)
    return -(h @ r.b) - F.softplus(r.a + h @ r.W.T).sum(-1)


def hidden_probs(rbm: RBM, v: torch.Tensor) -> torch.Tensor:
    """``p(h_mu = 1 | v)``, shape (batch, n_hidden), in the RBM's dtype."""
    return torch.sigmoid(rbm.b + v.to(rbm.dtype) @ rbm.W)


def visible_probs(rbm: RBM, h: torch.Tensor) -> torch.Tensor:
    """``p(v_i = 1 | h)``, shape (batch, n_visible), in the RBM's dtype."""
    return torch.sigmoid(rbm.a + h.to(rbm.dtype) @ rbm.W.T)


def init_rbm(v_mean: torch.Tensor, *, n_hidden: int, weight_std: float = 1e-4,
             generator: torch.Generator | None = None, eps: float = 1e-4) -> RBM:
    """docs/methods.md §3 initialisation from training-split means.

    ``W ~ weight_std * N(0, 1)``, ``a_i = logit(clamp(<v_i>_train, eps, 1 - eps))``, ``b = 0``.
    """
    a = torch.logit(v_mean.clamp(eps, 1 - eps))
    W = weight_std * torch.randn(
        v_mean.shape[0], n_hidden, generator=generator, dtype=v_mean.dtype, device="cpu"
    ).to(v_mean.device)
    return RBM(W, a, torch.zeros(n_hidden, dtype=v_mean.dtype, device=v_mean.device))


@contextmanager
def tf32_matmul(enabled: bool) -> Iterator[None]:
    """Allow (or forbid) TF32 in float32 CUDA matrix products inside the block; restore after."""
    old_matmul = torch.backends.cuda.matmul.allow_tf32
    old_cudnn = torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_matmul
        torch.backends.cudnn.allow_tf32 = old_cudnn


def resolve_device(device: str) -> torch.device:
    """Map the config's ``device: auto|cpu|cuda`` to a torch device, with a clear error.

    ``cuda`` (and ``auto`` where CUDA exists) gives this process's own GPU: on a machine with
    several, a free one claimed for the job's lifetime (:func:`spikerbm.devices.cuda_device`),
    made the current device, so jobs running at once use different GPUs.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "config asks for device: cuda but torch sees no CUDA device "
            f"(torch {torch.__version__}); set device: auto or cpu, or install a CUDA build"
        )
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be one of auto, cpu, cuda; got {device!r}")
    if device == "cuda":
        from spikerbm.devices import cuda_device

        return cuda_device()
    return torch.device(device)


def rbm_from_numpy(W, a, b, *, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> RBM:
    """Build an RBM from array-likes (e.g. netCDF variables)."""
    return RBM(*(torch.as_tensor(x).to(device=device, dtype=dtype) for x in (W, a, b)))


def rbm_from_dataset(ds, *, checkpoint: int | None = None, device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float32) -> RBM:
    """Parameters from a model (``model.nc``) or selected-model (``selected.nc``) dataset.

    Parameters
    ----------
    ds
        xarray Dataset with ``W(neuron, hidden)``, ``a(neuron)``, ``b(hidden)`` (any dim names:
        the values are read); a model trajectory also has a ``checkpoint`` dim.
    checkpoint
        Update number to take from a trajectory (default: the last checkpoint).
    """
    if "checkpoint" in ds["W"].dims:
        sel = ds.isel(checkpoint=-1) if checkpoint is None else ds.sel(checkpoint=checkpoint)
    else:
        sel = ds
    return rbm_from_numpy(sel["W"].values, sel["a"].values, sel["b"].values,
                          device=device, dtype=dtype)


def check_rbm_dataset(ds, *, n_visible: int | None = None) -> None:
    """Check the parameters of a ``model.nc`` / ``selected.nc`` dataset before using them.

    ``W`` must have dims (``replica``,) (``checkpoint``,) ``neuron``, ``hidden``, ``a``
    (``replica``,) (``checkpoint``,) ``neuron`` and ``b`` (``replica``,) (``checkpoint``,)
    ``hidden``, all floating point and finite (training stops on divergence, so a model file
    never holds NaN/inf), except in a replica marked ``diverged`` (R > 1: a dropped replica's
    entries from its divergence on are NaN; docs/data-model.md). With ``n_visible``, the model must
    have that many visible units (the neurons of the session's raster; visible unit ``i`` is
    neuron ``i``).

    Raises
    ------
    ValueError
        Saying what is wrong and how to fix it.
    """
    import numpy as np

    lead = tuple(d for d in ("replica", "checkpoint") if d in ds.dims)
    dropped = (np.asarray(ds["diverged"].values, dtype=bool)
               if "replica" in lead and "diverged" in ds else None)
    for name, dims in (("W", ("neuron", "hidden")), ("a", ("neuron",)), ("b", ("hidden",))):
        if name not in ds.data_vars:
            raise ValueError(f"model: no parameter variable {name!r} (found "
                             f"{sorted(map(str, ds.data_vars))}); rebuild the model file")
        want = lead + dims
        if ds[name].dims != want:
            raise ValueError(f"model: parameter {name!r} has dims {ds[name].dims}; expected "
                             f"{want} (wrong dims: rebuild the model file)")
        values = np.asarray(ds[name].values)
        if values.dtype.kind != "f":
            raise ValueError(f"model: parameter {name!r} has dtype {values.dtype}; expected "
                             "float32 (rebuild the model file)")
        bad = ~np.isfinite(values)
        if dropped is not None:  # a diverged replica's entries from the divergence on are NaN
            bad[dropped] = False
        if bad.any():
            where = ""
            if "replica" in lead:
                rep = ds["replica"].values[bad.reshape(bad.shape[0], -1).any(axis=1)]
                where = f" in replica(s) {rep[:10].tolist()} not marked diverged"
            elif lead:
                ck = ds["checkpoint"].values[bad.reshape(bad.shape[0], -1).any(axis=1)]
                where = f" at checkpoint(s) {ck[:10].tolist()}"
            raise ValueError(
                f"model: parameter {name!r} has {int(bad.sum())} NaN/inf value(s){where}; a "
                "trained model never holds non-finite parameters (training stops on "
                "divergence), so the file is corrupted: rebuild it"
            )
    if n_visible is not None and ds.sizes["neuron"] != n_visible:
        raise ValueError(
            f"model: {ds.sizes['neuron']} neurons (visible units) but the session's raster has "
            f"{n_visible} neurons: the model was trained on other data; rebuild it from this "
            "raster"
        )
