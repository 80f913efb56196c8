"""Provenance and seeding: what every artifact records about how it was made."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from functools import cache
from typing import Any

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


def provenance_attrs(*, config: Mapping[str, Any] | None = None, seed: int | None = None,
                     **extra: Any) -> dict[str, str | int | float]:
    """Attributes every artifact carries.

    Parameters
    ----------
    config
        The configuration values that produced the artifact (stored as JSON text).
    seed
        The seed the artifact was made with (``-1`` is stored when there was none).
    **extra
        More scalar attributes (strings or numbers; anything else is stored as JSON text).

    Returns
    -------
    dict
        netCDF-safe attributes: ``config`` (JSON), ``seed``, ``spikerbm_version``,
        ``git_commit``, ``created_utc`` and the extras.
    """
    attrs: dict[str, str | int | float] = {
        "config": canonical_json(config or {}),
        "seed": int(seed) if seed is not None else -1,
        "spikerbm_version": __version__,
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
