"""spikerbm vs rbms 0.6.0 (the paper group's package): PCD speed and model quality, one GPU.

Two modes, each in one process on one card.

``--speed`` (per-replica speed; ``--quick`` for a subset): for every shape (Nv, Nh) of the grid
(default Nv in {1560, 5000, 10000} x Nh in {256, 1024, 4096}; batch = chains = 2000, k = 100,
random data), milliseconds per PCD update:

- the batched bf16 product floor: the 2k sampling products of R models alone (``torch.bmm``,
  ``torch.mm`` for R = 1) in a CUDA graph, per replica;
- spikerbm's real training path, :func:`spikerbm.training.train` with ``train.replicas: R``
  (R = 1 and 4; ``train.precision: bf16``, fused kernels, CUDA graph; R > 1 runs the batched
  engine: every replica's chains swept by one launch per half sweep, the update of all
  replicas one graph), without and with online trajectory AIS (``tais_chains`` = chains), per
  replica: the steady state ``(T(s + n) - T(s)) / (n R)`` of two whole calls of ``s = 20``
  and ``s + n`` updates (``n = --train-updates``), so set-up, compilation and graph capture
  cancel while the loop's own synchronisation points (divergence checks, trajectory-AIS
  stage choice, every ``eval_every`` updates) stay in; the trajectory-AIS overhead per size;
- rbms 0.6.0 (TF32 matmuls, as its ``train_rbm`` script sets them), timed 3 times (median and
  range); the ratio rbms / spikerbm per replica and spikerbm / floor.
Each timing is the median of ``--repeats`` timings of ``--target-s`` seconds (at least 3
updates). A markdown table (device, shapes, date) is printed row by row and, with ``--out``,
the JSON is rewritten after every shape, so a run cut short keeps what it measured.

Quality mode (default): both packages train on the same synthetic 1,560-neuron session
(planted RBM, 30 min, 20 ms bins) with the same hyperparameters (batch = chains = 2000,
k = 100, lr 0.01, centered gradient, initial weights of s.d. 1e-2: with 1e-4 neither package
leaves the independent-site model within 2000 updates, and the quality check would compare
nothing). Printed, per hidden size:

- ms per PCD update: spikerbm (``train.precision: bf16``, fused kernels in a CUDA graph) with
  and without online trajectory AIS, and rbms 0.6.0, the ratio, and the GEMM-only floor (the
  two sampling products, k times, in a CUDA graph, TF32 and bf16) with the fraction of the
  bf16 tensor-core peak reached;
- quality after the same number of updates: test log-likelihood of both models by the same
  AIS (``spikerbm.partition.ais_log_z``, float64 energies) and the generated-vs-real
  covariance comparison of ``spikerbm.statistics.compute_statistics`` (same sampler settings);
  spikerbm is trained with two seeds, so the seed-to-seed spread says what "indistinguishable"
  means;
- one long run: 10^4 updates at the largest hidden size with online log-likelihood, wall time.

rbms is a benchmark-only dependency, never a runtime one; install it from wheels::

    pip install --no-deps rbms==0.6.0 h5py   # rbms needs Python >= 3.12
    python benchmarks/compare_rbms.py --speed --quick --budget-s 200 --out speed.json
    python benchmarks/compare_rbms.py --speed --out speed.json    # the whole grid
    python benchmarks/compare_rbms.py --out compare.json           # quality mode
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
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


# -- speed mode -------------------------------------------------------------------------------

#: Device of the speed mode (a CUDA device; tests of this script's logic set another).
DEVICE = "cuda"
#: The shape grid of the speed mode (Nv, Nh), most wanted first (a run cut short by its time
#: budget keeps those), and its --quick subset.
SHAPES = [(1560, 1024), (1560, 256), (1560, 4096), (5000, 1024), (10000, 1024), (5000, 256),
          (10000, 256), (5000, 4096), (10000, 4096)]
QUICK_SHAPES = [(1560, 1024), (1560, 256), (1560, 4096), (10000, 1024)]


def median_range(xs: list[float]) -> dict[str, Any]:
    return {"median": float(np.median(xs)), "min": float(min(xs)), "max": float(max(xs)),
            "all": [float(x) for x in xs]}


def time_calls(fn, *, target_s: float, repeats: int, min_calls: int = 3) -> list[float]:
    """ms per call of ``fn`` (already warm), ``repeats`` timings of about ``target_s`` each."""
    t0 = sync_time()
    fn()
    est = max(sync_time() - t0, 1e-6)
    n = max(min_calls, int(round(target_s / est)))
    out = []
    for _ in range(repeats):
        t0 = sync_time()
        for _ in range(n):
            fn()
        out.append((sync_time() - t0) * 1e3 / n)
    return out


def graphed(fn):
    """Run ``fn`` once eagerly on a side stream (compiles and autotunes the kernels), capture
    it once as a CUDA graph and return the graph's replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def product_floor(n_rep: int, n: int, m: int, c: int, k: int, *, args: Any) -> list[float]:
    """ms per update (all replicas) of the 2k bf16 sampling products alone in a CUDA graph:
    ``torch.bmm`` over the replicas (``torch.mm`` for one model), bf16 outputs."""
    g = torch.Generator(device=DEVICE).manual_seed(0)
    lead = (n_rep,) if n_rep > 1 else ()
    v = (torch.rand(*lead, c, n, device=DEVICE, generator=g) < 0.1).to(torch.bfloat16)
    w = (0.01 * torch.randn(*lead, n, m, device=DEVICE, generator=g)).to(torch.bfloat16)
    wt, h = w.transpose(-1, -2).contiguous(), torch.empty(*lead, c, m, device=DEVICE,
                                                          dtype=torch.bfloat16)
    mm = torch.bmm if lead else torch.mm

    def products():
        for _ in range(k):
            mm(v, w, out=h)
            mm(h, wt, out=v)
    replay = graphed(products)
    return time_calls(replay, target_s=args.target_s, repeats=args.repeats)


def train_config(*, n_hidden: int, updates: int, args: Any, tais: bool, replicas: int = 1,
                 checkpoints: int = 2) -> training.TrainConfig:
    """The training config of both modes: bf16 on CUDA, batch = chains, early stopping off,
    constant-rate SGD (rbms' step)."""
    return training.TrainConfig(n_hidden=n_hidden, n_updates=updates, n_checkpoints=checkpoints,
                                n_chains=args.chains, batch_size=args.chains, k=args.k,
                                lr=args.lr, optimizer="sgd", lr_final=1.0, decay_start=0.0,
                                weight_std=args.weight_std, precision="bf16",
                                tais_chains=args.chains if tais else 0, patience=0,
                                replicas=replicas, device=DEVICE)


def train_times(data: np.ndarray, *, n_hidden: int, n_replicas: int,
                args: Any) -> dict[str, list[float]]:
    """ms per update PER REPLICA of :func:`spikerbm.training.train` (module docstring: the
    difference of a call of 20 + ``args.train_updates`` updates and one of 20), without and
    with trajectory AIS, ``args.repeats`` samples each, interleaved so that drifts hit both
    alike (after one warm-up call each, which compiles and autotunes)."""
    def call_s(updates: int, tais: bool) -> float:
        cfg = train_config(n_hidden=n_hidden, updates=updates, args=args, tais=tais,
                           replicas=n_replicas)
        t0 = sync_time()
        training.train(data, cfg=cfg, seed=0)
        return sync_time() - t0

    short, n = 20, args.train_updates
    for tais in (False, True):
        call_s(3, tais)
    out: dict[str, list[float]] = {"train": [], "train_tais": []}
    for _ in range(args.repeats):
        for tais, key in ((False, "train"), (True, "train_tais")):
            t_short, t_long = call_s(short, tais), call_s(short + n, tais)
            out[key].append((t_long - t_short) * 1e3 / (n * n_replicas))
    return out


def rbms_times(data: np.ndarray, *, n_hidden: int, args: Any) -> list[float]:
    """ms per update of rbms 0.6.0 (its objects and per-update sequence, as
    :func:`train_rbms`), ``args.repeats`` timings after 2 warm-up updates."""
    from rbms.bernoulli_bernoulli.classes import BBRBM
    from rbms.dataset.dataset_class import RBMDataset
    from rbms.sampler.pcd import PCD

    torch.manual_seed(0)
    torch.set_float32_matmul_precision("high")  # as rbms' train_rbm script
    try:
        n = data.shape[0]
        ds = RBMDataset(data=data.astype(np.float32), labels=np.zeros(n, dtype=np.int64),
                        weights=np.ones(n, dtype=np.float32), names=np.arange(n).astype(str),
                        dataset_name="random", variable_type="bernoulli", device=DEVICE,
                        dtype=torch.float32)
        params = BBRBM.init_parameters(num_hiddens=n_hidden, dataset=ds, device=DEVICE,
                                       dtype=torch.float32, var_init=args.weight_std)
        sampler = PCD(params=params, chains=params.init_chains(num_samples=args.chains),
                      num_steps=args.k)
        opt = torch.optim.SGD(params.parameters(), lr=args.lr, maximize=True)

        def update() -> None:
            batch = ds.batch(args.chains)
            data_b, weights = batch["data"], batch["weights"]
            opt.zero_grad(set_to_none=False)
            curr = params.init_chains(num_samples=data_b.shape[0], weights=weights,
                                      start_v=data_b)
            chains = sampler.get_conf_grad(batch=data_b)
            params.compute_gradient(data=curr, chains=chains, centered=True)
            params.pre_grad_update()
            sampler.pre_grad_update()
            opt.step()
            params.post_grad_update()
            sampler.post_grad_update(params=params)
        update()
        update()
        return time_calls(update, target_s=args.target_s, repeats=args.repeats)
    finally:
        torch.set_float32_matmul_precision("highest")


def speed_mode(args: Any) -> None:
    """The ``--speed`` table (module docstring)."""
    name = torch.cuda.get_device_name()
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shapes:
        shapes = [tuple(int(x) for x in sh.lower().split("x")) for sh in args.shapes]
    results: dict[str, Any] = {"device": name, "date": str(dt.date.today()),
                               "torch": torch.__version__, "args": vars(args) | {"out": None},
                               "shapes": []}
    try:
        # the distribution's version: rbms 0.6.0 still says __version__ = "0.5.1"
        results["rbms"] = importlib.metadata.version("rbms")
    except importlib.metadata.PackageNotFoundError:
        results["rbms"] = None
    print(f"{dt.date.today()}, {name}, torch {torch.__version__}, rbms {results['rbms']}: "
          f"batch = chains = {args.chains} per replica, k = {args.k}, random data; ms per PCD "
          f"update PER REPLICA, median of {args.repeats} (range)", flush=True)
    rs = sorted(set(args.replicas))
    print("| Nv | Nh | R | bf16 product floor | spikerbm train | + trajectory AIS | "
          "spikerbm / floor | rbms 0.6.0 | rbms / spikerbm |\n"
          "|---|---|---|---|---|---|---|---|---|", flush=True)
    g = torch.Generator(device=DEVICE).manual_seed(0)
    t_start = time.perf_counter()
    for n, m in shapes:
        if time.perf_counter() - t_start > args.budget_s:
            print(f"time budget of {args.budget_s:.0f} s spent: shape {n}x{m} and the rest "
                  "skipped", flush=True)
            results.setdefault("skipped", []).append([n, m])
            continue
        row: dict[str, Any] = {"n_visible": n, "n_hidden": m, "replicas": {}}
        rates = 0.02 + 0.1 * torch.rand(n, device=DEVICE, generator=g)
        data = (torch.rand(args.n_bins, n, device=DEVICE, generator=g) < rates).to(torch.uint8)
        data_np = data.cpu().numpy()
        if results["rbms"] is not None and not args.no_rbms:
            try:
                row["rbms_ms"] = median_range(rbms_times(data_np, n_hidden=m, args=args))
            except Exception as err:  # report and go on: one failed part keeps the others
                row["rbms_error"] = repr(err)
        for n_rep in rs:
            rep: dict[str, Any] = {}
            try:
                floor = product_floor(n_rep, n, m, args.chains, args.k, args=args)
                rep["floor_ms"] = median_range([x / n_rep for x in floor])
                times = train_times(data_np, n_hidden=m, n_replicas=n_rep, args=args)
                rep["train_ms"] = median_range(times["train"])
                rep["train_tais_ms"] = median_range(times["train_tais"])
                rep["tais_overhead"] = (rep["train_tais_ms"]["median"]
                                        / rep["train_ms"]["median"] - 1)
                rep["train_over_floor"] = rep["train_ms"]["median"] / rep["floor_ms"]["median"]
                flop = 4.0 * args.chains * n * m * args.k
                rep["peak_fraction"] = (flop / (rep["train_ms"]["median"] * 1e-3)
                                        / (PEAK_BF16_TFLOPS * 1e12))
                if "rbms_ms" in row:
                    rep["rbms_over_train"] = row["rbms_ms"]["median"] / rep["train_ms"]["median"]
            except Exception as err:
                rep["error"] = repr(err)
            row["replicas"][n_rep] = rep
            print(table_row(n, m, n_rep, rep, row), flush=True)
        results["shapes"].append(row)
        del data
        torch.cuda.empty_cache()
        if args.out:
            args.out.write_text(json.dumps(results, indent=1, default=float))


def table_row(n: int, m: int, n_rep: int, rep: dict[str, Any], row: dict[str, Any]) -> str:
    def ms(d: dict[str, Any] | None) -> str:
        if not d:
            return "-"
        return f"{d['median']:.2f} ({d['min']:.2f}-{d['max']:.2f})"
    if "error" in rep:
        return f"| {n} | {m} | {n_rep} | error: {rep['error'][:200]} |"
    rbms_ms = ms(row.get("rbms_ms")) if "rbms_error" not in row else row["rbms_error"][:80]
    ratio = f"x{rep['rbms_over_train']:.2f}" if "rbms_over_train" in rep else "-"
    return (f"| {n} | {m} | {n_rep} | {ms(rep['floor_ms'])} | {ms(rep['train_ms'])} | "
            f"{ms(rep['train_tais_ms'])}, {100 * rep['tais_overhead']:+.1f} % | "
            f"{rep['train_over_floor']:.2f} | {rbms_ms} | {ratio} |")


def train_ours(train_v: np.ndarray, *, n_hidden: int, updates: int, args: Any, seed: int,
               tais: bool, checkpoints: int = 2,
               test_v: np.ndarray | None = None) -> tuple[RBM, float]:
    """spikerbm.training.train; returns the final model and ms per update (whole call).
    ``test_v``: also the online train/test log-likelihood every ``train.eval_every`` (100)
    updates (early stopping off, so every run does all its updates)."""
    cfg = train_config(n_hidden=n_hidden, updates=updates, args=args, tais=tais,
                       checkpoints=checkpoints)
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


def session_split(n_neurons: int, cache: Path | None = None) -> dict[str, np.ndarray]:
    """Train and test rasters (uint8) of the benchmark's synthetic session (planted RBM,
    ``n_neurons`` neurons, 30 min, 20 ms bins). ``cache``: a bit-packed ``.npz`` read when
    present, else written (generation takes minutes on one core; carried to a GPU box)."""
    if cache is not None and cache.exists():
        z = np.load(cache)
        return {k: np.unpackbits(z[k], axis=1, count=int(z["n"])) for k in ("train", "test")}
    spikes, _ = synthetic.generate_session(n_neurons=n_neurons, duration_s=1800.0, seed=2,
                                           session_id="compare")
    raster = binarize.binarize(spikes, bin_ms=20, epochs="all", n_blocks=10, n_test_blocks=3,
                               seed=3, session_id="compare")
    split = {k: np.asarray(v, dtype=np.uint8) for k, v in binarize.split_arrays(raster).items()}
    if cache is not None:
        np.savez_compressed(cache, n=split["train"].shape[1],
                            **{k: np.packbits(v, axis=1) for k, v in split.items()})
    return split


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
    p.add_argument("--speed", action="store_true",
                   help="per-replica speed table over the shape grid (module docstring)")
    p.add_argument("--quick", action="store_true", help="speed mode on a subset of shapes")
    p.add_argument("--shapes", nargs="+", help="speed mode shapes as NVxNH, e.g. 1560x1024")
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 4])
    p.add_argument("--target-s", type=float, default=0.3,
                   help="speed mode: seconds per timing (at least 3 updates)")
    p.add_argument("--n-bins", type=int, default=4000, help="speed mode: random data rows")
    p.add_argument("--train-updates", type=int, default=100,
                   help="speed mode: updates between the two timed training calls")
    p.add_argument("--no-rbms", action="store_true", help="speed mode without rbms")
    p.add_argument("--budget-s", type=float, default=float("inf"),
                   help="speed mode: start no new shape after this many seconds")
    p.add_argument("--quality-updates", type=int, default=2000)
    p.add_argument("--long-updates", type=int, default=10000)
    p.add_argument("--ais-betas", type=int, default=1000)
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = p.parse_args()
    if args.speed:
        if args.quick:
            args.target_s = min(args.target_s, 0.15)
        speed_mode(args)
        return
    name = torch.cuda.get_device_name()
    split = session_split(args.n_neurons)
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
              f" {100 * res['tais_overhead']:+.1f} %; +online LL {res['ours_tais_eval_ms']:.2f};"
              f" whole call {res['ours_call_ms']:.2f} / "
              f"{res['ours_tais_call_ms']:.2f}) | rbms {res['rbms_ms']:.2f} ms | "
              f"x{res['ratio']:.2f} | floor tf32 {res['floor_ms']['tf32']:.2f} / bf16 "
              f"{res['floor_ms']['bf16']:.2f} ms | {100 * res['peak_fraction']:.0f} % of bf16 "
              "peak |", flush=True)
        for who, qq in q.items():
            print(f"    {who}: test LL {qq['test_ll']:.3f} (AIS s.d. {qq['logz_sd']:.3f}), "
                  f"cov score {qq['score_covariance']:.3f}, r(cov train, gen) "
                  f"{qq['cov_r_generated']:.3f} (train-test {qq['cov_r_test']:.3f}), "
                  f"error ratio {qq['cov_error_ratio']:.3f}", flush=True)
    if args.long_updates:
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
