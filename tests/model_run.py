"""A tiny trained run written by the real stage functions (raster, training, log-likelihood,
selection), laid out as the workflow lays out one session: the input of the model API, CLI and
export tests. Small enough to enumerate (9 neurons: 512 states)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import xarray as xr

from spikerbm import binarize, io
from spikerbm import rbm as R
from spikerbm.exact import binary_states
from spikerbm.likelihood import checkpoint_loglik, combine_loglik
from spikerbm.provenance import provenance_attrs
from spikerbm.selection import select_model, selected_dataset
from spikerbm.training import TrainConfig, train_to_files

N_NEURONS, N_HIDDEN = 9, 5  # odd distinct sizes
UNIT_IDS = np.arange(101, 101 + N_NEURONS)
AREAS = np.array(["VISp"] * 4 + ["CA1"] * 3 + ["LGd"] * 2)


def planted() -> R.RBM:
    g = torch.Generator().manual_seed(11)
    W = torch.zeros(N_NEURONS, 2, dtype=torch.float64)
    W[:5, 0], W[4:, 1] = 4.0, 3.5
    W += 0.3 * torch.randn(N_NEURONS, 2, generator=g, dtype=torch.float64)
    return R.RBM(W, torch.full((N_NEURONS,), -3.0, dtype=torch.float64),
                 torch.tensor([-7.2, -5.5], dtype=torch.float64))


def exact_samples(rbm: R.RBM, n: int, seed: int) -> np.ndarray:
    states = binary_states(rbm.n_visible)
    p = torch.softmax(-R.free_energy(rbm, states), 0).numpy()
    rng = np.random.default_rng(seed)
    return states.numpy()[rng.choice(p.size, size=n, p=p)].astype(np.uint8)


def build_tiny_run(folder: Path) -> dict[str, Path]:
    """``raster.nc``, ``hidden~5/{model,loglik}.nc``, ``selected.nc`` under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    v = exact_samples(planted(), 1500, seed=3)
    raw = xr.Dataset({"raster": (("time_bin", "neuron"), v)},
                     coords={"unit_id": ("neuron", UNIT_IDS), "area": ("neuron", AREAS)},
                     attrs={"bin_ms": 20.0})
    raster = binarize.validate_raster(raw, n_blocks=6, n_test_blocks=2, seed=0,
                                      session_id="tiny")
    attrs = provenance_attrs(config={"test": "tiny run"}, seed=0, session_id="tiny")
    paths = {"raster": io.write_netcdf(raster, folder / "raster.nc", attrs=attrs)}
    splits = binarize.split_arrays(raster)
    cfg = TrainConfig(n_hidden=N_HIDDEN, n_updates=600, n_checkpoints=8, n_chains=200,
                      batch_size=200, k=5, lr=0.1, weight_std=0.1, tais_chains=50, device="cpu",
                      optimizer="sgd", lr_final=1.0, decay_start=0.0)
    hid = folder / f"hidden~{N_HIDDEN}"
    model = train_to_files(splits["train"], cfg=cfg, seed=5, model_path=hid / "model.nc",
                           resume_path=hid / "resume.nc", attrs=attrs,
                           neuron_coords={"unit_id": UNIT_IDS, "area": AREAS})
    paths["model"] = hid / "model.nc"
    ll = checkpoint_loglik(model, splits["train"], splits["test"], method="exact", seed=1)
    paths["loglik"] = io.write_netcdf(ll, hid / "loglik.nc", attrs=attrs)
    selection = select_model(combine_loglik([ll]))
    selected = selected_dataset(model, selection, rate_hz=raster["rate_hz"].values)
    paths["selected"] = io.write_netcdf(selected, folder / "selected.nc", attrs=attrs)
    return paths
