"""SGD vs Adam on a strongly coupled, clustered planted RBM (where entrywise Adam collapsed).

The planted model of ``tests/test_training.py`` (``planted_data``): 21 neurons, two 8-neuron
assemblies (weights 3, hidden biases -10) and one random hidden unit; 4001 train / 1999 test
bins sampled after 200 sweeps of 6000 chains. Trains M = 5 with the current quick-start
settings scaled down (batch = chains = 201, k = 5, weight_std 0.1) for SGD lr 0.1 and for Adam
+ decay (lr 0.03 and 0.01, held for half the run then decayed to 1%), two seeds each, and prints
the exact test log-likelihood (log Z by enumerating the hidden layer) beside the truth's.
Adam runs in the centered parametrisation (``spikerbm.pcd.Optimizer``); the entrywise step it
replaced collapsed here. Results: docs/benchmarks.md, "Recovery of a planted model".

    OMP_NUM_THREADS=1 python benchmarks/recovery_clustered.py --seeds 11 12 13 14 15 16
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from spikerbm import rbm as R
from spikerbm.partition import exact_log_z
from spikerbm.sampling import Sampler, random_states
from spikerbm.training import TrainConfig, train

CONFIGS = {"sgd lr 0.1": {"optimizer": "sgd", "lr": 0.1, "lr_final": 1.0, "decay_start": 0.0},
           "adam 0.03 + decay": {"optimizer": "adam", "lr": 0.03, "lr_final": 0.01,
                                 "decay_start": 0.5},
           "adam 0.01 + decay": {"optimizer": "adam", "lr": 0.01, "lr_final": 0.01,
                                 "decay_start": 0.5}}


def planted() -> tuple[R.RBM, np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(3)
    n = 21
    W = torch.zeros(n, 3)
    W[:8, 0], W[8:16, 1], W[:, 2] = 3.0, 3.0, 0.6 * torch.randn(n, generator=g)
    rbm = R.RBM(W, -2.0 * torch.ones(n), torch.tensor([-10.0, -10.0, -1.0]))
    chains = Sampler(torch.device("cpu")).chains(
        random_states(n_chains=6000, n_visible=n, generator=g), n_hidden=3, generator=g)
    chains.sweep(rbm, k=200)
    v = chains.v.numpy().astype(np.uint8)
    return rbm, v[:4001], v[4001:]


def test_ll(rbm: R.RBM, test: np.ndarray) -> float:
    r = rbm.to(dtype=torch.float64)
    return float(-R.free_energy(r, torch.as_tensor(test)).mean() - exact_log_z(r))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--updates", nargs="*", type=int, default=[400, 2000])
    p.add_argument("--seeds", nargs="*", type=int, default=[11, 12])
    args = p.parse_args()
    torch.set_num_threads(1)
    truth, train_v, test_v = planted()
    print(f"truth test LL {test_ll(truth, test_v):.3f} nats/sample")
    print("| updates | config | seed | test LL | train CPU s |\n|---|---|---|---|---|")
    for n in args.updates:
        for name, kw in CONFIGS.items():
            for seed in args.seeds:
                cfg = TrainConfig(n_hidden=5, n_updates=n, n_checkpoints=6, n_chains=201,
                                  batch_size=201, k=5, weight_std=0.1, tais_chains=0,
                                  patience=0, device="cpu", **kw)
                c0 = time.process_time()
                ds = train(train_v, cfg=cfg, seed=seed)
                ll = test_ll(R.rbm_from_dataset(ds), test_v)
                print(f"| {n} | {name} | {seed} | {ll:.3f} | {time.process_time() - c0:.1f} |",
                      flush=True)


if __name__ == "__main__":
    main()
