"""Two training jobs on two GPUs at once: the per-job GPU claim of ``spikerbm.devices`` shown.

Trains one RBM for each of two synthetic sessions, first with one GPU job at a time
(``--resources gpu=1``, the workstation profile's default), then with two at once
(``--resources gpu=2``), and prints for every job the device it used (from its log) and its
start and end times, whether the jobs overlapped, and the wall time of each run::

    python benchmarks/multi_gpu.py --workdir /tmp/mgpu            # on a machine with 2 GPUs

With Snakemake importable it runs the real workflow (a copy in ``--workdir``: the two rasters
first, then the ``train`` jobs of both sessions, timed). Without it (``--direct``, or a GPU box
without Snakemake) each job is a Python process calling what the ``train`` rule's script calls
(``resolve_device`` then ``train_to_files``), run one after the other (one GPU) or both at once
(two GPUs), as Snakemake would schedule them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SESSIONS = ("mgpu-a", "mgpu-b")

#: One job of the direct mode: train one session's raster, log device and times as JSON.
DIRECT_JOB = r"""
import json, logging, sys, time
import numpy as np
from spikerbm.rbm import resolve_device
from spikerbm.training import TrainConfig, train_to_files
raster, out, cfg, dev = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
logging.basicConfig(level=logging.INFO, filename=out + ".log",
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s")
start = time.time()
device = resolve_device(dev)
logging.getLogger("job").info("device: %s", device)
cfg = TrainConfig.from_config(cfg, n_hidden=cfg["n_hidden"][0], device=dev)
train_to_files(np.load(raster), cfg=cfg, seed=1, model_path=out + ".nc",
               resume_path=out + ".resume.nc")
print(json.dumps({"device": str(device), "start": start, "end": time.time()}), flush=True)
"""


def train_settings(args: argparse.Namespace) -> dict:
    return {"n_hidden": [args.n_hidden], "n_updates": args.updates, "n_checkpoints": 5,
            "n_chains": 2000, "batch_size": 2000, "k": 100, "lr": 0.01, "weight_std": 0.01,
            "precision": "bf16", "tais_chains": 2000}


def snakemake_run(args: argparse.Namespace) -> list[dict]:
    """The real workflow in a copy: rasters, then the timed train jobs with gpu=1 and gpu=2."""
    wd = args.workdir
    for name in ("workflow", "scripts", "config", "profiles", "envs"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, wd / name, dirs_exist_ok=True)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["device"] = args.device
    cfg["synthetic"].update(n_neurons=args.n_neurons, duration_s=args.duration_s)
    cfg["train"].update(train_settings(args))
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (wd / "config" / "sessions.tsv").write_text(
        "session_id\tsource\tparams\n"
        + "".join(f"{s}\tsynthetic\tseed={i + 1}\n" for i, s in enumerate(SESSIONS)))
    smk = [sys.executable, "-m", "snakemake", "--cores", "8"]
    rasters = [f"results/{s}/raster.nc" for s in SESSIONS]
    models = [f"results/{s}/hidden~{args.n_hidden}/model.nc" for s in SESSIONS]
    subprocess.run(smk + rasters, cwd=wd, check=True)
    runs = []
    logs = [wd / f"results/logs/train/{s}/hidden~{args.n_hidden}.log" for s in SESSIONS]
    for gpus in (1, 2):
        for path in models + logs:
            (wd / path).unlink(missing_ok=True)
        t0 = time.time()
        subprocess.run(smk + [*models, "--resources", f"gpu={gpus}"], cwd=wd, check=True)
        wall = time.time() - t0
        jobs = [job_from_log(path) for path in logs]
        runs.append({"gpus": gpus, "wall_s": wall, "jobs": jobs})
    return runs


def job_from_log(path: Path) -> dict:
    """Device, first and last timestamps of a job's log (``%(asctime)s`` lines)."""
    text = path.read_text()
    stamps = [dt.datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f").timestamp()
              for s in re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})", text, re.M)]
    device = re.findall(r"device: (\S+)", text)
    return {"device": device[-1] if device else "?", "start": stamps[0], "end": stamps[-1],
            "log": str(path)}


def direct_run(args: argparse.Namespace) -> list[dict]:
    """Each job a process running the train script's calls; sequential, then concurrent."""
    import numpy as np

    from spikerbm import binarize, synthetic

    paths = []
    for i, s in enumerate(SESSIONS):
        spikes, _ = synthetic.generate_session(n_neurons=args.n_neurons,
                                               duration_s=args.duration_s, seed=i + 1,
                                               session_id=s)
        raster = binarize.binarize(spikes, bin_ms=20, epochs="all", n_blocks=10,
                                   n_test_blocks=3, seed=i + 1, session_id=s)
        paths.append(args.workdir / f"{s}.npy")
        np.save(paths[-1], binarize.split_arrays(raster)["train"])
    settings = json.dumps(train_settings(args))
    runs = []
    for gpus in (1, 2):
        t0, procs, jobs = time.time(), [], []
        for p in paths:
            out = str(args.workdir / f"{p.stem}-gpus{gpus}")
            procs.append(subprocess.Popen([sys.executable, "-c", DIRECT_JOB, str(p), out,
                                           settings, args.device], stdout=subprocess.PIPE,
                                          text=True))
            if gpus == 1:  # one GPU job at a time
                jobs.append(json.loads(procs[-1].communicate()[0].splitlines()[-1]))
        for proc in procs if gpus == 2 else []:
            jobs.append(json.loads(proc.communicate()[0].splitlines()[-1]))
        runs.append({"gpus": gpus, "wall_s": time.time() - t0, "jobs": jobs})
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--direct", action="store_true", help="no Snakemake: one process per job")
    p.add_argument("--n-neurons", type=int, default=1560)  # >= --n-hidden (n_hidden <= N)
    p.add_argument("--duration-s", type=float, default=1200.0)
    p.add_argument("--n-hidden", type=int, default=1024)
    p.add_argument("--updates", type=int, default=8000)
    p.add_argument("--device", default="cuda", help="cpu: check the script's plumbing only")
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    import torch

    snakemake = not args.direct and importlib.util.find_spec("snakemake") is not None
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"{dt.date.today()}, {torch.cuda.device_count()} x {gpu}, device {args.device}, "
          f"{'Snakemake workflow' if snakemake else 'direct job processes'}; per session: "
          f"{args.n_neurons} neurons, Nh = {args.n_hidden}, {args.updates} updates (chains = "
          "batch = 2000, k = 100, bf16, trajectory AIS)", flush=True)
    runs = snakemake_run(args) if snakemake else direct_run(args)
    print("| GPU jobs at once | session | device | start (s) | end (s) |\n|---|---|---|---|---|")
    for run in runs:
        t0 = min(j["start"] for j in run["jobs"])
        for s, j in zip(SESSIONS, run["jobs"], strict=True):
            print(f"| {run['gpus']} | {s} | {j['device']} | {j['start'] - t0:.1f} | "
                  f"{j['end'] - t0:.1f} |")
    for run in runs:
        (a, b) = run["jobs"]
        overlap = max(0.0, min(a["end"], b["end"]) - max(a["start"], b["start"]))
        print(f"gpu={run['gpus']}: wall {run['wall_s']:.1f} s; jobs overlap {overlap:.1f} s; "
              f"devices {sorted({j['device'] for j in run['jobs']})}")
    (args.workdir / "multi_gpu.json").write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
