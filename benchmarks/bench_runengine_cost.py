"""What a TwinCallback costs the RunEngine: per-event wall time with and without it.

A 1-D scan of the simulated magnetometer at zero latency (``seconds_per_point=0``), so that the
RunEngine's own overhead is all there is to slow down. In one process, scans with the
TwinCallback subscribed and without it alternate (ABBA order), in phases:

- made: right after ``TwinCallback()``, while this process imports TensorFlow in a background
  thread (``prewarm``; once per process);
- idle: no training anywhere;
- start-up: a training was asked for; its process starts, until its search reports progress;
- searching: a hyperparameter search runs in the background (default space and recipe,
  ``--trials`` trials, enough to outlast the phase; one search worker per core);
- twin swap: a small search runs until its twin is loaded here and swapped in.

Per-event wall time is (last event time - first event time) / (events - 1) of a scan, from the
events' timestamps (median over the scans); the target is a ratio (with / without) of at most
1.05 while searching. The median interval between events is less sensitive to the machine's
other processes. The longest gap between two consecutive events is what a scan may feel. The
"without" scans run with the callback unsubscribed but alive, so the same background work runs
in both. "doc path" is the time ``TwinCallback.__call__`` itself took per event.

On a busy machine, whole scans differ by more than the callback costs. So the searching phase
also alternates *events*: one scan in which the callback takes every other event; the interval
after a taken event (which includes the callback's work) is compared with the interval after a
skipped one, under the same load, in the same scan.

The stop of a run asks for no training here (``on_stop=False``; ``retrain()`` asks), so that the
measured scans do not cancel the search they run beside.

``--device ophyd-async`` scans the ophyd-async magnetometer (``sim.async_devices``, made with
``init_devices``, dashed data keys) instead of the ophyd one.

    python benchmarks/bench_runengine_cost.py [--points 200] [--pairs 10] [--trials 60]
        [--device ophyd|ophyd-async] [--swaps 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import bluesky.plan_stubs as bps
import numpy as np
from _common import machine, timed_event_path
from bluesky import RunEngine
from bluesky.plans import scan

from bluesky_digitwin import EnsembleRecipe, SearchSpace, TrainConfig
from bluesky_digitwin.callbacks import RetrainPolicy, TwinCallback
from bluesky_digitwin.sim.async_devices import AsyncMagnetometer
from bluesky_digitwin.sim.devices import Magnetometer

#: The twin's names of each device's data keys (ophyd joins with "_", ophyd-async with "-").
KEYS = {
    "ophyd": {"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"},
    "ophyd-async": {"T": "mag-temperature", "H": "mag-field", "M": "mag-moment"},
}
SMALL_SEARCH = {
    "n_trials": 2,
    "n_workers": 1,
    "ensemble": EnsembleRecipe(size=1, refit_epochs=5),
    "train_config": TrainConfig(max_epochs=20),
    "space": SearchSpace(n_layers=(2, 2), n_units=(16, 16), l2=None),
}


@dataclass
class Timings:
    """Event timestamps of the scans of one mode."""

    per_event: list[float] = field(default_factory=list)
    intervals: list[float] = field(default_factory=list)
    max_gap: float = 0.0

    def add(self, times: list[float]) -> None:
        gaps = np.diff(times)
        self.per_event.append((times[-1] - times[0]) / (len(times) - 1))
        self.intervals.extend(gaps.tolist())
        self.max_gap = max(self.max_gap, float(gaps.max()))

    def merge(self, other: Timings) -> None:
        self.per_event.extend(other.per_event)
        self.intervals.extend(other.intervals)
        self.max_gap = max(self.max_gap, other.max_gap)

    @property
    def wall(self) -> float:
        """Median over scans of the mean time per event (what a scan takes, per point)."""
        return statistics.median(self.per_event)

    @property
    def typical(self) -> float:
        """Median interval between events."""
        return statistics.median(self.intervals)


class Bench:
    def __init__(self, points: int, device: str = "ophyd") -> None:
        self.RE = RunEngine({})  # first: init_devices connects in the RunEngine's event loop
        if device == "ophyd-async":
            from ophyd_async.core import init_devices

            with init_devices():
                mag = AsyncMagnetometer(name="mag", seed=0, seconds_per_point=0)
            self.mag = mag
        else:
            self.mag = Magnetometer(name="mag", seed=0, seconds_per_point=0)
        self.keys = KEYS[device]
        self.points = points
        self.times: list[float] = []
        self.doc_path: list[float] = []  # seconds the TwinCallback took per event
        # Subscribed in both modes: its own (tiny) cost cancels out of the ratio.
        self.RE.subscribe(self._collect, "event")

    def _collect(self, name: str, doc: dict) -> None:
        self.times.append(doc["time"])

    def scan(self, field: float = 2e4) -> list[float]:
        self.RE(bps.mv(self.mag.field, field))
        self.times = []
        self.RE(scan([self.mag], self.mag.temperature, 10, 60, self.points))
        return self.times

    def timed(self, cb: TwinCallback, every_other: bool = False) -> Callable[[str, dict], None]:
        """``cb`` wrapped to time its event path (and, optionally, to skip even events)."""
        return timed_event_path(cb, self.doc_path, every_other)

    def pairs(
        self,
        cb: TwinCallback,
        n: int,
        until: Callable[[], bool] | None = None,
        max_seconds: float = 300,
    ) -> tuple[Timings, Timings, int]:
        """Alternate scans without and with ``cb`` (ABBA): ``n`` pairs, and on until ``until()``
        (for at most ``max_seconds``)."""
        timed = self.timed(cb)
        without, with_cb = Timings(), Timings()
        done, started = 0, time.monotonic()
        while done < n or (until is not None and not until()):
            order = (False, True) if done % 2 == 0 else (True, False)
            for subscribed in order:
                token = self.RE.subscribe(timed) if subscribed else None
                try:
                    (with_cb if subscribed else without).add(self.scan())
                finally:
                    if token is not None:
                        self.RE.unsubscribe(token)
            done += 1
            if time.monotonic() - started > max_seconds:
                break
        return without, with_cb, done

    def alternating(self, cb: TwinCallback, scans: int) -> tuple[np.ndarray, np.ndarray]:
        """Intervals after events the callback took, and after events it skipped."""
        token = self.RE.subscribe(self.timed(cb, every_other=True))
        taken: list[float] = []
        skipped: list[float] = []
        try:
            for _ in range(scans):
                times = self.scan()
                # Event i has seq_num i + 1; the interval after it includes the callbacks'
                # work on it. Odd seq_nums were taken.
                for i, gap in enumerate(np.diff(times)):
                    (taken if (i + 1) % 2 == 1 else skipped).append(gap)
        finally:
            self.RE.unsubscribe(token)
        return np.array(taken), np.array(skipped)


HEADER = (
    f"{'phase':<10} {'pairs':>5} | {'wall ms/event':>20} {'ratio':>6} | "
    f"{'median interval ms':>20} {'ratio':>6} | {'max gap ms':>14} | {'doc path us':>18}\n"
    f"{'':<10} {'':>5} | {'without':>9} {'with':>10} {'':>6} | {'without':>9} {'with':>10} "
    f"{'':>6} | {'w/o':>6} {'with':>7} | {'median':>8} {'max':>9}"
)


def report(bench: Bench, phase: str, without: Timings, with_cb: Timings, pairs: int) -> None:
    doc_path = np.array(bench.doc_path) * 1e6
    bench.doc_path = []
    print(
        f"{phase:<10} {pairs:>5} | {without.wall * 1e3:>9.3f} {with_cb.wall * 1e3:>10.3f} "
        f"{with_cb.wall / without.wall:>6.3f} | {without.typical * 1e3:>9.3f} "
        f"{with_cb.typical * 1e3:>10.3f} {with_cb.typical / without.typical:>6.3f} | "
        f"{without.max_gap * 1e3:>6.0f} {with_cb.max_gap * 1e3:>7.0f} | "
        f"{np.median(doc_path):>8.1f} {doc_path.max():>9.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200, help="events per scan")
    parser.add_argument("--pairs", type=int, default=10, help="scan pairs per phase")
    parser.add_argument("--trials", type=int, default=60, help="trials of the background search")
    parser.add_argument("--device", choices=sorted(KEYS), default="ophyd", help="the magnetometer")
    parser.add_argument("--swaps", type=int, default=1, help="twins swapped in, one after another")
    args = parser.parse_args()

    bench = Bench(args.points, args.device)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the start")
    print(f"scan: {args.points} points of a zero-latency {type(bench.mag).__name__}\n")
    for _ in range(3):  # warm-up: imports, first runs of the RunEngine's code paths
        bench.scan()

    policy = RetrainPolicy(on_stop=False, debounce=0.0)
    made = time.monotonic()
    cb = TwinCallback(
        ("T", "H"), "M", keys=bench.keys, policy=policy, fit_options={"n_trials": args.trials}
    )
    importing = cb._trainer._tf_import  # a private attribute: the benchmark looks inside
    print(HEADER)
    without, with_cb, n = bench.pairs(
        cb, 1, until=lambda: importing is None or not importing.is_alive()
    )
    imported = time.monotonic() - made
    report(bench, "made", without, with_cb, n)
    token = bench.RE.subscribe(cb)
    for field_oe in (1e4, 3e4):  # the pairs scan at 2e4 Oe; a twin needs more fields
        bench.scan(field_oe)
    bench.RE.unsubscribe(token)
    report(bench, "idle", *bench.pairs(cb, args.pairs)[:2], args.pairs)

    cb.retrain()
    started = time.monotonic()
    while cb.status.state != "training":
        time.sleep(0.01)
    without, with_cb, n = bench.pairs(cb, 2, until=lambda: cb.status.trials_total is not None)
    report(bench, "start-up", without, with_cb, n)
    to_search = time.monotonic() - started
    without, with_cb, n = bench.pairs(cb, args.pairs)
    report(bench, "searching", without, with_cb, n)
    taken, skipped = bench.alternating(cb, scans=args.pairs)
    bench.doc_path = []
    status = cb.status
    cb.close()

    # A small search that finishes: the scans run while its twin is loaded and swapped in,
    # --swaps times (one swap is a few pairs: too few for a ratio on its own).
    small = TwinCallback(("T", "H"), "M", keys=bench.keys, policy=policy, fit_options=SMALL_SEARCH)
    token = bench.RE.subscribe(small)
    for field_oe in (1e4, 2e4, 3e4):
        bench.scan(field_oe)
    bench.RE.unsubscribe(token)
    without, with_cb, n = Timings(), Timings(), 0
    for _ in range(args.swaps):
        old = small.twin
        small.retrain()
        w, c, k = bench.pairs(small, 1, until=lambda old=old: small.twin is not old)
        without.merge(w)
        with_cb.merge(c)
        n += k
    report(bench, "twin swap", without, with_cb, n)
    swapped = small.status
    small.close()

    print(
        f"""
searching, alternating events ({len(taken)} taken, {len(skipped)} skipped, {args.pairs} scans):
  median interval after a taken event {np.median(taken) * 1e3:.3f} ms, after a skipped one
  {np.median(skipped) * 1e3:.3f} ms: ratio {np.median(taken) / np.median(skipped):.3f}
  mean interval after a taken event {taken.mean() * 1e3:.3f} ms, after a skipped one
  {skipped.mean() * 1e3:.3f} ms: ratio {taken.mean() / skipped.mean():.3f}

made:      scans right after TwinCallback(), while this process imported TensorFlow in a
           background thread ({imported:.0f} s)
idle:      no training anywhere
start-up:  a training process starting ({to_search:.0f} s until its search reported progress)
searching: a {args.trials}-trial search (default space and recipe) in the background;
           {status.trials_finished or 0} trials had finished, state: {status.state}
twin swap: a 2-trial search until its twin was loaded and swapped in, {args.swaps} time(s)
           (state: {swapped.state})
load average at the end: {os.getloadavg()[0]:.1f}"""
    )


if __name__ == "__main__":
    main()
