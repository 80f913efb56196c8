"""Figures. Every function takes xarray data, returns a matplotlib Figure, and never saves it
(scripts save through :func:`spikerbm.io.save_figure`). Styling comes from :mod:`spikerbm.style`.

Conventions: one colour per sample set in every panel (train black, test blue, generated red,
independent grey; :data:`spikerbm.style.COLORS`), one categorical colour per brain area
(:func:`spikerbm.style.area_colors`), units on every dimensional axis (energies and couplings
in k_B T, activity in neurons, rates per bin or Hz, time in ms or s), a title naming the session
on every figure, update 0 (the initialisation) drawn apart from update 1 on log update axes.
"""

from __future__ import annotations

import textwrap

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from spikerbm import style

__all__ = ["np", "xr", "Figure", "style"]


def _log_update_axis(ax, x_max: float, *, axis: str = "x") -> None:
    """Log update axis with update 0 drawn at ``LOGLIK_UPDATE0_X`` (labelled "0"), apart from
    update 1; call after plotting ``np.where(x > 0, x, LOGLIK_UPDATE0_X)``."""
    x_max = max(float(x_max), 1.0)
    ticks = [10.0**k for k in range(int(np.floor(np.log10(x_max))) + 1)]
    set_scale, set_ticks, set_labels, set_lim = (
        (ax.set_xscale, ax.set_xticks, ax.set_xticklabels, ax.set_xlim) if axis == "x" else
        (ax.set_yscale, ax.set_yticks, ax.set_yticklabels, ax.set_ylim))
    set_scale("log")
    set_ticks([LOGLIK_UPDATE0_X, *ticks])
    set_labels(["0", *[f"$10^{{{k}}}$" for k in range(len(ticks))]])
    set_ticks([m * t for t in ticks for m in range(2, 10) if m * t <= x_max * 1.3], minor=True)
    set_lim(LOGLIK_UPDATE0_X * 0.8, x_max * 1.3)


def _area_order(areas: np.ndarray) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """Neuron order sorted by area (stable), and the ``(area, start, stop)`` blocks of it."""
    areas = np.asarray(areas).astype(str)
    order = np.argsort(areas, kind="stable")
    blocks, start = [], 0
    sorted_areas = areas[order]
    for k in range(1, len(order) + 1):
        if k == len(order) or sorted_areas[k] != sorted_areas[start]:
            blocks.append((str(sorted_areas[start]), start, k))
            start = k
    return order, blocks


def _area_ticks(ax, blocks, *, axis: str = "y", lines: bool = True, color: str = "0.2") -> None:
    """Area names at the centre of their blocks and lines at the boundaries."""
    centres = [(a + b - 1) / 2 for _, a, b in blocks]
    names = [name for name, _, _ in blocks]
    if axis in ("y", "both"):
        ax.set_yticks(centres, names)
    if axis in ("x", "both"):
        ax.set_xticks(centres, names, rotation=90)
    if lines:
        for _, a, _ in blocks[1:]:
            if axis in ("y", "both"):
                ax.axhline(a - 0.5, color=color, lw=0.6)
            if axis in ("x", "both"):
                ax.axvline(a - 0.5, color=color, lw=0.6)


# --- Fig. 3: generated vs real statistics ------------------------------------------------------
def _stat_scatter(ax, ds: xr.Dataset, stat: str, label: str, *, max_points: int = 20000) -> None:
    """Train (x) vs test (blue) and vs generated (red) for one statistic, fits in the legend."""
    from matplotlib.ticker import MaxNLocator

    x = ds[stat].sel(set="train").values.astype(float)
    rng = np.random.default_rng(0)  # display subsample only; r and slope use every entry
    show = np.sort(rng.choice(x.size, size=min(x.size, max_points), replace=False))
    for other, comp in (("test", "train_test"), ("generated", "train_generated")):
        y = ds[stat].sel(set=other).values.astype(float)
        r = float(ds["pearson_r"].sel(stat=stat, comparison=comp))
        slope = float(ds["slope"].sel(stat=stat, comparison=comp))
        legend = f"{other}: slope {slope:.2f}, r {r:.2f}"
        se_name = f"{stat}_se_generated"
        if other == "generated" and se_name in ds and np.isfinite(ds[se_name].values).any():
            # 1-sigma Monte Carlo error of each generated value from the effective number of
            # independent samples (docs/methods.md section 5)
            ax.errorbar(x[show], y[show], yerr=ds[se_name].values[show], fmt="none",
                        ecolor=style.COLORS[other], elinewidth=0.4, alpha=0.3, rasterized=True)
            legend += f", n_eff {float(ds['n_eff'].sel(stat=stat)):.0f}"
        ax.scatter(x[show], y[show], s=3, alpha=0.4, color=style.COLORS[other], lw=0,
                   rasterized=True, label=legend)
    lo, hi = np.nanmin(x), np.nanmax(x)
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.8, ls="--")
    ax.xaxis.set_major_locator(MaxNLocator(4))  # long tick labels of small correlations
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel(f"{label}, train")
    ax.set_ylabel(f"{label}, test / generated")
    leg = ax.legend(loc="upper left", markerscale=3, handletextpad=0.2)
    for handle in leg.legend_handles:
        handle.set_alpha(1)


def fig_statistics(ds: xr.Dataset, *, max_points: int = 3000, title: str | None = None
                   ) -> Figure:
    """Fig. 3: generated vs real statistics of the selected model (docs/methods.md §5).

    Panels: (a) PCA projection (train black, generated red) with marginal histograms;
    (b-d) rates, covariances and 3-point correlations, test (blue) and generated (red) against
    train, with each generated value's 1-sigma Monte Carlo error from the effective number of
    independent samples ``n_eff``; slope, Pearson r and ``n_eff`` in the legend; (e) P(K);
    (f) energy histograms; (g) P(v_i = 1 | h_eff) vs sigmoid(h_eff) with s.e.m. and the
    diagonal; (h) scores ± their Monte Carlo error, ``n_eff`` and the equilibration check (a
    failed check also titles the figure in red). One colour per set in every panel
    (:data:`spikerbm.style.COLORS`).

    Parameters
    ----------
    ds
        A ``statistics.nc`` dataset (:func:`spikerbm.statistics.compute_statistics`).
    max_points
        Points per set drawn in the PCA scatter (display subsample).
    title
        Figure title (session, model).
    """
    fig, axs = style.subplots(2, 4)
    ax_a = axs[0, 0]
    ax_a.set_axis_off()
    style.panel_label(ax_a, "a")
    main = ax_a.inset_axes([0.0, 0.0, 0.74, 0.74])
    top = ax_a.inset_axes([0.0, 0.77, 0.74, 0.23], sharex=main)
    right = ax_a.inset_axes([0.77, 0.0, 0.23, 0.74], sharey=main)
    rng = np.random.default_rng(0)
    for name in ("train", "generated"):
        color = style.COLORS[name]
        p = ds["pca"].sel(set=name).values
        p = p[: int(ds["n_used"].sel(set=name))]
        show = rng.choice(p.shape[0], size=min(p.shape[0], max_points), replace=False)
        main.scatter(p[show, 0], p[show, 1], s=2, alpha=0.3, color=color, lw=0,
                     rasterized=True, label=name)
        top.hist(p[:, 0], bins=40, density=True, histtype="step", color=color)
        right.hist(p[:, 1], bins=40, density=True, histtype="step", color=color,
                   orientation="horizontal")
    ev = ds["pc_explained"].values
    main.set_xlabel(f"PC1 ({100 * ev[0]:.1f}% of variance)")
    main.set_ylabel(f"PC2 ({100 * ev[1]:.1f}%)")
    handles, labels = main.get_legend_handles_labels()
    for handle in ax_a.legend(handles, labels, loc="upper right", markerscale=4,
                              borderaxespad=0).legend_handles:
        handle.set_alpha(1)
    top.tick_params(labelbottom=False, labelleft=False, left=False)
    right.tick_params(labelleft=False, labelbottom=False, bottom=False)

    for ax, stat, label, letter in ((axs[0, 1], "rate", "rate $m_i$ (per bin)", "b"),
                                    (axs[0, 2], "covariance", "covariance $C_{ij}$", "c"),
                                    (axs[0, 3], "corr3", "3-point $C_{ijk}$", "d")):
        _stat_scatter(ax, ds, stat, label)
        style.panel_label(ax, letter)

    ax = axs[1, 0]
    for name in ds["set"].values:
        ax.plot(ds["k"], ds["p_k"].sel(set=name), color=style.COLORS[str(name)],
                label=str(name), drawstyle="steps-mid", lw=1)
    ax.set_yscale("log")
    k_hi = int(np.flatnonzero((ds["p_k"].values > 0).any(axis=0)).max(initial=1))
    ax.set_xlim(-0.5, min(k_hi * 1.1 + 1, float(ds["k"].values[-1])))  # drop the empty tail
    ax.set_xlabel("population activity K (neurons)")
    ax.set_ylabel("P(K)")
    ax.legend()
    style.panel_label(ax, "e")

    ax = axs[1, 1]
    centres = 0.5 * (ds["energy_lo"].values + ds["energy_hi"].values)
    for name in ds["set"].values:
        ax.plot(centres, ds["energy_density"].sel(set=name), color=style.COLORS[str(name)],
                label=str(name), drawstyle="steps-mid", lw=1)
    ax.set_xlabel(f"energy E(v) ({style.KT})")
    ax.set_ylabel(f"density (1/{style.KT})")
    ax.legend()
    style.panel_label(ax, "f")

    ax = axs[1, 2]
    for name in ds["heff_set"].values:
        sel = {"heff_set": name}
        color = style.COLORS[str(name)]
        filled = str(name) != "generated"  # open red circles stay visible over the data
        ax.errorbar(ds["heff_sigma"].sel(sel), ds["heff_fraction"].sel(sel),
                    yerr=ds["heff_sem"].sel(sel), fmt="o", ms=3 if filled else 4.5, lw=0.8,
                    color=color, mfc=color if filled else "none", label=str(name))
    hi = float(np.nanmax([ds["heff_sigma"].max(), ds["heff_fraction"].max()]))
    ax.plot([0, hi], [0, hi], color="0.3", lw=0.8, ls="--")
    ax.set_xlabel(r"model $\sigma(h^{\mathrm{eff}}_i)$ (per bin)")
    ax.set_ylabel(r"observed $P(v_i = 1)$ (per bin)")
    ax.legend(loc="upper left")
    style.panel_label(ax, "g")

    ax = axs[1, 3]
    ax.set_axis_off()
    eq = int(ds.attrs.get("equilibrated", -1))
    lines = [f"equilibrated: {'yes' if eq == 1 else 'NO' if eq == 0 else 'not checked'}"]
    if "model" in ds.attrs:  # e.g. the pairwise baseline, scored like the RBM
        lines.insert(0, f"model: {ds.attrs['model']}")
    if "tau_energy_sweeps" in ds.attrs:
        sampler = str(ds.attrs.get("sampler", "gibbs"))
        lines.append(f"sampler: {sampler}")
        if sampler == "ptt" and "ptt_min_acceptance" in ds.attrs:
            lines.append(f"  {int(ds.attrs['ptt_n_models'])} models, min swap "
                         f"acc. {float(ds.attrs['ptt_min_acceptance']):.2f}")
        lines.append(f"tau_E {ds.attrs['tau_energy_sweeps']:.3g}, "
                     f"tau_K {ds.attrs['tau_k_sweeps']:.3g} sweeps")
        lines.append(f"burn-in {ds.attrs['burn_in_sweeps']} sweeps")
        lines.append(f"z(E) {ds.attrs['z_energy']:.2f}, z(K) {ds.attrs['z_k']:.2f}")
    if "n_eff" in ds:
        lines.append(f"n_eff (of {int(ds['n_used'].sel(set='generated'))}): "
                     + ", ".join(f"{float(ds['n_eff'].sel(stat=s)):.0f}"
                                 for s in ds["stat"].values))
    lines.append("")
    lines.append("score       d(gen)/d(test)")
    for stat in ds["stat"].values:
        sc = float(ds["score"].sel(stat=stat))
        er = float(ds["error_ratio"].sel(stat=stat))
        sd = float(ds["score_std"].sel(stat=stat)) if "score_std" in ds else np.nan
        text = "n/a" if np.isnan(sc) else f"{sc:.2f}" + ("" if np.isnan(sd) else f"±{sd:.2f}")
        lines.append(f"{stat:<10} {text:>9}  {er:.2f}")
    ax.text(0.0, 1.0, "\n".join(lines), transform=ax.transAxes, va="top", ha="left",
            fontsize=8, family="monospace")
    style.panel_label(ax, "h")
    warning = None
    if eq == 0:
        warning = ("WARNING: samples NOT equilibrated: "
                   + str(ds.attrs.get("equilibration_reason", "")))
    style.title(fig, title or "generated vs real statistics", warning=warning)
    return fig


def fig_equilibration(ds: xr.Dataset, *, title: str | None = None) -> Figure:
    """Equilibration traces of the statistics stage's chains (docs/methods.md §5).

    (a) mean marginal energy E(v) and (b) mean population activity K of the traced chains
    started from data bins and from random states, against sweeps (log axis); the dotted line
    is the end of the burn-in, after which samples are taken. The two start sets must meet
    before it.
    (c) with ``statistics.sampler: ptt``: swap acceptance of each neighbouring pair of the
    trajectory ladder.

    Parameters
    ----------
    ds
        ``statistics.nc`` (variables ``trace_energy``, ``trace_k``, ``record_sweep``).
    """
    ptt = "ptt_acceptance" in ds
    fig, axs = style.subplots(1, 3 if ptt else 2,
                              figsize=(style.PANEL_SIZE[0] * (3 if ptt else 2) + 0.4, 3.2))
    sweeps = ds["record_sweep"].values.astype(float)
    burn = float(ds.attrs.get("burn_in_sweeps", np.nan))
    for ax, var, label in ((axs[0], "trace_energy", f"mean energy E(v) ({style.KT})"),
                           (axs[1], "trace_k", "mean activity K (neurons)")):
        for start, color, ls in (("data", style.COLORS["generated"], "-"),
                                 ("random", style.COLORS["random_start"], "--")):
            ax.plot(sweeps, ds[var].sel(start=start).values, color=color, ls=ls, lw=1.2,
                    label=f"chains from {'data bins' if start == 'data' else 'random states'}")
        if np.isfinite(burn):
            ax.axvline(burn, color="0.3", ls=":", lw=1.2,
                       label="end of burn-in (samples after)")
        ax.set_xscale("log")
        ax.set_xlabel("sweep")
        ax.set_ylabel(label)
    axs[0].legend(loc="upper right", framealpha=0.8, frameon=True)
    eq = int(ds.attrs.get("equilibrated", -1))
    axs[0].set_title(f"tau_E {ds.attrs.get('tau_energy_sweeps', np.nan):.3g} sweeps, "
                     f"z(E) {ds.attrs.get('z_energy', np.nan):.2f}")
    axs[1].set_title(f"tau_K {ds.attrs.get('tau_k_sweeps', np.nan):.3g} sweeps, "
                     f"z(K) {ds.attrs.get('z_k', np.nan):.2f}")
    if ptt:
        acc = ds["ptt_acceptance"].values
        lo, hi = ds["ptt_update_lo"].values, ds["ptt_update_hi"].values
        axs[2].bar(np.arange(acc.size), acc, color=style.COLORS["generated"])
        axs[2].set_xticks(np.arange(acc.size), [f"{a}-{b}" for a, b in zip(lo, hi, strict=True)],
                          rotation=90, fontsize=6)
        axs[2].set(ylim=(0, 1), xlabel="neighbouring checkpoints (updates)",
                   ylabel="swap acceptance (fraction)", title="PTT swaps")
    for ax, letter in zip(axs, "abc", strict=False):
        style.panel_label(ax, letter)
    warning = ("WARNING: samples NOT equilibrated: " + str(ds.attrs.get("equilibration_reason"))
               if eq == 0 else None)
    style.title(fig, title or "equilibration of the generated samples", warning=warning)
    return fig


def fig_raster(raster: xr.Dataset, stats: xr.Dataset, *, n_bins: int = 300,
               title: str | None = None) -> Figure:
    """Real vs generated activity: a raster of consecutive test bins and one of independent
    model samples, neurons sorted by area (area boundaries drawn), population activity above.

    Parameters
    ----------
    raster
        ``raster.nc`` (the first ``n_bins`` consecutive test bins are drawn).
    stats
        ``statistics.nc`` with ``generated_excerpt(excerpt, neuron)`` (independent equilibrium
        samples: no time axis).
    n_bins
        Bins / samples drawn.
    """
    test = raster["raster"].isel(time_bin=raster["split"].values == "test")
    real = test.values[:n_bins]
    t0 = float(test["time"].values[0]) if "time" in test.coords else 0.0
    bin_s = float(raster.attrs.get("bin_ms", 1.0)) / 1000.0
    gen = stats["generated_excerpt"].values[:n_bins] if "generated_excerpt" in stats else None
    order, blocks = _area_order(raster["area"].values)
    fig, axs = style.subplots(2, 2, figsize=(9.0, 4.8), sharex="col",
                              gridspec_kw={"height_ratios": (1, 4)})
    k_max = max(real.sum(1).max(), gen.sum(1).max() if gen is not None else 0) * 1.1 + 1
    panels = [("test bins", real, t0, bin_s, "time (s)"),
              ("model samples", gen, 0.0, 1.0, "sample (independent equilibrium samples)")]
    for col, (name, v, x0, dx, xlabel) in enumerate(panels):
        ax_k, ax = axs[0, col], axs[1, col]
        if v is None:
            ax.text(0.5, 0.5, "no generated excerpt in statistics.nc (rerun statistics)",
                    ha="center", va="center", transform=ax.transAxes)
            ax_k.set_axis_off()
            continue
        extent = (x0, x0 + v.shape[0] * dx, len(order) - 0.5, -0.5)
        ax.imshow(v[:, order].T, aspect="auto", cmap="Greys", interpolation="nearest",
                  extent=extent, vmin=0, vmax=1)
        color = style.COLORS["test"] if col == 0 else style.COLORS["generated"]
        ax_k.plot(x0 + (np.arange(v.shape[0]) + 0.5) * dx, v.sum(1), color=color, lw=0.8)
        ax_k.set_ylim(0, k_max)
        ax_k.set_title(name, color=color)
        ax.set_xlabel(xlabel)
        _area_ticks(ax, blocks, color="tab:orange")
        if col == 0:
            ax.set_ylabel("neurons, by area")
            ax_k.set_ylabel("K (neurons)")
        else:
            ax.tick_params(labelleft=False)
            ax_k.tick_params(labelleft=False)
    style.panel_label(axs[0, 0], "a")
    style.panel_label(axs[0, 1], "b")
    style.title(fig, title or "real vs generated activity")
    return fig


# --- Fig. 6: relaxation dynamics -------------------------------------------------------------
def fig_dynamics(ds: xr.Dataset, *, title: str | None = None) -> Figure:
    """Data vs model relaxation after the fitted time rescale (dynamics.nc, Fig. 6).

    Panels: (a) ``C(tau)`` of the population activity, data and rescaled model on one axis,
    independent-site baseline, planted model (synthetic sessions); (b) relaxation of ``<K>``
    after high-activity bins (K in the top decile): the data's conditional mean and chains
    started at those bins, against rescaled time; (c) ``q(tau)`` of chains started at data
    states; (d) the fit objective.
    """
    from matplotlib.ticker import NullFormatter

    r = float(ds.attrs["ms_per_sweep"])
    lag_ms = ds["lag_ms"].values
    t_max = float(lag_ms[-1])
    sweep_ms = ds["sweep"].values * r
    shown = (sweep_ms > 0) & (sweep_ms <= t_max)  # log time axes: lag 0 is left out
    pos = lag_ms > 0
    # legends go under the panels (style.legend_below): over the curves they hid the data
    fig, axs = style.subplots(2, 2, figsize=(2 * style.PANEL_SIZE[0] + 0.6,
                                             2 * style.PANEL_SIZE[1]
                                             + 10 * style.LEGEND_BELOW_HEIGHT))
    axs = axs.ravel()

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
    ax.set_ylabel("autocorrelation C(τ) of K")
    ax.set_title(f"fit max|Δ| {ds.attrs['fit_max_abs_dev']:.3f}, "
                 f"independent {ds.attrs['baseline_max_abs_dev_fit']:.3f}", fontsize=8.5)
    style.legend_below(ax)

    ax = axs[1]
    if "K_model_from_high" in ds:
        k, kse = ds["K_model_from_high"].values, ds["K_model_from_high_se"].values
        ax.plot(lag_ms, ds["K_data_from_high"].values, color=style.COLORS["data"], marker="o",
                ms=2, lw=1, label="data, after bins with K ≥ "
                f"{float(ds.attrs['high_k_threshold']):.3g}")
        zero = sweep_ms <= t_max
        ax.fill_between(sweep_ms[zero], (k - kse)[zero], (k + kse)[zero],
                        color=style.COLORS["model"], alpha=0.25, lw=0)
        ax.plot(sweep_ms[zero], k[zero], color=style.COLORS["model"], lw=1.5,
                label="model from the same bins")
        ax.set_xscale("symlog", linthresh=max(bin_ms, r), linscale=0.4)
        ax.set_xlim(0, t_max)
        ax.set_ylabel("mean activity K (neurons)")
    else:  # dynamics.nc of an older run
        k, kse = ds["K_model_from_data"].values, ds["K_model_from_data_se"].values
        ax.plot(sweep_ms[shown], k[shown], color=style.COLORS["model"], lw=1.5,
                label="model from data states")
        ax.set_xscale("log")
        ax.set_ylabel("<K>(τ) (neurons)")
    ax.axhline(float(ds.attrs["K_mean_data"]), color=style.COLORS["data"], ls="--", lw=1,
               label="<K> data")
    ax.axhline(float(ds.attrs["K_mean_model"]), color=style.COLORS["model"], ls=":", lw=1,
               label="<K> model equilibrium")
    ax.set_xlabel("lag / rescaled time (ms)")
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
    ax.set_ylabel("overlap q(τ)")
    style.legend_below(ax)

    ax = axs[3]
    ax.plot(ds["rescale_ms_per_sweep"].values, ds["fit_sse"].values, color="0.3", lw=1)
    ax.axvline(r, color=style.COLORS["model"], lw=1, label=f"fit {r:.3g} ms/sweep")
    if "truth_ms_per_sweep" in ds.attrs:
        tr = float(ds.attrs["truth_ms_per_sweep"])
        ax.axvline(tr, color=style.COLORS["truth"], ls="--", lw=1,
                   label=f"planted {tr:.3g} ms/sweep")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("time rescale (ms per sweep)")
    ax.set_ylabel("sum of squared C differences")
    style.legend_below(ax)

    for ax, letter in zip(axs, "abcd", strict=True):
        style.panel_label(ax, letter)
        if ax.get_xscale() == "log":
            ax.xaxis.set_minor_formatter(NullFormatter())
    style.title(fig, title or "relaxation dynamics")
    return fig


# --- couplings (Figs. 4-5) ---------------------------------------------------------------


def _step_hist(ax, values, bins, *, color, label=None, density=False, log=False):
    counts, edges = np.histogram(values, bins=bins)
    y = counts / max(counts.sum() * np.diff(edges).mean(), 1e-300) if density else counts
    ax.stairs(y, edges, color=color, label=label)
    if log:
        ax.set_yscale("log")


def _scale_power(lim: float) -> tuple[int, str]:
    """The power of ten that a quantity of magnitude ``lim`` is shown in (0 between 0.001 and
    1000: plain tick labels), and its text for an axis label ("$10^{-3}$ " or ""): the scale
    goes in the label, never in an offset text that collides with it."""
    power = int(np.floor(np.log10(lim))) if np.isfinite(lim) and lim > 0 else 0
    power = power if abs(power) >= 3 else 0
    return power, (f"$10^{{{power}}}$ " if power else "")


def fig_couplings(ds: xr.Dataset, *, title: str | None = None) -> Figure:
    """Fig. 4: histograms of H, J_ij, J_ijk (a-c), area x area mean J (d), norms along training
    (e), and for synthetic sessions J_ij of the model against the planted model (f).

    Parameters
    ----------
    ds
        ``couplings.nc`` dataset (:func:`spikerbm.couplings.compute_couplings`).
    """
    from matplotlib.ticker import MaxNLocator

    fig, axs = style.subplots(2, 3, figsize=(style.PANEL_SIZE[0] * 3 + 0.4,
                                             style.PANEL_SIZE[1] * 2 + 0.3))
    axs = axs.ravel()
    H = ds["H"].values
    n = H.size
    iu = np.triu_indices(n, 1)
    J = ds["J"].values[iu]
    truth = "H_truth" in ds
    kt = style.KT
    # model and truth share bin edges, so their counts compare bin by bin
    h_edges = np.histogram_bin_edges(
        np.concatenate([H, ds["H_truth"].values]) if truth else H, bins=40)
    j_edges = np.histogram_bin_edges(
        np.concatenate([J, ds["J_truth"].values[iu]]) if truth else J, bins=60)
    _step_hist(axs[0], H, h_edges, color=style.COLORS["model"], label="model")
    _step_hist(axs[1], J, j_edges, color=style.COLORS["model"], label="model", log=True)
    if truth:
        _step_hist(axs[0], ds["H_truth"].values, h_edges, color=style.COLORS["truth"],
                   label="planted")
        _step_hist(axs[1], ds["J_truth"].values[iu], j_edges, color=style.COLORS["truth"],
                   label="planted", log=True)
    axs[0].set(xlabel=f"field $H_i$ ({kt})", ylabel="neurons")
    axs[1].set(xlabel=f"coupling $J_{{ij}}$ ({kt})", ylabel="pairs")
    edges = ds["J3_hist_edges"].values
    counts = ds["J3_hist_counts"].values.astype(float)
    power, scale = _scale_power(float(np.abs(edges).max()))
    axs[2].stairs(np.where(counts > 0, counts, np.nan), edges / 10.0**power,
                  color=style.COLORS["model"])
    axs[2].set_yscale("log")
    axs[2].set(xlabel=f"3-body coupling $J_{{ijk}}$ ({scale}{kt})", ylabel="triplets",
               title=f"all {int(ds.attrs.get('n_triplets_total', counts.sum())):,} i<j<k")
    axs[2].xaxis.set_major_locator(MaxNLocator(4))
    for ax in axs[:2]:
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.legend(loc="best")
    if ds.sizes.get("region", 0):
        mat = ds["area_J_mean"].values
        lim = float(np.nanmax(np.abs(mat))) or 1.0
        power, scale = _scale_power(lim)
        mat, lim = mat / 10.0**power, lim / 10.0**power
        im = axs[3].imshow(mat, cmap="RdBu_r", vmin=-lim, vmax=lim)
        names = [str(r) for r in ds["region"].values]
        size = 8 if len(names) <= 8 else 6
        axs[3].set_xticks(range(len(names)), names, rotation=90, fontsize=size)
        axs[3].set_yticks(range(len(names)), names, fontsize=size)
        cb = fig.colorbar(im, ax=axs[3], shrink=0.8)
        # the label above the bar: on its side it would read as part of panel e's y label
        cb.ax.set_title(f"$\\bar J_{{AB}}$\n({scale}{kt})", fontsize=8)
        cb.ax.yaxis.set_major_locator(MaxNLocator(5))
    else:
        axs[3].text(0.5, 0.5, "no area with enough neurons", ha="center", va="center",
                    transform=axs[3].transAxes, fontsize=8)
    axs[3].set_title("mean coupling between areas")
    if "norm" in ds:
        x = ds["checkpoint"].values.astype(float)
        x_plot = np.where(x > 0, x, LOGLIK_UPDATE0_X)
        pal = style.hidden_palette(3)
        for p, order in enumerate(ds["order"].values):
            y = ds["norm"].sel(order=order).values
            ok = np.isfinite(y)
            axs[4].plot(x_plot[ok], y[ok], "o-", ms=3, color=pal[p],
                        label={1: "fields", 2: "pairs", 3: "3-body"}[int(order)])
        if "checkpoint" in ds.attrs and ds.attrs["checkpoint"] >= 0:
            ck = float(ds.attrs["checkpoint"])
            axs[4].axvline(ck if ck > 0 else LOGLIK_UPDATE0_X, color="grey", ls=":", lw=0.8,
                           label="selected")
        _log_update_axis(axs[4], float(np.nanmax(x)))
        axs[4].set(yscale="log", xlabel="training update",
                   ylabel=f"$\\|J^{{(n)}}\\|_F$ ({kt})")
        axs[4].legend(fontsize=7)
    if truth:
        jt = ds["J_truth"].values[iu]
        rng = np.random.default_rng(0)
        show = rng.choice(J.size, size=min(J.size, 20000), replace=False)
        axs[5].scatter(jt[show], J[show], s=3, alpha=0.4, lw=0, color=style.COLORS["model"],
                       rasterized=True)
        lo, hi = float(min(jt.min(), J.min())), float(max(jt.max(), J.max()))
        axs[5].plot([lo, hi], [lo, hi], color="0.3", lw=0.8, ls="--")
        axs[5].set(xlabel=f"planted $J_{{ij}}$ ({kt})", ylabel=f"model $J_{{ij}}$ ({kt})",
                   title=f"Pearson r = {ds.attrs.get('truth_pearson_J', np.nan):.2f}")
        axs[5].xaxis.set_major_locator(MaxNLocator(4))
    else:
        axs[5].set_axis_off()
    for ax, letter in zip(axs, "abcdef", strict=True):
        if ax.axison:
            style.panel_label(ax, letter)
    style.title(fig, title or "effective couplings")
    return fig


def fig_areas(ds: xr.Dataset, *, title: str | None = None) -> Figure:
    """Fig. 5: per-area histograms of J_ij (a) and R_ij (b); n_A, skewness, E/I in the legend.

    One categorical colour per area (:func:`spikerbm.style.area_colors`); each x axis spans the
    occupied bins of all areas.
    """
    fig, axs = style.subplots(1, 2, figsize=(style.PANEL_SIZE[0] * 2.4,
                                             style.PANEL_SIZE[1] + 0.6))
    regions = [str(r) for r in ds["region"].values] if "region" in ds.dims else []
    colors = style.area_colors(regions)
    # J in a power of ten named in the label (as Fig. 4): plain ticks however small J is
    power, scale = _scale_power(float(np.nanmax(np.abs(ds["j_bin_edges"].values)))
                                if regions else 1.0)
    x_unit = {"area_J_counts": 10.0**power, "area_R_counts": 1.0}
    for reg in regions:
        sub = ds.sel(region=reg)
        n_a = int(sub["region_size"])
        for ax, var, edge, skew in ((axs[0], "area_J_counts", "j_bin_edges", "area_J_skewness"),
                                    (axs[1], "area_R_counts", "r_bin_edges", "area_R_skewness")):
            counts = sub[var].values.astype(float)
            edges = ds[edge].values
            dens = counts / max(counts.sum() * np.diff(edges).mean(), 1e-300)
            label = f"{reg} (n={n_a}, γ={float(sub[skew]):.2f}"
            label += f", E/I={float(sub['area_ei_ratio']):.2f})" if var == "area_J_counts" else ")"
            if var == "area_J_counts":  # log axis: empty bins are gaps, not drops to 0
                dens = np.where(dens > 0, dens, np.nan)
            ax.stairs(dens, edges / x_unit[var], color=colors[reg], label=label, lw=1.2,
                      baseline=None)
    if regions:
        for ax, var, edge in ((axs[0], "area_J_counts", "j_bin_edges"),
                              (axs[1], "area_R_counts", "r_bin_edges")):
            occupied = np.flatnonzero(ds[var].values.sum(0) > 0)
            if occupied.size:
                edges = ds[edge].values / x_unit[var]
                lo, hi = edges[occupied.min()], edges[occupied.max() + 1]
                pad = 0.05 * (hi - lo)
                ax.set_xlim(lo - pad, hi + pad)
    else:
        for ax in axs:
            ax.text(0.5, 0.5, "no area with enough neurons", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
    axs[0].set(xlabel=f"$J_{{ij}}$, i and j in the area ({scale}{style.KT})",
               ylabel=f"density (1/{style.KT})", yscale="log")
    axs[1].set(xlabel=r"$R_{ij}$ (3-body share of |coupling|)", ylabel="density")
    for ax, letter in zip(axs, "ab", strict=True):
        if regions:
            style.legend_below(ax, fontsize=7)
        style.panel_label(ax, letter)
    style.title(fig, title or "couplings per area")
    return fig


def neuron_distances(raster: xr.Dataset) -> tuple[np.ndarray, str] | None:
    """Pairwise distances (neuron x neuron, µm) from the positions a source keeps.

    The atlas/stereotaxic position ``x, y, z`` when every neuron has it; else the position on
    the probe (``rel_x/rel_y/rel_z`` or Allen's ``probe_horizontal/vertical_position``), with
    pairs on different probes set to NaN (their on-probe coordinates are not comparable).
    ``None`` when the raster has no positions.

    Returns
    -------
    (distances, description) or None
    """
    def coords(names):
        cols = [np.asarray(raster[c].values, dtype=float) for c in names if c in raster.coords]
        if not cols:
            return None
        pos = np.stack(cols, 1)
        return pos if np.isfinite(pos).all() else None

    pos = coords(("x", "y", "z"))
    what = "atlas position"
    same_probe = None
    if pos is None:
        pos = coords(("rel_x", "rel_y", "rel_z"))
        if pos is None:
            pos = coords(("probe_horizontal_position", "probe_vertical_position"))
        if pos is None:
            return None
        what = "position on the probe (pairs on one probe)"
        if "probe" in raster.coords:
            probe = np.asarray(raster["probe"].values).astype(str)
            same_probe = probe[:, None] == probe[None, :]
    d = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1))
    if same_probe is not None:
        d = np.where(same_probe, d, np.nan)
    return d, what


def fig_coupling_structure(ds: xr.Dataset, raster: xr.Dataset | None = None, *,
                           title: str | None = None) -> Figure:
    """The pairwise couplings as a matrix sorted by area (a) and against distance (b).

    (a) ``J_ij`` heatmap, neurons sorted by area with the area boundaries, colour range the
    99th percentile of ``|J|``; (b) ``J_ij`` against the distance between the two neurons
    (µm, :func:`neuron_distances`), within-area and cross-area pairs, with binned means; when
    the source provides no positions (e.g. synthetic sessions) the panel says so.

    Parameters
    ----------
    ds
        ``couplings.nc``.
    raster
        ``raster.nc`` of the session (positions), or None.
    """
    fig, axs = style.subplots(1, 2, figsize=(style.PANEL_SIZE[0] * 2.5,
                                             style.PANEL_SIZE[1] * 1.35))
    J = ds["J"].values
    areas = np.asarray(ds["area"].values).astype(str)
    order, blocks = _area_order(areas)
    iu = np.triu_indices(J.shape[0], 1)
    lim = float(np.nanpercentile(np.abs(J[iu]), 99)) or 1.0
    power, scale = _scale_power(lim)  # both panels in units of 10^power k_BT
    J, lim = J / 10.0**power, lim / 10.0**power
    im = axs[0].imshow(J[np.ix_(order, order)], cmap="RdBu_r", vmin=-lim, vmax=lim,
                       interpolation="nearest")
    _area_ticks(axs[0], blocks, axis="both")
    axs[0].tick_params(labelsize=7 if len(blocks) > 8 else 8)
    cb = fig.colorbar(im, ax=axs[0], shrink=0.85)
    cb.set_label(f"$J_{{ij}}$ ({scale}{style.KT}; clipped at the 99th percentile of |J|)",
                 fontsize=8)
    axs[0].set_title("pairwise couplings, neurons by area")
    dist = neuron_distances(raster) if raster is not None else None
    ax = axs[1]
    if dist is None:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no neuron positions in this session's source\n(e.g. synthetic "
                "sessions): J against distance\nis drawn for sources that keep them\n(NWB "
                "electrodes, phy channel positions)", ha="center", va="center",
                transform=ax.transAxes, fontsize=8.5, color="0.3")
    else:
        d, what = dist
        dd, jj = d[iu], J[iu]
        same = (areas[:, None] == areas[None, :])[iu]
        ok = np.isfinite(dd)
        rng = np.random.default_rng(0)
        for mask, label, color in ((same & ok, "same area", "#2c7fb8"),
                                   (~same & ok, "different areas", "#fdae61")):
            if not mask.any():
                continue
            idx = np.flatnonzero(mask)
            show = rng.choice(idx, size=min(idx.size, 20000), replace=False)
            ax.scatter(dd[show], jj[show], s=2, alpha=0.3, lw=0, color=color, rasterized=True)
            edges = np.quantile(dd[idx], np.linspace(0, 1, 16))
            which = np.clip(np.searchsorted(edges, dd[idx], side="right") - 1, 0, 14)
            means = [jj[idx][which == b].mean() if (which == b).any() else np.nan
                     for b in range(15)]
            ax.plot(0.5 * (edges[1:] + edges[:-1]), means, "o-", ms=3, color=color,
                    mec="black", mew=0.4, label=f"{label} (binned mean)")
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set(xlabel=f"distance (µm; {what})", ylabel=f"$J_{{ij}}$ ({scale}{style.KT})",
               title="coupling against distance")
        ax.legend(loc="upper right", markerscale=2)
    for a, letter in zip(axs, "ab", strict=True):
        style.panel_label(a, letter)
    style.title(fig, title or "coupling structure")
    return fig


def fig_hidden_units(selected: xr.Dataset, *, title: str | None = None) -> Figure:
    """Which areas each hidden unit couples: weight profiles grouped by area.

    (a) ``W_{i mu}`` as a heatmap, neurons sorted by area (boundaries drawn), hidden units
    sorted by the area holding most of their squared weight, then by that share; (b) the share
    ``sum_{i in A} W_{i mu}^2 / sum_i W_{i mu}^2`` of each hidden unit's squared weight in each
    area ``A`` (rows sum to 1), the same unit order.

    Parameters
    ----------
    selected
        ``selected.nc`` (``W(neuron, hidden)`` with the ``area`` coordinate).
    """
    W = selected["W"].values.astype(np.float64)
    areas = np.asarray(selected["area"].values).astype(str)
    order, blocks = _area_order(areas)
    names = [b[0] for b in blocks]
    sq = W**2
    share = np.stack([sq[areas == a].sum(0) for a in names], 1)  # (hidden, area)
    share /= np.maximum(share.sum(1, keepdims=True), 1e-300)
    top = share.argmax(1)
    units = np.lexsort((-share.max(1), top))
    m = W.shape[1]
    height = min(2.6 + 0.09 * m, 9.0)
    fig, axs = style.subplots(1, 2, figsize=(10.0, height),
                              gridspec_kw={"width_ratios": (3.2, max(1.0, 0.25 * len(names)))})
    lim = float(np.percentile(np.abs(W), 99)) or 1.0
    im = axs[0].imshow(W[np.ix_(order, units)].T, aspect="auto", cmap="RdBu_r", vmin=-lim,
                       vmax=lim, interpolation="nearest")
    _area_ticks(axs[0], blocks, axis="x")
    axs[0].set(ylabel=f"hidden unit (sorted by main area; {m} units)",
               title=r"weights $W_{i\mu}$, neurons by area")
    axs[0].set_yticks([])
    cb = fig.colorbar(im, ax=axs[0], shrink=0.8, pad=0.01)
    cb.set_label(r"$W_{i\mu}$ (clipped at the 99th percentile of |W|)", fontsize=8)
    im2 = axs[1].imshow(share[units], aspect="auto", cmap="Greys", vmin=0, vmax=1,
                        interpolation="nearest")
    colors = style.area_colors(names)
    axs[1].set_xticks(range(len(names)), names, rotation=90)
    for tick, name in zip(axs[1].get_xticklabels(), names, strict=True):
        tick.set_color(colors[name])
    axs[1].set_yticks([])
    axs[1].set_title("share of $\\sum_i W_{i\\mu}^2$\nper area")
    cb2 = fig.colorbar(im2, ax=axs[1], shrink=0.8, pad=0.02)
    cb2.set_label("fraction", fontsize=8)
    for ax, letter in zip(axs, "ab", strict=True):
        style.panel_label(ax, letter)
    style.title(fig, title or "hidden units by area")
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

        With replicas (a ``replica`` dim, R > 1) every curve is the replica mean: the
        checkpoint markers carry the standard error over the live replicas as error bars and a
        shaded band (mean +- 1 s.e.), the online curve a shaded band from the lowest to the
        highest replica; the stop markers are replica 0's (docs/methods.md §4).
    """
    fig, ax = style.subplots(1, 1, figsize=(style.PANEL_SIZE[0] * 2.2, style.PANEL_SIZE[1] * 1.2))
    n_vis = float(ll.attrs.get("n_neurons", 1)) if per_neuron else 1.0
    bands = None
    if "replica" in ll.dims:
        with np.errstate(invalid="ignore", divide="ignore"):
            n_live = ll["ll_test"].notnull().sum("replica")
            bands = {"se": ll["ll_test"].std("replica", ddof=1) / np.sqrt(n_live)}
        if "ll_test_online" in ll:
            bands["lo"] = ll["ll_test_online"].min("replica")
            bands["hi"] = ll["ll_test_online"].max("replica")
        means = [v for v in ("ll_test", "ll_train", "ll_test_online", "ll_train_online")
                 if v in ll]
        n_rep = ll.sizes["replica"]
        ll = ll.isel(replica=0).assign({v: ll[v].mean("replica") for v in means})
        ll["ll_test_std"] = bands["se"]
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
        if bands is not None:
            ax.fill_between(x_all[ok], test[ok] - np.nan_to_num(std[ok]),
                            test[ok] + np.nan_to_num(std[ok]), color=color, alpha=0.2, lw=0,
                            zorder=1)
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
        if bands is not None and "lo" in bands:
            ax.fill_between(x_eval[fin], bands["lo"].sel(n_hidden=n_hidden).values[fin] / n_vis,
                            bands["hi"].sel(n_hidden=n_hidden).values[fin] / n_vis,
                            color=color, alpha=0.12, lw=0, zorder=1)
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
                label="checkpoint test (exact/AIS) ± 1 s.d." if bands is None else
                f"replica mean of {n_rep} ± 1 s.e. (band; online: min-max)")
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
    unit = "nats / neuron / sample" if per_neuron else "nats / sample"
    ax.set(xlabel="update", ylabel=f"log-likelihood ({unit})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=6, frameon=False)
    if title:
        ax.set_title(title)
    return fig


# --- issue 20: pairwise baseline vs RBM, cross-session area atlas -----------------------------
def fig_pairwise_vs_rbm(pairs: dict[str, tuple[np.ndarray, np.ndarray]],
                        rows: list[dict], *, max_points: int = 20000) -> Figure:
    """The pairwise baseline against the RBM, per session (docs/methods.md §11).

    Panels: one scatter per session of the RBM's effective ``J_ij`` (y) against the pairwise
    model's ``J_ij`` (x), both in the spin convention, with the least-squares line, Pearson r
    and slope; last panel: test log-likelihood per neuron above the independent-site model, RBM
    and pairwise, with the log Z uncertainty (1 s.d.) as error bars.

    Parameters
    ----------
    pairs
        ``{session: (J_pairwise, J_rbm)}``, each the ``i < j`` values (1-d, same length).
    rows
        :func:`spikerbm.pairwise.model_comparison` dicts, in the order of the sessions.
    max_points
        Pairs drawn per scatter (display subsample; r and slope use every pair).
    """
    n = len(pairs)
    fig, axs = style.subplots(1, n + 1, figsize=(style.PANEL_SIZE[0] * (n + 1),
                                                 style.PANEL_SIZE[1]), squeeze=False)
    axs = axs[0]
    rng = np.random.default_rng(0)
    by_session = {str(r["session"]): r for r in rows}
    for ax, (session, (x, y)) in zip(axs, pairs.items(), strict=False):
        show = rng.choice(x.size, size=min(x.size, max_points), replace=False)
        ax.scatter(x[show], y[show], s=2, alpha=0.3, lw=0, color=style.COLORS["model"],
                   rasterized=True)
        r = by_session.get(session, {})
        slope, icpt = float(r.get("j_slope", np.nan)), float(r.get("j_intercept", np.nan))
        if np.isfinite(slope):
            xs = np.array([np.min(x), np.max(x)])
            ax.plot(xs, slope * xs + icpt, color="0.2", lw=0.8)
        ax.axhline(0, color="0.7", lw=0.5)
        ax.axvline(0, color="0.7", lw=0.5)
        ax.set(xlabel="pairwise $J_{ij}$", ylabel="RBM effective $J_{ij}$",
               title=f"{session}: r {float(r.get('j_pearson_r', np.nan)):.2f}, "
                     f"slope {slope:.2f}")
    ax = axs[-1]
    names = [str(r["session"]) for r in rows]
    pos = np.arange(len(names))
    for k, (model, color) in enumerate((("rbm", style.COLORS["generated"]),
                                        ("pairwise", style.COLORS["model"]))):
        gain = np.array([float(r[f"ll_test_{model}"]) - float(r["ll_test_independent"])
                         for r in rows])
        err = np.array([float(r[f"ll_test_{model}_std"]) for r in rows])
        ax.bar(pos + (k - 0.5) * 0.38, gain, width=0.38, color=color,
               yerr=np.where(np.isfinite(err), err, 0), capsize=2, label=model.upper()
               if model == "rbm" else model)
    ax.axhline(0, color=style.COLORS["independent"], lw=0.8)
    ax.set_xticks(pos, names, rotation=30, ha="right", fontsize=6)
    ax.set(ylabel="test LL - independent\n(nats / neuron / sample)")
    ax.legend()
    for a, letter in zip(axs, "abcdefghijklmnopqrstuvwxyz", strict=False):
        style.panel_label(a, letter)
    return fig


#: the atlas figure writes each cell's interval into the cell up to this many areas (larger
#: matrices have cells too small for it: the intervals are in tables/atlas_area_pairs)
ATLAS_CELL_INTERVAL_MAX_AREAS = 3
#: font size (pt) of the atlas cell annotations: 8 up to 4 areas, 7 up to 8 (at 150 dpi,
#: 15-17 px; none are drawn beyond 8 areas)
ATLAS_CELL_FONTSIZE = {4: 8.0, 8: 7.0}


def fig_atlas(ds: xr.Dataset, *, quantity: str = "J") -> Figure:
    """Cross-session area atlas (docs/methods.md §12).

    Panels, per model (the RBM's effective couplings; the pairwise baseline's when present):
    the area x area matrix of the pooled coarse-grained ``quantity`` in a power of ten named
    in the colour-bar label (each cell annotated, with up to 8 areas, with its value and number
    of sessions, and with up to :data:`ATLAS_CELL_INTERVAL_MAX_AREAS` areas also its interval;
    ``*`` marks an interval from one session's neuron bootstrap; every interval is in the
    table ``atlas_area_pairs``); then per area the within-area minus across-area difference of
    ``quantity`` with its interval, one point per model, labelled with the number of sessions
    and the p-value of the test over sessions (RBM); last, the effect sizes (mean per-session
    Cohen's d) of ``J``, ``|J|`` and ``R`` per model, which share one scale. An empty atlas
    (no area reached ``min_area_neurons``) gives one panel that says why.

    Parameters
    ----------
    ds
        ``atlas.nc`` (:func:`spikerbm.atlas.atlas_by_model` of :func:`spikerbm.atlas.build_atlas`
        results).
    quantity
        The quantity of the matrices and of the within-vs-across panel.
    """
    from matplotlib.ticker import MaxNLocator

    models = [str(m) for m in ds["model"].values]
    regions = [str(r) for r in ds["region"].values]
    k = len(regions)
    if k == 0:
        fig, ax = style.subplots(1, 1, figsize=(6.4, 2.2))
        ax.set_axis_off()
        reason = str(ds.attrs.get("empty_reason", "")) or "no area was retained"
        ax.text(0.5, 0.5, textwrap.fill(f"Empty atlas: {reason}. The finding atlas_empty in "
                                        "tables/findings.tsv names the key to change.", 70),
                ha="center", va="center", fontsize=9, transform=ax.transAxes)
        return fig
    annotate = k <= max(ATLAS_CELL_FONTSIZE)
    intervals = k <= ATLAS_CELL_INTERVAL_MAX_AREAS
    font = next((f for n, f in sorted(ATLAS_CELL_FONTSIZE.items()) if k <= n), 0.0)
    side = max(4.2, 0.95 * k + 1.0) if annotate else max(3.2, 0.3 * k + 1.5)
    ncol = len(models) + 2
    fig, axs = style.subplots(1, ncol, figsize=(side * len(models) + 2 * 3.6, side),
                              squeeze=False)
    axs = axs[0]
    single = ds["area_ci_from_sessions"].values == 0
    star = not int(ds.attrs.get("single_session", 0))  # one session: the title says it once
    unit = style.KT if quantity in ("J", "J_abs") else ""
    for ax, model in zip(axs, models, strict=False):
        sub = ds.sel(model=model, quantity=quantity)
        # one colour scale per model: the two models' couplings need not share a scale; values
        # in a power of ten named in the label (as Figs. 4-5), so cells show 2 digits
        lim = float(np.nanmax(np.abs(sub["area_mean"].values), initial=0.0)) or 1.0
        power, scale = _scale_power(lim)
        mat, lim = sub["area_mean"].values / 10.0**power, lim / 10.0**power
        im = ax.imshow(mat, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_xticks(range(k), regions, rotation=90, fontsize=7 if annotate else 6)
        ax.set_yticks(range(k), regions, fontsize=7 if annotate else 6)
        if annotate:
            lo, hi = (sub[v].values / 10.0**power for v in ("area_ci_low", "area_ci_high"))
            ns = ds["area_n_sessions"].values
            for a in range(k):
                for b in range(k):
                    if not np.isfinite(mat[a, b]):
                        continue
                    text = f"{mat[a, b]:.2g}\n"
                    if intervals:
                        text += f"[{lo[a, b]:.2g}, {hi[a, b]:.2g}]\n"
                    text += f"n={int(ns[a, b])}{'*' if single[a, b] and star else ''}"
                    ax.text(b, a, text, ha="center", va="center", fontsize=font,
                            color="white" if abs(mat[a, b]) > 0.6 * lim else "black")
        units = f" ({scale}{unit})" if scale or unit else ""
        fig.colorbar(im, ax=ax, shrink=0.75, label=f"mean {quantity}" + r"$_{AB}$" + units)
        ax.set_title(f"{model}: mean {quantity} between areas")
    y = np.arange(k)
    pal = style.hidden_palette(max(len(models), 2))
    ax = axs[len(models)]
    for s, model in enumerate(models):
        sub = ds.sel(model=model, quantity=quantity)
        d = sub["delta"].values
        err = np.vstack([d - sub["delta_ci_low"].values, sub["delta_ci_high"].values - d])
        ax.errorbar(d, y + (s - (len(models) - 1) / 2) * 0.25, fmt="o", ms=3, lw=0.8,
                    xerr=np.where(np.isfinite(err), err, 0), color=pal[s], label=model)
    ax.axvline(0, color="0.3", lw=0.8, ls="--")
    rbm = ds.sel(model=models[0], quantity=quantity)
    ax.set_yticks(y, [f"{r} (n={int(ds['delta_n_sessions'].values[i])}, "
                      f"p={float(rbm['delta_p_value'].values[i]):.2g})"
                      for i, r in enumerate(regions)], fontsize=7 if annotate else 6)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.invert_yaxis()
    ax.set(xlabel=f"within - across, {quantity}",
           title=f"within vs across ({100 * ds.attrs['ci_level']:.0f}% intervals)")
    ax.legend(fontsize=6)
    ax = axs[len(models) + 1]
    shown = [(m, str(q)) for m in models for q in ds["quantity"].values
             if np.isfinite(ds["delta_cohen_d"].sel(model=m, quantity=q).values).any()]
    pal = style.hidden_palette(max(len(shown), 2))
    for s, (model, q) in enumerate(shown):
        ax.plot(ds["delta_cohen_d"].sel(model=model, quantity=q).values,
                y + (s - (len(shown) - 1) / 2) * 0.8 / max(len(shown), 1), "o", ms=3,
                color=pal[s], label=f"{model} {q}")
    ax.axvline(0, color="0.3", lw=0.8, ls="--")
    ax.set_yticks(y, regions, fontsize=7 if annotate else 6)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.invert_yaxis()
    ax.set(xlabel="Cohen's d (within vs across)", title="effect sizes")
    ax.legend(fontsize=6)
    for a, letter in zip(axs, "abcdefgh", strict=False):
        style.panel_label(a, letter)
    notes = []
    if annotate and not intervals:
        notes.append(f"cells: value (n = sessions); {100 * ds.attrs['ci_level']:.0f}% "
                     "intervals in the table atlas_area_pairs")
    if int(ds.attrs.get("single_session", 0)):
        fig.suptitle("ONE SESSION: " + str(ds.attrs.get("interval_note", "")) +
                     "".join(f"\n{n}" for n in notes), fontsize=7, color="#b00")
    else:
        if annotate and single.any():
            notes.append("* interval from one session's neuron bootstrap (area pair recorded "
                         "together once)")
        if notes:
            fig.suptitle("\n".join(notes), fontsize=7)
    return fig


def fig_replicas(coup: xr.Dataset, *, title: str | None = None) -> Figure:
    """Reproducibility of the couplings across replicas (R > 1; docs/methods.md §6).

    Parameters
    ----------
    coup
        ``couplings.nc`` of a replica run (``replica_J``, ``replica_strong_J3``,
        ``pair_pearson_*``, ``pair_slope_*``, ``replica_a``/``replica_b``, and, with areas,
        ``area_J_mean_replica_std``).
    title
        Optional figure title.

    Returns
    -------
    Figure
        (a) ``J_ij`` of replica b against replica a for every replica pair (one colour per
        pair, ``i < j``), identity line, legend with each pair's Pearson r and slope; (b) the
        same for ``J_ijk`` of the primary replica's strongest triplets; (c) the across-replica
        std of the area matrix (mean J per area pair), or a note without areas.
    """
    fig, axes = style.subplots(1, 3)
    reps = coup["replica"].values
    a_idx, b_idx = coup["replica_a"].values, coup["replica_b"].values
    pal = style.hidden_palette(len(a_idx))
    n = coup.sizes["neuron"]
    iu = np.triu_indices(n, 1)
    panels = (("J2", coup["replica_J"].values[:, iu[0], iu[1]], "$J_{ij}$"),
              ("J3", coup["replica_strong_J3"].values, "$J_{ijk}$ (strongest)"))
    for ax, (name, x, label) in zip(axes[:2], panels, strict=True):
        for p, (a, b) in enumerate(zip(a_idx, b_idx, strict=True)):
            r = float(coup[f"pair_pearson_{name}"].values[p])
            slope = float(coup[f"pair_slope_{name}"].values[p])
            ax.plot(x[a], x[b], ".", ms=2.5, color=pal[p], alpha=0.6,
                    label=f"{reps[a]} vs {reps[b]}: r {r:.2f}, slope {slope:.2f}")
        if x.size:
            lim = float(np.nanmax(np.abs(x))) or 1.0
            ax.plot([-lim, lim], [-lim, lim], "-", color=style.COLORS["independent"], lw=0.7)
        ax.set_xlabel(f"{label}, replica a")
        ax.set_ylabel(f"{label}, replica b")
        ax.legend(fontsize=6, loc="upper left", frameon=False)
    ax = axes[2]
    if "area_J_mean_replica_std" in coup and coup.sizes.get("region", 0):
        regions = [str(r) for r in coup["region"].values]
        im = ax.imshow(coup["area_J_mean_replica_std"].values, cmap="viridis")
        ax.set_xticks(range(len(regions)), regions, rotation=90, fontsize=7)
        ax.set_yticks(range(len(regions)), regions, fontsize=7)
        fig.colorbar(im, ax=ax, label="std of mean $J$ across replicas")
    else:
        ax.text(0.5, 0.5, "no area with enough neurons", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
    for ax, letter in zip(axes, "abc", strict=True):
        style.panel_label(ax, letter)
    if title:
        style.title(fig, title)
    return fig
