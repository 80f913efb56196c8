"""Every stage of the pipeline on CUDA, chained as the workflow chains them (GPU machines only).

The module tests check each stage's CUDA path in isolation; this one runs the stage functions the
workflow scripts call, on one small synthetic session with planted structure, with the model, the
chains and every sampler on the GPU, and checks the science comes out as on CPU: the selected
model beats the independent-site floor, its samples pass the equilibrium check, the couplings
correlate with the planted ones, and the dynamics fit a finite time rescale.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO

from spikerbm import binarize, couplings, dynamics, likelihood, synthetic, training
from spikerbm.areas import areas_of
from spikerbm.rbm import rbm_from_dataset
from spikerbm.selection import select_model, selected_dataset
from spikerbm.statistics import compute_statistics, gibbs_settings

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_whole_pipeline_on_cuda(tmp_path):
    run_pipeline(tmp_path, device="cuda")


def run_pipeline(tmp_path, *, device: str) -> None:
    """The workflow's stage functions in order, on ``device``, with the science checks."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    spikes, truth, _ = synthetic.generate_session(
        n_neurons=41, n_areas=3, duration_s=600, assemblies_per_area=2, assembly_size=7,
        n_cross_assemblies=1, seed=3, session_id="gpu", return_raster=True)
    raster = binarize.binarize(spikes, bin_ms=20, epochs="all", n_blocks=10, n_test_blocks=3,
                               seed=5, session_id="gpu")
    split = binarize.split_arrays(raster)
    lls, models = [], {}
    for n_hidden in (7, 25):  # exact log Z for 7, AIS for 25 (exact_max_units 22)
        tcfg = training.TrainConfig.from_config(
            {**cfg["train"], "n_hidden": [7, 25], "n_updates": 2000, "n_checkpoints": 8},
            n_hidden=n_hidden, device=device)
        models[n_hidden] = training.train_to_files(
            split["train"], cfg=tcfg, seed=11 + n_hidden,
            model_path=tmp_path / f"model{n_hidden}.nc", resume_path=tmp_path / "resume.nc",
            neuron_coords={k: raster[k].values for k in ("unit_id", "area")})
        lls.append(likelihood.checkpoint_loglik(
            models[n_hidden], split["train"], split["test"], seed=7, device=device,
            **cfg["likelihood"]))
    selection = select_model(likelihood.combine_loglik(lls))
    # the planted model has real structure: a trained RBM must beat independent sites on test
    assert selection.attrs["beats_floor"] == 1
    selected = selected_dataset(models[int(selection.attrs["n_hidden"])], selection,
                                           rate_hz=raster["rate_hz"].values)

    rbm = rbm_from_dataset(selected, device=device)
    stats = compute_statistics(rbm, train=split["train"], test=split["test"], seed=4,
                               **{**gibbs_settings(cfg["statistics"]), "n_samples": 3000,
                                  "n_triplets": 5000})
    assert stats.attrs["equilibrated"] == 1, stats.attrs["equilibration_reason"]
    # generated covariances well above the independent-site floor (CPU run of this: 0.74)
    assert stats.attrs["score_covariance"] > 0.3

    coup = couplings.compute_couplings(selected, areas=areas_of(selected, raster),
                                       truth=truth, seed=1, device=device,
                                       **{**cfg["couplings"], "min_area_neurons": 10})
    assert np.isfinite(coup["J"].values).all()
    assert coup.attrs["truth_pearson_J"] > 0.3  # planted J recovered (CPU runs give ~0.7)

    dyn = dynamics.dynamics_dataset(raster, selected, truth=truth, seed=2, device=device,
                                    **cfg["dynamics"])
    assert np.isfinite(dyn.attrs["ms_per_sweep"]) and dyn.attrs["ms_per_sweep"] > 0

