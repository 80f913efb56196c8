"""Determinism and network isolation of the default workflow (issue 11, items 4 and 6).

Two complete runs of the DEFAULT workflow (config/config.yaml and config/sessions.tsv as
shipped, with ``device: cpu`` so a GPU machine also tests the CPU path): the session's shared
default run (conftest ``default_run``, also the SLURM test's reference) and one run here with
networking blocked: in a new network namespace (``unshare -n``: no interface but a downed
loopback) where the kernel allows it, and under a socket guard (``sitecustomize`` on
PYTHONPATH, inherited by every script job) that records and refuses any connection or name
lookup to a non-local address. Every netCDF file of the two runs must have
identical numeric contents (all variables and coordinates, bitwise; attributes equal except
``created_utc``). A changed seed must change every netCDF file: checked at the tiny scale (the
seed reaches every stage through the same ``derive_seed`` calls whatever the scale, and a
third default-scale run would cost ~1.5 min more). The paths the default run wrote must all
follow the path grammar built from validated values only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import CPU_GPU_SLOTS, REPO, SNAKEMAKE, copy_workflow, snakemake

pytestmark = [pytest.mark.reliability, pytest.mark.workflow]

GUARD = '''\
"""Test-only network guard: refuse and record connections / lookups to non-local hosts."""
import ipaddress
import os
import socket
import sys

_LOG = os.environ["SPIKERBM_NETGUARD_LOG"]
_LOCAL = ("localhost", "127.0.0.1", "::1", "", None)


def _note(text):
    with open(_LOG, "a") as fh:
        fh.write(f"{text} pid={os.getpid()} argv0={sys.argv[0] if sys.argv else ''}\\n")


def _local(family, address):
    if family == getattr(socket, "AF_UNIX", None) or not isinstance(address, tuple):
        return True
    return str(address[0]) in _LOCAL or str(address[0]).startswith("127.")


def _guard(name):
    original = getattr(socket.socket, name)

    def method(self, address, *args):
        if not _local(self.family, address if name != "sendto" else args[-1]):
            _note(f"BLOCKED {name} {address!r}")
            raise OSError(101, f"network access blocked by the spikerbm test guard: {address!r}")
        return original(self, address, *args)

    setattr(socket.socket, name, method)


for _name in ("connect", "connect_ex", "sendto"):
    _guard(_name)
_getaddrinfo = socket.getaddrinfo


def _literal(host):
    try:
        ipaddress.ip_address(str(host))
        return True
    except ValueError:
        return False


def _lookup(host, *args, **kwargs):
    if host not in _LOCAL and not _literal(host):  # an IP literal is no lookup: connect decides
        _note(f"BLOCKED getaddrinfo {host!r}")
        raise socket.gaierror(-3, f"name lookup blocked by the spikerbm test guard: {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _lookup
_note("loaded")
'''


def _guard_env(tmp: Path) -> dict[str, str]:
    guard = tmp / "netguard"
    guard.mkdir(parents=True, exist_ok=True)
    (guard / "sitecustomize.py").write_text(GUARD)
    path = [str(guard), *filter(None, [os.environ.get("PYTHONPATH")])]
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join(path), SPIKERBM_NETGUARD_LOG=str(tmp / "net.log"))


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """The default workflow (CPU) run with the network blocked."""
    tmp = tmp_path_factory.mktemp("offline")
    wf = copy_workflow(tmp / "wf", {"device": "cpu"}, tiny=False)
    cmd = [SNAKEMAKE, "--cores", "2", *CPU_GPU_SLOTS]
    if _unshare_works():
        cmd = ["unshare", "-n", *cmd]
    proc = subprocess.run(cmd, cwd=wf, env=_guard_env(tmp), text=True, capture_output=True,
                          timeout=1800)
    return {"wf": wf, "log": tmp / "net.log", "cmd": cmd, "returncode": proc.returncode,
            "stdout": proc.stdout, "stderr": proc.stderr}


def _netcdfs(wf: Path) -> list[Path]:
    return sorted(p.relative_to(wf) for p in (wf / "results").rglob("*.nc"))


def test_default_workflow_runs_with_network_blocked(offline_run):
    run = offline_run
    assert run["returncode"] == 0, run["stderr"][-4000:]
    notes = run["log"].read_text().splitlines()
    assert not [n for n in notes if n.startswith("BLOCKED")], notes
    # the guard was active in snakemake and in every script job of the run
    stats = (run["stdout"] + run["stderr"]).split("Job stats:")[1].split("\n\n")[0]
    jobs = re.findall(r"^\s*(\w+)\s+(\d+)\s*$", stats, re.M)
    n_script_jobs = sum(int(c) for rule, c in jobs if rule not in ("all", "total"))
    loaded = [n for n in notes if n.startswith("loaded")]
    assert n_script_jobs >= 10 and len(loaded) >= n_script_jobs + 1, notes
    if run["cmd"][0] != "unshare":
        pytest.skip("unshare -n unavailable here: only the socket guard blocked the network")


def test_network_guard_and_namespace_refuse_connections(tmp_path):
    """The checks above can fail: both mechanisms really stop a connection attempt."""
    probe = ("import socket; socket.create_connection(('192.0.2.1', 80), timeout=2)")
    proc = subprocess.run([sys.executable, "-c", probe], env=_guard_env(tmp_path),
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked by the spikerbm test guard" in proc.stderr
    assert "BLOCKED connect ('192.0.2.1', 80)" in (tmp_path / "net.log").read_text()
    lookup = "import socket; socket.getaddrinfo('example.org', 443)"
    proc = subprocess.run([sys.executable, "-c", lookup], env=_guard_env(tmp_path),
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "BLOCKED getaddrinfo 'example.org'" in (
        tmp_path / "net.log").read_text()
    if _unshare_works():
        proc = subprocess.run(["unshare", "-n", sys.executable, "-c", probe],
                              capture_output=True, text=True)
        assert proc.returncode != 0 and "unreachable" in proc.stderr.lower(), proc.stderr


def _differences(a: xr.Dataset, b: xr.Dataset) -> list[str]:
    out = []
    if sorted(a.variables) != sorted(b.variables):
        return [f"variables {sorted(a.variables)} != {sorted(b.variables)}"]
    for name in a.variables:
        x, y = a[name], b[name]
        if x.dims != y.dims or x.dtype != y.dtype:
            out.append(f"{name}: {x.dims} {x.dtype} != {y.dims} {y.dtype}")
        elif x.dtype.kind in "fc":
            if not np.array_equal(x.values, y.values, equal_nan=True):
                out.append(name)
        elif not np.array_equal(x.values, y.values):
            out.append(name)
    out += [f"attr {k}" for k in sorted(set(a.attrs) | set(b.attrs))
            if k != "created_utc" and not _same(a.attrs.get(k), b.attrs.get(k))]
    return out


def _same(x, y) -> bool:
    """Equal attribute values (NaN equals NaN; arrays elementwise)."""
    try:
        return bool(np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True))
    except TypeError:  # strings / objects: no NaN
        return bool(np.array_equal(np.asarray(x), np.asarray(y)))


def test_two_default_runs_are_bitwise_identical(offline_run, default_run):
    assert offline_run["returncode"] == 0, offline_run["stderr"][-4000:]
    one, two = offline_run["wf"], default_run
    files = _netcdfs(one)
    assert files == _netcdfs(two)
    assert len(files) >= 12, files  # spikes, truth, raster, 2 x (model, loglik), ... per session
    for rel in files:
        with xr.open_dataset(one / rel) as a, xr.open_dataset(two / rel) as b:
            assert _differences(a.load(), b.load()) == [], rel
    for tsv in (one / "results").rglob("summary.tsv"):
        assert tsv.read_bytes() == (two / tsv.relative_to(one)).read_bytes()


def test_changed_seed_changes_every_netcdf(tiny_base_run, tmp_path):
    cfg = yaml.safe_load((tiny_base_run / "config/config.yaml").read_text())
    wf = copy_workflow(tmp_path / "wf", {"seed": cfg["seed"] + 1},
                       sessions=(tiny_base_run / "config/sessions.tsv").read_text())
    proc = snakemake(wf, "--cores", "2", *CPU_GPU_SLOTS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = _netcdfs(tiny_base_run)
    assert files == _netcdfs(wf) and len(files) >= 12
    for rel in files:
        with xr.open_dataset(tiny_base_run / rel) as a, xr.open_dataset(wf / rel) as b:
            data = [d for d in _differences(a.load(), b.load()) if not d.startswith("attr")]
        assert data, f"{rel}: no data variable changed with the seed"


def test_result_paths_derive_from_validated_values_only(default_run):
    """Every path written derives from the session ids (pattern-checked at parse time), the
    integer hidden sizes, rule names and fixed file names: nothing else reaches a path."""
    wf = default_run
    cfg = yaml.safe_load((wf / "config/config.yaml").read_text())
    sheet = (wf / "config/sessions.tsv").read_text().splitlines()[1:]
    sessions = [row.split("\t")[0] for row in sheet if row.strip()]
    schema = yaml.safe_load((REPO / "workflow/schemas/sessions.schema.yaml").read_text())
    id_pattern = schema["properties"]["session_id"]["pattern"]
    assert all(re.match(id_pattern, s) for s in sessions)
    ses = "|".join(map(re.escape, sessions))
    hid = "|".join(str(int(n)) for n in cfg["train"]["n_hidden"])
    grammar = re.compile(
        rf"results/(?:(?:{ses})/(?:[a-z_]+\.(?:nc|tsv|html)|hidden~(?:{hid})/[a-z_]+\.nc"
        rf"|figures/fig\d_[a-z_]+\.png)"
        rf"|(?:logs|benchmarks)/[a-z_]+/(?:{ses})(?:/hidden~(?:{hid}))?\.(?:log|tsv)"
        rf"|tables/[a-z_]+\.(?:tsv|html)|atlas/atlas\.nc|figures/[a-z_]+\.png"
        rf"|(?:logs|benchmarks)/(?:report_tables|atlas|fig_atlas|compare_models)/all\.(?:log|tsv))")
    paths = [p.relative_to(wf).as_posix() for p in (wf / "results").rglob("*") if p.is_file()]
    assert len(paths) > 40
    stray = [p for p in paths if not grammar.fullmatch(p)]
    assert not stray, stray
    # the same holds by construction: every output/log/benchmark path of the rules is built by
    # results() in common.smk, under the run's results_dir (a schema-checked folder path), and
    # every wildcard in them is {session} or {n_hidden}, both constrained in common.smk
    rules = "\n".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk"))
    assert not re.findall(r'"results/', rules)  # no path that bypasses the namespace
    templates = set(re.findall(r'results\(f?"([^"]*)"\)', rules))
    assert len(templates) > 40, templates
    names = {w for path in templates for w in re.findall(r"{(\w+)}", path)}
    # ({table} and {name} only occur in expand() templates filled from fixed lists in
    # common.smk: TABLE_NAMES and the four per-session artifacts of the report tables)
    assert names - {"table", "name"} == {"session", "n_hidden"}, names
    common_src = (REPO / "workflow/rules/common.smk").read_text()
    assert re.search(r"TABLE_NAMES = \[\s*\n(\s*\"[a-z_]+\",\s*\n)+\s*\]", common_src)
    assert 'for name in ("selected", "statistics", "couplings", "dynamics")' in common_src
    common = (REPO / "workflow/rules/common.smk").read_text()
    assert 'RESULTS_DIR = config["results_dir"]' in common
    assert re.search(r"wildcard_constraints:\s*\n\s*session=.*\n\s*n_hidden=r\"\[1-9\]\[0-9\]\*\"",
                     common)
    # the sheet is checked with the same pattern by spikerbm.sessions (read by common.smk)
    assert "read_sessions(" in common
    from spikerbm.sessions import SESSION_ID

    assert SESSION_ID.pattern == id_pattern
