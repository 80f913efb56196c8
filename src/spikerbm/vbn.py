"""Allen Visual Behavior Neuropixels (VBN) source: sessions -> ``spikes.nc``.

The reader: options, unit and epoch selection, the ``spikes.nc`` dataset, allensdk access and
session listing. It runs in the separate vbn environment (``.venv-vbn``, allensdk 2.16.2 with
its old numpy/pandas/xarray pins) and is importable in the main environment too (allensdk is
imported only inside the functions that need it). Its command line (``extract``,
``list-sessions``) is :mod:`spikerbm.vbn_cli`; ``python -m spikerbm.vbn`` runs it too.

Unit selection (docs/methods.md §1): ``quality == "good"``, ``isi_violations < 0.5``,
``amplitude_cutoff < 0.1``, ``presence_ratio > 0.95`` (strict inequalities; a unit with a missing
metric fails), then an optional list of areas (``structure_acronym`` of the unit's peak channel).
Epochs: stimulus blocks by kind (``active`` = the change-detection block(s) with ``active``
true; ``passive`` = passive replay, blocks not active that show a stimulus of an active block;
``spontaneous`` = blocks with ``stimulus_name == "spontaneous"``), a block by number
(``{block: N, name: ...}``), or explicit windows ``{name, start_s, stop_s}``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("spikerbm.vbn")

DEFAULT_FILTERS: dict[str, Any] = {
    "quality": "good",
    "isi_violations_max": 0.5,
    "amplitude_cutoff_max": 0.1,
    "presence_ratio_min": 0.95,
}
EPOCH_KINDS = ("active", "passive", "spontaneous")
CACHE_MODES = ("s3", "local")
ROW_PARAMS = ("ecephys_session_id", "epochs", "areas", *DEFAULT_FILTERS)
UNKNOWN_AREA = "unknown"
SETUP_HINT = "build the vbn environment with `bash scripts/setup_vbn_env.sh`"
LIST_HINT = ("list candidate sessions with `.venv-vbn/bin/python -m spikerbm.vbn list-sessions "
             "--cache-dir <vbn.cache_dir>`")


class VBNError(RuntimeError):
    """A VBN data-access failure (cache unreachable, unknown session, ...) with its fix."""


# ----------------------------------------------------------------------------- options


def _split_list(value: Any, *, what: str) -> list[Any]:
    """``"a,b"`` or ``["a", "b"]`` or ``"a"`` -> list (``None`` -> ``[]``)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, Sequence):
        return list(value)
    raise ValueError(f"{what} must be a string, a comma-separated string or a list, got {value!r}")


def parse_areas(areas: Any) -> list[str] | None:
    """Normalise an area selection: ``None``/``"all"`` -> ``None``; ``"VISp,VISl"`` -> list.

    Raises
    ------
    ValueError
        When an item is not a non-empty string.
    """
    if areas is None or (isinstance(areas, str) and areas.strip().lower() in ("all", "")):
        return None
    items = _split_list(areas, what="areas")
    for item in items:
        if not isinstance(item, str) or not item:
            raise ValueError(f"areas item {item!r} is not a structure acronym (e.g. VISp); "
                             "give areas as a list of acronyms or `all`")
    return [str(i) for i in items]


def parse_epoch_specs(epochs: Any) -> list[dict[str, Any]]:
    """Normalise an epoch selection into a list of specs.

    Parameters
    ----------
    epochs
        A kind (``"active"``, ``"passive"``, ``"spontaneous"``), a comma-separated string of
        kinds, or a list whose items are kinds, ``{"block": N, "name": str}`` (name optional) or
        ``{"name": str, "start_s": float, "stop_s": float}`` windows (seconds, session clock).

    Returns
    -------
    list of dict
        ``{"kind": k}``, ``{"block": N, "name": str}`` or ``{"name", "start_s", "stop_s"}``.

    Raises
    ------
    ValueError
        Empty selection, unknown kind, malformed block or window.
    """
    items = _split_list(epochs, what="epochs")
    if not items:
        raise ValueError(f"epochs is empty: give at least one of {list(EPOCH_KINDS)}, a "
                         "{block: N} or a {name, start_s, stop_s} window")
    specs: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, Mapping) and set(item) == {"kind"}:  # already normalised
            item = item["kind"]
        if isinstance(item, str):
            if item not in EPOCH_KINDS:
                raise ValueError(f"epoch {item!r} is not a known kind; use one of "
                                 f"{list(EPOCH_KINDS)}, {{block: N}} or "
                                 "{name: ..., start_s: ..., stop_s: ...}")
            specs.append({"kind": item})
        elif isinstance(item, Mapping) and "block" in item:
            extra = set(item) - {"block", "name"}
            if extra or not isinstance(item["block"], int) or isinstance(item["block"], bool):
                raise ValueError(f"epoch block spec {dict(item)!r} must be {{block: <int>, "
                                 "name: <str, optional>}}")
            specs.append({"block": int(item["block"]),
                          "name": str(item.get("name") or f"block-{int(item['block'])}")})
        elif isinstance(item, Mapping):
            if set(item) != {"name", "start_s", "stop_s"}:
                raise ValueError(f"epoch window {dict(item)!r} must have exactly the keys "
                                 "name, start_s, stop_s (seconds)")
            start, stop = float(item["start_s"]), float(item["stop_s"])
            if not (math.isfinite(start) and math.isfinite(stop) and stop > start):
                raise ValueError(f"epoch window {item['name']!r}: start_s={start} must be "
                                 f"finite and below stop_s={stop}")
            specs.append({"name": str(item["name"]), "start_s": start, "stop_s": stop})
        else:
            raise ValueError(f"epoch item {item!r} is neither a kind, a block nor a window")
    return specs


def _threshold(value: Any, *, key: str) -> float | None:
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{key}={value!r} must be a number (or null to disable this filter)")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{key}={value!r} must be a number (or null to disable this filter)"
                         ) from None


def resolve_options(vbn_config: Mapping[str, Any], row_params: Mapping[str, Any], *,
                    session_id: str) -> dict[str, Any]:
    """Merge the config ``vbn`` section with a sessions-sheet row's params and validate them.

    Parameters
    ----------
    vbn_config
        The ``vbn`` config section (keys cache_dir, cache_mode, python, filters, areas, epochs).
    row_params
        The row's params: ``ecephys_session_id`` (required) and optional overrides ``epochs``,
        ``areas``, ``quality``, ``isi_violations_max``, ``amplitude_cutoff_max``,
        ``presence_ratio_min``.
    session_id
        The row's session id (named in error messages).

    Returns
    -------
    dict
        ``ecephys_session_id`` (int), ``cache_dir``, ``cache_mode``, ``filters`` (dict),
        ``areas`` (list or None), ``epochs`` (list of specs).

    Raises
    ------
    ValueError
        Unknown or missing params, bad values; the message names the session and the fix.
    """
    unknown = sorted(set(row_params) - set(ROW_PARAMS))
    if unknown:
        raise ValueError(f"session {session_id!r}: unknown vbn params {unknown}; allowed: "
                         f"{list(ROW_PARAMS)}")
    sid = row_params.get("ecephys_session_id")
    if isinstance(sid, bool) or not isinstance(sid, int | str) or not str(sid).isdigit():
        raise ValueError(f"session {session_id!r}: params need ecephys_session_id=<integer id> "
                         f"(got {sid!r}); {LIST_HINT}")
    mode = str(vbn_config.get("cache_mode", "s3"))
    if mode not in CACHE_MODES:
        raise ValueError(f"vbn.cache_mode={mode!r} is not one of {list(CACHE_MODES)}")
    filters = dict(DEFAULT_FILTERS)
    filters.update(vbn_config.get("filters") or {})
    bad = sorted(set(filters) - set(DEFAULT_FILTERS))
    if bad:
        raise ValueError(f"vbn.filters has unknown keys {bad}; allowed: {list(DEFAULT_FILTERS)}")
    filters.update({k: row_params[k] for k in DEFAULT_FILTERS if k in row_params})
    quality = filters["quality"]
    filters = {k: _threshold(v, key=k) for k, v in filters.items() if k != "quality"}
    filters["quality"] = None if quality in (None, "none", "null") else str(quality)
    try:
        epochs = parse_epoch_specs(row_params.get("epochs", vbn_config.get("epochs", ["active"])))
        areas = parse_areas(row_params.get("areas", vbn_config.get("areas")))
    except ValueError as err:
        raise ValueError(f"session {session_id!r}: {err}") from None
    return {"ecephys_session_id": int(sid), "cache_dir": str(vbn_config.get("cache_dir",
                                                                            "vbn_cache")),
            "cache_mode": mode, "filters": filters, "areas": areas, "epochs": epochs}


# ----------------------------------------------------------------------------- units


def unit_areas(units: pd.DataFrame, channels: pd.DataFrame, *,
               channel_column: str = "peak_channel_id") -> pd.Series:
    """Area of each unit: ``structure_acronym`` of its peak channel (``"unknown"`` if missing).

    Parameters
    ----------
    units
        Units table with a ``channel_column`` of channel ids.
    channels
        Channels table indexed by channel id with a ``structure_acronym`` column.
    channel_column
        Column of ``units`` holding the peak channel id.

    Returns
    -------
    pandas.Series
        str areas indexed like ``units``.
    """
    if channel_column not in units.columns:
        raise ValueError(f"units table has no {channel_column!r} column to join channels on")
    acr = channels["structure_acronym"]
    areas = units[channel_column].map(acr)
    return areas.where(areas.notna() & (areas.astype(str) != "nan"), UNKNOWN_AREA).astype(str)


def unit_filter_mask(units: pd.DataFrame, *, quality: str | None = "good",
                     isi_violations_max: float | None = 0.5,
                     amplitude_cutoff_max: float | None = 0.1,
                     presence_ratio_min: float | None = 0.95,
                     areas: Sequence[str] | None = None,
                     ) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Boolean mask of units passing the quality filters and area list.

    Strict inequalities (``isi_violations < max``, ``amplitude_cutoff < max``,
    ``presence_ratio > min``); a unit with a missing (NaN) metric fails that filter; a ``None``
    option disables its filter. ``units`` needs the metric columns used and an ``area`` column.

    Returns
    -------
    mask : numpy.ndarray of bool
        Units passing every filter.
    stages : list of (str, int)
        Units left after each filter, in order (for reporting).
    """
    mask = np.ones(len(units), dtype=bool)
    stages = [("all units", int(mask.sum()))]
    checks: list[tuple[str, str, Any]] = [
        ("quality", f"quality == {quality!r}", quality),
        ("isi_violations", f"isi_violations < {isi_violations_max}", isi_violations_max),
        ("amplitude_cutoff", f"amplitude_cutoff < {amplitude_cutoff_max}",
         amplitude_cutoff_max),
        ("presence_ratio", f"presence_ratio > {presence_ratio_min}", presence_ratio_min),
    ]
    for column, label, value in checks:
        if value is None:
            continue
        if column not in units.columns:
            raise ValueError(f"units table has no {column!r} column for the filter {label}; "
                             f"columns: {sorted(units.columns)}")
        col = units[column]
        if column == "quality":
            ok = col.astype(str).to_numpy() == value
        else:
            x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
            with np.errstate(invalid="ignore"):
                ok = x > value if column == "presence_ratio" else x < value
        mask &= ok
        stages.append((label, int(mask.sum())))
    if areas is not None:
        mask &= units["area"].isin(list(areas)).to_numpy()
        stages.append((f"area in {list(areas)}", int(mask.sum())))
    return mask, stages


def select_units(units: pd.DataFrame, *, session_id: str, quality: str | None = "good",
                 isi_violations_max: float | None = 0.5, amplitude_cutoff_max: float | None = 0.1,
                 presence_ratio_min: float | None = 0.95,
                 areas: Sequence[str] | None = None) -> pd.DataFrame:
    """Units passing the filters, ordered by (area, unit id).

    Parameters
    ----------
    units
        Units table indexed by unit id with the metric columns and an ``area`` column.
    session_id
        Named in the error message.
    quality, isi_violations_max, amplitude_cutoff_max, presence_ratio_min, areas
        Filters (see :func:`unit_filter_mask`).

    Returns
    -------
    pandas.DataFrame
        The selected rows (index = unit id, int64).

    Raises
    ------
    ValueError
        When no unit passes; the message gives the count left after each filter and the fix.
    """
    mask, stages = unit_filter_mask(
        units, quality=quality, isi_violations_max=isi_violations_max,
        amplitude_cutoff_max=amplitude_cutoff_max, presence_ratio_min=presence_ratio_min,
        areas=areas)
    if not mask.any():
        counts = ", ".join(f"{label}: {n}" for label, n in stages)
        present = sorted(units["area"].astype(str).unique().tolist()) if len(units) else []
        raise ValueError(f"session {session_id!r}: no units pass the filters ({counts}); areas "
                         f"in this session: {present}. Relax vbn.filters / areas (config or the "
                         "row's params) or choose another session")
    sel = units[mask].copy()
    sel.index = sel.index.astype("int64")
    order = np.lexsort((sel.index.to_numpy(), sel["area"].astype(str).to_numpy()))
    return sel.iloc[order]


# ----------------------------------------------------------------------------- epochs


def stimulus_blocks(presentations: pd.DataFrame) -> pd.DataFrame:
    """One row per stimulus block: start, stop (s), stimulus name, active flag and kind.

    ``kind`` is ``active`` (any presentation active), ``spontaneous`` (stimulus name
    ``spontaneous``), ``passive`` (not active, showing a stimulus of an active block: the
    passive replay) or ``other`` (e.g. receptive-field mapping, flashes).
    """
    stop_col = "end_time" if "end_time" in presentations.columns else "stop_time"
    need = {"stimulus_block", "start_time", stop_col, "stimulus_name", "active"}
    missing = sorted(need - set(presentations.columns))
    if missing:
        raise ValueError(f"stimulus_presentations lacks columns {missing}")
    p = presentations.copy()
    p["_stop"] = pd.to_numeric(p[stop_col], errors="coerce").fillna(p["start_time"])
    p["active"] = p["active"].fillna(False).astype(bool)
    grouped = p.groupby("stimulus_block")
    blocks = pd.DataFrame({
        "start": grouped["start_time"].min().astype(float),
        "stop": grouped["_stop"].max().astype(float),
        "stimulus_name": grouped["stimulus_name"].agg(
            lambda s: str(s.dropna().iloc[0]) if s.notna().any() else ""),
        "active": grouped["active"].any(),
    })
    blocks.index = blocks.index.astype(int)
    active_names = set(blocks.stimulus_name[blocks.active])
    kind = np.where(blocks.active, "active", np.where(
        blocks.stimulus_name == "spontaneous", "spontaneous",
        np.where(blocks.stimulus_name.isin(active_names), "passive", "other")))
    blocks["kind"] = kind
    return blocks.sort_values("start")


def resolve_epochs(blocks: pd.DataFrame, specs: Sequence[Mapping[str, Any]], *,
                   session_id: str, t_end: float) -> pd.DataFrame:
    """Epoch windows for the requested specs.

    Parameters
    ----------
    blocks
        Output of :func:`stimulus_blocks`.
    specs
        Output of :func:`parse_epoch_specs`.
    session_id
        Named in error messages.
    t_end
        End of the recording (s); windows must lie in ``[0, t_end]``.

    Returns
    -------
    pandas.DataFrame
        Columns name (str), start, stop (float s), block (int, -1 for windows), sorted by start.
        A kind matching several blocks gives one epoch per block named ``<kind>-<block>``.

    Raises
    ------
    ValueError
        An epoch absent from the session (the message lists the blocks there), duplicated names.
    """
    avail = "; ".join(f"block {b}: {r.kind} ({r.stimulus_name}, {r.start:.1f}-{r.stop:.1f} s)"
                      for b, r in blocks.iterrows())
    rows = []
    for spec in specs:
        if "kind" in spec:
            sel = blocks[blocks.kind == spec["kind"]]
            if sel.empty:
                raise ValueError(f"session {session_id!r} has no {spec['kind']!r} epoch "
                                 f"(stimulus blocks: {avail}); choose epochs among those "
                                 "(vbn.epochs or the row's epochs=...)")
            for b, r in sel.iterrows():
                name = spec["kind"] if len(sel) == 1 else f"{spec['kind']}-{b}"
                rows.append((name, r.start, r.stop, int(b)))
        elif "block" in spec:
            if spec["block"] not in blocks.index:
                raise ValueError(f"session {session_id!r} has no stimulus block "
                                 f"{spec['block']} (stimulus blocks: {avail})")
            r = blocks.loc[spec["block"]]
            rows.append((spec["name"], r.start, r.stop, int(spec["block"])))
        else:
            if spec["start_s"] < 0 or spec["stop_s"] > t_end:
                raise ValueError(f"session {session_id!r}: epoch window {spec['name']!r} "
                                 f"[{spec['start_s']}, {spec['stop_s']}) s is outside the "
                                 f"recording [0, {t_end:.3f}] s; fix start_s/stop_s")
            rows.append((spec["name"], spec["start_s"], spec["stop_s"], -1))
    out = pd.DataFrame(rows, columns=["name", "start", "stop", "block"])
    dup = out.name[out.name.duplicated()].tolist()
    if dup:
        raise ValueError(f"session {session_id!r}: duplicated epoch names {dup}; give each "
                         "epoch a distinct name")
    return out.sort_values("start", kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------- dataset


def spikes_dataset(spike_times: Mapping[int, np.ndarray], units: pd.DataFrame,
                   epochs: pd.DataFrame, *, session_id: str, ecephys_session_id: int):
    """Build the ``spikes.nc`` dataset (contract in docs/data-model.md) from selected units.

    Only spikes inside an epoch ``[start, stop)`` are kept.

    Parameters
    ----------
    spike_times
        Unit id -> spike times (s).
    units
        Selected units (index unit id) with ``area`` and metric columns, in output order.
    epochs
        Output of :func:`resolve_epochs`.
    session_id, ecephys_session_id
        Stored as attributes.

    Returns
    -------
    xarray.Dataset
        dims spike, unit, epoch.
    """
    import xarray as xr

    starts, stops = epochs.start.to_numpy(float), epochs.stop.to_numpy(float)
    times, idx = [], []
    for k, uid in enumerate(units.index):
        if uid not in spike_times:
            raise VBNError(f"session {session_id!r}: unit {uid} has no spike_times entry")
        t = np.asarray(spike_times[uid], dtype=np.float64)
        keep = np.zeros(t.shape, dtype=bool)
        for a, b in zip(starts, stops, strict=True):
            keep |= (t >= a) & (t < b)
        times.append(t[keep])
        idx.append(np.full(int(keep.sum()), k, dtype=np.int32))
    t_all = np.concatenate(times) if times else np.zeros(0)
    u_all = np.concatenate(idx) if idx else np.zeros(0, dtype=np.int32)
    order = np.argsort(t_all, kind="stable")

    def metric(col: str) -> np.ndarray:
        if col not in units.columns:
            return np.full(len(units), np.nan)
        return pd.to_numeric(units[col], errors="coerce").to_numpy(dtype=np.float64)

    ds = xr.Dataset(
        {
            "spike_time": ("spike", t_all[order], {"units": "s"}),
            "spike_unit": ("spike", u_all[order].astype(np.int32),
                           {"description": "index into the unit dimension"}),
            "epoch_start": ("epoch", starts, {"units": "s"}),
            "epoch_stop": ("epoch", stops, {"units": "s"}),
            "epoch_block": ("epoch", epochs.block.to_numpy(np.int64),
                            {"description": "VBN stimulus_block (-1: explicit window)"}),
            "isi_violations": ("unit", metric("isi_violations"), {"units": "1"}),
            "amplitude_cutoff": ("unit", metric("amplitude_cutoff"), {"units": "1"}),
            "presence_ratio": ("unit", metric("presence_ratio"), {"units": "1"}),
            "firing_rate": ("unit", metric("firing_rate"),
                            {"units": "Hz", "description": "whole-session rate from allensdk"}),
        },
        coords={
            "unit_id": ("unit", units.index.to_numpy(np.int64)),
            "area": ("unit", np.array([str(a) for a in units["area"]], dtype=object)),
            "epoch_name": ("epoch", np.array([str(n) for n in epochs.name], dtype=object)),
        },
        attrs={"session_id": session_id, "source": "vbn",
               "ecephys_session_id": int(ecephys_session_id)},
    )
    return ds


# ----------------------------------------------------------------------------- allensdk access


def open_cache(cache_dir: str, *, mode: str = "s3"):
    """Open the VBN project cache (``from_s3_cache`` or ``from_local_cache``).

    Raises
    ------
    VBNError
        allensdk missing, S3 unreachable (no network) or no local cache; the message says how
        to fix it.
    """
    if mode not in CACHE_MODES:
        raise ValueError(f"cache mode {mode!r} is not one of {list(CACHE_MODES)}")
    try:
        from allensdk.brain_observatory.behavior.behavior_project_cache import (
            VisualBehaviorNeuropixelsProjectCache,
        )
    except ImportError as err:
        raise VBNError(f"allensdk is not importable in {sys.executable} ({err}); "
                       f"{SETUP_HINT} and set vbn.python to its python") from None
    t0 = time.monotonic()
    try:
        if mode == "s3":
            return VisualBehaviorNeuropixelsProjectCache.from_s3_cache(cache_dir=cache_dir)
        return VisualBehaviorNeuropixelsProjectCache.from_local_cache(cache_dir=cache_dir)
    except Exception as err:  # noqa: BLE001  (botocore, OSError, ... : all mean "no cache")
        if mode == "s3":
            raise VBNError(
                f"could not open the VBN S3 cache in {cache_dir!r} after "
                f"{time.monotonic() - t0:.1f} s ({type(err).__name__}: {err}). Check the "
                "network connection to the Allen Institute's public S3 bucket, or, with a "
                "complete cache already on disk, set vbn.cache_mode: local") from err
        raise VBNError(
            f"could not open a local VBN cache in {cache_dir!r} ({type(err).__name__}: {err}). "
            "Point vbn.cache_dir at a folder previously filled by from_s3_cache, or set "
            "vbn.cache_mode: s3 to download") from err


def session_table(cache, *, filter_abnormalities: bool) -> pd.DataFrame:
    """The cache's ecephys session table (index ``ecephys_session_id``), optionally without the
    sessions flagged for abnormal histology or activity."""
    try:
        return cache.get_ecephys_session_table(filter_abnormalities=filter_abnormalities)
    except TypeError:  # older signature
        return cache.get_ecephys_session_table()


def load_session(cache, ecephys_session_id: int, *, session_id: str):
    """``cache.get_ecephys_session(id)`` after checking the id is in the session table."""
    table = session_table(cache, filter_abnormalities=False)
    if int(ecephys_session_id) not in set(table.index.astype("int64")):
        some = ", ".join(str(i) for i in table.index[:5])
        raise VBNError(f"session {session_id!r}: ecephys_session_id {ecephys_session_id} is not "
                       f"in the VBN session table ({len(table)} sessions, e.g. {some}); fix "
                       f"ecephys_session_id in the sessions sheet; {LIST_HINT}")
    try:
        return cache.get_ecephys_session(int(ecephys_session_id))
    except Exception as err:  # noqa: BLE001
        raise VBNError(f"session {session_id!r}: loading ecephys session {ecephys_session_id} "
                       f"failed ({type(err).__name__}: {err}); with vbn.cache_mode: s3 check the "
                       "network and free disk space in vbn.cache_dir") from err


def extract_session(session, *, session_id: str, ecephys_session_id: int,
                    epochs: Sequence[Mapping[str, Any]], areas: Sequence[str] | None = None,
                    quality: str | None = "good", isi_violations_max: float | None = 0.5,
                    amplitude_cutoff_max: float | None = 0.1,
                    presence_ratio_min: float | None = 0.95):
    """Select units and epochs of a loaded ``BehaviorEcephysSession``; return spikes.nc data.

    Parameters
    ----------
    session
        ``cache.get_ecephys_session(id)``.
    session_id, ecephys_session_id
        Sheet id and VBN id.
    epochs
        Epoch specs (:func:`parse_epoch_specs`).
    areas, quality, isi_violations_max, amplitude_cutoff_max, presence_ratio_min
        Unit filters (:func:`unit_filter_mask`).

    Returns
    -------
    xarray.Dataset
        The spikes dataset (:func:`spikes_dataset`), attrs n_units_total, n_units_selected.
    """
    blocks = stimulus_blocks(session.stimulus_presentations)
    spike_times = session.spike_times
    last_spike = max((float(np.max(t)) for t in spike_times.values() if len(t)), default=0.0)
    t_end = max(float(blocks.stop.max()) if len(blocks) else 0.0, last_spike)
    ep = resolve_epochs(blocks, epochs, session_id=session_id, t_end=t_end)
    units = session.get_units(filter_by_validity=False, filter_out_of_brain_units=False)
    units = units.copy()
    units["area"] = unit_areas(units, session.get_channels())
    sel = select_units(units, session_id=session_id, quality=quality,
                       isi_violations_max=isi_violations_max,
                       amplitude_cutoff_max=amplitude_cutoff_max,
                       presence_ratio_min=presence_ratio_min, areas=areas)
    log.info("session %s: %d of %d units pass; areas %s; epochs %s", session_id, len(sel),
             len(units), sel["area"].value_counts().to_dict(),
             ep[["name", "start", "stop"]].to_dict("records"))
    ds = spikes_dataset(spike_times, sel, ep, session_id=session_id,
                        ecephys_session_id=ecephys_session_id)
    ds.attrs.update(n_units_total=int(len(units)), n_units_selected=int(len(sel)))
    return ds


# ----------------------------------------------------------------------------- session listing


def candidate_sessions(session_table: pd.DataFrame, unit_table: pd.DataFrame,
                       channel_table: pd.DataFrame | None = None, *,
                       quality: str | None = "good", isi_violations_max: float | None = 0.5,
                       amplitude_cutoff_max: float | None = 0.1,
                       presence_ratio_min: float | None = 0.95,
                       areas: Sequence[str] | None = None, min_units: int = 1) -> pd.DataFrame:
    """Sessions with at least ``min_units`` units passing the filters, from the cache tables.

    Parameters
    ----------
    session_table
        ``cache.get_ecephys_session_table()`` (index ecephys_session_id).
    unit_table
        ``cache.get_unit_table()`` (index unit_id; columns ecephys_session_id, the metrics and
        either ``structure_acronym`` or ``ecephys_channel_id``).
    channel_table
        ``cache.get_channel_table()``, used when ``unit_table`` has no ``structure_acronym``.
    quality, isi_violations_max, amplitude_cutoff_max, presence_ratio_min, areas
        Unit filters (:func:`unit_filter_mask`).
    min_units
        Keep sessions with at least this many passing units.

    Returns
    -------
    pandas.DataFrame
        Index ecephys_session_id; columns n_units (int), areas (``"VISp:120,VISl:80"``,
        most units first), sorted by n_units descending.
    """
    units = unit_table.copy()
    if "structure_acronym" in units.columns:
        a = units["structure_acronym"]
        units["area"] = a.where(a.notna(), UNKNOWN_AREA).astype(str)
    else:
        if channel_table is None:
            raise ValueError("unit table has no structure_acronym column: pass the channel table")
        units["area"] = unit_areas(units, channel_table, channel_column="ecephys_channel_id")
    mask, _ = unit_filter_mask(units, quality=quality, isi_violations_max=isi_violations_max,
                               amplitude_cutoff_max=amplitude_cutoff_max,
                               presence_ratio_min=presence_ratio_min, areas=areas)
    good = units[mask & units["ecephys_session_id"].isin(session_table.index).to_numpy()]
    rows = []
    for sid, grp in good.groupby("ecephys_session_id"):
        counts = grp["area"].value_counts()
        counts = counts.sort_index().sort_values(ascending=False, kind="stable")
        rows.append((int(sid), len(grp), ",".join(f"{k}:{v}" for k, v in counts.items())))
    out = pd.DataFrame(rows, columns=["ecephys_session_id", "n_units", "areas"])
    out = out[out.n_units >= int(min_units)]
    out = out.sort_values(["n_units", "ecephys_session_id"], ascending=[False, True])
    return out.set_index("ecephys_session_id")


def session_rows_tsv(candidates: pd.DataFrame, *, prefix: str = "vbn-",
                     extra_params: str = "") -> str:
    """Sessions-sheet text (header + one ``vbn`` row per candidate, each after a # comment)."""
    lines = ["session_id\tsource\tparams"]
    for sid, row in candidates.iterrows():
        params = f"ecephys_session_id={int(sid)}" + (f";{extra_params}" if extra_params else "")
        lines.append(f"# {int(sid)}: {int(row.n_units)} units pass the filters; {row.areas}")
        lines.append(f"{prefix}{int(sid)}\tvbn\t{params}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # `python -m spikerbm.vbn ...`: the command line of spikerbm.vbn_cli
    from spikerbm.vbn_cli import main

    sys.exit(main())
