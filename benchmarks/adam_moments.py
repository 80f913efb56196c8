"""Scale of Adam's second moments on the real example and on a planted model (issue 17).

Would a larger Adam ε make noise-dominated weights take SGD-like steps on real data while
keeping Adam's per-entry steps on planted data? Only if the real recording's gradient RMS
sits below the planted model's. This trains Adam (centered coordinates, ``lr`` 0.03, constant)
for ``--updates`` on the committed Steinmetz session (``config/steinmetz.yaml``'s minibatch,
chains, k, M = 16) and on ``ising16-zero-s1-seed1`` (the quick start's minibatch, chains, k,
M = 48; ``recovery.py``), and prints quantiles of the bias-corrected ``sqrt(s_W)`` and the
median ``|m_W| / sqrt(s_W)`` (docs/benchmarks.md, "One recipe for planted truth and real
data?"). CPU, ~40 s: ``OMP_NUM_THREADS=1 python benchmarks/adam_moments.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import real_example as rex  # noqa: E402
import recovery as rec  # noqa: E402
import recovery_core as rc  # noqa: E402

from spikerbm import io, pcd  # noqa: E402
from spikerbm.binarize import split_arrays, validate_raster  # noqa: E402
from spikerbm.provenance import derive_seed  # noqa: E402
from spikerbm.training import TrainConfig, train  # noqa: E402


def adam_moments(data: np.ndarray, cfg: TrainConfig) -> dict[str, np.ndarray]:
    """Train and return the run's final Adam moments (the optimizer the training loop built)."""
    built: list[pcd.Optimizer] = []
    init = pcd.Optimizer.__init__

    def keep(self: pcd.Optimizer, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)
        built.append(self)

    pcd.Optimizer.__init__ = keep
    try:
        train(data, cfg=cfg, seed=1)
    finally:
        pcd.Optimizer.__init__ = init
    return {k: t.numpy() for k, t in built[-1].moments.items()}


def summary(label: str, mom: dict[str, np.ndarray], n_updates: int) -> None:
    rms = np.sqrt(mom["s_W"] / (1 - pcd.Optimizer.BETA2 ** n_updates))
    mean = np.abs(mom["m_W"] / (1 - pcd.Optimizer.BETA1 ** n_updates))
    q = np.quantile(rms, [0.05, 0.25, 0.5, 0.75, 0.95])
    print(f"{label}: sqrt(s_W) 5/25/50/75/95 % {' / '.join(f'{x:.4f}' for x in q)}; "
          f"median |m_W|/sqrt(s_W) {np.median(mean / rms):.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--updates", type=int, default=1000)
    args = p.parse_args()
    torch.set_num_threads(1)
    adam = {"n_updates": args.updates, "n_checkpoints": 2, "lr": 0.03, "optimizer": "adam",
            "tais_chains": 0, "patience": 0, "device": "cpu"}
    cfg = rex.merged_config("config/steinmetz.yaml")
    session = rex.sessions_of(cfg)[0]
    path = rex.REPO / dict(kv.split("=", 1) for kv in session["params"].split(";"))["path"]
    raster = validate_raster(io.read_netcdf(path, raw=True), n_blocks=cfg["binarize"]["n_blocks"],
                             n_test_blocks=cfg["binarize"]["n_test_blocks"],
                             seed=derive_seed(cfg["seed"], "binarize", session["session_id"]),
                             session_id=session["session_id"])
    t = cfg["train"]
    real = TrainConfig(n_hidden=16, n_chains=t["n_chains"], batch_size=t["batch_size"], k=t["k"],
                       weight_std=t["weight_std"], **adam)
    summary("real example (M 16)", adam_moments(split_arrays(raster)["train"], real),
            args.updates)
    ds = rc.sample_dataset(rec.make_case("ising16-zero-s1-seed1"), n_samples=200000, seed=1)
    q = rec.yaml_train("config")
    planted = TrainConfig(n_hidden=48, n_chains=q["n_chains"], batch_size=q["batch_size"],
                          k=q["k"], weight_std=q["weight_std"], **adam)
    summary("ising16-zero-s1-seed1 (M 48)", adam_moments(ds.train, planted), args.updates)


if __name__ == "__main__":
    main()
