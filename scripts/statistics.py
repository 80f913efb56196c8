"""Snakemake adapter: generated-vs-real statistics of a session's selected model (statistics.nc)."""

import time

from spikerbm import binarize, io
from spikerbm.binarize import check_raster
from spikerbm.model import primary_replica, with_replica_dim
from spikerbm.provenance import derive_seed, provenance_attrs
from spikerbm.rbm import check_rbm_dataset, rbm_from_dataset, resolve_device
from spikerbm.statistics import compute_statistics

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "statistics")

session = snakemake.wildcards.session
params = dict(snakemake.params.statistics)
sampler = params.pop("sampler", "gibbs")
ptt_models = int(params.pop("ptt_models", 0)) or None
raster = io.read_checked(snakemake.input.raster, check_raster)
selected = io.read_checked(snakemake.input.selected, check_rbm_dataset,
                           n_visible=raster.sizes["neuron"])
selected = primary_replica(selected)  # statistics of one replica (selected.nc attrs)
n_hidden = int(selected.attrs["n_hidden"])
seed = derive_seed(snakemake.params.seed, "statistics", session, n_hidden)
device = resolve_device(snakemake.params.device)
rbm = rbm_from_dataset(selected, device=device)
splits = binarize.split_arrays(raster)
log.info("session %s: n_hidden %d, train %s, test %s, device %s, params %s", session, n_hidden,
         splits["train"].shape, splits["test"].shape, device, params)

ladder = updates = None
if sampler == "ptt":  # the selected size's trajectory, up to the selected checkpoint
    from spikerbm.ptt import ladder_indices
    from spikerbm.rbm import rbm_from_numpy

    files = dict(zip(snakemake.params.n_hidden, snakemake.input.trajectory, strict=True))
    traj = io.read_checked(files[n_hidden], check_rbm_dataset,
                           n_visible=raster.sizes["neuron"])
    traj = with_replica_dim(traj).sel(replica=int(selected.attrs.get("primary_replica", 0)),
                                      drop=True)
    cks = traj["checkpoint"].values
    idx = ladder_indices(cks, int(selected.attrs["checkpoint"]), max_models=ptt_models)
    if len(idx) < 2:
        raise io.InputError(f"statistics.sampler: ptt needs checkpoints before the selected "
                            f"one (update {selected.attrs['checkpoint']} is the first); use "
                            "statistics.sampler: gibbs for this session")
    ladder = [rbm_from_numpy(traj["W"].values[k], traj["a"].values[k], traj["b"].values[k],
                             device=device) for k in idx]
    updates = [int(cks[k]) for k in idx]
    log.info("PTT ladder: %d checkpoints %s", len(updates), updates)

start = time.perf_counter()
ds = compute_statistics(rbm, train=splits["train"], test=splits["test"], seed=seed,
                        neuron_coords={"unit_id": raster["unit_id"].values,
                                       "area": raster["area"].values},
                        ladder=ladder, ladder_updates=updates, **params)
a = ds.attrs
log.info("done in %.1f s: tau_E %.3g tau_K %.3g sweeps, z_E %.2f z_K %.2f; scores cov %.3f "
         "corr3 %.3f; r(train, gen) rate %.3f cov %.3f corr3 %.3f", time.perf_counter() - start,
         a["tau_energy_sweeps"], a["tau_k_sweeps"], a["z_energy"], a["z_k"],
         a["score_covariance"], a["score_corr3"], a["rate_r_train_generated"],
         a["covariance_r_train_generated"], a["corr3_r_train_generated"])
log.info("effective independent generated samples of %d (tau in samples %d sweeps apart): "
         "rate %.0f (%.2f), covariance %.0f (%.2f), corr3 %.0f (%.2f), energy %.0f (%.2f); "
         "score cov %.3f +- %.3f, corr3 %.3f +- %.3f", params["n_samples"],
         params["thin_sweeps"], a["n_eff_rate"], a["tau_samples_rate"], a["n_eff_covariance"],
         a["tau_samples_covariance"], a["n_eff_corr3"], a["tau_samples_corr3"],
         a["n_eff_energy"], a["tau_samples_energy"], a["score_covariance"],
         a["score_covariance_std"], a["score_corr3"], a["score_corr3_std"])
if sampler == "ptt":
    log.info("PTT swap acceptance per neighbour pair: %s (min %.3f)",
             " ".join(f"{lo}->{hi}: {r:.3f}" for lo, hi, r in zip(
                 ds["ptt_update_lo"].values, ds["ptt_update_hi"].values,
                 ds["ptt_acceptance"].values, strict=True)), a["ptt_min_acceptance"])
if a["equilibrated"] != 1:
    log.warning("SESSION %s: MODEL SAMPLES ARE NOT EQUILIBRATED (%s); statistics.nc is flagged "
                "equilibrated=0: raise statistics.burn_in_sweeps", session,
                a["equilibration_reason"])
params.update(sampler=sampler, ptt_models=ptt_models or 0)
attrs = provenance_attrs(config={"statistics": params, "seed": snakemake.params.seed,
                                 "device": snakemake.params.device},
                         seed=seed, session_id=session, n_hidden=n_hidden)
io.write_netcdf(ds, snakemake.output.statistics, attrs=attrs)
