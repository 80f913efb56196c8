"""Print a pip constraints file that pins every direct dependency to its declared floor.

    python .ci/floors.py [EXTRA ...] > floors.txt    # e.g. python .ci/floors.py workflow test
    python .ci/floors.py --check installed.txt [EXTRA ...]   # `pip list --format=freeze` output

Reads ``pyproject.toml``: the core ``dependencies`` plus the named optional extras. Each
requirement ``name>=X`` becomes ``name==X`` (the lowest version the package claims to work
with); transitive dependencies are left free, so pip resolves them as a lowest-direct
resolution does. torch is the one exception: the only CPU build within reach offline is the
pinned wheel of ``constraints.txt`` (PyPI's Linux torch wheels are CUDA builds of several GB),
so its ``constraints.txt`` pin is used and the line says so (its floor is argued in
docs/benchmarks.md, "Dependency floors"). A direct dependency without a ``>=`` floor is an
error. ``--check`` fails unless every direct dependency is installed at exactly that version,
and prints the table.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
#: Direct dependencies installed at their constraints.txt pin instead of their floor.
PINNED_NOT_FLOORED = {"torch"}


def floors(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise SystemExit(f"floors.py: unknown extra(s) {unknown}; pyproject.toml has "
                         f"{sorted(optional)}")
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    out = []
    for text in [*project["dependencies"], *(r for e in extras for r in optional[e])]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name in PINNED_NOT_FLOORED:
            out.append(f"{req.name}=={pins[name]}  # pinned, not floored: see .ci/floors.py")
            continue
        low = [s.version for s in req.specifier if s.operator == ">="]
        if len(low) != 1:
            raise SystemExit(f"floors.py: {text!r} in pyproject.toml needs exactly one '>=' floor")
        out.append(f"{req.name}=={low[0]}")
    return out


def check(installed_file: Path, extras: list[str]) -> int:
    """Compare ``pip list --format=freeze`` output with the floors; 0 when all match."""
    installed = {}
    for line in installed_file.read_text().splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            installed[canonicalize_name(name)] = version.strip()
    bad = 0
    for line in floors(extras):
        name, want = line.split("#", 1)[0].strip().split("==")
        got = installed.get(canonicalize_name(name), "missing")
        # a local build label (torch's "+cpu") is the same release
        ok = got != "missing" and Version(Version(got).public) == Version(want)
        bad += not ok
        kind = "pin" if "#" in line else "floor"
        print(f"{name:<18} {kind:<5} {want:<14} installed {got:<16} {'ok' if ok else 'MISMATCH'}")
    return 1 if bad else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--check"]:
        sys.exit(check(Path(args[1]), args[2:]))
    print("\n".join(floors(args)))
