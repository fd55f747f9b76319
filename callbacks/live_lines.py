"""LiveTwinLines: measured lines live beside the twin's curves and their uncertainty bands.

The ``"lines"`` layout of :class:`~bluesky_digitwin.callbacks.LiveTwinPlot` (its default), the
twin's counterpart of bluesky's ``LivePlot``: ``y`` against the scanned ``x``, one line per value
of the slow axis, coloured by it. What it shares with the map (documents, updates, the twin, the
suggestion, errors) is in :mod:`.plot`; here is what it draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from bluesky_digitwin.callbacks.plot import (
    SUGGESTED_COLOUR,
    LiveTwinPlot,
    mark_suggested_lines,
    segment_span,
    set_norm_limits,
)
from bluesky_digitwin.data import make_grid
from bluesky_digitwin.plot_style import MEASURED_STYLE, SIMULATED_STYLE

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["LiveTwinLines"]

#: A simulated line: x, the twin's mean and its networks' standard deviation.
_Curve = tuple[np.ndarray, np.ndarray, np.ndarray]


class LiveTwinLines(LiveTwinPlot):
    """Draw a scan live as lines, one per value of the slow axis, with the twin's curves and
    their ± ``n_std`` σ bands: the ``"lines"`` layout of :class:`LiveTwinPlot`.

    ``LiveTwinPlot(y, x, slow, ...)`` makes one (``mode="lines"`` is the default); so does
    ``LiveTwinLines(y, x, slow, ...)``, with the same parameters and attributes (``show_std``
    is for maps). ``slow`` may be None for plain 1-D scans: then each run is one line.

    Axes by role: ``"data"``, and with a slow axis its ``"colorbar"``, where the suggested lines
    are marked. A legend below the axes names what is drawn.
    """

    mode = "lines"

    @classmethod
    def _axes_needed(cls, show_std: bool) -> int:
        """One: the measured lines and the twin's curves share the axes."""
        return 1

    def _init_layout(self) -> None:
        self._measured_artists: list[Any] = []
        self._n_drawn = 0  # points drawn so far: the new ones widen the limits
        self._coloured: tuple[Any, ...] = ()
        self._legend_key: tuple[Any, ...] = ()
        self._curves: dict[float | None, _Curve] = {}
        self._curve_artists: dict[float | None, tuple[Any, Any]] = {}

    def _setup_axes(self, axes: list[Axes]) -> None:
        import matplotlib.colors as mcolors
        from matplotlib import colormaps

        (ax,) = axes
        self.axes = {"data": ax}
        if isinstance(self._cmap_arg, str):
            self._cmap = colormaps[self._cmap_arg]
        elif self._cmap_arg is not None:
            self._cmap = self._cmap_arg
        else:
            # viridis' last yellows are hard to see on white, as markers and as bands.
            self._cmap = mcolors.ListedColormap(
                colormaps["viridis"](np.linspace(0.0, 0.88, 256)), name="viridis_dark"
            )
        if self.slow is not None:
            from matplotlib.cm import ScalarMappable

            self._norm = mcolors.Normalize(0.0, 1.0)
            self._colorbar = self.figure.colorbar(
                ScalarMappable(norm=self._norm, cmap=self._cmap), ax=ax
            )
            self.axes["colorbar"] = self._colorbar.ax
        ax.margins(x=0.02, y=0.05)
        self._set_labels()

    # -- the measured lines ---------------------------------------------------------------------

    def _draw_measured(self, x: np.ndarray, s: np.ndarray | None, y: np.ndarray) -> None:
        ax = self.axes["data"]
        drawn = self._drawn_segments
        for i, idx in enumerate(self._segments):
            if i < len(self._measured_artists):
                artist = self._measured_artists[i]
            else:
                colour = None if self.slow is not None else f"C{i % 10}"
                (artist,) = ax.plot([], [], gid="measured", color=colour, **MEASURED_STYLE)
                self._measured_artists.append(artist)
            if i >= len(drawn) or drawn[i] != segment_span(idx):  # only the lines that grew
                artist.set_data(x[idx], y[idx])
        for artist in self._measured_artists[len(self._segments) :]:
            artist.set_data([], [])  # the buffer was cleared
        if x.size < self._n_drawn:
            self._rescale()  # fewer points than before: the limits must shrink too
        else:
            # Only the new points widen the limits: a full relim walks every artist's data.
            new = np.column_stack([x[self._n_drawn :], y[self._n_drawn :]])
            new = new[np.isfinite(new).all(axis=1)]
            before = ax.dataLim.bounds
            if new.size:
                ax.update_datalim(new)
            if ax.dataLim.bounds != before:  # rescaling costs a millisecond: only if it grew
                ax.autoscale_view()
        self._n_drawn = x.size

    def _rescale(self) -> None:
        ax = self.axes["data"]
        ax.relim(visible_only=True)
        ax.autoscale_view()

    # -- colours, labels, titles, legend --------------------------------------------------------

    def _update_colours(self) -> None:
        """The slow axis' colour scale: recolour the lines when it or their number changed."""
        if self.slow is None:
            return
        values = [k for k in self._segment_keys if k is not None]
        if self.twin is not None and self.slow in (getattr(self.twin, "ranges", None) or {}):
            values += list(self.twin.ranges[self.slow])
        values += list(self._marks.get("positions", ()))
        if not values:
            return
        lo, hi = float(min(values)), float(max(values))
        if hi <= lo:
            pad = max(abs(lo) * 0.05, 1e-12)
            lo, hi = lo - pad, hi + pad
        n = len(self._measured_artists)
        state = (lo, hi, tuple(self._segment_keys[:n]), n, tuple(self._curve_artists))
        if state == self._coloured:
            return
        self._coloured = state
        set_norm_limits(self._norm, lo, hi)
        keys = [*self._segment_keys[:n], *self._curve_artists]
        # One pass through the norm and the colour map: per key, each costs 0.1 ms.
        values = np.array([np.nan if k is None else k for k in keys], dtype=float)
        colours = dict(zip(keys, self._cmap(self._norm(values)), strict=True))
        for artist, key in zip(self._measured_artists, self._segment_keys, strict=False):
            artist.set_color(colours[key] if key is not None else "0.2")
        for key, (line, band) in self._curve_artists.items():
            line.set_color(colours[key])
            if band is not None:
                band.set_facecolor(colours[key])

    def _colour(self, key: float | None) -> Any:
        if key is None or self._norm is None:
            return "0.2"
        return self._cmap(self._norm(key))

    def _axis_labels(self, label: Callable[[str], str], units: Mapping[str, str]) -> dict[str, str]:
        wanted = {"x": label(self.x), "y": label(self.y)}
        if self.slow is not None:
            wanted["colorbar"] = label(self.slow)
        return wanted

    def _axes_titles(self, twin_title: str) -> dict[str, str]:
        return {"data": twin_title}

    def _update_legend(self) -> None:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        has_band = any(band is not None for _, band in self._curve_artists.values())
        key = (
            bool(self._measured_artists),
            self._twin_label if self._curve_artists else None,
            has_band,
            "positions" in self._marks,
        )
        if key == self._legend_key:
            return
        self._legend_key = key
        handles = []
        if key[0]:
            handles.append(Line2D([], [], color="0.3", label="measured", **MEASURED_STYLE))
        if key[1] is not None:
            handles.append(Line2D([], [], color="0.3", label=key[1], **SIMULATED_STYLE))
        if has_band:
            handles.append(
                Patch(color="0.3", alpha=0.22, label=f"mean ± {self.n_std:g}σ of its networks")
            )
        if key[3]:
            label = f"suggested lines of {self.slow} (colour bar)"
            handles.append(Line2D([], [], color=SUGGESTED_COLOUR, lw=1.6, label=label))
        ax = self.axes["data"]
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()
        if handles:
            # Below the axes: inside, it would hide points, and "best" costs a search over
            # every point at each redraw.
            ax.legend(
                handles=handles,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.13),
                ncols=2,
                fontsize="small",
                frameon=False,
            )

    # -- the twin's curves ----------------------------------------------------------------------

    def _forget_simulation(self) -> None:
        self._curves = {}
        for line, band in self._curve_artists.values():
            line.remove()
            if band is not None:
                band.remove()
        self._curve_artists = {}
        self._rescale()  # the old twin's curves no longer count for the limits

    def _simulation_job(self, twin: Any) -> Callable[[], Any] | None:
        """The curves of the measured lines not simulated yet."""
        keys = set(self._segment_keys)
        if self.slow is not None:
            keys.discard(None)  # a line whose slow-axis value is not a number
        missing = sorted((k for k in keys if k not in self._curves), key=_sort_key)
        if not missing:
            return None
        x, slow, y, resolution = self.x, self.slow, self.y, self.resolution
        return lambda: _simulate_lines(twin, x, slow, y, missing, resolution)

    def _take_simulation(self, payload: dict[float | None, _Curve]) -> None:
        self._curves.update(payload)
        self._draw_curves()

    def _draw_curves(self) -> None:
        ax = self.axes["data"]
        for key, (xs, mean, std) in self._curves.items():
            if key in self._curve_artists:
                continue
            colour = self._colour(key)
            (line,) = ax.plot(xs, mean, color=colour, gid="twin", zorder=2.5, **SIMULATED_STYLE)
            band = None
            if np.any(np.nan_to_num(std) > 0):
                band = ax.fill_between(
                    xs,
                    mean - self.n_std * std,
                    mean + self.n_std * std,
                    color=colour,
                    alpha=0.22,
                    lw=0,
                    gid="twin-band",
                    zorder=2,
                )
            self._curve_artists[key] = (line, band)
        # Adding them widened the data limits already: no relim over every artist needed.
        ax.autoscale_view()

    # -- the suggestion -------------------------------------------------------------------------

    def _draw_marks(self, positions: np.ndarray) -> list[Any]:
        """The suggested values of the slow axis, on the colour bar."""
        # Across the bar and out to its left, black under green: visible on every colour.
        return [
            mark_suggested_lines(
                self._colorbar.ax, positions, start=-0.4, color=colour, lw=width, clip_on=False
            )
            for colour, width in (("black", 3.2), (SUGGESTED_COLOUR, 1.8))
        ]


def _sort_key(key: float | None) -> float:
    return -math.inf if key is None else key


def _simulate_lines(
    twin: Any, x: str, slow: str | None, y: str, keys: list[Any], resolution: int
) -> dict[Any, _Curve]:
    """The twin's line at each slow-axis value in ``keys``, over its learned range of ``x``.

    Runs in the plot's background thread. Where the twin would extrapolate, NaN.
    """
    lo, hi = twin.ranges[x]
    xs = np.linspace(lo, hi, resolution)
    axes = {x: xs} if slow is None else {x: xs, slow: np.asarray(keys, dtype=float)}
    predicted = twin.predict(make_grid(**axes), warn=False)
    outside = predicted["outside_range"]
    mean = predicted[y].where(~outside)
    std = predicted[f"{y}_std"].where(~outside)
    if slow is None:
        return {None: (xs, mean.values, std.values)}
    mean = mean.transpose(slow, x).values
    std = std.transpose(slow, x).values
    return {key: (xs, mean[i], std[i]) for i, key in enumerate(keys)}
