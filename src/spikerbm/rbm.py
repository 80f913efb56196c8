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
products ``x = b + v W`` and ``d = db + v dW`` (``dW`` the parameter step) come from
bfloat16 tensor-core products (:func:`binary_mm`) of the 0/1 states (exact in bfloat16)
with ``W`` and ``dW`` each split into two bfloat16 terms (:func:`split_bf16`),
``W = hi + lo`` (``hi = bf16(W)``, ``lo = bf16(W - hi)``:
``|W - hi - lo| <= 2^-18 |W|``), accumulated in float32: ``x`` and ``d`` are float32-accurate
(relative ~2^-18 per entry plus the float32 accumulation), the rest of the increment is
float64. That is precise enough because ``x`` enters only at second order: an error ``e`` in
``x`` changes ``softplus(x + d) - softplus(x)`` by ``(sigmoid(x + d) - sigmoid(x)) e ~
sigmoid'(x) d e <= |d e| / 4``, while an error in ``d`` enters at first order but ``d`` is small
and float32-accurate, so each increment is off by about ``1e-5`` of its own size (float64
products of the same quantities cost 2 x 2 x chains x N x M float64 flops per update: at least
a third of the cost of trajectory AIS on an H200, far more on GPUs with slow float64;
docs/methods.md §4, "Increments").

Where float32 is asked for on a GPU with bfloat16 tensor cores (AIS, :mod:`spikerbm.partition`),
the products of a sweep run as **split bfloat16 products** (:func:`split_bf16`,
:func:`binary_mm`), which are as precise as float32 products, not a reduced precision: one
operand of every product of an RBM sweep is a 0/1 state, exact in bfloat16; the float32 weights
are split into three bfloat16 matrices whose sum *is* ``W`` (8 + 8 + 8 significant bits hold
float32's 24 exactly); every product ``v_i * part`` is then exact and the tensor cores
accumulate them in float32, as a float32 product does. TF32 instead rounds ``W`` to 11
significant bits, so TF32 chains sample a slightly different model.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


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
        path, CUDA with :func:`split_products_available`): from bfloat16 products
        (:func:`binary_mm`) with ``W_now`` and ``W_next - W_now`` split into two bfloat16 terms
        each (:func:`split_bf16`), accumulated in float32 (module docstring, "Precision
        policy"); the rest in float64.

    Returns
    -------
    torch.Tensor
        float64, (batch,), on the models' device.
    """
    v64 = v.to(device=rbm_now.device, dtype=torch.float64)
    a_now, b_now = rbm_now.a.to(torch.float64), rbm_now.b.to(torch.float64)
    db = rbm_next.b.to(torch.float64) - b_now
    if split_bf16:
        x, d = _split_products(v, (rbm_now.W, rbm_next.W - rbm_now.W))
        x, d = b_now + x, db + d  # float64: the biases are
    else:
        w_now = rbm_now.W.to(torch.float64)
        x, d = b_now + v64 @ w_now, db + v64 @ (rbm_next.W.to(torch.float64) - w_now)
    terms = torch.logaddexp(F.logsigmoid(-x), F.logsigmoid(x) + d)
    return v64 @ (rbm_next.a.to(torch.float64) - a_now) + terms.sum(-1)


def _split_products(v: torch.Tensor, mats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """``v @ M`` (float32) for each ``M`` of ``mats`` (n_visible, m) as one :func:`binary_mm`
    of ``v`` in {0, 1} with the two-term splits ``split_bf16(M, 2)`` side by side (16
    significant bits of each ``M``; float32 accumulation; ``v`` is repeated once for all)."""
    parts = torch.cat([split_bf16(w, 2) for w in mats], dim=2)
    return list(binary_mm(v, parts).split(mats[0].shape[1], dim=1))


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


#: Terms of :func:`split_bf16` that hold a float32 matrix exactly (3 x 8 significant bits).
SPLIT_TERMS = 3


def split_bf16(w: torch.Tensor, n_terms: int = SPLIT_TERMS, *,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """Split a matrix into a sum of ``n_terms`` bfloat16 matrices (for :func:`binary_mm`).

    With ``r_0 = float32(w)``: ``p_j = bfloat16(r_j)`` (round to nearest even) and
    ``r_{j+1} = r_j - p_j`` computed in float32, for ``j = 0 .. n_terms - 1``; the parts are
    stored from the smallest to the largest, ``parts[n_terms - 1 - j] = p_j``, so that a
    product accumulating along the term axis (:func:`binary_mm`) adds the small terms first.

    Parameters
    ----------
    w
        Floating matrix (n_rows, n_cols), any layout (e.g. ``W.T``); used as float32.
    n_terms
        Number of bfloat16 terms (>= 1): 3 holds float32 exactly, 2 gives 16 significant bits,
        1 is plain rounding to bfloat16.
    out
        Optional preallocated bfloat16 tensor (n_terms, n_rows, n_cols) to write into.

    Returns
    -------
    torch.Tensor
        ``parts``, bfloat16 (n_terms, n_rows, n_cols), contiguous; ``parts[-1]`` is ``w``
        rounded to bfloat16 and ``parts.float().sum(0)`` reproduces ``w``.

    Notes
    -----
    Error bound, elementwise: ``|w - sum_j parts[j]| <= 2**(-8 n_terms) |w| + 2**-133``.
    Each ``r_j - p_j`` is exact in float32 (Sterbenz's lemma: ``p_j`` lies within a factor 2
    of ``r_j``, or is 0), so ``w = p_0 + ... + p_{n-1} + r_n`` holds exactly, and rounding to
    bfloat16's 8 significant bits gives ``|r_{j+1}| <= 2**-8 |r_j|``, hence ``|r_n| <=
    2**(-8n) |w|`` while the parts are normal numbers (where a remainder underflows, bfloat16
    rounds it to within half its smallest subnormal ``2**-133``: the added term). For
    ``n_terms = 3`` and a float32 ``w`` the split is **exact** wherever ``|w| >= 2**-110``:
    ``r_1`` is an integer multiple of ``w``'s float32 spacing ``2**(e - 23)`` (``2**e <= |w|
    < 2**(e+1)``) and so is ``r_2``, with ``|r_2| <= 2**-16 |w| < 2**(e-15)``, i.e. ``r_2 =
    k 2**(e-23)`` with ``|k| <= 2**8``, which bfloat16 holds exactly, so ``r_3 = 0``.
    ``|w|`` must stay below bfloat16's largest value (3.39e38; beyond it ``p_0`` is
    infinite). Computed on ``w``'s device (a few elementwise kernels).
    """
    if n_terms < 1:
        raise ValueError(f"n_terms must be >= 1; got {n_terms}")
    if w.ndim != 2 or not w.is_floating_point():
        raise ValueError(f"split_bf16 needs a floating matrix; got {w.dtype} of shape "
                         f"{tuple(w.shape)}")
    shape = (n_terms, *w.shape)
    if out is None:
        out = torch.empty(shape, dtype=torch.bfloat16, device=w.device)
    elif tuple(out.shape) != shape or out.dtype != torch.bfloat16 or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous bfloat16 tensor of shape {shape}; got "
                         f"{out.dtype} of shape {tuple(out.shape)}")
    r = w.to(torch.float32, copy=True)
    for j in range(n_terms):
        part = out[n_terms - 1 - j]
        part.copy_(r)  # round to nearest even
        if j < n_terms - 1:
            r.sub_(part)  # exact in float32 (Notes)
    return out


def binary_mm(x: torch.Tensor, parts: torch.Tensor, *, out: torch.Tensor | None = None,
              x_buf: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ sum_j parts[j]`` in float32 for a 0/1 matrix ``x``: one bfloat16 product.

    Parameters
    ----------
    x
        States in {0, 1} (n_rows, n_inner), any dtype (exact in bfloat16).
    parts
        :func:`split_bf16` of the matrix, bfloat16 (n_terms, n_inner, n_cols), contiguous.
    out
        Optional float32 (n_rows, n_cols) output buffer.
    x_buf
        Optional bfloat16 (n_rows, n_terms, n_inner) buffer for ``x`` repeated ``n_terms``
        times (allocated per call when not given).

    Returns
    -------
    torch.Tensor
        float32 (n_rows, n_cols). On CUDA it is one tensor-core product ``[x | x | x] @
        [parts[0]; parts[1]; parts[2]]`` of bfloat16 operands with float32 accumulation **and
        float32 output** (``torch.mm(..., out_dtype=torch.float32)``; a bfloat16 output would
        round the result to 8 bits). Elsewhere it is emulated with float32 operands (the same
        values: for tests; slower than a plain float32 product).

    Notes
    -----
    Every product ``x_i * parts[j, i, c]`` is exact (``x_i`` is 0 or 1), so the only rounding
    is the float32 accumulation, as in a float32 product; with ``n_terms = 3`` the sum of the
    parts is the float32 matrix itself (:func:`split_bf16`). The accumulation runs over the
    ``n_terms * n_inner`` terms from the smallest parts to the largest, so the small terms
    are summed among themselves (their rounding errors scale with their own magnitude,
    ``2**-8`` and ``2**-16`` of ``|W|``) before the leading part adds the ``n_inner`` terms of
    a float32 product. Bound (Higham, "Accuracy and stability of numerical algorithms",
    2002, §3.1, for any summation order): ``|error| <= gamma_n (1 + 2**-6) sum_i x_i
    |W_ic|`` with ``n`` the number of nonzero terms, ``gamma_n = n u / (1 - n u)``, ``u =
    2**-24`` (``2**-23`` for tensor cores that truncate in their additions; Fasi, Higham,
    Mikaitis & Pranesh, PeerJ Comput. Sci. 7:e330, 2021), against ``gamma_k sum_i x_i
    |W_ic|`` with ``k = n / n_terms`` for a float32 product: the worst case is ``n_terms``
    (x2 with truncation) times float32's, the typical error (~sqrt(k) u) about float32's
    (checked on the GPU: ``tests/test_rbm.py``).
    """
    n_terms, n_inner, n_cols = parts.shape
    if (x.ndim != 2 or x.shape[1] != n_inner or parts.dtype != torch.bfloat16
            or not parts.is_contiguous()):
        raise ValueError(f"binary_mm needs x (n_rows, {n_inner}) and contiguous bfloat16 "
                         f"parts (split_bf16); got x {tuple(x.shape)}, parts {parts.dtype} "
                         f"{tuple(parts.shape)}")
    if x_buf is None:
        x_buf = torch.empty(x.shape[0], n_terms, n_inner, dtype=torch.bfloat16,
                            device=x.device)
    x_buf.copy_(x.unsqueeze(1))  # x repeated n_terms times; exact for 0/1
    a = x_buf.view(x.shape[0], n_terms * n_inner)
    b = parts.view(n_terms * n_inner, n_cols)
    if x.is_cuda:
        if out is None:
            return torch.mm(a, b, out_dtype=torch.float32)
        return torch.mm(a, b, out_dtype=torch.float32, out=out)
    return torch.mm(a.float(), b.float(), out=out)


@functools.cache
def _split_products_work(device: torch.device) -> bool:
    """Probe once per device: bfloat16 tensor cores (compute capability >= 8.0) and a
    ``torch.mm`` with float32 output whose result keeps more than bfloat16's 8 bits."""
    if torch.cuda.get_device_capability(device) < (8, 0):
        return False
    a = torch.ones(1, 2, dtype=torch.bfloat16, device=device)
    b = torch.tensor([[1.0], [2.0**-9]], dtype=torch.bfloat16, device=device)
    try:
        y = torch.mm(a, b, out_dtype=torch.float32)
    except (RuntimeError, NotImplementedError, TypeError) as err:
        log.info("split bfloat16 products unavailable on %s (%s): float32 products instead",
                 device, err)
        return False
    return y.dtype == torch.float32 and float(y) == 1.0 + 2.0**-9


def split_products_available(device: torch.device | str) -> bool:
    """True where :func:`binary_mm` runs on bfloat16 tensor cores with float32 output: a CUDA
    device of compute capability >= 8.0 (Ampere, Hopper, ...) with a torch that has
    ``torch.mm(..., out_dtype=torch.float32)``. Probed once per device."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _split_products_work(device)


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
