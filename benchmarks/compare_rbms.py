"""spikerbm vs rbms 0.6.0 (the paper group's package): PCD speed and model quality, one GPU.

Both train on the same synthetic 1,560-neuron session (planted RBM, 30 min, 20 ms bins) with
the same hyperparameters (batch = chains = 2000, k = 100, lr 0.01, centered gradient, initial
weights of s.d. 1e-2: with 1e-4 neither package leaves the independent-site model within
2000 updates, and the quality check would compare nothing), in one process, on one card.
Printed, per hidden size:

- ms per PCD update: spikerbm (``train.precision: bf16``, fused kernels in a CUDA graph) with
  and without online trajectory AIS, and rbms 0.6.0 with TF32 matmuls (as its ``train_rbm``
  script sets them), the ratio, and the GEMM-only floor (the two sampling products, k times,
  in a CUDA graph, TF32 and bf16) with the fraction of the bf16 tensor-core peak reached;
- quality after the same number of updates: test log-likelihood of both models by the same
  AIS (``spikerbm.partition.ais_log_z``, float64 energies) and the generated-vs-real
  covariance comparison of ``spikerbm.statistics.compute_statistics`` (same sampler settings);
  spikerbm is trained with two seeds, so the seed-to-seed spread says what "indistinguishable"
  means;
- one long run: 10^4 updates at the largest hidden size with online log-likelihood, wall time.

rbms is a benchmark-only dependency, never a runtime one; install it from wheels::

    pip install --no-deps rbms==0.6.0 h5py   # rbms needs Python >= 3.12
    python benchmarks/compare_rbms.py --out compare.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikerbm import binarize, partition, synthetic, training
from spikerbm.rbm import RBM, free_energy, rbm_from_dataset
from spikerbm.statistics import compute_statistics

#: Dense bf16 tensor-core peak (TFLOP/s) of the H100 SXM and H200 (same GH100 compute).
PEAK_BF16_TFLOPS = 989.0


def sync_time() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


def gemm_floor(n: int, m: int, c: int, k: int) -> dict[str, float]:
    """ms for the 2k sampling products alone (CUDA graph), TF32 and bf16 operands."""
    out = {}
    g = torch.Generator(device="cuda").manual_seed(0)
    for name, dtype in (("tf32", torch.float32), ("bf16", torch.bfloat16)):
        v = (torch.rand(c, n, device="cuda", generator=g) < 0.1).to(dtype)
        w = (0.01 * torch.randn(n, m, device="cuda", generator=g)).to(dtype)
        wt, h = w.T.contiguous(), torch.empty(c, m, device="cuda", dtype=dtype)
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.mm(v, w, out=h)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(k):
                torch.mm(v, w, out=h)
                torch.mm(h, wt, out=v)
        graph.replay()
        t0 = sync_time()
        for _ in range(10):
            graph.replay()
        out[name] = (sync_time() - t0) * 100.0
        torch.backends.cuda.matmul.allow_tf32 = old
    return out


def train_ours(train_v: np.ndarray, *, n_hidden: int, updates: int, args: Any, seed: int,
               tais: bool, checkpoints: int = 2,
               test_v: np.ndarray | None = None) -> tuple[RBM, float]:
    """spikerbm.training.train; returns the final model and ms per update (whole call).
    ``test_v``: also the online train/test log-likelihood every ``train.eval_every`` (100)
    updates (early stopping off, so every run does all its updates)."""
    cfg = training.TrainConfig(n_hidden=n_hidden, n_updates=updates, n_checkpoints=checkpoints,
                               n_chains=args.chains, batch_size=args.chains, k=args.k,
                               lr=args.lr, weight_std=args.weight_std, precision="bf16",
                               tais_chains=args.chains if tais else 0, patience=0,
                               device="cuda")
    t0 = sync_time()
    ds = training.train(train_v, cfg=cfg, seed=seed, test_data=test_v)
    ms = (sync_time() - t0) * 1e3 / updates
    return rbm_from_dataset(ds, device="cuda"), ms


def train_rbms(train_v: np.ndarray, *, n_hidden: int, updates: int, args: Any,
               seed: int) -> tuple[RBM, float]:
    """rbms 0.6.0's own objects and per-update sequence (rbms.training.pcd.train without the
    file I/O and progress bar); returns the final model and ms per update after 3 warm-up
    updates."""
    from rbms.bernoulli_bernoulli.classes import BBRBM
    from rbms.dataset.dataset_class import RBMDataset
    from rbms.sampler.pcd import PCD

    torch.manual_seed(seed)
    torch.set_float32_matmul_precision("high")  # as rbms' train_rbm script
    n = train_v.shape[0]
    ds = RBMDataset(data=train_v.astype(np.float32), labels=np.zeros(n, dtype=np.int64),
                    weights=np.ones(n, dtype=np.float32), names=np.arange(n).astype(str),
                    dataset_name="synthetic", variable_type="bernoulli", device="cuda",
                    dtype=torch.float32)
    params = BBRBM.init_parameters(num_hiddens=n_hidden, dataset=ds, device="cuda",
                                   dtype=torch.float32, var_init=args.weight_std)
    chains = params.init_chains(num_samples=args.chains)
    sampler = PCD(params=params, chains=chains, num_steps=args.k)
    opt = torch.optim.SGD(params.parameters(), lr=args.lr, maximize=True)
    t0 = 0.0
    for i in range(updates + 3):
        if i == 3:
            t0 = sync_time()
        batch = ds.batch(args.chains)
        data, weights = batch["data"], batch["weights"]
        opt.zero_grad(set_to_none=False)
        curr = params.init_chains(num_samples=data.shape[0], weights=weights, start_v=data)
        chains = sampler.get_conf_grad(batch=data)
        params.compute_gradient(data=curr, chains=chains, centered=True)
        params.pre_grad_update()
        sampler.pre_grad_update()
        opt.step()
        params.post_grad_update()
        sampler.post_grad_update(params=params)
    ms = (sync_time() - t0) * 1e3 / updates
    torch.set_float32_matmul_precision("highest")
    return RBM(params.weight_matrix.clone(), params.vbias.clone(), params.hbias.clone()), ms


def quality(r: RBM, split: dict[str, np.ndarray], *, args: Any) -> dict[str, float]:
    """Test LL by AIS (float64 energies) and the covariance comparison of generated data."""
    est = partition.ais_log_z(r, n_chains=2000, n_betas=args.ais_betas, n_repeats=4,
                               generator=torch.Generator(device="cuda").manual_seed(1))
    test = torch.from_numpy(split["test"]).cuda()
    ll = -float(free_energy(r, test).mean()) - est.log_z
    st = compute_statistics(r, train=split["train"], test=split["test"], n_samples=10000,
                            n_chains=2000, burn_in_sweeps=2000, thin_sweeps=10,
                            n_triplets=20000, heff_bins=30, energy_bins=60, seed=4)
    return {"test_ll": ll, "logz_sd": est.log_z_std,
            "score_covariance": float(st.attrs["score_covariance"]),
            "cov_r_generated": float(st.attrs["covariance_r_train_generated"]),
            "cov_r_test": float(st.attrs["covariance_r_train_test"]),
            "cov_error_ratio": float(st.attrs["error_ratio_covariance"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-neurons", type=int, default=1560)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--chains", type=int, default=2000, help="chains = batch size")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-std", type=float, default=1e-2)
    p.add_argument("--speed-updates", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3, help="speed measurements (median)")
    p.add_argument("--speed-only", action="store_true",
                   help="time spikerbm with and without trajectory AIS only")
    p.add_argument("--quality-updates", type=int, default=2000)
    p.add_argument("--long-updates", type=int, default=10000)
    p.add_argument("--ais-betas", type=int, default=1000)
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = p.parse_args()
    name = torch.cuda.get_device_name()
    spikes, _ = synthetic.generate_session(n_neurons=args.n_neurons, duration_s=1800.0, seed=2,
                                           session_id="compare")
    raster = binarize.binarize(spikes, bin_ms=20, epochs="all", n_blocks=10, n_test_blocks=3,
                               seed=3, session_id="compare")
    split = binarize.split_arrays(raster)
    n = split["train"].shape[1]
    print(f"{dt.date.today()}, {name}, torch {torch.__version__}: N = {n}, "
          f"{split['train'].shape[0]} train bins, batch = chains = {args.chains}, k = {args.k}, "
          f"lr {args.lr}, init s.d. {args.weight_std}", flush=True)
    results: dict[str, Any] = {"device": name, "date": str(dt.date.today()), "n_visible": n,
                               "torch": torch.__version__, "args": vars(args) | {"out": None},
                               "hidden": {}}
    for m in args.hidden:
        res: dict[str, Any] = {}
        train_ours(split["train"], n_hidden=m, updates=3, args=args, seed=0, tais=True)  # JIT
        variants = {"ours": (False, None), "ours_tais": (True, None),
                    "ours_tais_eval": (True, split["test"])}  # + online LL every 100 updates
        samples: dict[str, list[tuple[float, float]]] = {key: [] for key in variants}
        for _ in range(args.repeats):
            for key, (tais, test_v) in variants.items():  # interleaved: drifts hit all alike
                # steady state: difference of two runs (set-up, first eager update and graph
                # capture cancel); the whole-call ms/update of the longer run is kept too.
                # With test data the difference holds one online evaluation per 100 updates
                # (the evaluations at update 0 and at the last update cancel)
                _, short = train_ours(split["train"], n_hidden=m, updates=50, args=args,
                                      seed=0, tais=tais, test_v=test_v)
                _, long = train_ours(split["train"], n_hidden=m,
                                     updates=50 + args.speed_updates, args=args, seed=0,
                                     tais=tais, test_v=test_v)
                steady = (long * (50 + args.speed_updates) - short * 50) / args.speed_updates
                samples[key].append((steady, long))
        for key in variants:
            res[f"{key}_ms"] = float(np.median([x[0] for x in samples[key]]))
            res[f"{key}_call_ms"] = float(np.median([x[1] for x in samples[key]]))
            res[f"{key}_ms_all"] = [x[0] for x in samples[key]]
        if args.speed_only:
            print(f"| {name} | Nh {m} | ours {res['ours_ms']:.2f} ms {res['ours_ms_all']} | "
                  f"+TAIS {res['ours_tais_ms']:.2f} ms {res['ours_tais_ms_all']} | overhead "
                  f"{100 * (res['ours_tais_ms'] / res['ours_ms'] - 1):+.1f} % | +online LL "
                  f"{res['ours_tais_eval_ms']:.2f} ms, overhead "
                  f"{100 * (res['ours_tais_eval_ms'] / res['ours_ms'] - 1):+.1f} % |",
                  flush=True)
            results["hidden"][m] = res
            continue
        ours, _ = train_ours(split["train"], n_hidden=m, updates=args.quality_updates,
                             args=args, seed=1, tais=True)
        ours2, _ = train_ours(split["train"], n_hidden=m, updates=args.quality_updates,
                              args=args, seed=2, tais=False)
        theirs, res["rbms_ms"] = train_rbms(split["train"], n_hidden=m,
                                            updates=args.quality_updates, args=args, seed=1)
        res["ratio"] = res["rbms_ms"] / res["ours_ms"]
        res["tais_overhead"] = res["ours_tais_ms"] / res["ours_ms"] - 1
        res["floor_ms"] = gemm_floor(n, m, args.chains, args.k)
        flop = 4.0 * args.chains * n * m * args.k
        res["peak_fraction"] = flop / (res["ours_ms"] * 1e-3) / (PEAK_BF16_TFLOPS * 1e12)
        res["quality"] = {"ours_seed1": quality(ours, split, args=args),
                          "ours_seed2": quality(ours2, split, args=args),
                          "rbms": quality(theirs, split, args=args)}
        results["hidden"][m] = res
        q = res["quality"]
        print(f"| {name} | Nh {m} | ours {res['ours_ms']:.2f} ms (+TAIS {res['ours_tais_ms']:.2f},"
              f" {100 * res['tais_overhead']:+.1f} %; whole call {res['ours_call_ms']:.2f} / "
              f"{res['ours_tais_call_ms']:.2f}) | rbms {res['rbms_ms']:.2f} ms | "
              f"x{res['ratio']:.2f} | floor tf32 {res['floor_ms']['tf32']:.2f} / bf16 "
              f"{res['floor_ms']['bf16']:.2f} ms | {100 * res['peak_fraction']:.0f} % of bf16 "
              "peak |", flush=True)
        for who, qq in q.items():
            print(f"    {who}: test LL {qq['test_ll']:.3f} (AIS s.d. {qq['logz_sd']:.3f}), "
                  f"cov score {qq['score_covariance']:.3f}, r(cov train, gen) "
                  f"{qq['cov_r_generated']:.3f} (train-test {qq['cov_r_test']:.3f}), "
                  f"error ratio {qq['cov_error_ratio']:.3f}", flush=True)
    if args.long_updates and not args.speed_only:
        m = max(args.hidden)
        t0 = sync_time()
        train_ours(split["train"], n_hidden=m, updates=args.long_updates, args=args, seed=3,
                   tais=True, checkpoints=20)
        results["long_run_s"] = sync_time() - t0
        print(f"{args.long_updates} updates at Nh = {m} with online trajectory-AIS "
              f"log-likelihood: {results['long_run_s']:.1f} s on {name}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
