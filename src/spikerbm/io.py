"""All disk I/O of spikerbm: netCDF datasets, figures, tables. Writes are atomic."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import xarray as xr

NETCDF_ENGINE = "netcdf4"

#: Appended to errors about files that an earlier workflow stage wrote.
REBUILD_HINT = (" (if the file was damaged after it was written, delete it and rerun "
                "snakemake, which rebuilds it)")


class InputError(ValueError):
    """A bad input file: the message names the file, the problem and the fix.

    Workflow scripts report it as one ERROR line, without a traceback, and exit with status 1
    (:func:`job_logger`). Any exception class with a true ``user_facing`` attribute is reported
    the same way.
    """

    user_facing = True


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A failed or killed writer leaves ``path`` untouched (an old complete file, or nothing).
    Temporary files that killed writers of ``path`` left behind (:func:`stale_temporaries`) are
    removed first, so a rerun of a killed job leaves no partial file (one writer per path at a
    time, as Snakemake guarantees for its outputs).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_temporaries(path):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix if suffix is not None else path.suffix + ".tmp",
        dir=path.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; results are ordinary readable files
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike, *,
                 attrs: dict[str, Any] | None = None) -> Path:
    """Write ``ds`` to ``path`` atomically, adding ``attrs`` (e.g. provenance) to its attributes.

    Parameters
    ----------
    ds
        Dataset to write; boolean variables are stored as uint8.
    path
        Destination ``.nc`` file; parent folders are created.
    attrs
        Extra global attributes (strings or numbers).

    Returns
    -------
    Path
        The written path.
    """
    ds = ds.copy()
    if attrs:
        ds.attrs.update(attrs)
    for name, var in list(ds.variables.items()):
        if var.dtype == bool:
            ds[name] = var.astype("uint8")
    encoding = {
        name: {"zlib": True, "complevel": 1}
        for name, var in ds.data_vars.items()
        if var.dtype.kind in "biuf" and var.size > 1024
    }
    with atomic_path(path, suffix=".nc.tmp") as tmp:
        ds.to_netcdf(tmp, engine=NETCDF_ENGINE, encoding=encoding)
    return Path(path)


def read_netcdf(path: str | os.PathLike, *, raw: bool = False) -> xr.Dataset:
    """Read a whole netCDF file into memory and close it (no pickle, no code execution).

    Parameters
    ----------
    path
        The file.
    raw
        For files written by other tools (user inputs): values as stored, without CF decoding
        of times (``units = "seconds since ..."`` stays numbers, not datetimes), time deltas,
        ``_FillValue``/``missing_value`` masking or ``scale_factor``/``add_offset`` unpacking;
        those attributes stay in each variable's ``attrs`` for the reader to interpret
        (e.g. :func:`spikerbm.binarize.validate_raster`). Strings are still decoded.

    Raises
    ------
    FileNotFoundError
        With the path, when it does not exist.
    InputError
        Naming the path, when it cannot be read (truncated, corrupted, not netCDF).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"netCDF file not found: {path}")
    options = (dict(decode_times=False, decode_timedelta=False, mask_and_scale=False)
               if raw else {})
    try:
        with xr.open_dataset(path, engine=NETCDF_ENGINE, **options) as ds:
            return ds.load()
    except _UNREADABLE as err:
        raise _unreadable(path, err) from err


#: What netCDF/HDF5 readers raise on a truncated, corrupted or foreign file.
_UNREADABLE = (OSError, RuntimeError, ValueError, KeyError, IndexError)


def _unreadable(path: Path, err: Exception) -> InputError:
    return InputError(
        f"{path}: cannot be read as netCDF ({type(err).__name__}: {err}): the file is "
        f"truncated, corrupted or not netCDF ({path.stat().st_size} bytes). Fix: if it is a "
        "workflow output, delete it and rerun snakemake to rebuild it; otherwise replace it "
        "with a complete netCDF file"
    )


@contextlib.contextmanager
def about_input(path: str | os.PathLike, *, rebuild_hint: bool = True) -> Iterator[None]:
    """Turn a ``ValueError`` raised inside the block into an :class:`InputError` naming ``path``.

    Wrap the code that checks or uses the contents of one input file, so its errors say which
    file is at fault. ``rebuild_hint`` appends :data:`REBUILD_HINT` (the file is a workflow
    output); leave it off for user-supplied files.
    """
    try:
        yield
    except InputError:
        raise
    except ValueError as err:
        raise InputError(f"{path}: {err}{REBUILD_HINT if rebuild_hint else ''}") from err


def read_checked(path: str | os.PathLike, check: Callable[..., Any] | None = None, *,
                 rebuild_hint: bool = True, raw: bool = False,
                 **check_kwargs: Any) -> xr.Dataset:
    """Read a netCDF input and validate it; every problem is an :class:`InputError` naming it.

    Parameters
    ----------
    path
        The input file.
    check
        Validation function called as ``check(ds, **check_kwargs)``; raises ``ValueError``
        saying what is wrong and how to fix it (e.g. :func:`spikerbm.binarize.check_raster`).
    rebuild_hint
        The file is a workflow output (adds :data:`REBUILD_HINT` to the message).
    raw
        Read values as stored (:func:`read_netcdf`); for files other tools wrote.
    """
    ds = read_netcdf(path, raw=raw)
    if check is not None:
        with about_input(path, rebuild_hint=rebuild_hint):
            check(ds, **check_kwargs)
    return ds


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 150,
                attrs: Mapping[str, Any] | None = None) -> Path:
    """Save a matplotlib figure atomically (with provenance in its metadata) and close it.

    Parameters
    ----------
    fig
        The figure.
    path
        Destination; the format follows the suffix (``.png``, ``.pdf``, ``.svg``).
    dpi
        Resolution of raster formats.
    attrs
        Attributes of the artifact the figure shows; its provenance attributes (``config``,
        ``seed``, ``session_id``, ``git_commit``, ``spikerbm_version``) are embedded as text
        metadata, so a figure file names the data and code it came from.
    """
    import matplotlib.pyplot as plt

    from spikerbm import __version__
    from spikerbm.provenance import canonical_json, git_commit

    path = Path(path)
    keep = ("session_id", "seed", "config", "git_commit", "spikerbm_version", "created_utc")
    source = {k: attrs[k] for k in keep if attrs and k in attrs}
    fmt = path.suffix.lstrip(".").lower()
    metadata = None
    if fmt in ("png", "pdf", "svg"):
        metadata = {"Creator" if fmt == "svg" else "Software": f"spikerbm {__version__}"}
        key = {"png": "Description", "pdf": "Subject", "svg": "Description"}[fmt]
        metadata[key] = canonical_json({"figure_git_commit": git_commit(), "data": source})
    with atomic_path(path, suffix=".tmp" + path.suffix) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=fmt, metadata=metadata)
    plt.close(fig)
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def file_exists(path: str | os.PathLike) -> bool:
    """Whether ``path`` exists (a file or folder)."""
    return Path(path).exists()


def remove_file(path: str | os.PathLike) -> None:
    """Delete a file; a missing file is not an error."""
    Path(path).unlink(missing_ok=True)


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporary files that :func:`atomic_path` writers of ``path`` left behind when killed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    prefix = f".{path.name}."
    return sorted(p for p in path.parent.glob(f"{prefix}*") if ".tmp" in p.name[len(prefix) - 1:])


def job_logger(log_path: str | os.PathLike, name: str) -> logging.Logger:
    """Configure logging for one workflow job and return its logger.

    Every record at INFO and above goes to the job's log file (``log:`` of the rule); warnings
    and errors also go to stderr, so problems (a model below the independent-site floor,
    samples that failed the equilibrium check) are loud on the console too.

    It also installs a ``sys.excepthook`` that logs the job's uncaught exception (the process
    then exits with status 1): a user-facing error (:class:`InputError`, training divergence:
    a ``user_facing`` class attribute) as ONE error line that names the file or value, the
    problem and the fix, anything else (a bug) with its full traceback.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    logging.basicConfig(level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[logging.FileHandler(log_path), console])
    logger = logging.getLogger(f"spikerbm.{name}")

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        if getattr(exc, "user_facing", False):
            logger.error("%s failed: %s", name, exc)
        else:
            logger.error("%s failed with an unexpected error", name,
                         exc_info=(exc_type, exc, tb))
        logging.shutdown()

    sys.excepthook = excepthook
    return logger


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The global attributes of a netCDF file, without loading its variables.

    Raises
    ------
    FileNotFoundError
        With the path, when it does not exist.
    InputError
        Naming the path, when it cannot be read (as :func:`read_netcdf`).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"netCDF file not found: {path}")
    try:
        with xr.open_dataset(path, engine=NETCDF_ENGINE) as ds:
            return dict(ds.attrs)
    except _UNREADABLE as err:
        raise _unreadable(path, err) from err
