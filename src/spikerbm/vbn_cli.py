"""Command line of the VBN source (:mod:`spikerbm.vbn` is the reader it drives).

Run in the vbn environment (``.venv-vbn``; ``python -m spikerbm.vbn`` is the same command)::

    .venv-vbn/bin/python -m spikerbm.vbn list-sessions --cache-dir vbn_cache --min-units 1500 \
        --out rows.tsv
    .venv-vbn/bin/python -m spikerbm.vbn extract --cache-dir vbn_cache --cache-mode local \
        --ecephys-session-id 1044385384 --session-id vbn-1044385384 --out spikes.nc

``spikerbm-vbn-sessions`` is the ``list-sessions`` console script. The workflow builds the
``extract`` arguments of a sessions-sheet row with :func:`extract_cli_args` when the DAG is
built (in the main environment: this module imports neither allensdk nor torch).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from spikerbm.vbn import (
    CACHE_MODES,
    DEFAULT_FILTERS,
    VBNError,
    candidate_sessions,
    extract_session,
    load_session,
    open_cache,
    parse_areas,
    parse_epoch_specs,
    resolve_options,
    session_rows_tsv,
    session_table,
)

log = logging.getLogger("spikerbm.vbn")


def extract_cli_args(vbn_config: Mapping[str, Any], row_params: Mapping[str, Any], *,
                     session_id: str) -> list[str]:
    """The ``extract`` command-line arguments for one sessions-sheet row (without --out/--log).

    Parameters
    ----------
    vbn_config, row_params, session_id
        As for :func:`resolve_options`.

    Returns
    -------
    list of str
        Arguments for ``python -m spikerbm.vbn extract`` (:func:`main`); join them with
        ``shlex.join`` for a shell command.
    """
    opts = resolve_options(vbn_config, row_params, session_id=session_id)
    f = opts["filters"]

    def num(v: float | None) -> str:
        return "none" if v is None else repr(float(v))

    return ["--cache-dir", opts["cache_dir"], "--cache-mode", opts["cache_mode"],
            "--ecephys-session-id", str(opts["ecephys_session_id"]), "--session-id", session_id,
            "--epochs", json.dumps(opts["epochs"]), "--areas", json.dumps(opts["areas"]),
            "--quality", f["quality"] or "none",
            "--isi-violations-max", num(f["isi_violations_max"]),
            "--amplitude-cutoff-max", num(f["amplitude_cutoff_max"]),
            "--presence-ratio-min", num(f["presence_ratio_min"])]


def _opt_float(text: str) -> float | None:
    return None if text.lower() in ("none", "null") else float(text)


def _add_filter_args(p: argparse.ArgumentParser) -> None:
    d = DEFAULT_FILTERS
    p.add_argument("--quality", default=d["quality"], help="required quality ('none': any)")
    p.add_argument("--isi-violations-max", type=_opt_float, default=d["isi_violations_max"])
    p.add_argument("--amplitude-cutoff-max", type=_opt_float, default=d["amplitude_cutoff_max"])
    p.add_argument("--presence-ratio-min", type=_opt_float, default=d["presence_ratio_min"])


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {"quality": None if args.quality.lower() in ("none", "null") else args.quality,
            "isi_violations_max": args.isi_violations_max,
            "amplitude_cutoff_max": args.amplitude_cutoff_max,
            "presence_ratio_min": args.presence_ratio_min}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m spikerbm.vbn", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("extract", help="one VBN session -> spikes.nc")
    e.add_argument("--cache-dir", required=True)
    e.add_argument("--cache-mode", choices=CACHE_MODES, default="s3")
    e.add_argument("--ecephys-session-id", type=int, required=True)
    e.add_argument("--session-id", required=True, help="row id of the sessions sheet")
    e.add_argument("--epochs", default='["active"]', help="JSON list of epoch specs")
    e.add_argument("--areas", default="null", help="JSON list of acronyms, or null")
    _add_filter_args(e)
    e.add_argument("--out", required=True, help="spikes.nc to write (atomically)")
    e.add_argument("--log", default=None, help="log file (also logged to stderr)")
    s = sub.add_parser("list-sessions", help="candidate sessions -> sessions-sheet rows")
    s.add_argument("--cache-dir", required=True)
    s.add_argument("--cache-mode", choices=CACHE_MODES, default="s3")
    s.add_argument("--min-units", type=int, default=1)
    s.add_argument("--areas", default=None, help="comma-separated acronyms (default: all)")
    s.add_argument("--include-abnormal", action="store_true",
                   help="keep sessions flagged for abnormal histology/activity")
    s.add_argument("--prefix", default="vbn-", help="session_id prefix")
    s.add_argument("--params", default="", help="extra row params, e.g. 'epochs=active'")
    _add_filter_args(s)
    s.add_argument("--out", default=None, help="rows TSV to write (default: stdout)")
    return p


def _setup_logging(path: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path:
        handlers.append(logging.FileHandler(path))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _run_extract(args: argparse.Namespace) -> None:
    from spikerbm.io import write_netcdf
    from spikerbm.provenance import provenance_attrs

    epochs = parse_epoch_specs(json.loads(args.epochs))
    areas = parse_areas(json.loads(args.areas))
    options = {"cache_dir": args.cache_dir, "cache_mode": args.cache_mode,
               "ecephys_session_id": args.ecephys_session_id, "epochs": epochs,
               "areas": areas, "filters": _filters(args)}
    cache = open_cache(args.cache_dir, mode=args.cache_mode)
    session = load_session(cache, args.ecephys_session_id, session_id=args.session_id)
    ds = extract_session(session, session_id=args.session_id,
                         ecephys_session_id=args.ecephys_session_id, epochs=epochs, areas=areas,
                         **_filters(args))
    attrs = provenance_attrs(config=options, seed=None, session_id=args.session_id)
    attrs.update(source="vbn", ecephys_session_id=int(args.ecephys_session_id))
    write_netcdf(ds, args.out, attrs=attrs)
    log.info("wrote %s: %d units, %d spikes, epochs %s", args.out, ds.sizes["unit"],
             ds.sizes["spike"], ds.epoch_name.values.tolist())


def _run_list(args: argparse.Namespace) -> None:
    from spikerbm.io import write_text

    cache = open_cache(args.cache_dir, mode=args.cache_mode)
    table = session_table(cache, filter_abnormalities=not args.include_abnormal)
    cands = candidate_sessions(table, cache.get_unit_table(), cache.get_channel_table(),
                               areas=parse_areas(args.areas), min_units=args.min_units,
                               **_filters(args))
    text = session_rows_tsv(cands, prefix=args.prefix, extra_params=args.params)
    log.info("%d of %d sessions have >= %d units passing the filters", len(cands), len(table),
             args.min_units)
    if args.out:
        write_text(text, args.out)
    else:
        sys.stdout.write(text)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spikerbm.vbn {extract,list-sessions} ...``; returns the exit status.

    Known failures (bad options, unreachable cache, unknown session, no units, absent epoch)
    print one ``error:`` line naming the session and the fix and return 2; nothing is written.
    """
    args = _parser().parse_args(argv)
    _setup_logging(getattr(args, "log", None))
    try:
        if args.command == "extract":
            _run_extract(args)
        else:
            _run_list(args)
    except (VBNError, ValueError) as err:
        log.error("%s", err)
        return 2
    return 0


def main_list_sessions(argv: Sequence[str] | None = None) -> int:
    """``spikerbm-vbn-sessions`` console script: the ``list-sessions`` subcommand."""
    return main(["list-sessions", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
