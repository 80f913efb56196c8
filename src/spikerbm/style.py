"""One visual style for every spikerbm figure."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; never need a display
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

#: Colours with a fixed meaning across figures.
COLORS = {
    "train": "black",
    "test": "#1f77b4",
    "generated": "#d62728",
    "train_test": "#d62728",  # red: train vs test (noise ceiling), as in the paper's Fig. 3
    "train_generated": "#2ca02c",  # green: train vs generated
    "independent": "#7f7f7f",  # the independent-site floor / baseline
    "truth": "#9467bd",
    "data": "black",
    "model": "#ff7f0e",
}

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
            "legend.fontsize": 7,
            "axes.titlesize": 9,
            "axes.labelsize": 8,
            "image.cmap": "viridis",
        }
    )


def hidden_palette(n: int) -> list[Any]:
    """Distinct colours for ``n`` curves (e.g. one per hidden size)."""
    return sns.color_palette("viridis", n_colors=max(n, 1))


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
