"""Figures. Every function takes xarray data, returns a matplotlib Figure, and never saves it
(scripts save through :func:`spikerbm.io.save_figure`). Styling comes from :mod:`spikerbm.style`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from spikerbm import style

__all__ = ["np", "xr", "Figure", "style"]
