"""Snakemake adapter: the cross-session area atlas of every session's effective couplings
(J, |J|, R of the RBM; J, |J| of the pairwise baseline when it is on) -> atlas/atlas.nc and
the report tables tables/atlas_*.tsv / .html."""

import numpy as np

from spikerbm import io, report
from spikerbm.atlas import atlas_by_model, atlas_tables, build_atlas
from spikerbm.findings import atlas_findings
from spikerbm.provenance import derive_seed, provenance_attrs

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "atlas")

sessions = list(snakemake.params.sessions)
params = dict(snakemake.params.atlas)
seed = derive_seed(snakemake.params.seed, "atlas")
options = {"min_area_neurons": params["min_area_neurons"], "ccf_level": params["ccf_level"],
           "exclude_areas": params["exclude_areas"], "n_boot": params["n_resamples"],
           "ci": params["confidence"], "session_interval": params["session_interval"],
           "seed": seed}
models = {"rbm": ("couplings", ("J", "J_abs", "R"))}
if "pairwise" in snakemake.input.keys():
    models["pairwise"] = ("pairwise", ("J", "J_abs"))
atlases = {}
for model, (artifact, quantities) in models.items():
    data = {}
    for session, path in zip(sessions, snakemake.input[artifact], strict=True):
        ds = io.read_netcdf(path)
        data[session] = ds[[v for v in ("J", "R") if v in ds]].load()
        ds.close()
    try:
        atlases[model] = build_atlas(data, quantities=quantities, **options)
    except ValueError as err:  # one line naming the config keys to change
        raise io.InputError(f"atlas ({model}): {err} (config: atlas.ccf_level = "
                            f"{params['ccf_level']!r}, atlas.exclude_areas = "
                            f"{params['exclude_areas']}; or atlas.enabled: false)") from None
    log.info("%s: %d regions over %d sessions", model, atlases[model].sizes["region"],
             len(sessions))
atlas = atlas_by_model(atlases)
# the tables at the precision their uncertainties support (report.rounded)
pairs, areas = (report.rounded(t, report.ATLAS_ERRORS) for t in atlas_tables(atlas))
note = atlas.attrs["interval_note"]
if atlas.attrs["empty_reason"]:  # small recordings: an empty atlas, judged by the findings
    note = f"EMPTY ATLAS: {atlas.attrs['empty_reason']}"
    log.warning("%s", atlas_findings(atlas)[0].message)
elif atlas.attrs["single_session"]:
    log.warning("ONE SESSION in this run: %s", note)
for model in atlas["model"].values:
    sub = atlas.sel(model=model, quantity="J")
    for region, d, p in zip(atlas["region"].values, sub["delta"].values,
                            sub["delta_p_value"].values, strict=True):
        if np.isfinite(d):
            log.info("%s J %s: within - across %.4g, p %.3g", model, region, d, p)
config = {"atlas": params, "seed": snakemake.params.seed}
io.write_netcdf(atlas, snakemake.output.atlas, attrs=provenance_attrs(
    config=config, seed=seed, session_id=",".join(sessions), device="cpu"))
io.write_text(pairs.to_csv(sep="\t", index=False), snakemake.output.area_pairs)
io.write_text(areas.to_csv(sep="\t", index=False), snakemake.output.within_across)
for table, out, title in (
        (pairs, snakemake.output.area_pairs_html, "Area atlas: coarse-grained couplings per "
         "pair of areas, pooled over sessions"),
        (areas, snakemake.output.within_across_html, "Area atlas: within-area minus "
         "across-area couplings per area")):
    io.write_text(report.table_html(report.formatted(table, digits=None), title=title,
                                    note=note), out)
log.info("atlas: %d area pairs, %d area rows", len(pairs), len(areas))
