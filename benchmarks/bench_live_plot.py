"""What a LiveTwinPlot costs the RunEngine: per-event wall time with and without it.

1-D scans of the simulated magnetometer at zero latency (``seconds_per_point=0``), so that the
RunEngine's own overhead is all there is to slow down, in one process. The plot shows a small
twin (fitted here first, 2 trials) and asks it, in its background thread, for the curve of every
new field: the scans step through 12 fields, so the first dozen scans with the plot each bring a
new twin curve, as a measurement does.

Rows: the "lines" and "map" layouts with their default update interval (headless: the figure is
brought up to date only at the end of each run, since nobody sees it before it is saved; on a
GUI canvas: at most every 0.25 s, fewer when renders are slow), the same at 0.25 s forced, and
bluesky's own ``LivePlot`` of the same data for reference (it redraws at every event).

- Scans with the plot subscribed and without it alternate (ABBA order), ``--pairs`` pairs per
  row. Per-event wall time is (last event time - first event time) / (events - 1) of a scan,
  from the events' timestamps; the median over scans is compared.
- On a busy machine whole scans differ by more than the plot costs, so one scan per row also
  alternates *events*: the plot takes every other event, and the interval after a taken event
  (the callbacks' work on it included) is compared with the interval after a skipped one.
- "doc path" is the time the plot's ``__call__`` took per event in the RunEngine's thread
  (median, max, and its sum as a share of the scans' time; with Qt, posting the document to the
  main thread); "redraws" the figure updates per scan.
- "render" is one full render of the figure at the end (``canvas.draw()``, layout included):
  what a GUI spends per redraw in its own thread, which shares the GIL with the RunEngine's.

    python benchmarks/bench_live_plot.py [--points 200] [--pairs 10] [--backend agg]
    QT_QPA_PLATFORM=offscreen python benchmarks/bench_live_plot.py --backend qtagg  # needs Qt
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import matplotlib
import numpy as np
import optuna
from _common import machine, timed_event_path

KEYS = {"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"}
FIELDS = np.linspace(1000.0, 49000.0, 12)


def tiny_search() -> dict[str, Any]:
    from bluesky_digitwin import EnsembleRecipe, SearchSpace, SearchStrategy, TrainConfig

    return {
        "n_trials": 2,
        "n_workers": 1,
        "ensemble": EnsembleRecipe(size=2, tolerance=1e6, refit_epochs=5),
        "strategy": SearchStrategy(pruner=optuna.pruners.NopPruner()),
        "seed": 0,
        "train_config": TrainConfig(max_epochs=20),
        "space": SearchSpace(n_layers=(2, 2), n_units=(16, 16), l2=None),
    }


class Bench:
    def __init__(self, points: int) -> None:
        from bluesky import RunEngine

        from bluesky_digitwin.sim.devices import Magnetometer

        self.RE = RunEngine({})
        self.mag = Magnetometer(name="mag", seed=0, seconds_per_point=0)
        self.points = points
        self.times: list[float] = []
        self.doc_path: list[float] = []
        self.scans = 0
        # Subscribed in both modes: its own (tiny) cost cancels out of the ratio.
        self.RE.subscribe(self._collect, "event")

    def _collect(self, name: str, doc: dict) -> None:
        self.times.append(doc["time"])

    def scan(self, field: float | None = None) -> list[float]:
        import bluesky.plan_stubs as bps
        from bluesky.plans import scan

        if field is None:
            field = float(FIELDS[self.scans % FIELDS.size])
        self.scans += 1
        self.RE(bps.mv(self.mag.field, field))
        self.times = []
        self.RE(scan([self.mag], self.mag.temperature, 10, 60, self.points))
        return self.times

    def timed(self, plot: Callable, every_other: bool = False) -> Callable[[str, dict], None]:
        """``plot`` wrapped to time its event path (and, optionally, to skip even events)."""
        return timed_event_path(plot, self.doc_path, every_other)


def per_event(times: list[float]) -> float:
    return (times[-1] - times[0]) / (len(times) - 1)


def measure(bench: Bench, plot: Any, pairs: int) -> dict[str, float]:
    timed = bench.timed(plot)
    without: list[float] = []
    with_plot: list[float] = []
    with_seconds = 0.0
    redraws_before = getattr(plot, "redraws", 0)
    for i in range(pairs):
        for subscribed in (False, True) if i % 2 == 0 else (True, False):
            token = bench.RE.subscribe(timed) if subscribed else None
            try:
                times = bench.scan()
                (with_plot if subscribed else without).append(per_event(times))
                with_seconds += (times[-1] - times[0]) if subscribed else 0.0
            finally:
                if token is not None:
                    bench.RE.unsubscribe(token)
    redraws = (getattr(plot, "redraws", 0) - redraws_before) / pairs
    doc_path = np.array(bench.doc_path) * 1e6
    bench.doc_path = []

    token = bench.RE.subscribe(bench.timed(plot, every_other=True))
    try:
        gaps = np.diff(bench.scan())
    finally:
        bench.RE.unsubscribe(token)
    bench.doc_path = []
    taken = gaps[0::2]  # after seq_num 1, 3, ...: the events the plot took
    skipped = gaps[1::2]

    if hasattr(plot, "refresh"):
        plot.refresh(wait=60)
    figure = plot.figure if hasattr(plot, "refresh") else plot.ax.figure
    renders = []
    for _ in range(5):
        start = time.perf_counter()
        figure.canvas.draw()
        renders.append(time.perf_counter() - start)
    return {
        "without": statistics.median(without),
        "with": statistics.median(with_plot),
        "taken": float(np.median(taken)),
        "skipped": float(np.median(skipped)),
        "doc_median": float(np.median(doc_path)),
        "doc_max": float(doc_path.max()),
        "doc_share": float(doc_path.sum() * 1e-6 / with_seconds),
        "redraws": redraws,
        "render": statistics.median(renders),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200, help="events per scan")
    parser.add_argument("--pairs", type=int, default=10, help="scan pairs per row")
    parser.add_argument(
        "--backend", default="agg", help="matplotlib backend: agg (headless) or qtagg"
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the LivePlot reference row"
    )
    args = parser.parse_args()

    matplotlib.use(args.backend)
    on_screen = "qt" in args.backend.lower()
    if on_screen:
        import matplotlib.pyplot as plt
        from bluesky.callbacks.mpl_plotting import initialize_qt_teleporter

        plt.ion()  # as in an IPython session
        initialize_qt_teleporter()
    from bluesky.callbacks.mpl_plotting import LivePlot

    from bluesky_digitwin import DigitalTwin
    from bluesky_digitwin.buffer import ScanBuffer
    from bluesky_digitwin.callbacks import LiveTwinPlot

    bench = Bench(args.points)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the start")
    print(
        f"scan: {args.points} points of a zero-latency Magnetometer; matplotlib backend "
        f"{matplotlib.get_backend()}\n"
    )
    buffer = ScanBuffer(("T", "H"), "M", keys=KEYS)
    token = bench.RE.subscribe(buffer)
    for field in (1000.0, 25000.0, 49000.0):
        bench.scan(field)
    bench.RE.unsubscribe(token)
    twin = DigitalTwin.fit(buffer.snapshot(), ("T", "H"), "M", **tiny_search())
    for _ in range(3):  # warm-up: the RunEngine's code paths
        bench.scan()

    rows: list[tuple[str, Callable[[], Any]]] = []
    for mode in ("lines", "map"):
        for interval in (None, 0.25):
            name = f"{mode}, {'default' if interval is None else f'{interval} s'}"
            options = {"mode": mode, "twin_source": twin, "keys": KEYS, "min_interval": interval}
            make = partial(LiveTwinPlot, "M", "T", "H", **options)
            rows.append((name, make))
    if not args.no_reference:
        rows.append(("LivePlot (bluesky)", lambda: LivePlot("mag_moment", "mag_temperature")))

    print(
        f"{'plot':<19} | {'wall ms/event':>21} {'ratio':>6} | "
        f"{'interval after event ms':>24} {'ratio':>6} | {'doc path us':>21} | "
        f"{'redraws':>7} | {'render ms':>9}\n"
        f"{'':<19} | {'without':>10} {'with':>10} {'':>6} | {'skipped':>11} "
        f"{'taken':>12} {'':>6} | {'median':>6} {'max':>7} {'share':>6} | {'/scan':>7} | "
        f"{'':>9}"
    )
    for name, make in rows:
        plot = make()
        r = measure(bench, plot, args.pairs)
        redraws = f"{r['redraws']:>7.1f}" if hasattr(plot, "redraws") else f"{'every':>7}"
        print(
            f"{name:<19} | {r['without'] * 1e3:>10.3f} {r['with'] * 1e3:>10.3f} "
            f"{r['with'] / r['without']:>6.3f} | {r['skipped'] * 1e3:>11.3f} "
            f"{r['taken'] * 1e3:>12.3f} {r['taken'] / r['skipped']:>6.3f} | "
            f"{r['doc_median']:>6.1f} {r['doc_max']:>7.0f} {r['doc_share']:>6.1%} | "
            f"{redraws} | {r['render'] * 1e3:>9.1f}",
            flush=True,
        )
        if getattr(plot, "errors", 0):
            print(f"  the plot logged {plot.errors} errors: {plot.last_error}")
        if hasattr(plot, "close"):
            plot.close()
    print(f"\n{args.pairs} ABBA pairs per row; load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
