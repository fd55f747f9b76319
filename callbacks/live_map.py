"""LiveTwinMap: a map measured line by line, live beside the twin's map and its uncertainty.

The ``"map"`` layout of :class:`~bluesky_digitwin.callbacks.LiveTwinPlot`, the twin's
counterpart of bluesky's ``LiveGrid``: for 2-D maps measured line by line (e.g. ARPES intensity
over two angles). What it shares with the lines (documents, updates, the twin, the suggestion,
errors) is in :mod:`.plot`; here is what it draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from bluesky_digitwin.callbacks.plot import (
    SUGGESTED_COLOUR,
    LiveTwinPlot,
    mark_suggested_lines,
    set_norm_limits,
)
from bluesky_digitwin.data import make_grid

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["LiveTwinMap"]


class LiveTwinMap(LiveTwinPlot):
    """Draw a map live as it is measured line by line, beside the twin's map and the map of its
    uncertainty: the ``"map"`` layout of :class:`LiveTwinPlot`.

    ``LiveTwinPlot(y, x, slow, mode="map", ...)`` makes one; so does
    ``LiveTwinMap(y, x, slow, ...)``, with the same parameters and attributes (``n_std`` is for
    lines). ``slow`` is required.

    Axes by role: ``"data"`` (the measured points coloured by ``y`` on the (``x``, ``slow``)
    plane), ``"twin"`` (the twin's map over its learned range, on the same colour scale, with
    the measured lines drawn over it), ``"std"`` (``show_std``: its networks' standard
    deviation), and the colour bars ``"colorbar"`` and ``"std-colorbar"``. Suggested lines are
    dashed horizontal lines across every panel.
    """

    mode = "map"
    _needs_slow = True

    @classmethod
    def _axes_needed(cls, show_std: bool) -> int:
        """Three: measured, twin and its uncertainty; two without ``show_std``."""
        return 3 if show_std else 2

    def _init_layout(self) -> None:
        self._scatter: Any = None
        self._measured_lines: dict[str, Any] = {}  # the measured lines over the twin's maps
        self._measured_range: tuple[float, float] | None = None
        self._map: xr.Dataset | None = None
        self._map_artists: list[Any] = []
        self._map_range: tuple[float, float] | None = None
        self._map_limits: dict[str, tuple[float, float]] = {}
        self._colour_scale_set = False
        self._std_norm: Any = None
        self._std_cmap: Any = None
        self._std_colorbar: Any = None

    def _setup_axes(self, axes: list[Axes]) -> None:
        import matplotlib.colors as mcolors
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable

        roles = ("data", "twin", "std")[: len(axes)]
        self.axes = dict(zip(roles, axes, strict=True))
        cmap = self._cmap_arg if self._cmap_arg is not None else "viridis"
        self._cmap = colormaps[cmap] if isinstance(cmap, str) else cmap
        self._norm = mcolors.Normalize(0.0, 1.0)
        data = self.axes["data"]
        self._scatter = data.scatter(
            [], [], c=[], s=8, marker="s", linewidths=0, cmap=self._cmap, norm=self._norm, zorder=2
        )
        self._scatter.set_gid("measured")
        self._scatter.set_rasterized(True)
        self._colorbar = self.figure.colorbar(
            ScalarMappable(norm=self._norm, cmap=self._cmap), ax=[data, self.axes["twin"]]
        )
        if "std" in self.axes:
            self._std_norm = mcolors.Normalize(0.0, 1.0)
            self._std_cmap = colormaps["magma"]
            self._std_colorbar = self.figure.colorbar(
                ScalarMappable(norm=self._std_norm, cmap=self._std_cmap), ax=self.axes["std"]
            )
            self.axes["std-colorbar"] = self._std_colorbar.ax
        self.axes["colorbar"] = self._colorbar.ax
        for role in ("twin", "std"):
            if role in self.axes:
                # Where the map was measured, over the twin's maps: elsewhere it interpolates.
                (line,) = self.axes[role].plot(
                    [], [], color="white", lw=0.7, alpha=0.85, gid="measured-lines", zorder=3
                )
                self._measured_lines[role] = line
        data.set_title("measured", fontsize="medium")
        self._set_labels()

    # -- the measured map -----------------------------------------------------------------------

    def _draw_measured(self, x: np.ndarray, s: np.ndarray | None, y: np.ndarray) -> None:
        self._scatter.set_offsets(np.column_stack([x, s]))
        self._scatter.set_array(y)
        self._measured_range = _finite_range(y)
        xs: list[float] = []
        ss: list[float] = []
        for idx, key in zip(self._segments, self._segment_keys, strict=True):
            if key is None:
                continue
            xs += [float(np.min(x[idx])), float(np.max(x[idx])), math.nan]
            ss += [key, key, math.nan]
        for line in self._measured_lines.values():
            line.set_data(xs, ss)
        self.axes["data"].set_title(f"measured ({y.size} points)", fontsize="medium")
        if x.size:
            self._expand_limits(x, s)

    def _expand_limits(self, x: np.ndarray, s: np.ndarray) -> None:
        """Map limits that hold the measured points and the twin's map, with a small margin.

        Set by hand: a scatter counts for autoscaling only once drawn, and headless it is not.
        """
        ax = self.axes["data"]
        for values, name, setter in ((x, self.x, ax.set_xlim), (s, self.slow, ax.set_ylim)):
            ranges = [_finite_range(values)]
            if self._map is not None:
                ranges.append(_finite_range(self._map[name].values))
            known = [r for r in ranges if r is not None]
            if not known:
                return
            lo, hi = min(r[0] for r in known), max(r[1] for r in known)
            pad = 0.02 * (hi - lo) if hi > lo else max(abs(lo) * 0.05, 0.5)
            limits = (lo - pad, hi + pad)
            if limits != self._map_limits.get(name):  # setting them costs, shared axes too
                self._map_limits[name] = limits
                setter(*limits)

    # -- colours, labels, titles ----------------------------------------------------------------

    def _update_colours(self) -> None:
        """The colour scale of ``y``: wide enough for the measured points and the twin's map."""
        spans = [self._measured_range, self._map_range]
        known = [r for r in spans if r is not None]
        if known:
            lo, hi = min(r[0] for r in known), max(r[1] for r in known)
            vmin, vmax = self._norm.vmin, self._norm.vmax
            if hi > lo and not (self._colour_scale_set and vmin <= lo and hi <= vmax):
                # 5 % to spare above (intensities grow with each bright line): each change
                # redraws the colour bar, about 8 ms.
                set_norm_limits(self._norm, lo, hi + 0.05 * (hi - lo))
                self._colour_scale_set = True

    def _axis_labels(self, label: Callable[[str], str], units: Mapping[str, str]) -> dict[str, str]:
        wanted = {"x": label(self.x), "y": label(self.slow), "colorbar": label(self.y)}
        if "std" in self.axes:
            unit = units.get(self.y)
            wanted["std"] = f"σ of the twin's networks ({unit})" if unit else "σ (networks)"
        return wanted

    def _show_labels(self, wanted: dict[str, str]) -> None:
        super()._show_labels(wanted)
        for role in ("twin", "std"):
            if role in self.axes:
                self.axes[role].set_xlabel(wanted["x"])
        if "std" in wanted:
            self._std_colorbar.set_label(wanted["std"])

    def _axes_titles(self, twin_title: str) -> dict[str, str]:
        wanted = {"twin": twin_title}
        if "std" in self.axes:
            networks = getattr(self.twin, "ensemble_size", None)
            wanted["std"] = (
                f"uncertainty: σ over its {networks} networks" if networks else "uncertainty"
            )
        return wanted

    # -- the twin's map -------------------------------------------------------------------------

    def _forget_simulation(self) -> None:
        self._map = None
        for artist in self._map_artists:
            artist.remove()
        self._map_artists = []
        self._map_range = None
        self._colour_scale_set = False  # the old twin's values no longer count

    def _simulation_job(self, twin: Any) -> Callable[[], Any] | None:
        """The twin's map, once per twin."""
        if self._map is not None:
            return None
        x, slow, y, resolution = self.x, self.slow, self.y, self.resolution
        return lambda: _simulate_map(twin, x, slow, y, resolution)

    def _take_simulation(self, payload: xr.Dataset) -> None:
        self._map = payload
        self._draw_map()

    def _draw_map(self) -> None:
        grid = self._map
        xs, ss = grid[self.x].values, grid[self.slow].values
        # An image, not a mesh: the grid is regular (it is made so), and an image of 200 x 200
        # cells renders several times faster, at every redraw.
        extent = (*_edges(xs), *_edges(ss))
        image = {"origin": "lower", "extent": extent, "aspect": "auto", "interpolation": "nearest"}
        values = grid[self.y].values
        self._map_artists = [
            self.axes["twin"].imshow(values, cmap=self._cmap, norm=self._norm, gid="twin", **image)
        ]
        self._map_range = _finite_range(values)
        if "std" in self.axes:
            std = grid[f"{self.y}_std"].values
            spread = _finite_range(std)
            if spread is not None and spread[1] > 0:
                set_norm_limits(self._std_norm, 0.0, spread[1])
            self._map_artists.append(
                self.axes["std"].imshow(
                    std, cmap=self._std_cmap, norm=self._std_norm, gid="twin-std", **image
                )
            )
        self._update_colours()
        points = np.asarray(self._scatter.get_offsets(), dtype=float).reshape(-1, 2)
        self._expand_limits(points[:, 0], points[:, 1])

    # -- the suggestion -------------------------------------------------------------------------

    def _draw_marks(self, positions: np.ndarray) -> list[Any]:
        """The suggested values of the slow axis: dashed lines across every panel."""
        style = {"color": SUGGESTED_COLOUR, "clip_on": True}
        return [
            mark_suggested_lines(
                self.axes[role], positions, ls="--", lw=1.0, alpha=0.85, zorder=1.5, **style
            )
            for role in ("data", "twin", "std")
            if role in self.axes
        ]


def _edges(centres: np.ndarray) -> tuple[float, float]:
    """The outer edges of evenly spaced cells centred on ``centres``."""
    half = (centres[-1] - centres[0]) / (2 * (centres.size - 1)) if centres.size > 1 else 0.5
    return float(centres[0] - half), float(centres[-1] + half)


def _finite_range(values: Any) -> tuple[float, float] | None:
    """(min, max) of the finite values, or None if there are none."""
    values = np.ma.asarray(values, dtype=float).filled(np.nan)
    values = values[np.isfinite(values)]
    return (float(values.min()), float(values.max())) if values.size else None


def _simulate_map(twin: Any, x: str, slow: str, y: str, resolution: int) -> xr.Dataset:
    """The twin's map over its learned ranges (background thread)."""
    axes = {name: np.linspace(*twin.ranges[name], resolution) for name in (x, slow)}
    predicted = twin.predict(make_grid(**axes), warn=False)
    outside = predicted["outside_range"]
    for name in (y, f"{y}_std"):
        predicted[name] = predicted[name].where(~outside)
    return predicted.transpose(slow, x)
