"""``digitwin demo``: the paper's workflow, live, on a simulated beamline.

An embedded Tiled server keeps the runs; a RunEngine measures coarse M(T) lines of the shipped
ErCo2-like first-order magnet with a simulated magnetometer; the TwinCallback learns them in
the background; ``twin_guided_scan`` asks the twin for the field step at which |ΔS_M| has
converged and measures the lines at that step; ``simulate_scan`` then writes the twin's
simulation of that measurement to ``simulated``, apart from the measured runs.

Because the material is simulated, its true |ΔS_M| is known, and the summary compares the
twin's with it and with what the coarse fields alone give.

The searches of the background trainings are recorded in a journal file beside the Tiled data
(``digitwin-demo/search.journal``), so that ``digitwin dashboard`` shows their learning curves,
pruned trials and hyperparameter importances afterwards.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bluesky_digitwin.analysis.magnetocaloric import entropy_change
from bluesky_digitwin.data import make_grid
from bluesky_digitwin.run_documents import SlowAxis
from bluesky_digitwin.sim import FirstOrderMagnet
from bluesky_digitwin.surrogate.ensemble import EnsembleRecipe
from bluesky_digitwin.surrogate.search_space import SearchSpace
from bluesky_digitwin.surrogate.training import TrainConfig

__all__ = ["COARSE_FIELDS_OE", "DEMO_STORAGE", "run_demo"]

#: The coarse fields of the paper's ErCo2 measurement (Oe).
COARSE_FIELDS_OE = (100.0, 1000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0)
#: Candidate field steps (T) the twin is asked about.
CANDIDATE_STEPS_T = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)
KEYS = {"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"}
#: Where the demo records its searches by default (relative to the working directory), and where
#: ``digitwin dashboard`` looks without ``--storage``.
DEMO_STORAGE = Path("digitwin-demo") / "search.journal"


class _RunLog:
    """A RunEngine callback that tells the user about each run and remembers its uid."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.runs: list[tuple[str, str]] = []  # (uid, data_origin)
        self.decisions: list[str] = []  # the plans' decisions, written as simulated runs
        self._starts: dict[str, dict] = {}

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            self._starts[doc["uid"]] = doc
        elif name == "stop":
            start = self._starts.pop(doc["run_start"], {})
            origin = start.get("data_origin", "measured")
            self.runs.append((doc["run_start"], origin))
            if start.get("phase") == "decision":
                self.decisions.append(doc["run_start"])
            events = sum((doc.get("num_events") or {}).values())
            what = start.get("phase") or start.get("plan_name", "run")
            slow_axis = SlowAxis.from_start(start)
            field = None if slow_axis is None else slow_axis.value
            where = f" at H = {field:g} Oe" if field is not None else ""
            self.say(f"  {origin} run {doc['run_start'][:8]} ({what}{where}): {events} points")


def _watch_twin(cb: Any, say: Callable[[str], None], stop: threading.Event) -> None:
    """Tell the user what the background training is doing, as it changes: its state, and
    while it searches, each finished trial."""
    last = None
    last_trials = None
    while not stop.wait(0.5):
        status = cb.status
        key = (status.state, status.trainings, status.twin_id)
        trials = (status.trainings, status.trials_finished)
        if key != last and status.state in ("training", "ready", "error"):
            say(f"  twin: {status}")
            last_trials = trials
        elif status.state == "training" and status.trials_total and trials != last_trials:
            running = time.time() - status.started if status.started is not None else 0.0
            say(
                f"  twin: training #{status.trainings}: {status.trials_finished or 0}/"
                f"{status.trials_total} trials finished, {running:.0f} s"
            )
            last_trials = trials
        last = key


def run_demo(
    *,
    n_trials: int | None = None,
    n_workers: int | None = None,
    seed: int = 0,
    fast: bool = False,
    tiled_dir: str | os.PathLike | None = None,
    tiled_uri: str | None = None,
    api_key: str | None = None,
    seconds_per_point: float = 0.0,
    storage: str | os.PathLike | None = DEMO_STORAGE,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo and return its summary (JSON-serialisable).

    Parameters
    ----------
    n_trials, n_workers
        Search size of each training; ``None``: 30 trials (4 with ``fast``), one worker per core.
    seed
        Seed of the simulated noise and of the searches.
    fast
        Tiny searches (few trials, few epochs), for tests and CI.
    tiled_dir
        Directory of the embedded Tiled server (default ``./digitwin-demo/tiled``); runs
        written there survive a restart.
    tiled_uri, api_key
        Write to an existing Tiled server instead (API key: argument or ``TILED_API_KEY``).
    seconds_per_point
        Simulated measuring time per point, to feel like an instrument (0: as fast as possible).
    storage
        Where the trainings' searches are recorded, one study each (named
        ``demo-<date>-<time>-<training>-<random>``): a journal file path (default
        ``digitwin-demo/search.journal``, trial models beside it in ``<journal>.artifacts``) or
        a database URL; ``None`` keeps them in temporary files only.
    """
    from bluesky import RunEngine

    from bluesky_digitwin.callbacks import RetrainPolicy, TwinCallback
    from bluesky_digitwin.plans import simulate_scan, suggested_lines, twin_guided_scan
    from bluesky_digitwin.sim import Magnetometer
    from bluesky_digitwin.tiled import TwinCatalog

    start = time.perf_counter()
    say("starting TensorFlow ...")
    # In the main thread, before any server thread runs, where its start-up noise is kept off
    # the terminal (the callback would otherwise import it in a background thread).
    import bluesky_digitwin.tensorflow_runtime  # noqa: F401

    # Every resource is closed whatever happens: the embedded server's thread, in particular,
    # would otherwise keep the process from exiting.
    with contextlib.ExitStack() as resources:
        if tiled_uri:
            catalog = TwinCatalog.connect(tiled_uri, api_key=api_key)
            say(f"writing to the Tiled server at {catalog.uri}")
        else:
            directory = Path(tiled_dir or Path("digitwin-demo") / "tiled")
            say(f"starting an embedded Tiled server, data in {directory} ...")
            catalog = TwinCatalog.embedded(directory)
            say(f"  Tiled at {catalog.uri}")
        resources.callback(catalog.close)

        magnet = FirstOrderMagnet()
        mag = Magnetometer(
            material=magnet, noise=1e-6, seconds_per_point=seconds_per_point, seed=seed, name="mag"
        )
        RE = RunEngine({}, call_returns_result=True)
        log = _RunLog(say)
        options = _fit_options(n_trials, n_workers, seed, fast)
        if storage is not None:
            storage = _absolute(storage)
            options["storage"] = storage
            # The callback makes one study per training from this base name.
            options["study_name"] = time.strftime("demo-%Y%m%d-%H%M%S")
        # The coarse lines come every second or two: let new lines restart the training until
        # the last one, so that the twin the plan waits for is trained once on all of them.
        policy = RetrainPolicy(max_restarts=len(COARSE_FIELDS_OE))
        cb = TwinCallback(("T", "H"), "M", keys=KEYS, fit_options=options, policy=policy)
        resources.callback(cb.close)
        stop_watching = threading.Event()
        watcher = threading.Thread(target=_watch_twin, args=(cb, say, stop_watching), daemon=True)
        resources.callback(stop_watching.set)
        catalog.subscribe(RE)
        RE.subscribe(cb)
        RE.subscribe(log)
        watcher.start()
        say(
            f"measuring coarse M(T) lines, 10-60 K, at {len(COARSE_FIELDS_OE)} fields "
            f"({', '.join(f'{h:g}' for h in COARSE_FIELDS_OE)} Oe); the twin learns them "
            "in the background, then suggests the field step for |ΔS_M|"
        )
        result = RE(
            twin_guided_scan(
                [mag],
                mag.temperature,
                10.0,
                60.0,
                101,
                mag.field,
                COARSE_FIELDS_OE,
                twin_source=cb,
                slow_feature="H",
                quantity="magnetocaloric",
                candidates=CANDIDATE_STEPS_T,
                suggest_kwargs={"mass": magnet.mass_g, "mass_units": "g", "candidate_units": "T"},
                timeout=900,
            )
        )
        suggestion = result.plan_result
        twin = cb.twin
        if twin is None:  # pragma: no cover - the plan waits for a twin or raises
            raise RuntimeError("the demo ended without a twin")
        say(str(suggestion))

        # The twin's simulation of the suggested measurement goes to `simulated`.
        if suggestion.step is not None:
            fields = suggested_lines(twin, suggestion)
        else:
            fields = np.asarray(COARSE_FIELDS_OE)
        temperatures = np.linspace(10.0, 60.0, 101)
        say(f"simulating the suggested measurement: {len(fields)} lines x 101 points")
        RE(
            simulate_scan(
                twin,
                make_grid(H=fields, T=temperatures),
                md={"purpose": "the measurement at the suggested field step, simulated"},
            )
        )

    summary_dsm = _entropy_change_summary(twin, magnet, temperatures, say)
    measured = [uid for uid, origin in log.runs if origin == "measured"]
    simulated = [uid for uid, origin in log.runs if origin == "simulated"]
    elapsed = time.perf_counter() - start
    say(
        f"Tiled: {len(measured)} measured runs in {catalog.uri}/measured, "
        f"{len(simulated)} simulated run(s) in {catalog.uri}/simulated ({len(log.decisions)} "
        "of them the plan's decision: the candidate table and the twin's lines at that time)"
    )
    search = twin.metadata.get("search", {})
    if storage is not None:
        dashboard = "digitwin dashboard" + (
            "" if storage == _absolute(DEMO_STORAGE) else f" --storage {search.get('storage')}"
        )
        say(
            f"searches recorded in {search.get('storage')}; the twin's: "
            f"{dashboard} --study {search.get('study_name')}"
        )
    say(f"done in {elapsed:.0f} s")
    return {
        "tiled": {
            "uri": catalog.uri,
            "measured": measured,
            "simulated": simulated,
            "decisions": log.decisions,
        },
        "suggested_step": suggestion.as_json_step(),
        "step_table": suggestion.to_dict(),
        "twin": {
            "id": twin.id,
            "features": list(twin.features),
            "target": twin.target,
            "units": twin.units,
            "validation_rmse": twin.validation_rmse,
            "ensemble_size": twin.ensemble_size,
            "learned_from": list(twin.metadata.get("provenance", {}).get("run_uids", [])),
        },
        "entropy_change": summary_dsm,
        "search": {
            "storage": search.get("storage") if storage is not None else None,
            "study": search.get("study_name"),
        },
        "wall_time_s": round(elapsed, 1),
    }


def _absolute(storage: str | os.PathLike) -> str:
    """A journal path made absolute (the trainings run in other directories); a URL as is."""
    text = os.fspath(storage)
    return text if "://" in text else str(Path(text).resolve())


def _fit_options(
    n_trials: int | None, n_workers: int | None, seed: int, fast: bool
) -> dict[str, Any]:
    """The search of each background training: the default one, or a tiny one with ``fast``.

    No stated shape (``monotonic``): on this magnet (the fidelity benchmark's fo-sharp) stating
    that M grows with H made |ΔS_M| 1-2 % worse and the training about twice as long
    (benchmarks/RESULTS.md, "The stated shape on today's default").
    """
    if not fast:
        return {"n_trials": n_trials or 30, "n_workers": n_workers, "seed": seed}
    return {
        "n_trials": n_trials or 4,
        "n_workers": n_workers or 1,
        "seed": seed,
        "ensemble": EnsembleRecipe(size=3),
        "train_config": TrainConfig(max_epochs=40),
        "space": SearchSpace(n_layers=(2, 4), n_units=(32, 96)),
    }


def _entropy_change_summary(
    twin: Any, magnet: FirstOrderMagnet, temperatures: np.ndarray, say: Callable[[str], None]
) -> dict[str, Any]:
    """|ΔS_M| over the whole field range: the twin at a 0.1 T step against the truth."""
    lo, hi = COARSE_FIELDS_OE[0], COARSE_FIELDS_OE[-1]
    fine = np.append(np.arange(lo, hi, 1000.0), hi)
    simulated = twin.predict(make_grid(H=fine, T=temperatures))
    units = {"mass": magnet.mass_g, "mass_units": "g", "magnetization_units": "emu"}
    dsm_twin = entropy_change(simulated["M"], field_units="Oe", absolute=True, **units)
    coarse_m = magnet.moment(*np.meshgrid(temperatures, COARSE_FIELDS_OE, indexing="xy"))
    from xarray import DataArray

    coarse = DataArray(
        coarse_m, coords={"H": list(COARSE_FIELDS_OE), "T": temperatures}, dims=("H", "T")
    )
    dsm_coarse = entropy_change(coarse, field_units="Oe", absolute=True, **units)
    truth = np.abs(magnet.entropy(temperatures, hi) - magnet.entropy(temperatures, lo))
    top_twin = dsm_twin.isel(H=-1).values
    top_coarse = dsm_coarse.isel(H=-1).values
    rmse_twin = float(np.sqrt(np.mean((top_twin - truth) ** 2)))
    rmse_coarse = float(np.sqrt(np.mean((top_coarse - truth) ** 2)))
    change = (hi - lo) / 1e4
    say(
        f"|ΔS_M| for a field change of {change:.2f} T: peak {top_twin.max():.2f} J/(kg K) from "
        f"the twin, {truth.max():.2f} true, {top_coarse.max():.2f} from the coarse fields alone; "
        f"RMSE against the truth: twin {rmse_twin:.2f}, coarse fields {rmse_coarse:.2f}"
    )
    return {
        "field_change_T": change,
        "peak_twin": float(top_twin.max()),
        "peak_true": float(truth.max()),
        "peak_coarse": float(top_coarse.max()),
        "rmse_twin": rmse_twin,
        "rmse_coarse": rmse_coarse,
        "units": "J/(kg K)",
    }
