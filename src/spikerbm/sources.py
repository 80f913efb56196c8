"""Spike times as users hold them -> the ``spikes.nc`` contract (docs/data-model.md).

Three entries share the checks and the builder here:

- ``source: nwb`` (:mod:`spikerbm.nwb`): any NWB 2.x file, read with pynwb;
- ``source: spikes``: one netCDF *spikes file* in the simple format below
  (:func:`read_spikes_file`);
- Kilosort/phy output folders, converted into a spikes file by :func:`phy_to_spikes_file`
  through spikeinterface's reader (``python -m spikerbm.sources phy2spikes ...``).

The spikes file (docs/data-model.md, "Input formats", "Spikes file")::

    dims spike, unit, epoch (epoch optional)
    spike_time_s (spike)  float  spike times in seconds (any order, sorted on reading)
    spike_unit_id (spike) int    the unit of each spike (a unit_id of the units table)
    unit_id (unit)        int    unique unit ids
    area (unit)           str    brain area of each unit (Allen CCF acronym if you have one)
    <anything> (unit)     number or str, optional: metadata kept in spikes.nc (e.g. quality,
                                 x, y, z, depth)
    epoch_name (epoch)    str    optional epochs [start, stop) in s: epoch_start_s,
    epoch_start_s, epoch_stop_s (epoch) float     epoch_stop_s; without them one epoch
                                 'recording' = [recording_start_s (attribute, default
                                 min(0, first spike)), recording_stop_s (attribute, default
                                 just after the last spike)]

Checks (each failure one line naming the unit or value and the fix): finite, non-negative spike
times (NaN/inf/negative: an error naming the unit); unsorted spike times are sorted and the
repair is logged; spikes outside a unit's observation intervals are an error; spike units
absent from the units table are an error; the finished dataset passes
:func:`spikerbm.binarize.check_spikes`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from spikerbm.binarize import check_spikes, time_in_seconds

log = logging.getLogger(__name__)


class SourceError(ValueError):
    """Bad source data: the message names the file, the unit or value, and the fix."""

    user_facing = True


# ----------------------------------------------------------------------------- spike times
def check_unit_spikes(unit_id: int, times: Any, *, what: str,
                      obs_intervals: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Check one unit's spike times; return them sorted (float64) and whether they were unsorted.

    Parameters
    ----------
    unit_id
        Named in the messages.
    times
        Spike times in seconds, shape (n,).
    what
        Where they come from (file), named in the messages.
    obs_intervals
        Optional (k, 2) ``[start, stop]`` intervals (s) in which the unit was observed (NWB
        ``Units.obs_intervals``); spikes outside all of them are an error.

    Raises
    ------
    SourceError
        NaN/inf or negative times, or spikes outside ``obs_intervals``; the message names the
        unit, the count and the fix. Sorting is not an error: the caller logs it.
    """
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(t)
    if bad.any():
        raise SourceError(
            f"{what}: unit {unit_id}: {int(bad.sum())} NaN/inf spike time(s) (first at index "
            f"{int(np.argmax(bad))}); every spike needs a finite time in seconds: fix or drop "
            "those spikes in the source file (spikerbm does not drop them for you)"
        )
    if t.size and t.min() < 0:
        raise SourceError(
            f"{what}: unit {unit_id}: {int((t < 0).sum())} negative spike time(s) (min "
            f"{t.min():.6g} s); spike times are seconds from the session start: shift the "
            "file's times onto that clock or drop the spikes before it"
        )
    unsorted = bool(t.size > 1 and np.any(np.diff(t) < 0))
    if unsorted:
        t = np.sort(t, kind="stable")
    if obs_intervals is not None and np.size(obs_intervals) and t.size:
        iv = np.asarray(obs_intervals, dtype=np.float64).reshape(-1, 2)
        inside = np.zeros(t.size, dtype=bool)
        for start, stop in iv:
            inside |= (t >= start) & (t <= stop)
        if not inside.all():
            out = t[~inside]
            raise SourceError(
                f"{what}: unit {unit_id}: {out.size} spike(s) outside its obs_intervals "
                f"{iv.round(6).tolist()[:4]} (first at {out[0]:.6g} s): the file says the unit "
                "was not observed then; fix the obs_intervals or the spike times in the file"
            )
    return t, unsorted


def log_sorted(unsorted_ids: Sequence[int], *, what: str) -> None:
    """Log the repair of unsorted spike times (one warning naming the units)."""
    if unsorted_ids:
        log.warning("%s: spike times of %d unit(s) were not in ascending order and were sorted "
                    "(unit ids %s)", what, len(unsorted_ids), list(unsorted_ids)[:20])


# ----------------------------------------------------------------------------- epochs
def parse_epochs(spec: Any) -> list[str | dict[str, Any]]:
    """Epoch selection from config or a sessions-sheet row.

    ``"all"`` (or None) -> ``[]`` (the source's default epochs); a text ``"a,b"`` or a list of
    names -> those names (interval tables for NWB, epoch names for a spikes file); a mapping
    ``{name, start_s, stop_s}`` -> an explicit window; a mapping ``{table, label}`` (NWB) -> one
    epoch per row of the table, named by its ``label`` column.

    Raises
    ------
    ValueError
        An item of another form (the message shows the accepted forms).
    """
    if spec is None or spec == "all":
        return []
    if isinstance(spec, str):
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    out: list[str | dict[str, Any]] = []
    for item in spec:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Mapping) and set(item) == {"name", "start_s", "stop_s"}:
            start, stop = float(item["start_s"]), float(item["stop_s"])
            if not (np.isfinite(start) and np.isfinite(stop) and stop > start):
                raise ValueError(f"epoch window {dict(item)}: need finite start_s < stop_s")
            out.append({"name": str(item["name"]), "start_s": start, "stop_s": stop})
        elif isinstance(item, Mapping) and "table" in item and set(item) <= {"table", "label"}:
            out.append({"table": str(item["table"]), "label": item.get("label")})
        else:
            raise ValueError(
                f"epoch {item!r}: expected a name (an interval table such as trials or epochs, "
                "or an epoch of the spikes file), {name, start_s, stop_s} (a window in s) or "
                "{table, label} (one epoch per table row, named by the label column)"
            )
    return out


def epochs_frame(rows: Sequence[tuple[str, float, float]], *, what: str) -> pd.DataFrame:
    """Epoch rows -> DataFrame(name, start, stop) sorted by start; names unique, windows valid."""
    out = pd.DataFrame(list(rows), columns=["name", "start", "stop"])
    if out.empty:
        raise SourceError(f"{what}: no epoch selected; name interval tables or windows")
    dup = sorted(set(out.name[out.name.duplicated()]))
    if dup:
        raise SourceError(f"{what}: epoch names {dup[:5]} are used more than once; give each "
                          "epoch a distinct name (e.g. {table, label} with a unique label)")
    bad = out[~(np.isfinite(out.start) & np.isfinite(out.stop) & (out.stop > out.start))]
    if not bad.empty:
        r = bad.iloc[0]
        raise SourceError(f"{what}: epoch {r['name']!r} = [{r.start}, {r.stop}) s is empty or "
                          "invalid; an epoch needs finite start < stop")
    return out.sort_values("start", kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------- the builder
def spikes_dataset(spike_times: Mapping[int, np.ndarray], units: pd.DataFrame,
                   epochs: pd.DataFrame, *, session_id: str, source: str,
                   attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Build and check a ``spikes.nc`` dataset (contract in docs/data-model.md).

    Parameters
    ----------
    spike_times
        Unit id -> checked, sorted spike times (s) (:func:`check_unit_spikes`).
    units
        Index: unit ids (int, unique), in output order; column ``area`` (str) and optional
        metadata columns (numeric -> float64, text -> str), stored on the ``unit`` dim.
    epochs
        :func:`epochs_frame` output.
    session_id, source
        Stored as attributes.
    attrs
        More attributes (numbers or text).

    Returns
    -------
    xarray.Dataset
        dims spike, unit, epoch; only spikes inside an epoch ``[start, stop)`` are kept (the
        others are counted in the attribute ``n_spikes_outside_epochs``).

    Raises
    ------
    ValueError
        The dataset breaks the contract (:func:`spikerbm.binarize.check_spikes`).
    """
    starts, stops = epochs.start.to_numpy(float), epochs.stop.to_numpy(float)
    times, idx, n_total = [], [], 0
    for k, uid in enumerate(units.index):
        t = np.asarray(spike_times.get(uid, np.zeros(0)), dtype=np.float64)
        n_total += t.size
        keep = np.zeros(t.shape, dtype=bool)
        for a, b in zip(starts, stops, strict=True):
            keep |= (t >= a) & (t < b)
        times.append(t[keep])
        idx.append(np.full(int(keep.sum()), k, dtype=np.int32))
    t_all = np.concatenate(times) if times else np.zeros(0)
    u_all = np.concatenate(idx) if idx else np.zeros(0, dtype=np.int32)
    order = np.lexsort((u_all, t_all))
    data: dict[str, Any] = {
        "spike_time": ("spike", t_all[order], {"units": "s"}),
        "spike_unit": ("spike", u_all[order], {"long_name": "index into the unit dimension"}),
        "epoch_start": ("epoch", starts, {"units": "s"}),
        "epoch_stop": ("epoch", stops, {"units": "s"}),
    }
    for col in units.columns:
        if col == "area":
            continue
        values = units[col]
        if pd.api.types.is_bool_dtype(values):
            data[col] = ("unit", values.to_numpy(np.uint8))
        elif pd.api.types.is_numeric_dtype(values):
            data[col] = ("unit", pd.to_numeric(values).to_numpy(np.float64))
        else:
            data[col] = ("unit", np.array([str(v) for v in values], dtype=object))
    ds = xr.Dataset(
        data,
        coords={
            "unit_id": ("unit", units.index.to_numpy(np.int64)),
            "area": ("unit", np.array([str(a) for a in units["area"]], dtype=object)),
            "epoch_name": ("epoch", np.array([str(n) for n in epochs.name], dtype=object)),
        },
        attrs={"session_id": session_id, "source": source,
               "n_spikes_outside_epochs": int(n_total - t_all.size), **(attrs or {})},
    )
    check_spikes(ds)
    return ds


# ----------------------------------------------------------------------------- spikes file
#: Variables of the spikes file (docs/data-model.md, "Spikes file").
SPIKE_VARS = ("spike_time_s", "spike_unit_id")
EPOCH_VARS = ("epoch_name", "epoch_start_s", "epoch_stop_s")


def _from_workflow_spikes(ds: xr.Dataset, what: str) -> xr.Dataset:
    """A ``spikes.nc`` the workflow wrote (``results/{session}/spikes.nc``: ``spike_time``,
    ``spike_unit`` = index into the unit dim, epochs ``epoch_start``/``epoch_stop``) in the
    names of the spikes file, so an extraction can be reused as a ``source: spikes`` input."""
    idx = np.asarray(ds["spike_unit"].values)
    n = ds.sizes.get("unit", 0)
    if "unit_id" not in ds.variables or idx.dtype.kind not in "iu" or (
            idx.size and (idx.min() < 0 or idx.max() >= n)):
        raise SourceError(f"{what}: spike_unit must index the {n} entries of unit_id (a "
                          "workflow spikes.nc); a spikes file of your own names the unit of each "
                          "spike in spike_unit_id (docs/data-model.md, 'Spikes file')")
    out = ds.drop_vars(["spike_time", "spike_unit"]).assign(
        spike_time_s=ds["spike_time"],
        spike_unit_id=("spike", np.asarray(ds["unit_id"].values)[idx]))
    return out.rename({k: f"{k}_s" for k in ("epoch_start", "epoch_stop") if k in out.variables})


def read_spikes_file(path: str | Path, *, session_id: str, epochs: Any = "all") -> xr.Dataset:
    """A user's spikes file (format in the module docstring) -> the ``spikes.nc`` dataset.

    A ``spikes.nc`` written by the workflow (``results/{session}/spikes.nc``, whose names
    differ: ``spike_time``, ``spike_unit`` as an index, ``epoch_start``/``epoch_stop``) is read
    too, so an extraction (NWB, VBN, synthetic) can be reused as a ``source: spikes`` row.

    Parameters
    ----------
    path
        The netCDF spikes file.
    session_id
        Stored in the attributes.
    epochs
        ``"all"`` (every epoch of the file, or the whole recording), epoch names of the file
        and/or ``{name, start_s, stop_s}`` windows (:func:`parse_epochs`).

    Raises
    ------
    SourceError
        Naming the file, the variable, unit or value and the fix.
    """
    from spikerbm import io

    path = Path(path)
    what = str(path)
    ds = io.read_netcdf(path, raw=True)
    if "spike_time_s" not in ds.variables and {"spike_time", "spike_unit"} <= set(ds.variables):
        ds = _from_workflow_spikes(ds, what)
    for name, dim in (("spike_time_s", "spike"), ("spike_unit_id", "spike"), ("unit_id", "unit"),
                      ("area", "unit")):
        if name not in ds.variables or ds[name].dims != (dim,):
            raise SourceError(
                f"{what}: needs variable {name!r} on dim {dim!r} (has "
                f"{sorted(f'{k}{ds[k].dims}' for k in ds.variables)}); format: docs/data-model.md, "
                "'Spikes file'"
            )
    unit_id = np.asarray(ds["unit_id"].values)
    if unit_id.dtype.kind not in "iu" or np.unique(unit_id).size != unit_id.size:
        raise SourceError(f"{what}: unit_id must be unique integers; got dtype {unit_id.dtype} "
                          f"with {unit_id.size - np.unique(unit_id).size} duplicate(s)")
    spike_unit = np.asarray(ds["spike_unit_id"].values)
    if spike_unit.dtype.kind not in "iu":
        raise SourceError(f"{what}: spike_unit_id must hold integer unit ids; got dtype "
                          f"{spike_unit.dtype}")
    unknown = np.setdiff1d(spike_unit, unit_id)
    if unknown.size:
        raise SourceError(f"{what}: {unknown.size} spike_unit_id value(s) are not in the units "
                          f"table (unit_id): {unknown[:10].tolist()}; add those units (with "
                          "their area) or drop their spikes")
    units = pd.DataFrame({"area": ds["area"].values.astype(str)}, index=pd.Index(unit_id))
    for name, var in ds.data_vars.items():
        if var.dims == ("unit",) and name not in ("unit_id", "area"):
            units[name] = var.values
    try:
        t = time_in_seconds(ds["spike_time_s"], what=what)[0]
        epoch_bounds = ([time_in_seconds(ds[n], what=what)[0] for n in EPOCH_VARS[1:]]
                        if "epoch_start_s" in ds.variables and "epoch_stop_s" in ds.variables
                        else None)
    except ValueError as err:
        raise SourceError(str(err)) from err
    order = np.argsort(spike_unit, kind="stable")  # keeps each unit's spikes in file order
    t_by, u_by = t[order], spike_unit[order]
    by_unit, unsorted = {}, []
    for uid in unit_id:
        a, b = np.searchsorted(u_by, uid, side="left"), np.searchsorted(u_by, uid, side="right")
        times, was_unsorted = check_unit_spikes(int(uid), t_by[a:b], what=what)
        by_unit[int(uid)] = times
        if was_unsorted:
            unsorted.append(int(uid))
    log_sorted(unsorted, what=what)
    file_epochs = {}
    if "epoch_name" in ds.variables:
        for name in EPOCH_VARS:
            if name not in ds.variables or ds[name].dims != ("epoch",):
                raise SourceError(f"{what}: epochs need all of {list(EPOCH_VARS)} on dim "
                                  f"'epoch'; {name!r} is missing")
        file_epochs = {str(n): (float(a), float(b)) for n, a, b in zip(
            ds["epoch_name"].values, *epoch_bounds, strict=True)}
    else:
        t_max = max((v[-1] for v in by_unit.values() if v.size), default=0.0)
        t_min = min((v[0] for v in by_unit.values() if v.size), default=0.0)
        start = float(ds.attrs.get("recording_start_s", min(0.0, t_min)))
        stop = float(ds.attrs.get("recording_stop_s", np.nextafter(t_max, np.inf)))
        file_epochs = {"recording": (start, stop)}
    rows = []
    for item in parse_epochs(epochs) or list(file_epochs):
        if isinstance(item, str):
            if item not in file_epochs:
                raise SourceError(f"{what}: no epoch {item!r}; the file has epochs "
                                  f"{list(file_epochs)} (epochs: all, or names among those)")
            rows.append((item, *file_epochs[item]))
        elif "start_s" in item:
            rows.append((item["name"], item["start_s"], item["stop_s"]))
        else:
            raise SourceError(f"{what}: epoch {item} ({{table, label}}) applies to NWB files "
                              "only; a spikes file has epoch names or windows")
    frame = epochs_frame(rows, what=what)
    try:
        return spikes_dataset(by_unit, units, frame, session_id=session_id, source="spikes",
                              attrs={"spikes_file": path.name})
    except ValueError as err:
        raise SourceError(f"{what}: {err}") from err


def write_spikes_file(path: str | Path, spike_times: Mapping[int, np.ndarray],
                      units: pd.DataFrame, *, epochs: pd.DataFrame | None = None,
                      attrs: Mapping[str, Any] | None = None) -> Path:
    """Write a spikes file (format in the module docstring) atomically.

    Parameters
    ----------
    path
        Destination ``.nc``.
    spike_times
        Unit id -> spike times (s).
    units
        Index unit ids; column ``area`` and optional metadata columns.
    epochs
        Optional DataFrame(name, start, stop) in s.
    attrs
        Global attributes (e.g. where the data came from).
    """
    from spikerbm import io

    ids = np.asarray(units.index, dtype=np.int64)
    t = [np.asarray(spike_times.get(int(u), np.zeros(0)), dtype=np.float64) for u in ids]
    data: dict[str, Any] = {
        "spike_time_s": ("spike", np.concatenate(t) if t else np.zeros(0), {"units": "s"}),
        "spike_unit_id": ("spike", np.repeat(ids, [x.size for x in t])),
        "unit_id": ("unit", ids),
        "area": ("unit", np.array([str(a) for a in units["area"]], dtype=object)),
    }
    for col in units.columns:
        if col != "area":
            values = units[col].to_numpy()
            data[col] = ("unit", values if values.dtype.kind in "biuf"
                         else np.array([str(v) for v in values], dtype=object))
    if epochs is not None:
        data.update(epoch_name=("epoch", np.array(epochs.name.astype(str), dtype=object)),
                    epoch_start_s=("epoch", epochs.start.to_numpy(float), {"units": "s"}),
                    epoch_stop_s=("epoch", epochs.stop.to_numpy(float), {"units": "s"}))
    return io.write_netcdf(xr.Dataset(data, attrs=dict(attrs or {})), path)


# ----------------------------------------------------------------------------- phy / Kilosort
def phy_to_spikes_file(folder: str | Path, out: str | Path, *, area: str | None = None,
                       area_column: str | None = None, channel_areas: str | Path | None = None,
                       exclude_groups: Sequence[str] = ("noise",)) -> Path:
    """Convert a Kilosort/phy output folder into a spikes file, through spikeinterface.

    Reads the folder with :func:`spikeinterface.extractors.read_phy` (spike_times.npy,
    spike_clusters.npy, params.py and the cluster_*.tsv tables; a Kilosort folder without phy
    curation has the same files). Spike times (samples) / ``sample_rate`` -> seconds. Unit ids
    are the phy cluster ids. Every cluster property spikeinterface loads (``quality`` = phy's
    ``group``, ``KSLabel``, ``ch``, ``depth``, ``amp``, ``fr``, ``n_spikes``, custom columns of
    cluster_info.tsv) is kept as unit metadata, and the peak channel's position
    (channel_positions.npy, um) as ``x``/``y`` when the folder has it.

    Parameters
    ----------
    folder
        The phy/Kilosort output folder. Note: phy's params.py is Python and spikeinterface runs
        it to read it (``read_python``): convert only folders you trust.
    out
        The spikes file to write.
    area, area_column, channel_areas
        Exactly one: one area for every unit (a single-area recording); a cluster property
        holding each unit's area (e.g. a ``brain_area`` column added to cluster_info.tsv); or a
        TSV with columns ``channel`` and ``area`` mapping each channel to its area, joined on
        each cluster's peak channel ``ch``.
    exclude_groups
        phy groups left out (default: ``noise``; ``[]`` keeps every cluster).

    Raises
    ------
    SourceError
        A missing folder or file, no or several area options, a missing property or channel.
    """
    folder = Path(folder)
    what = str(folder)
    if sum(x is not None for x in (area, area_column, channel_areas)) != 1:
        raise SourceError(f"{what}: give exactly one of --area NAME (one area for all units), "
                          "--area-column COLUMN (a cluster property) or --channel-areas "
                          "FILE.tsv (channel -> area)")
    for name in ("spike_times.npy", "params.py"):
        if not (folder / name).is_file():
            raise SourceError(f"{what}: no {name}; is this a phy/Kilosort output folder?")
    from spikeinterface.extractors import read_phy

    sorting = read_phy(folder, exclude_cluster_groups=list(exclude_groups) or None)
    ids = [int(u) for u in sorting.get_unit_ids()]
    if not ids:
        raise SourceError(f"{what}: no cluster left after excluding groups {list(exclude_groups)}")
    fs = float(sorting.get_sampling_frequency())
    props = {k: sorting.get_property(k) for k in sorting.get_property_keys()}
    units = pd.DataFrame(index=pd.Index(ids, name="unit_id"))
    for key, values in props.items():
        if key in ("original_cluster_id", "si_unit_id"):
            continue
        units[key] = values
    if area is not None:
        units.insert(0, "area", str(area))
    elif area_column is not None:
        if area_column not in units.columns:
            raise SourceError(f"{what}: no cluster property {area_column!r}; the folder's "
                              f"cluster tables have {sorted(units.columns)}")
        units.insert(0, "area", units.pop(area_column).astype(str))
    else:
        table = pd.read_csv(channel_areas, sep="\t")
        if not {"channel", "area"} <= set(table.columns) or "ch" not in units.columns:
            raise SourceError(f"{channel_areas}: needs columns channel and area, and the phy "
                              "folder a peak channel per cluster (cluster_info.tsv column ch)")
        mapping = dict(zip(table.channel.astype(int), table.area.astype(str), strict=True))
        missing = sorted({int(c) for c in units.ch} - set(mapping))
        if missing:
            raise SourceError(f"{channel_areas}: no area for channel(s) {missing[:10]} (peak "
                              "channels of clusters); add them")
        units.insert(0, "area", [mapping[int(c)] for c in units.ch])
    positions = folder / "channel_positions.npy"
    if positions.is_file() and "ch" in units.columns:
        pos = np.load(positions, allow_pickle=False)
        units["x"] = pos[units.ch.astype(int), 0]
        units["y"] = pos[units.ch.astype(int), 1]
    spike_times = {u: sorting.get_unit_spike_train(u, return_times=False) / fs for u in ids}
    return write_spikes_file(out, spike_times, units,
                             attrs={"source": f"phy folder {folder.name}",
                                    "sample_rate_hz": fs,
                                    "excluded_groups": json.dumps(list(exclude_groups))})


# ----------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spikerbm.sources phy2spikes FOLDER OUT.nc (--area A | --area-column C |
    --channel-areas F.tsv) [--exclude-groups noise,mua]``"""
    parser = argparse.ArgumentParser(prog="python -m spikerbm.sources",
                                     description="Convert spike-sorter output for spikerbm.")
    sub = parser.add_subparsers(dest="command", required=True)
    phy = sub.add_parser("phy2spikes", help="Kilosort/phy folder -> spikes file (source: spikes)")
    phy.add_argument("folder")
    phy.add_argument("out")
    phy.add_argument("--area", help="one area for every unit")
    phy.add_argument("--area-column", help="cluster property holding each unit's area")
    phy.add_argument("--channel-areas", help="TSV with columns channel, area")
    phy.add_argument("--exclude-groups", default="noise",
                     help="comma-separated phy groups to leave out (default noise; '' keeps all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        path = phy_to_spikes_file(args.folder, args.out, area=args.area,
                                  area_column=args.area_column,
                                  channel_areas=args.channel_areas,
                                  exclude_groups=[g for g in args.exclude_groups.split(",") if g])
    except (SourceError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
