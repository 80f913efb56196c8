"""Figures. Every function takes xarray data, returns a matplotlib Figure, and never saves it
(scripts save through :func:`spikerbm.io.save_figure`). Styling comes from :mod:`spikerbm.style`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from spikerbm import style

__all__ = ["np", "xr", "Figure", "style"]


# --- Fig. 3: generated vs real statistics (helper E) ------------------------------------------
def _stat_scatter(ax, ds: xr.Dataset, stat: str, label: str, *, max_points: int = 20000) -> None:
    """Train (x) vs test (red) and vs generated (green) for one statistic, fits in the legend."""
    from matplotlib.ticker import MaxNLocator

    x = ds[stat].sel(set="train").values.astype(float)
    rng = np.random.default_rng(0)  # display subsample only; r and slope use every entry
    show = np.sort(rng.choice(x.size, size=min(x.size, max_points), replace=False))
    for other, comp, color in (("test", "train_test", style.COLORS["train_test"]),
                               ("generated", "train_generated",
                                style.COLORS["train_generated"])):
        y = ds[stat].sel(set=other).values.astype(float)
        r = float(ds["pearson_r"].sel(stat=stat, comparison=comp))
        slope = float(ds["slope"].sel(stat=stat, comparison=comp))
        legend = f"{other}: slope {slope:.2f}, r {r:.2f}"
        se_name = f"{stat}_se_generated"
        if other == "generated" and se_name in ds and np.isfinite(ds[se_name].values).any():
            # 1-sigma Monte Carlo error of each generated value from the effective number of
            # independent samples (docs/methods.md section 5)
            ax.errorbar(x[show], y[show], yerr=ds[se_name].values[show], fmt="none",
                        ecolor=color, elinewidth=0.4, alpha=0.3, rasterized=True)
            legend += f", n_eff {float(ds['n_eff'].sel(stat=stat)):.0f}"
        ax.scatter(x[show], y[show], s=3, alpha=0.4, color=color, lw=0, rasterized=True,
                   label=legend)
    lo, hi = np.nanmin(x), np.nanmax(x)
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.8, ls="--")
    ax.xaxis.set_major_locator(MaxNLocator(4))  # long tick labels of small correlations
    ax.set_xlabel(f"{label} (train)")
    ax.set_ylabel(f"{label} (test / generated)")
    ax.legend(loc="upper left", markerscale=3, handletextpad=0.2)


def fig_statistics(ds: xr.Dataset, *, max_points: int = 3000) -> Figure:
    """Fig. 3: generated vs real statistics of the selected model (docs/methods.md §5).

    Panels: (a) PCA projection (train black, generated red) with marginal histograms;
    (b-d) rates, covariances and 3-point correlations, train vs test (red) and vs generated
    (green) with each generated value's 1-sigma Monte Carlo error from the effective number
    of independent samples ``n_eff``, slope, Pearson r and ``n_eff`` in the legend; (e) P(K);
    (f) energy histograms; (g) P(v_i = 1 | h_eff) vs sigmoid(h_eff) with s.e.m. and the
    diagonal; plus a summary panel with scores ± their Monte Carlo error, ``n_eff`` and the
    equilibration check (a failed check also titles the figure).

    Parameters
    ----------
    ds
        A ``statistics.nc`` dataset (:func:`spikerbm.statistics.compute_statistics`).
    max_points
        Points per set drawn in the PCA scatter (display subsample).
    """
    fig, axs = style.subplots(2, 4)
    ax_a = axs[0, 0]
    ax_a.set_axis_off()
    style.panel_label(ax_a, "a")
    main = ax_a.inset_axes([0.0, 0.0, 0.74, 0.74])
    top = ax_a.inset_axes([0.0, 0.77, 0.74, 0.23], sharex=main)
    right = ax_a.inset_axes([0.77, 0.0, 0.23, 0.74], sharey=main)
    rng = np.random.default_rng(0)
    for name, color in (("train", style.COLORS["train"]),
                        ("generated", style.COLORS["generated"])):
        p = ds["pca"].sel(set=name).values
        p = p[: int(ds["n_used"].sel(set=name))]
        show = rng.choice(p.shape[0], size=min(p.shape[0], max_points), replace=False)
        main.scatter(p[show, 0], p[show, 1], s=2, alpha=0.3, color=color, lw=0,
                     rasterized=True, label=name)
        top.hist(p[:, 0], bins=40, density=True, histtype="step", color=color)
        right.hist(p[:, 1], bins=40, density=True, histtype="step", color=color,
                   orientation="horizontal")
    ev = ds["pc_explained"].values
    main.set_xlabel(f"PC1 ({100 * ev[0]:.1f}%)")
    main.set_ylabel(f"PC2 ({100 * ev[1]:.1f}%)")
    # legend in the empty corner beside the marginals, off the scatter
    handles, labels = main.get_legend_handles_labels()
    for handle in ax_a.legend(handles, labels, loc="upper right", markerscale=4,
                              borderaxespad=0).legend_handles:
        handle.set_alpha(1)
    top.tick_params(labelbottom=False, labelleft=False, left=False)
    right.tick_params(labelleft=False, labelbottom=False, bottom=False)

    for ax, stat, label, letter in ((axs[0, 1], "rate", "rate $m_i$", "b"),
                                    (axs[0, 2], "covariance", "$C_{ij}$", "c"),
                                    (axs[0, 3], "corr3", "$C_{ijk}$", "d")):
        _stat_scatter(ax, ds, stat, label)
        style.panel_label(ax, letter)

    colors = {"train": style.COLORS["train"], "test": style.COLORS["test"],
              "generated": style.COLORS["generated"], "independent": style.COLORS["independent"]}
    ax = axs[1, 0]
    for name in ds["set"].values:
        ax.plot(ds["k"], ds["p_k"].sel(set=name), color=colors[str(name)], label=str(name),
                drawstyle="steps-mid", lw=1)
    ax.set_yscale("log")
    k_hi = int(np.flatnonzero((ds["p_k"].values > 0).any(axis=0)).max(initial=1))
    ax.set_xlim(-0.5, min(k_hi * 1.1 + 1, float(ds["k"].values[-1])))  # drop the empty tail
    ax.set_xlabel("population activity K")
    ax.set_ylabel("P(K)")
    ax.legend()
    style.panel_label(ax, "e")

    ax = axs[1, 1]
    centres = 0.5 * (ds["energy_lo"].values + ds["energy_hi"].values)
    for name in ds["set"].values:
        ax.plot(centres, ds["energy_density"].sel(set=name), color=colors[str(name)],
                label=str(name), drawstyle="steps-mid", lw=1)
    ax.set_xlabel("energy E(v)")
    ax.set_ylabel("density")
    ax.legend()
    style.panel_label(ax, "f")

    ax = axs[1, 2]
    for name in ds["heff_set"].values:
        sel = {"heff_set": name}
        filled = str(name) != "generated"  # open red circles stay visible over the data
        ax.errorbar(ds["heff_sigma"].sel(sel), ds["heff_fraction"].sel(sel),
                    yerr=ds["heff_sem"].sel(sel), fmt="o", ms=3 if filled else 4.5, lw=0.8,
                    color=colors[str(name)], mfc=colors[str(name)] if filled else "none",
                    label=str(name))
    hi = float(np.nanmax([ds["heff_sigma"].max(), ds["heff_fraction"].max()]))
    ax.plot([0, hi], [0, hi], color="0.3", lw=0.8, ls="--")
    ax.set_xlabel(r"$\sigma(h^{\mathrm{eff}}_i)$")
    ax.set_ylabel(r"observed $P(v_i = 1)$")
    ax.legend(loc="upper left")
    style.panel_label(ax, "g")

    ax = axs[1, 3]
    ax.set_axis_off()
    eq = int(ds.attrs.get("equilibrated", -1))
    lines = [f"equilibrated: {'yes' if eq == 1 else 'NO' if eq == 0 else 'not checked'}"]
    if "tau_energy_sweeps" in ds.attrs:
        lines.append(f"tau_E = {ds.attrs['tau_energy_sweeps']:.3g}, "
                     f"tau_K = {ds.attrs['tau_k_sweeps']:.3g} sweeps")
        lines.append(f"burn-in {ds.attrs['burn_in_sweeps']} sweeps")
        lines.append(f"z(E) = {ds.attrs['z_energy']:.2f}, z(K) = {ds.attrs['z_k']:.2f}")
    if "n_eff" in ds:
        lines.append(f"n_eff (of {int(ds['n_used'].sel(set='generated'))}): "
                     + ", ".join(f"{float(ds['n_eff'].sel(stat=s)):.0f}"
                                 for s in ds["stat"].values))
    for stat in ds["stat"].values:
        sc = float(ds["score"].sel(stat=stat))
        er = float(ds["error_ratio"].sel(stat=stat))
        sd = float(ds["score_std"].sel(stat=stat)) if "score_std" in ds else np.nan
        text = "n/a" if np.isnan(sc) else f"{sc:.2f}" + ("" if np.isnan(sd) else f"±{sd:.2f}")
        lines.append(f"{stat}: score {text}, d(gen)/d(test) {er:.2f}")
    ax.text(0.0, 1.0, "\n".join(lines), transform=ax.transAxes, va="top", ha="left",
            fontsize=7, family="monospace")
    if eq == 0:
        fig.suptitle("WARNING: samples NOT equilibrated: "
                     + str(ds.attrs.get("equilibration_reason", "")), color="red", fontsize=8)
    return fig


# --- Fig. 6: relaxation dynamics (helper F) ----------------------------------------------------
def fig_dynamics(ds: xr.Dataset, *, title: str | None = None) -> Figure:
    """Data vs model relaxation after the fitted time rescale (dynamics.nc, Fig. 6).

    Panels: (a) ``C(tau)`` of the population activity, data and rescaled model on one axis,
    independent-site baseline, planted model (synthetic sessions); (b) ``<K>(tau)`` and (c)
    ``q(tau)`` of chains started at data states, against rescaled time; (d) the fit objective.
    """
    r = float(ds.attrs["ms_per_sweep"])
    lag_ms = ds["lag_ms"].values
    t_max = float(lag_ms[-1])
    sweep_ms = ds["sweep"].values * r
    shown = (sweep_ms > 0) & (sweep_ms <= t_max)  # log time axes: lag 0 is left out
    pos = lag_ms > 0
    # legends go under the panels (style.legend_below): over the curves they hid the data
    fig, axs = style.subplots(1, 4, figsize=(4 * style.PANEL_SIZE[0],
                                             style.PANEL_SIZE[1] + 5 * style.LEGEND_BELOW_HEIGHT))

    ax = axs[0]
    c, se = ds["C_data"].values, ds["C_data_se"].values
    ax.fill_between(lag_ms[pos], (c - se)[pos], (c + se)[pos], color=style.COLORS["data"],
                    alpha=0.2, lw=0)
    ax.plot(lag_ms[pos], c[pos], color=style.COLORS["data"], marker="o", ms=2, lw=1,
            label="data")
    # the model curve exactly as the fit sees it: linear in sweeps, incl. below one sweep
    t_fine = np.geomspace(lag_ms[pos][0], t_max, 400)
    ax.plot(t_fine, np.interp(t_fine / r, ds["sweep"].values, ds["C_model"].values, right=np.nan),
            color=style.COLORS["model"], lw=1.5, label=f"model, {r:.3g} ms/sweep")
    ax.plot(lag_ms[pos], ds["C_independent"].values[pos], color=style.COLORS["independent"],
            lw=1.5, label="independent sites (0 after 1 sweep)")
    if "C_truth_bins" in ds:
        ax.plot(lag_ms[pos], ds["C_truth_bins"].values[pos], color=style.COLORS["truth"],
                ls="--", lw=1,
                label=f"planted, {float(ds.attrs['truth_ms_per_sweep']):.3g} ms/sweep")
    lo, hi = float(ds.attrs["fit_lag_lo"]), float(ds.attrs["fit_lag_hi"])
    bin_ms = float(ds.attrs["bin_ms"])
    ax.axvspan(lo * bin_ms, hi * bin_ms, color="0.9", zorder=0, label="fit range")
    ax.set_xscale("log")
    ax.set_xlabel("lag (ms)")
    ax.set_ylabel("C(τ) of K")
    ax.set_title(f"fit max|Δ| {ds.attrs['fit_max_abs_dev']:.3f}, "
                 f"independent {ds.attrs['baseline_max_abs_dev_fit']:.3f}")
    style.legend_below(ax)

    ax = axs[1]
    k, kse = ds["K_model_from_data"].values, ds["K_model_from_data_se"].values
    ax.fill_between(sweep_ms[shown], (k - kse)[shown], (k + kse)[shown],
                    color=style.COLORS["model"], alpha=0.25, lw=0)
    ax.plot(sweep_ms[shown], k[shown], color=style.COLORS["model"], lw=1.5,
            label="model from data states")
    ax.axhline(float(ds.attrs["K_mean_data"]), color=style.COLORS["data"], ls="--", lw=1,
               label="<K> data")
    ax.axhline(float(ds.attrs["K_mean_model"]), color=style.COLORS["model"], ls=":", lw=1,
               label="<K> model equilibrium")
    ax.set_xscale("log")
    ax.set_xlabel("rescaled time (ms)")
    ax.set_ylabel("<K>(τ), chains from data states")
    style.legend_below(ax)

    ax = axs[2]
    ax.plot(lag_ms[pos], ds["q_data"].values[pos], color=style.COLORS["data"], marker="o", ms=2,
            lw=1, label="data")
    ax.plot(sweep_ms[shown], ds["q_model"].values[shown], color=style.COLORS["model"], lw=1.5,
            label="model from data states")
    ax.axhline(float(ds.attrs["q_inf_data"]), color="0.6", ls=":", lw=1,
               label="independent limit (data rates)")
    ax.set_xscale("log")
    ax.set_xlabel("lag / rescaled time (ms)")
    ax.set_ylabel("q(τ)")
    style.legend_below(ax)

    ax = axs[3]
    ax.plot(ds["rescale_ms_per_sweep"].values, ds["fit_sse"].values, color="0.3", lw=1)
    ax.axvline(r, color=style.COLORS["model"], lw=1, label=f"fit {r:.3g}")
    if "truth_ms_per_sweep" in ds.attrs:
        tr = float(ds.attrs["truth_ms_per_sweep"])
        ax.axvline(tr, color=style.COLORS["truth"], ls="--", lw=1, label=f"planted {tr:.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ms per sweep")
    ax.set_ylabel("sum of squares (fit range)")
    style.legend_below(ax)

    from matplotlib.ticker import NullFormatter

    for ax, letter in zip(axs, "abcd", strict=True):
        style.panel_label(ax, letter)
        ax.xaxis.set_minor_formatter(NullFormatter())
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


# --- couplings (Figs. 4-5) ---------------------------------------------------------------


def _step_hist(ax, values, bins, *, color, label=None, density=False, log=False):
    counts, edges = np.histogram(values, bins=bins)
    y = counts / max(counts.sum() * np.diff(edges).mean(), 1e-300) if density else counts
    ax.stairs(y, edges, color=color, label=label)
    if log:
        ax.set_yscale("log")


def fig_couplings(ds: xr.Dataset, *, title: str | None = None) -> Figure:
    """Fig. 4: histograms of H, J_ij, J_ijk (a-c), area x area mean J (d), norms (e).

    Parameters
    ----------
    ds
        ``couplings.nc`` dataset (:func:`spikerbm.couplings.compute_couplings`).
    """
    fig, axs = style.subplots(1, 5, figsize=(style.PANEL_SIZE[0] * 5, style.PANEL_SIZE[1]))
    H = ds["H"].values
    n = H.size
    iu = np.triu_indices(n, 1)
    J = ds["J"].values[iu]
    truth = "H_truth" in ds
    # model and truth share bin edges, so their counts compare bin by bin
    h_edges = np.histogram_bin_edges(
        np.concatenate([H, ds["H_truth"].values]) if truth else H, bins=40)
    j_edges = np.histogram_bin_edges(
        np.concatenate([J, ds["J_truth"].values[iu]]) if truth else J, bins=60)
    _step_hist(axs[0], H, h_edges, color=style.COLORS["model"], label="model")
    _step_hist(axs[1], J, j_edges, color=style.COLORS["model"], label="model", log=True)
    if truth:
        _step_hist(axs[0], ds["H_truth"].values, h_edges, color=style.COLORS["truth"],
                   label="truth")
        _step_hist(axs[1], ds["J_truth"].values[iu], j_edges, color=style.COLORS["truth"],
                   label=f"truth (r = {ds.attrs.get('truth_pearson_J', np.nan):.2f})", log=True)
    axs[0].set(xlabel="field $H_i$", ylabel="count")
    axs[1].set(xlabel="coupling $J_{ij}$", ylabel="pairs")
    edges = ds["J3_hist_edges"].values
    counts = ds["J3_hist_counts"].values.astype(float)
    axs[2].stairs(np.where(counts > 0, counts, np.nan), edges, color=style.COLORS["model"])
    axs[2].set_yscale("log")
    axs[2].set(xlabel="3-body coupling $J_{ijk}$", ylabel="triplets",
               title=f"all {int(ds.attrs.get('n_triplets_total', counts.sum())):,} i<j<k")
    for ax in axs[:2]:
        ax.legend(loc="best")
    if ds.sizes.get("region", 0):
        mat = ds["area_J_mean"].values
        lim = float(np.nanmax(np.abs(mat))) or 1.0
        im = axs[3].imshow(mat, cmap="RdBu_r", vmin=-lim, vmax=lim)
        names = [str(r) for r in ds["region"].values]
        axs[3].set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        axs[3].set_yticks(range(len(names)), names, fontsize=6)
        fig.colorbar(im, ax=axs[3], shrink=0.8, label=r"$\bar J_{AB}$")
    else:
        axs[3].text(0.5, 0.5, "no area with enough neurons", ha="center", va="center",
                    transform=axs[3].transAxes, fontsize=7)
    axs[3].set_title("mean coupling between areas")
    if "norm" in ds:
        x = ds["checkpoint"].values.astype(float)
        pal = style.hidden_palette(3)
        for p, order in enumerate(ds["order"].values):
            y = ds["norm"].sel(order=order).values
            ok = np.isfinite(y)
            axs[4].plot(np.maximum(x[ok], 1), y[ok], "o-", ms=3, color=pal[p],
                        label={1: "fields", 2: "pairs", 3: "3-body"}[int(order)])
        if "checkpoint" in ds.attrs and ds.attrs["checkpoint"] >= 0:
            axs[4].axvline(max(ds.attrs["checkpoint"], 1), color="grey", ls=":", lw=0.8)
        axs[4].set(xscale="log", yscale="log", xlabel="training update",
                   ylabel=r"$\|J^{(n)}\|_F$")
        axs[4].legend()
    for ax, letter in zip(axs, "abcde", strict=True):
        style.panel_label(ax, letter)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def fig_areas(ds: xr.Dataset, *, title: str | None = None) -> Figure:
    """Fig. 5: per-area histograms of J_ij (a) and R_ij (b); n_A, skewness, E/I in the legend."""
    fig, axs = style.subplots(1, 2, figsize=(style.PANEL_SIZE[0] * 2.4, style.PANEL_SIZE[1]))
    regions = [str(r) for r in ds["region"].values] if "region" in ds.dims else []
    pal = style.hidden_palette(len(regions))
    for p, reg in enumerate(regions):
        sub = ds.sel(region=reg)
        n_a = int(sub["region_size"])
        for ax, var, edge, skew in ((axs[0], "area_J_counts", "j_bin_edges", "area_J_skewness"),
                                    (axs[1], "area_R_counts", "r_bin_edges", "area_R_skewness")):
            counts = sub[var].values.astype(float)
            edges = ds[edge].values
            dens = counts / max(counts.sum() * np.diff(edges).mean(), 1e-300)
            label = f"{reg} (n={n_a}, γ={float(sub[skew]):.2f}"
            label += f", E/I={float(sub['area_ei_ratio']):.2f})" if var == "area_J_counts" else ")"
            ax.stairs(dens, edges, color=pal[p], label=label)
    if not regions:
        for ax in axs:
            ax.text(0.5, 0.5, "no area with enough neurons", ha="center", va="center",
                    transform=ax.transAxes, fontsize=7)
    axs[0].set(xlabel="$J_{ij}$ (i, j in the area)", ylabel="density", yscale="log")
    axs[1].set(xlabel="$R_{ij}$", ylabel="density")
    for ax, letter in zip(axs, "ab", strict=True):
        if regions:
            style.legend_below(ax, fontsize=6)
        style.panel_label(ax, letter)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


#: x position (log axis) at which update 0 (the initialisation) is drawn in :func:`fig_loglik`.
LOGLIK_UPDATE0_X = 0.5


def fig_loglik(ll: xr.Dataset, *, per_neuron: bool = False, title: str | None = None) -> Figure:
    """Fig. 2: log-likelihood along training, online curve beside the checkpoint estimates.

    Parameters
    ----------
    ll
        Session log-likelihood dataset (``results/{session}/loglik.nc``: dims n_hidden x
        checkpoint and n_hidden x eval; vars ``ll_train``, ``ll_test``, ``ll_test_std`` and,
        when present, the online curve ``ll_train_online``, ``ll_test_online`` (coord
        ``eval_update``) and the stop variables ``stop_reason``, ``best_update``,
        ``n_updates_done``, ``still_improving``; attrs ``floor_train``, ``floor_test``).
    per_neuron
        Plot nats per neuron (``ll / n_neurons``) instead of nats per sample.
    title
        Optional figure title.

    Returns
    -------
    Figure
        Log x axis; update 0 is drawn at ``x = LOGLIK_UPDATE0_X`` (0.5, labelled "0"). Per
        hidden size (colour): the online test (thin solid) and train (thin dashed) curves
        (trajectory-AIS log Z, every ``train.eval_every`` updates); the checkpoint estimates
        (exact/AIS log Z) of the test LL as filled markers with 1-sigma error bars, of the
        train LL as open markers; a star on each size's best checkpoint; a diamond on the
        online curve at the best online update; where training ended, an ``x`` (stopped
        early) or a right-pointing triangle (maximum number of updates reached while the
        test LL was still rising). The horizontal line is the independent-site model's test
        LL (the floor; its train LL dotted).
    """
    fig, ax = style.subplots(1, 1, figsize=(style.PANEL_SIZE[0] * 2.2, style.PANEL_SIZE[1] * 1.2))
    n_vis = float(ll.attrs.get("n_neurons", 1)) if per_neuron else 1.0
    sizes = [int(h) for h in ll["n_hidden"].values]
    pal = style.hidden_palette(len(sizes))

    def xpos(updates: np.ndarray) -> np.ndarray:
        x = np.asarray(updates, dtype=float)
        return np.where(x > 0, x, LOGLIK_UPDATE0_X)

    x_all = xpos(ll["checkpoint"].values)
    online = "ll_test_online" in ll and "eval_update" in ll.coords
    x_eval = xpos(ll["eval_update"].values) if online else np.array([])
    x_max = max(float(np.nanmax(x_all)), float(np.nanmax(x_eval)) if x_eval.size else 1.0, 1.0)
    for i, n_hidden in enumerate(sizes):
        sub = ll.sel(n_hidden=n_hidden)
        test = sub["ll_test"].values / n_vis
        train = sub["ll_train"].values / n_vis
        std = (sub["ll_test_std"].values / n_vis if "ll_test_std" in sub
               else np.full(test.shape, np.nan))
        ok = np.isfinite(test)
        if not ok.any():
            continue
        color = pal[i]
        ax.errorbar(x_all[ok], test[ok], yerr=np.where(np.isfinite(std[ok]), std[ok], 0.0),
                    fmt="o", ms=3.5, color=color, elinewidth=0.8, capsize=1.5, zorder=4,
                    label=f"$N_h$ = {n_hidden}")
        tr = np.isfinite(train)
        ax.plot(x_all[tr], train[tr], "o", ms=3.5, mfc="none", mec=color, mew=0.7, zorder=3)
        best = int(np.nanargmax(np.where(ok, test, -np.inf)))
        ax.plot(x_all[best], test[best], "*", color=color, ms=11, mec="black", mew=0.5,
                zorder=6)
        if not online:
            ax.plot(x_all[ok], test[ok], "-", color=color, lw=0.8)
            continue
        on_test = sub["ll_test_online"].values / n_vis
        on_train = sub["ll_train_online"].values / n_vis
        # the line starts at the first evaluation after update 0 (a segment from update 0
        # to eval_every would suggest a rise the log axis does not sample; the checkpoint
        # markers show that stretch)
        after0 = sub["eval_update"].values > 0
        fin = np.isfinite(on_test) & after0
        ax.plot(x_eval[fin], on_test[fin], "-", color=color, lw=0.8, alpha=0.9, zorder=2)
        fin_tr = np.isfinite(on_train) & after0
        ax.plot(x_eval[fin_tr], on_train[fin_tr], "--", color=color, lw=0.7, alpha=0.8,
                zorder=2)
        if not fin.any():
            continue
        updates = sub["eval_update"].values
        best_u = int(sub["best_update"]) if "best_update" in sub else -1
        at = np.nonzero(fin & (updates == best_u))[0]
        if at.size:
            ax.plot(x_eval[at[0]], on_test[at[0]], "D", color=color, ms=5, mec="black",
                    mew=0.5, zorder=5)
        last = np.nonzero(fin)[0][-1]
        reason = str(sub["stop_reason"].values) if "stop_reason" in sub else ""
        rising = int(sub["still_improving"]) == 1 if "still_improving" in sub else False
        if reason == "early_stop":
            ax.plot(x_eval[last], on_test[last], "x", color="black", ms=7, mew=1.3, zorder=7)
        elif reason == "max_updates" and rising:
            ax.plot(x_eval[last], on_test[last], ">", color=color, ms=7, mec="black",
                    mew=0.6, zorder=7)
    floor_test = float(ll.attrs["floor_test"]) / n_vis
    floor_train = float(ll.attrs["floor_train"]) / n_vis
    ax.axhline(floor_test, color=style.COLORS["independent"], lw=1.0,
               label="independent sites (test)")
    ax.axhline(floor_train, color=style.COLORS["independent"], lw=0.8, ls=":",
               label="independent sites (train)")
    if online:
        ax.plot([], [], "-", color="black", lw=0.8, label="online test (trajectory AIS)")
        ax.plot([], [], "--", color="black", lw=0.7, label="online train")
    ax.errorbar([], [], yerr=[], fmt="o", ms=3.5, color="black", elinewidth=0.8,
                label="checkpoint test (exact/AIS) ± 1 s.d.")
    ax.plot([], [], "o", ms=3.5, mfc="none", mec="black", label="checkpoint train")
    if online:
        ax.plot([], [], "D", color="white", mec="black", ms=5, label="best online update")
        ax.plot([], [], "x", color="black", ms=7, mew=1.3, label="stopped early")
        ax.plot([], [], ">", color="white", mec="black", ms=7,
                label="maximum reached, still improving")
    ax.set_xscale("log")
    ticks = [10.0**k for k in range(int(np.floor(np.log10(x_max))) + 1)]
    ax.set_xticks([LOGLIK_UPDATE0_X, *ticks])
    ax.set_xticklabels(["0", *[f"$10^{{{k}}}$" for k in range(len(ticks))]])
    ax.set_xticks([m * t for t in ticks for m in range(2, 10) if m * t <= x_max * 1.3],
                  minor=True)  # no minor ticks between the "0" position and 1
    ax.set_xlim(LOGLIK_UPDATE0_X * 0.8, x_max * 1.3)
    unit = "nats / neuron" if per_neuron else "nats / sample"
    ax.set(xlabel="update", ylabel=f"log-likelihood ({unit})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=6, frameon=False)
    if title:
        ax.set_title(title)
    return fig
