"""Provenance and seeding: what every artifact records about how it was made.

Importable without torch (the workflow imports it when the DAG is built): torch is only looked
at when the job has loaded it already.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np

from spikerbm import __version__


def _jsonable(obj: Any) -> Any:
    """Convert config-like objects (Snakemake Namespaces, numpy scalars) to plain JSON types."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return obj.item()
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return str(obj)


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text of ``obj`` (sorted keys, no spaces)."""
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"))


def derive_seed(base_seed: int, *keys: Any) -> int:
    """Derive a 63-bit seed from a base seed and any JSON-able keys.

    Parameters
    ----------
    base_seed
        The configured seed.
    *keys
        What the seed is for, e.g. ``("train", session, n_hidden)``; equal keys give equal seeds.

    Returns
    -------
    int
        A seed in ``[0, 2**63)``, stable across platforms and Python versions.
    """
    digest = hashlib.sha256(canonical_json([int(base_seed), *keys]).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@cache
def git_commit() -> str:
    """The git commit of the spikerbm checkout, ``"unknown"`` outside a checkout."""
    env = os.environ.get("SPIKERBM_GIT_COMMIT")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "-C", here, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: Any = None) -> str:
    """The device a job ran on: ``"cpu"`` or ``"cuda:<index> (<GPU name>)"``.

    Parameters
    ----------
    device
        The device the job computed on (a ``torch.device`` or its text, e.g. ``"cuda:0"``).
        ``None``: ``"cuda:<current>"`` if the job has initialised CUDA, else ``"cpu"``.
    """
    torch = sys.modules.get("torch")
    if device is None:
        cuda = torch is not None and torch.cuda.is_initialized()
        device = f"cuda:{torch.cuda.current_device()}" if cuda else "cpu"
    text = str(device)
    if not text.startswith("cuda"):
        return text
    if torch is None:  # a CUDA device named without torch loaded: nothing more to say
        return text
    index = torch.device(text).index
    index = torch.cuda.current_device() if index is None else index
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def environment_attrs(device: Any = None) -> dict[str, str]:
    """Where and with what software a job ran.

    Parameters
    ----------
    device
        As for :func:`device_name`.

    Returns
    -------
    dict
        ``device`` (:func:`device_name`), ``torch_version`` (the loaded torch, else the
        installed one, else ``"none"``), ``cuda_version`` (the CUDA runtime of the loaded torch
        build; ``"none"`` for a CPU build or when the job did not load torch),
        ``numpy_version`` and ``spikerbm_version``.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        torch_version, cuda_version = str(torch.__version__), str(torch.version.cuda or "none")
    else:
        try:
            torch_version = importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            torch_version = "none"
        cuda_version = "none"
    return {"device": device_name(device), "torch_version": torch_version,
            "cuda_version": cuda_version, "numpy_version": np.__version__,
            "spikerbm_version": __version__}


def provenance_attrs(*, config: Mapping[str, Any] | None = None, seed: int | None = None,
                     device: Any = None, **extra: Any) -> dict[str, str | int | float]:
    """Attributes every artifact carries.

    Parameters
    ----------
    config
        The configuration values that produced the artifact (stored as JSON text).
    seed
        The seed the artifact was made with (``-1`` is stored when there was none).
    device
        The device the job computed on (:func:`device_name`; ``None`` detects it, which is
        right when this is called after the computation).
    **extra
        More scalar attributes (strings or numbers; anything else is stored as JSON text).

    Returns
    -------
    dict
        netCDF-safe attributes: ``config`` (JSON), ``seed``, ``git_commit``, ``created_utc``,
        those of :func:`environment_attrs` (``device``, ``torch_version``, ``cuda_version``,
        ``numpy_version``, ``spikerbm_version``) and the extras.
    """
    attrs: dict[str, str | int | float] = {
        "config": canonical_json(config or {}),
        "seed": int(seed) if seed is not None else -1,
        **environment_attrs(device),
        "git_commit": git_commit(),
        "created_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    for key, value in extra.items():
        if isinstance(value, bool):
            attrs[key] = int(value)
        elif isinstance(value, str | int | float):
            attrs[key] = value
        else:
            attrs[key] = canonical_json(value)
    return attrs
