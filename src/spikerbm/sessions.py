"""The sessions sheet (``config/sessions.tsv``) and the messages of bad configuration.

Torch-free: the workflow calls these functions while it builds the DAG (``common.smk``), so a bad
sheet, an out-of-range synthetic parameter or a config typo stops ``snakemake -n`` with one line
a newcomer can act on, before any job runs.

The sheet (docs/data-model.md, "Sessions sheet"):

- tab-separated; the first line that is not a comment is the header, with the columns
  ``session_id``, ``source`` and optionally ``params``; every row has exactly as many columns as
  the header (an empty ``params`` is an empty field, a missing one is an error);
- only whole lines whose first character is ``#`` are comments; blank lines are skipped; a ``#``
  inside a value is data (``path=run#2/raster.nc``);
- ``params`` is ``key=value;key=value`` with each value typed by YAML (``3`` -> int, ``0.5`` ->
  float, ``a,b`` -> text); an empty item (``;;``) is skipped.

Every error names the file, its line number (1-based, as an editor shows it) and the session.
We parse the sheet ourselves (a tab split per line) rather than with ``pandas.read_csv`` because
read_csv's ``comment=`` cuts a value at ``#`` and its messages speak of data-frame rows, not lines.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

#: A session id becomes a folder name: letters, digits, ``_``, ``-``, ``.``; no ``..``.
SESSION_ID = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Columns of the sheet (``params`` may be left out of the header).
COLUMNS = ("session_id", "source", "params")
REQUIRED = ("session_id", "source")


class SheetError(ValueError):
    """A bad sessions sheet: the message names the file, the line, the session and the fix."""

    user_facing = True


def _where(path: Path | str, line: int, session: str | None = None) -> str:
    return f"{path}, line {line}" + (f" (session {session})" if session else "")


def parse_params(text: str, *, where: str = "params") -> dict[str, Any]:
    """``key=value;key=value`` -> dict, each value typed by YAML (``yaml.safe_load``).

    Raises
    ------
    SheetError
        An item that is not ``key=value``, or a key given twice; the message starts with
        ``where``.
    """
    import yaml

    params: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in str(text or "").split(";"))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SheetError(f"{where}: params item {item!r} is not key=value; write params as "
                             "key=value pairs separated by ';'")
        if key in params:
            raise SheetError(f"{where}: params key {key!r} is given twice")
        try:
            params[key] = yaml.safe_load(value.strip())
        except yaml.YAMLError as err:
            raise SheetError(f"{where}: params value {value.strip()!r} of {key!r} cannot be "
                             f"read ({type(err).__name__}); quote it or simplify it") from err
    return params


def read_sessions(path: str | Path, *, sources: Iterable[str] | None = None) -> pd.DataFrame:
    """Read and check the sessions sheet.

    Parameters
    ----------
    path
        The tab-separated sheet (format in the module docstring).
    sources
        The allowed values of ``source`` (default: any).

    Returns
    -------
    pandas.DataFrame
        Index ``session_id`` (in sheet order); columns ``session_id``, ``source``, ``params``
        (a dict per row) and ``line`` (the row's line number in the file, for messages).

    Raises
    ------
    FileNotFoundError
        The sheet does not exist (the message names it).
    SheetError
        One line naming the file, the line number, the session and the fix: spaces instead of
        tabs, a missing or extra column, an unknown or missing header column, a bad session id,
        an unknown source, a bad params item, a duplicated session id, or no session at all.
    """
    path = Path(path)
    if not path.is_file():
        where = "" if path.is_absolute() else f" in the working directory {Path.cwd()}"
        raise FileNotFoundError(f"sessions sheet not found: {path}{where} (config key "
                                "`sessions`; relative paths are resolved against the working "
                                "directory, where results/ goes)")
    header: list[str] | None = None
    records: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}
    allowed = sorted(sources) if sources is not None else None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split("\t")
        if header is None:
            header = [f.strip() for f in fields]
            _check_header(header, path, number)
            continue
        session = fields[0].strip()
        where = _where(path, number, session if SESSION_ID.match(session) else None)
        if len(fields) != len(header):
            raise SheetError(f"{where}: {_column_problem(fields, header)}")
        rec = dict(zip(header, (f.strip() for f in fields), strict=True))
        if not SESSION_ID.match(session):
            raise SheetError(
                f"{where}: session_id {session!r} is not allowed: use letters, digits, '_', "
                "'-' and '.', start with a letter or digit, and no '..' (no '/', whitespace or "
                "shell metacharacters; it becomes a folder name)"
            )
        if session in first_line:
            raise SheetError(f"{where}: session_id {session!r} is already used on line "
                             f"{first_line[session]}; session ids must be unique")
        first_line[session] = number
        if allowed is not None and rec["source"] not in allowed:
            raise SheetError(f"{where}: source {rec['source']!r} is not one of {allowed}"
                             f"{did_you_mean(rec['source'], allowed)}")
        rec["params"] = parse_params(rec.get("params", ""), where=where)
        rec["line"] = number
        records.append(rec)
    if header is None or not records:
        raise SheetError(f"{path} lists no sessions: add a header line "
                         "session_id<TAB>source<TAB>params and one row per session")
    table = pd.DataFrame.from_records(records, columns=["session_id", "source", "params", "line"])
    return table.set_index("session_id", drop=False)


def _check_header(header: list[str], path: Path, number: int) -> None:
    where = _where(path, number)
    if len(header) == 1 and len(header[0].split()) > 1:
        raise SheetError(f"{where}: the header {header[0]!r} is separated by spaces; the sheet "
                         "is tab-separated: write session_id<TAB>source<TAB>params")
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise SheetError(f"{where}: unknown column(s) {unknown} in the header; the columns are "
                         f"{list(COLUMNS)} (params optional){did_you_mean(unknown[0], COLUMNS)}")
    missing = [c for c in REQUIRED if c not in header]
    if missing or len(set(header)) != len(header):
        raise SheetError(f"{where}: the header {header} must name each of {list(REQUIRED)} "
                         "once (and optionally params), separated by tabs")


def _column_problem(fields: list[str], header: list[str]) -> str:
    if len(fields) < len(header) and any(re.search(r"\S\s+\S", f) for f in fields):
        return (f"{len(fields)} column(s) where the header has {len(header)} ({header}): the "
                "columns look separated by spaces; the sheet is tab-separated (put one TAB "
                "between session_id, source and params)")
    if len(fields) < len(header):
        return (f"{len(fields)} column(s) where the header has {len(header)} ({header}): "
                f"column {header[len(fields)]!r} is missing; give every column (an empty "
                "params field is a trailing TAB)")
    return (f"{len(fields)} columns where the header has {len(header)} ({header}): a TAB "
            "inside a value? Separate params items with ';'")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean `x`?"`` for the closest of ``choices`` to ``word`` (difflib), or ``""``
    when none is close: the tail of a one-line error about an unknown name."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f"; did you mean `{close[0]}`?" if close else ""


def row_error(sessions: pd.DataFrame, session: str, message: str,
              path: str | Path | None = None) -> SheetError:
    """A :class:`SheetError` for a problem found later in a row's params (e.g. by a source's
    checks), prefixed with the file, line and session: ``config/sessions.tsv, line 5 (session
    s3): <message>``."""
    line = int(sessions.loc[session, "line"])
    return SheetError(f"{_where(path or 'sessions sheet', line, session)}: {message}")


def check_synthetic_sessions(sessions: pd.DataFrame, defaults: Mapping[str, Any], *,
                             schema: Mapping[str, Any] | None = None,
                             path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """DAG-time check of every ``source: synthetic`` row: the config ``synthetic:`` section
    (``defaults``) merged with the row's params must name known parameters, have the types and
    ranges of ``schema`` (the ``synthetic`` section of config.schema.yaml, plus an integer
    ``seed``) and values :func:`spikerbm.synthetic.generate_session` accepts together
    (:func:`spikerbm.synthetic.check_params`).

    Returns
    -------
    dict
        session id -> merged parameters.

    Raises
    ------
    SheetError
        One line: file, line, session, and the parameter problem with its fix.
    """
    import jsonschema

    from spikerbm.synthetic import SYNTHETIC_PARAMS, check_params

    validator = None
    if schema is not None:
        props = {**schema.get("properties", {}), "seed": {"type": "integer", "minimum": 0}}
        row_schema = {**schema, "properties": props}
        validator = jsonschema.validators.validator_for(row_schema)(row_schema)
    out = {}
    for session, row in sessions[sessions["source"] == "synthetic"].iterrows():
        params = {**defaults, **row["params"]}
        try:
            if validator is not None and set(params) <= set(SYNTHETIC_PARAMS):
                err = jsonschema.exceptions.best_match(validator.iter_errors(params))
                if err is not None:
                    key = ".".join(map(str, err.absolute_path)) or "params"
                    raise ValueError(f"parameter {key!r}: {err.message} (config `synthetic:` "
                                     "section or the row's params)")
            out[session] = check_params(params)
        except ValueError as err:
            raise row_error(sessions, session, str(err), path) from err
    return out


def config_error_message(config: Mapping[str, Any], schema: Mapping[str, Any], *,
                         source: str = "config") -> str | None:
    """One line for the most relevant JSON-schema error of ``config``, or ``None`` if valid.

    An unknown key gives the key, the allowed keys of its section and the closest match
    (``config: unknown key `train.n_udpates`; allowed keys of `train`: ...; did you mean
    `n_updates`?``); any other error gives the key, the problem and the key's description from
    the schema. Validates with the schema's draft (``jsonschema.validators.validator_for``).
    """
    import jsonschema

    validator_cls = jsonschema.validators.validator_for(schema)
    error = jsonschema.exceptions.best_match(validator_cls(schema).iter_errors(config))
    if error is None:
        return None
    section = ".".join(map(str, error.absolute_path))
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        key = f"{section}.{extra[0]}" if section else str(extra[0])
        where = f"`{section}`" if section else "the top level"
        return (f"{source}: unknown key `{key}`; allowed keys of {where}: "
                f"{', '.join(allowed)}{did_you_mean(extra[0], allowed)}")
    key = section or "(top level)"
    description = " ".join(str(error.schema.get("description", "")).split())
    about = f" ({key}: {description})" if description else ""
    return f"{source}: `{key}`: {error.message}{about}"


# ----------------------------------------------------------------------------- file sources
#: Sources whose rows name a user's file (``path=``), and what that file is.
FILE_SOURCES = {
    "raster": "binarized raster (netCDF)",
    "nwb": "NWB file",
    "spikes": "spikes file (netCDF)",
}


def check_file_sessions(sessions: pd.DataFrame, source: str,
                        defaults: Mapping[str, Any] | None = None, *,
                        schema: Mapping[str, Any] | None = None,
                        path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """DAG-time check of every row of a file source (``raster``, ``nwb``, ``spikes``).

    A row's params are ``path=`` (required: the user's file, relative to the working directory)
    and any key of the source's config section ``defaults`` (``nwb:``, ``spikes:``; none for
    ``raster``), which they override. Unknown or missing keys, values of the wrong type or range
    (``schema``: the section of config.schema.yaml) and, for ``nwb``, filters that are not
    ``<column> <op> <value>`` and epochs of an unknown form are errors here. Whether the file
    exists is checked when a job needs it (:func:`data_file`), so a file missing for one session
    does not stop the others.

    Returns
    -------
    dict
        session id -> merged parameters: ``path`` (as written in the sheet) and the section's
        keys (row values over ``defaults``; nwb ``filters`` as a list).

    Raises
    ------
    SheetError
        One line: file, line, session, the parameter and the fix.
    """
    import jsonschema

    defaults = dict(defaults or {})
    allowed = ["path", *defaults]
    validator = None
    if schema is not None:
        validator = jsonschema.validators.validator_for(schema)(schema)
    out = {}
    for session, row in sessions[sessions["source"] == source].iterrows():
        params = dict(row["params"])
        try:
            unknown = sorted(set(params) - set(allowed))
            if unknown:
                raise ValueError(f"unknown {source} parameter(s) {unknown}; allowed: "
                                 f"{', '.join(allowed)}{did_you_mean(unknown[0], allowed)}")
            if params.get("path") in (None, ""):
                raise ValueError(f"{source}: params need path=FILE, the {FILE_SOURCES[source]} "
                                 "(relative to the working directory, or absolute)")
            merged = {**defaults, **{k: v for k, v in params.items() if k != "path"}}
            if validator is not None:
                err = jsonschema.exceptions.best_match(validator.iter_errors(merged))
                if err is not None:
                    key = ".".join(map(str, err.absolute_path)) or "params"
                    raise ValueError(f"{source}: parameter {key!r}: {err.message} (config "
                                     f"`{source}:` section or the row's params)")
            if source == "nwb":
                merged["filters"] = _check_nwb_values(merged)
            out[session] = {"path": str(params["path"]), **merged}
        except ValueError as err:
            raise row_error(sessions, session, str(err), path) from err
    return out


def _check_nwb_values(params: Mapping[str, Any]) -> list[str]:
    """Check that the filters and epochs of an nwb row parse (the file's columns are checked by
    the job); return the filters as a list (a row may give comma-separated text)."""
    from spikerbm.nwb import filter_list, parse_filter
    from spikerbm.sources import parse_epochs

    filters = filter_list(params.get("filters"))
    for text in filters:
        parse_filter(text)
    parse_epochs(params.get("epochs"))
    return filters


def data_file(sessions: pd.DataFrame, session: str, *, path: str | Path | None = None) -> str:
    """The file of a file-source row (``path=``), checked to exist.

    Relative paths are resolved against the working directory (where ``results/`` goes), like
    every relative path of the config and the sheet; ``~`` is expanded.

    Returns
    -------
    str
        The path (``~`` expanded; relative paths stay relative: jobs run in the working
        directory).

    Raises
    ------
    SheetError
        The file does not exist (or is a folder): names the sheet line, the path as written and
        where it was looked for.
    """
    source = str(sessions.loc[session, "source"])
    value = str(sessions.loc[session, "params"]["path"])
    file = Path(value).expanduser()
    if file.is_file():
        return str(file)
    looked = "" if file.is_absolute() else f" (looked for {Path.cwd() / file}: relative paths "
    looked += "" if file.is_absolute() else "are resolved against the working directory)"
    if file.is_dir():
        hint = ("; a Kilosort/phy output folder? convert it first: python -m spikerbm.sources "
                "phy2spikes FOLDER OUT.nc --area-column brain_area, then path=OUT.nc"
                if source == "spikes" else f"; path= must name the {FILE_SOURCES[source]} itself")
        raise row_error(sessions, session, f"{source}: path={value} is a folder{looked}{hint}",
                        path)
    raise row_error(sessions, session, f"{source}: path={value}: {FILE_SOURCES[source]} not "
                    f"found{looked}; fix the path in the sessions sheet", path)
