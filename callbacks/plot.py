"""LiveTwinPlot: the measurement and its digital twin, drawn live beside each other.

A bluesky callback in the manner of ``bluesky.callbacks.mpl_plotting.LivePlot`` and ``LiveGrid``:
subscribe it to a RunEngine and it draws the measured points as they arrive, the newest twin's
simulation of the same measurement with its uncertainty, and the step (or next line) the twin
suggests once a plan has announced it.

:class:`LiveTwinPlot` is what the two layouts share, as bluesky's ``LivePlot`` and ``LiveGrid``
share ``QtAwareCallback``; each layout is a subclass in a module of its own:
:class:`~bluesky_digitwin.callbacks.LiveTwinLines` (``mode="lines"``, :mod:`.live_lines`) and
:class:`~bluesky_digitwin.callbacks.LiveTwinMap` (``mode="map"``, :mod:`.live_map`).
``LiveTwinPlot(..., mode=...)`` makes the one its mode names. This module holds the rest: the
documents taken in through a buffer, the figure's updates (timer, throttle, Qt), the twin
(looked up, swapped, asked in a background thread), the plan's suggestion, the titles, and the
errors kept away from the RunEngine. A layout draws: its axes, the measured points, the twin's
simulation, the colours, the labels, the suggested lines' marks.

How it keeps out of the RunEngine's way:

- Documents go to a :class:`~bluesky_digitwin.buffer.ScanBuffer` of its own (a few dictionary
  look-ups and appends per event) and the callback returns. A figure on screen is brought up to
  date at most once per ``min_interval`` seconds (default 0.25) and at each run's end, by
  ``canvas.draw_idle()``; an update that takes long (many points) waits longer for the next, so
  that updates take at most 2 % of the time.
- The twin is asked only when it changes (or a line at a new slow-axis value needs its curve),
  in a background thread; its result is drawn at the next update.
- Nothing it does raises into the RunEngine: errors are logged (:mod:`logging`) and counted in
  :attr:`LiveTwinPlot.errors`, and the plot keeps going.
- With a Qt backend, the RunEngine's thread only buffers the documents; a canvas timer updates
  the figure in the main thread, which owns it (the Qt "teleporter" of ``LivePlot`` brings the
  first start document there if the plot was made in another thread). It also shows what
  changes between documents, e.g. a twin swapped in while a plan waits for it. Redraws are
  spaced so that rendering takes at most a tenth of the time (it holds the GIL the RunEngine's
  thread needs), and the layout is computed again only when the margins may have changed.
- Headless (Agg, inline), nobody sees the figure before it is saved: it is brought up to date
  at each run's end (and by :meth:`LiveTwinPlot.refresh`), and nothing is rendered until
  ``savefig``.

Simulated data stays apart from measured data (Terashima et al., Digital Discovery 2 (2023) 339,
§3.5): measured points are open markers, the twin's simulation is lines, a band and maps labelled
"simulated by twin <id>"; runs marked ``data_origin: "simulated"`` are not drawn as measured.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from bluesky.callbacks.mpl_plotting import QtAwareCallback

from bluesky_digitwin.analysis.steps import StepSuggestion
from bluesky_digitwin.buffer import ScanBuffer
from bluesky_digitwin.data import DigitwinInputError
from bluesky_digitwin.plot_style import axis_label, origin_label, require_matplotlib, root_figure
from bluesky_digitwin.run_documents import RecordedDecision

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

__all__ = [
    "MODES",
    "SUGGESTED_COLOUR",
    "LiveTwinPlot",
    "PlanSuggestion",
    "mark_suggested_lines",
    "segment_span",
    "set_norm_limits",
]

logger = logging.getLogger(__name__)

#: The documents the plot reads (others pass by untouched).
_DOCUMENTS = frozenset({"start", "descriptor", "event", "event_page", "stop"})
#: What the plot draws: measured lines with the twin's curves, or measured points beside maps.
MODES = ("lines", "map")
#: Colour of the suggestion (its marks and its message); a failed suggestion is red.
SUGGESTED_COLOUR = "tab:green"
#: At most this many distinct errors are logged with a traceback; repeats go to debug.
_MAX_LOGGED_ERRORS = 50
#: Default seconds between two updates of a figure on screen: at most four redraws a second.
_GUI_INTERVAL = 0.25
#: Largest share of the time the plot's updates may take: after an update of d seconds, the
#: next waits at least d / _MAX_SHARE (more than min_interval only for large data sets).
_MAX_SHARE = 0.02
#: Largest share of the time a GUI may spend rendering the figure (measured per redraw).
_MAX_RENDER_SHARE = 0.1
#: Longer between a redraw's request and its end is not a render (e.g. a hidden window).
_MAX_RENDER_COST = 2.0
#: Titles are cut to this many characters, so that a long status cannot push the axes away.
_MAX_TITLE = 90
#: The layout each mode names: each subclass that sets ``mode`` enters itself here as it is
#: defined (LiveTwinPlot.__init_subclass__). Importing bluesky_digitwin.callbacks defines both.
_LAYOUTS: dict[str, type[LiveTwinPlot]] = {}


@dataclass(frozen=True)
class PlanSuggestion:
    """What the plot shows of a plan's decision (``LiveTwinPlot.suggestion``).

    Read from the plan's start document (``twin_guided_scan``'s suggested step,
    ``adaptive_line_scan``'s chosen line) or set by ``LiveTwinPlot.show_suggestion``.
    """

    axis: str
    message: str
    step: float | None = None  # a suggested step of the axis (twin_guided_scan)
    units: str = ""
    value: float | None = None  # one chosen line (adaptive_line_scan)
    ok: bool = True


def _key(value: float) -> float | None:
    """A slow-axis value rounded to 4 significant digits: lines that close share a twin curve.

    None for NaN or infinity (no twin curve: NaN would never equal itself as a dict key)."""
    return float(f"{value:.4g}") if math.isfinite(value) else None


def _cut(text: str, limit: int = _MAX_TITLE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _attrs(units: str | None, long_name: str | None) -> xr.DataArray:
    """An empty DataArray carrying the attributes :func:`~bluesky_digitwin.plot_style.axis_label`
    reads."""
    attrs = {k: v for k, v in (("units", units), ("long_name", long_name)) if v}
    return xr.DataArray(np.nan, attrs=attrs)


class LiveTwinPlot(QtAwareCallback):
    """Draw a scan live with its digital twin: measured points, the twin's simulation and its
    uncertainty, and the step or line the twin suggests.

    Two layouts (``mode``), each a subclass that ``LiveTwinPlot(..., mode=...)`` makes (as
    ``pathlib.Path`` makes a ``PosixPath`` or a ``WindowsPath``), or that can be made
    directly with the same parameters:

    ``"lines"``: :class:`~bluesky_digitwin.callbacks.LiveTwinLines`
        ``y`` against the scanned ``x``, one line per value of the slow axis (e.g. M(T) at each
        field H), coloured by it with a colour bar. Measured points are open markers; the
        newest twin's simulation of each measured line is a solid line of the same colour over
        the twin's learned range of ``x``, inside a band of mean ± ``n_std`` standard
        deviations of its networks (default ± 2σ: about 95 % if the networks' spread were
        Gaussian; it is the ensemble's disagreement, a rough uncertainty, not a calibrated
        one). Where the twin would extrapolate (outside its learned range) nothing simulated is
        drawn. A suggested step is named above the plot and its lines are marked on the colour
        bar.
    ``"map"``: :class:`~bluesky_digitwin.callbacks.LiveTwinMap`
        For 2-D maps measured line by line (e.g. ARPES intensity over two angles): the measured
        points coloured by ``y`` on the (``x``, ``slow``) plane; beside them the twin's map
        over its learned range (``imshow``, the same colour scale) with the measured lines
        drawn over it; and (``show_std``) the map of its networks' standard deviation, where
        it knows least. Suggested lines are dashed horizontal lines on every panel.

    The twin comes from ``twin_source``, as for the plans of :mod:`bluesky_digitwin.plans`: a
    :class:`~bluesky_digitwin.callbacks.TwinCallback` (or any object with a ``twin``
    attribute; its ``status`` is shown while there is none), a
    :class:`~bluesky_digitwin.twin.DigitalTwin`, or a function returning the twin (or None).
    It is looked at on every update of the figure (keep such a function cheap); a new twin is
    asked for its curves or map once, in a background thread.

    The suggestion comes from the start documents of the plans' lines:
    :func:`~bluesky_digitwin.plans.twin_guided_scan` records ``suggested_step`` and
    ``guided_by`` on the lines it measures at the suggested step (the lines are placed as
    :func:`~bluesky_digitwin.plans.suggested_lines` places them, over the twin's range), and
    :func:`~bluesky_digitwin.plans.adaptive_line_scan` records each line's ``decision``. Call
    :meth:`show_suggestion` with a plan's result (a
    :class:`~bluesky_digitwin.analysis.StepSuggestion`) to show one that measured no line.

    Parameters
    ----------
    y
        The measured quantity, by its twin name (the twin's target), e.g. ``"M"``.
    x
        The scanned (fast) axis, by its twin name, e.g. ``"T"``.
    slow
        The stepped axis, e.g. ``"H"``; ``None`` for plain 1-D scans (``"lines"`` only). The
        twin must have the features ``x`` and ``slow`` (or ``x`` alone).
    twin_source
        Where the newest twin comes from (see above); ``None`` draws measurements only.
    mode
        ``"lines"`` (default) or ``"map"``. ``None``: ``"lines"``, or the layout of the
        subclass made (a :class:`~bluesky_digitwin.callbacks.LiveTwinMap` draws ``"map"``).
    keys
        Twin name -> data key of the events, as for :class:`~bluesky_digitwin.buffer.ScanBuffer`
        (e.g. ``{"T": "mag_temperature", ...}``); by default the keys of ``twin_source.buffer``
        when it has one, else the names themselves. Values missing from an event are looked up
        as the buffer does (baseline, configuration, start document).
    stream
        The event stream of the points.
    n_std
        Half-width of the uncertainty band in standard deviations of the twin's networks.
    resolution
        Points along ``x`` of each simulated line; a map is ``resolution`` x ``resolution``.
    min_interval
        Seconds between two updates of the figure during a run, at least; each run's end
        updates it too. Default: 0.25 (at most four redraws a second) on a GUI canvas, and no
        updates during a run on a non-interactive one (Agg, inline). ``0`` updates at every
        document, whatever it costs.
    slow_tolerance
        Points of one run whose slow-axis values differ by more than this form separate lines.
        Default: one line per run, except in runs that move the slow axis themselves (its data
        key among the start document's ``motors``), which are split where it steps by more than
        1 % of the run's span of it.
    labels
        Long names by twin name for the axis labels, e.g. ``{"T": "temperature"}``
        ("temperature T (K)"); units come from the events' data keys, else from the twin.
    cmap
        Colour map of the slow axis (``"lines"``; default viridis without its palest yellow)
        or of ``y`` (``"map"``; default viridis).
    show_std
        In ``"map"`` mode, draw the map of the twin's uncertainty as a third panel.
    ax
        Draw into this axes (``"lines"``) or these 2 or 3 axes (``"map"``: measured, twin,
        uncertainty) instead of a new pyplot figure.
    figsize
        Size of a new figure, inches.
    use_teleporter
        As for ``LivePlot``: the figure belongs to the Qt main thread, and is updated there
        (by a timer; the teleporter brings it the first start document if the plot was made
        elsewhere). By default when matplotlib's backend is a Qt one.

    Attributes
    ----------
    figure, ax, axes
        The figure, its main axes (the measured data) and all of them by role (``"data"``,
        ``"colorbar"``; ``"map"`` mode: ``"data"``, ``"twin"``, ``"std"``), made with the plot
        (a plot made outside the main thread with Qt: when the first run starts). Artists
        carry a ``gid``: ``"measured"``, ``"twin"``, ``"twin-band"``, ``"twin-std"``,
        ``"measured-lines"``, ``"suggested"``.
    twin
        The twin whose simulation is drawn (or being computed), or None.
    suggestion
        The plan decision shown, or None.
    redraws
        Updates of the figure so far (each one ``draw_idle`` on an interactive canvas).
    predictions
        Simulations asked of twins so far.
    errors, last_error
        Errors caught and logged so far, and the latest one (``"where: Type: message"``).

    Notes
    -----
    As for ``LivePlot``, with a Qt backend in IPython make the plot (or call
    ``bluesky.callbacks.mpl_plotting.initialize_qt_teleporter()``) from the main thread, and
    ``plt.ion()``. Other GUI backends update the figure in the RunEngine's thread, as
    ``LivePlot`` does. Call :meth:`refresh` from the thread that owns the figure (the main
    thread with a GUI). In a script, ``plot.refresh(wait=30)`` before
    ``plot.figure.savefig(...)`` draws the simulation of the newest twin, which headless is
    asked for at a run's end and drawn at the next update.

    Examples
    --------
    >>> cb = TwinCallback(("T", "H"), "M", keys={"T": "mag_temperature", "H": "mag_field",
    ...                   "M": "mag_moment"})
    >>> plot = LiveTwinPlot("M", "T", "H", twin_source=cb, labels={"T": "temperature"})
    >>> RE.subscribe(cb)
    >>> RE.subscribe(plot)
    >>> RE(twin_guided_scan([mag], mag.temperature, 10, 60, 51, mag.field, [100, 2e4, 5e4],
    ...                     twin_source=cb, slow_feature="H", suggest_kwargs={"mass": 0.6e-3,
    ...                     "candidate_units": "T"}))
    """

    def __new__(cls, *args: Any, mode: str | None = None, **kwargs: Any) -> LiveTwinPlot:
        """The layout ``mode`` names, for ``LiveTwinPlot(...)``; a subclass checks it is its own."""
        if mode is not None and mode not in MODES:
            raise DigitwinInputError(f"mode must be one of {MODES}, got {mode!r}")
        if cls is LiveTwinPlot:
            cls = _LAYOUTS[mode or "lines"]  # the default layout
        elif mode is not None and mode != cls.mode:
            raise DigitwinInputError(
                f"{cls.__name__} draws mode={cls.mode!r}, not {mode!r}: make a "
                f"LiveTwinPlot(..., mode={mode!r})"
            )
        return super().__new__(cls)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "mode" in cls.__dict__:
            # The first class of a mode is its layout: a user's subclass does not replace it.
            _LAYOUTS.setdefault(cls.mode, cls)

    def __init__(
        self,
        y: str,
        x: str,
        slow: str | None = None,
        *,
        twin_source: Any = None,
        mode: str | None = None,
        keys: Mapping[str, str] | None = None,
        stream: str = "primary",
        n_std: float = 2.0,
        resolution: int = 200,
        min_interval: float | None = None,
        slow_tolerance: float | None = None,
        labels: Mapping[str, str] | None = None,
        cmap: Any = None,
        show_std: bool = True,
        ax: Axes | Sequence[Axes] | None = None,
        figsize: tuple[float, float] | None = None,
        use_teleporter: bool | None = None,
    ) -> None:
        # ``mode`` chose the class (__new__): every layout takes every option, so that
        # LiveTwinPlot(..., mode=...) takes them all whatever the mode.
        require_matplotlib()
        if use_teleporter is None:  # QtAwareCallback's rule, decided here to be known below
            import matplotlib

            use_teleporter = "qt" in matplotlib.get_backend().lower()
        super().__init__(use_teleporter=use_teleporter)
        self._teleporting = bool(use_teleporter)
        if self._needs_slow and slow is None:
            raise DigitwinInputError(f"mode={self.mode!r} needs the slow axis: give slow=...")
        if not (isinstance(resolution, (int, np.integer)) and resolution >= 2):
            raise DigitwinInputError(f"resolution must be a whole number >= 2, got {resolution!r}")
        if not (math.isfinite(n_std) and n_std > 0):
            raise DigitwinInputError(f"n_std must be a number > 0, got {n_std!r}")
        if min_interval is not None and not min_interval >= 0:
            raise DigitwinInputError(f"min_interval must be >= 0 seconds, got {min_interval!r}")
        if slow_tolerance is not None and not slow_tolerance >= 0:
            raise DigitwinInputError(f"slow_tolerance must be >= 0, got {slow_tolerance!r}")
        if twin_source is not None and not (
            _is_twin(twin_source) or hasattr(twin_source, "twin") or callable(twin_source)
        ):
            raise DigitwinInputError(
                "twin_source must be a TwinCallback (anything with a .twin), a DigitalTwin or "
                f"a function returning one; got {type(twin_source).__name__}"
            )
        n_axes = self._axes_needed(show_std)
        if ax is not None:
            given = _axes_list(ax)
            if len(given) != n_axes:
                raise DigitwinInputError(
                    f"mode={self.mode!r} draws into {n_axes} axes (show_std={show_std}), got "
                    f"{len(given)}"
                )
        self.y, self.x, self.slow = str(y), str(x), None if slow is None else str(slow)
        self.n_std = float(n_std)
        self.resolution = int(resolution)
        #: Seconds between updates during a run (resolved when the figure is made).
        self.min_interval = math.inf if min_interval is None else float(min_interval)
        self._min_interval_given = min_interval is not None
        self.slow_tolerance = slow_tolerance
        self.show_std = bool(show_std)
        self._twin_source = twin_source
        self._labels = dict(labels or {})
        self._cmap_arg = cmap
        self._ax_arg = ax
        self._figsize = figsize
        features = (self.x,) if self.slow is None else (self.x, self.slow)
        if keys is None:
            source_keys = getattr(getattr(twin_source, "buffer", None), "keys", None) or {}
            keys = {k: v for k, v in dict(source_keys).items() if k in (*features, self.y)}
        # Our own buffer, not the TwinCallback's: the plot shows what it was given, and the
        # buffer's value look-up and units are those the twin learns from.
        self._buffer = ScanBuffer(features, self.y, keys=keys, stream=stream)
        self._slow_key = None if self.slow is None else self._buffer.keys[self.slow]

        # The figure is made in the main thread with a Qt backend (matplotlib wants one
        # thread): now if the plot is made there, else at the first start document, which the
        # Qt teleporter brings there, as for LivePlot.
        self._setup_lock = threading.Lock()
        self._set_up = False
        self.figure: Figure | None = None
        self.ax: Axes | None = None
        self.axes: dict[str, Axes] = {}
        self._made_figure = False
        self._interactive = False
        self._timer: Any = None
        self._layout: Any = None  # the layout engine, managed on screen (see _freeze_layout)
        self._laid_out: tuple[Any, ...] | None = None
        self._draw_requested: float | None = None
        self._render_cost = 0.0

        # State of the figure, touched under _lock by whoever updates it. The document path
        # only ever tries the lock, so it never waits for an update running elsewhere.
        self._lock = threading.RLock()
        self._next_update = -math.inf
        self._seen_version = -1
        self._runs_scanning_slow: dict[str, bool] = {}
        self._segments: list[np.ndarray] = []
        self._segment_keys: list[float | None] = []
        self._drawn_segments: list[tuple[int, int]] = []  # (first index, length) as drawn
        self._slow_span: tuple[float, float] | None = None
        self._units: dict[str, str] = {}
        self._label_texts: dict[str, str] = {}
        self._label_units: dict[str, str] | None = None
        self._titles: dict[str, str] = {}
        self._norm: Any = None  # the colour scale of the layout's colour bar
        self._cmap: Any = None
        self._colorbar: Any = None
        self._suptitle: Any = None
        self._marks: dict[str, Any] = {}

        # The twin, its simulations, and the background thread that computes them.
        self.twin: Any = None
        self._generation = 0
        self._twin_label = ""
        self._twin_problem: str | None = None
        self._worker: threading.Thread | None = None
        self._results: queue.SimpleQueue = queue.SimpleQueue()

        self.suggestion: PlanSuggestion | None = None
        self._suggestion_drawn: tuple[Any, ...] = ()
        self.redraws = 0
        self.predictions = 0
        self.errors = 0
        self.last_error: str | None = None
        self._logged: set[tuple[str, str]] = set()
        self._init_layout()
        if not use_teleporter or threading.current_thread() is threading.main_thread():
            # Made now, in the thread that made the plot (the main thread with a GUI), rather
            # than in the RunEngine's at the first start document (a colour bar takes 0.1 s).
            self._setup()

    # -- what a layout draws (LiveTwinLines, LiveTwinMap) ----------------------------------------

    # Each layout sets ``mode``, the name LiveTwinPlot(mode=...) knows it by. Not declared here:
    # Sphinx would take a class annotation ``mode`` for the type of the ``mode`` parameter.

    _needs_slow = False  # whether the layout needs the slow axis

    @classmethod
    def _axes_needed(cls, show_std: bool) -> int:
        """How many axes the layout draws into (a given ``ax`` must have as many)."""
        raise NotImplementedError

    def _init_layout(self) -> None:
        """Set the layout's own state (its artists, simulations, colour scales)."""
        raise NotImplementedError

    def _setup_axes(self, axes: list[Axes]) -> None:
        """Fill in :attr:`axes` by role, and make the colour bars and empty artists."""
        raise NotImplementedError

    def _draw_measured(self, x: np.ndarray, s: np.ndarray | None, y: np.ndarray) -> None:
        """Draw the buffer's points: ``x``, slow axis ``s`` (None in 1-D scans) and ``y``, split
        into lines by :attr:`_segments` (with :attr:`_segment_keys`)."""
        raise NotImplementedError

    def _update_colours(self) -> None:
        """Bring the colour scale (and what is coloured by it) up to date."""
        raise NotImplementedError

    def _axis_labels(self, label: Callable[[str], str], units: Mapping[str, str]) -> dict[str, str]:
        """The labels by role (``"x"``, ``"y"``, ``"colorbar"``, ...): ``label`` names an axis
        with its units, ``units`` holds those known."""
        raise NotImplementedError

    def _show_labels(self, wanted: dict[str, str]) -> None:
        """Set the labels :meth:`_axis_labels` chose (the main axes and the colour bar here)."""
        data = self.axes["data"]
        data.set_xlabel(wanted["x"])
        data.set_ylabel(wanted["y"])
        if "colorbar" in wanted:
            self._colorbar.set_label(wanted["colorbar"])

    def _axes_titles(self, twin_title: str) -> dict[str, str]:
        """The titles by role of the axes, given the twin's (what it is, or why there is none)."""
        raise NotImplementedError

    def _update_legend(self) -> None:
        """Bring the legend up to date, where the layout has one."""

    def _forget_simulation(self) -> None:
        """Remove the simulation of the twin just replaced (its artists, data and scales)."""
        raise NotImplementedError

    def _simulation_job(self, twin: Any) -> Callable[[], Any] | None:
        """What to ask the twin for in the background (its result goes to
        :meth:`_take_simulation`), or None if everything is simulated already."""
        raise NotImplementedError

    def _take_simulation(self, payload: Any) -> None:
        """Draw what a :meth:`_simulation_job` returned."""
        raise NotImplementedError

    def _draw_marks(self, positions: np.ndarray) -> list[Any]:
        """Mark the suggested values of the slow axis; returns the artists."""
        raise NotImplementedError

    # -- the document path ----------------------------------------------------------------------

    def __call__(self, name: str, doc: Mapping[str, Any], *, escape: bool = False) -> Any:
        """Take one document; never raises.

        The document goes to the plot's buffer in the calling thread (the RunEngine's), which
        costs a few microseconds and touches no matplotlib object. The figure is updated there
        too, when it is time, except with the Qt teleporter: then the GUI's timer updates it
        in the main thread, and only the first start document, if the figure is still to be
        made, travels there (``escape=True`` marks its arrival).
        """
        try:
            if escape:
                self._setup()
                self._maybe_update()
            elif name in _DOCUMENTS:
                self._take(name, doc)
                if not self._teleporting:
                    # The run's last points are drawn at its end, not at a later document.
                    self._maybe_update(force=name == "stop")
                elif name == "start" and not self._set_up:
                    super().__call__(name, doc)  # QtAwareCallback: to the main thread
        except Exception as exc:
            # A live plot is never worth a scan: an exception in a callback aborts it.
            self._report(f"taking a {name!r} document", exc)
        return None

    def _take(self, name: str, doc: Mapping[str, Any]) -> None:
        """Buffer a document and note what a start document says (any thread, no matplotlib)."""
        self._buffer.ingest(name, doc)
        if name != "start":
            return
        if self.slow is not None:
            motors = doc.get("motors") or ()
            self._runs_scanning_slow[str(doc.get("uid"))] = self._slow_key in motors
        suggestion = _suggestion_from_start(doc)
        if suggestion is not None:
            self.suggestion = suggestion

    def _maybe_update(self, force: bool = False) -> None:
        """Update the figure if it is time to (or ``force``); cheap otherwise."""
        if not force and time.monotonic() < self._next_update:
            return
        # Do not wait (at a run's end, a moment): an update running in another thread (a GUI
        # timer, refresh()) shows the new points too, or the next document or tick will.
        if not self._lock.acquire(timeout=0.05 if force else 0.0):
            return
        try:
            self._update()
        finally:
            self._lock.release()

    def _on_timer(self) -> None:
        """The canvas timer (GUI thread): updates between documents, e.g. a new twin."""
        try:
            self._maybe_update()
        except Exception as exc:
            self._report("the timer", exc)

    # -- public ---------------------------------------------------------------------------------

    def refresh(self, wait: float = 0.0) -> None:
        """Bring the figure up to date now and redraw it, whatever ``min_interval`` says.

        Parameters
        ----------
        wait
            Seconds to wait, at most, for the twin's simulation being computed (and any it
            asks for next), so that it is drawn now rather than at a later update.
        """
        self._setup()
        deadline = time.monotonic() + max(float(wait), 0.0)
        while True:
            with self._lock:
                self._update(draw=True)
                worker = self._worker
            busy = worker is not None and worker.is_alive()
            if not busy and self._results.empty():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if busy:
                worker.join(remaining)
            else:
                time.sleep(0.01)  # a result came in after the update: the next one draws it

    def show_suggestion(self, suggestion: StepSuggestion | Mapping[str, Any] | None) -> None:
        """Show a plan's decision: a :class:`~bluesky_digitwin.analysis.StepSuggestion`, a
        ``{"axis", "value", "units"}`` step as in the start documents (``"message"`` optional),
        or None to clear it. Drawn at the next update (:meth:`refresh` draws it now)."""
        if suggestion is None:
            self.suggestion = None
        elif isinstance(suggestion, StepSuggestion):
            self.suggestion = PlanSuggestion(
                axis=suggestion.axis,
                message=suggestion.message,
                step=suggestion.step,
                units=suggestion.units,
                ok=suggestion.step is not None,
            )
        elif isinstance(suggestion, Mapping) and "axis" in suggestion:
            step = suggestion.get("value")
            self.suggestion = _step_suggestion(
                str(suggestion["axis"]),
                None if step is None else float(step),
                str(suggestion.get("units") or ""),
                suggestion.get("message"),
            )
        else:
            raise DigitwinInputError(
                "show_suggestion takes a StepSuggestion or a {'axis', 'value', 'units'} mapping, "
                f"got {type(suggestion).__name__}"
            )

    def close(self) -> None:
        """Stop the timer and close the figure if the plot made it (pyplot keeps figures)."""
        if self._timer is not None:
            try:
                self._timer.stop()
            except Exception as exc:  # the canvas may be gone already
                self._report("stopping the timer", exc)
            self._timer = None
        if self._made_figure and self.figure is not None:
            import matplotlib.pyplot as plt

            plt.close(self.figure)

    def __repr__(self) -> str:
        twin = "none" if self.twin is None else str(getattr(self.twin, "id", "?"))[:8]
        axes = self.x if self.slow is None else f"{self.x}, {self.slow}"
        return (
            f"<LiveTwinPlot {self.y}({axes}) {self.mode}: {self._buffer.n_points} points, "
            f"twin {twin}, {self.redraws} redraws, {self.errors} errors>"
        )

    # -- the figure -----------------------------------------------------------------------------

    def _setup(self) -> None:
        with self._setup_lock:
            if self._set_up:
                return
            self._set_up = True
        from matplotlib.backend_bases import FigureCanvasBase

        axes = self._make_axes()
        self.figure = root_figure(axes[0])
        canvas = self.figure.canvas
        # Agg and the inline backend render only when saved or shown: redrawing there during
        # the run would spend the RunEngine's time on pictures nobody sees.
        self._interactive = (
            getattr(canvas, "required_interactive_framework", None) is not None
            or type(canvas).draw_idle is not FigureCanvasBase.draw_idle
        )
        self._setup_axes(axes)
        self.ax = self.axes["data"]
        if not self._min_interval_given:
            # Headless, nobody sees the figure until it is saved: updating it during a run
            # would only cost the RunEngine time. It is brought up to date at each run's end.
            self.min_interval = _GUI_INTERVAL if self._interactive else math.inf
        if self._interactive and 0 < self.min_interval < math.inf:
            self._timer = canvas.new_timer(interval=max(int(self.min_interval * 1000), 10))
            self._timer.add_callback(self._on_timer)
            self._timer.start()
        if self._interactive:
            from matplotlib.layout_engine import PlaceHolderLayoutEngine

            engine = self.figure.get_layout_engine()
            if engine is not None and not isinstance(engine, PlaceHolderLayoutEngine):
                # Constrained layout is most of a redraw (0.13 of 0.16 s here): run it only
                # when the margins may change, and keep the axes where they are otherwise.
                self._layout = engine
                canvas.mpl_connect("resize_event", self._on_resize)
            canvas.mpl_connect("draw_event", self._on_draw)

    def _make_axes(self) -> list[Axes]:
        n_axes = self._axes_needed(self.show_std)
        given = self._ax_arg
        if given is not None:  # its length was checked when the plot was made
            return _axes_list(given)
        import matplotlib.pyplot as plt

        # pyplot, not a bare Figure: in IPython the figure then gets a window like LivePlot's.
        default = (7.5, 5.4) if n_axes == 1 else (4.6 * n_axes + 1.2, 4.4)
        fig = plt.figure(figsize=self._figsize or default, layout="constrained")
        self._made_figure = True
        if n_axes == 1:
            return [fig.add_subplot()]
        return list(fig.subplots(1, n_axes, sharex=True, sharey=True))

    # -- updating -------------------------------------------------------------------------------

    def _update(self, draw: bool = False) -> None:
        """Bring every part of the figure up to date (caller holds _lock); never raises."""
        self._setup()
        started = time.monotonic()
        changed = False
        for where, step in (
            ("drawing the measured points", self._update_measured),
            ("updating the twin", self._update_twin),
            ("drawing the suggestion", self._update_suggestion),
            ("updating the titles", self._update_titles),
        ):
            try:
                changed = step() or changed
            except Exception as exc:
                self._report(where, exc)
        if changed:
            try:
                self._update_legend()
            except Exception as exc:
                self._report("updating the legend", exc)
        if changed or draw:
            try:
                self.redraws += 1
                if self._interactive:
                    self._freeze_layout()
                    if self._draw_requested is None:
                        self._draw_requested = time.monotonic()
                    self.figure.canvas.draw_idle()
            except Exception as exc:
                self._report("redrawing", exc)
        # Large data sets make updates slower, and a GUI renders each: space them so that
        # updates take at most _MAX_SHARE of the time and renders _MAX_RENDER_SHARE, a GIL
        # the RunEngine's thread shares (min_interval 0 asks for every document, whatever it
        # costs; inf, headless, leaves only the forced updates: runs' ends and refresh()).
        took = time.monotonic() - started
        if self.min_interval > 0:
            self._next_update = started + max(
                self.min_interval, took / _MAX_SHARE, self._render_cost / _MAX_RENDER_SHARE
            )
        else:
            self._next_update = -math.inf

    def _freeze_layout(self) -> None:
        """Let the layout engine run at the next draw only if the margins may have changed:
        other text, other tick labels (widths), another figure size."""
        if self._layout is None:
            return
        try:
            key = self._layout_key()
        except Exception:  # no key, no freezing: the layout runs
            key = None
        if key is None or key != self._laid_out:
            self._laid_out = key
            self.figure.set_layout_engine(self._layout)
        else:
            self.figure.set_layout_engine("none")  # keeps the axes where the last layout put them

    def _layout_key(self) -> tuple[Any, ...]:
        fig = self.figure
        parts: list[Any] = [tuple(fig.get_size_inches()), fig.dpi, bool(self._suptitle_text())]
        for ax in self.axes.values():
            parts += [ax.get_xlabel(), ax.get_ylabel(), bool(ax.get_title())]
            for axis in (ax.xaxis, ax.yaxis):
                locs = axis.get_majorticklocs()
                parts.append(tuple(axis.get_major_formatter().format_ticks(locs)))
        legend = self.axes["data"].get_legend()
        parts.append(None if legend is None else tuple(t.get_text() for t in legend.get_texts()))
        return tuple(parts)

    def _suptitle_text(self) -> str:
        return "" if self._suptitle is None else self._suptitle.get_text()

    def _on_draw(self, event: Any) -> None:
        """A render finished (GUI thread): how long it took, from the request, at most."""
        if self._draw_requested is None:
            return
        latency = time.monotonic() - self._draw_requested
        self._draw_requested = None
        # Smoothed, so that one slow render (a garbage collection) does not stall the plot;
        # a latency of seconds is a hidden window that drew nothing meanwhile, not a render.
        if latency < _MAX_RENDER_COST:
            self._render_cost = 0.5 * (self._render_cost + latency)

    def _on_resize(self, event: Any) -> None:
        try:
            self._laid_out = None
            self.figure.set_layout_engine(self._layout)  # new margins for the new size
        except Exception as exc:
            self._report("laying out the resized figure", exc)

    def _update_measured(self) -> bool:
        version = self._buffer.version
        if version == self._seen_version:
            return False
        data = self._buffer.snapshot()
        self._seen_version = int(data.attrs["buffer_version"])
        for name in (self.x, self.slow, self.y):
            if name is not None and data[name].attrs.get("units"):
                self._units.setdefault(name, data[name].attrs["units"])
        x = data[self.x].values
        y = data[self.y].values
        s = data[self.slow].values if self.slow is not None else None
        self._segments = self._split(data["run_uid"].values, s)
        if s is not None and s.size:
            # A line's key changes only while it grows: the others keep theirs.
            known = dict(zip(self._drawn_segments, self._segment_keys, strict=False))
            self._segment_keys = [
                known[span] if span in known else _key(float(np.median(s[idx])))
                for span, idx in zip(map(segment_span, self._segments), self._segments, strict=True)
            ]
            finite = s[np.isfinite(s)]
            if finite.size:
                self._slow_span = (float(finite.min()), float(finite.max()))
        else:
            self._segment_keys = [None] * len(self._segments)
        self._draw_measured(x, s, y)
        self._drawn_segments = [segment_span(idx) for idx in self._segments]
        self._set_labels()
        self._update_colours()
        return True

    def _split(self, runs: np.ndarray, s: np.ndarray | None) -> list[np.ndarray]:
        """Indices of each measured line: a run, or its parts at each value of the slow axis."""
        n = runs.size
        if n == 0:
            return []
        starts = np.flatnonzero(np.r_[True, runs[1:] != runs[:-1]])
        bounds = [*starts.tolist(), n]
        segments = []
        for a, b in itertools.pairwise(bounds):
            tol = self.slow_tolerance
            if s is not None and b - a > 1 and tol is None:
                if self._runs_scanning_slow.get(str(runs[a]), False):
                    tol = 0.01 * float(np.ptp(s[a:b]))
            if s is None or tol is None or b - a < 2:
                segments.append(np.arange(a, b))
                continue
            cuts = np.flatnonzero(np.abs(np.diff(s[a:b])) > tol) + 1 + a
            edges = [a, *cuts.tolist(), b]
            segments.extend(np.arange(i, j) for i, j in itertools.pairwise(edges))
        return segments

    def _set_labels(self) -> None:
        units = dict(self._units)
        if self.twin is not None:
            for name, unit in (getattr(self.twin, "units", None) or {}).items():
                if unit:
                    units.setdefault(name, unit)

        if units == self._label_units:
            return
        self._label_units = units

        def label(name: str) -> str:
            return axis_label(name, _attrs(units.get(name), self._labels.get(name)))

        wanted = self._axis_labels(label, units)
        if wanted == self._label_texts:
            return
        self._label_texts = wanted
        self._show_labels(wanted)

    # -- the twin -------------------------------------------------------------------------------

    def _resolve_twin(self) -> Any:
        source = self._twin_source
        if source is None:
            return None
        if _is_twin(source):
            return source
        if hasattr(source, "twin"):
            return source.twin
        return source()

    def _update_twin(self) -> bool:
        changed = False
        twin = self._resolve_twin()
        if twin is not self.twin:
            self._swap_twin(twin)
            changed = True
        while True:
            try:
                generation, payload = self._results.get_nowait()
            except queue.Empty:
                break
            if generation != self._generation:
                continue  # the simulation of a twin since replaced
            changed = True
            if isinstance(payload, BaseException):
                self._twin_problem = f"the twin's simulation failed: {type(payload).__name__}"
                self._report("simulating with the twin", payload)
            else:
                self._take_simulation(payload)
        self._ask_twin()
        return changed

    def _swap_twin(self, twin: Any) -> None:
        self.twin = twin
        self._generation += 1
        self._twin_problem = None
        self._twin_label = ""
        self._forget_simulation()
        if twin is None:
            return
        self._twin_label = origin_label(xr.Dataset(attrs={"twin_id": getattr(twin, "id", "")}))
        features = tuple(getattr(twin, "features", ()))
        wanted = (self.x,) if self.slow is None else (self.x, self.slow)
        if set(features) != set(wanted) or getattr(twin, "target", None) != self.y:
            self._twin_problem = (
                f"the twin simulates {getattr(twin, 'target', '?')}({', '.join(features)}), "
                f"not {self.y}({', '.join(wanted)})"
            )
        self._set_labels()
        self._update_colours()

    def _ask_twin(self) -> None:
        """Start the twin's simulation of what is not simulated yet, in a background thread."""
        twin = self.twin
        if twin is None or self._twin_problem is not None:
            return
        if self._worker is not None and self._worker.is_alive():
            return  # one at a time; the next update asks for what is still missing
        job = self._simulation_job(twin)
        if job is None:
            return
        generation = self._generation
        results = self._results

        def work() -> None:
            try:
                payload = job()
            except Exception as exc:  # drawn and logged by the next update
                payload = exc
            results.put((generation, payload))

        self.predictions += 1
        self._worker = threading.Thread(target=work, name="digitwin-live-plot", daemon=True)
        self._worker.start()

    # -- the suggestion -------------------------------------------------------------------------

    def _suggested_positions(self, suggestion: PlanSuggestion) -> np.ndarray:
        """Slow-axis values of the suggested lines (empty if unknown), as the plan places them."""
        if suggestion.axis != self.slow:
            return np.array([])
        if suggestion.value is not None:
            return np.array([suggestion.value])
        if suggestion.step is None:
            return np.array([])
        twin = self.twin
        ranges = getattr(twin, "ranges", None) or {}
        span = ranges.get(self.slow) or self._slow_span
        if span is None or not span[1] > span[0]:
            return np.array([])
        from bluesky_digitwin.plans import suggested_lines

        units = (getattr(twin, "units", None) or {}).get(self.slow) or self._units.get(self.slow)
        placed = suggested_lines(
            SimpleNamespace(units={self.slow: units or ""}, ranges={self.slow: span}),
            SimpleNamespace(
                axis=self.slow, step=suggestion.step, units=suggestion.units, message=""
            ),
            units or None,
        )
        return np.asarray(placed, dtype=float)

    def _update_suggestion(self) -> bool:
        suggestion = self.suggestion
        # The lines are placed over the twin's range, or without a twin the measured one.
        ranges = getattr(self.twin, "ranges", None) or {}
        span = ranges.get(self.slow) if self.slow in ranges else self._slow_span
        units = (getattr(self.twin, "units", None) or {}).get(self.slow, self._units.get(self.slow))
        key = (suggestion, span, units)
        if key == self._suggestion_drawn:
            return False
        self._suggestion_drawn = key
        for artist in self._marks.pop("artists", []):
            artist.remove()
        self._marks = {}
        if suggestion is None:
            if self._suptitle is not None:
                self._suptitle.set_text("")
            return True
        colour = SUGGESTED_COLOUR if suggestion.ok else "tab:red"
        self._suptitle = self.figure.suptitle(
            _cut(suggestion.message, 120), color=colour, fontsize="medium"
        )
        try:
            positions = self._suggested_positions(suggestion)
        except Exception as exc:  # e.g. units that do not convert: the message still shows
            self._report("placing the suggested lines", exc)
            positions = np.array([])
        if positions.size:
            self._marks["positions"] = positions
            self._marks["artists"] = self._draw_marks(positions)
            self._update_colours()
        return True

    # -- titles ------------------------------------------------------------------------------------

    def _status_text(self) -> str:
        status = getattr(self._twin_source, "status", None)
        if status is None:
            return ""
        state = getattr(status, "state", "")
        if state == "training" and getattr(status, "trials_total", None):
            return f"training: {status.trials_finished or 0}/{status.trials_total} trials"
        message = getattr(status, "message", "")
        return f"{state}: {message}" if message else str(state)

    def _twin_title(self) -> str:
        if self._twin_source is None:
            return "measured only (no twin source)"
        if self.twin is None:
            status = self._status_text()
            return f"no twin yet ({status})" if status else "no twin yet"
        if self._twin_problem is not None:
            return self._twin_problem
        label = self._twin_label or f"simulated by twin {str(getattr(self.twin, 'id', ''))[:8]}"
        networks = getattr(self.twin, "ensemble_size", None)
        text = f"{label}, {networks} networks" if networks else label
        status = getattr(self._twin_source, "status", None)
        if getattr(status, "state", None) == "training":
            text += f"; a newer one in {self._status_text()}"
        return text

    def _update_titles(self) -> bool:
        wanted = self._axes_titles(_cut(self._twin_title()))
        changed = False
        for role, text in wanted.items():
            if self._titles.get(role) != text:
                self._titles[role] = text
                self.axes[role].set_title(text, fontsize="medium")
                changed = True
        return changed

    # -- errors ---------------------------------------------------------------------------------

    def _report(self, where: str, exc: BaseException) -> None:
        """Log an error once with its traceback (repeats at debug level) and carry on."""
        self.errors += 1
        self.last_error = f"{where}: {type(exc).__name__}: {exc}"
        key = (where, f"{type(exc).__name__}: {exc}")
        if key not in self._logged and len(self._logged) < _MAX_LOGGED_ERRORS:
            self._logged.add(key)
            logger.error(
                "LiveTwinPlot ignored an error while %s (the scan goes on)",
                where,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        else:
            logger.debug("LiveTwinPlot: again while %s: %s", where, exc)


# help(), IDEs and Sphinx read a class's parameters from __new__ before __init__: show those of
# __init__, which every layout takes (__new__ only picks the layout by ``mode``).
_init_signature = inspect.signature(LiveTwinPlot.__init__)
LiveTwinPlot.__signature__ = _init_signature.replace(  # type: ignore[attr-defined]
    parameters=list(_init_signature.parameters.values())[1:],
    return_annotation=inspect.Signature.empty,
)


# -- helpers -------------------------------------------------------------------------------------


def set_norm_limits(norm: Any, lo: float, hi: float) -> None:
    """Set both limits of a colour norm with one "changed" signal: each redraws its colour bars."""
    if (norm.vmin, norm.vmax) == (lo, hi):
        return
    with norm.callbacks.blocked(signal="changed"):
        norm.vmin = lo
        norm.vmax = hi
    norm.callbacks.process("changed")


def segment_span(idx: np.ndarray) -> tuple[int, int]:
    """(first index, length) of a measured line's points (its indices ``idx`` in the buffer):
    what tells a line that grew from one drawn already."""
    return (int(idx[0]), idx.size) if idx.size else (0, 0)


def mark_suggested_lines(
    ax: Axes, positions: np.ndarray, start: float = 0.0, **style: Any
) -> Line2D:
    """One line across ``ax`` at each y-value in ``positions``: from ``start`` to the right edge,
    in fractions of the axes' width, so that the marks stay across it whatever its x limits.

    One artist for all (NaN between the lines), gid ``"suggested"``; ``style`` is for ``plot``.
    """
    from matplotlib.transforms import blended_transform_factory

    ys = np.repeat(positions, 3)
    ys[2::3] = np.nan
    xs = np.tile([start, 1.0, np.nan], positions.size)
    transform = blended_transform_factory(ax.transAxes, ax.transData)
    (line,) = ax.plot(xs, ys, transform=transform, gid="suggested", **style)
    return line


def _axes_list(ax: Any) -> list[Any]:
    """One axes, or a sequence or array of them (``fig.subplots(1, 3)``), as a list."""
    if isinstance(ax, (Sequence, np.ndarray)):
        return list(np.ravel(np.asarray(ax, dtype=object)))
    return [ax]


def _is_twin(obj: Any) -> bool:
    """A twin itself (DigitalTwin or alike), rather than a source of twins."""
    return hasattr(obj, "predict") and hasattr(obj, "features") and hasattr(obj, "ranges")


def _step_suggestion(
    axis: str, step: float | None, units: str, message: str | None = None
) -> PlanSuggestion:
    unit = f" {units}" if units else ""
    if message is None:
        message = (
            f"suggested step of {axis}: {step:g}{unit}"
            if step is not None
            else f"no suggested step of {axis}"
        )
    return PlanSuggestion(
        axis=axis, message=str(message), step=step, units=units, ok=step is not None
    )


def _suggestion_from_start(doc: Mapping[str, Any]) -> PlanSuggestion | None:
    """The decision a plan of :mod:`bluesky_digitwin.plans` recorded in a line's start document."""
    recorded = RecordedDecision.from_start(doc)
    if recorded is None:
        return None
    if recorded.value is None:
        return _step_suggestion(recorded.axis, recorded.step, recorded.step_units, recorded.message)
    message = f"the twin chose the line {recorded.axis} = {recorded.value:g}"
    if recorded.score is not None:
        units = f" {recorded.score_units}" if recorded.score_units else ""
        message += f" ({recorded.criterion} {recorded.score:.3g}{units})"
    return PlanSuggestion(axis=recorded.axis, message=message, value=recorded.value)
