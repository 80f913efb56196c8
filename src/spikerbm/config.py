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

#: Allowed values of ``train.optimizer``.
OPTIMIZERS = ("sgd", "adam")

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
        Maximum number of SGD updates (training stops earlier when the online test
        log-likelihood stops improving, see ``patience``).
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
        Learning rate (of SGD or Adam, see ``optimizer``): held for the first
        ``decay_start * n_updates`` updates, then decayed geometrically to ``lr * lr_final``
        at ``n_updates`` (:func:`spikerbm.pcd.lr_schedule`).
    optimizer
        Ascent step on the PCD direction: ``adam`` (the default; Kingma & Ba 2015, per-entry
        step sizes in the centered parametrisation, docs/methods.md §3) or ``sgd``.
    lr_final
        Final learning rate as a fraction of ``lr``, in (0, 1]; 1 keeps it constant.
    decay_start
        Fraction of ``n_updates`` before the decay starts, in [0, 1). The decay is laid out
        over the maximum ``n_updates``: a run stopped early stops before its end.
    momentum
        Nesterov momentum of SGD in [0, 1) (0: plain SGD; only with ``optimizer`` ``sgd``;
        :class:`spikerbm.pcd.Optimizer`, docs/methods.md §3).
    centered
        Use the centered gradient (docs/methods.md §3); plain PCD gradient otherwise.
    weight_std
        Standard deviation of the initial weights.
    precision
        Matrix products of sampling and of the gradient moments: ``float32`` (IEEE),
        ``tf32`` (TF32 tensor cores on CUDA) or ``bf16`` (CUDA: fused bfloat16-operand
        sampling kernels in a CUDA graph, TF32 gradient moments; on CPU it runs as
        ``float32``). Never used in energies or trajectory-AIS log-weights (float64).
    tais_chains
        Trajectory-AIS chains run along training (0 disables; ``log_z_tais`` and the online
        log-likelihoods are then NaN and early stopping is off).
    tais_groups
        Independent trajectory-AIS chain groups (``tais_chains`` must be a multiple); the
        spread of their estimates is ``log_z_tais_std`` (docs/methods.md §4).
    ess_threshold
        Trajectory-AIS resampling threshold on the normalised effective sample size.
    eval_every
        Updates between two online evaluations of the train and test log-likelihood (float64
        mean free energies with the trajectory-AIS log Z; docs/methods.md §3).
    anchor_every
        Evaluations between two anchors of trajectory AIS (docs/methods.md §4, "Anchors"): at
        the first evaluation (update ``eval_every``), at every ``anchor_every``-th one (update
        a multiple of ``anchor_every * eval_every``) and at the last update ``n_updates``, an
        independent ``log Z`` of the current parameters (exact when ``min(N, n_hidden) <=
        exact_max_units``, else AIS with ``anchor_chains`` x 4 repeats x ``anchor_betas``,
        float32 sampling, float64 energies) re-anchors trajectory AIS and measures its drift,
        which enters the stated error. 0 disables anchors.
    anchor_chains
        AIS chains per repeat of an anchor (4 repeats, pooled).
    anchor_betas
        Inverse temperatures of an anchor's AIS (linear grid 0..1, one sweep each).
    exact_max_units
        Exact ``log Z`` (enumeration) when ``min(N, n_hidden) <= exact_max_units``: the
        workflow passes ``likelihood.exact_max_units`` (one limit for the checkpoint
        estimates and the anchors).
    patience
        Early stopping: stop once the online test log-likelihood has not improved by
        ``min_delta`` over the last ``patience`` updates; 0 disables it (then training runs
        ``n_updates`` and ``still_improving`` is judged over the last quarter of the run).
        Without trajectory AIS or test data there is no online log-likelihood and no early
        stopping (the workflow refuses ``patience > 0`` with ``tais_chains: 0``).
    min_delta
        Smallest improvement (nats per sample) that counts for early stopping.
    replicas
        Replicas trained per model from different seeds (replica 0 from the job's seed, replica
        ``r`` from ``derive_seed(seed, "replica", r)``), in lockstep at evaluation granularity
        (docs/methods.md §3, "Replicas"); 1 is a plain single-model run. Left out of
        :meth:`to_dict` when 1, so a single-model run keeps its config hash, its recorded
        config and its resume state of versions without replicas.
    device
        ``auto``, ``cpu`` or ``cuda``.
    """

    n_hidden: int
    n_updates: int = 2000
    n_checkpoints: int = 20
    n_chains: int = 500
    batch_size: int = 500
    k: int = 10
    lr: float = 0.003
    optimizer: str = "adam"
    lr_final: float = 0.01
    decay_start: float = 0.5
    momentum: float = 0.0
    centered: bool = True
    weight_std: float = 1e-2
    precision: str = "float32"
    tais_chains: int = 500
    tais_groups: int = 10
    ess_threshold: float = 0.3
    eval_every: int = 100
    anchor_every: int = 5
    anchor_chains: int = 25
    anchor_betas: int = 500
    exact_max_units: int = 22
    patience: int = 500
    min_delta: float = 0.01
    replicas: int = 1
    device: str = "auto"

    def __post_init__(self) -> None:
        ints = ("n_hidden", "n_updates", "n_checkpoints", "n_chains", "batch_size", "k",
                "tais_chains", "tais_groups", "eval_every", "anchor_every", "anchor_chains",
                "anchor_betas", "exact_max_units", "patience", "replicas")
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"train.{name} must be an integer; got {value!r}")
        if not isinstance(self.centered, bool):
            raise ValueError(f"train.centered must be true or false; got {self.centered!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}; got "
                             f"{self.precision!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}; got "
                             f"{self.optimizer!r}")
        for name in ("lr", "lr_final", "decay_start", "momentum", "weight_std",
                     "ess_threshold", "min_delta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
                raise ValueError(f"train.{name} must be a number; got {value!r}")
            if not math.isfinite(float(value)):
                raise ValueError(f"train.{name} must be finite; got {value!r}")
        minimum = {"n_hidden": 1, "n_updates": 1, "n_checkpoints": 2, "n_chains": 2,
                   "batch_size": 2, "k": 1, "tais_chains": 0, "tais_groups": 1,
                   "eval_every": 1, "anchor_every": 0, "anchor_chains": 1, "anchor_betas": 2,
                   "exact_max_units": 0, "patience": 0, "replicas": 1}
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
        if not 0 < self.lr_final <= 1:
            raise ValueError(f"train.lr_final must be in (0, 1] (a fraction of train.lr; 1 = "
                             f"constant); got {self.lr_final}")
        if not 0 <= self.decay_start < 1:
            raise ValueError(f"train.decay_start must be in [0, 1) (a fraction of "
                             f"train.n_updates); got {self.decay_start}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"train.momentum must be in [0, 1) (0: plain SGD); got "
                             f"{self.momentum}")
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"train.momentum is an SGD option; got momentum {self.momentum} "
                             f"with optimizer {self.optimizer!r}: set train.momentum: 0 or "
                             "optimizer: sgd")
        if self.weight_std < 0:
            raise ValueError(f"train.weight_std must be >= 0; got {self.weight_std}")
        if not 0 < self.ess_threshold <= 1:
            raise ValueError(f"train.ess_threshold must be in (0, 1]; got {self.ess_threshold}")
        if self.min_delta < 0:
            raise ValueError(f"train.min_delta must be >= 0 (nats per sample); got "
                             f"{self.min_delta}")
        per_group = -(-self.tais_chains // self.tais_groups)  # rounded up
        if self.tais_chains and (self.tais_chains % self.tais_groups or per_group < 2):
            raise ValueError(
                f"train.tais_chains = {self.tais_chains} must be a multiple of "
                f"train.tais_groups = {self.tais_groups} with at least 2 chains per group; "
                f"e.g. train.tais_chains: {max(2, per_group) * self.tais_groups}"
            )
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
        for name in ("lr", "lr_final", "decay_start", "momentum", "weight_std",
                     "ess_threshold", "min_delta"):
            if isinstance(values.get(name), int) and not isinstance(values.get(name), bool):
                values[name] = float(values[name])
        return cls(n_hidden=int(n_hidden), device=str(device), **values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the configuration (JSON-able); without ``replicas`` when it is 1 (a
        single-model run records, and hashes, exactly what it did before replicas existed)."""
        out = asdict(self)
        if out["replicas"] == 1:
            del out["replicas"]
        if out["momentum"] == 0:
            del out["momentum"]
        return out

    def to_json(self) -> str:
        """Deterministic JSON text of the configuration."""
        return canonical_json(self.to_dict())


class ConfigError(ValueError):
    """A bad configuration: one line naming the config file(s), the keys and the fix."""

    user_facing = True


def check_config_consistency(cfg: Mapping[str, Any], *,
                             where: str = "config/config.yaml") -> None:
    """Check the cross-key rules the JSON schema cannot express, before any job runs.

    Parameters
    ----------
    cfg
        The whole Snakemake config, validated by ``workflow/schemas/config.schema.yaml`` with
        its defaults filled in (``validate(config, schema, set_default=True)``), so every key
        is present.
    where
        The config file(s) the values came from, named in the message.

    Raises
    ------
    ConfigError
        One message listing every violated rule, naming the file, the keys and the fix.
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
    if cfg["train"]["patience"] and cfg["train"]["tais_chains"] < 1:
        problems.append(
            f"train.patience = {cfg['train']['patience']} (early stopping) needs the online "
            "log-likelihood, which needs trajectory AIS: set train.tais_chains > 0 or "
            "train.patience: 0"
        )
    if problems:
        raise ConfigError(f"{where}: invalid configuration: " + "; ".join(problems))
