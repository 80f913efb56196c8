"""The ``spikerbm`` command line: probe a trained model without the workflow.

::

    spikerbm info      MODEL.nc                              what the file holds
    spikerbm sample    MODEL.nc -n 1000 -o samples.nc        model samples (Gibbs or PTT, clamps)
    spikerbm score     MODEL.nc RASTER.nc [--split test]     log-likelihood (TSV)
    spikerbm couplings MODEL.nc -o couplings.nc [--neurons]  effective couplings
    spikerbm export    MODEL.nc -o model.h5                  rbms 0.6.0 archive
    spikerbm import    ARCHIVE.h5 -o model.nc                rbms archive -> model.nc

``MODEL.nc`` is a ``selected.nc`` or a ``hidden~{n}/model.nc`` of a run
(:func:`spikerbm.load_model`). Exit status: 0 success; 1 a user error (bad file, value or
option combination), reported as one line ``spikerbm: error: ...`` naming the value, the
problem and the fix; 2 a usage error (argparse). Outputs are written atomically (netCDF with
provenance attributes, or TSV); progress bars (tqdm) go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

PROG = "spikerbm"


class UserError(ValueError):
    """A problem the user can fix; reported as one line, exit status 1."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Probe a trained spikerbm model: sample, score, couplings, "
        "export to / import from rbms. MODEL.nc is a run's selected.nc or "
        "hidden~<n>/model.nc.",
        epilog="Exit status: 0 ok, 1 user error (one line), 2 usage error.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("model", type=Path, metavar="MODEL.nc", help="selected.nc or model.nc")
        sp.add_argument("--checkpoint", default="selected",
                        help="selected (default), best, last or an update number")
        sp.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                        help="where to compute (default cpu)")

    sp = sub.add_parser("info", help="what a model file holds",
                        description="Print the model's sizes, neurons per area, checkpoints, "
                        "stored log Z and log-likelihoods, and provenance.")
    model_args(sp)

    sp = sub.add_parser("sample", help="draw model samples (netCDF)",
                        description="Final states of N independent chains after --sweeps "
                        "sweeps, written as samples(sample, neuron) uint8 with unit_id, area.")
    model_args(sp)
    sp.add_argument("-n", "--n-samples", type=int, required=True, help="number of samples")
    sp.add_argument("-o", "--out", type=Path, required=True, help="output .nc")
    sp.add_argument("--sweeps", type=int, default=1000, help="sweeps per chain (PTT: steps)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--sampler", choices=("gibbs", "ptt"), default="gibbs",
                    help="block Gibbs, or parallel trajectory tempering over the checkpoints")
    sp.add_argument("--ptt-models", type=int, default=None,
                    help="PTT: most models in the ladder (default: all checkpoints up to this)")
    sp.add_argument("--swap-every", type=int, default=1, help="PTT: sweeps between swaps")
    sp.add_argument("--clamp", action="append", default=[], metavar="UNIT_ID=0|1",
                    help="hold a neuron fixed (repeatable)")
    sp.add_argument("--init", type=Path, default=None, metavar="RASTER.nc",
                    help="start chains from these bins (default: random states)")
    sp.add_argument("--split", default="all", choices=("all", "train", "test"),
                    help="bins of --init to use")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")

    sp = sub.add_parser("score", help="log-likelihood of a raster (TSV)",
                        description="Average log-likelihood (nats/sample; a sample is one bin) "
                        "of a raster's bins under the model, with the stored log Z and its "
                        "uncertainty.")
    model_args(sp)
    sp.add_argument("raster", type=Path, metavar="RASTER.nc",
                    help="raster.nc (neurons matched by unit_id)")
    sp.add_argument("--split", default="all", choices=("all", "train", "test"))
    sp.add_argument("--log-z", default="stored", choices=("stored", "exact", "ais"),
                    help="log Z: stored with the model (default), exact enumeration, or AIS")
    sp.add_argument("-o", "--out", type=Path, default=None, help="TSV (default: stdout)")
    sp.add_argument("--per-bin", type=Path, default=None, metavar="OUT.nc",
                    help="also write each bin's free energy and P(v_i = 1 | rest)")

    sp = sub.add_parser("couplings", help="effective couplings (netCDF, optional TSV)",
                        description="Fields H_i, pairs J_ij (and with --order 3 every J_ijk) "
                        "of the chosen neurons (docs/methods.md section 6).")
    model_args(sp)
    sp.add_argument("-o", "--out", type=Path, required=True, help="output .nc")
    sp.add_argument("--neurons", nargs="+", default=None, metavar="UNIT_ID|AREA",
                    help="unit ids and/or area names (default: all neurons)")
    sp.add_argument("--order", type=int, choices=(2, 3), default=2)
    sp.add_argument("--tsv", type=Path, default=None,
                    help="also write the pairs i<j as a TSV (unit_id_i, unit_id_j, J)")

    sp = sub.add_parser("export", help="write an rbms 0.6.0 HDF5 archive",
                        description="Every checkpoint of a model.nc (or the one model of a "
                        "selected.nc) in the rbms 0.6.0 archive layout, readable by rbms and "
                        "fastrbm.")
    sp.add_argument("model", type=Path, metavar="MODEL.nc")
    sp.add_argument("-o", "--out", type=Path, required=True, help="output .h5")
    sp.add_argument("--chains", type=int, default=1000, help="rows of parallel_chains")
    sp.add_argument("--seed", type=int, default=0)

    sp = sub.add_parser("import", help="rbms archive -> model.nc",
                        description="Read a Bernoulli-Bernoulli rbms archive into a model.nc "
                        "that spikerbm.load_model and the workflow's stages accept.")
    sp.add_argument("archive", type=Path, metavar="ARCHIVE.h5")
    sp.add_argument("-o", "--out", type=Path, required=True, help="output model.nc")
    sp.add_argument("--raster", type=Path, default=None, metavar="RASTER.nc",
                    help="take unit_id and area from this raster (one per visible unit)")
    return p


def _checkpoint(value: str) -> str | int:
    if value in ("selected", "best", "last"):
        return value
    try:
        return int(value)
    except ValueError:
        raise UserError(f"--checkpoint {value!r}: use selected, best, last or an update "
                        "number") from None


def _load(args: argparse.Namespace):
    import torch

    from spikerbm.model import load_model

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device cuda: torch {torch.__version__} sees no CUDA device; use "
                        "--device cpu (or auto)")
    return load_model(args.model, _checkpoint(args.checkpoint), device=args.device)


def _attrs(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    from spikerbm.provenance import provenance_attrs

    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return provenance_attrs(config={"cli": config}, seed=getattr(args, "seed", None), **extra)


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")


def cmd_info(args: argparse.Namespace) -> None:
    import numpy as np

    model = _load(args)
    a = model.attrs
    areas, counts = np.unique(model.area, return_counts=True)
    rows = [
        ("file", str(model.path)),
        ("kind", "training trajectory (model.nc)" if model.is_trajectory
         else "selected model (selected.nc)"),
        ("session", a.get("session_id", "n/a")),
        ("neurons", model.n_neurons),
        ("hidden units", model.n_hidden),
        ("areas", ", ".join(f"{x}: {c}" for x, c in zip(areas, counts, strict=True))),
        ("checkpoints (updates)", " ".join(str(c) for c in model.checkpoints)),
        ("this checkpoint", f"{model.checkpoint} ({model.checkpoint_rule})"),
    ]
    for key, label in (("ll_train", "LL train (nats/sample)"), ("ll_test", "LL test (nats/sample)"),
                       ("ll_test_std", "LL test s.d."), ("floor_test", "independent floor test"),
                       ("beats_floor", "beats floor"), ("stop_reason", "training stopped"),
                       ("best_update", "best update (online)")):
        if key in a:
            value = a[key]
            rows.append((label, f"{value:.6g}" if isinstance(value, float) else value))
    lz = model.stored_log_z()
    rows.append(("log Z (nats)", f"{lz.log_z:.6g} +- {lz.log_z_std:.3g} ({lz.method})"
                 if lz is not None else "not stored (score computes it: exact or AIS)"))
    for key in ("git_commit", "spikerbm_version", "created_utc", "device"):
        if key in a:
            rows.append((key, a[key]))
    if "warning" in a:
        rows.append(("WARNING", a["warning"]))
    width = max(len(k) for k, _ in rows)
    _print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def _clamps(items: Sequence[str]) -> dict[int, int]:
    out: dict[int, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            unit, val = int(key), int(value)
        except ValueError:
            raise UserError(f"--clamp {item!r}: use UNIT_ID=0 or UNIT_ID=1 (e.g. "
                            "--clamp 1003=1)") from None
        if not sep or val not in (0, 1):
            raise UserError(f"--clamp {item!r}: the value must be 0 or 1 (UNIT_ID=0|1)")
        out[unit] = val
    return out


def cmd_sample(args: argparse.Namespace) -> None:
    from spikerbm import io

    model = _load(args)
    init = None
    if args.init is not None:
        init = io.read_netcdf(args.init)
        if args.split != "all":
            init = init.isel(time_bin=init["split"].values == args.split)
    ds = model.sample(args.n_samples, sweeps=args.sweeps, init=init, clamp=_clamps(args.clamp),
                      seed=args.seed, sampler=args.sampler, ptt_models=args.ptt_models,
                      swap_every=args.swap_every, progress=not args.quiet)
    io.write_netcdf(ds, args.out, attrs=_attrs(args, session_id=model.attrs.get(
        "session_id", "")))
    _print(f"wrote {args.out}: {args.n_samples} samples x {model.n_neurons} neurons "
           f"({args.sampler}, {args.sweeps} sweeps, update {model.checkpoint})")
    if args.sampler == "ptt":
        acc = ds["ptt_acceptance"].values
        lo, hi = ds["ptt_update_lo"].values, ds["ptt_update_hi"].values
        _print("PTT swap acceptance (update -> update: rate):")
        _print("\n".join(f"  {a} -> {b}: {r:.3f}" for a, b, r in zip(lo, hi, acc, strict=True)))
        if float(acc.min()) < 0.1:
            _print(f"warning: lowest swap acceptance {acc.min():.3f} < 0.1: the ladder has a "
                   "gap; fewer --ptt-models would make it worse")


def cmd_score(args: argparse.Namespace) -> None:
    import numpy as np
    import xarray as xr

    from spikerbm import io

    model = _load(args)
    raster = io.read_netcdf(args.raster)
    score = model.log_likelihood(raster, split=args.split, log_z=args.log_z)
    row = {"model": str(args.model), "checkpoint": model.checkpoint,
           "raster": str(args.raster), "split": args.split, **score.as_dict()}
    text = "\t".join(row) + "\n" + "\t".join(
        f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        io.write_text(text, args.out)
        _print(f"wrote {args.out}: LL {score.ll:.6g} +- {score.ll_std:.3g} nats/sample "
               f"({score.n_samples} bins, log Z {score.log_z_method})")
    if args.per_bin is not None:
        e = model.free_energy(raster, split=args.split)
        p = model.conditional_activity(raster, split=args.split)
        ds = xr.Dataset(
            {"free_energy": ("time_bin", e, {"units": "nats"}),
             "log_p": ("time_bin", -e - score.log_z, {"units": "nats"}),
             "p_active": (("time_bin", "neuron"), p.astype(np.float32),
                          {"long_name": "P(v_i = 1 | other neurons of the bin)"})},
            coords={"unit_id": ("neuron", model.unit_id), "area": ("neuron", model.area)})
        io.write_netcdf(ds, args.per_bin, attrs=_attrs(args))


def cmd_couplings(args: argparse.Namespace) -> None:
    import numpy as np

    from spikerbm import io

    model = _load(args)
    neurons = None
    if args.neurons:
        neurons = [int(x) if x.lstrip("-").isdigit() else x for x in args.neurons]
    ds = model.couplings(neurons=neurons, order=args.order)
    io.write_netcdf(ds, args.out, attrs=_attrs(args, session_id=model.attrs.get(
        "session_id", "")))
    n = ds.sizes["neuron"]
    _print(f"wrote {args.out}: {n} neurons, {n * (n - 1) // 2} pairs"
           + (f", {ds.sizes['triplet']} triplets" if args.order == 3 else ""))
    if args.tsv is not None:
        i, j = np.triu_indices(n, 1)
        uid = ds["unit_id"].values
        lines = ["unit_id_i\tunit_id_j\tarea_i\tarea_j\tJ"] + [
            f"{uid[a]}\t{uid[b]}\t{ds['area'].values[a]}\t{ds['area'].values[b]}\t"
            f"{ds['J'].values[a, b]:.8g}" for a, b in zip(i, j, strict=True)]
        io.write_text("\n".join(lines) + "\n", args.tsv)
        _print(f"wrote {args.tsv}")


def cmd_export(args: argparse.Namespace) -> None:
    from spikerbm import io
    from spikerbm.rbms_io import export_rbms

    ds = io.read_netcdf(args.model)
    if "spikerbm_version" not in ds.attrs:
        raise UserError(f"{args.model}: not written by spikerbm (no spikerbm_version "
                        "attribute); export a model.nc or selected.nc of a run")
    with io.about_input(args.model, rebuild_hint=False):
        export_rbms(ds, args.out, n_chains=args.chains, seed=args.seed)
    n = ds.sizes.get("checkpoint", 1)
    _print(f"wrote {args.out}: {n} checkpoint(s), rbms 0.6.0 layout (flags: checkpoint, ptt)")


def cmd_import(args: argparse.Namespace) -> None:
    from spikerbm import io
    from spikerbm.rbms_io import import_rbms

    ids = areas = None
    if args.raster is not None:
        raster = io.read_netcdf(args.raster)
        ids, areas = raster["unit_id"].values, raster["area"].values
    ds = import_rbms(args.archive, unit_id=ids, area=areas)
    io.write_netcdf(ds, args.out, attrs=_attrs(args))
    _print(f"wrote {args.out}: {ds.sizes['checkpoint']} checkpoint(s), {ds.sizes['neuron']} "
           f"neurons x {ds.sizes['hidden']} hidden units")


COMMANDS = {"info": cmd_info, "sample": cmd_sample, "score": cmd_score,
            "couplings": cmd_couplings, "export": cmd_export, "import": cmd_import}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spikerbm`` console script; returns the exit status."""
    args = _parser().parse_args(argv)  # usage errors: argparse prints usage, exits 2
    try:
        COMMANDS[args.command](args)
    except (ValueError, OSError) as err:
        # bad files (spikerbm.io.InputError), values, shapes, missing or unwritable files
        msg = " ".join(str(err).split())
        sys.stderr.write(f"{PROG}: error: {msg}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
