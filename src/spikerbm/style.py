"""One visual style for every spikerbm figure."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; never need a display
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

#: Colours with a fixed meaning across figures: one colour per sample set in every panel
#: (a comparison "train vs X" takes the colour of X).
COLORS = {
    "train": "black",
    "test": "#1f77b4",
    "generated": "#d62728",
    "train_test": "#1f77b4",  # y = test set vs x = train: the test colour
    "train_generated": "#d62728",  # y = generated vs x = train: the generated colour
    "independent": "#7f7f7f",  # the independent-site floor / baseline
    "truth": "#9467bd",
    "data": "black",
    "model": "#ff7f0e",
    "random_start": "#f4a582",  # generated chains started from random states (light red)
}

#: Axis-unit strings used in labels (energies and couplings are in units of k_B T).
KT = r"$k_\mathrm{B}T$"

PANEL_SIZE = (3.2, 2.8)


def apply_style() -> None:
    """Apply the spikerbm style (call once before drawing)."""
    sns.set_theme(context="paper", style="ticks", font_scale=1.0)
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
            "legend.fontsize": 7.5,
            "axes.titlesize": 9.5,
            "axes.labelsize": 9,
            "xtick.labelsize": 8,
            "ytick.labelsize": 8,
            "figure.titlesize": 11,
            "image.cmap": "viridis",
        }
    )


def hidden_palette(n: int) -> list[Any]:
    """Ordered colours for ``n`` curves of an ordered quantity (e.g. one per hidden size)."""
    return sns.color_palette("viridis", n_colors=max(n, 1))


def area_colors(areas: Any) -> dict[str, Any]:
    """One categorical colour per brain area (sorted names), the same in every figure of a
    session: ``tab10`` up to 10 areas, ``tab20`` up to 20, evenly spaced hues beyond."""
    names = sorted({str(a) for a in areas})
    n = len(names)
    pal = sns.color_palette("tab10" if n <= 10 else "tab20" if n <= 20 else "husl",
                            n_colors=max(n, 1))
    return dict(zip(names, pal, strict=False))


def session_title(session: str, what: str, attrs: Any = None) -> str:
    """``"<session>: <what> (N_h = <n>, update <c>)"`` from an artifact's attributes."""
    attrs = attrs or {}
    model = []
    if "n_hidden" in attrs:
        model.append(f"$N_h$ = {int(attrs['n_hidden'])}")
    if "checkpoint" in attrs and int(attrs["checkpoint"]) >= 0:
        model.append(f"update {int(attrs['checkpoint'])}")
    return f"{session}: {what}" + (f" ({', '.join(model)})" if model else "")


def title(fig: Any, text: str, *, warning: str | None = None) -> None:
    """The figure title (session and what is shown); a warning goes in red below it."""
    if warning:
        fig.suptitle(f"{text}\n{warning}", color="red", fontsize=9)
    else:
        fig.suptitle(text)


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any):
    """``plt.subplots`` with the style applied and panel-sized figures."""
    apply_style()
    kwargs.setdefault("figsize", (PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows))
    kwargs.setdefault("constrained_layout", True)
    return plt.subplots(nrows, ncols, **kwargs)


def panel_label(ax: Any, label: str) -> None:
    """Bold panel letter in the top-left corner, as in the paper's figures."""
    ax.text(-0.18, 1.05, label, transform=ax.transAxes, fontweight="bold", fontsize=10,
            va="bottom", ha="left")


def legend_below(ax: Any, **kwargs: Any) -> Any:
    """Legend centred under the axes (below the x label), so it never covers the data.

    Figures that use it need room under the panels: add ``LEGEND_BELOW_HEIGHT`` inches per
    expected legend row of the tallest legend to the figure height.
    """
    kwargs.setdefault("loc", "upper center")
    kwargs.setdefault("bbox_to_anchor", (0.5, -0.3))
    kwargs.setdefault("ncol", 1)
    return ax.legend(**kwargs)


#: Height (inches) of one 7-pt legend row drawn with :func:`legend_below`.
LEGEND_BELOW_HEIGHT = 0.16
