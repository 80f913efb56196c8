"""Gibbs vs parallel trajectory tempering at equal cost, on a trained model.nc.

Cost unit: one block-Gibbs sweep of one model's chains (PTT with L models costs L of them per
step, plus its swap energies, which the wall times include). For each sampler, chains started
from data bins and from random states are run for the same budget; printed: the integrated
autocorrelation time of the target's energy E(v) and activity K in cost units
(``spikerbm.diagnostics.integrated_autocorr_time`` on the mean trace of the chains, times the
cost of one step), the z-score between the two start sets at the end, the swap acceptance of
the ladder, and the wall time. PTT is "better at equal cost" when its tau in cost units is
smaller, or when Gibbs's two start sets still disagree (|z| > 4) at the end of the budget.

    python benchmarks/ptt_vs_gibbs.py results/synth-a/hidden~48/model.nc \
        --raster results/synth-a/raster.nc --budget 40000 --chains 500 --ptt-models 8
    python benchmarks/ptt_vs_gibbs.py results-steinmetz/<session>/hidden~<n>/model.nc \
        --raster results-steinmetz/<session>/raster.nc --device cuda --budget 400000

Output: one JSON object (device, shapes, date, per-sampler numbers) on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import time

import numpy as np
import torch

import spikerbm
from spikerbm import io
from spikerbm.diagnostics import integrated_autocorr_time
from spikerbm.ptt import TrajectoryTempering
from spikerbm.rbm import free_energy
from spikerbm.sampling import Sampler


def run(chains, target, *, steps: int, record_every: int, n_data: int) -> dict:
    e_tr, k_tr = [], []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        chains.sweep(target)
        if step % record_every == 0:
            v = chains.v
            e_tr.append(free_energy(target, v).cpu().numpy())
            k_tr.append(v.sum(1).double().cpu().numpy())
    if chains.v.is_cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    e, k = np.array(e_tr), np.array(k_tr)  # (records, chains)
    half = e.shape[0] // 2  # the second half: after the first half as burn-in
    out = {"wall_s": wall}
    for name, tr in (("energy", e), ("k", k)):
        tau, ok = integrated_autocorr_time(tr[half:])
        last = tr[half:].mean(0)
        a, b = last[:n_data], last[n_data:]
        z = (a.mean() - b.mean()) / math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
        out[f"tau_{name}_steps"] = float(tau * record_every)
        out[f"tau_{name}_converged"] = bool(ok)
        out[f"z_{name}"] = float(z)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--raster", required=True)
    p.add_argument("--checkpoint", default="selected")
    p.add_argument("--budget", type=int, default=40000, help="cost units (model sweeps)")
    p.add_argument("--chains", type=int, default=500)
    p.add_argument("--ptt-models", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    ck = args.checkpoint if args.checkpoint in ("selected", "best", "last") else int(
        args.checkpoint)
    model = spikerbm.load_model(args.model, ck, device=args.device)
    ladder, updates = model.trajectory(max_models=args.ptt_models)
    raster = io.read_netcdf(args.raster)
    data = model._states(raster, split="train")
    rng = np.random.default_rng(args.seed)
    n_data = args.chains // 2
    g = torch.Generator(device=model.device).manual_seed(args.seed)
    v0 = torch.cat([torch.as_tensor(data[rng.integers(0, data.shape[0], n_data)]),
                    (torch.rand(args.chains - n_data, model.n_neurons, generator=g,
                                device=model.device) < 0.5).cpu()]).float().to(model.device)
    result = {"date": dt.date.today().isoformat(), "device": str(model.device),
              "torch": torch.__version__, "n_neurons": model.n_neurons,
              "n_hidden": model.n_hidden, "checkpoint": model.checkpoint,
              "n_chains": args.chains, "budget_model_sweeps": args.budget,
              "ptt_updates": updates}
    steps = args.budget
    gibbs = Sampler(model.device).chains(v0, n_hidden=model.n_hidden, generator=g)
    result["gibbs"] = run(gibbs, model.rbm, steps=steps, record_every=max(1, steps // 2000),
                          n_data=n_data)
    ptt_steps = max(1, args.budget // len(ladder))
    ptt = TrajectoryTempering(ladder, v0=v0, generator=g, labels=updates)
    res = run(ptt, model.rbm, steps=ptt_steps, record_every=max(1, ptt_steps // 2000),
              n_data=n_data)
    for key in ("tau_energy", "tau_k"):  # steps -> model sweeps (cost units)
        res[f"{key}_cost"] = res[f"{key}_steps"] * len(ladder)
    res["acceptance"] = [round(float(x), 4) for x in ptt.acceptance]
    result["ptt"] = res
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
