"""Security: no deserialisation that can run code, no code built from data (issue 11, item 6).

The scan covers every file the pipeline runs (src/, scripts/, workflow/ with its Snakefile,
benchmarks/, .ci/). Network isolation and the path grammar are tested on the default run in
test_reliability_determinism.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.reliability

SCANNED = ("src", "scripts", "workflow", "benchmarks", ".ci")
SUFFIXES = {".py", ".smk", ".sh", ""}

#: (name, pattern, why). A call spread over lines is joined first (see _calls).
RULES = [
    ("pickle", re.compile(r"\b(?:c?pickle|dill|shelve|marshal|joblib)\b"),
     "pickle-like formats execute code on load; use netCDF (spikerbm.io)"),
    ("read_pickle", re.compile(r"\.read_pickle\s*\("), "pandas pickle"),
    ("torch.load", re.compile(r"\btorch\.load\s*\((?![^)]*weights_only\s*=\s*True)[^)]*\)"),
     "torch.load without weights_only=True unpickles arbitrary objects"),
    ("np.load pickle", re.compile(r"\b(?:np|numpy)\.load\s*\([^)]*allow_pickle\s*=\s*True"),
     "np.load(allow_pickle=True) unpickles arbitrary objects"),
    ("eval/exec", re.compile(r"(?<![\w.])(?:eval|exec)\s*\("), "code built from data"),
    ("yaml.load", re.compile(r"\byaml\.(?:load|load_all|unsafe_load)\s*\((?![^)]*SafeLoader)"),
     "yaml.load can build arbitrary objects; use yaml.safe_load"),
    ("shell=True", re.compile(r"shell\s*=\s*True"), "a shell string built from data"),
    ("os.system", re.compile(r"\bos\.(?:system|popen)\s*\("), "a shell string built from data"),
]


def _files() -> list[Path]:
    out = []
    for name in SCANNED:
        path = REPO / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        out += [p for p in files if p.suffix in SUFFIXES and "__pycache__" not in p.parts]
    return out


def _calls(text: str) -> str:
    """Text with newlines inside parentheses removed, so a multi-line call is one line."""
    out, depth = [], 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")" and depth > 0
        out.append(" " if ch == "\n" and depth else ch)
    return "".join(out)


def scan(text: str) -> list[str]:
    """Names of the RULES the text violates (comments and docstrings are skipped)."""
    found = []
    for line in _calls(text).splitlines():
        code = line.split("#", 1)[0]
        stripped = code.strip()
        if not stripped or stripped.startswith(('"', "'")):  # docstring / string-only lines
            continue
        found += [name for name, pattern, _ in RULES if pattern.search(code)]
    return found


def test_scanner_finds_every_kind_of_violation():
    """The scan below can fail: every rule fires on a bad line and stays quiet on a good one."""
    bad = {
        "pickle": "import pickle\n",
        "read_pickle": "df = pd.read_pickle(path)\n",
        "torch.load": "state = torch.load(\n    path,\n    map_location='cpu')\n",
        "np.load pickle": "x = np.load(path, allow_pickle=True)\n",
        "eval/exec": "value = eval(text)\n",
        "yaml.load": "cfg = yaml.load(fh)\n",
        "shell=True": "subprocess.run(cmd, shell=True)\n",
        "os.system": "os.system(cmd)\n",
    }
    assert {name for name, *_ in RULES} == set(bad)
    for name, text in bad.items():
        assert scan(text) == [name], (name, scan(text))
    good = ("state = torch.load(path, weights_only=True)\nx = np.load(path)\n"
            "cfg = yaml.safe_load(fh)\nds = xr.open_dataset(path)  # no pickle here\n"
            "model.eval()\nsubprocess.run(['git', 'status'])\n")
    assert scan(good) == []


def test_pipeline_code_has_no_unsafe_deserialisation_or_eval():
    files = _files()
    assert len(files) > 30 and any(p.name == "training.py" for p in files)
    bad = {str(p.relative_to(REPO)): hits for p in files if (hits := scan(p.read_text()))}
    assert not bad, {k: [(h, next(w for n, _, w in RULES if n == h)) for h in v]
                     for k, v in bad.items()}


def test_only_the_vbn_rule_may_use_the_network():
    """Downloads happen only in vbn_extract (allensdk, in the separate environment): no other
    pipeline code imports a network client."""
    net = re.compile(r"^\s*(?:import|from)\s+(?:requests|urllib|http|socket|boto3|botocore|"
                     r"aiohttp|httpx|ftplib|smtplib)\b", re.M)
    users = sorted(str(p.relative_to(REPO)) for p in _files() if net.search(p.read_text()))
    assert users == [], users
    vbn = (REPO / "src/spikerbm/vbn.py").read_text()
    assert "from_s3_cache" in vbn  # the one place that may download, through allensdk
