"""Binarization of spike trains into a time-ordered raster with a train/test split.

docs/methods.md §1.

Rules (docs/data-model.md, ``raster.nc``):

- Bins start at each selected epoch's start: bin ``t`` of an epoch covers
  ``[start + t * dt, start + (t + 1) * dt)``. A spike exactly on a bin edge belongs to the bin that
  edge starts. Spike times within :data:`EDGE_TOL` bins of an edge count as on the edge (float
  round-off: 0.06 s / 0.02 s is 2.9999999999999996 in floating point).
- The partial last bin of an epoch (``(stop - start) / dt`` not whole) is dropped, with its spikes.
- ``v_i(t) = 1`` if unit ``i`` fired at least once in bin ``t``.
- Spikes outside the selected bins (other epochs, gaps, partial last bins) are ignored and counted
  in the attribute ``n_spikes_ignored``.
- The time-ordered bins (selected epochs concatenated in time order) are cut into ``n_blocks``
  contiguous blocks of (nearly) equal length; ``n_test_blocks`` of them, chosen with the seed, are
  the test split, the rest the train split.
- Neurons silent in the train split are dropped and listed (unit ids) in ``dropped_units``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence

import numpy as np
import xarray as xr

log = logging.getLogger(__name__)

#: Spike times within this fraction of a bin of a bin edge are treated as exactly on the edge.
EDGE_TOL = 1e-6

#: Area labels that mean "no label" (after ``str``), rejected by the checks below.
MISSING_AREA = ("", "nan", "none", "null", "na", "n/a")


def _require(ds: xr.Dataset, name: str, dims: tuple[str, ...], what: str) -> None:
    """``ds[name]`` must exist (variable or coordinate) with exactly ``dims``."""
    if name not in ds.variables:
        raise ValueError(
            f"{what} has no variable {name!r} (dims {dims}); it has "
            f"{sorted(map(str, ds.variables))}. Rebuild the file (format: docs/data-model.md)"
        )
    if ds[name].dims != dims:
        raise ValueError(
            f"{what}: {name!r} has dims {ds[name].dims}; expected {dims} (wrong dims: rename / "
            "transpose them, or rebuild the file; format: docs/data-model.md)"
        )


def check_area_labels(area: np.ndarray, unit_id: np.ndarray, *, what: str) -> None:
    """Every unit needs a brain-area label (a non-empty string; ``MISSING_AREA`` are missing).

    Raises
    ------
    ValueError
        Naming the units without a label and the fix.
    """
    labels = np.asarray(area).astype(str)
    missing = np.isin(np.char.lower(np.char.strip(labels)), MISSING_AREA)
    if missing.any():
        ids = np.asarray(unit_id)[missing]
        raise ValueError(
            f"{what}: {int(missing.sum())} unit(s) have no area label (area "
            f"{labels[missing][:3].tolist()}, unit_id {ids[:10].tolist()}): every unit needs its "
            "brain area; set the missing labels (e.g. 'unknown' if the area is not known) or drop "
            "those units"
        )


def check_spikes(ds: xr.Dataset) -> None:
    """Check a ``spikes.nc`` dataset against its contract (docs/data-model.md) before binarizing.

    Checks the variables and their dims, at least one unit and one epoch, unique integer unit
    ids, an area label on every unit, finite epochs with ``epoch_stop > epoch_start`` (an empty
    epoch is an error), finite spike times and unit indices in range.

    Raises
    ------
    ValueError
        Saying what is wrong and how to fix it.
    """
    what = "spikes"
    for name, dims in (("spike_time", ("spike",)), ("spike_unit", ("spike",)),
                       ("unit_id", ("unit",)), ("area", ("unit",)),
                       ("epoch_start", ("epoch",)), ("epoch_stop", ("epoch",)),
                       ("epoch_name", ("epoch",))):
        _require(ds, name, dims, what)
    if ds.sizes["unit"] < 1 or ds.sizes["epoch"] < 1:
        raise ValueError(f"{what}: {ds.sizes['unit']} unit(s) and {ds.sizes['epoch']} epoch(s); "
                         "need at least one of each (select units/epochs that exist)")
    unit_id = np.asarray(ds["unit_id"].values)
    if unit_id.dtype.kind not in "iu" or np.unique(unit_id).size != unit_id.size:
        raise ValueError(f"{what}: unit_id must be unique integers; got dtype {unit_id.dtype} "
                         f"with {unit_id.size - np.unique(unit_id).size} duplicate(s)")
    check_area_labels(ds["area"].values, unit_id, what=what)
    names = [str(n) for n in ds["epoch_name"].values]
    start = np.asarray(ds["epoch_start"].values, dtype=np.float64)
    stop = np.asarray(ds["epoch_stop"].values, dtype=np.float64)
    for k, name in enumerate(names):
        if not (np.isfinite(start[k]) and np.isfinite(stop[k]) and stop[k] > start[k]):
            raise ValueError(
                f"{what}: epoch {name!r} is empty or invalid: [epoch_start, epoch_stop) = "
                f"[{start[k]}, {stop[k]}) s; an epoch needs finite times with epoch_stop > "
                "epoch_start (fix the epoch table or drop the epoch)"
            )
    t_spk = np.asarray(ds["spike_time"].values, dtype=np.float64)
    if t_spk.size == 0:
        raise ValueError(
            f"{what}: no spikes at all: all {ds.sizes['unit']} units are silent; check the "
            "extraction (unit filters, epochs, time range)"
        )
    if not np.isfinite(t_spk).all():
        raise ValueError(
            f"{what}: spike_time has {int((~np.isfinite(t_spk)).sum())} NaN/inf value(s); every "
            "spike needs a finite time in seconds (fix or drop those spikes)"
        )
    u_spk = np.asarray(ds["spike_unit"].values)
    n_units = ds.sizes["unit"]
    if u_spk.size and (u_spk.dtype.kind not in "iu" or u_spk.min() < 0
                       or u_spk.max() >= n_units):
        raise ValueError(
            f"{what}: spike_unit must be integer indices of the {n_units} units (0.."
            f"{n_units - 1}); found dtype {u_spk.dtype}, values in [{u_spk.min()}, "
            f"{u_spk.max()}]"
        )


def _binary_values(var: xr.DataArray, what: str) -> np.ndarray:
    """The values of a raster variable, checked to be integers (or booleans) in {0, 1}."""
    if var.dtype.kind not in "biu":
        raise ValueError(
            f"{what}: 'raster' has dtype {var.dtype}; it must be integer or boolean with values "
            "0/1 (store e.g. (counts > 0).astype('uint8'))"
        )
    values = np.asarray(var.values)
    bad = np.setdiff1d(np.unique(values), [0, 1])
    if bad.size:
        raise ValueError(
            f"{what}: 'raster' must contain only 0 and 1; found values {bad[:10].tolist()} in "
            f"{int(np.isin(values, bad).sum())} entries (a binarized raster is 1 where the unit "
            "fired in the bin: binarize counts with (counts > 0).astype('uint8'))"
        )
    return values


def check_raster(ds: xr.Dataset, *, n_hidden: int | None = None, needs_split: bool = True,
                 needs_area: bool = True) -> None:
    """Check a ``raster.nc`` dataset (the input of every stage after binarization).

    The contract (docs/data-model.md): ``raster(time_bin, neuron)`` of integers in {0, 1};
    coords ``unit_id``, ``area`` (a label on every neuron) on ``neuron`` and ``split`` on
    ``time_bin`` with both ``train`` and ``test`` bins; no neuron silent in the train split
    (binarization drops those). With ``n_hidden``, the raster must also have at least that many
    neurons: spikerbm does not train RBMs with more hidden units than neurons (the RBM math
    allows it, but the paper's regime and every analysis here assume ``n_hidden <= N``).
    A stage that uses neither the split nor the areas (dynamics: all bins in time order) passes
    ``needs_split=False`` / ``needs_area=False`` to skip those parts.

    Raises
    ------
    ValueError
        Saying what is wrong and how to fix it.
    """
    what = "raster"
    _require(ds, "raster", ("time_bin", "neuron"), what)
    for name, dims, needed in (("unit_id", ("neuron",), True),
                               ("area", ("neuron",), needs_area),
                               ("split", ("time_bin",), needs_split)):
        if needed:
            _require(ds, name, dims, what)
    values = _binary_values(ds["raster"], what)
    n_bins, n_neurons = values.shape
    if n_hidden is not None and n_neurons < n_hidden:
        raise ValueError(
            f"{what}: {n_neurons} neuron(s), fewer than the n_hidden = {n_hidden} hidden units "
            "asked for (train.n_hidden); spikerbm trains RBMs with n_hidden <= N only: lower "
            f"train.n_hidden to at most {n_neurons} or use a session with more neurons"
        )
    if needs_area:
        check_area_labels(ds["area"].values, ds["unit_id"].values, what=what)
    if not needs_split:
        return
    split = np.asarray(ds["split"].values).astype(str)
    counts = {name: int((split == name).sum()) for name in ("train", "test")}
    if set(np.unique(split)) - {"train", "test"} or min(counts.values()) < 1:
        raise ValueError(
            f"{what}: {n_bins} time bin(s) with split counts {counts}; every stage needs both "
            "train and test bins ('split' values 'train'/'test'): use a longer recording or "
            "fewer binarize.n_blocks"
        )
    silent = values[split == "train"].sum(axis=0) == 0
    if silent.any():
        raise ValueError(
            f"{what}: {int(silent.sum())} of {n_neurons} neuron(s) never fire in the train split "
            f"(unit_id {np.asarray(ds['unit_id'].values)[silent][:10].tolist()}); binarization "
            "drops such neurons (a silent unit has an infinite bias): drop them"
        )


def assign_blocks(n_bins: int, *, n_blocks: int, n_test_blocks: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Contiguous time blocks and their train/test labels.

    Parameters
    ----------
    n_bins
        Number of time-ordered bins.
    n_blocks
        Number of contiguous blocks (>= 2, <= n_bins); block sizes differ by at most one bin.
    n_test_blocks
        Number of blocks labelled ``"test"`` (1 <= n_test_blocks < n_blocks).
    seed
        Seed of the choice of test blocks.

    Returns
    -------
    block, split, test_blocks
        ``block`` (n_bins,) int64 block index, ``split`` (n_bins,) str ``"train"``/``"test"``,
        and the sorted list of test block indices.
    """
    if not isinstance(n_blocks, int | np.integer) or n_blocks < 2:
        raise ValueError(f"n_blocks must be an integer >= 2; got {n_blocks!r}")
    if not isinstance(n_test_blocks, int | np.integer) or not 1 <= n_test_blocks < n_blocks:
        raise ValueError(
            f"n_test_blocks must be an integer with 1 <= n_test_blocks < n_blocks = {n_blocks}; "
            f"got {n_test_blocks!r}"
        )
    if n_bins < n_blocks:
        raise ValueError(
            f"only {n_bins} time bins for n_blocks = {n_blocks} blocks: select more data "
            "(longer epochs, smaller bin_ms) or lower n_blocks"
        )
    block = (np.arange(n_bins, dtype=np.int64) * n_blocks) // n_bins
    rng = np.random.default_rng(int(seed))
    test_blocks = sorted(int(k) for k in rng.choice(n_blocks, size=n_test_blocks, replace=False))
    split = np.where(np.isin(block, test_blocks), "test", "train").astype(object)
    return block, split, test_blocks


def _drop_train_silent(ds: xr.Dataset) -> xr.Dataset:
    """Drop neurons that never fire in the train split; record them in ``dropped_units``."""
    train = ds["raster"].values[ds["split"].values == "train"]
    silent = train.sum(axis=0) == 0
    previous = json.loads(ds.attrs.get("dropped_units", "[]"))
    dropped = [int(u) for u in ds["unit_id"].values[silent]]
    if silent.all():
        raise ValueError(
            f"every one of the {silent.size} neurons is silent in the train split: the raster "
            "holds no spikes there; check the epochs, bin_ms and the spike data"
        )
    if dropped:
        log.warning("dropping %d neuron(s) silent in the train split: unit_id %s",
                    len(dropped), dropped)
    out = ds.isel(neuron=np.flatnonzero(~silent))
    out.attrs["dropped_units"] = json.dumps(previous + dropped)
    return out


def _select_epochs(spikes: xr.Dataset, epochs: str | Sequence[str]) -> list[int]:
    names = [str(n) for n in spikes["epoch_name"].values]
    if isinstance(epochs, str):
        if epochs != "all":
            epochs = [epochs]
        else:
            epochs = names
    epochs = list(epochs)
    if not epochs:
        raise ValueError(f"no epochs selected; choose `all` or names among {names}")
    unknown = [e for e in epochs if e not in names]
    if unknown:
        raise ValueError(f"unknown epoch(s) {unknown}; the spikes artifact has epochs {names}")
    if len(set(epochs)) != len(epochs):
        raise ValueError(f"epochs {epochs} lists an epoch more than once")
    idx = sorted((names.index(e) for e in epochs),
                 key=lambda k: float(spikes["epoch_start"].values[k]))
    starts = spikes["epoch_start"].values[idx]
    stops = spikes["epoch_stop"].values[idx]
    for k in range(1, len(idx)):
        if starts[k] < stops[k - 1]:
            raise ValueError(
                f"selected epochs {names[idx[k - 1]]!r} and {names[idx[k]]!r} overlap "
                f"([{starts[k - 1]}, {stops[k - 1]}) and [{starts[k]}, {stops[k]}) s): select "
                "non-overlapping epochs"
            )
    return idx


#: Unit variables of ``spikes.nc`` kept in ``raster.nc`` as coordinates on ``neuron`` when the
#: source provides them (docs/data-model.md "Input formats": NWB electrodes, phy channel
#: positions): positions in the file's units (NWB: µm; Allen: CCF µm), positions on the probe
#: (µm), and the probe.
POSITION_COORDS = ("x", "y", "z", "rel_x", "rel_y", "rel_z", "probe_horizontal_position",
                   "probe_vertical_position", "probe")


def binarize(spikes: xr.Dataset, *, bin_ms: float, epochs: str | Sequence[str] = "all",
             n_blocks: int, n_test_blocks: int, seed: int, session_id: str) -> xr.Dataset:
    """Binarize spike trains into the ``raster.nc`` contract (rules in the module docstring).

    Parameters
    ----------
    spikes
        ``spikes.nc`` dataset: ``spike_time`` (s), ``spike_unit``, ``unit_id``, ``area``,
        ``epoch_start``, ``epoch_stop`` (s), ``epoch_name``.
    bin_ms
        Bin width in ms (> 0).
    epochs
        ``"all"`` or a list of epoch names to keep (concatenated in time order).
    n_blocks, n_test_blocks
        Contiguous time blocks and how many of them form the test split.
    seed
        Seed of the choice of test blocks.
    session_id
        Stored in the attributes.

    Returns
    -------
    xr.Dataset
        ``raster(time_bin, neuron)`` uint8; coords ``time`` (bin start, s), ``epoch``, ``block``,
        ``split`` on ``time_bin`` and ``unit_id``, ``area``, ``rate_hz`` on ``neuron``, plus
        the positions of :data:`POSITION_COORDS` that ``spikes`` has on ``unit``.
    """
    if not np.isfinite(bin_ms) or bin_ms <= 0:
        raise ValueError(f"bin_ms must be a positive number of milliseconds; got {bin_ms!r}")
    check_spikes(spikes)
    dt = float(bin_ms) / 1000.0
    names = [str(n) for n in spikes["epoch_name"].values]
    idx = _select_epochs(spikes, epochs)
    t_spk = np.asarray(spikes["spike_time"].values, dtype=np.float64)
    u_spk = np.asarray(spikes["spike_unit"].values, dtype=np.int64)
    n_units = spikes.sizes["unit"]

    rows, cols, times, labels = [], [], [], []
    offset = 0
    for k in idx:
        start = float(spikes["epoch_start"].values[k])
        stop = float(spikes["epoch_stop"].values[k])
        n_bins = int(np.floor((stop - start) / dt + EDGE_TOL))
        if n_bins < 1:
            raise ValueError(
                f"epoch {names[k]!r} lasts {stop - start:g} s, shorter than one bin of "
                f"{bin_ms} ms: select other epochs (available: {names}) or a smaller bin_ms"
            )
        q = (t_spk - start) / dt
        r = np.round(q)
        b = np.where(np.abs(q - r) < EDGE_TOL, r, np.floor(q))  # on-edge spikes start a bin
        inside = (b >= 0) & (b < n_bins)
        if not inside.any():
            raise ValueError(
                f"epoch {names[k]!r} ([{start:g}, {stop:g}) s) holds no spike of any unit: an "
                "empty epoch (are spike and epoch times on the same clock?); fix the epoch "
                f"times or leave it out of binarize.epochs (epochs: {names})"
            )
        rows.append(offset + b[inside].astype(np.int64))
        cols.append(u_spk[inside])
        times.append(start + np.arange(n_bins) * dt)
        labels.append(np.full(n_bins, names[k], dtype=object))
        offset += n_bins
    row, col = np.concatenate(rows), np.concatenate(cols)
    raster = np.zeros((offset, n_units), dtype=np.uint8)
    raster[row, col] = 1
    block, split, test_blocks = assign_blocks(offset, n_blocks=n_blocks,
                                              n_test_blocks=n_test_blocks, seed=seed)
    n_spikes = np.bincount(col, minlength=n_units)
    duration_s = offset * dt
    ds = xr.Dataset(
        {"raster": (("time_bin", "neuron"), raster,
                    {"long_name": "1 if the unit fired at least once in the bin"})},
        coords={
            "time": ("time_bin", np.concatenate(times), {"units": "s", "long_name": "bin start"}),
            "epoch": ("time_bin", np.concatenate(labels)),
            "block": ("time_bin", block),
            "split": ("time_bin", split),
            "unit_id": ("neuron", np.asarray(spikes["unit_id"].values, dtype=np.int64)),
            "area": ("neuron", np.asarray(spikes["area"].values).astype(str).astype(object)),
            "rate_hz": ("neuron", n_spikes / duration_s,
                        {"units": "Hz", "long_name": "spikes in the selected bins / duration"}),
        },
        attrs={
            "bin_ms": float(bin_ms),
            "session_id": session_id,
            "source": str(spikes.attrs.get("source", "unknown")),
            "epochs": json.dumps([names[k] for k in idx]),
            "n_blocks": int(n_blocks),
            "n_test_blocks": int(n_test_blocks),
            "test_blocks": json.dumps(test_blocks),
            "duration_s": duration_s,
            "n_spikes_total": int(t_spk.size),
            "n_spikes_ignored": int(t_spk.size - row.size),
            "dropped_units": "[]",
        },
    )
    for name in POSITION_COORDS:
        if name in spikes.variables and spikes[name].dims == ("unit",):
            values = np.asarray(spikes[name].values)
            values = (values.astype(str).astype(object) if values.dtype.kind in "OUS"
                      else values.astype(np.float64))
            ds.coords[name] = ("neuron", values, dict(spikes[name].attrs))
    if t_spk.size - row.size:
        log.info("%d of %d spikes fall outside the selected bins and are ignored",
                 t_spk.size - row.size, t_spk.size)
    return _drop_train_silent(ds)


#: Relative tolerance on the spacing of consecutive bins: bins whose start times differ by
#: ``bin_ms`` within ``TIME_RTOL * bin_ms`` are contiguous (float64 times of a recording of hours
#: keep this easily; a longer step is a gap, a shorter one means a wrong ``bin_ms`` or time unit).
TIME_RTOL = 1e-3


def contiguous_segments(time: np.ndarray, *, bin_s: float, epoch: np.ndarray | None = None,
                        rtol: float = TIME_RTOL) -> np.ndarray:
    """Maximal runs of bins that are contiguous in time and belong to one epoch.

    Parameters
    ----------
    time
        Bin start times in s, shape (T,), non-decreasing (time-ordered raster).
    bin_s
        Bin width in s. Consecutive bins are contiguous when their start times differ by
        ``bin_s`` (within ``rtol * bin_s``).
    epoch
        Epoch label of every bin, shape (T,); a change of label starts a new segment.
    rtol
        Relative tolerance on the spacing.

    Returns
    -------
    numpy.ndarray
        int64 array (n_segments, 2) of ``[start, stop)`` bin indices, in time order.
    """
    time = np.asarray(time, dtype=np.float64)
    if time.ndim != 1 or time.size == 0:
        raise ValueError(
            f"time must be a non-empty 1-D array of bin starts; got shape {time.shape}"
        )
    if not np.isfinite(bin_s) or bin_s <= 0:
        raise ValueError(f"bin_s must be a positive bin width in seconds; got {bin_s!r}")
    step = np.diff(time)
    if np.any(step < -rtol * bin_s):
        bad = int(np.argmax(step < -rtol * bin_s))
        raise ValueError(
            f"raster is not time-ordered: time[{bad + 1}] = {time[bad + 1]} < time[{bad}] = "
            f"{time[bad]}; the dynamics stage needs bins in time order"
        )
    breaks = np.abs(step - bin_s) > rtol * bin_s
    if epoch is not None:
        epoch = np.asarray(epoch)
        if epoch.shape != time.shape:
            raise ValueError(
                f"epoch has shape {epoch.shape}, time has {time.shape}; they must match"
            )
        breaks |= epoch[1:] != epoch[:-1]
    cuts = np.flatnonzero(breaks) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [time.size]])
    return np.stack([starts, stops], axis=1).astype(np.int64)


def split_arrays(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """Train and test bins of a raster, in time order.

    Returns
    -------
    dict
        ``{"train": uint8 (T_train, N), "test": uint8 (T_test, N)}`` (contiguous copies).
    """
    raster = np.asarray(ds["raster"].transpose("time_bin", "neuron").values, dtype=np.uint8)
    split = ds["split"].values
    return {name: np.ascontiguousarray(raster[split == name]) for name in ("train", "test")}


#: Time units of a raster's ``time`` coordinate (CF ``"<unit>"`` or ``"<unit> since <origin>"``)
#: and their length in seconds.
TIME_UNITS = {
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 1e-3, "msec": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3,
    "us": 1e-6, "microsecond": 1e-6, "microseconds": 1e-6,
    "ns": 1e-9, "nanosecond": 1e-9, "nanoseconds": 1e-9,
    "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}


def time_in_seconds(var: xr.DataArray, *, what: str = "raster input") -> tuple[np.ndarray, str]:
    """A time variable (a raster's ``time``, a spikes file's times) as float64 seconds, read by
    its ``units`` attribute.

    Reads numbers as the seconds they mean: CF units ``"<unit>"`` or ``"<unit> since <origin>"``
    (e.g. ``"seconds since 2024-05-01"``, ``"ms since session start"``) with a unit of
    :data:`TIME_UNITS`; the origin is kept as text (the times stay relative to it). Without a
    ``units`` attribute the numbers are seconds. ``timedelta64`` values are converted.
    Read the file with :func:`spikerbm.io.read_netcdf` ``(raw=True)`` so that xarray does not
    decode CF times into datetimes first.

    Returns
    -------
    seconds, origin
        float64 array (same shape) and the origin text (``""`` if none).

    Raises
    ------
    ValueError
        Datetimes (already decoded) or a unit that is not a time unit: one line naming the
        ``units`` attribute and the fix.
    """
    name = var.name or "time"
    values = np.asarray(var.values)
    if values.dtype.kind == "m":
        return values / np.timedelta64(1, "s"), ""
    units = var.attrs.get("units", var.encoding.get("units"))
    if values.dtype.kind == "M":
        raise ValueError(
            f"{what}: {name!r} holds datetimes (decoded from units {units!r}); spikerbm needs "
            "times in seconds: read the file with spikerbm.io.read_netcdf(path, raw=True) "
            "or xr.open_dataset(path, decode_times=False), or store seconds (units 's')"
        )
    if values.dtype.kind not in "iuf":
        raise ValueError(f"{what}: {name!r} must hold numbers (times in seconds); got dtype "
                         f"{values.dtype}")
    if units is None:
        return values.astype(np.float64), ""
    match = re.fullmatch(r"\s*([A-Za-z]+)(?:\s+since\s+(.*\S))?\s*", str(units))
    factor = TIME_UNITS.get(match.group(1).lower()) if match else None
    if factor is None:
        raise ValueError(
            f"{what}: attribute units = {units!r} of {name!r} is not a time unit spikerbm "
            f"reads: set its units attribute to 's' (or 'ms', or '<unit> since <origin>', e.g. "
            "'seconds since session start')"
        )
    return values.astype(np.float64) * factor, match.group(2) or ""


def _id_list(value, name: str, what: str) -> list[int]:
    """An attribute holding a list of integer ids, as netCDF returns it: a JSON text
    (``"[101, 102]"``), an integer array (a list written by xarray) or one integer (a one-item
    list comes back as a scalar)."""
    form = (f"the list of integer unit ids, as a JSON text ('[101, 102]') or an integer "
            f"attribute (ds.attrs['{name}'] = [101, 102])")
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as err:
            raise ValueError(f"{what}: attribute {name!r} = {value!r} is not valid JSON "
                             f"({err.msg}); expected {form}") from err
    arr = np.atleast_1d(np.asarray(value))
    if arr.ndim != 1 or (arr.size and (arr.dtype.kind not in "iu" or arr.dtype == bool)):
        raise ValueError(f"{what}: attribute {name!r} = {value!r} is not a list of integers; "
                         f"expected {form}")
    return [int(v) for v in arr]


def _name_list(value, name: str, what: str) -> list[str]:
    """An attribute holding a list of names: a JSON text, a list of strings or one string."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip().startswith("[") else [value]
        except json.JSONDecodeError as err:
            raise ValueError(f"{what}: attribute {name!r} = {value!r} is not valid JSON "
                             f"({err.msg}); expected a JSON list of names ('[\"active\"]') or "
                             "a list of strings") from err
    items = list(np.atleast_1d(np.asarray(value, dtype=object)))
    if not all(isinstance(v, str) for v in items):
        raise ValueError(f"{what}: attribute {name!r} = {value!r} must be a list of names "
                         "(strings), e.g. ds.attrs['epochs'] = ['active']")
    return [str(v) for v in items]


def _raster_values(var: xr.DataArray, what: str) -> np.ndarray:
    """The 0/1 values of a user raster as stored, with missing values and packing named.

    ``_FillValue`` / ``missing_value`` equal to 0 or 1 are valid 0/1 data, never masked; values
    equal to any other fill value are missing bins (an error naming the attribute). Packed data
    (``scale_factor``/``add_offset``) is refused. A float raster (what xarray makes of integers
    with a fill value when it masks them) is refused, naming its NaN count.
    """
    for key in ("scale_factor", "add_offset"):
        if key in var.attrs or key in var.encoding:
            raise ValueError(f"{what}: 'raster' is packed (attribute {key!r}); store the 0/1 "
                             "values themselves as uint8, without scale_factor/add_offset")
    values = np.asarray(var.values)
    if values.dtype.kind == "f":
        n_nan = int(np.isnan(values).sum())
        if n_nan:
            fill = var.encoding.get("_FillValue", var.attrs.get("_FillValue"))
            fill = None if fill is None else np.asarray(fill).tolist()
            raise ValueError(
                f"{what}: 'raster' has {n_nan} missing (NaN) value(s) "
                f"{'' if fill is None else f'(entries equal to its _FillValue = {fill!r}) '}"
                "and dtype float; a raster has no missing bins: fill or drop those bins, store "
                "uint8 0/1; read the file with spikerbm.io.read_netcdf(path, raw=True) so that a "
                "_FillValue does not mask data"
            )
    for key in ("_FillValue", "missing_value"):
        fill = var.attrs.get(key)
        if fill is None or values.dtype.kind not in "biu":
            continue
        fill_values = np.atleast_1d(np.asarray(fill))
        fill = fill_values.tolist() if fill_values.size > 1 else fill_values[0].item()
        missing = np.isin(values, fill_values[~np.isin(fill_values, [0, 1])])
        if missing.any():
            raise ValueError(
                f"{what}: 'raster' has {int(missing.sum())} entries equal to its {key} "
                f"{fill!r}: missing values; a raster has no missing bins: fill them with 0/1 or "
                "drop the affected bins or neurons"
            )
        if np.isin(fill_values, [0, 1]).any():
            log.info("raster: %s = %r is a valid 0/1 value: read as data, not masked", key, fill)
    return _binary_values(var.copy(data=values), what)


def log_segments(time: np.ndarray, *, bin_ms: float, epoch: np.ndarray | None = None,
                 what: str = "raster input") -> np.ndarray:
    """Check that consecutive bins are one bin apart or further, and log the contiguous segments.

    Bins whose start times differ by ``bin_ms`` within :data:`TIME_RTOL` are contiguous; a longer
    step is a gap (a new segment), a shorter one an error (overlapping bins: a wrong ``bin_ms``
    or time unit). Logs the number of segments and the shortest and longest.

    Returns
    -------
    numpy.ndarray
        int64 (n_segments, 2) ``[start, stop)`` bin indices (:func:`contiguous_segments`).
    """
    dt = bin_ms / 1000.0
    step = np.diff(time)
    short = np.flatnonzero(step < dt * (1 - TIME_RTOL))
    if short.size:
        k = int(short[0])
        raise ValueError(
            f"{what}: bins {k} and {k + 1} start {step[k]:.6g} s apart, less than bin_ms = "
            f"{bin_ms:g} ms ({short.size} such step(s); median step {np.median(step):.6g} s; "
            f"tolerance {TIME_RTOL:g} of a bin): the bins overlap; fix the bin_ms attribute or "
            "the units of 'time' (attribute units, default seconds)"
        )
    segments = contiguous_segments(time, bin_s=dt, epoch=epoch)
    lengths = segments[:, 1] - segments[:, 0]
    log.info("%s: %d bins in %d contiguous segment(s) (spacing bin_ms = %g ms within %g of a bin; "
             "epoch changes and longer steps start a segment): shortest %d bins (%.6g s), "
             "longest %d bins (%.6g s)", what, int(lengths.sum()), len(segments), bin_ms,
             TIME_RTOL, lengths.min(), lengths.min() * dt, lengths.max(), lengths.max() * dt)
    return segments


def validate_raster(ds: xr.Dataset, *, n_blocks: int, n_test_blocks: int, seed: int,
                    session_id: str) -> xr.Dataset:
    """Check a user-supplied binarized raster (``source: raster``) and complete it.

    Required: a variable ``raster`` with dims exactly ``(time_bin, neuron)``, integer or boolean
    dtype, values in {0, 1}; coords ``unit_id`` (integer, unique) and ``area`` on ``neuron``;
    attribute ``bin_ms`` (> 0). Optional (coordinates or data variables): ``time`` (strictly
    increasing; default ``t * bin_ms / 1000`` s), ``epoch``
    (default ``"raster"``), ``split`` (values ``train``/``test``; default assigned like
    :func:`binarize` with ``n_blocks``, ``n_test_blocks``, ``seed``), ``block`` (default the
    contiguous blocks), ``rate_hz`` (default fraction of active bins / bin width).
    Train-silent neurons are dropped and recorded in ``dropped_units``.

    Real files (docs/reliability.md, "Raster import"): ``time`` is read in the seconds its
    ``units`` attribute means (:func:`time_in_seconds`), its spacing must be ``bin_ms`` within
    :data:`TIME_RTOL` or a gap, and the contiguous segments are logged (:func:`log_segments`);
    a ``_FillValue`` of 0 or 1 never masks data and other fill values found in the data are
    missing bins (an error naming the attribute); attributes written as lists
    (``dropped_units``, ``epochs``, ``bin_ms``) are accepted in the forms netCDF returns them
    (JSON text, array, scalar). Read the file with ``spikerbm.io.read_netcdf(path, raw=True)``.

    Raises
    ------
    ValueError
        Naming what is wrong and how to fix it.
    """
    where = "raster input"
    # optional per-bin / per-neuron variables stored as data variables count as coordinates
    # (otherwise they would be silently ignored and replaced by defaults)
    ds = ds.set_coords([n for n in ("time", "epoch", "split", "block", "rate_hz")
                        if n in ds.data_vars])
    if "raster" not in ds.data_vars:
        raise ValueError(
            f"{where}: no variable named 'raster' (found {sorted(map(str, ds.data_vars))}); "
            "rename the binary activity variable to 'raster'"
        )
    var = ds["raster"]
    if var.dims != ("time_bin", "neuron"):
        raise ValueError(
            f"{where}: 'raster' has dims {var.dims}; it must have dims ('time_bin', 'neuron') "
            "in that order (use .rename({...}) / .transpose('time_bin', 'neuron'))"
        )
    values = _raster_values(var, where)
    for name in ("unit_id", "area"):
        if name not in ds.coords or ds[name].dims != ("neuron",):
            raise ValueError(
                f"{where}: missing coordinate {name!r} on dim 'neuron' (assign it with "
                f"ds.assign_coords({name}=('neuron', values)))"
            )
    if ds["unit_id"].dtype.kind not in "iu":
        raise ValueError(f"{where}: 'unit_id' must be integers; got dtype {ds['unit_id'].dtype}")
    check_area_labels(ds["area"].values, ds["unit_id"].values, what=where)
    if np.unique(ds["unit_id"].values).size != ds.sizes["neuron"]:
        raise ValueError(f"{where}: 'unit_id' values must be unique")
    bin_ms = ds.attrs.get("bin_ms")
    try:  # a number, or a one-item list (netCDF returns it as an array or a scalar)
        bin_ms = float(np.asarray(bin_ms, dtype=np.float64).reshape(-1)[0]) \
            if np.size(bin_ms) == 1 else None
    except (TypeError, ValueError):
        bin_ms = None
    if bin_ms is None or not np.isfinite(bin_ms) or bin_ms <= 0:
        raise ValueError(
            f"{where}: attribute 'bin_ms' (bin width in ms, > 0) is missing or invalid "
            f"({ds.attrs.get('bin_ms')!r}); set ds.attrs['bin_ms'] = 20.0 (your bin width)"
        )
    attrs = {"dropped_units": json.dumps(_id_list(ds.attrs.get("dropped_units", "[]"),
                                                  "dropped_units", where))}
    if "epochs" in ds.attrs:
        attrs["epochs"] = json.dumps(_name_list(ds.attrs["epochs"], "epochs", where))
    if "source" in ds.attrs:
        if not isinstance(ds.attrs["source"], str):
            raise ValueError(f"{where}: attribute 'source' = {ds.attrs['source']!r} must be one "
                             "text (where the raster comes from)")
        attrs["source"] = ds.attrs["source"]
    n_bins = ds.sizes["time_bin"]
    out = xr.Dataset(
        {"raster": (("time_bin", "neuron"), values.astype(np.uint8),
                    {"long_name": "1 if the unit fired at least once in the bin"})},
        coords={
            "unit_id": ("neuron", ds["unit_id"].values.astype(np.int64)),
            "area": ("neuron", ds["area"].values.astype(str).astype(object)),
        },
        attrs=attrs,
    )
    time_attrs = {"units": "s", "long_name": "bin start"}
    if "time" in ds.coords:
        time, origin = time_in_seconds(ds["time"], what=where)
        if origin:
            time_attrs["origin"] = origin
        if not (np.isfinite(time).all() and np.all(np.diff(time) > 0)):
            raise ValueError(
                f"{where}: 'time' must be finite and strictly increasing (the raster must be in "
                "time order); sort the bins by time (ds.sortby('time')) or drop 'time'"
            )
    else:
        time = np.arange(n_bins) * bin_ms / 1000.0
    out.coords["time"] = ("time_bin", time, time_attrs)
    out.coords["epoch"] = ("time_bin", ds["epoch"].values.astype(str).astype(object)
                           if "epoch" in ds.coords else np.full(n_bins, "raster", dtype=object))
    log_segments(time, bin_ms=bin_ms, epoch=out["epoch"].values, what=where)
    if "split" in ds.coords:
        split = ds["split"].values.astype(str)
        bad_split = sorted(set(split) - {"train", "test"})
        if bad_split:
            raise ValueError(f"{where}: 'split' values must be 'train' or 'test'; found "
                             f"{bad_split}")
        for name in ("train", "test"):
            if not (split == name).any():
                raise ValueError(f"{where}: 'split' has no {name!r} bins; give both splits or "
                                 "drop 'split' to have contiguous blocks assigned")
        block = (ds["block"].values.astype(np.int64) if "block" in ds.coords
                 else (np.arange(n_bins, dtype=np.int64) * n_blocks) // max(n_bins, 1))
        test_blocks = sorted({int(k) for k in block[split == "test"]})
        out.attrs.setdefault("n_blocks", int(np.unique(block).size))
    else:
        block, split, test_blocks = assign_blocks(n_bins, n_blocks=n_blocks,
                                                  n_test_blocks=n_test_blocks, seed=seed)
        out.attrs["n_blocks"] = int(n_blocks)
    out.coords["block"] = ("time_bin", block)
    out.coords["split"] = ("time_bin", np.asarray(split).astype(object))
    rate = (ds["rate_hz"].values.astype(np.float64) if "rate_hz" in ds.coords
            else values.mean(axis=0) / (bin_ms / 1000.0))
    out.coords["rate_hz"] = ("neuron", rate, {"units": "Hz"})
    out.attrs.update(bin_ms=bin_ms, session_id=session_id, test_blocks=json.dumps(test_blocks),
                     n_test_blocks=len(test_blocks),
                     duration_s=n_bins * bin_ms / 1000.0)
    out.attrs.setdefault("source", "raster")
    out.attrs.setdefault("dropped_units", "[]")
    return _drop_train_silent(out)
