"""Fused CUDA kernels (Triton) for block-Gibbs sampling: one kernel per half sweep.

A half sweep ``h ~ Bernoulli(sigmoid(v W + b))`` (or ``v ~ Bernoulli(sigmoid(h W^T + a))``) is
one matrix product followed by an elementwise epilogue. Done with library calls it is a GEMM
that writes the float32 pre-activations to memory and three or four elementwise kernels that
read them back (bias, sigmoid, uniforms, compare). :func:`half_sweep` does it in ONE Triton
kernel: the tile of the product stays in registers, the bias is added, the sigmoid taken, a
counter-based Philox uniform drawn for each entry and the 0/1 sample stored in the operand
dtype of the next product. Nothing but the samples (and, on request, the probabilities)
reaches memory, and one launch replaces four or five.

Precision
---------
Operands are bfloat16, accumulation float32. The states ``v`` and ``h`` are 0/1, so they are
exact in bfloat16; only ``W`` is rounded (8 significant bits, relative error <= 2^-9); biases,
pre-activations and probabilities stay float32. ``tests/test_kernels.py`` checks on the GPU
that the sampled distribution equals the exact one of an enumerable model and that moments
and covariances agree with float32 sampling at a realistic size. (TF32 and float32 sampling
use the library products of :class:`spikerbm.sampling.PersistentChains`.)

Randomness
----------
Uniforms come from Triton's Philox-4x32-10 (``tl.rand4x``: one call gives the uniforms of four
entries of a row) keyed by ``seed + seed_offset`` and counted by the entry's position;
``seed`` is read from a device tensor, so a captured CUDA graph replays with fresh randomness
when the caller advances that tensor (no host sync).
The same seed, offset and inputs give the same samples, so runs are reproducible.

This module needs a CUDA build of torch with Triton; :func:`available` says whether it can run.
Nothing here computes an energy (energies stay float64, :mod:`spikerbm.rbm`).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

#: Rounds of the Philox-4x32 generator (10: the standard choice of cuRAND and PyTorch).
PHILOX_ROUNDS = 10
#: Buffers are zero-padded to a multiple of this along every matrix dim but the rows.
PAD = 64


def available(device: torch.device | str | None = None) -> bool:
    """True when the fused kernels can run on ``device`` (CUDA with an importable Triton)."""
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type != "cuda":
        return False
    if not torch.cuda.is_available():
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def padded(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`PAD`."""
    return -(-int(n) // PAD) * PAD


@functools.cache
def _kernel() -> Any:
    """Compile-on-first-use Triton kernels (imported lazily: CPU-only installs lack Triton)."""
    import triton
    import triton.language as tl

    configs = [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8},
                      num_warps=w, num_stages=s)
        for bm, bn, bk, w, s in [
            (128, 128, 64, 8, 3), (64, 128, 64, 4, 4), (128, 64, 64, 4, 4),
            (64, 64, 64, 4, 4), (128, 256, 64, 8, 3), (128, 128, 128, 8, 3),
            (64, 128, 128, 4, 3), (128, 64, 128, 4, 3), (64, 256, 64, 4, 3),
        ]
    ]

    def divides_k(configs: list, named_args: dict, **_: Any) -> list:
        # the kernel has no mask along K: keep only tiles whose BLOCK_K divides K
        return [c for c in configs if named_args["K"] % c.kwargs["BLOCK_K"] == 0]

    @triton.autotune(configs=configs, key=["M", "NB", "K", "SAMPLE", "STORE_PROB", "ROUNDS"],
                     prune_configs_by={"early_config_prune": divides_k})
    @triton.jit
    def half_sweep_kernel(x_ptr, w_ptr, bias_ptr, out_ptr, prob_ptr, seed_ptr, seed_offset,
                          M, N, NB, K, stride_xm, stride_wk, stride_om, stride_pm,
                          SAMPLE: tl.constexpr, STORE_PROB: tl.constexpr, ROUNDS: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                          GROUP_M: tl.constexpr):
        # grouped tile order (L2 reuse of the W panel)
        pid = tl.program_id(0)
        num_pid_m = tl.cdiv(M, BLOCK_M)
        num_pid_n = tl.cdiv(NB, BLOCK_N)
        in_group = GROUP_M * num_pid_n
        first_m = (pid // in_group) * GROUP_M
        group_m = min(num_pid_m - first_m, GROUP_M)
        pid_m = first_m + ((pid % in_group) % group_m)
        pid_n = (pid % in_group) // group_m
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        row_ok = offs_m < M
        col_ok = offs_n < NB  # NB: padded width (multiple of 64), so masks stay vectorised
        # K is a multiple of BLOCK_K (zero-padded buffers, configs pruned): no mask along K
        x_ptrs = x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :]
        w_ptrs = w_ptr + offs_k[:, None] * stride_wk + offs_n[None, :]
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for _ in range(0, K, BLOCK_K):
            x = tl.load(x_ptrs, mask=row_ok[:, None], other=0.0)
            w = tl.load(w_ptrs, mask=col_ok[None, :], other=0.0)
            acc = tl.dot(x, w, acc)
            x_ptrs += BLOCK_K
            w_ptrs += BLOCK_K * stride_wk
        bias = tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0)
        p = tl.sigmoid(acc + bias[None, :])
        ok = row_ok[:, None] & col_ok[None, :]
        if STORE_PROB:
            tl.store(prob_ptr + offs_m[:, None] * stride_pm + offs_n[None, :], p, mask=ok)
        if SAMPLE:
            # one Philox-4x32 call gives the uniforms of 4 entries of a row
            quarter = pid_n * (BLOCK_N // 4) + tl.arange(0, BLOCK_N // 4)
            counter = offs_m[:, None] * (NB // 4) + quarter[None, :]
            u0, u1, u2, u3 = tl.rand4x(tl.load(seed_ptr) + seed_offset, counter, ROUNDS)
            u = tl.reshape(tl.join(tl.join(u0, u1), tl.join(u2, u3)), (BLOCK_M, BLOCK_N))
            s = (u < p).to(out_ptr.dtype.element_ty)
            tl.store(out_ptr + offs_m[:, None] * stride_om + offs_n[None, :], s, mask=ok)

    @triton.jit
    def uniform_kernel(out_ptr, seed_ptr, seed_offset, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        seed = tl.load(seed_ptr) + seed_offset
        tl.store(out_ptr + offs, tl.rand(seed, offs).to(out_ptr.dtype.element_ty),
                 mask=offs < n)

    return half_sweep_kernel, uniform_kernel


def uniform_(out: torch.Tensor, *, seed: torch.Tensor, seed_offset: int = 0) -> torch.Tensor:
    """Fill the contiguous ``out`` with Philox uniforms in [0, 1) keyed by ``seed + seed_offset``.

    Graph-capturable: the key is read from the device tensor ``seed`` at run time.
    """
    if not out.is_contiguous():
        raise ValueError("out must be contiguous")
    n = out.numel()
    _kernel()[1][(-(-n // 1024),)](out, seed, int(seed_offset), n, BLOCK=1024)
    return out


def half_sweep(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, *,
               out: torch.Tensor | None, prob: torch.Tensor | None = None,
               seed: torch.Tensor | None = None, seed_offset: int = 0) -> None:
    """``out <- Bernoulli(sigmoid(x @ w + bias))`` (and/or ``prob <- sigmoid(...)``), fused.

    All buffers are zero-padded to multiples of :data:`PAD` (see :func:`padded`); the
    products, the samples and the probabilities are computed for every padded column, so
    the padded columns of ``out`` hold meaningless 0/1 values: they only ever multiply the
    zero padding rows of the next weight operand.

    Parameters
    ----------
    x
        bfloat16 states (rows, K_pad), unit column stride; columns past the true reduction
        size multiply zero rows of ``w``.
    w
        bfloat16 weights (K_pad, NB) with unit column stride and zero padding rows/columns.
    bias
        float32 (n_cols,), the true output width (``n_cols <= NB``).
    out
        bfloat16 samples (rows, NB), unit column stride, or ``None`` to skip sampling.
    prob
        float32 probabilities (rows, NB), or ``None``.
    seed
        int64 device tensor with one element: the Philox key is ``seed + seed_offset``.
    seed_offset
        Distinguishes the calls that share one ``seed`` value (e.g. half sweep index).
    """
    rows, k_pad = x.shape
    nb = int(w.shape[1])
    if w.shape[0] != k_pad or k_pad % PAD or nb % PAD or int(bias.shape[0]) > nb:
        raise ValueError(f"shapes disagree: x {tuple(x.shape)}, w {tuple(w.shape)}, bias "
                         f"{tuple(bias.shape)}; reduction and padded output dims must be "
                         f"multiples of {PAD}")
    for name, t, dtype in (("x", x, torch.bfloat16), ("w", w, torch.bfloat16),
                           ("out", out, torch.bfloat16), ("prob", prob, torch.float32)):
        if t is None:
            continue
        if t.stride(-1) != 1 or t.dtype != dtype:
            raise ValueError(f"{name} must be {dtype} with unit stride along its last dim")
        if name in ("out", "prob") and tuple(t.shape) != (rows, nb):
            raise ValueError(f"{name} must have shape {(rows, nb)}; got {tuple(t.shape)}")
    if out is None and prob is None:
        raise ValueError("nothing to compute: give out and/or prob")
    if out is not None and seed is None:
        raise ValueError("sampling needs a seed tensor")
    kernel = _kernel()[0]
    dummy = bias  # any device pointer for the unused outputs
    grid = lambda meta: (  # noqa: E731  (Triton's grid protocol)
        -(-rows // meta["BLOCK_M"]) * -(-nb // meta["BLOCK_N"]),)
    kernel[grid](x, w, bias, out if out is not None else dummy,
                 prob if prob is not None else dummy,
                 seed if seed is not None else dummy, int(seed_offset),
                 rows, int(bias.shape[0]), nb, k_pad, x.stride(0), w.stride(0),
                 out.stride(0) if out is not None else 0,
                 prob.stride(0) if prob is not None else 0,
                 SAMPLE=out is not None, STORE_PROB=prob is not None, ROUNDS=PHILOX_ROUNDS)
