"""Fused CUDA kernels (Triton) for block-Gibbs sampling: one kernel per half sweep.

A half sweep ``h ~ Bernoulli(sigmoid(v W + b))`` (or ``v ~ Bernoulli(sigmoid(h W^T + a))``) is
one matrix product followed by an elementwise epilogue. Done with library calls it is a GEMM
that writes the float32 pre-activations to memory and three or four elementwise kernels that
read them back (bias, sigmoid, uniforms, compare). :func:`half_sweep` does it in ONE Triton
kernel: the tile of the product stays in registers, the bias is added, a counter-based Philox
uniform drawn for each entry, the Bernoulli test made and the 0/1 sample stored in the operand
dtype of the next product. Nothing but the samples (and, on request, the probabilities)
reaches memory, and one launch replaces four or five.

Replicas
--------
Every buffer may carry a leading replica axis: ``R`` models (``W`` (R, K, N), biases (R, N))
and their chains (R, C, K) are swept by ONE launch whose grid has a replica axis, so batching
R models fills the card with R times more output tiles (docs/methods.md §10). Replica ``r``
draws its uniforms from its own Philox key ``seed[r] + seed_offset``; its samples depend on
its own key, parameters and states only, so a replica swept in a batch gets the same random
stream as when swept alone with the same key.

Precision
---------
Operands are bfloat16, accumulation float32. The states ``v`` and ``h`` are 0/1, so they are
exact in bfloat16; only ``W`` is rounded (8 significant bits, relative error <= 2^-9); biases,
pre-activations and probabilities stay float32. ``tests/test_kernels.py`` checks that the
sampled distribution equals the exact one of an enumerable model and that moments and
covariances agree with float32 sampling at a realistic size. (TF32 and float32 sampling use
the library products of :class:`spikerbm.sampling.PersistentChains`.)

Randomness (docs/methods.md §10)
--------------------------------
Uniforms come from Philox-4x32 (Salmon et al., SC 2011; :data:`PHILOX_ROUNDS` rounds) keyed by
``seed[r] + seed_offset`` and counted by the entry's position in its replica: one call gives
the uniforms of four entries of a row (:data:`UNIFORM_BITS` = 32: 23 random mantissa bits per
entry) or, as a measured option, of eight (16 bits per entry). A uniform is built from the
bits directly as a float in [1, 2) (no integer-to-float conversion), ``u = (2m + 1) 2^-24``
for the 23-bit integer ``m``, and the Bernoulli test ``u < sigmoid(x)`` is evaluated without a
division as ``u (1 + e^{-x}) < 1``. ``seed`` is read from a device tensor, so a captured CUDA
graph replays with fresh randomness when the caller advances that tensor (no host sync). The
same keys, offsets and inputs give the same samples, so runs are reproducible.

This module needs Triton and a CUDA build of torch (:func:`available`). With the environment
variable ``TRITON_INTERPRET=1`` Triton's interpreter runs the same kernels on CPU tensors
(slow; for tests: :func:`interpreting`), with one fixed tile instead of autotuning.
Nothing here computes an energy (energies stay float64, :mod:`spikerbm.rbm`).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch

#: Rounds of the Philox-4x32 generator (10: the standard of cuRAND and PyTorch, the safety
#: margin Salmon et al. 2011 recommend; they report it "Crush-resistant" from 7 rounds).
PHILOX_ROUNDS = 10
#: Random bits per uniform: 32 (one Philox word per entry, 23 of its bits used) or 16 (two
#: entries per word; Bernoulli probabilities off by up to 2^-17, docs/methods.md §10).
UNIFORM_BITS = 32
#: Buffers are zero-padded to a multiple of this along every matrix dim but the rows.
PAD = 64
#: Further (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages) for the autotuner (benchmarks).
EXTRA_TILES: list[tuple[int, int, int, int, int]] = []
#: Tile used by Triton's interpreter (no autotuning there): rows x columns x reduction.
INTERPRETER_TILE = (1024, 64, 64)


def interpreting() -> bool:
    """True when Triton's CPU interpreter is on (``TRITON_INTERPRET=1``) and Triton imports."""
    if os.environ.get("TRITON_INTERPRET", "") not in ("1", "true", "True"):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


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
def _kernels(interpret: bool) -> tuple[Any, Any]:
    """Compile-on-first-use Triton kernels (imported lazily: CPU-only installs lack Triton).

    ``interpret``: built while ``TRITON_INTERPRET=1`` (Triton then makes interpreted
    functions); no autotuning, the launch passes :data:`INTERPRETER_TILE`.
    """
    import triton
    import triton.language as tl

    def half_sweep_kernel(x_ptr, w_ptr, bias_ptr, out_ptr, prob_ptr, seed_ptr, seed_offset,
                          M, N, NB, K, R, stride_xr, stride_xm, stride_wr, stride_wk,
                          stride_br, stride_or, stride_om, stride_pr, stride_pm,
                          SAMPLE: tl.constexpr, STORE_PROB: tl.constexpr, ROUNDS: tl.constexpr,
                          BITS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
                          F32_DOT: tl.constexpr = False):
        # grid (tiles of one replica, R); grouped tile order (L2 reuse of the W panel)
        pid = tl.program_id(0)
        rep = tl.program_id(1).to(tl.int64)
        # this replica's operands and outputs (scalar base pointers: 64-bit offsets once)
        x_ptr += rep * stride_xr
        w_ptr += rep * stride_wr
        bias_ptr += rep * stride_br
        out_ptr += rep * stride_or
        prob_ptr += rep * stride_pr
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
            if F32_DOT:  # Triton's interpreter has no bfloat16 arithmetic (exact: 0/1 x bf16)
                x, w = x.to(tl.float32), w.to(tl.float32)
            acc = tl.dot(x, w, acc)
            x_ptrs += BLOCK_K
            w_ptrs += BLOCK_K * stride_wk
        bias = tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0)
        # e^{-x} = 2^{-x log2 e} (one MUFU.EX2); p = 1 / (1 + e); inf for x << 0 gives p = 0
        e = tl.exp2((acc + bias[None, :]) * -1.4426950408889634)
        ok = row_ok[:, None] & col_ok[None, :]
        if STORE_PROB:
            p = 1.0 / (1.0 + e)
            tl.store(prob_ptr + offs_m[:, None] * stride_pm + offs_n[None, :],
                     p, mask=ok)
        if SAMPLE:
            key = tl.load(seed_ptr + rep) + seed_offset
            if BITS == 32:
                # one Philox-4x32 call: the 32-bit words of 4 entries of a row; the top 23
                # bits m of a word form the float 1 + m 2^-23 in [1, 2), and
                # u = that - (1 - 2^-24) = (2m + 1) 2^-24 exactly (Sterbenz)
                quarter = pid_n * (BLOCK_N // 4) + tl.arange(0, BLOCK_N // 4)
                counter = offs_m[:, None] * (NB // 4) + quarter[None, :]
                r0, r1, r2, r3 = tl.randint4x(key, counter, ROUNDS)
                word = tl.reshape(tl.join(tl.join(r0, r1), tl.join(r2, r3)),
                                  (BLOCK_M, BLOCK_N)).to(tl.uint32, bitcast=True)
                f = ((word >> 9) | 0x3F800000).to(tl.float32, bitcast=True)
                u = f - 0.99999994039535522  # 1 - 2^-24
            else:
                # one call: 8 entries, 16 bits each; u = (j + 1/2) 2^-16 for the 16-bit j
                eighth = pid_n * (BLOCK_N // 8) + tl.arange(0, BLOCK_N // 8)
                counter = offs_m[:, None] * (NB // 8) + eighth[None, :]
                r0, r1, r2, r3 = tl.randint4x(key, counter, ROUNDS)
                word = tl.join(tl.join(r0, r1), tl.join(r2, r3)).to(tl.uint32, bitcast=True)
                lo = ((word << 7) & 0x007FFF80) | 0x3F800040
                hi = ((word >> 9) & 0x007FFF80) | 0x3F800040
                f = tl.reshape(tl.join(lo, hi), (BLOCK_M, BLOCK_N)).to(tl.float32, bitcast=True)
                u = f - 1.0
            # u < 1 / (1 + e)  <=>  u (1 + e) < 1 (u > 0; e = inf gives 0, e = 0 gives 1)
            s = tl.where(u * e + u < 1.0, 1.0, 0.0).to(out_ptr.dtype.element_ty)
            tl.store(out_ptr + offs_m[:, None] * stride_om + offs_n[None, :],
                     s, mask=ok)

    def uniform_kernel(out_ptr, seed_ptr, seed_offset, n, stride_r, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        rep = tl.program_id(1).to(tl.int64)
        key = tl.load(seed_ptr + rep) + seed_offset
        tl.store(out_ptr + rep * stride_r + offs,
                 tl.rand(key, offs).to(out_ptr.dtype.element_ty), mask=offs < n)

    # Triton compiles a copy per divisibility-by-16 / equal-to-1 pattern of integer arguments:
    # those below change with every call (offset) or shape (rows, bias width, replicas) and gain
    # nothing from it, so one binary per tile and flags serves every shape (the padded widths
    # and strides are multiples of 64 anyway)
    sweep = triton.jit(half_sweep_kernel,
                       do_not_specialize=["seed_offset", "M", "N", "R", "stride_br"])
    uniform = triton.jit(uniform_kernel, do_not_specialize=["seed_offset"])
    if interpret:
        return sweep, uniform

    configs = [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8},
                      num_warps=w, num_stages=s)
        for bm, bn, bk, w, s in [
            (128, 128, 64, 8, 3), (64, 128, 64, 4, 4), (128, 64, 64, 4, 4),
            (64, 64, 64, 4, 4), (128, 256, 64, 8, 3), (64, 256, 64, 4, 3),
            (128, 128, 128, 8, 3),
            # small-register tiles: two or three resident per SM, so that one tile's
            # epilogue (Philox, integer pipes) overlaps another's products (tensor cores)
            (64, 128, 64, 4, 2), (128, 64, 64, 4, 2),
            # picked at Nv = 1560, Nh = 1024, 2000 chains on an H200 (R = 4: 33.1 -> 31.3 us
            # per sweep per replica; docs/benchmarks.md)
            (128, 256, 64, 8, 4), (128, 128, 64, 4, 3), (128, 128, 64, 8, 4),
            (128, 128, 64, 8, 5),
        ] + EXTRA_TILES
    ]

    def divides_k(configs: list, named_args: dict, **_: Any) -> list:
        # the kernel has no mask along K: keep only tiles whose BLOCK_K divides K
        return [c for c in configs if named_args["K"] % c.kwargs["BLOCK_K"] == 0]

    def bench(fn: Any, quantiles: Any) -> Any:
        # short timings (~30 ms a config): one autotuning per shape stays under a second
        return triton.testing.do_bench(fn, warmup=5, rep=25, quantiles=quantiles)

    tuned = triton.autotune(configs=configs, do_bench=bench,
                            key=["M", "NB", "K", "R", "SAMPLE", "STORE_PROB", "ROUNDS", "BITS"],
                            prune_configs_by={"early_config_prune": divides_k})
    return tuned(sweep), uniform


def _with_replicas(t: torch.Tensor | None, ndim: int) -> torch.Tensor | None:
    """``t`` with a leading replica axis of 1 when it has ``ndim - 1`` dims (a view)."""
    if t is None or t.ndim == ndim:
        return t
    return t.unsqueeze(0)


def _seeds(seed: torch.Tensor, n_replicas: int) -> torch.Tensor:
    if (seed.dtype != torch.int64 or seed.ndim != 1 or seed.shape[0] != n_replicas
            or not seed.is_contiguous()):
        raise ValueError(f"seed must be a contiguous int64 tensor of shape ({n_replicas},) "
                         f"(one Philox key per replica); got {seed.dtype} "
                         f"{tuple(seed.shape)}")
    return seed


def uniform_(out: torch.Tensor, *, seed: torch.Tensor, seed_offset: int = 0) -> torch.Tensor:
    """Fill ``out`` with Philox uniforms in [0, 1): row ``r`` of ``out`` (R, n) keyed by
    ``seed[r] + seed_offset`` (a 1-d ``out`` has one row: ``seed`` of shape (1,)).

    Graph-capturable: the keys are read from the device tensor ``seed`` at run time.
    """
    if not out.is_contiguous():
        raise ValueError("out must be contiguous")
    rows = _with_replicas(out, 2)
    n_rep, n = int(rows.shape[0]), int(rows.shape[1])
    _seeds(seed, n_rep)
    kernel = _kernels(interpreting())[1]
    kernel[(-(-n // 1024), n_rep)](rows, seed, int(seed_offset), n, rows.stride(0), BLOCK=1024)
    return out


def half_sweep(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, *,
               out: torch.Tensor | None, prob: torch.Tensor | None = None,
               seed: torch.Tensor | None = None, seed_offset: int = 0,
               rounds: int | None = None, bits: int | None = None) -> None:
    """``out <- Bernoulli(sigmoid(x @ w + bias))`` (and/or ``prob <- sigmoid(...)``), fused,
    for one model or for R replicas in one launch.

    All buffers are zero-padded to multiples of :data:`PAD` (see :func:`padded`); the
    products, the samples and the probabilities are computed for every padded column, so
    the padded columns of ``out`` hold meaningless 0/1 values: they only ever multiply the
    zero padding rows of the next weight operand. Every argument has the same leading
    replica axis (R,) or none (one model).

    Parameters
    ----------
    x
        bfloat16 states ([R,] rows, K_pad), unit column stride; columns past the true
        reduction size multiply zero rows of ``w``.
    w
        bfloat16 weights ([R,] K_pad, NB) with unit column stride and zero padding rows and
        columns.
    bias
        float32 ([R,] n_cols), the true output width (``n_cols <= NB``), unit stride.
    out
        bfloat16 samples ([R,] rows, NB), unit column stride, or ``None`` to skip sampling.
    prob
        float32 probabilities ([R,] rows, NB), or ``None``.
    seed
        int64 device tensor of shape (R,) (or (1,) without a replica axis): the Philox key
        of replica ``r`` is ``seed[r] + seed_offset``.
    seed_offset
        Distinguishes the calls that share one ``seed`` value (e.g. half sweep index).
    rounds, bits
        Philox rounds and random bits per uniform (default :data:`PHILOX_ROUNDS`,
        :data:`UNIFORM_BITS`; other values for benchmarks).

    Raises
    ------
    ValueError
        On shapes, dtypes or strides the kernel cannot take (the message says which).
    """
    rounds = PHILOX_ROUNDS if rounds is None else int(rounds)
    bits = UNIFORM_BITS if bits is None else int(bits)
    if bits not in (16, 32) or rounds < 1:
        raise ValueError(f"bits must be 16 or 32 and rounds >= 1; got {bits}, {rounds}")
    if x.ndim not in (2, 3):
        raise ValueError(f"x must have shape ([R,] rows, K_pad); got {tuple(x.shape)}")
    x3, w3, b2 = _with_replicas(x, 3), _with_replicas(w, 3), _with_replicas(bias, 2)
    out3, prob3 = _with_replicas(out, 3), _with_replicas(prob, 3)
    n_rep, rows, k_pad = (int(s) for s in x3.shape)
    nb = int(w3.shape[-1])
    if (w3.ndim != 3 or b2.ndim != 2 or w3.shape[0] != n_rep or b2.shape[0] != n_rep
            or w3.shape[1] != k_pad or k_pad % PAD or nb % PAD or int(b2.shape[1]) > nb):
        raise ValueError(f"shapes disagree: x {tuple(x.shape)}, w {tuple(w.shape)}, bias "
                         f"{tuple(bias.shape)}; the replica axes must match and the reduction "
                         f"and padded output dims be multiples of {PAD}")
    for name, t, dtype in (("x", x3, torch.bfloat16), ("w", w3, torch.bfloat16),
                           ("bias", b2, torch.float32), ("out", out3, torch.bfloat16),
                           ("prob", prob3, torch.float32)):
        if t is None:
            continue
        if t.stride(-1) != 1 or t.dtype != dtype:
            raise ValueError(f"{name} must be {dtype} with unit stride along its last dim")
        if name in ("out", "prob") and tuple(t.shape) != (n_rep, rows, nb):
            raise ValueError(f"{name} must have shape {tuple(x.shape[:-1]) + (nb,)} (x's "
                             f"leading dims, padded output width); got "
                             f"{tuple((out if name == 'out' else prob).shape)}")
    if out is None and prob is None:
        raise ValueError("nothing to compute: give out and/or prob")
    if out is not None:
        if seed is None:
            raise ValueError("sampling needs a seed tensor")
        _seeds(seed, n_rep)
        if rows * nb // (bits // 8) >= 2**31:  # Philox counters are int32 within a replica
            raise ValueError(f"{rows} rows x {nb} columns exceed the 2^31 Philox counters of "
                             "one key; sample fewer chains per call")
    if n_rep > 65535:
        raise ValueError(f"at most 65535 replicas per launch; got {n_rep}")
    interpret = interpreting()
    kernel = _kernels(interpret)[0]
    dummy = b2  # any pointer for the unused outputs
    args = (x3, w3, b2, out3 if out3 is not None else dummy,
            prob3 if prob3 is not None else dummy, seed if seed is not None else dummy,
            int(seed_offset), rows, int(b2.shape[1]), nb, k_pad, n_rep,
            x3.stride(0), x3.stride(1), w3.stride(0), w3.stride(1), b2.stride(0),
            out3.stride(0) if out3 is not None else 0, out3.stride(1) if out3 is not None else 0,
            prob3.stride(0) if prob3 is not None else 0,
            prob3.stride(1) if prob3 is not None else 0)
    flags = {"SAMPLE": out is not None, "STORE_PROB": prob is not None, "ROUNDS": rounds,
             "BITS": bits}
    if interpret:
        bm, bn, bk = INTERPRETER_TILE
        grid = (-(-rows // bm) * -(-nb // bn), n_rep)
        kernel[grid](*args, **flags, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8,
                     F32_DOT=True)
        return
    grid = lambda meta: (  # noqa: E731  (Triton's grid protocol)
        -(-rows // meta["BLOCK_M"]) * -(-nb // meta["BLOCK_N"]), n_rep)
    kernel[grid](*args, **flags)
