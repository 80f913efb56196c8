"""Export to and import from the rbms 0.6.0 HDF5 archive layout (spikerbm.rbms_io)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from model_run import AREAS, N_HIDDEN, N_NEURONS, UNIT_IDS

import spikerbm
from spikerbm import io
from spikerbm.rbms_io import export_rbms, import_rbms


def test_export_writes_every_array_in_the_rbms_layout(tiny_model_run, tmp_path):
    """Read back with h5py exactly what rbms 0.6.0's readers access: get_saved_updates (keys
    update_<t>), load_params (update_<t>/params/{weight_matrix,vbias,hbias}, model_type),
    load_model (parallel_chains, update_<t>/time), restore_rng_state (torch_rng_state,
    numpy_rng_arg0..4), get_flagged_updates (flags/<flag>), and fastrbm's PTT flag."""
    model = io.read_netcdf(tiny_model_run["model"])
    out = export_rbms(model, tmp_path / "tiny.h5", n_chains=17, seed=3)
    cks = model["checkpoint"].values
    with h5py.File(out, "r") as f:
        assert f["model_type"][()] == b"BBRBM"
        assert sorted(int(k[7:]) for k in f if k.startswith("update_")) == list(cks)
        for k, t in enumerate(cks):
            g = f[f"update_{t}"]
            for name, var in (("weight_matrix", "W"), ("vbias", "a"), ("hbias", "b")):
                ref = model[var].values[k]
                assert g["params"][name].dtype == np.float32
                assert np.array_equal(g["params"][name][()], ref)
                assert np.array_equal(g[name][()], ref)  # the retro-compatible copy
            assert g["flags"]["ptt"][()] and g["flags"]["checkpoint"][()]
            assert g["save_ptt"][()]
            assert g["torch_rng_state"].dtype == np.uint8 and g["torch_rng_state"].size > 0
            assert g["numpy_rng_arg0"][()].decode("utf-8") == "MT19937"
            assert g["numpy_rng_arg1"].shape == (624,)
            assert float(g["time"][()]) == 0.0
            assert g["learning_rate"][()].tolist() == [pytest.approx(0.1)]
        chains = f["parallel_chains"][()]
        assert chains.shape == (17, N_NEURONS) and set(np.unique(chains)) <= {0.0, 1.0}
        h = f["hyperparameters"]
        assert (h["num_visibles"][()], h["num_hiddens"][()], h["num_chains"][()]) == (
            N_NEURONS, N_HIDDEN, 17)
        assert f["sampling_args"]["gibbs_steps"][()] == 5
        assert not f["grad_args"]["no_center"][()]
        assert list(f["spikerbm"]["unit_id"][()]) == list(UNIT_IDS)
        assert [x.decode() for x in f["spikerbm"]["area"][()]] == list(AREAS)
        assert np.allclose(f["spikerbm"]["log_z_tais"][()], model["log_z_tais"].values,
                           equal_nan=True)


def test_round_trip_model_and_selected(tiny_model_run, tmp_path):
    model = io.read_netcdf(tiny_model_run["model"])
    back = import_rbms(export_rbms(model, tmp_path / "m.h5"))
    for var in ("W", "a", "b"):
        assert back[var].dims == model[var].dims
        assert np.array_equal(back[var].values, model[var].values)
    assert np.array_equal(back["checkpoint"].values, model["checkpoint"].values)
    assert list(back["unit_id"].values) == list(UNIT_IDS)
    assert list(back["area"].values) == list(AREAS)
    # the imported trajectory is a model the API (and every stage) can use
    path = io.write_netcdf(back, tmp_path / "imported" / "model.nc",
                           attrs={"spikerbm_version": spikerbm.__version__})
    api = spikerbm.load_model(path, checkpoint="last")
    ref = spikerbm.load_model(tiny_model_run["model"], checkpoint="last")
    v = ref.sample(20, sweeps=3, seed=0)["samples"].values
    assert np.allclose(api.free_energy(v), ref.free_energy(v))
    assert api.log_z.method == "exact"  # computed: the archive carries no log Z
    # a selected.nc exports as one update
    sel = io.read_netcdf(tiny_model_run["selected"])
    one = import_rbms(export_rbms(sel, tmp_path / "s.h5"))
    assert one["checkpoint"].values.tolist() == [int(sel.attrs["checkpoint"])]
    assert np.array_equal(one["W"].values[0], sel["W"].values)


def test_import_errors(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"not hdf5")
    with pytest.raises(io.InputError, match="not an HDF5 file"):
        import_rbms(tmp_path / "x.h5")
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f["model_type"] = "PBRBM"
        f.create_group("update_1")
    with pytest.raises(io.InputError, match="only BBRBM"):
        import_rbms(tmp_path / "p.h5")
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(io.InputError, match="not an rbms archive"):
        import_rbms(tmp_path / "e.h5")
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["model_type"] = "BBRBM"
        g = f.create_group("update_1").create_group("params")
        g["weight_matrix"], g["vbias"], g["hbias"] = np.zeros((3, 2)), np.zeros(4), np.zeros(2)
    with pytest.raises(io.InputError, match="disagrees"):
        import_rbms(tmp_path / "s.h5")


def test_rbms_own_loader_reads_the_export(tiny_model_run, tmp_path):
    """With rbms 0.6.0 installed (Python >= 3.12; not in this project's environment: run on a
    machine that has it, e.g. the benchmark GPU box), its own loaders read the export."""
    rbms_io = pytest.importorskip("rbms.io")
    import torch
    from rbms.utils import get_flagged_updates, get_saved_updates

    model = io.read_netcdf(tiny_model_run["model"])
    out = str(export_rbms(model, tmp_path / "tiny.h5"))
    assert list(get_saved_updates(out)) == list(model["checkpoint"].values)
    assert list(get_flagged_updates(out, "ptt")) == list(model["checkpoint"].values)
    last = int(model["checkpoint"].values[-1])
    params, chains, _ = rbms_io.load_model(out, last, device="cpu", dtype=torch.float32,
                                           restore=True)
    assert np.array_equal(params.weight_matrix.numpy(), model["W"].values[-1])
    assert np.array_equal(params.vbias.numpy(), model["a"].values[-1])
    assert np.array_equal(params.hbias.numpy(), model["b"].values[-1])
    assert chains["visible"].shape[1] == N_NEURONS
