"""Snakemake adapter: RBM vs pairwise baseline vs independent-site model over every session
-> tables/model_comparison.tsv / .html and figures/pairwise_vs_rbm.png."""

import numpy as np
import pandas as pd
import torch

from spikerbm import binarize, io, report
from spikerbm.model import primary_replica
from spikerbm.pairwise import energy, model_comparison, model_from_dataset
from spikerbm.plotting import fig_pairwise_vs_rbm
from spikerbm.rbm import free_energy, rbm_from_dataset

snakemake = globals()["snakemake"]
log = io.job_logger(snakemake.log[0], "compare_models")

sessions = list(snakemake.params.sessions)
inp = snakemake.input
rows, pairs = [], {}
for k, session in enumerate(sessions):
    couplings = io.read_netcdf(inp.couplings[k])[["J"]].load()
    pw = io.read_netcdf(inp.pairwise[k])[["J"]].load()
    pw.attrs = io.read_attrs(inp.pairwise[k])
    # both models' energies of every test bin: the paired error of the LL difference
    selected = primary_replica(io.read_netcdf(inp.selected[k]))
    test = binarize.split_arrays(io.read_netcdf(inp.raster[k]))["test"]
    rbm = rbm_from_dataset(selected, device="cpu").to(dtype=torch.float64)
    ising = model_from_dataset(io.read_netcdf(inp.pairwise[k]))
    energies = (free_energy(rbm, torch.as_tensor(test, dtype=torch.float64)).numpy(),
                energy(ising, test).numpy())
    row = model_comparison(session=session, selected=dict(selected.attrs),
                           statistics=io.read_attrs(inp.statistics[k]), couplings=couplings,
                           pairwise=pw,
                           pairwise_statistics=io.read_attrs(inp.pairwise_statistics[k]),
                           test_energies=energies)
    rows.append(row)
    iu = np.triu_indices(couplings.sizes["neuron"], 1)
    pairs[session] = (pw["J"].transpose("neuron", "neuron2").values[iu],
                      couplings["J"].transpose("neuron", "neuron2").values[iu])
    log.info("%s: LL test/neuron RBM %.5f pairwise %.5f independent %.5f; score 3pt RBM %.3f "
             "pairwise %.3f; r(J) %.3f slope %.3f", session, row["ll_test_rbm"],
             row["ll_test_pairwise"], row["ll_test_independent"], row["score_corr3_rbm"],
             row["score_corr3_pairwise"], row["j_pearson_r"], row["j_slope"])
io.write_text(report.rounded(pd.DataFrame(rows), report.MODEL_COMPARISON_ERRORS)
              .to_csv(sep="\t", index=False), snakemake.output.tsv)
io.write_text(report.table_html(
    report.model_comparison_table(rows),
    title="What the RBM's hidden units buy: RBM vs pairwise (Ising) vs independent-site model",
    note="Test log-likelihoods in nats per neuron per sample, ± the log Z uncertainty (1 s.d.; "
         "exact log Z: none shown); the RBM - pairwise gain also has its test-set error "
         "(s.e. of the paired per-bin difference). Scores: 0 = independent-site model, 1 = as "
         "close to train as the test set (docs/methods.md §5). r and slope: the RBM's "
         "effective J_ij against the pairwise J_ij (spin convention, all i<j)."),
    snakemake.output.html)
io.save_figure(fig_pairwise_vs_rbm(pairs, rows), snakemake.output.figure,
               attrs={"session_id": ",".join(sessions)})
log.info("compared %d sessions", len(rows))
