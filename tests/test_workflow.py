"""The real workflow: lint, dry run, and a tiny end-to-end CPU run in a temporary folder."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import CPU_GPU_SLOTS, REPO, TINY_CONFIG, copy_workflow, snakemake
from PIL import Image

pytestmark = pytest.mark.workflow

BIN = Path(sys.executable).parent


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Parse snakemake's 'Job stats' table into {rule: count}."""
    table = dry_run_output.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def test_lint_and_format_are_clean():
    lint = snakemake(REPO, "--lint")
    assert lint.returncode == 0 and "good condition" in lint.stdout + lint.stderr, lint.stdout
    fmt = subprocess.run([str(BIN / "snakefmt"), "--check", "workflow"], cwd=REPO,
                         capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    ruff = subprocess.run([str(BIN / "ruff"), "check", "src", "tests", "scripts", "benchmarks"],
                          cwd=REPO, capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout


def test_dry_run_of_default_config_lists_every_job(workflow_dir):
    wf = workflow_dir(tiny=False)
    proc = snakemake(wf, "-n", "--cores", "2")
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    cfg = yaml.safe_load((wf / "config" / "config.yaml").read_text())
    n_sessions = len((wf / "config" / "sessions.tsv").read_text().strip().splitlines()) - 1
    n_models = n_sessions * len(cfg["train"]["n_hidden"])
    per_session = ["synthetic_session", "binarize", "select_model", "fig_loglik", "statistics",
                   "fig_statistics", "couplings", "fig_couplings", "dynamics", "fig_dynamics",
                   "summary", "pairwise"]
    expected = {rule: n_sessions for rule in per_session} | {"train": n_models,
                                                              "loglik": n_models, "all": 1,
                                                              "report_tables": 1, "atlas": 1,
                                                              "fig_atlas": 1,
                                                              "compare_models": 1}
    # the default run pools several sessions in the atlas (issue 20)
    assert n_sessions >= 2 and cfg["atlas"]["enabled"] and cfg["pairwise"]["enabled"]
    assert counts == expected | {"total": sum(expected.values())}


SESSIONS = (
    "session_id\tsource\tparams\n"
    "tiny-a\tsynthetic\tseed=1\n"
    "tiny-b\tsynthetic\tseed=2;n_neurons=21\n"
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Run the whole workflow once on two tiny synthetic sessions (shared by the tests below)."""
    dest = copy_workflow(tmp_path_factory.mktemp("tiny") / "wf", sessions=SESSIONS)
    cfg = yaml.safe_load((dest / "config" / "config.yaml").read_text())
    proc = snakemake(dest, "--cores", "2", *CPU_GPU_SLOTS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return dest, cfg


def test_tiny_run_writes_every_artifact_with_provenance(tiny_run):
    wf, cfg = tiny_run
    n_hidden = cfg["train"]["n_hidden"]
    for session in ("tiny-a", "tiny-b"):
        res = wf / "results" / session
        files = ["spikes.nc", "truth.nc", "raster.nc", "loglik.nc", "selected.nc",
                 "statistics.nc", "couplings.nc", "dynamics.nc"]
        files += [f"hidden~{n}/{f}" for n in n_hidden for f in ("model.nc", "loglik.nc")]
        for name in files:
            ds = xr.open_dataset(res / name)
            for key in ("config", "seed", "spikerbm_version", "git_commit", "created_utc",
                        "device", "torch_version", "cuda_version", "numpy_version"):
                assert key in ds.attrs, f"{session}/{name} lacks provenance attr {key}"
            assert ds.attrs["session_id"] == session, name
            assert ds.attrs["device"] == "cpu" and ds.attrs["numpy_version"] == np.__version__
            ds.close()
        for fig in ("fig2_loglik", "fig3_statistics", "fig3_equilibration", "fig3_raster",
                    "fig4_couplings", "fig4_coupling_structure", "fig4_hidden_units",
                    "fig5_areas", "fig6_dynamics"):
            png = res / "figures" / f"{fig}.png"
            assert png.stat().st_size > 10_000
            meta = json.loads(Image.open(png).text["Description"])  # provenance in the PNG
            assert meta["data"]["session_id"] == session and "config" in meta["data"], fig
        assert "<table" in (res / "summary.html").read_text()
        assert not list(res.rglob("*.tmp")), "temporary files left behind"
        assert not list(res.rglob("resume.nc")), "resume state left after success"


def test_tiny_run_contents_are_consistent(tiny_run):
    wf, cfg = tiny_run
    tr = cfg["train"]
    res = wf / "results" / "tiny-b"
    raster = xr.open_dataset(res / "raster.nc")
    assert raster["raster"].dtype == np.uint8 and raster.sizes["neuron"] <= 21
    assert set(np.unique(raster["raster"].values)) <= {0, 1}
    assert set(np.unique(raster["split"].values)) == {"train", "test"}
    # the two sessions differ (seeds and sizes come from the sheet)
    other = xr.open_dataset(wf / "results" / "tiny-a" / "raster.nc")
    assert other.sizes["neuron"] == cfg["synthetic"]["n_neurons"] != raster.sizes["neuron"]
    model = xr.open_dataset(res / f"hidden~{tr['n_hidden'][0]}" / "model.nc")
    ckpt = model["checkpoint"].values
    assert len(ckpt) == tr["n_checkpoints"] and ckpt[0] == 0 and ckpt[-1] == tr["n_updates"]
    assert model["W"].shape == (tr["n_checkpoints"], raster.sizes["neuron"], tr["n_hidden"][0])
    assert model["log_z_tais"].dims == ("checkpoint",)  # sampler state lives in resume.nc only
    ll = xr.open_dataset(res / "loglik.nc")
    assert list(ll["n_hidden"].values) == tr["n_hidden"]
    sel = xr.open_dataset(res / "selected.nc")
    best = ll["ll_test"].where(np.isfinite(ll["ll_test"])).max().item()
    assert sel.attrs["ll_test"] == pytest.approx(best)
    assert int(sel.attrs["n_hidden"]) in tr["n_hidden"]
    stats = xr.open_dataset(res / "statistics.nc")
    assert int(stats.attrs["equilibrated"]) in (0, 1)
    dyn = xr.open_dataset(res / "dynamics.nc")
    assert dyn.attrs["ms_per_sweep"] > 0
    coup = xr.open_dataset(res / "couplings.nc")
    assert coup["J"].shape == (raster.sizes["neuron"],) * 2
    assert np.isfinite(coup.attrs["truth_pearson_J"])


def test_tiny_run_pairwise_baseline_and_atlas(tiny_run):
    """The baseline is fitted on the RBM's split, beats the independent-site model on test data
    (the planted sessions have pair structure), is scored like the RBM; the atlas pools both
    sessions, whose areas (A1, A2) it shares."""
    wf, cfg = tiny_run
    res = wf / "results"
    for session in ("tiny-a", "tiny-b"):
        raster = xr.open_dataset(res / session / "raster.nc")
        pw = xr.open_dataset(res / session / "pairwise.nc")
        assert list(pw["unit_id"].values) == list(raster["unit_id"].values)
        assert pw.attrs["n_train"] == int((raster["split"] == "train").sum())
        # spin convention of couplings.nc: J = J01 / 4
        np.testing.assert_allclose(pw["J"].values, pw["J01"].values / 4)
        assert pw.attrs["log_z_method"] == "ais" and pw.attrs["log_z_std"] > 0
        assert pw.attrs["ll_test"] > pw.attrs["floor_test"], pw.attrs
        ps = xr.open_dataset(res / session / "pairwise_statistics.nc")
        rs = xr.open_dataset(res / session / "statistics.nc")
        # scored on the same data subsets as the RBM: identical train and test statistics
        for stat in ("rate", "covariance", "corr3"):
            for split in ("train", "test", "independent"):
                np.testing.assert_array_equal(ps[stat].sel(set=split), rs[stat].sel(set=split))
        assert int(ps.attrs["equilibrated"]) in (0, 1) and "Ising" in ps.attrs["energy"]
    rows = (res / "tables" / "model_comparison.tsv").read_text().splitlines()
    head = rows[0].split("\t")
    table = {r.split("\t")[0]: dict(zip(head, r.split("\t"), strict=True)) for r in rows[1:]}
    assert set(table) == {"tiny-a", "tiny-b"}
    for session, row in table.items():
        pw = xr.open_dataset(res / session / "pairwise.nc").attrs
        # rounded to its uncertainty's precision, at least 4 significant digits (rel 5e-4)
        assert float(row["ll_test_pairwise"]) == pytest.approx(pw["ll_test_per_neuron"],
                                                               rel=5e-4)
        assert -1 <= float(row["j_pearson_r"]) <= 1
    atlas = xr.open_dataset(res / "atlas" / "atlas.nc")
    assert list(atlas["model"].values) == ["rbm", "pairwise"]
    assert list(atlas["region"].values) == ["A1", "A2"]
    assert list(atlas["session"].values) == ["tiny-a", "tiny-b"]
    assert (atlas["area_n_sessions"].values == 2).all() and atlas.attrs["single_session"] == 0
    # the pairwise model has no R (3-body) entry
    assert np.isnan(atlas["area_mean"].sel(model="pairwise", quantity="R")).all()
    pairs = (res / "tables" / "atlas_area_pairs.tsv").read_text().splitlines()
    assert len(pairs) == 1 + 3 * 3 + 2 * 3  # (A1,A1), (A1,A2), (A2,A2) per model and quantity


REPORT_FIGURES = {  # figure file -> (report category, subcategory)
    "fig2_loglik.png": ("Stage 4: log-likelihood and model selection",
                        "Fig. 2: log-likelihood along training"),
    "fig3_statistics.png": ("Stage 5: generated vs real statistics",
                            "Fig. 3: generated vs real statistics"),
    "fig3_equilibration.png": ("Stage 5: generated vs real statistics",
                               "Equilibration of the generated samples"),
    "fig3_raster.png": ("Stage 5: generated vs real statistics", "Real vs generated activity"),
    "fig4_couplings.png": ("Stage 6: effective couplings", "Fig. 4: effective couplings"),
    "fig4_coupling_structure.png": ("Stage 6: effective couplings",
                                    "Coupling matrix by area and against distance"),
    "fig4_hidden_units.png": ("Stage 6: effective couplings", "Hidden units by area"),
    "fig5_areas.png": ("Stage 6: effective couplings", "Fig. 5: couplings by brain area"),
    "fig6_dynamics.png": ("Stage 7: relaxation dynamics", "Fig. 6: relaxation dynamics"),
}
REPORT_TABLES = {
    "findings.html": "Findings (read first)",
    "selected_models.html": "Stage 4: log-likelihood and model selection",
    "statistics_scores.html": "Stage 5: generated vs real statistics",
    "couplings_summary.html": "Stage 6: effective couplings",
    "dynamics_summary.html": "Stage 7: relaxation dynamics",
    "model_comparison.html": "Stage 9: pairwise maximum-entropy baseline",
    "atlas_area_pairs.html": "Stage 10: cross-session area atlas",
    "atlas_within_across.html": "Stage 10: cross-session area atlas",
}
#: cross-session figures (results/figures/) -> report category
REPORT_RUN_FIGURES = {
    "pairwise_vs_rbm.png": "Stage 9: pairwise maximum-entropy baseline",
    "atlas.png": "Stage 10: cross-session area atlas",
}


def _report_json(text: str, name: str) -> dict:
    """A JSON object the HTML report embeds as `var <name> = {...};`."""
    match = re.search(rf'var {name} =\s*(?={{")', text)  # not the bundled libraries' vars
    assert match, f"no `var {name} = {{...}}` in the report"
    return json.JSONDecoder().raw_decode(text, match.end())[0]


def test_rerun_has_nothing_to_do_and_report_builds(tiny_run):
    wf, cfg = tiny_run
    proc = snakemake(wf, "-n", "--cores", "1")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr
    rep = snakemake(wf, "--report", "report.html")
    assert rep.returncode == 0, rep.stderr[-3000:]
    text = (wf / "report.html").read_text(errors="replace")
    results, categories = _report_json(text, "results"), _report_json(text, "categories")
    selected = {s: int(xr.open_dataset(wf / "results" / s / "selected.nc").attrs["n_hidden"])
                for s in ("tiny-a", "tiny-b")}
    sizes = ", ".join(str(n) for n in cfg["train"]["n_hidden"])
    for session, n_hidden in selected.items():
        for fig, (category, subcategory) in REPORT_FIGURES.items():
            path = f"results/{session}/figures/{fig}"
            assert path in categories[category][subcategory], (path, categories)
            entry = results[path]
            assert entry["mime_type"] == "image/png" and entry["data_uri"].startswith("data:")
            assert len(entry["caption"]) > 100, fig  # the rst caption, rendered
            label = f"{sizes} (all sizes)" if fig == "fig2_loglik.png" else f"{n_hidden} (selected)"
            assert entry["labels"] == {"session, hidden units": f"{session}, {label}"}, entry
        assert f"results/{session}/summary.html" in categories["Stage 8: per-session summary"][
            "Findings and key numbers"]
        path = f"results/{session}/figures/fig3_pairwise_statistics.png"
        assert path in categories["Stage 9: pairwise maximum-entropy baseline"][
            "Fig. 3 of the pairwise model"]
        assert results[path]["labels"] == {
            "session, hidden units": f"{session}, pairwise model (no hidden units)"}
    for fig, category in REPORT_RUN_FIGURES.items():
        path = f"results/figures/{fig}"
        assert any(path in paths for paths in categories[category].values()), fig
        assert results[path]["mime_type"] == "image/png" and len(results[path]["caption"]) > 100
    for table, category in REPORT_TABLES.items():
        path = f"results/tables/{table}"
        assert any(path in paths for paths in categories[category].values()), table
        assert results[path]["mime_type"] == "text/html" and results[path]["caption"]
    # the tables hold every session (and, for the selection, every hidden size)
    models = (wf / "results" / "tables" / "selected_models.tsv").read_text().splitlines()
    assert len(models) == 1 + 2 * len(cfg["train"]["n_hidden"])
    assert sum(line.endswith("\tselected") for line in models[1:]) == 2
    for session, n_hidden in selected.items():
        assert any(line.startswith(f"{session}\t{n_hidden}\t") and line.endswith("\tselected")
                   for line in models)
    for name in ("statistics_scores", "couplings_summary", "dynamics_summary"):
        rows = (wf / "results" / "tables" / f"{name}.tsv").read_text().splitlines()
        assert [r.split("\t")[0] for r in rows] == ["session", "tiny-a", "tiny-b"], name
    # the findings table holds exactly the findings of each session's summary.tsv
    found = (wf / "results" / "tables" / "findings.tsv").read_text().splitlines()
    assert found[0].split("\t") == ["session", "level", "code", "message"]
    for session in selected:
        summary = (wf / "results" / session / "summary.tsv").read_text().splitlines()
        codes = [r.split("\t")[1] for r in summary if r.startswith("finding\t")]
        assert codes and [r.split("\t")[2] for r in found if r.startswith(f"{session}\t")] == codes


def test_config_change_reruns_training_and_downstream_only(tiny_run, tmp_path):
    """After a training parameter changes, the dry run plans train and everything after it,
    never the data stages; --summary marks exactly the models as "params changed"."""
    wf = tmp_path / "changed"
    shutil.copytree(tiny_run[0], wf, symlinks=True)  # copy2 keeps mtimes and .snakemake
    cfg_path = wf / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["train"]["n_updates"] += 1
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = snakemake(wf, "-n", "--cores", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    n_models = 2 * len(cfg["train"]["n_hidden"])
    assert counts["train"] == counts["loglik"] == n_models
    for rule in ("select_model", "statistics", "couplings", "dynamics", "fig_loglik", "summary"):
        assert counts[rule] == 2, rule
    assert "synthetic_session" not in counts and "binarize" not in counts
    assert "Params have changed since last execution" in proc.stdout
    summary = snakemake(wf, "--summary")
    assert summary.returncode == 0, summary.stderr[-3000:]
    rows = [line.split("\t") for line in summary.stdout.splitlines()[1:] if "\t" in line]
    status = {row[0]: (row[4], row[5]) for row in rows}
    changed = {f for f, (st, _) in status.items() if st == "params changed"}
    assert changed == {f"results/{s}/hidden~{n}/model.nc" for s in ("tiny-a", "tiny-b")
                       for n in cfg["train"]["n_hidden"]}, status
    for s in ("tiny-a", "tiny-b"):
        assert status[f"results/{s}/raster.nc"] == ("ok", "no update")
        assert status[f"results/{s}/selected.nc"] == ("ok", "update pending")


def _changed_copy(tiny_run, dest: Path, change) -> tuple[Path, dict]:
    """A copy of the finished tiny run (mtimes and .snakemake kept) with `change(cfg)` applied
    to its config."""
    shutil.copytree(tiny_run[0], dest, symlinks=True)
    cfg_path = dest / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    change(cfg)
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest, cfg


def _summary_status(wf: Path) -> dict[str, tuple[str, str]]:
    """`snakemake --summary`: {output file: (status, plan)}."""
    summary = snakemake(wf, "--summary")
    assert summary.returncode == 0, summary.stderr[-3000:]
    rows = [line.split("\t") for line in summary.stdout.splitlines()[1:] if "\t" in line]
    return {row[0]: (row[4], row[5]) for row in rows}


def test_new_hidden_size_plans_only_its_models_and_the_aggregation(tiny_run, tmp_path):
    """Adding a size to train.n_hidden trains and scores only the new size; the existing models
    keep their params (each train/loglik job gets its own size, not the list), and only the
    per-session aggregation (selection) and what follows it rerun."""
    new = max(TINY_CONFIG["train"]["n_hidden"]) + 2
    wf, cfg = _changed_copy(tiny_run, tmp_path / "more",
                            lambda c: c["train"]["n_hidden"].append(new))
    proc = snakemake(wf, "-n", "--cores", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts["train"] == counts["loglik"] == 2  # one new model per session
    for rule in ("select_model", "statistics", "couplings", "dynamics", "fig_loglik", "summary"):
        assert counts[rule] == 2, (rule, counts)
    assert "synthetic_session" not in counts and "binarize" not in counts
    planned = set(re.findall(r"output: (\S+/hidden~\d+/\w+\.nc)", proc.stdout))
    assert planned == {f"results/{s}/hidden~{new}/{f}.nc" for s in ("tiny-a", "tiny-b")
                       for f in ("model", "loglik")}, planned
    status = _summary_status(wf)
    for s in ("tiny-a", "tiny-b"):
        for n in TINY_CONFIG["train"]["n_hidden"]:
            for f in ("model", "loglik"):
                assert status[f"results/{s}/hidden~{n}/{f}.nc"] == ("ok", "no update"), status
        assert status[f"results/{s}/hidden~{new}/model.nc"][1] == "update pending"
        # the selection now has one more model to choose from
        assert status[f"results/{s}/selected.nc"] == ("set of input files changed",
                                                      "update pending")


def test_statistics_change_replans_statistics_and_downstream_only(tiny_run, tmp_path):
    wf, _ = _changed_copy(tiny_run, tmp_path / "stats",
                          lambda c: c["statistics"].update(n_samples=c["statistics"]["n_samples"]
                                                           + 1))
    proc = snakemake(wf, "-n", "--cores", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    # the pairwise baseline is scored with the same statistics settings (n_samples), so it
    # reruns too (fit and scoring are one job), and with it what reads pairwise.nc: the model
    # comparison and the atlas (its pairwise J); nothing else
    assert counts == {"statistics": 2, "fig_statistics": 2, "summary": 2, "report_tables": 1,
                      "pairwise": 2, "compare_models": 1, "atlas": 1, "fig_atlas": 1, "all": 1,
                      "total": 13}, counts
    status = _summary_status(wf)
    changed = {f for f, (st, _) in status.items() if st == "params changed"}
    assert changed == {f"results/{s}/{f}" for s in ("tiny-a", "tiny-b") for f in (
        "statistics.nc", "pairwise.nc", "pairwise_statistics.nc",
        "figures/fig3_pairwise_statistics.png")}, changed


def test_atlas_and_pairwise_switch_off(tiny_run, tmp_path):
    """`atlas.enabled: false` and `pairwise.enabled: false` drop exactly their rules; an atlas
    setting reruns only the atlas, its figure and the findings table (which judges it). An
    atlas threshold no area reaches (the new-user trial: small areas) gives an empty atlas and
    a caution, and the run ends with its tables and figure."""
    wf, _ = _changed_copy(tiny_run, tmp_path / "atlas",
                          lambda c: c["atlas"].update(min_area_neurons=50))
    proc = snakemake(wf, "-n", "--cores", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout) == {"atlas": 1, "fig_atlas": 1, "report_tables": 1,
                                       "all": 1, "total": 4}
    proc = snakemake(wf, "--cores", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = wf / "results"
    assert xr.open_dataset(res / "atlas" / "atlas.nc").sizes["region"] == 0
    assert len((res / "tables" / "atlas_area_pairs.tsv").read_text().splitlines()) == 1
    assert (res / "figures" / "atlas.png").stat().st_size > 5_000
    rows = [r.split("\t") for r in (res / "tables" / "findings.tsv").read_text().splitlines()]
    (atlas_row,) = [r for r in rows if r[0] == "atlas (all sessions)"]
    assert atlas_row[1:3] == ["caution", "atlas_empty"] and "min_area_neurons" in atlas_row[3]
    off = tmp_path / "off"
    _changed_copy(tiny_run, off, lambda c: (c["atlas"].update(enabled=False),
                                            c["pairwise"].update(enabled=False)))
    proc = snakemake(off, "-n", "--cores", "1", "--forceall")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert not {"pairwise", "compare_models", "atlas", "fig_atlas"} & set(counts), counts
    assert counts["statistics"] == 2


def _user_raster(path: Path, *, bin_ms: float) -> None:
    """A valid `source: raster` file (docs/data-model.md, raster input) of 240 bins x 9 neurons."""
    rng = np.random.default_rng(5)
    xr.Dataset({"raster": (("time_bin", "neuron"), (rng.random((240, 9)) < 0.2).astype(np.uint8))},
               coords={"unit_id": ("neuron", np.arange(40, 49, dtype=np.int64)),
                       "area": ("neuron", np.array(["V1"] * 5 + ["LGN"] * 4))},
               attrs={"bin_ms": bin_ms}).to_netcdf(path)


def test_raster_session_ignores_binarization_settings(workflow_dir, tmp_path):
    """A user raster is binned already: its job gets only the train/test split settings, so
    changing binarize.bin_ms (or epochs) neither reruns it nor appears in its provenance."""
    raster = tmp_path / "mine.nc"
    _user_raster(raster, bin_ms=7.0)
    wf = workflow_dir(sessions=f"session_id\tsource\tparams\nmine\traster\tpath={raster}\n"
                               "syn\tsynthetic\tseed=1\n")
    targets = ("results/mine/raster.nc", "results/syn/raster.nc")
    proc = snakemake(wf, "--cores", "2", *targets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ds = xr.open_dataset(wf / targets[0])
    config = json.loads(ds.attrs["config"])
    assert set(config) == {"n_blocks", "n_test_blocks", "path"}, config  # no bin_ms, no epochs
    assert ds.attrs["bin_ms"] == 7.0  # the raster's own bin width, not binarize.bin_ms (20)
    ds.close()
    cfg_path = wf / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["binarize"].update(bin_ms=10, epochs=["active"])
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = snakemake(wf, "-n", "--cores", "1", *targets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout) == {"binarize": 1, "total": 1}  # the synthetic one only
    assert "output: results/syn/raster.nc" in proc.stdout


def _planned_paths(dry_run_output: str) -> set[str]:
    """Every output, log and benchmark file a dry run plans to write."""
    paths = set()
    for value in re.findall(r"^\s+(?:output|log|benchmark): (.+)$", dry_run_output, re.M):
        paths |= {p.strip() for p in value.split(", ")}
    return paths


def test_runs_with_different_configs_never_share_a_path(tiny_run):
    """config/vbn.yaml has its own namespace (results_dir: results-vbn): its dry run, in the
    checkout where the default run finished, plans nothing over the default run's results,
    tables or report, and nothing of the default run is planned again."""
    wf, _ = tiny_run
    vbn = snakemake(wf, "-n", "--cores", "1", "--configfile", "config/vbn.yaml")
    assert vbn.returncode == 0, vbn.stderr[-3000:]
    planned = _planned_paths(vbn.stdout)
    assert len(planned) > 20 and "results-vbn/tables/selected_models.html" in planned, planned
    assert all(p.startswith("results-vbn/") for p in planned), sorted(planned)[:10]
    default = _planned_paths(snakemake(wf, "-n", "--cores", "1", "--forceall").stdout)
    assert "results/tables/selected_models.html" in default and not planned & default
    again = snakemake(wf, "-n", "--cores", "1")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_slurm_profile_maps_gpu_resources(workflow_dir):
    wf = workflow_dir()
    proc = snakemake(wf, "-n", "--profile", "profiles/slurm", "--workflow-profile", "none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    blocks = proc.stdout.split("\nrule ")
    train = [b for b in blocks if b.startswith("train:")]
    n_sessions = len((wf / "config" / "sessions.tsv").read_text().strip().splitlines()) - 1
    assert len(train) == n_sessions * len(TINY_CONFIG["train"]["n_hidden"])
    for block in train:
        res = re.search(r"resources: (.*)", block)[1]
        assert "gpu=1" in res and "runtime=720" in res and "mem_mb=16000" in res, res
    select = re.search(r"resources: (.*)", next(b for b in blocks
                                                if b.startswith("select_model:")))[1]
    assert "gpu=0" in select and "runtime=10" in select, select
