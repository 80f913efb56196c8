"""Timing and quality of the pairwise maximum-entropy baseline on a real Steinmetz raster.

Train/test split: 10 contiguous time blocks, 3 of them test (``spikerbm.binarize.assign_blocks``,
seed 0), as the pipeline's default; neurons silent in the train split are dropped; then a seeded
random subset of ``N`` neurons. For each ``N`` and ``l2``: pseudo-likelihood fit (L-BFGS), test
pseudo-log-likelihood, optional Boltzmann refinement, an equilibrium check (mean population
activity of Gibbs chains started from train bins against the data's), AIS log Z (spread over
repeats), test log-likelihood against the independent-site model, and the cost of one sweep.

    python benchmarks/pairwise_speed.py --sizes 160 1000 --device cpu
    python benchmarks/pairwise_speed.py --sizes 160 1000 --device cuda --dtype float64 \\
        --refine-steps 1000 --ais-chains 2000 --ais-betas 3000 --ais-repeats 4   # the GPU run
    python benchmarks/pairwise_speed.py --sizes 160 --l2 1e-4 1e-3 1e-2 --no-ais   # l2 scan

The first fit of a process includes torch.optim's one-time import (~3-5 s on CPU).

Data: Steinmetz et al., Nature 576, 266-273 (2019), CC-BY-4.0 (../shared/data/steinmetz2019).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from spikerbm import pairwise as P
from spikerbm.binarize import assign_blocks
from spikerbm.likelihood import independent_site_loglik
from spikerbm.rbm import resolve_device

REPO = Path(__file__).resolve().parents[1]
DEFAULT = "steinmetz2019/steinmetz_cori_20161217_s2.nc"


def _default_raster() -> Path:
    for base in (REPO.parent, REPO.parent.parent):
        p = base / "shared" / "data" / DEFAULT
        if p.is_file():
            return p
    return REPO.parent / "shared" / "data" / DEFAULT


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def split(path: Path, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with xr.open_dataset(path) as ds:
        raster = np.asarray(ds["raster"].transpose("time_bin", "neuron").values, dtype=np.uint8)
        area = np.asarray(ds["area"].values).astype(str)
    _, lab, _ = assign_blocks(raster.shape[0], n_blocks=10, n_test_blocks=3, seed=seed)
    train, test = raster[lab == "train"], raster[lab == "test"]
    rates = train.mean(0)
    keep = (rates > 0) & (rates < 1)
    return train[:, keep], test[:, keep], area[keep]


def pseudo_ll(model: P.IsingModel, v: np.ndarray) -> float:
    """Mean log pseudo-likelihood per sample (nats)."""
    x = torch.as_tensor(v, dtype=torch.float64, device=model.device)
    f = model.h + x @ model.J
    return float((x * f - torch.nn.functional.softplus(f)).sum(1).mean())


def mean_k(model: P.IsingModel, train: np.ndarray, sweeps: int, gen: torch.Generator) -> str:
    """Mean population activity K of 200 chains from train bins along ``sweeps`` sweeps."""
    rows = np.random.default_rng(0).choice(len(train), 200)
    chains = P.IsingChains(torch.as_tensor(train[rows], dtype=torch.float32,
                                           device=model.device), generator=gen)
    m32 = model.to(dtype=torch.float32)
    ks = []
    for _ in range(10):
        chains.sweep(m32, k=max(1, sweeps // 10))
        ks.append(float(chains.v.sum(1).mean()))
    return (f"chains' mean K every {max(1, sweeps // 10)} sweeps "
            f"{' '.join(f'{k:.1f}' for k in ks)} (data {train.sum(1).mean():.2f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--raster", type=Path, default=_default_raster())
    p.add_argument("--sizes", nargs="+", default=["160", "1000"],
                   help="numbers of neurons (random subsets) or 'all'")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--l2", type=float, nargs="+", default=[3e-3])
    p.add_argument("--max-iter", type=int, default=500)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--no-ais", action="store_true")
    p.add_argument("--ais-chains", type=int, default=200)
    p.add_argument("--ais-betas", type=int, default=500)
    p.add_argument("--ais-repeats", type=int, default=2)
    p.add_argument("--sweep-chains", type=int, default=100)
    p.add_argument("--refine-steps", type=int, default=0,
                   help="Boltzmann-learning steps after the PL fit (0: none)")
    p.add_argument("--refine-chains", type=int, default=500)
    p.add_argument("--refine-lr", type=float, default=0.005)
    p.add_argument("--k-sweeps", type=int, default=200,
                   help="sweeps of the equilibrium check (mean K of chains vs data)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default); 1 is faster on a loaded machine")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    dev = resolve_device(args.device)
    dt = getattr(torch, args.dtype)
    train, test, area = split(args.raster, args.seed)
    print(f"raster {args.raster.name}: train {train.shape}, test {test.shape} "
          f"(10 contiguous blocks, 3 test, seed {args.seed}; train-silent neurons dropped)")
    print(f"device: {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, fit dtype {args.dtype}, "
          f"date {time.strftime('%Y-%m-%d')}")
    rng = np.random.default_rng(args.seed)
    for size in args.sizes:
        n = train.shape[1] if size == "all" else min(int(size), train.shape[1])
        cols = np.sort(rng.choice(train.shape[1], size=n, replace=False))
        tr, te = train[:, cols], test[:, cols]
        # a random column subset can contain neurons silent in train: drop them too
        ok = (tr.mean(0) > 0) & (tr.mean(0) < 1)
        tr, te = tr[:, ok], te[:, ok]
        n = tr.shape[1]
        floor_tr, floor_te = independent_site_loglik(tr, te)
        print(f"\nN = {n} ({len(set(area[cols][ok]))} areas), T_train = {tr.shape[0]}, "
              f"T_test = {te.shape[0]}; independent-site LL test {floor_te / n:.5f} nats/neuron")
        for l2 in args.l2:
            _sync(dev)
            t0 = time.perf_counter()
            fit = P.fit_pseudolikelihood(tr, l2=l2, max_iter=args.max_iter, tol=args.tol,
                                         device=dev, dtype=dt)
            _sync(dev)
            t_fit = time.perf_counter() - t0
            m = fit.model
            Js = P.spin_couplings(m)[1]
            iu = np.triu_indices(n, 1)
            print(f"  l2 {l2:g}: fit {t_fit:.2f} s, {fit.n_iter} iterations, converged "
                  f"{fit.converged}, max|grad| {fit.grad_max:.1e}, objective {fit.objective:.5f}; "
                  f"pseudo-LL/neuron train {pseudo_ll(m, tr) / n:.5f} test "
                  f"{pseudo_ll(m, te) / n:.5f}; spin J: mean {Js[iu].mean():.4f}, sd "
                  f"{Js[iu].std():.4f}, max|J| {np.abs(Js[iu]).max():.3f}")
            gen = torch.Generator(device=dev)
            gen.manual_seed(args.seed)
            if args.refine_steps:
                _sync(dev)
                t0 = time.perf_counter()
                fit = P.refine_boltzmann(fit, tr, n_steps=args.refine_steps,
                                         n_chains=args.refine_chains, lr=args.refine_lr,
                                         generator=gen, dtype=torch.float32)
                _sync(dev)
                m = fit.model
                print(f"    Boltzmann refinement ({args.refine_steps} steps, "
                      f"{args.refine_chains} chains, lr {args.refine_lr:g}): "
                      f"{time.perf_counter() - t0:.2f} s, last-10% max|pair moment error| "
                      f"{fit.info['moment_error']:.4f}; pseudo-LL/neuron test "
                      f"{pseudo_ll(m, te) / n:.5f}")
            print(f"    equilibrium check: {mean_k(m, tr, args.k_sweeps, gen)}")
            if args.no_ais:
                continue
            _sync(dev)
            t0 = time.perf_counter()
            lz = P.ais_log_z(m.to(dtype=dt), n_chains=args.ais_chains, n_betas=args.ais_betas,
                             n_repeats=args.ais_repeats, generator=gen, base_rates=fit.rates)
            _sync(dev)
            t_ais = time.perf_counter() - t0
            ll_tr = P.log_likelihood(m, tr, lz)
            ll_te = P.log_likelihood(m, te, lz)
            print(f"    AIS ({args.ais_repeats} x {args.ais_chains} chains, {args.ais_betas} "
                  f"betas): {t_ais:.2f} s, log Z {lz.log_z:.4f} +- {lz.log_z_std:.4f}; LL/neuron "
                  f"train {ll_tr['ll'] / n:.5f}, test {ll_te['ll'] / n:.5f} (independent "
                  f"{floor_tr / n:.5f}, {floor_te / n:.5f})")
        gen = torch.Generator(device=dev)
        gen.manual_seed(1)
        chains = P.IsingChains(torch.as_tensor(tr[:args.sweep_chains], dtype=torch.float32,
                                               device=dev), generator=gen)
        m32 = fit.model.to(dtype=torch.float32)
        chains.sweep(m32)
        k = max(1, int(200_000 / n))
        _sync(dev)
        t0 = time.perf_counter()
        chains.sweep(m32, k=k)
        _sync(dev)
        t_sw = (time.perf_counter() - t0) / k
        print(f"  Gibbs: {t_sw * 1e3:.2f} ms per sweep of {args.sweep_chains} chains "
              f"({t_sw / n * 1e6:.1f} us per site step), float32")
    print("\ncost model: fit O(iterations x T x N^2); sweep O(chains x N^2) flops + N sequential "
          "steps; AIS O(betas x sweep)")


if __name__ == "__main__":
    main()
