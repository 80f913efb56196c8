"""Every stage of the pipeline at paper scale on one device, timed stage by stage.

Chains the library functions the workflow's scripts call (no Snakemake, no files but the model
trajectory) on a synthetic session of paper size (N = 1560 neurons, 30 min) and prints a
markdown table of seconds per stage with the device and the shapes, plus the key results
(selected model vs floor, equilibrium check, coupling recovery, time rescale).

    python benchmarks/pipeline_scale.py --device cuda
    OMP_NUM_THREADS=2 python benchmarks/pipeline_scale.py --device cpu --n-neurons 160 \\
        --hidden 16 48 --updates 500 --k 10 --chains 500
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

import torch

from spikerbm import binarize, couplings, dynamics, likelihood, synthetic, training
from spikerbm.areas import areas_of
from spikerbm.rbm import rbm_from_dataset, resolve_device
from spikerbm.selection import select_model, selected_dataset
from spikerbm.statistics import compute_statistics

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stage_timer import StageTimer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-neurons", type=int, default=1560)
    p.add_argument("--duration-s", type=float, default=1800.0)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--updates", type=int, default=2000)
    p.add_argument("--checkpoints", type=int, default=10)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--chains", type=int, default=2000)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--ais-betas", type=int, default=1000)
    p.add_argument("--precision", default="bf16", choices=["float32", "tf32", "bf16"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = p.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    timed = StageTimer(device)
    times = timed.seconds

    spikes, truth = timed("synthetic session (CPU)", synthetic.generate_session,
                          n_neurons=args.n_neurons, duration_s=args.duration_s, seed=2,
                          session_id="scale")
    raster = timed("binarize (CPU)", binarize.binarize, spikes, bin_ms=20, epochs="all",
                   n_blocks=10, n_test_blocks=3, seed=3, session_id="scale")
    split = binarize.split_arrays(raster)
    n = raster.sizes["neuron"]
    train_cfg = {"n_hidden": args.hidden, "n_updates": args.updates,
                 "n_checkpoints": args.checkpoints, "n_chains": args.chains,
                 "batch_size": args.chains, "k": args.k, "lr": args.lr, "centered": True,
                 "weight_std": 1e-2, "precision": args.precision, "tais_chains": args.chains,
                 "ess_threshold": 0.3}
    lls, models = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for n_hidden in args.hidden:
            cfg = training.TrainConfig.from_config(train_cfg, n_hidden=n_hidden,
                                                   device=device.type)
            models[n_hidden] = timed(f"train Nh={n_hidden}", training.train_to_files,
                                     split["train"], cfg=cfg, seed=n_hidden,
                                     model_path=Path(tmp) / f"m{n_hidden}.nc",
                                     resume_path=Path(tmp) / f"r{n_hidden}.nc",
                                     neuron_coords={k: raster[k].values
                                                     for k in ("unit_id", "area")})
            lls.append(timed(f"loglik Nh={n_hidden}", likelihood.checkpoint_loglik,
                             models[n_hidden], split["train"], split["test"], seed=1,
                             device=device, ais_chains=2000, ais_betas=args.ais_betas,
                             ais_repeats=4))
    selection = select_model(likelihood.combine_loglik(lls))
    selected = selected_dataset(models[int(selection.attrs["n_hidden"])], selection,
                                           rate_hz=raster["rate_hz"].values)
    rbm = rbm_from_dataset(selected, device=device)
    stats = timed("statistics", compute_statistics, rbm, train=split["train"],
                  test=split["test"], n_samples=10000, n_chains=2000, burn_in_sweeps=5000,
                  thin_sweeps=10, n_triplets=100000, heff_bins=30, energy_bins=60, seed=4)
    coup = timed("couplings", couplings.compute_couplings, selected,
                 areas=areas_of(selected, raster),
                 model=models[int(selection.attrs["n_hidden"])], truth=truth, seed=5,
                 device=device, memory_budget_mb=8000 if device.type == "cuda" else 256)
    dyn = timed("dynamics", dynamics.dynamics_dataset, raster, selected, truth=truth, seed=6,
                device=device, max_lag_bins=100, max_lag_sweeps=200, n_chains=2000,
                n_starts=2000, burn_in_sweeps=1000, record_sweeps=2000, fit_lag_range=[1, 20])

    print(f"{dt.date.today()}, {name}, torch {torch.__version__}: N = {n}, "
          f"{split['train'].shape[0]} train / {split['test'].shape[0]} test bins, "
          f"Nh = {args.hidden}, {args.updates} updates, k = {args.k}, chains = batch = "
          f"{args.chains}, precision {args.precision}, AIS 2000 x 4 chains x "
          f"{args.ais_betas} betas at {args.checkpoints} checkpoints")
    print("| stage | seconds |\n|---|---|")
    for stage, sec in times.items():
        print(f"| {stage} | {sec:.1f} |")
    print(f"| total | {sum(times.values()):.1f} |")
    a = selection.attrs
    print(f"selected Nh = {a['n_hidden']} at update {a['checkpoint']}: test LL "
          f"{a['ll_test']:.3f} vs floor {a['floor_test']:.3f} nats/sample; equilibrated "
          f"{stats.attrs['equilibrated']} ({stats.attrs['equilibration_reason']}); score cov "
          f"{stats.attrs['score_covariance']:.3f}; r(J, planted J) "
          f"{coup.attrs.get('truth_pearson_J', float('nan')):.3f}; ms/sweep "
          f"{dyn.attrs['ms_per_sweep']:.2f} (planted {dyn.attrs.get('truth_ms_per_sweep')})")


if __name__ == "__main__":
    main()
