"""Real-data run for issue 20: RBM vs pairwise baseline and the cross-session area atlas over the
seven Steinmetz et al. (2019) sessions, on one device, timed stage by stage.

Chains the library functions the workflow's scripts call (no Snakemake: the GPU machine has
torch but not the workflow's environment) per session: raster import and split (as rule
import_raster), RBM training of every hidden size, log-likelihood and selection, statistics,
effective couplings, then the pairwise baseline (fit, log Z, statistics scored like the RBM's)
and the comparison row; then the atlas over every finished session. Settings: config/
steinmetz-all.yaml (the same as the workflow run of that config), read from the file.

Each session's results are kept in ``--work`` (one netCDF per session: J, R of the RBM, J of
the pairwise model, the comparison row and the stage times). A call starts no session that
would end after ``--max-minutes`` (estimated per neuron from the sessions it ran), then builds
the atlas over the sessions done (marked PARTIAL when some are missing; the same command on the
same machine continues) and writes 8 files to ``--out`` (default ``$OUT``): summary.txt,
model_comparison.tsv, and per level (areas as recorded; Cosmos when iblatlas is importable)
atlas_<level>.nc, atlas_<level>_within_across.tsv, atlas_<level>.png. The GPU command and the
budget: docs/benchmarks.md, "Real data: the seven Steinmetz sessions on one GPU".

    python benchmarks/steinmetz_atlas.py --data steinmetz-data --device cuda --max-minutes 8

Data: Steinmetz, Zatka-Haas, Carandini & Harris, Nature 576, 266 (2019), CC-BY-4.0
(../shared/data/steinmetz2019/README.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr
import yaml

from spikerbm import binarize, couplings, io, likelihood, pairwise, report, training
from spikerbm.areas import areas_of
from spikerbm.atlas import atlas_by_model, atlas_tables, build_atlas
from spikerbm.plotting import fig_atlas
from spikerbm.provenance import derive_seed, provenance_attrs
from spikerbm.rbm import rbm_from_dataset, resolve_device
from spikerbm.selection import select_model, selected_dataset
from spikerbm.statistics import compute_statistics, gibbs_settings, score_statistics

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stage_timer import StageTimer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CITATION = ("Data: Steinmetz, Zatka-Haas, Carandini & Harris, Nature 576, 266-273 (2019), "
            "doi:10.1038/s41586-019-1787-x, CC-BY-4.0")


def load_config(path: Path) -> dict:
    """config.yaml with the given config merged over it (as `snakemake --configfile`)."""
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    over = yaml.safe_load(path.read_text())
    for key, value in over.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) else value
    return base


def run_session(path: Path, session: str, cfg: dict, device: torch.device,
                tmp: Path) -> tuple[xr.Dataset, dict]:
    """Every stage of one session; returns the atlas input and the comparison row."""
    timed = StageTimer(device)
    times = timed.seconds

    seed = cfg["seed"]
    b = cfg["binarize"]
    with xr.open_dataset(path) as src:
        raster = timed("import", binarize.validate_raster, src.load(),
                       n_blocks=b["n_blocks"], n_test_blocks=b["n_test_blocks"],
                       seed=derive_seed(seed, "binarize", session), session_id=session)
    split = binarize.split_arrays(raster)
    coords = {k: raster[k].values for k in ("unit_id", "area")}
    lls, models = [], {}
    for n_hidden in cfg["train"]["n_hidden"]:
        tc = training.TrainConfig.from_config(cfg["train"], n_hidden=n_hidden,
                                              device=device.type)
        models[n_hidden] = timed("train", training.train_to_files, split["train"], cfg=tc,
                                 seed=derive_seed(seed, "train", session, n_hidden),
                                 model_path=tmp / f"{session}-{n_hidden}.nc",
                                 resume_path=tmp / f"{session}-{n_hidden}-resume.nc",
                                 neuron_coords=coords)
        lk = cfg["likelihood"]
        lls.append(timed("loglik", likelihood.checkpoint_loglik, models[n_hidden],
                         split["train"], split["test"], seed=derive_seed(
                             seed, "loglik", session, n_hidden), device=device,
                         exact_max_units=lk["exact_max_units"], ais_chains=lk["ais_chains"],
                         ais_betas=lk["ais_betas"], ais_repeats=lk["ais_repeats"]))
    selection = select_model(likelihood.combine_loglik(lls))
    n_hidden = int(selection.attrs["n_hidden"])
    selected = selected_dataset(models[n_hidden], selection,
                                rate_hz=raster["rate_hz"].values if "rate_hz" in raster else None)
    st = gibbs_settings(cfg["statistics"])  # Gibbs (PTT is the workflow's option)
    stats = timed("statistics", compute_statistics, rbm_from_dataset(selected, device=device),
                  train=split["train"], test=split["test"],
                  seed=derive_seed(seed, "statistics", session, n_hidden), **st)
    cp = cfg["couplings"]
    coup = timed("couplings", couplings.compute_couplings, selected,
                 areas=areas_of(selected, raster), model=models[n_hidden],
                 seed=derive_seed(seed, "couplings", session, n_hidden), device=device, **cp)
    pw = cfg["pairwise"]
    pseed = derive_seed(seed, "pairwise", session)
    model, pds = timed("pairwise fit", pairwise.fit_session, split["train"], split["test"],
                       seed=pseed, device=device, **coords,
                       **{k: pw[k] for k in ("l2", "max_iter", "refine_steps", "refine_chains",
                                             "refine_lr", "exact_max_neurons", "ais_chains",
                                             "ais_betas", "ais_repeats")})
    eq = timed("pairwise statistics", pairwise.sample_equilibrium, model,
               init_data=split["train"], n_samples=st["n_samples"], n_chains=pw["n_chains"],
               burn_in_sweeps=pw["burn_in_sweeps"], thin_sweeps=pw["thin_sweeps"],
               seed=derive_seed(pseed, "sampling"), tau_factor=st["tau_factor"],
               z_max=st["z_max"])
    pstats = timed("pairwise statistics", score_statistics, train=split["train"],
                   test=split["test"], generated=eq["samples"].values,
                   energy=lambda v: pairwise.energy(model, v).cpu().numpy(),
                   effective_field=lambda v: pairwise.effective_fields(model, v),
                   n_samples=st["n_samples"], n_triplets=st["n_triplets"],
                   heff_bins=st["heff_bins"], energy_bins=st["energy_bins"],
                   seed=derive_seed(seed, "statistics", session, n_hidden), device=device,
                   equilibrium_attrs=dict(eq.attrs))
    row = pairwise.model_comparison(session=session, selected=dict(selection.attrs) | {
        "n_hidden": n_hidden}, statistics=dict(stats.attrs), couplings=coup, pairwise=pds,
        pairwise_statistics=dict(pstats.attrs))
    row.update({f"seconds {k}": round(v, 1) for k, v in times.items()})
    row.update(n_train=int(split["train"].shape[0]), n_test=int(split["test"].shape[0]),
               equilibrated_reason_pairwise=pstats.attrs["equilibration_reason"],
               mean_k_data=float(split["train"].sum(1).mean()),
               mean_k_pairwise=float(eq["samples"].values.sum(1).mean()))
    keep = xr.Dataset(
        {"J": (("neuron", "neuron2"), coup["J"].values.astype(np.float32)),
         "R": (("neuron", "neuron2"), coup["R"].values.astype(np.float32)),
         "J_pairwise": (("neuron", "neuron2"), pds["J"].values.astype(np.float32))},
        coords={"unit_id": ("neuron", coords["unit_id"]),
                "area": ("neuron", np.asarray(coords["area"]).astype(str))},
        attrs={"row": json.dumps(row, default=float)})
    return keep, row


def _print(lines: list[str], *text: str) -> None:
    """Print and keep for summary.txt."""
    for t in text:
        print(t, flush=True)
        lines.append(t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="folder of the 7 .nc rasters")
    p.add_argument("--config", type=Path, default=REPO / "config" / "steinmetz-all.yaml")
    p.add_argument("--device", default="cuda", choices=["auto", "cpu", "cuda"])
    p.add_argument("--work", type=Path, default=Path("results-steinmetz-all/work"))
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or
                                                    "results-steinmetz-all/out"),
                   help="tables and figures (default $OUT, else results-steinmetz-all/out)")
    p.add_argument("--max-minutes", type=float, default=8.0,
                   help="start no session that would end after this (estimated per neuron "
                        "from the sessions run so far); the atlas covers the sessions done")
    p.add_argument("--sessions", nargs="*", help="session ids (file stems); default all")
    args = p.parse_args()
    cfg = load_config(args.config)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    files = sorted(args.data.glob("steinmetz_*.nc"))
    if args.sessions:
        files = [f for f in files if f.stem in args.sessions]
    if not files:
        raise SystemExit(f"no steinmetz_*.nc rasters in {args.data}")
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    start, seconds, neurons = time.perf_counter(), 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            target = args.work / f"{f.stem}.nc"
            if target.exists():
                continue
            with xr.open_dataset(f) as src:
                n = int(src.sizes["neuron"])
            used = time.perf_counter() - start
            if neurons and used + 1.15 * seconds / neurons * n > 60 * args.max_minutes:
                _print(lines, f"stopping after {used / 60:.1f} min (--max-minutes "
                       f"{args.max_minutes:g}): the next session, {f.stem} ({n} neurons), "
                       "would end past it; run the same command again for the rest")
                break
            t0 = time.perf_counter()
            keep, row = run_session(f, f.stem, cfg, device, Path(tmp))
            keep.to_netcdf(target)
            seconds += time.perf_counter() - t0
            neurons += n
            _print(lines, f"{f.stem}: {time.perf_counter() - t0:.0f} s; " + ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                if k != "session"))
    done = [args.work / f"{f.stem}.nc" for f in files if (args.work / f"{f.stem}.nc").exists()]
    if not done:
        raise SystemExit("no session finished: raise --max-minutes")
    partial = len(done) < len(files)
    data = {d.stem: xr.open_dataset(d).load() for d in done}
    rows = [json.loads(ds.attrs["row"]) for ds in data.values()]
    a = cfg["atlas"]
    seed = derive_seed(cfg["seed"], "atlas")
    opts = {"min_area_neurons": a["min_area_neurons"], "exclude_areas": a["exclude_areas"],
            "n_boot": a["n_resamples"], "ci": a["confidence"],
            "session_interval": a["session_interval"], "seed": seed}
    t0 = time.perf_counter()
    atlases = {}
    levels = [a["ccf_level"]]
    if importlib.util.find_spec("iblatlas") is not None:
        levels.append("cosmos")
    else:
        _print(lines, "iblatlas not installed: no CCF-grouped atlas (pip install --no-deps "
               "iblatlas==1.3.0: 237 kB, spikerbm reads its data files only)")
    for level in levels:
        rbm = build_atlas({s: ds[["J", "R"]].astype(np.float64) for s, ds in data.items()},
                          quantities=("J", "J_abs", "R"), ccf_level=level, **opts)
        pwa = build_atlas({s: ds[["J_pairwise"]].rename(J_pairwise="J").astype(np.float64)
                           for s, ds in data.items()}, quantities=("J", "J_abs"),
                          ccf_level=level, **opts)
        atlases["areas" if level is None else str(level)] = atlas_by_model(
            {"rbm": rbm, "pairwise": pwa})
    atlas_s = time.perf_counter() - t0
    _print(lines, f"\n{dt.date.today()}, {name}, torch {torch.__version__}, "
           f"{len(rows)} of {len(files)} sessions{' (PARTIAL)' if partial else ''}, config "
           f"{args.config.name}; this call {(time.perf_counter() - start) / 60:.1f} min, "
           f"atlas ({len(levels)} levels x 2 models) {atlas_s:.1f} s (CPU)\n")
    _print(lines, report.model_comparison_table(rows).to_string(index=False))
    times = pd.DataFrame([{k: r[k] for k in r if k == "session" or k.startswith("seconds")}
                          for r in rows])
    _print(lines, "\nwall times (s)\n" + times.to_string(index=False))
    extra = pd.DataFrame([{k: r[k] for k in ("session", "n_neurons", "n_train", "mean_k_data",
                                              "mean_k_pairwise", "equilibrated_reason_pairwise")}
                          for r in rows])
    _print(lines, "\n" + extra.to_string(index=False))
    io.write_text(pd.DataFrame(rows).to_csv(sep="\t", index=False),
                  args.out / "model_comparison.tsv")
    for tag, atlas in atlases.items():
        pairs, areas = atlas_tables(atlas)
        _print(lines, f"\natlas ({tag}): {atlas.attrs['interval_note']}\nwithin - across per "
               "area, RBM and pairwise J\n" + report.formatted(
                   areas[areas.quantity == "J"]).to_string(index=False))
        # the area-pair table is in the netCDF: spikerbm.atlas.atlas_tables(atlas) rebuilds it
        io.write_netcdf(atlas, args.out / f"atlas_{tag}.nc", attrs=provenance_attrs(
            config={"atlas": a, "seed": cfg["seed"]}, seed=seed, session_id=",".join(data),
            device="cpu", data_citation=CITATION))
        io.write_text(areas.to_csv(sep="\t", index=False),
                      args.out / f"atlas_{tag}_within_across.tsv")
        io.save_figure(fig_atlas(atlas), args.out / f"atlas_{tag}.png",
                       attrs={"session_id": ",".join(data)})
    io.write_text("\n".join([CITATION, *lines]) + "\n", args.out / "summary.txt")
    print(f"\nwrote {len(list(args.out.iterdir()))} files to {args.out}")


if __name__ == "__main__":
    main()
