"""The sessions sheet, DAG-time checks of synthetic parameters and config-typo messages (issue 18
items 4-5): spikerbm.sessions on real files, and the real ``snakemake -n`` for the sheet cases.

Every message must be ONE line naming the file, the line number as an editor shows it, the
session and the fix.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO, snakemake

from spikerbm import sessions as ss

SOURCES = ("synthetic", "raster", "vbn", "nwb", "spikes")
HEAD = "session_id\tsource\tparams\n"


def sheet(tmp_path, text: str):
    path = tmp_path / "sessions.tsv"
    path.write_text(text)
    return path


def error_of(tmp_path, text: str) -> str:
    path = sheet(tmp_path, text)
    with pytest.raises(ss.SheetError) as err:
        ss.read_sessions(path, sources=SOURCES)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


# ----------------------------------------------------------------------- reading the sheet
def test_hash_inside_a_value_is_data_and_whole_comment_lines_are_skipped(tmp_path):
    text = ("# a comment before the header\n" + HEAD + "# a comment\n\n"
            "mine\traster\tpath=run#2/raster.nc\n"
            "syn\tsynthetic\tseed=3;n_neurons=40;epochs=a,b\n"
            "empty\tsynthetic\t\n")
    table = ss.read_sessions(sheet(tmp_path, text), sources=SOURCES)
    assert list(table.index) == ["mine", "syn", "empty"]
    assert table.loc["mine", "params"] == {"path": "run#2/raster.nc"}
    assert table.loc["syn", "params"] == {"seed": 3, "n_neurons": 40, "epochs": "a,b"}
    assert table.loc["empty", "params"] == {}
    assert table["line"].tolist() == [5, 6, 7]  # lines as an editor numbers them


def test_header_without_params_column(tmp_path):
    table = ss.read_sessions(sheet(tmp_path, "session_id\tsource\ns1\tsynthetic\n"))
    assert table.loc["s1", "params"] == {}


@pytest.mark.parametrize(("text", "pieces"), [
    # the line number is the file's, with comments and blank lines counted
    (HEAD + "# c\n\ns1\tsynthetic\t\nbad/id\tsynthetic\t\n",
     ["line 5:", "'bad/id' is not allowed"]),
    # pandas called this "row 3 of the data frame" (comments dropped, header not counted)
    (HEAD + "s1\tsynthetic\t\ns2\tsynthetic\t\n# c\ns3\tsynthetic\tseed=x;seed=2\n",
     ["line 5 (session s3)", "'seed' is given twice"]),
    (HEAD + "s1\tsynthetic\tseed=1\ns2  synthetic  seed=2\n",
     ["line 3:", "separated by spaces", "tab-separated"]),
    ("session_id source params\ns1\tsynthetic\t\n",
     ["line 1:", "separated by spaces", "tab-separated"]),
    (HEAD + "s1\tsynthetic\n", ["line 2 (session s1)", "column 'params' is missing"]),
    (HEAD + "s1\tsynthetic\tseed=1\textra\n", ["line 2 (session s1)", "4 columns"]),
    (HEAD + "s1\tsynthetic\t\ns2\tsynthetic\t\ns1\traster\tpath=x.nc\n",
     ["line 4 (session s1)", "already used on line 2"]),
    (HEAD + "s1\tsynthetc\t\n", ["line 2 (session s1)", "'synthetc'", "did you mean `synthetic`"]),
    (HEAD + "s1\tsynthetic\tseed\n", ["line 2 (session s1)", "'seed' is not key=value"]),
    ("session_id\tsource\tparms\ns1\tsynthetic\t\n",
     ["line 1:", "['parms']", "did you mean `params`"]),
    ("# only comments\n", ["lists no sessions"]),
])
def test_sheet_errors_name_file_line_and_session(tmp_path, text, pieces):
    msg = error_of(tmp_path, text)
    for piece in pieces:
        assert piece in msg, msg


# ----------------------------------------------------------------------- synthetic parameters
DEFAULTS = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["synthetic"]
SECTIONS_FOR_SYNTHETIC = yaml.safe_load(
    (REPO / "workflow/schemas/config.schema.yaml").read_text())["properties"]["synthetic"]


@pytest.mark.parametrize(("params", "pieces"), [
    ("rate_max_hz=60", ["rate_max_hz * bin width = 1.2 must be < 1"]),
    ("rate_min_hz=30;rate_max_hz=20", ["rate_min_hz < rate_max_hz", "30, 20"]),
    ("n_neurons=10;n_areas=6", ["n_neurons (10) must be >= 2 * n_areas (12)"]),
    ("duration_s=0.01", ["duration_s = 0.01 gives 0 bins of 20 ms", "at least 0.02"]),
    ("n_neurons=40;n_areas=4;assembly_size=12",  # 10 neurons per area: was silently capped
     ["assembly_size = 12 is larger than the smallest area (10 neurons", "at most 10"]),
    ("n_nerons=50", ["unknown synthetic parameter(s) ['n_nerons']", "did you mean `n_neurons`"]),
    ("duration_s=0.03;epochs=[a, b]", ["gives 1 bins of 20 ms, fewer than the 2 epoch(s)"]),
    ("n_areas=1;n_cross_assemblies=2", ["n_cross_assemblies = 2 needs n_areas >= 2"]),
    ("n_areas=6;assemblies_per_area=3;n_neurons=120",  # 6 * 3 + 2 + 1 planted hidden units
     ["= 21 hidden units; at most 16 are allowed"]),
    # ranges of single values: the schema's synthetic section (types and bounds)
    ("rate_min_hz=0", ["'rate_min_hz': 0 is less than or equal to the minimum of 0"]),
    ("hidden_activity=1.5", ["'hidden_activity': 1.5 is greater than or equal to the maximum"]),
    ("weight_jitter=1", ["'weight_jitter': 1 is greater than or equal to the maximum of 1"]),
    ("bin_ms=2.5", ["'bin_ms': 2.5 is not of type 'integer'"]),
    ("sweeps_per_bin=0", ["'sweeps_per_bin': 0 is less than the minimum of 1"]),
    ("n_neurons=3", ["'n_neurons': 3 is less than the minimum of 4"]),
])
def test_out_of_range_synthetic_parameters_fail_at_dag_time(tmp_path, params, pieces):
    """Every range the generator needs is checked when the sheet is read (the workflow passes
    the schema's synthetic section, as here), one line naming the line, session and fix."""
    path = sheet(tmp_path, HEAD + "ok\tsynthetic\tseed=1\n# c\ns3\tsynthetic\t" + params + "\n")
    table = ss.read_sessions(path, sources=SOURCES)
    with pytest.raises(ss.SheetError) as err:
        ss.check_synthetic_sessions(table, DEFAULTS, path=path,
                                    schema=SECTIONS_FOR_SYNTHETIC)
    msg = str(err.value)
    assert msg.startswith(f"{path}, line 4 (session s3): ") and "\n" not in msg, msg
    for piece in pieces:
        assert piece in msg, msg


def test_valid_synthetic_rows_pass_with_their_merged_params(tmp_path):
    path = sheet(tmp_path, HEAD + "a\tsynthetic\tseed=2;n_neurons=48\nb\traster\tpath=x.nc\n")
    merged = ss.check_synthetic_sessions(ss.read_sessions(path), DEFAULTS, path=path)
    assert list(merged) == ["a"] and merged["a"]["n_neurons"] == 48
    assert merged["a"]["rate_max_hz"] == DEFAULTS["rate_max_hz"]


# ----------------------------------------------------------------------- file sources
CONFIG_DEFAULTS = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
SECTIONS = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())["properties"]


def file_rows(tmp_path, rows: str, source: str):
    path = sheet(tmp_path, HEAD + "ok\tsynthetic\tseed=1\n# c\n" + rows)
    table = ss.read_sessions(path, sources=SOURCES)
    section = SECTIONS.get(source)
    return path, table, lambda: ss.check_file_sessions(
        table, source, CONFIG_DEFAULTS[source] if section else {}, schema=section, path=path)


def test_file_rows_merge_config_and_row(tmp_path):
    rows = ("a\tnwb\tpath=run#2/a.nwb;filters=[quality == good, presence_ratio > 0.9];"
            "epochs=[trials, {name: late, start_s: 100, stop_s: 200}]\n"
            "b\tnwb\tpath=b.nwb;area=electrodes.beryl_location;unit_id=cluster_id;"
            "filters=quality == good,snr > 2;areas=VISp,VISl\n")
    _, _, check = file_rows(tmp_path, rows, "nwb")
    merged = check()
    assert merged["a"]["path"] == "run#2/a.nwb" and merged["a"]["area"] == "auto"
    assert merged["a"]["filters"] == ["quality == good", "presence_ratio > 0.9"]
    assert merged["a"]["epochs"][1] == {"name": "late", "start_s": 100, "stop_s": 200}
    assert merged["b"]["unit_id"] == "cluster_id" and merged["b"]["areas"] == "VISp,VISl"
    assert merged["b"]["filters"] == ["quality == good", "snr > 2"]  # comma text -> list
    _, _, check = file_rows(tmp_path, "s\tspikes\tpath=/data/s.nc;epochs=task,rest\n", "spikes")
    assert check() == {"s": {"path": "/data/s.nc", "epochs": "task,rest"}}


@pytest.mark.parametrize(("source", "row", "pieces"), [
    ("nwb", "s5\tnwb\tpath=x.nwb;filter=quality == good",
     ["unknown nwb parameter(s) ['filter']", "allowed: path, area,", "did you mean `filters`?"]),
    ("nwb", "s5\tnwb\tepochs=trials", ["nwb: params need path=FILE, the NWB file"]),
    ("nwb", "s5\tnwb\tpath=x.nwb;filters=quality is good",
     ["filter 'quality is good' is not '<column> <op> <value>'"]),
    ("nwb", "s5\tnwb\tpath=x.nwb;epochs=[{name: a, start_s: 5, stop_s: 1}]",
     ["need finite start_s < stop_s"]),
    ("nwb", "s5\tnwb\tpath=x.nwb;unit_id=3", ["nwb: parameter 'unit_id': 3 is not of type"]),
    ("spikes", "s5\tspikes\tpath=x.nc;epochs=[{name: a, start_s: 0}]",
     ["spikes: parameter 'epochs.0': 'stop_s' is a required property"]),
    ("spikes", "s5\tspikes\tpath=x.nc;area=VISp", ["unknown spikes parameter(s) ['area']"]),
    ("raster", "s5\traster\tpath=x.nc;bin_ms=20",
     ["unknown raster parameter(s) ['bin_ms']; allowed: path"]),
    ("raster", "s5\traster\t", ["raster: params need path=FILE"]),
])
def test_bad_file_rows_name_the_line_and_the_fix(tmp_path, source, row, pieces):
    path, _, check = file_rows(tmp_path, row + "\n", source)
    with pytest.raises(ss.SheetError) as err:
        check()
    msg = str(err.value)
    assert msg.startswith(f"{path}, line 4 (session s5): ") and "\n" not in msg, msg
    for piece in pieces:
        assert piece in msg, msg


def test_data_file_is_resolved_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "r#1.nc").write_bytes(b"")
    (tmp_path / "ks").mkdir()
    path = sheet(tmp_path, HEAD + "r\traster\tpath=data/r#1.nc\nn\tnwb\tpath=none.nwb\n"
                 "k\tspikes\tpath=ks\n")
    table = ss.read_sessions(path, sources=SOURCES)
    assert ss.data_file(table, "r", path=path) == "data/r#1.nc"
    with pytest.raises(ss.SheetError, match=r"line 3 \(session n\): nwb: path=none.nwb: NWB file "
                       rf"not found \(looked for {tmp_path}/none.nwb: relative paths are "
                       "resolved against the working directory"):
        ss.data_file(table, "n", path=path)
    with pytest.raises(ss.SheetError, match="path=ks is a folder.*phy2spikes FOLDER OUT.nc"):
        ss.data_file(table, "k", path=path)


# ----------------------------------------------------------------------- config typos
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())


def test_config_typo_names_key_allowed_keys_and_closest_match():
    cfg = copy.deepcopy(CONFIG)
    cfg["train"]["n_udpates"] = cfg["train"].pop("n_updates")
    msg = ss.config_error_message(cfg, SCHEMA)
    assert msg.startswith("config: unknown key `train.n_udpates`; allowed keys of `train`: ")
    assert "n_hidden" in msg and msg.endswith("did you mean `n_updates`?") and "\n" not in msg


def test_top_level_typo_and_wrong_value():
    cfg = copy.deepcopy(CONFIG)
    cfg["sede"] = 3
    msg = ss.config_error_message(cfg, SCHEMA)
    assert "unknown key `sede`" in msg and "top level" in msg and "`seed`?" in msg
    cfg = copy.deepcopy(CONFIG)
    cfg["train"]["k"] = "ten"
    msg = ss.config_error_message(cfg, SCHEMA)
    assert msg.startswith("config: `train.k`: 'ten' is not of type 'integer'") and "\n" not in msg
    assert ss.config_error_message(CONFIG, SCHEMA) is None


# ----------------------------------------------------------------------- the real dry run
@pytest.mark.workflow
def test_dry_run_keeps_hash_in_path_and_names_the_line(workflow_dir, tmp_path):
    (tmp_path / "wf").mkdir(exist_ok=True)
    data = tmp_path / "run#2"
    data.mkdir()
    (data / "raster.nc").write_bytes(b"")  # existence is what the DAG checks
    text = (HEAD + "# my sessions\nsyn\tsynthetic\tseed=1\n"
            f"mine\traster\tpath={data}/raster.nc\n")
    wf = workflow_dir(sessions=text)
    proc = snakemake(wf, "-n", "--cores", "1", "results/mine/raster.nc")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    bad_row = "s3\tsynthetic\tn_neurons=40;n_areas=4;assembly_size=12\n"
    wf_bad = workflow_dir(sessions=text + bad_row)
    proc = snakemake(wf_bad, "-n", "--cores", "1")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Job stats" not in out
    assert "config/sessions.tsv, line 5 (session s3): synthetic: assembly_size = 12" in out, out
