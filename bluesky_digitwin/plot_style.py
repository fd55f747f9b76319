"""How the twin's figures look, the same in every one: static (:mod:`bluesky_digitwin.plot`)
and live (:class:`~bluesky_digitwin.callbacks.LiveTwinPlot`).

Measured points are open markers, simulated data lines; an axis is labelled ``"long name
(units)"`` from the data's attributes; simulated data are named by the twin or the method that
made them. matplotlib is optional (``pip install "bluesky-digitwin[plot]"``): it is imported
only when a figure is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import xarray as xr

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "INSTALL_HINT",
    "MEASURED_STYLE",
    "SIMULATED_STYLE",
    "axis_label",
    "origin_label",
    "require_matplotlib",
    "root_figure",
]

INSTALL_HINT = 'plotting needs matplotlib: pip install "bluesky-digitwin[plot]"'
#: Style of each kind of data, so they look the same in every figure.
MEASURED_STYLE = {"marker": "o", "markersize": 3.5, "linestyle": "none", "fillstyle": "none"}
SIMULATED_STYLE = {"linestyle": "-", "linewidth": 1.3}


def require_matplotlib() -> None:
    """Import matplotlib or explain how to install it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc


def root_figure(ax: Axes) -> Figure:
    """The top-level figure of ``ax`` (the one that saves), even when ``ax`` is in a subfigure."""
    try:
        return ax.get_figure(root=True)  # matplotlib >= 3.10
    except TypeError:  # older: a subfigure's .figure is the top-level figure, a figure's itself
        return getattr(ax.figure, "figure", None) or ax.figure


def axis_label(name: str, *sources: xr.DataArray | None) -> str:
    """``"long name (units)"`` for an axis, from the first of ``sources`` that says each."""
    attrs = [obj.attrs for obj in sources if obj is not None]
    long_name = next((str(a["long_name"]) for a in attrs if a.get("long_name")), name)
    units = next((str(a["units"]) for a in attrs if a.get("units")), "")
    if long_name != name and len(name) <= 3 and name not in long_name.split():
        # Short symbols help: "temperature T (K)" reads better than "temperature (K)".
        long_name = f"{long_name} {name}"
    return f"{long_name} ({units})" if units else long_name


def origin_label(obj: xr.DataArray | xr.Dataset, default: str = "simulated") -> str:
    """How to name simulated data: by its twin, its interpolation method, or just simulated."""
    attrs = obj.attrs
    if attrs.get("twin_id"):
        return f"simulated by twin {str(attrs['twin_id'])[:8]}"
    if attrs.get("method"):
        return f"simulated by {str(attrs['method']).replace('_', ' ')} interpolation"
    return default
