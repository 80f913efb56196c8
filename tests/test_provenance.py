"""Provenance attributes: the device a job ran on and the versions it ran with."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import spikerbm
from spikerbm.provenance import device_name, provenance_attrs

PROBE = """
import json, sys
from spikerbm.provenance import environment_attrs
before = environment_attrs()
loaded = "torch" in sys.modules
import torch
torch.zeros(3)
print(json.dumps({"before": before, "loaded_before": loaded, "after": environment_attrs(),
                  "torch": torch.__version__, "cuda": torch.version.cuda}))
"""


def test_environment_attrs_follow_what_the_job_loaded():
    """Without torch loaded (a numpy-only job) the installed torch is named and no CUDA; once
    the job has loaded torch its own version and CUDA build are recorded. Run in a fresh
    interpreter so nothing else has imported torch."""
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["loaded_before"] is False  # environment_attrs itself does not import torch
    # the installed distribution's version (a local build label such as "+cpu" included)
    assert out["before"]["torch_version"] == out["torch"]
    assert out["before"]["cuda_version"] == "none" and out["before"]["device"] == "cpu"
    assert out["after"]["torch_version"] == out["torch"]
    assert out["after"]["cuda_version"] == str(out["cuda"] or "none")
    assert out["after"]["device"] == "cpu"  # CPU tensors only: CUDA was never initialised
    for attrs in (out["before"], out["after"]):
        assert attrs["numpy_version"] == np.__version__
        assert attrs["spikerbm_version"] == spikerbm.__version__


def test_device_name_and_provenance_attrs():
    torch = pytest.importorskip("torch")
    assert device_name(torch.device("cpu")) == device_name("cpu") == "cpu"
    attrs = provenance_attrs(config={"b": 1, "a": [2]}, seed=5, device="cpu", session_id="s")
    assert attrs["config"] == '{"a":[2],"b":1}' and attrs["seed"] == 5
    assert attrs["device"] == "cpu" and attrs["session_id"] == "s"
    assert attrs["torch_version"] == torch.__version__
    assert attrs["numpy_version"] == np.__version__
    assert {"git_commit", "created_utc", "cuda_version", "spikerbm_version"} <= set(attrs)
    if torch.cuda.is_available():  # the GPU's own name, e.g. "cuda:0 (NVIDIA H200)"
        name = device_name("cuda")
        assert name.startswith("cuda:") and torch.cuda.get_device_name() in name
        assert provenance_attrs(device=torch.device("cuda"))["device"] == name
