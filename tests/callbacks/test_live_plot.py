"""LiveTwinPlot and its two layouts, LiveTwinLines and LiveTwinMap (callbacks/plot.py,
live_lines.py, live_map.py), in a real RunEngine with the simulated instruments, headless (Agg).

The lines layout follows the paper's workflow once per module: a real TwinCallback (a tiny
search: 2 trials of a 2x16 network, 20 epochs, in a background process) learns coarse M(T)
lines of the simulated magnetometer, and ``twin_guided_scan`` measures the suggested line, with
the plot subscribed throughout; the other tests reuse its twin.

No test asserts on speed: what the RunEngine pays is counted (updates of the figure, renders),
and measured by benchmarks/bench_live_plot.py. Where a Qt binding is installed (the project does
not require one), one more test runs the plot on a Qt canvas offscreen, in a subprocess.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import logging
import math
import os
import subprocess
import sys
import warnings
from types import SimpleNamespace
from typing import Any

import bluesky.plan_stubs as bps
import matplotlib
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import scan
from digitwin_testing import two_network_fit
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from bluesky_digitwin import DigitalTwin, DigitwinInputError
from bluesky_digitwin.callbacks import (
    LiveTwinLines,
    LiveTwinMap,
    LiveTwinPlot,
    RetrainPolicy,
    TwinCallback,
)
from bluesky_digitwin.data import make_grid
from bluesky_digitwin.plans import simulate_scan, suggested_lines, twin_guided_scan
from bluesky_digitwin.sim import Magnetometer

matplotlib.use("Agg")

KEYS = {"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"}
TINY = two_network_fit()
COARSE = [100.0, 20000.0, 50000.0]
POINTS = 8
#: Generous: a training is mostly TensorFlow starting, on a machine that may be busy.
TIMEOUT = 240


def gids(ax: Any, gid: str) -> list[Any]:
    return [a for a in ax.get_children() if a.get_gid() == gid]


def line_scan(RE: RunEngine, mag: Magnetometer, field: float, n: int = POINTS, **md: Any) -> None:
    RE(bps.mv(mag.field, field))
    RE(scan([mag], mag.temperature, 10, 60, n, md=md))


class Probe:
    """Subscribed after the plot: what the plot showed when each run started."""

    def __init__(self, plot: LiveTwinPlot) -> None:
        self.plot = plot
        self.seen: list[dict[str, Any]] = []

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            ax = self.plot.ax
            self.seen.append(
                {
                    "phase": doc.get("phase"),
                    "twin": self.plot.twin,
                    "twin_lines": len(gids(ax, "twin")),
                    "bands": len(gids(ax, "twin-band")),
                    "title": ax.get_title(),
                }
            )


@pytest.fixture(scope="module")
def guided() -> Any:
    """The paper's workflow, live: coarse lines, a twin, the suggested line, all plotted."""
    RE = RunEngine({}, call_returns_result=True)
    mag = Magnetometer(noise=0.0, seconds_per_point=0.0, name="mag")
    # The coarse lines reach min_points (20) only with the last one: no debounce needed. No
    # spare training process either: it would only compete for the CPU with the plan.
    policy = RetrainPolicy(debounce=0.1)
    cb = TwinCallback(("T", "H"), "M", keys=KEYS, fit_options=TINY, policy=policy, prewarm=False)
    plot = LiveTwinPlot(
        "M", "T", "H", twin_source=cb, labels={"T": "temperature", "H": "field", "M": "moment"}
    )
    probe = Probe(plot)
    docs: list[tuple[str, dict]] = []
    RE.subscribe(cb)
    RE.subscribe(plot)
    RE.subscribe(probe)
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    try:
        suggestion = RE(
            twin_guided_scan(
                [mag.moment],
                mag.temperature,
                10.0,
                60.0,
                POINTS,
                mag.field,
                COARSE,
                twin_source=cb,
                slow_feature="H",
                quantity="map",
                candidates=[12475.0, 24950.0],
                # A loose tolerance: the tiny twin's map "converges" at the coarser candidate.
                suggest_kwargs={"tol": 10.0, "sweep_points": 11},
                timeout=TIMEOUT,
                poll=0.05,
            )
        ).plan_result
    finally:
        # No more trainings: the twin the plot shows stays the one the tests compare with.
        cb.close()
    plot.refresh(wait=60)
    yield SimpleNamespace(RE=RE, cb=cb, plot=plot, probe=probe, docs=docs, suggestion=suggestion)
    plot.close()


@pytest.fixture
def RE() -> RunEngine:
    return RunEngine({})


@pytest.fixture
def mag() -> Magnetometer:
    return Magnetometer(noise=0.0, seconds_per_point=0.0, name="mag")


@pytest.fixture
def make_plot():
    """Make plots that are closed (their pyplot figures too) at the end of the test."""
    made: list[LiveTwinPlot] = []

    def make(*args: Any, **kwargs: Any) -> LiveTwinPlot:
        kwargs.setdefault("keys", KEYS)
        plot = LiveTwinPlot(*args, **kwargs)
        made.append(plot)
        return plot

    yield make
    for plot in made:
        plot.close()


# -- the paper's workflow, live ------------------------------------------------------------------


def test_measured_points_appear_one_line_per_field(guided):
    events = [doc for name, doc in guided.docs if name == "event"]
    measured = gids(guided.plot.ax, "measured")
    assert len(measured) == len(COARSE) + 1  # the coarse lines and the suggested one
    drawn = np.concatenate([np.column_stack(line.get_data()) for line in measured])
    sent = np.array([[e["data"]["mag_temperature"], e["data"]["mag_moment"]] for e in events])
    np.testing.assert_array_equal(drawn, sent)
    colours = {matplotlib.colors.to_hex(line.get_color()) for line in measured}
    assert len(colours) == len(measured)  # one colour per field
    assert guided.plot.errors == 0, guided.plot.last_error
    # Labels with units, from the events' data keys.
    assert guided.plot.ax.get_xlabel() == "temperature T (K)"
    assert guided.plot.ax.get_ylabel() == "moment M (emu)"
    assert guided.plot.axes["colorbar"].get_ylabel() == "field H (Oe)"


def test_the_band_appears_once_a_twin_is_available(guided):
    # While the coarse lines were measured there was no twin, and nothing simulated was drawn.
    coarse = [seen for seen in guided.probe.seen if seen["phase"] == "coarse"]
    assert len(coarse) == len(COARSE)
    for seen in coarse:
        assert seen["twin"] is None and seen["twin_lines"] == seen["bands"] == 0
        assert seen["title"].startswith("no twin yet")
    twin = guided.cb.twin
    plot = guided.plot
    assert plot.twin is twin
    fields = sorted({float(e["data"]["mag_field"]) for n, e in guided.docs if n == "event"})
    lines, bands = gids(plot.ax, "twin"), gids(plot.ax, "twin-band")
    assert len(lines) == len(bands) == len(fields)
    assert all(isinstance(band, PolyCollection) for band in bands)
    # Each band is the mean ± 2σ of the twin's networks over its learned range of T.
    line, band = lines[0], bands[0]
    T = line.get_xdata()
    assert (T[0], T[-1]) == twin.ranges["T"] and len(T) == plot.resolution
    (H,) = {f for f in fields if np.allclose(line.get_ydata(), _mean_at(twin, T, f))}
    predicted = twin.predict(make_grid(T=T, H=[H]))
    std = predicted["M_std"].values.ravel()
    assert std.max() > 0
    edges = band.get_paths()[0].vertices[:, 1]
    mean = predicted["M"].values.ravel()
    assert np.isclose(edges.max(), (mean + 2 * std).max())
    assert np.isclose(edges.min(), (mean - 2 * std).min())
    legend = [t.get_text() for t in plot.ax.get_legend().get_texts()]
    assert legend[:3] == [
        "measured",
        f"simulated by twin {twin.id[:8]}",
        "mean ± 2σ of its networks",
    ]
    assert plot.ax.get_title() == f"simulated by twin {twin.id[:8]}, 2 networks"


def _mean_at(twin: DigitalTwin, T: Any, H: Any) -> np.ndarray:
    return twin.predict(make_grid(T=T, H=np.atleast_1d(H)))["M"].values.ravel()


def test_the_suggested_step_is_named_and_its_lines_marked(guided):
    suggestion, plot = guided.suggestion, guided.plot
    assert suggestion.step == 24950.0
    assert plot.suggestion.step == suggestion.step and plot.suggestion.units == "Oe"
    title = plot.figure.get_suptitle()
    assert title == suggestion.message and title.startswith("suggested step of H: 24950 Oe")
    # Marked on the colour bar where the plan measures: the twin's range in steps of 24950 Oe.
    expected = suggested_lines(guided.cb.twin, suggestion)
    marks = gids(plot.axes["colorbar"], "suggested")
    assert marks
    np.testing.assert_allclose(marks[-1].get_ydata()[::3], expected)
    assert "suggested lines of H (colour bar)" in [
        t.get_text() for t in plot.ax.get_legend().get_texts()
    ]

    # A plan result with no step (nothing converged): its message, in red, no marks.
    failed = dataclasses.replace(suggestion, step=None)
    plot.show_suggestion(failed)
    plot.refresh()
    assert plot.figure.get_suptitle().startswith("no candidate step of H meets tol")
    assert gids(plot.axes["colorbar"], "suggested") == []
    plot.show_suggestion(suggestion)
    plot.refresh()
    assert gids(plot.axes["colorbar"], "suggested")


def test_a_new_twin_is_drawn_when_swapped_in(guided, tmp_path, make_plot, RE, mag):
    twin = guided.cb.twin
    copy = DigitalTwin.load(twin.save(tmp_path / "copy"))  # the same networks, a new object
    holder = {"twin": None}
    plot = make_plot("M", "T", "H", twin_source=lambda: holder["twin"])
    RE.subscribe(plot)
    line_scan(RE, mag, 20000.0)
    plot.refresh(wait=60)
    assert plot.twin is None and gids(plot.ax, "twin") == [] and plot.predictions == 0
    holder["twin"] = twin
    plot.refresh(wait=60)
    first = gids(plot.ax, "twin")
    assert len(first) == 1 and plot.predictions == 1
    plot.refresh(wait=60)  # the same twin: asked nothing again
    assert plot.predictions == 1 and gids(plot.ax, "twin") == first
    holder["twin"] = copy
    plot.refresh(wait=60)
    second = gids(plot.ax, "twin")
    assert plot.twin is copy and plot.predictions == 2
    assert len(second) == 1 and second[0] is not first[0]
    # A line at a new field: only its curve is asked for.
    line_scan(RE, mag, 35000.0)
    plot.refresh(wait=60)
    assert plot.predictions == 3 and len(gids(plot.ax, "twin")) == 2
    assert plot.errors == 0, plot.last_error


def test_simulated_runs_are_not_drawn_as_measured(guided, make_plot):
    RE = RunEngine({})
    plot = make_plot("M", "T", "H", twin_source=guided.cb.twin)
    RE.subscribe(plot)
    RE(simulate_scan(guided.cb.twin, make_grid(T=np.linspace(10, 60, 5), H=[1e4])))
    plot.refresh()
    assert gids(plot.ax, "measured") == []
    assert plot.errors == 0, plot.last_error


# -- maps ----------------------------------------------------------------------------------------


def test_map_mode_draws_measured_lines_beside_the_twins_map(guided, RE, mag, make_plot):
    # The magnetometer's M(T, H) as a map, measured line by line like an ARPES map.
    twin = guided.cb.twin
    plot = make_plot(
        "M", "T", "H", mode="map", twin_source=twin, resolution=40, labels={"T": "temperature"}
    )
    RE.subscribe(plot)
    fields = [5000.0, 20000.0, 35000.0]
    for field in fields:
        # An adaptive_line_scan line records the twin's decision like this.
        decision = {"value": field, "score": 0.0125, "criterion": "disagreement", "units": "emu"}
        slow_axis = {"name": "mag_field", "feature": "H", "value": field}
        line_scan(RE, mag, field, n=11, decision=decision, slow_axis=slow_axis)
    plot.refresh(wait=60)
    assert plot.errors == 0, plot.last_error

    data, twin_ax, std_ax = plot.axes["data"], plot.axes["twin"], plot.axes["std"]
    (scatter,) = gids(data, "measured")
    offsets = np.asarray(scatter.get_offsets())
    assert offsets.shape == (33, 2)
    assert sorted(set(offsets[:, 1])) == fields
    assert data.get_title() == "measured (33 points)"
    (mesh,) = gids(twin_ax, "twin")
    assert isinstance(mesh, AxesImage) and mesh.get_array().shape == (40, 40)
    np.testing.assert_allclose(
        mesh.get_array()[:, 0], _mean_at(twin, np.array([10.0]), np.linspace(100, 5e4, 40)), 1e-5
    )
    (std_mesh,) = gids(std_ax, "twin-std")
    assert np.nanmax(std_mesh.get_array()) > 0
    # The measured lines over the maps, where the twin learned from measurements.
    (over,) = gids(twin_ax, "measured-lines")
    assert sorted(set(np.asarray(over.get_ydata())[::3])) == fields
    assert twin_ax.get_title() == f"simulated by twin {twin.id[:8]}, 2 networks"
    assert data.get_xlabel() == "temperature T (K)" and data.get_ylabel() == "H (Oe)"
    assert plot.axes["colorbar"].get_ylabel() == "M (emu)"
    # The last decision, named and drawn across every panel.
    assert plot.figure.get_suptitle() == (
        "the twin chose the line H = 35000 (disagreement 0.0125 emu)"
    )
    for ax in (data, twin_ax, std_ax):
        (mark,) = gids(ax, "suggested")
        assert np.nanmax(mark.get_ydata()) == 35000.0


def test_a_given_figure_is_used_without_pyplot(guided):
    fig = Figure()
    axes = fig.subplots(1, 2)
    plot = LiveTwinPlot(
        "M", "T", "H", mode="map", show_std=False, twin_source=guided.cb.twin, ax=axes
    )
    plot.refresh(wait=60)
    assert plot.figure is fig and set(plot.axes) >= {"data", "twin"}
    assert gids(axes[1], "twin") and plot.errors == 0


def test_the_mode_picks_the_layout_and_a_layout_can_be_made_directly(RE, mag):
    # LiveTwinPlot(mode=...) makes the layout's class, as pathlib.Path makes a PosixPath.
    lines = LiveTwinPlot("M", "T", "H", keys=KEYS, ax=Figure().subplots())
    grid = LiveTwinPlot("M", "T", "H", mode="map", keys=KEYS, ax=Figure().subplots(1, 3))
    assert type(lines) is LiveTwinLines and type(grid) is LiveTwinMap
    assert isinstance(lines, LiveTwinPlot) and isinstance(grid, LiveTwinPlot)
    assert (lines.mode, grid.mode) == ("lines", "map")
    assert repr(grid).startswith("<LiveTwinPlot M(T, H) map: 0 points")
    # help() and the API reference show the options, not the dispatching __new__'s *args.
    first = ["y", "x", "slow", "twin_source", "mode"]
    for cls in (LiveTwinPlot, LiveTwinLines, LiveTwinMap):
        assert list(inspect.signature(cls).parameters)[:5] == first

    # Made directly, a layout takes the same options (its own mode too) and draws as well.
    direct = LiveTwinMap("M", "T", "H", keys=KEYS, show_std=False, ax=Figure().subplots(1, 2))
    assert set(direct.axes) >= {"data", "twin"} and "std" not in direct.axes
    RE.subscribe(direct)
    line_scan(RE, mag, 1e4, n=5)
    (scatter,) = gids(direct.axes["data"], "measured")
    assert np.asarray(scatter.get_offsets()).shape == (5, 2)
    assert direct.errors == 0, direct.last_error
    keys = {"T": KEYS["T"], "M": KEYS["M"]}
    one_d = LiveTwinLines("M", "T", mode="lines", keys=keys, ax=Figure().subplots())
    assert type(one_d) is LiveTwinLines and one_d.slow is None


# -- what the RunEngine pays ---------------------------------------------------------------------


def test_headless_updates_wait_for_the_end_of_a_run_and_nothing_is_rendered(RE, mag, make_plot):
    plot = make_plot("M", "T", "H")
    assert plot.min_interval == math.inf  # Agg: nobody sees the figure before it is saved
    RE.subscribe(plot)
    renders: list[Any] = []
    line_scan(RE, mag, 1e4, n=50)
    plot.figure.canvas.mpl_connect("draw_event", renders.append)
    # One update as the first run starts, one at its end: not one per event.
    assert plot.redraws == 2
    line_scan(RE, mag, 2e4, n=50)
    assert plot.redraws == 3
    # Headless, an update changes the artists; rendering waits until someone saves.
    assert renders == []
    assert sum(len(line.get_xdata()) for line in gids(plot.ax, "measured")) == 100
    plot.figure.savefig(os.devnull, format="png")
    assert renders

    # Without the throttle, the counter sees every event (the measure is sound).
    eager = make_plot("M", "T", "H", min_interval=0.0)
    RE.subscribe(eager)
    line_scan(RE, mag, 3e4, n=20)
    assert eager.redraws == 20 + 1  # each event, and the start of the run


def test_an_error_in_the_update_never_reaches_the_runengine(RE, mag, make_plot, caplog):
    plot = make_plot("M", "T", "H", min_interval=0.0)
    RE.subscribe(plot)

    def broken(*args: Any) -> None:
        raise RuntimeError("a bug in the drawing")

    plot._draw_measured = broken
    with caplog.at_level(logging.DEBUG, logger="bluesky_digitwin.callbacks.plot"):
        line_scan(RE, mag, 1e4, n=10)
        line_scan(RE, mag, 2e4, n=10)
    assert RE.state == "idle"
    assert plot.errors >= 20
    assert plot.last_error == "drawing the measured points: RuntimeError: a bug in the drawing"
    # Logged once with its traceback; the repeats only at debug level.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None

    # A twin source that fails, and a twin whose simulation fails (in the background thread).
    def failing_source() -> Any:
        raise OSError("the twin's disk is gone")

    bad_source = make_plot("M", "T", "H", twin_source=failing_source, min_interval=0.0)
    RE.subscribe(bad_source)
    bad_twin = make_plot("M", "T", "H", twin_source=BrokenTwin(), min_interval=0.0)
    RE.subscribe(bad_twin)
    line_scan(RE, mag, 3e4, n=5)
    bad_twin.refresh(wait=30)
    assert RE.state == "idle"
    assert bad_source.last_error.startswith("updating the twin: OSError")
    assert len(gids(bad_source.ax, "measured")) == 1  # the measurement is still drawn
    assert bad_twin.last_error.startswith("simulating with the twin: ValueError")
    assert bad_twin.ax.get_title() == "the twin's simulation failed: ValueError"
    assert bad_twin.predictions == 1  # not asked again and again

    # Nor does a bad document, even with warnings turned into errors.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bad_twin("event", {"descriptor": "never-seen", "data": {}}) is None
    assert bad_twin.last_error.startswith("taking a 'event' document: DataWarning")


class BrokenTwin:
    """A twin whose networks cannot run."""

    def __init__(self) -> None:
        self.id, self.features, self.target = "broken0000", ("T", "H"), "M"
        self.units = {"T": "K", "H": "Oe", "M": "emu"}
        self.ranges = {"T": (10.0, 60.0), "H": (100.0, 5e4)}
        self.ensemble_size = 2

    def predict(self, points: Any, *, warn: bool = True) -> Any:
        raise ValueError("the networks' weights are corrupt")


def test_bad_arguments_fail_when_the_plot_is_made():
    # An unknown mode names those there are (a DigitwinInputError is a ValueError).
    with pytest.raises(ValueError, match=r"mode must be one of \('lines', 'map'\), got 'surface'"):
        LiveTwinPlot("M", "T", "H", mode="surface")
    with pytest.raises(DigitwinInputError, match="mode must be one of"):
        LiveTwinMap("M", "T", "H", mode="surface")
    # A layout made directly draws its own mode only.
    with pytest.raises(DigitwinInputError, match="LiveTwinLines draws mode='lines', not 'map'"):
        LiveTwinLines("M", "T", "H", mode="map")
    with pytest.raises(DigitwinInputError, match="needs the slow axis"):
        LiveTwinPlot("I", "theta", mode="map")
    with pytest.raises(DigitwinInputError, match="needs the slow axis"):
        LiveTwinMap("I", "theta")
    with pytest.raises(DigitwinInputError, match="draws into 3 axes"):
        LiveTwinPlot("I", "theta", "phi", mode="map", ax=Figure().subplots(1, 2))
    with pytest.raises(DigitwinInputError, match="twin_source must be"):
        LiveTwinPlot("M", "T", "H", twin_source="twin-dir")
    with pytest.raises(DigitwinInputError, match="n_std"):
        LiveTwinPlot("M", "T", "H", n_std=0)


# -- on screen: Qt -------------------------------------------------------------------------------

QT_SCRIPT = r"""
import json, threading, time
import matplotlib
matplotlib.use("QtAgg")
import matplotlib.pyplot as plt
from bluesky.callbacks.mpl_plotting import initialize_qt_teleporter
import bluesky.plan_stubs as bps
from bluesky import RunEngine
from bluesky.plans import scan
from bluesky_digitwin.callbacks import LiveTwinPlot
from bluesky_digitwin.prediction import prediction_dataset
from bluesky_digitwin.sim import FirstOrderMagnet, Magnetometer

from matplotlib.backends.qt_compat import QtWidgets

# What IPython's "%matplotlib qt" does: a Qt application, interactive pyplot.
app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
plt.ion()
initialize_qt_teleporter()
MAGNET = FirstOrderMagnet()


class ExactTwin:
    # The twin's face over the exact model: this test is about the GUI, not the networks.
    id, features, target, ensemble_size = "exact000", ("T", "H"), "M", 2
    units = {"T": "K", "H": "Oe", "M": "emu"}
    ranges = {"T": (10.0, 60.0), "H": (100.0, 5e4)}

    def predict(self, points, *, warn=True):
        def evaluate(x, outside):
            return MAGNET.moment(x[:, 0], x[:, 1]), 1e-3 + 0 * x[:, 0]
        return prediction_dataset(points, self.features, self.target, self.units,
                                  self.ranges, evaluate, warn=warn)


RE = RunEngine({})
mag = Magnetometer(noise=0.0, seconds_per_point=0.001, name="mag")
holder = {"twin": None}
keys = {"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"}
plot = LiveTwinPlot("M", "T", "H", twin_source=lambda: holder["twin"], keys=keys)
# Made in another thread: its figure waits for the first start document in the main thread.
elsewhere = []
maker = threading.Thread(target=lambda: elsewhere.append(LiveTwinPlot("M", "T", "H", keys=keys)))
maker.start()
maker.join()
(late,) = elsewhere
late_before_run = late.figure is not None
in_main = set()
for each in (plot, late):
    def recording(draw=False, update=each._update):
        in_main.add(threading.current_thread() is threading.main_thread())
        update(draw)
    each._update = recording
caller = set()
RE.subscribe(lambda name, doc: caller.add(threading.current_thread() is threading.main_thread()))
RE.subscribe(plot)
RE.subscribe(late)
renders = []
RE(bps.mv(mag.field, 1e4))
RE(scan([mag], mag.temperature, 10, 60, 50))
plot.figure.canvas.mpl_connect("draw_event", renders.append)
threading.Timer(0.3, lambda: holder.update(twin=ExactTwin())).start()
RE(bps.sleep(4.0))  # no documents: the canvas timer must show the twin and the last points
print(json.dumps({
    "made_with_plot": plot.figure is not None,
    "late_before_run": late_before_run,
    "late_after_run": late.figure is not None and late.errors == 0,
    "updates_in_main_thread": sorted(in_main),
    "callbacks_in_main_thread": sorted(caller),
    "interactive": plot._interactive,
    "min_interval": plot.min_interval,
    "measured": sum(len(l.get_xdata()) for l in plot.ax.lines if l.get_gid() == "measured"),
    "twin_lines": len([l for l in plot.ax.lines if l.get_gid() == "twin"]),
    "renders": len(renders),
    "errors": plot.errors, "last_error": plot.last_error,
}))
"""


def test_on_a_qt_canvas_the_figure_is_updated_in_the_main_thread_only(tmp_path):
    # Run where a Qt binding is installed (the project does not require one), offscreen.
    if not any(importlib.util.find_spec(m) for m in ("PyQt6", "PySide6", "PyQt5", "PySide2")):
        pytest.skip("no Qt binding installed")
    script = tmp_path / "qt_live_plot.py"
    script.write_text(QT_SCRIPT)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "MPLBACKEND": "QtAgg"}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The RunEngine calls its callbacks from its own thread; the figures are made and updated
    # in the main thread only (by the teleporter for one made elsewhere, as for LivePlot).
    assert result["callbacks_in_main_thread"] == [False]
    assert result["made_with_plot"] is True
    assert result["late_before_run"] is False and result["late_after_run"] is True
    assert result["updates_in_main_thread"] == [True]
    assert result["interactive"] is True and result["min_interval"] == 0.25
    assert result["measured"] == 50
    assert result["twin_lines"] == 1 and result["renders"] >= 1
    assert result["errors"] == 0, result["last_error"]
