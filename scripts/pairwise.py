"""Snakemake adapter: the pairwise maximum-entropy baseline of a session (pairwise.nc), its
generated statistics scored like the RBM's (pairwise_statistics.nc) and their Fig. 3."""

import time

from spikerbm import binarize, io, pairwise
from spikerbm.binarize import check_raster
from spikerbm.plotting import fig_statistics
from spikerbm.provenance import derive_seed, provenance_attrs
from spikerbm.rbm import resolve_device
from spikerbm.statistics import score_statistics

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "pairwise")

session = snakemake.wildcards.session
params = dict(snakemake.params.config["pairwise"])
scoring = dict(snakemake.params.config["statistics"])
raster = io.read_checked(snakemake.input.raster, check_raster)
# the RBM's statistics seed: the same train/test subsets, independent samples and triplets
n_hidden = int(io.read_attrs(snakemake.input.selected)["n_hidden"])
seed = derive_seed(snakemake.params.seed, "pairwise", session)
score_seed = derive_seed(snakemake.params.seed, "statistics", session, n_hidden)
device = resolve_device(snakemake.params.device)
splits = binarize.split_arrays(raster)
coords = {"unit_id": raster["unit_id"].values, "area": raster["area"].values}
log.info("session %s: train %s, test %s, device %s, params %s, scoring %s", session,
         splits["train"].shape, splits["test"].shape, device, params, scoring)

start = time.perf_counter()
model, ds = pairwise.fit_session(
    splits["train"], splits["test"], seed=seed, device=device, **coords,
    **{k: params[k] for k in ("l2", "max_iter", "refine_steps", "refine_chains", "refine_lr",
                              "exact_max_neurons", "ais_chains", "ais_betas", "ais_repeats")})
a = ds.attrs
log.info("fit in %.1f s (PL %d iterations, converged %d): log Z %.6g +- %.2g (%s); LL test "
         "%.5g nats/sample (%.5g per neuron; independent %.5g)", time.perf_counter() - start,
         a["pl_n_iter"], a["pl_converged"], a["log_z"], a["log_z_std"], a["log_z_method"],
         a["ll_test"], a["ll_test_per_neuron"], a["floor_test_per_neuron"])

start = time.perf_counter()
eq = pairwise.sample_equilibrium(
    model, init_data=splits["train"], n_samples=scoring["n_samples"],
    n_chains=params["n_chains"], burn_in_sweeps=params["burn_in_sweeps"],
    thin_sweeps=params["thin_sweeps"], seed=derive_seed(seed, "sampling"),
    tau_factor=scoring["tau_factor"], z_max=scoring["z_max"])
stats = score_statistics(
    train=splits["train"], test=splits["test"], generated=eq["samples"].values,
    energy=lambda v: pairwise.energy(model, v).cpu().numpy(),
    effective_field=lambda v: pairwise.effective_fields(model, v),
    n_samples=scoring["n_samples"], n_triplets=scoring["n_triplets"],
    heff_bins=scoring["heff_bins"], energy_bins=scoring["energy_bins"], seed=score_seed,
    device=device, equilibrium_attrs={**eq.attrs, "energy": "Ising energy E(v) = -h.v - "
                                      "sum_{i<j} J_ij v_i v_j ({0,1} convention)"},
    traces=eq[["trace_energy", "trace_k"]], neuron_coords=coords)
stats.attrs["model"] = "pairwise"
s = stats.attrs
log.info("statistics in %.1f s: tau_E %.3g tau_K %.3g sweeps, z_E %.2f z_K %.2f; scores cov "
         "%.3f corr3 %.3f", time.perf_counter() - start, s["tau_energy_sweeps"],
         s["tau_k_sweeps"], s["z_energy"], s["z_k"], s["score_covariance"], s["score_corr3"])
if s["equilibrated"] != 1:
    log.warning("SESSION %s: PAIRWISE MODEL SAMPLES ARE NOT EQUILIBRATED (%s): raise "
                "pairwise.burn_in_sweeps (or pairwise.refine_steps when the chains leave the "
                "data's activity)", session, s["equilibration_reason"])
config = {"pairwise": params, "seed": snakemake.params.seed, "device": snakemake.params.device}
io.write_netcdf(ds, snakemake.output.pairwise,
                attrs=provenance_attrs(config=config, seed=seed, session_id=session))
io.write_netcdf(stats, snakemake.output.statistics, attrs=provenance_attrs(
    config={**config, "statistics": scoring}, seed=score_seed, session_id=session,
    n_hidden_scored_alike=n_hidden))
io.save_figure(fig_statistics(stats), snakemake.output.fig3, attrs=stats.attrs)
