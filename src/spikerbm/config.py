"""Configuration values and their cross-key checks, importable without torch.

The JSON schema (``workflow/schemas/config.schema.yaml``) validates each key and fills its
default; what the schema cannot express (relations between keys) is checked here, so the DAG
build (``workflow/rules/common.smk``) and the jobs share one implementation without importing
torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from spikerbm.provenance import canonical_json

#: Allowed values of ``train.precision``.
PRECISIONS = ("float32", "tf32", "bf16")

# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Validated training configuration of one model (one ``n_hidden``).

    Attributes
    ----------
    n_hidden
        Number of hidden units.
    n_updates
        Number of SGD updates.
    n_checkpoints
        Number of stored checkpoints, log-spaced in update count, including update 0
        (initialisation) and the last update.
    n_chains
        Number of persistent chains.
    batch_size
        Minibatch size (train bins per update, drawn in shuffled order, epoch by epoch).
    k
        Gibbs sweeps of the persistent chains per update.
    lr
        SGD learning rate.
    centered
        Use the centered gradient (METHODS §3); plain PCD gradient otherwise.
    weight_std
        Standard deviation of the initial weights.
    precision
        Matrix products of sampling and of the gradient moments: ``float32`` (IEEE),
        ``tf32`` (TF32 tensor cores on CUDA) or ``bf16`` (CUDA: fused bfloat16-operand
        sampling kernels in a CUDA graph, TF32 gradient moments; on CPU it runs as
        ``float32``). Never used in energies or trajectory-AIS log-weights (float64).
    tais_chains
        Trajectory-AIS chains run along training (0 disables; ``log_z_tais`` is then NaN).
    ess_threshold
        Trajectory-AIS resampling threshold on the normalised effective sample size.
    device
        ``auto``, ``cpu`` or ``cuda``.
    """

    n_hidden: int
    n_updates: int = 2000
    n_checkpoints: int = 20
    n_chains: int = 500
    batch_size: int = 500
    k: int = 10
    lr: float = 0.1
    centered: bool = True
    weight_std: float = 1e-2
    precision: str = "float32"
    tais_chains: int = 500
    ess_threshold: float = 0.3
    device: str = "auto"

    def __post_init__(self) -> None:
        ints = ("n_hidden", "n_updates", "n_checkpoints", "n_chains", "batch_size", "k",
                "tais_chains")
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"train.{name} must be an integer; got {value!r}")
        if not isinstance(self.centered, bool):
            raise ValueError(f"train.centered must be true or false; got {self.centered!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}; got "
                             f"{self.precision!r}")
        for name in ("lr", "weight_std", "ess_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
                raise ValueError(f"train.{name} must be a number; got {value!r}")
            if not math.isfinite(float(value)):
                raise ValueError(f"train.{name} must be finite; got {value!r}")
        minimum = {"n_hidden": 1, "n_updates": 1, "n_checkpoints": 2, "n_chains": 2,
                   "batch_size": 2, "k": 1, "tais_chains": 0}
        for name, low in minimum.items():
            if getattr(self, name) < low:
                raise ValueError(f"train.{name} must be >= {low}; got {getattr(self, name)}")
        if self.n_checkpoints > self.n_updates + 1:
            raise ValueError(
                f"train.n_checkpoints = {self.n_checkpoints} exceeds n_updates + 1 = "
                f"{self.n_updates + 1} (update 0 plus every update); lower n_checkpoints or "
                "raise n_updates"
            )
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0; got {self.lr}")
        if self.weight_std < 0:
            raise ValueError(f"train.weight_std must be >= 0; got {self.weight_std}")
        if not 0 < self.ess_threshold <= 1:
            raise ValueError(f"train.ess_threshold must be in (0, 1]; got {self.ess_threshold}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be one of auto, cpu, cuda; got {self.device!r}")

    @classmethod
    def from_config(cls, train: Mapping[str, Any], *, n_hidden: int,
                    device: str = "auto") -> TrainConfig:
        """Build the configuration of one model from the config's ``train`` section.

        Parameters
        ----------
        train
            The ``train`` mapping of config.yaml (its ``n_hidden`` list is ignored: the model's
            size is ``n_hidden``); missing keys take the defaults of this class.
        n_hidden
            Hidden units of this model (one of ``train.n_hidden``).
        device
            The config's top-level ``device``.

        Raises
        ------
        ValueError
            On unknown keys or invalid values, naming the key.
        """
        known = {f.name for f in fields(cls)} - {"n_hidden", "device"}
        values = {str(k): v for k, v in dict(train).items() if k != "n_hidden"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown train config key(s) {unknown}; known keys: "
                             f"{sorted(known | {'n_hidden'})}")
        if "n_hidden" in train:
            sizes = train["n_hidden"]
            sizes = sizes if isinstance(sizes, list | tuple) else [sizes]
            if int(n_hidden) not in [int(s) for s in sizes]:
                raise ValueError(f"n_hidden={n_hidden} is not one of train.n_hidden {sizes}")
        for name in ("lr", "weight_std", "ess_threshold"):
            if isinstance(values.get(name), int) and not isinstance(values.get(name), bool):
                values[name] = float(values[name])
        return cls(n_hidden=int(n_hidden), device=str(device), **values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the configuration (JSON-able)."""
        return asdict(self)

    def to_json(self) -> str:
        """Deterministic JSON text of the configuration."""
        return canonical_json(self.to_dict())


def check_config_consistency(cfg: Mapping[str, Any]) -> None:
    """Check the cross-key rules the JSON schema cannot express, before any job runs.

    Parameters
    ----------
    cfg
        The whole Snakemake config, validated by ``workflow/schemas/config.schema.yaml`` with
        its defaults filled in (``validate(config, schema, set_default=True)``), so every key
        is present.

    Raises
    ------
    ValueError
        One message listing every violated rule, naming the keys and the fix.
    """
    problems = []
    b = cfg["binarize"]
    if b["n_test_blocks"] >= b["n_blocks"]:
        problems.append(
            f"binarize.n_test_blocks = {b['n_test_blocks']} must be < binarize.n_blocks = "
            f"{b['n_blocks']} (some blocks must stay in the train split)"
        )
    for n_hidden in cfg["train"]["n_hidden"]:
        try:
            TrainConfig.from_config(cfg["train"], n_hidden=n_hidden, device=cfg["device"])
        except ValueError as err:
            problems.append(str(err))
            break
    dyn = cfg["dynamics"]
    lo, hi = dyn["fit_lag_range"]
    if not 1 <= lo < hi <= dyn["max_lag_bins"]:
        problems.append(
            f"dynamics.fit_lag_range = [{lo}, {hi}] must satisfy 1 <= lo < hi <= "
            f"dynamics.max_lag_bins = {dyn['max_lag_bins']}"
        )
    if dyn["record_sweeps"] <= dyn["max_lag_sweeps"]:
        problems.append(
            "dynamics.record_sweeps must exceed dynamics.max_lag_sweeps; got "
            f"{dyn['record_sweeps']} <= {dyn['max_lag_sweeps']}"
        )
    if cfg["likelihood"]["method"] == "tais" and cfg["train"]["tais_chains"] < 1:
        problems.append("likelihood.method: tais needs train.tais_chains > 0")
    if problems:
        raise ValueError(
            "invalid configuration: "
            + "; ".join(problems)
            + " (fix config/config.yaml)"
        )
