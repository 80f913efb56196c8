"""``source: nwb``: the sorted units of any NWB 2.x file -> the ``spikes.nc`` contract.

Read with pynwb (the reference reader of the format; no own HDF5 parsing). The file's cached
extension namespaces are loaded, so files written with extensions (Allen's ndx-aibs-*, IBL's,
lab-specific ones) open without installing those extensions: spikerbm reads only the core
``Units``, ``ElectrodesTable`` and ``TimeIntervals`` tables.

What is read (docs/data-model.md, "Input formats", "NWB file"):

- **Units** (``nwbfile.units``): ``spike_times`` (s, the file's clock), optional
  ``obs_intervals``; unit ids are the table's ``id`` (or the integer column ``unit_id``
  names); every one-value-per-unit column is available to the filters.
- **Area of each unit** (``area``): ``auto`` takes the first units column among
  :data:`AREA_COLUMNS`, else the ``location`` column of the unit's electrode; ``<column>`` names
  a units column, ``electrodes.<column>`` an electrodes column. The unit's electrode
  (``unit_electrode``): ``auto`` takes the units column ``peak_channel_id`` (electrode ids, the
  Allen convention), else the units ``electrodes`` region (its first electrode; a unit whose
  listed electrodes lie in different areas is an error); or a units column of electrode ids.
  A missing column is an error naming the columns that exist.
- **Filters**: conditions ``<column> <op> <value>`` with op among ``== != < <= > >=`` and a YAML
  value (``quality == good``, ``presence_ratio > 0.9``), parsed by a regular expression (never
  evaluated as code); all must hold; a unit whose value is missing (NaN) fails a numeric
  condition. ``areas`` keeps only units of the listed areas. The log gives the count after each.
- **Epochs**: ``all`` (one epoch ``recording`` spanning the units' ``obs_intervals``, or the
  spikes), interval table names (``trials``, ``epochs``, any ``TimeIntervals`` of
  ``nwbfile.intervals``: one epoch per row, named ``<table>-<row id>``), ``{table, label}``
  (one epoch per row named by the ``label`` column, ``-<k>`` appended to repeated labels) or
  ``{name, start_s, stop_s}`` windows.
- **Positions**: the unit's electrode's ``x, y, z`` (NWB: the atlas/stereotaxic position; Allen:
  CCF µm), ``rel_x, rel_y, rel_z`` (position on the probe) and Allen's
  ``probe_horizontal_position, probe_vertical_position`` are kept as unit variables, with
  ``electrode_id`` and ``probe`` (the electrode group name).

Spike times: NaN/inf, negative, or outside the unit's ``obs_intervals`` -> an error naming the
unit and the fix; unsorted -> sorted, with a logged warning (a repair, never silent).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from spikerbm.sessions import did_you_mean
from spikerbm.sources import (
    SourceError,
    check_unit_spikes,
    epochs_frame,
    log_sorted,
    parse_epochs,
    spikes_dataset,
)

log = logging.getLogger(__name__)

#: Units columns that ``area: auto`` takes as the unit's area, in this order.
AREA_COLUMNS = ("brain_area", "area", "brain_region", "location", "structure_acronym",
                "acronym")
#: Electrodes columns kept as unit coordinates when present.
POSITION_COLUMNS = ("x", "y", "z", "rel_x", "rel_y", "rel_z", "probe_horizontal_position",
                    "probe_vertical_position")
#: Comparison operators of the filters (parsed, never evaluated).
OPERATORS = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
             ">": np.greater, ">=": np.greater_equal}
_FILTER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=|<=|>=|<|>)\s*([^\s<>=!].*?)\s*$")


def parse_filter(text: str) -> tuple[str, str, Any]:
    """``"presence_ratio > 0.9"`` -> ``("presence_ratio", ">", 0.9)`` (value typed by YAML).

    Raises
    ------
    ValueError
        Text that is not ``<column> <op> <value>``.
    """
    import yaml

    match = _FILTER.match(str(text))
    if not match:
        raise ValueError(f"filter {text!r} is not '<column> <op> <value>' with op among "
                         f"{' '.join(OPERATORS)} (e.g. 'quality == good', "
                         "'presence_ratio > 0.9')")
    column, op, value = match.groups()
    try:
        return column, op, yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ValueError(f"filter {text!r}: value {value!r} cannot be read; quote text values "
                         "or write a number") from err


def filter_list(filters: Sequence[str] | str | None) -> list[str]:
    """Filters as config or a sheet row give them -> a list of ``<column> <op> <value>`` texts.

    A list is taken as it is; a text holds one filter or several separated by commas
    (``quality == good,presence_ratio > 0.9``); None is no filter.
    """
    if filters is None:
        return []
    if isinstance(filters, str):
        return [f.strip() for f in filters.split(",") if f.strip()]
    return [str(f) for f in filters]


def apply_filters(table: pd.DataFrame, filters: Sequence[str], *, what: str) -> np.ndarray:
    """Boolean mask of the units passing every filter; logs the count after each.

    Raises
    ------
    SourceError
        A filter on a column the table lacks (the message lists the columns), a numeric
        comparison on a text column, or no unit left (with the count after each filter).
    """
    keep = np.ones(len(table), dtype=bool)
    counts = []
    for text in filters:
        try:
            column, op, value = parse_filter(text)
        except ValueError as err:
            raise SourceError(f"{what}: {err}") from err
        if column not in table.columns:
            raise SourceError(f"{what}: filter {text!r}: the units table has no column "
                              f"{column!r}; its columns: {sorted(table.columns)}"
                              f"{did_you_mean(column, table.columns)}")
        col = table[column]
        if isinstance(value, bool | str) or value is None:
            if op not in ("==", "!="):
                raise SourceError(f"{what}: filter {text!r}: {op} needs a number; compare "
                                  "text with == or !=")
            passed = OPERATORS[op](col.astype(str).to_numpy(), str(value))
            if isinstance(value, bool) and pd.api.types.is_bool_dtype(col):
                passed = OPERATORS[op](col.to_numpy(bool), value)
        else:
            numbers = pd.to_numeric(col, errors="coerce").to_numpy(np.float64)
            if np.isnan(numbers).all() and not pd.api.types.is_numeric_dtype(col):
                raise SourceError(f"{what}: filter {text!r}: column {column!r} holds text "
                                  f"({col.iloc[0]!r}, ...), not numbers")
            with np.errstate(invalid="ignore"):
                passed = OPERATORS[op](numbers, float(value)) & ~np.isnan(numbers)
        keep &= np.asarray(passed, dtype=bool)
        counts.append(f"{text}: {int(keep.sum())}")
        log.info("%s: units left after %r: %d of %d", what, text, int(keep.sum()), len(table))
    if filters and not keep.any():
        raise SourceError(f"{what}: no unit passes the filters (of {len(table)} units; left "
                          f"after each: {'; '.join(counts)}); relax the filters")
    return keep


# ----------------------------------------------------------------------------- the file
def _open(path: Path):
    import pynwb

    try:
        return pynwb.NWBHDF5IO(str(path), "r", load_namespaces=True)
    except (OSError, ValueError, KeyError) as err:
        raise SourceError(f"{path}: cannot be opened as an NWB (HDF5) file ({type(err).__name__}:"
                          f" {err}); check the path and that the download is complete") from err


def _ragged(table, name: str) -> list[np.ndarray] | None:
    """A ragged column (VectorIndex) as one array per row, or None when absent."""
    if name not in table.colnames:
        return None
    index = table[name]
    ends = np.asarray(index.data[:], dtype=np.int64)
    data = np.asarray(index.target.data[:])
    starts = np.concatenate([[0], ends[:-1]])
    return [data[a:b] for a, b in zip(starts, ends, strict=True)]


def _scalar_columns(table) -> pd.DataFrame:
    """The one-value-per-row columns of a DynamicTable (ragged, region and 2-D ones left out)."""
    from hdmf.common.table import DynamicTableRegion, VectorIndex

    out = {}
    for name in table.colnames:
        col = table[name]
        if isinstance(col, VectorIndex | DynamicTableRegion):
            continue
        values = np.asarray(col.data[:])
        if values.ndim != 1 or values.dtype.kind not in "biufUSO":
            continue
        if values.dtype.kind in "SO":
            values = np.array([v.decode() if isinstance(v, bytes) else v for v in values],
                              dtype=object)
            if not all(isinstance(v, str | int | float | bool | np.generic) for v in values):
                continue  # object references (e.g. electrodes' group)
        out[name] = values
    return pd.DataFrame(out, index=pd.Index(np.asarray(table.id.data[:]), name="id"))


def _unit_electrodes(nwb, units, scalars: pd.DataFrame, how: str,
                     what: str) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Row index into the electrodes table of each unit's electrode, and (when it came from the
    units' electrodes region) every electrode row each unit lists."""
    electrodes = nwb.electrodes
    if electrodes is None:
        raise SourceError(f"{what}: the file has no electrodes table, so the area cannot come "
                          "from an electrode; set area to a units column "
                          f"(units columns: {sorted(scalars.columns)})")
    ids = np.asarray(electrodes.id.data[:])
    column = "peak_channel_id" if how == "auto" and "peak_channel_id" in scalars else how
    if column not in ("auto", "electrodes"):
        if column not in scalars.columns:
            raise SourceError(f"{what}: unit_electrode {column!r} is not a units column; units "
                              f"columns: {sorted(scalars.columns)}"
                              f"{did_you_mean(column, scalars.columns)}")
        lookup = pd.Series(np.arange(ids.size), index=ids)
        values = scalars[column].to_numpy()
        missing = ~np.isin(values, ids)
        if missing.any():
            raise SourceError(f"{what}: units column {column!r} holds {int(missing.sum())} "
                              f"value(s) that are not electrode ids ({values[missing][:5]}); "
                              "it must hold ids of the electrodes table")
        return lookup.loc[values].to_numpy(np.int64), None
    regions = _ragged(units, "electrodes")
    if regions is None:
        raise SourceError(f"{what}: the units table links no electrode (no electrodes or "
                          "peak_channel_id column); set area to a units column (units columns: "
                          f"{sorted(scalars.columns)}) or unit_electrode to a column of "
                          "electrode ids")
    empty = [k for k, r in enumerate(regions) if r.size == 0]
    if empty:
        raise SourceError(f"{what}: unit(s) at rows {empty[:10]} list no electrode; set area to "
                          "a units column or unit_electrode to a column of electrode ids")
    return np.array([int(r[0]) for r in regions], dtype=np.int64), regions


def read_nwb(path: str | Path, *, session_id: str, area: str = "auto",
             unit_electrode: str = "auto", unit_id: str = "id",
             filters: Sequence[str] | str = (), areas: Sequence[str] | str | None = None,
             epochs: Any = "all") -> xr.Dataset:
    """Read an NWB file's sorted units into the ``spikes.nc`` dataset (rules in the module doc).

    Parameters
    ----------
    path
        The ``.nwb`` file (HDF5).
    session_id
        Stored in the attributes.
    area
        ``auto``, a units column, or ``electrodes.<column>``.
    unit_electrode
        ``auto``, ``electrodes`` (the units' electrodes region) or a units column of electrode
        ids (e.g. ``peak_channel_id``).
    unit_id
        ``id`` (the units table ids) or an integer units column with unique values.
    filters
        Conditions ``<column> <op> <value>`` that every kept unit satisfies (a list, or text
        separated by commas: :func:`filter_list`).
    areas
        Keep only units of these areas (list or comma-separated text; None: all).
    epochs
        ``all``, interval table names, ``{table, label}`` or ``{name, start_s, stop_s}``
        (:func:`spikerbm.sources.parse_epochs`).

    Returns
    -------
    xarray.Dataset
        The ``spikes.nc`` contract; attributes ``source = "nwb"``, ``nwb_file``,
        ``nwb_identifier``, ``session_start_time``, ``n_units_total``, ``n_units_selected``,
        ``area_from``, ``filters`` (JSON).

    Raises
    ------
    SourceError
        One line naming the file, the column/unit/table and the fix.
    """
    path = Path(path)
    what = str(path)
    filters = filter_list(filters)
    if not path.is_file():
        raise SourceError(f"{what}: NWB file not found (row params path=...)")
    try:
        specs = parse_epochs(epochs)
    except ValueError as err:
        raise SourceError(f"{what}: {err}") from err
    with _open(path) as nwbio:
        try:
            nwb = nwbio.read()
        except Exception as err:  # hdmf raises many types on files it cannot build
            missing = re.search(r"'([^']+)' not a namespace", str(err))
            if missing:
                raise SourceError(
                    f"{what}: the file uses the extension namespace {missing.group(1)!r} but "
                    "does not carry its specification (written with cache_spec=False): install "
                    f"that extension (pip install {missing.group(1)}) or get a file written "
                    "with its spec cached") from err
            raise SourceError(f"{what}: pynwb cannot read the file ({type(err).__name__}: "
                              f"{err}); is it NWB 2.x? (NWB 1 files need conversion)") from err
        units = nwb.units
        if units is None or len(units) == 0:
            raise SourceError(f"{what}: the file has no units (nwbfile.units is empty): it "
                              "holds no sorted spikes; spike-sort the recording (then "
                              "source: spikes, e.g. from Kilosort/phy)")
        if "spike_times" not in units.colnames:
            raise SourceError(f"{what}: the units table has no spike_times column (columns: "
                              f"{list(units.colnames)})")
        scalars = _scalar_columns(units)
        spikes = _ragged(units, "spike_times")
        obs = _ragged(units, "obs_intervals")
        ids = _unit_ids(scalars, unit_id, what)
        area_values, area_from, coords = _areas(nwb, units, scalars, area, unit_electrode,
                                                what)
        rows = _epoch_rows(nwb, specs, spikes, obs, what)
        attrs = {"nwb_file": path.name, "nwb_identifier": str(nwb.identifier),
                 "session_start_time": str(nwb.session_start_time.isoformat())}
    table = scalars.copy()
    table.index = pd.Index(ids)
    table["area"] = area_values
    keep = apply_filters(table, list(filters), what=what)
    if areas is not None:
        wanted = [a.strip() for a in areas.split(",")] if isinstance(areas, str) else list(areas)
        in_area = np.isin(table["area"].to_numpy(str), wanted)
        if not (keep & in_area).any():
            raise SourceError(f"{what}: no unit (of {int(keep.sum())} passing the filters) is "
                              f"in areas {wanted}; the file's areas: "
                              f"{sorted(set(table['area'][keep]))}")
        keep &= in_area
        log.info("%s: units left in areas %s: %d", what, wanted, int(keep.sum()))
    by_unit, unsorted = {}, []
    for k in np.flatnonzero(keep):
        times, was_unsorted = check_unit_spikes(int(ids[k]), spikes[k], what=what,
                                                obs_intervals=None if obs is None else obs[k])
        by_unit[int(ids[k])] = times
        if was_unsorted:
            unsorted.append(int(ids[k]))
    log_sorted(unsorted, what=what)
    frame = epochs_frame(rows, what=what)
    if obs is not None:
        _warn_unobserved(ids, obs, keep, frame, what)
    used = {parse_filter(f)[0] for f in filters}
    out_units = pd.DataFrame({"area": table["area"].to_numpy(str)}, index=table.index)
    for name in sorted(used - {"area"}):
        out_units[name] = table[name].to_numpy()
    for name, values in coords.items():
        out_units[name] = values
    out_units = out_units[keep]
    attrs.update(n_units_total=int(len(ids)), n_units_selected=int(keep.sum()),
                 area_from=area_from, filters=json.dumps(list(filters)))
    try:
        return spikes_dataset(by_unit, out_units, frame, session_id=session_id, source="nwb",
                              attrs=attrs)
    except ValueError as err:
        raise SourceError(f"{what}: {err}") from err


def _unit_ids(scalars: pd.DataFrame, unit_id: str, what: str) -> np.ndarray:
    ids = (scalars.index.to_numpy() if unit_id == "id" else
           scalars[unit_id].to_numpy() if unit_id in scalars.columns else None)
    if ids is None:
        raise SourceError(f"{what}: unit_id {unit_id!r} is not a units column; use 'id' or one "
                          f"of {sorted(scalars.columns)}"
                          f"{did_you_mean(unit_id, [*scalars.columns, 'id'])}")
    if ids.dtype.kind not in "iu" or np.unique(ids).size != ids.size:
        raise SourceError(f"{what}: unit ids from {unit_id!r} must be unique integers (dtype "
                          f"{ids.dtype}, {ids.size - np.unique(ids).size} duplicate(s)); choose "
                          "another unit_id column (e.g. 'id')")
    return ids.astype(np.int64)


def _areas(nwb, units, scalars: pd.DataFrame, area: str, unit_electrode: str,
           what: str) -> tuple[np.ndarray, str, dict[str, np.ndarray]]:
    """Each unit's area, where it came from, and its electrode's coordinates."""
    electrode_cols = sorted(nwb.electrodes.colnames) if nwb.electrodes is not None else []
    if area == "auto":
        found = [c for c in AREA_COLUMNS if c in scalars.columns]
        area = found[0] if found else "electrodes.location"
    coords: dict[str, np.ndarray] = {}
    rows = regions = None
    if nwb.electrodes is not None:
        try:
            rows, regions = _unit_electrodes(nwb, units, scalars, unit_electrode, what)
        except SourceError:
            if area.startswith("electrodes.") or unit_electrode != "auto":
                raise  # the area needs the electrode; otherwise positions are just absent
    if rows is not None:
        electrodes = _scalar_columns(nwb.electrodes)
        coords["electrode_id"] = electrodes.index.to_numpy()[rows]
        if "group_name" in electrodes:
            coords["probe"] = electrodes["group_name"].to_numpy(str)[rows]
        for name in POSITION_COLUMNS:
            if name in electrodes:
                coords[name] = pd.to_numeric(electrodes[name], errors="coerce").to_numpy(
                    np.float64)[rows]
    if area.startswith("electrodes."):
        column = area.removeprefix("electrodes.")
        if column not in electrode_cols:
            raise SourceError(f"{what}: area {area!r}: the electrodes table has no column "
                              f"{column!r}; electrodes columns: {electrode_cols}; units "
                              f"columns: {sorted(scalars.columns)}"
                              f"{did_you_mean(column, electrode_cols)}")
        labels = _scalar_columns(nwb.electrodes)[column].to_numpy(str)
        if regions is not None:
            mixed = [k for k, r in enumerate(regions) if len(set(labels[r])) > 1]
            if mixed:
                k = mixed[0]
                raise SourceError(
                    f"{what}: unit at row {k} lists electrodes in several areas "
                    f"({sorted(set(labels[regions[k]]))}); set unit_electrode to a units "
                    "column holding each unit's peak electrode id (e.g. peak_channel_id), or "
                    "area to a units column"
                )
        return labels[rows], area, coords
    if area not in scalars.columns:
        raise SourceError(f"{what}: area {area!r} is not a units column; units columns: "
                          f"{sorted(scalars.columns)}; electrodes columns: {electrode_cols} "
                          "(use electrodes.<column>, e.g. electrodes.location)"
                          f"{did_you_mean(area, scalars.columns)}")
    return scalars[area].to_numpy(str), area, coords


def _epoch_rows(nwb, specs, spikes, obs, what: str) -> list[tuple[str, float, float]]:
    tables = dict(nwb.intervals) if nwb.intervals is not None else {}
    if not specs:
        if obs is not None and any(o.size for o in obs):
            spans = np.concatenate([o.reshape(-1, 2) for o in obs if o.size])
            return [("recording", float(spans[:, 0].min()), float(spans[:, 1].max()))]
        t = [s for s in spikes if s.size]
        lo = min(0.0, min(float(np.nanmin(s)) for s in t)) if t else 0.0
        hi = max(float(np.nanmax(s)) for s in t) if t else 1.0
        return [("recording", lo, float(np.nextafter(hi, np.inf)))]
    rows = []
    for spec in specs:
        if isinstance(spec, dict) and "start_s" in spec:
            rows.append((spec["name"], spec["start_s"], spec["stop_s"]))
            continue
        name = spec if isinstance(spec, str) else spec["table"]
        label = None if isinstance(spec, str) else spec.get("label")
        if name not in tables:
            raise SourceError(f"{what}: no interval table {name!r}; the file has "
                              f"{sorted(tables)} (nwbfile.intervals), or give windows "
                              "{name, start_s, stop_s}" + did_you_mean(name, tables))
        table = tables[name]
        start = np.asarray(table["start_time"].data[:], dtype=np.float64)
        stop = np.asarray(table["stop_time"].data[:], dtype=np.float64)
        row_ids = np.asarray(table.id.data[:])
        if label is None:
            names = [f"{name}-{i}" for i in row_ids]
        else:
            if label not in table.colnames:
                raise SourceError(f"{what}: interval table {name!r} has no column {label!r}; "
                                  f"its columns: {list(table.colnames)}"
                                  f"{did_you_mean(label, table.colnames)}")
            values = [str(v) for v in _scalar_columns(table)[label]]
            seen: dict[str, int] = {}
            names = []
            for v in values:
                seen[v] = seen.get(v, 0) + 1
                names.append(v if values.count(v) == 1 else f"{v}-{seen[v]}")
        rows.extend(zip(names, start, stop, strict=True))
    return rows


def _warn_unobserved(ids, obs, keep, frame: pd.DataFrame, what: str) -> None:
    """Warn about kept units whose obs_intervals do not cover every epoch (they look silent)."""
    partial = []
    for k in np.flatnonzero(keep):
        iv = obs[k].reshape(-1, 2)
        if iv.size == 0:
            continue
        for start, stop in zip(frame.start, frame.stop, strict=True):
            if not ((iv[:, 0] <= start) & (iv[:, 1] >= stop)).any():
                partial.append(int(ids[k]))
                break
    if partial:
        log.warning("%s: %d unit(s) were not observed during all of the selected epochs (their "
                    "obs_intervals do not cover them; they look silent there): unit ids %s; "
                    "select epochs inside their obs_intervals or filter them out", what,
                    len(partial), partial[:20])


# ----------------------------------------------------------------------------- CLI
def describe(path: str | Path) -> str:
    """What an NWB file offers spikerbm: units columns, electrodes columns, interval tables."""
    path = Path(path)
    with _open(path) as nwbio:
        nwb = nwbio.read()
        units = nwb.units
        lines = [f"{path}: identifier {nwb.identifier}, session start "
                 f"{nwb.session_start_time.isoformat()}"]
        lines.append(f"units: {0 if units is None else len(units)}; columns "
                     f"{[] if units is None else list(units.colnames)}")
        lines.append(f"electrodes columns: "
                     f"{[] if nwb.electrodes is None else list(nwb.electrodes.colnames)}")
        for name, table in (nwb.intervals or {}).items():
            lines.append(f"interval table {name!r}: {len(table)} rows; columns "
                         f"{list(table.colnames)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spikerbm.nwb describe FILE`` | ``extract FILE OUT.nc --session-id S ...``"""
    from spikerbm import io

    parser = argparse.ArgumentParser(prog="python -m spikerbm.nwb",
                                     description="Read sorted units of an NWB file.")
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("describe", help="list the tables and columns spikerbm can use")
    show.add_argument("file")
    ext = sub.add_parser("extract", help="write spikes.nc")
    ext.add_argument("file")
    ext.add_argument("out")
    ext.add_argument("--session-id", required=True)
    ext.add_argument("--area", default="auto")
    ext.add_argument("--unit-electrode", default="auto")
    ext.add_argument("--unit-id", default="id")
    ext.add_argument("--filter", action="append", default=[], dest="filters")
    ext.add_argument("--areas", default=None)
    ext.add_argument("--epochs", default="all",
                     help="all, or comma-separated interval tables (trials,epochs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.command == "describe":
            print(describe(args.file))
            return 0
        ds = read_nwb(args.file, session_id=args.session_id, area=args.area,
                      unit_electrode=args.unit_electrode, unit_id=args.unit_id,
                      filters=args.filters, areas=args.areas, epochs=args.epochs)
    except SourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    io.write_netcdf(ds, args.out)
    print(f"wrote {args.out}: {ds.sizes['unit']} units, {ds.sizes['spike']} spikes, "
          f"{ds.sizes['epoch']} epoch(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
