"""VBN source (spikerbm.vbn): option parsing, unit/epoch selection, and the REAL allensdk path.

Two layers:
- pure functions of spikerbm.vbn, run in the main environment on hand-built tables with known
  answers (filter boundaries, block kinds, epoch windows, spike clipping);
- the real allensdk 2.16.2 code in the vbn environment (.venv-vbn) on a tiny fake cache written
  by allensdk's own NWB writers (tests/vbn/fake_cache.py): extraction through
  ``from_local_cache``, error paths, session listing, and an end-to-end snakemake run through
  binarization. These skip when .venv-vbn is absent, but FAIL when CI=true (CI builds it with
  ``bash scripts/setup_vbn_env.sh``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, snakemake

from spikerbm import vbn, vbn_cli
from spikerbm.io import read_netcdf

VBN_PY = REPO / ".venv-vbn" / "bin" / "python"
FULL, BAD = 1000001, 1000002  # fake sessions (see tests/vbn/fake_cache.py)
FULL_PASSING = [300000100 + k for k in range(5)]  # units built to pass every default filter


def require_vbn_env() -> None:
    if VBN_PY.exists():
        return
    msg = (f"{VBN_PY} is missing: build the vbn environment with `bash scripts/setup_vbn_env.sh`")
    if os.environ.get("CI") == "true":
        pytest.fail(msg + " (CI must build it before the tests)")
    pytest.skip(msg)


def run_vbn(*args: str, timeout: float = 120, env: dict | None = None):
    return subprocess.run([str(VBN_PY), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **(env or {})))


# ============================================================ pure functions (main environment)


def test_resolve_options_merges_row_over_config_and_parses_lists():
    cfg = {"cache_dir": "c", "cache_mode": "local", "filters": {"isi_violations_max": 0.3},
           "areas": None, "epochs": ["active"]}
    row = {"ecephys_session_id": 123, "areas": "VISp,VISl", "epochs": "passive,spontaneous",
           "presence_ratio_min": 0.9}
    opts = vbn.resolve_options(cfg, row, session_id="s1")
    assert opts["ecephys_session_id"] == 123 and opts["cache_mode"] == "local"
    assert opts["areas"] == ["VISp", "VISl"]
    assert opts["epochs"] == [{"kind": "passive"}, {"kind": "spontaneous"}]
    assert opts["filters"] == {"quality": "good", "isi_violations_max": 0.3,
                               "amplitude_cutoff_max": 0.1, "presence_ratio_min": 0.9}
    win = vbn.resolve_options(cfg, {"ecephys_session_id": 5, "epochs": [
        {"name": "w", "start_s": 1, "stop_s": 2.5}, {"block": 3}]}, session_id="s")
    assert win["epochs"] == [{"name": "w", "start_s": 1.0, "stop_s": 2.5},
                             {"block": 3, "name": "block-3"}]
    assert vbn.resolve_options({"filters": {"quality": None}}, {"ecephys_session_id": 5},
                               session_id="s")["filters"]["quality"] is None


@pytest.mark.parametrize(("row", "cfg", "pieces"), [
    ({}, {}, ["'s7'", "ecephys_session_id=<integer id>", "list-sessions"]),
    ({"ecephys_session_id": "abc"}, {}, ["'s7'", "'abc'"]),
    ({"ecephys_session_id": 1, "area": "VISp"}, {}, ["'s7'", "['area']", "areas"]),
    ({"ecephys_session_id": 1, "epochs": "replay"}, {}, ["'s7'", "'replay'", "passive"]),
    ({"ecephys_session_id": 1, "epochs": [{"name": "w", "start_s": 3, "stop_s": 2}]}, {},
     ["'s7'", "'w'", "start_s=3.0"]),
    ({"ecephys_session_id": 1}, {"cache_mode": "ftp"}, ["'ftp'", "s3", "local"]),
    ({"ecephys_session_id": 1}, {"filters": {"snr_min": 1}}, ["snr_min", "presence_ratio_min"]),
    ({"ecephys_session_id": 1, "isi_violations_max": "low"}, {}, ["isi_violations_max", "'low'"]),
])
def test_resolve_options_errors_name_session_value_and_fix(row, cfg, pieces):
    with pytest.raises(ValueError) as err:
        vbn.resolve_options(cfg, row, session_id="s7")
    for piece in pieces:
        assert piece in str(err.value), (piece, str(err.value))


def test_extract_cli_args_round_trip_through_the_parser():
    cfg = {"cache_dir": "/tmp/a b", "cache_mode": "local",
           "filters": {"amplitude_cutoff_max": None}}
    row = {"ecephys_session_id": 77, "areas": "VISp", "epochs": [
        "spontaneous", {"name": "it's", "start_s": 0, "stop_s": 9}]}
    text = shlex.join(vbn_cli.extract_cli_args(cfg, row, session_id="vbn-77"))
    args = vbn_cli._parser().parse_args(["extract", *shlex.split(text), "--out", "x.nc"])
    assert args.cache_dir == "/tmp/a b" and args.cache_mode == "local"
    assert args.ecephys_session_id == 77 and args.session_id == "vbn-77"
    assert json.loads(args.areas) == ["VISp"]
    assert vbn.parse_epoch_specs(json.loads(args.epochs)) == [
        {"kind": "spontaneous"}, {"name": "it's", "start_s": 0.0, "stop_s": 9.0}]
    assert vbn_cli._filters(args) == {"quality": "good", "isi_violations_max": 0.5,
                                  "amplitude_cutoff_max": None, "presence_ratio_min": 0.95}


def _units_table() -> pd.DataFrame:
    # 7 units; metrics sit exactly on or next to the METHODS §1 thresholds (strict inequalities)
    return pd.DataFrame({
        "quality": ["good", "good", "noise", "good", "good", "good", "good"],
        "isi_violations": [0.49, 0.5, 0.1, 0.1, 0.1, np.nan, 0.0],
        "amplitude_cutoff": [0.099, 0.0, 0.0, 0.1, 0.0, 0.0, 0.01],
        "presence_ratio": [0.951, 0.99, 0.99, 0.99, 0.95, 0.99, 0.96],
        "area": ["VISp", "VISp", "VISl", "VISl", "CA1", "CA1", "CA1"],
    }, index=pd.Index([17, 11, 15, 13, 19, 21, 5], name="id"))


def test_unit_filters_are_strict_and_missing_metrics_fail():
    mask, stages = vbn.unit_filter_mask(_units_table())
    # kept: 17 (all just inside) and 5; 11 isi==0.5, 15 noise, 13 amp==0.1, 19 presence==0.95,
    # 21 isi NaN all fail
    assert mask.tolist() == [True, False, False, False, False, False, True]
    assert [n for _, n in stages] == [7, 6, 4, 3, 2]
    relaxed, _ = vbn.unit_filter_mask(_units_table(), quality=None, isi_violations_max=None,
                                      amplitude_cutoff_max=None, presence_ratio_min=None)
    assert relaxed.all()
    only, _ = vbn.unit_filter_mask(_units_table(), quality=None, isi_violations_max=None,
                                   amplitude_cutoff_max=None, presence_ratio_min=None,
                                   areas=["VISl"])
    assert only.tolist() == [False, False, True, True, False, False, False]


def test_select_units_orders_by_area_then_id_and_explains_empty_result():
    sel = vbn.select_units(_units_table(), session_id="s", quality=None,
                           isi_violations_max=None, amplitude_cutoff_max=None,
                           presence_ratio_min=None)
    assert sel.index.tolist() == [5, 19, 21, 13, 15, 11, 17]  # CA1 < VISl < VISp, ids ascending
    with pytest.raises(ValueError) as err:
        vbn.select_units(_units_table(), session_id="vbn-9", areas=["LGd"])
    text = str(err.value)
    for piece in ["'vbn-9'", "all units: 7", "quality == 'good': 6", "area in ['LGd']: 0",
                  "['CA1', 'VISl', 'VISp']", "Relax vbn.filters"]:
        assert piece in text, (piece, text)


def test_unit_areas_join_peak_channels_and_mark_missing():
    units = pd.DataFrame({"peak_channel_id": [3, 1, 2, 9]}, index=[10, 11, 12, 13])
    chans = pd.DataFrame({"structure_acronym": ["VISp", None, "CA1"]}, index=[1, 2, 3])
    assert vbn.unit_areas(units, chans).tolist() == ["CA1", "VISp", "unknown", "unknown"]


def _vbn_like_presentations() -> pd.DataFrame:
    """Block layout of a real VBN session: active, gray, gabors, gray, flashes, passive replay."""
    img = "Natural_Images_Lum_Matched_set_training_2017"
    blocks = [(0, img, True, 0.0, 3600.0), (1, "spontaneous", False, 3600.0, 3610.0),
              (2, "gabor_20_deg_250ms", False, 3610.0, 4500.0),
              (3, "spontaneous", False, 4500.0, 4800.0), (4, "flash_250ms", False, 4800.0, 5000.0),
              (5, img, False, 5000.0, 8600.0)]
    rows = []
    for b, name, active, t0, t1 in blocks:
        for t in np.linspace(t0, t1 - 1.0, 4):
            rows.append(dict(stimulus_block=b, stimulus_name=name, active=active,
                             start_time=t, end_time=t + 0.25 if name != "spontaneous" else t1))
    return pd.DataFrame(rows)


def test_stimulus_blocks_kinds_and_epoch_resolution():
    blocks = vbn.stimulus_blocks(_vbn_like_presentations())
    assert blocks.kind.to_dict() == {0: "active", 1: "spontaneous", 2: "other",
                                     3: "spontaneous", 4: "other", 5: "passive"}
    assert blocks.loc[5, "start"] == 5000.0 and blocks.loc[5, "stop"] == 8599.25
    specs = vbn.parse_epoch_specs(["passive", "spontaneous", {"block": 2, "name": "gabors"},
                                   {"name": "early", "start_s": 10, "stop_s": 70}])
    ep = vbn.resolve_epochs(blocks, specs, session_id="s", t_end=8600.0)
    assert ep.name.tolist() == ["early", "spontaneous-1", "gabors", "spontaneous-3", "passive"]
    assert ep.start.tolist() == [10.0, 3600.0, 3610.0, 4500.0, 5000.0]
    assert ep.stop.tolist() == [70.0, 3610.0, 4499.25, 4800.0, 8599.25]
    assert ep.block.tolist() == [-1, 1, 2, 3, 5]


@pytest.mark.parametrize(("spec", "pieces"), [
    ("passive", ["'s3'", "no 'passive' epoch", "block 0: active", "block 1: spontaneous"]),
    ({"block": 4}, ["'s3'", "no stimulus block 4"]),
    ({"name": "late", "start_s": 5, "stop_s": 500}, ["'s3'", "'late'", "outside the recording"]),
])
def test_absent_epochs_raise_with_available_blocks(spec, pieces):
    p = _vbn_like_presentations()
    blocks = vbn.stimulus_blocks(p[p.stimulus_block < 2])
    with pytest.raises(ValueError) as err:
        vbn.resolve_epochs(blocks, vbn.parse_epoch_specs([spec]), session_id="s3", t_end=400.0)
    for piece in pieces:
        assert piece in str(err.value), (piece, str(err.value))


def test_spikes_dataset_clips_to_epochs_sorts_and_indexes_units():
    units = pd.DataFrame({"area": ["CA1", "VISp", "VISp"], "presence_ratio": [0.99, 0.97, 1.0]},
                         index=pd.Index([30, 10, 20], dtype="int64"))
    spikes = {10: np.array([0.5, 1.0, 2.0, 2.999]), 20: np.array([1.5, 3.0, 4.2]),
              30: np.array([0.999, 4.0, 4.5, 5.0]), 99: np.array([1.1])}
    epochs = pd.DataFrame({"name": ["a", "b"], "start": [1.0, 4.0], "stop": [3.0, 5.0],
                           "block": [0, -1]})
    ds = vbn.spikes_dataset(spikes, units, epochs, session_id="s", ecephys_session_id=8)
    # [start, stop): 1.0 kept, 3.0 and 5.0 dropped, 0.5 / 0.999 outside; unit 99 not selected
    assert ds.spike_time.values.tolist() == [1.0, 1.5, 2.0, 2.999, 4.0, 4.2, 4.5]
    assert ds.unit_id.values[ds.spike_unit.values].tolist() == [10, 20, 10, 10, 30, 20, 30]
    assert ds.spike_unit.dtype == np.int32 and ds.unit_id.dtype == np.int64
    assert ds.area.values.tolist() == ["CA1", "VISp", "VISp"]
    assert ds.epoch_name.values.tolist() == ["a", "b"] and ds.epoch_block.values.tolist() == [0, -1]
    assert ds.attrs["source"] == "vbn" and ds.attrs["ecephys_session_id"] == 8
    assert np.isnan(ds.firing_rate.values).all()  # column absent -> NaN, not invented


def test_candidate_sessions_counts_passing_units_per_area():
    units = _units_table().reset_index(names="unit_id").set_index("unit_id")
    units = units.drop(columns="area").assign(
        ecephys_session_id=[1, 1, 1, 1, 2, 2, 2], ecephys_channel_id=[7, 7, 8, 8, 9, 9, 9])
    chans = pd.DataFrame({"structure_acronym": ["VISp", "VISl", "CA1"]}, index=[7, 8, 9])
    table = pd.DataFrame(index=pd.Index([1, 2, 3], name="ecephys_session_id"))
    c = vbn.candidate_sessions(table, units, chans, quality=None, isi_violations_max=None,
                               amplitude_cutoff_max=None, presence_ratio_min=None)
    assert c.n_units.to_dict() == {1: 4, 2: 3}
    assert c.loc[1, "areas"] == "VISl:2,VISp:2" and c.loc[2, "areas"] == "CA1:3"
    strict = vbn.candidate_sessions(table, units, chans, min_units=1)
    assert strict.n_units.to_dict() == {1: 1, 2: 1}  # units 17 (VISp) and 5 (CA1)
    assert vbn.candidate_sessions(table, units, chans, min_units=2).empty
    text = vbn.session_rows_tsv(c, extra_params="epochs=active")
    rows = pd.read_csv(__import__("io").StringIO(text), sep="\t", comment="#")
    assert rows.to_dict("list") == {
        "session_id": ["vbn-1", "vbn-2"], "source": ["vbn", "vbn"],
        "params": ["ecephys_session_id=1;epochs=active", "ecephys_session_id=2;epochs=active"]}


def test_command_line_entries_run_without_allensdk():
    """`python -m spikerbm.vbn` (the vbn_extract rule's command) and the console script
    `spikerbm-vbn-sessions` reach the parser of spikerbm.vbn_cli in the main environment."""
    entries = {"--ecephys-session-id": [sys.executable, "-m", "spikerbm.vbn", "extract", "--help"],
               "--min-units": [str(Path(sys.executable).with_name("spikerbm-vbn-sessions")),
                               "--help"]}
    for option, cmd in entries.items():
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "--cache-dir" in proc.stdout and option in proc.stdout, proc.stdout
    bad = subprocess.run([sys.executable, "-m", "spikerbm.vbn", "extract", "--cache-dir", "c"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--ecephys-session-id" in bad.stderr, bad.stderr


# ============================================================ real allensdk (vbn environment)


@pytest.fixture(scope="module")
def fake_cache(tmp_path_factory) -> tuple[Path, dict]:
    require_vbn_env()
    out = tmp_path_factory.mktemp("vbn") / "cache"
    proc = run_vbn(str(REPO / "tests" / "vbn" / "fake_cache.py"), str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "truth.json").read_text())


def _expected_spikes(truth_unit: dict, windows: list[tuple[float, float]]) -> np.ndarray:
    t = np.asarray(truth_unit["spike_times"])
    keep = np.zeros(t.shape, bool)
    for a, b in windows:
        keep |= (t >= a) & (t < b)
    return t[keep]


@pytest.mark.vbn
def test_extract_real_allensdk_session_matches_what_was_written(fake_cache, tmp_path):
    cache, truth = fake_cache
    out = tmp_path / "spikes.nc"
    epochs = ["active", "passive", "spontaneous", {"name": "win", "start_s": 5.0, "stop_s": 7.5}]
    proc = run_vbn("-m", "spikerbm.vbn", "extract", "--cache-dir", str(cache),
                   "--cache-mode", "local", "--ecephys-session-id", str(FULL),
                   "--session-id", "vbn-full", "--epochs", json.dumps(epochs), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ds = read_netcdf(out)  # read back in the MAIN environment (new xarray/numpy)
    t_units = {u["unit_id"]: u for u in truth[str(FULL)]["units"]}
    blocks = {b["block"]: b for b in truth[str(FULL)]["blocks"]}
    # units: the 5 built to pass, ordered by (area, id), areas from the peak channels
    expected = sorted(FULL_PASSING, key=lambda u: (t_units[u]["area"], u))
    assert ds.unit_id.values.tolist() == expected and ds.unit_id.dtype == np.int64
    assert ds.area.values.tolist() == [t_units[u]["area"] for u in expected]
    assert all(isinstance(a, str) for a in ds.area.values)
    assert ds.presence_ratio.values.tolist() == [t_units[u]["presence_ratio"] for u in expected]
    # epochs: stimulus blocks 0 (active), 1 (spontaneous), 2 (passive) + the window, by start
    assert ds.epoch_name.values.tolist() == ["active", "win", "spontaneous", "passive"]
    want = [(blocks[0]["start"], blocks[0]["stop"]), (5.0, 7.5),
            (blocks[1]["start"], blocks[1]["stop"]), (blocks[2]["start"], blocks[2]["stop"])]
    assert list(zip(ds.epoch_start.values, ds.epoch_stop.values, strict=True)) == want
    assert ds.epoch_block.values.tolist() == [0, -1, 1, 2]
    # spikes: exactly the written float64 times inside the epochs, sorted, correctly attributed
    assert ds.spike_time.dtype == np.float64 and ds.spike_unit.dtype == np.int32
    assert np.all(np.diff(ds.spike_time.values) >= 0)
    for k, uid in enumerate(expected):
        got = ds.spike_time.values[ds.spike_unit.values == k]
        np.testing.assert_array_equal(got, _expected_spikes(t_units[uid], want))
    assert ds.attrs["session_id"] == "vbn-full" and ds.attrs["source"] == "vbn"
    assert ds.attrs["ecephys_session_id"] == FULL and ds.attrs["n_units_total"] == 9
    assert json.loads(ds.attrs["config"])["cache_mode"] == "local" and "git_commit" in ds.attrs


ERRORS_SNIPPET = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from spikerbm import vbn, vbn_cli
    cache, tmp = sys.argv[1], Path(sys.argv[2])
    res = {}
    def err(fn):
        try:
            fn()
        except (vbn.VBNError, ValueError) as e:
            return f"{type(e).__name__}: {e}"
        return None
    c = vbn.open_cache(cache, mode="local")
    res["unknown_id"] = err(lambda: vbn.load_session(c, 424242, session_id="vbn-x"))
    bad = vbn.load_session(c, 1000002, session_id="vbn-bad")
    kw = dict(session_id="vbn-bad", ecephys_session_id=1000002)
    res["no_units"] = err(lambda: vbn.extract_session(bad, epochs=[{"kind": "active"}], **kw))
    res["absent_epoch"] = err(lambda: vbn.extract_session(bad, epochs=[{"kind": "passive"}], **kw))
    t0 = time.monotonic()
    res["s3"] = err(lambda: vbn.open_cache(str(tmp / "bogus"), mode="s3"))
    res["s3_seconds"] = time.monotonic() - t0
    res["local_missing"] = err(lambda: vbn.open_cache(str(tmp / "nothing"), mode="local"))
    # the CLI: exit status 2, one clear error, and no output file (no partial outputs)
    out = tmp / "cli" / "spikes.nc"
    res["cli_rc"] = vbn_cli.main(["extract", "--cache-dir", cache, "--cache-mode", "local",
                              "--ecephys-session-id", "1000002", "--session-id", "vbn-bad",
                              "--out", str(out)])
    res["cli_out_exists"] = out.exists()
    res["cli_dir_files"] = (sorted(p.name for p in out.parent.glob("*"))
                            if out.parent.exists() else [])
    res["list_rc"] = vbn_cli.main(["list-sessions", "--cache-dir", cache, "--cache-mode", "local",
                               "--min-units", "1", "--params", "epochs=active",
                               "--out", str(tmp / "rows.tsv")])
    print(json.dumps(res))
""")


@pytest.mark.vbn
def test_errors_and_session_listing_against_the_fake_cache(fake_cache, tmp_path):
    cache, _ = fake_cache
    # S3 endpoint on a closed loopback port: the download fails deterministically, offline or not
    proc = run_vbn("-c", ERRORS_SNIPPET, str(cache), str(tmp_path),
                   env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    checks = {
        "unknown_id": ["VBNError", "'vbn-x'", "424242", "not in the VBN session table",
                       "list-sessions"],
        "no_units": ["ValueError", "'vbn-bad'", "no units pass", "quality == 'good': 0",
                     "Relax vbn.filters"],
        "absent_epoch": ["ValueError", "'vbn-bad'", "no 'passive' epoch", "block 0: active",
                         "block 1: spontaneous"],
        "s3": ["VBNError", "S3 cache", "bogus", "network", "cache_mode: local"],
        "local_missing": ["VBNError", "local VBN cache", "nothing", "cache_mode: s3"],
    }
    for key, pieces in checks.items():
        assert res[key] is not None, f"{key}: no error raised"
        for piece in pieces:
            assert piece in res[key], (key, piece, res[key])
    assert res["s3_seconds"] < 30  # fails fast instead of hanging (0.2 s here)
    assert res["cli_rc"] == 2 and not res["cli_out_exists"] and res["cli_dir_files"] == []
    assert "no units pass" in proc.stderr
    assert res["list_rc"] == 0
    rows = pd.read_csv(tmp_path / "rows.tsv", sep="\t", comment="#")
    # only the full session has units passing (5); the bad one (all noise) is not listed
    assert rows.to_dict("list") == {"session_id": [f"vbn-{FULL}"], "source": ["vbn"],
                                    "params": [f"ecephys_session_id={FULL};epochs=active"]}
    assert "5 units pass the filters; VISl:2,VISp:2,CA1:1" in (tmp_path / "rows.tsv").read_text()


@pytest.mark.vbn
@pytest.mark.workflow
def test_workflow_vbn_row_through_binarization(fake_cache, workflow_dir):
    cache, truth = fake_cache
    sessions = ("session_id\tsource\tparams\n"
                f"vbn-fake\tvbn\tecephys_session_id={FULL};epochs=active,spontaneous;"
                "areas=VISp,VISl\n")
    wf = workflow_dir({"vbn": {"cache_dir": str(cache), "cache_mode": "local",
                               "python": str(VBN_PY)}}, sessions=sessions)
    proc = snakemake(wf, "--cores", "2", "results/vbn-fake/raster.nc", timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    spikes = read_netcdf(wf / "results" / "vbn-fake" / "spikes.nc")
    t_units = {u["unit_id"]: u for u in truth[str(FULL)]["units"]}
    want_units = sorted((u for u in FULL_PASSING if t_units[u]["area"] in ("VISp", "VISl")),
                        key=lambda u: (t_units[u]["area"], u))
    assert spikes.unit_id.values.tolist() == want_units
    assert spikes.epoch_name.values.tolist() == ["active", "spontaneous"]
    raster = read_netcdf(wf / "results" / "vbn-fake" / "raster.nc")
    assert raster.raster.dtype == np.uint8 and raster.attrs["session_id"] == "vbn-fake"
    kept = raster.unit_id.values.tolist()
    dropped = json.loads(raster.attrs.get("dropped_units", "[]"))
    assert sorted(kept + dropped) == sorted(want_units)
    assert set(np.unique(raster.epoch.values)) == {"active", "spontaneous"}
    assert (wf / "results" / "logs" / "vbn_extract" / "vbn-fake.log").exists()
    assert (wf / "results" / "benchmarks" / "vbn_extract" / "vbn-fake.tsv").exists()


@pytest.mark.vbn
def test_allensdk_written_nwb_reads_with_pynwb_in_the_main_environment(fake_cache):
    """source: nwb on a VBN-format file: allensdk's to_nwb() wrote it (ndx-aibs-* extension
    types, cached specs); spikerbm.nwb reads it in the main environment (pynwb 4) with VBN's
    column names: the default unit filters as conditions, the area through peak_channel_id ->
    electrodes location, an epoch from a stimulus-presentation table."""
    from spikerbm.nwb import read_nwb

    cache, truth = fake_cache
    path = next(cache.rglob(f"ecephys_session_{FULL}.nwb"))
    ds = read_nwb(path, session_id="vbn-nwb", epochs="spontaneous_presentations",
                  filters=["quality == good", "isi_violations < 0.5",
                           "amplitude_cutoff < 0.1", "presence_ratio > 0.95"])
    t_units = {u["unit_id"]: u for u in truth[str(FULL)]["units"]}
    block = {b["block"]: b for b in truth[str(FULL)]["blocks"]}[1]  # spontaneous
    assert sorted(ds.unit_id.values.tolist()) == FULL_PASSING
    assert ds.area.values.tolist() == [t_units[u]["area"] for u in ds.unit_id.values.tolist()]
    assert ds.epoch_name.values.tolist() == ["spontaneous_presentations-0"]
    assert (ds.epoch_start.item(), ds.epoch_stop.item()) == (block["start"], block["stop"])
    for k, uid in enumerate(ds.unit_id.values.tolist()):
        got = ds.spike_time.values[ds.spike_unit.values == k]
        np.testing.assert_array_equal(
            got, _expected_spikes(t_units[uid], [(block["start"], block["stop"])]))
    assert np.isfinite(ds.probe_vertical_position.values).all()
