"""Static cost of the fused half-sweep kernel: compile it for Hopper (sm_90) on any machine and
count its SASS instructions, per random-number variant (no GPU needed; Triton's bundled ptxas
and cuobjdump)::

    python benchmarks/kernel_sass.py                       # the current kernel's variants
    python benchmarks/kernel_sass.py --old old_kernels.py  # and an older spikerbm/kernels.py

Counts are per thread for one 128 x 128 output tile (8 warps: 64 entries a thread; K loop body
counted once), with the argument alignments Triton specialises at run time (pointers and the
padded sizes and strides divisible by 16). They measure issue slots, not time: MUFU (exp,
reciprocal) and I2F conversions run at a quarter of the integer/float rate on Hopper.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import re
import subprocess
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from spikerbm import kernels

TILE = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8}
DIV16 = ["x_ptr", "w_ptr", "bias_ptr", "out_ptr", "prob_ptr", "seed_ptr", "NB", "K",
         "stride_xr", "stride_xm", "stride_wr", "stride_wk", "stride_or", "stride_om",
         "stride_pr", "stride_pm"]
OPS = ["IMAD", "LOP3", "IADD3", "SHF", "MUFU", "I2FP", "FFMA", "FMUL", "FADD", "FSETP", "STS",
       "LDS", "STG", "HGMMA"]


def count(fn, consts: dict, tag: str) -> None:
    names = fn.arg_names
    sig = {n: ("constexpr" if n in consts else "*bf16" if n in ("x_ptr", "w_ptr", "out_ptr")
               else "*fp32" if n in ("bias_ptr", "prob_ptr") else "*i64" if n == "seed_ptr"
               else "i32") for n in names}
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in DIV16 if n in names}
    ck = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs),
                        target=GPUTarget("cuda", 90, 32),
                        options={"num_warps": 8, "num_stages": 3})
    tool = Path(triton.__path__[0], "backends", "nvidia", "bin", "cuobjdump")
    path = Path("/tmp") / f"spikerbm_sass_{tag}.cubin"
    path.write_bytes(ck.asm["cubin"])
    sass = subprocess.run([str(tool), "-sass", str(path)], capture_output=True, text=True,
                          check=True).stdout
    ops = collections.Counter(m.split(".")[0] for m in re.findall(
        r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)", sass))
    print(f"| {tag} | {sum(ops.values())} | {ck.asm['ttgir'].count('convert_layout')} | "
          + ", ".join(f"{o} {ops[o]}" for o in OPS if ops[o]) + " |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", type=Path, help="an older kernels.py to count beside")
    args = p.parse_args()
    print(f"Triton {triton.__version__}, sm_90, tile 128x128x64, 8 warps, 3 stages\n"
          "| kernel | SASS instructions | layout conversions | by opcode |\n|---|---|---|---|")
    if args.old:
        spec = importlib.util.spec_from_file_location("old_kernels", args.old)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        fn = (old._kernel() if hasattr(old, "_kernel") else old._kernels(False))[0].fn
        extra = {"ROUNDS": 10} | ({"BITS": 32, "F32_DOT": False} if "BITS" in fn.arg_names
                                  else {})
        count(fn, {"SAMPLE": True, "STORE_PROB": False, **extra, **TILE}, "old: sample")
    fn = kernels._kernels(False)[0].fn
    for bits, rounds in ((32, 10), (16, 10), (32, 7), (16, 7)):
        count(fn, {"SAMPLE": True, "STORE_PROB": False, "ROUNDS": rounds, "BITS": bits,
                   "F32_DOT": False, **TILE}, f"sample, {bits}-bit uniforms, Philox-{rounds}")
    count(fn, {"SAMPLE": False, "STORE_PROB": True, "ROUNDS": 10, "BITS": 32, "F32_DOT": False,
               **TILE}, "hidden means (probabilities only)")


if __name__ == "__main__":
    main()
