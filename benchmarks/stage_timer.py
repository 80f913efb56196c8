"""Wall time per stage of an in-process pipeline run: the one timer of the benchmarks that chain
the library's stage functions (pipeline_scale.py, real_example.py, steinmetz_atlas.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


class StageTimer:
    """``timer(stage, fn, *args, **kwargs)`` returns ``fn(*args, **kwargs)`` and adds its wall
    time (s) to ``seconds[stage]`` and one to ``calls[stage]``. On CUDA the device is
    synchronised before and after the call, so the kernels a stage queues are charged to it."""

    def __init__(self, device: torch.device | str) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def __call__(self, stage: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0
        self.calls[stage] = self.calls.get(stage, 0) + 1
        return out
