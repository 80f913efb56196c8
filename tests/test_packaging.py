"""Packaging metadata: dependency floors (what `make test-floors` installs), LICENSE, CITATION.cff.

The floors themselves are exercised by `make test-floors` (the unit tests in a venv holding every
direct dependency at its floor); these tests check the files that job and users read.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _floors(*extras: str) -> dict[str, str]:
    proc = subprocess.run([sys.executable, str(REPO / ".ci" / "floors.py"), *extras],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {line.split("==")[0]: line.split("==")[1].split("#")[0].strip()
            for line in proc.stdout.splitlines()}


def test_floors_pin_every_direct_dependency_at_its_declared_floor():
    floors = _floors("workflow", "test")
    declared = [Requirement(r) for r in [*PROJECT["dependencies"],
                                        *PROJECT["optional-dependencies"]["workflow"],
                                        *PROJECT["optional-dependencies"]["test"]]]
    assert list(floors) == [r.name for r in declared]
    pins = {canonicalize_name(name): version for name, version in (
        line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#"))}
    for req in declared:
        pin = pins[canonicalize_name(req.name)]
        if req.name == "torch":  # the only CPU build offline: its constraints.txt pin
            assert floors["torch"] == pin
            continue
        (low,) = [s.version for s in req.specifier if s.operator == ">="]
        assert floors[req.name] == low
        assert req.specifier.contains(pin), (req, pin)  # the tested pin is within the range
    # the floors the code needs (docs/benchmarks.md, "Dependency floors")
    assert Version(floors["numpy"]) >= Version("2.0")  # np.bitwise_count
    assert Version(floors["xarray"]) >= Version("2024.7")  # Dataset.drop_attrs
    bad = subprocess.run([sys.executable, str(REPO / ".ci" / "floors.py"), "nosuchextra"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "nosuchextra" in bad.stderr


def test_license_and_citation_match_the_package():
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    assert cff["version"] == PROJECT["version"]
    paper = cff["preferred-citation"]
    assert [a["family-names"] for a in paper["authors"]] == [
        "Béreux", "Catania", "Decelle", "Mignacco", "Navas Gómez", "Seoane"]
    assert paper["year"] == 2026
    assert any(i["value"] == "arXiv:2603.11032" for i in paper["identifiers"])
    title = (REPO / "README.md").read_text().split("*", 2)[1]  # the paper's title, italic
    assert re.sub(r"\s+", " ", paper["title"]).strip() == re.sub(r"\s+", " ", title)
