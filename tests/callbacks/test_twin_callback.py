"""TwinCallback in a real RunEngine with the simulated magnetometer.

Trainings are tiny searches (2 trials of a 2x16 network, 20 epochs) run in real background
processes; most of their time is starting TensorFlow. No test asserts on speed: the cost of
the document path is measured by benchmarks/bench_runengine_cost.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections import Counter
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import bluesky.preprocessors as bpp
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import scan
from bluesky.utils import RunEngineInterrupted
from digitwin_testing import wait_for
from ophyd.sim import SynSignal
from ophyd_async.core import init_devices

from bluesky_digitwin import (
    DataWarning,
    DigitwinInputError,
    EnsembleRecipe,
    RemoteWorkers,
    SearchSpace,
    SearchStrategy,
    TrainConfig,
)
from bluesky_digitwin.buffer import DataKeyError
from bluesky_digitwin.callbacks import RetrainPolicy, TwinCallback, TwinStatus
from bluesky_digitwin.sim.async_devices import AsyncMagnetometer
from bluesky_digitwin.sim.devices import Magnetometer

KEYS = {"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"}
FAST = {
    "n_trials": 2,
    "n_workers": 1,
    "ensemble": EnsembleRecipe(size=1, refit_epochs=5),
    "seed": 0,
    "train_config": TrainConfig(max_epochs=20),
    "space": SearchSpace(n_layers=(2, 2), n_units=(16, 16), l2=None),
}
#: Generous: a training here is mostly TensorFlow starting, on a machine that may be busy.
TRAINING_TIMEOUT = 240


@pytest.fixture
def RE() -> RunEngine:
    return RunEngine({})


@pytest.fixture
def mag() -> Magnetometer:
    return Magnetometer(name="mag", seed=0, seconds_per_point=0)


@pytest.fixture
def make_callback(tmp_path: Path):
    """Make TwinCallbacks that are closed at the end of the test, whatever happens."""
    made: list[TwinCallback] = []

    def make(**kwargs) -> TwinCallback:
        kwargs.setdefault("keys", KEYS)
        kwargs.setdefault("work_dir", tmp_path / f"work-{len(made)}")
        cb = TwinCallback(("T", "H"), "M", **kwargs)
        made.append(cb)
        return cb

    yield make
    for cb in made:
        cb.close()


def line_scan(RE: RunEngine, mag: Magnetometer, field: float, n: int = 15) -> tuple[str, ...]:
    """M(T) from 10 to 60 K at one field; the whole device is read, field included."""
    RE(bps.mv(mag.field, field))
    return RE(scan([mag], mag.temperature, 10, 60, n))


def wait_for_state(cb: TwinCallback, states: set[str], timeout: float = 60) -> TwinStatus:
    deadline = time.monotonic() + timeout
    while (status := cb.status).state not in states:
        if time.monotonic() > deadline:
            raise AssertionError(f"state never became one of {states}: {status}")
        time.sleep(0.02)
    return status


# -- the background training across runs -------------------------------------------------------


class _ProcessGroup:
    """A training process and its search workers (its own process group), to freeze."""

    def __init__(self, pid: int):
        self.pid = pid

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group has been killed
            os.killpg(self.pid, sig)

    def resume(self) -> None:
        self.send_signal(signal.SIGCONT)


def freeze_training(cb: TwinCallback, settled: float = 2.0) -> _ProcessGroup:
    """Freeze ``cb``'s running training (SIGSTOP to its process group) and return the group.

    Only a training that has run ``settled`` seconds (ten debounce periods of the test's policy)
    is frozen: one started before the last scan's data arrived would be restarted for them.
    The state is checked again with the group frozen: a training that ended meanwhile is not
    the one wanted, and the next is waited for.
    """

    def frozen() -> _ProcessGroup | None:
        status = cb.status
        if status.state != "training" or status.pid is None or status.started is None:
            return None
        if time.time() - status.started < settled:
            return None
        group = _ProcessGroup(status.pid)
        group.send_signal(signal.SIGSTOP)
        time.sleep(0.5)
        now = cb.status
        if now.state == "training" and now.pid == status.pid:
            return group
        group.resume()
        return None

    return wait_for(frozen, TRAINING_TIMEOUT, "a running training to freeze")


@pytest.mark.slow
def test_trains_across_runs_restarts_for_new_data_and_warm_starts(RE, mag, make_callback):
    options = {**FAST, "train_config": TrainConfig(max_epochs=1000, patience=1000)}
    cb = make_callback(policy=RetrainPolicy(debounce=0.2), fit_options=options)
    RE.subscribe(cb)
    assert (cb.twin, cb.twin_version, cb.status.state) == (None, -1, "idle")

    for field in (1e4, 2e4, 3e4):
        line_scan(RE, mag, field)
    # New data while the first training runs: it is cancelled and started over with them.
    # The training is frozen (its process group: its search workers too) until then, so it is
    # still running when the next scan ends however fast it trains or slowly the scan goes (by
    # timing alone, a training of 1000 epochs once finished first on a loaded machine).
    training = freeze_training(cb)
    cancelled = cb.status.cancelled
    try:
        line_scan(RE, mag, 4e4)
        wait_for(
            lambda: cb.status.cancelled > cancelled, TRAINING_TIMEOUT, "the training cancelled"
        )
    finally:
        training.resume()
    twin = cb.wait(timeout=TRAINING_TIMEOUT)

    assert cb.twin is twin
    assert len(cb.buffer.run_uids) == 4
    provenance = twin.metadata["provenance"]
    assert provenance["run_uids"] == cb.buffer.run_uids
    assert provenance["buffer_version"] == cb.twin_version == cb.buffer.version
    assert provenance["warm_start_from"] is None
    status = cb.status
    assert status.state == "ready", status
    assert status.cancelled >= 1 and status.trainings >= 2 and status.failures == 0
    assert status.twin_id == twin.id and status.pid is None
    assert str(status).startswith("ready: twin ")
    assert twin.ranges["H"] == (1e4, 4e4)

    # The next run is paused (like Ctrl-C) and resumed; after its stop, a new twin is trained
    # on it too, starting its search from the current twin's hyperparameters.
    with pytest.raises(RunEngineInterrupted):
        RE(grid_with_a_pause(mag, fields=(2.5e4, 5e4)))
    assert cb.twin is twin  # a paused run has not stopped: no training asked for
    (uid,) = RE.resume()
    newer = cb.wait(timeout=TRAINING_TIMEOUT)
    assert newer.id != twin.id and cb.twin is newer
    assert newer.metadata["provenance"]["warm_start_from"] == twin.id
    assert newer.metadata["provenance"]["run_uids"] == cb.buffer.run_uids
    assert cb.buffer.run_uids[-1] == uid and len(cb.buffer.run_uids) == 5
    assert newer.metadata["data"]["n_points"] == 4 * 15 + 2 * 8 + 1  # one point measured twice
    prediction = newer.predict({"T": [30.0], "H": [2.5e4]})
    assert np.isfinite(prediction["M"].values).all()


@pytest.mark.slow
def test_learns_an_ophyd_async_grid_scan_named_by_its_hints(RE, tmp_path):
    """No names given: the plan's motors are the features, the hinted reading the target;
    dashed ophyd-async keys go through the training process and back in the twin."""
    with init_devices():
        amag = AsyncMagnetometer(seed=0, noise=1e-5)
    policy = RetrainPolicy(debounce=0.1)
    with TwinCallback(policy=policy, fit_options=FAST, work_dir=tmp_path / "work") as cb:
        RE.subscribe(cb)
        (uid,) = RE(bp.grid_scan([amag], amag.temperature, 10, 60, 8, amag.field, 1e3, 4e4, 4))
        twin = cb.wait(timeout=TRAINING_TIMEOUT)
    assert (twin.features, twin.target) == (("amag-temperature", "amag-field"), "amag-moment")
    assert twin.units == {"amag-temperature": "K", "amag-field": "Oe", "amag-moment": "emu"}
    assert twin.metadata["provenance"]["run_uids"] == [uid]
    assert twin.ranges["amag-field"] == (1e3, 4e4)
    prediction = twin.predict({"amag-temperature": [30.0], "amag-field": [2e4]})
    assert np.isfinite(prediction["amag-moment"].values).all()
    assert "amag-moment(amag-temperature, amag-field)" in repr(cb)


@pytest.mark.slow
def test_a_cancelled_training_leaves_no_trial_running_in_its_study(
    RE, mag, make_callback, tmp_path
):
    """Searches kept in a journal: a training cancelled mid-trial does not leave it 'running'."""
    import optuna

    from bluesky_digitwin.surrogate.search import open_storage

    journal = tmp_path / "searches.journal"
    # A trial far longer than anything the test waits for: the trial seen running is still
    # running when the new data cancel its training, however busy the machine is.
    endless = TrainConfig(max_epochs=100_000, patience=100_000, chunk_epochs=5)
    options = {**FAST, "train_config": endless, "storage": str(journal), "study_name": "live"}
    # Restarts not capped: however the first lines fell between trainings, the new line below
    # cancels the training that runs then (the default lets a third restart run to its end).
    policy = RetrainPolicy(debounce=0.2, max_restarts=100)
    cb = make_callback(policy=policy, fit_options=options)
    RE.subscribe(cb)
    for field in (1e4, 2e4, 3e4):
        line_scan(RE, mag, field)

    def trials(state=None) -> dict[tuple[str, int], optuna.trial.TrialState]:
        if not journal.exists():
            return {}
        storage = open_storage(journal)
        return {
            (summary.study_name, trial.number): trial.state
            for summary in optuna.get_all_study_summaries(storage)
            for trial in optuna.load_study(
                study_name=summary.study_name, storage=storage
            ).get_trials(deepcopy=False)
            if state is None or trial.state == state
        }

    running = wait_for(
        lambda: trials(optuna.trial.TrialState.RUNNING), TRAINING_TIMEOUT, "a running trial"
    )
    cancelled = cb.status.cancelled  # earlier lines may have cancelled trainings already
    line_scan(RE, mag, 4e4)  # new data: the running training is cancelled
    wait_for(
        lambda: cb.status.cancelled > cancelled, TRAINING_TIMEOUT, "the training's cancellation"
    )
    # The cancelled training's trials are closed as failed, not left running for ever (the
    # next training, on the new data, may be running trials of its own by now).

    def closed_after_cancel():
        now = trials()
        return now if all(now[t] != optuna.trial.TrialState.RUNNING for t in running) else None

    closed = wait_for(closed_after_cancel, 30, "the cancelled trials to be closed")
    assert {closed[t] for t in running} == {optuna.trial.TrialState.FAIL}


def test_wait_asks_for_a_training_and_says_why_none_comes(RE, mag, make_callback):
    cb = make_callback(policy=RetrainPolicy(on_stop=False), prewarm=False)
    RE.subscribe(cb)
    line_scan(RE, mag, 1e4)
    assert cb.status.state == "idle"  # on_stop=False: nothing asked for
    with pytest.raises(RuntimeError, match="min_points"):
        # wait() asks for a training itself; 15 points are too few for min_points=20.
        cb.wait(timeout=60)
    assert cb.status.state == "waiting"
    assert "15 points buffered" in cb.status.message


def test_wait_times_out_with_the_status(RE, mag, make_callback):
    # A long debounce: the training is asked for but does not start within the wait.
    cb = make_callback(policy=RetrainPolicy(debounce=30), prewarm=False)
    RE.subscribe(cb)
    line_scan(RE, mag, 1e4, n=25)
    with pytest.raises(TimeoutError, match=r"no twin of buffer version 25 within 0.2 s.*waiting"):
        cb.wait(timeout=0.2)
    assert cb.status.trainings == 0


def test_every_n_points_asks_during_a_run(RE, mag, make_callback):
    policy = RetrainPolicy(on_stop=False, every_n_points=5, debounce=0, min_points=1000)
    cb = make_callback(policy=policy, prewarm=False)
    RE.subscribe(cb)
    line_scan(RE, mag, 1e4, n=12)
    status = wait_for_state(cb, {"waiting"})
    assert "RetrainPolicy.min_points" in status.message
    assert status.trainings == 0


# -- failures stay in the background -----------------------------------------------------------


def until(predicate, timeout: float):
    """A plan that sleeps (in the RunEngine's way) until ``predicate()`` or the timeout."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        yield from bps.sleep(0.05)


def test_a_failing_training_never_reaches_the_runengine(RE, mag, make_callback):
    # A real ophyd sim detector that always reads the same: DigitalTwin.fit refuses it.
    constant = SynSignal(func=lambda: 1.0, name="constant")
    # prewarm=False: the error comes before TensorFlow would start; no need to wait for it.
    cb = make_callback(
        keys={**KEYS, "M": "constant"},
        policy=RetrainPolicy(debounce=0),
        fit_options=FAST,
        prewarm=False,
    )
    RE.subscribe(cb)

    def plan():
        for field in (1e4, 2e4):
            yield from bps.mv(mag.field, field)
            yield from scan([mag, constant], mag.temperature, 10, 60, 11)
        # The training fails in the background while this plan is still running ...
        yield from until(lambda: cb.status.state == "error", TRAINING_TIMEOUT)
        yield from bps.mv(mag.field, 3e4)
        yield from scan([mag, constant], mag.temperature, 10, 60, 11)

    uids = RE(plan())
    # ... and the plan finished anyway.
    assert len(uids) == 3 and RE.state == "idle"
    status = cb.status
    assert status.failures >= 1 and "is constant" in status.last_error
    # The third run's stop asked again: it fails the same way, and wait() says why.
    with pytest.raises(RuntimeError, match="is constant"):
        cb.wait(timeout=TRAINING_TIMEOUT)
    status = cb.status
    assert status.state == "error" and status.failures == status.trainings == 2, status
    assert cb.twin is None and "last error: " in str(status)


def test_an_option_the_data_refuse_fails_in_the_background_in_one_log_line(
    RE, mag, make_callback, caplog
):
    # Two scan lines: holdout="lines" needs three. Only the data can tell.
    options = {**FAST, "strategy": SearchStrategy(holdout="lines")}
    cb = make_callback(policy=RetrainPolicy(debounce=0), fit_options=options, prewarm=False)
    RE.subscribe(cb)
    caplog.set_level(logging.INFO, logger="bluesky_digitwin.callbacks")
    for field in (1e4, 2e4):
        line_scan(RE, mag, field, n=11)
    with pytest.raises(RuntimeError, match="holdout='lines' needs scan lines"):
        cb.wait(timeout=TRAINING_TIMEOUT)
    assert cb.status.state == "error" and cb.status.failures == 1
    # A mistake in the input, not a bug: one line that says what to do, no traceback.
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert message.startswith("TwinCallback: training #1 failed: DigitwinInputError: holdout=")
    assert "\n" not in message and errors[0].exc_info is None


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("n_trials", -5),
        ("n_trials", 0),
        ("n_trials", 2.5),
        ("n_trials", True),
        ("n_workers", -1),
        ("n_workers", 0),
        ("seed", -1),
    ],
)
def test_fit_option_values_that_can_never_work_fail_when_the_callback_is_made(option, value):
    with pytest.raises(DigitwinInputError, match=rf"fit_options cannot work: {option} must"):
        TwinCallback(fit_options={**FAST, option: value}, prewarm=False)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: EnsembleRecipe(size=0), "at least one network"),
        (lambda: EnsembleRecipe(refit_epochs=-1), "refit_epochs must be 0 or more"),
        (lambda: EnsembleRecipe(tolerance=0.5), "tolerance is a factor .* at least 1"),
        (lambda: RemoteWorkers(heartbeat_interval=0), "heartbeat_interval must be None or"),
        (lambda: SearchStrategy(validation_fraction=1.5), "validation_fraction must be between"),
        (lambda: SearchStrategy(holdout="rows"), "holdout must be 'auto', 'points' or 'lines'"),
        # Whole numbers where whole numbers are meant, numbers where numbers are.
        (lambda: EnsembleRecipe(size=2.5), "at least one network; got size 2.5"),
        (lambda: EnsembleRecipe(size=True), "at least one network; got size True"),
        (lambda: EnsembleRecipe(refit_epochs=1.5), r"refit_epochs must be 0 or more \(a whole"),
        (lambda: EnsembleRecipe(tolerance="2"), "tolerance is a factor"),
        (lambda: RemoteWorkers(heartbeat_interval=2.5), "heartbeat_interval must be None or"),
        (lambda: SearchStrategy(validation_fraction="0.2"), "validation_fraction must be between"),
    ],
)
def test_settings_that_can_never_work_fail_when_they_are_made(make, message):
    with pytest.raises(DigitwinInputError, match=message):
        make()


def test_fit_options_of_the_wrong_kind_or_an_earlier_version_say_what_to_use():
    with pytest.raises(DigitwinInputError, match="ensemble must be an EnsembleRecipe, got dict"):
        TwinCallback(fit_options={**FAST, "ensemble": {"size": 3}}, prewarm=False)
    with pytest.raises(DigitwinInputError, match=r"holdout -> strategy=SearchStrategy\(holdout"):
        TwinCallback(fit_options={**FAST, "holdout": "lines"}, prewarm=False)


def test_fit_option_values_that_can_work_are_taken():
    options = {
        **FAST, "n_workers": None, "seed": None, "n_trials": np.int64(3),
        "ensemble": EnsembleRecipe(size=np.int64(1), tolerance=np.float64(2.0), refit_epochs=0),
        "remote": RemoteWorkers(heartbeat_interval=np.int64(5)),
        "strategy": SearchStrategy(validation_fraction=0.3, holdout="auto"),
    }  # fmt: skip
    with TwinCallback(fit_options=options, prewarm=False) as cb:
        assert cb.status.state == "idle"
    # No heartbeats at all is a choice too.
    assert RemoteWorkers(heartbeat_interval=None).heartbeat_interval is None


def test_the_status_counts_the_points_buffered_now(RE, mag, make_callback):
    cb = make_callback(policy=RetrainPolicy(debounce=0), prewarm=False)
    RE.subscribe(cb)
    line_scan(RE, mag, 1e4, n=3)  # too few: the stop's request waits for data
    assert "waiting for data: 3 points buffered" in wait_for_state(cb, {"waiting"}).message
    seen = []

    def long_run():
        # A run still going (no stop yet, so no new request): the status must keep up.
        yield from bps.open_run()
        for temperature in np.linspace(10, 60, 40):
            yield from bps.mv(mag.temperature, temperature)
            yield from bps.trigger_and_read([mag])
            if temperature == 10:
                seen.append(cb.status)
        seen.append(cb.status)
        yield from bps.close_run()

    RE(long_run())
    assert "waiting for data: 4 points buffered" in seen[0].message, seen[0]
    assert seen[-1].n_points == 43
    assert "43 points buffered, enough to train" in seen[-1].message, seen[-1]
    assert " 3 points" not in str(seen[-1])


def test_documents_missing_keys_are_skipped_not_raised(RE, mag, make_callback, caplog):
    cb = make_callback(policy=RetrainPolicy(debounce=0), prewarm=False)
    RE.subscribe(cb)
    # Only the moment is read and no field is given anywhere: every point lacks H.
    with pytest.warns(DataWarning, match="lack 'mag_field'"):
        (uid,) = RE(scan([mag.moment], mag.temperature, 10, 60, 11))
    assert RE.state == "idle"
    assert cb.buffer.n_points == 0 and cb.buffer.skipped == {uid: {"mag_field": 11}}

    # Malformed documents, also with warnings turned into errors: logged, never raised.
    bad = [
        ("event", {}),
        ("start", {"no": "uid"}),
        ("descriptor", {"uid": "d", "run_start": "unknown"}),
        ("event_page", {"descriptor": "unknown"}),
        ("stop", {}),
        ("nonsense", None),
        (None, None),
    ]
    with caplog.at_level(logging.ERROR, logger="bluesky_digitwin.callbacks.twin"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for name, doc in bad:
                assert cb(name, doc) == (name, doc)
    assert "TwinCallback ignored an error" in caplog.text

    # The run's stop asked for a training; there are no points, and the status says why: the
    # run's keys, with those it has. wait() raises that error, a ValueError.
    status = wait_for_state(cb, {"error"})
    assert "lack 'mag_field' (for 'H')" in status.message, status
    assert "mag_moment, mag_temperature" in status.message
    assert status.last_error.startswith("DataKeyError: ")
    with pytest.raises(DataKeyError, match="lack 'mag_field'") as raised:
        cb.wait(timeout=30)
    assert isinstance(raised.value, ValueError) and raised.value.run_uid == uid
    assert "mag_moment" in raised.value.data_keys
    assert "lack 'mag_field'" in caplog.text  # logged once, at ERROR
    # With the field in the metadata (under its data key), the same scan is buffered, and
    # what is missing now is points.
    RE(scan([mag.moment], mag.temperature, 10, 60, 11, md={"mag_field": 5000}))
    assert cb.buffer.n_points == 11 and cb.buffer.key_error is None
    with pytest.raises(RuntimeError, match="min_points"):
        cb.wait(timeout=30)


# -- pause and resume ----------------------------------------------------------------------------


def grid_with_a_pause(mag: Magnetometer, fields=(1e4, 2e4, 3e4), pause_at: int = 10):
    """One run over temperatures x fields with a checkpoint per point; pauses once.

    The pause (``bps.pause()``, as Ctrl-C would) comes after point ``pause_at`` was read: on
    resume the RunEngine rewinds to the checkpoint before it and measures it again.
    """
    steps = [(field, t) for field in fields for t in np.linspace(10, 60, 8)]
    paused = []

    @bpp.run_decorator(md={"plan_name": "grid_with_a_pause"})
    def grid():
        for i, (field, t) in enumerate(steps):
            yield from bps.checkpoint()
            yield from bps.mv(mag.field, field, mag.temperature, t)
            yield from bps.trigger_and_read([mag])
            if i == pause_at and not paused:
                paused.append(i)
                yield from bps.pause()

    return grid()


def test_a_paused_and_resumed_run_is_buffered_as_emitted(RE, mag, make_callback):
    policy = RetrainPolicy(debounce=0, min_points=1000)  # asks, but never trains
    cb = make_callback(policy=policy, prewarm=False)
    RE.subscribe(cb)
    with pytest.raises(RunEngineInterrupted):
        RE(grid_with_a_pause(mag, pause_at=10))
    assert RE.state == "paused"
    assert cb.buffer.n_points == 11
    time.sleep(0.1)
    assert cb.status.state == "idle"  # a paused run has not stopped: nothing asked for

    (uid,) = RE.resume()
    # Point 10 was measured again after the rewind: a new event with the same seq_num. Both
    # are kept: the second is a real second measurement.
    assert cb.buffer.n_points == 3 * 8 + 1
    snapshot = cb.buffer.snapshot()
    repeats = [n for n, count in Counter(snapshot["seq_num"].values.tolist()).items() if count > 1]
    assert repeats == [11]
    assert set(snapshot["run_uid"].values.tolist()) == {uid}
    # The stop after the resume asked for a training (which waits for more data here).
    status = wait_for_state(cb, {"waiting"})
    assert "25 points buffered" in status.message


# -- the end: close, atexit ----------------------------------------------------------------------


def test_options_are_checked_when_the_callback_is_made():
    with pytest.raises(DigitwinInputError, match="every_n_points"):
        RetrainPolicy(every_n_points=0)
    with pytest.raises(DigitwinInputError, match="min_points"):
        RetrainPolicy(min_points=2)
    with pytest.raises(DigitwinInputError, match="progress"):
        TwinCallback(fit_options={"progress": print})
    with pytest.raises(DigitwinInputError, match=r"'n_trial'.*does not take"):
        TwinCallback(fit_options={"n_trial": 3})
    with pytest.raises(DigitwinInputError, match="picklable"):
        TwinCallback(fit_options={"strategy": SearchStrategy(sampler=lambda: None)})
    with pytest.raises(DigitwinInputError, match=r"study_name '\.\./up' is not allowed"):
        TwinCallback(fit_options={"study_name": "../up"})


def test_close_is_idempotent_and_a_context_manager():
    with TwinCallback() as cb:
        work_dir = cb.work_dir
        assert work_dir.is_dir()
        assert cb.status.state == "idle" and "idle" in repr(cb)
    assert cb.status.state == "closed"
    assert not work_dir.exists()  # a temporary work directory goes with the callback
    cb.close()
    with pytest.warns(DataWarning):
        cb("stop", {})  # documents after close are still harmless
    with pytest.raises(RuntimeError, match="closed"):
        cb.wait(timeout=5)


EXIT_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys, time
    import bluesky.plan_stubs as bps
    from bluesky import RunEngine
    from bluesky.plans import scan
    from bluesky_digitwin import TrainConfig
    from bluesky_digitwin.callbacks import RetrainPolicy, TwinCallback
    from bluesky_digitwin.sim.devices import Magnetometer

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bluesky_digitwin.callbacks").setLevel(logging.INFO)
    mag = Magnetometer(name="mag", seed=0)
    RE = RunEngine({})
    # A search far too long to finish, with a second worker process.
    cb = TwinCallback(
        ("T", "H"), "M", keys=KEYS, policy=RetrainPolicy(on_stop=False, debounce=0),
        prewarm=False,
        fit_options={"n_trials": 200, "n_workers": 2, "train_config": TrainConfig()},
    )
    RE.subscribe(cb)
    for field in (1e4, 2e4, 3e4):
        RE(bps.mv(mag.field, field))
        RE(scan([mag], mag.temperature, 10, 60, 15))
    cb.retrain()  # one training, of all three runs
    deadline = time.monotonic() + 120
    while cb.status.state != "training" and time.monotonic() < deadline:
        time.sleep(0.05)
    print(json.dumps({"state": cb.status.state, "pid": cb.status.pid}), flush=True)
    sys.stdin.readline()  # the test says when to leave; no close(): atexit must do it
    """
).replace("KEYS", repr(KEYS))


def _live_group_members(pgid: int) -> list[int]:
    """Pids of the processes in process group ``pgid`` that are not zombies (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _read_line(stream, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no output within {timeout} s"
    return stream.readline()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_interpreter_exits_cleanly_while_training(tmp_path):
    stderr = tmp_path / "stderr.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(stderr, "wb") as err:
        script = subprocess.Popen(
            [sys.executable, "-c", EXIT_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            # Away from a source checkout, which `-c` would put first on sys.path.
            cwd=tmp_path,
        )
    try:
        report = json.loads(_read_line(script.stdout, TRAINING_TIMEOUT))
        assert report["state"] == "training", stderr.read_text()
        pgid = report["pid"]
        # Wait until the training has started its search worker (or give up waiting: the
        # point is the exit, and the training process is there in any case).
        deadline = time.monotonic() + 60
        while len(_live_group_members(pgid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _live_group_members(pgid), "the training process is not running"

        script.stdin.write("\n")
        script.stdin.flush()
        # A hang (a training process keeping the interpreter alive) fails here.
        assert script.wait(timeout=60) == 0, stderr.read_text()
        assert "closed while training #1 ran" in stderr.read_text()  # atexit did it
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    deadline = time.monotonic() + 10
    while (left := _live_group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"processes of the training outlived the interpreter: {left}"


KILLED_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import bluesky.plan_stubs as bps
    from bluesky import RunEngine
    from bluesky.plans import scan
    from bluesky_digitwin import TrainConfig
    from bluesky_digitwin.callbacks import RetrainPolicy, TwinCallback
    from bluesky_digitwin.sim.devices import Magnetometer

    mag = Magnetometer(name="mag", seed=0)
    RE = RunEngine({})
    # A temporary work directory (the default), and a search far too long to finish.
    cb = TwinCallback(
        ("T", "H"), "M", keys=KEYS, policy=RetrainPolicy(debounce=0), prewarm=False,
        fit_options={"n_trials": 200, "n_workers": 1, "train_config": TrainConfig()},
    )
    RE.subscribe(cb)
    for field in (1e4, 2e4):
        RE(bps.mv(mag.field, field))
        RE(scan([mag], mag.temperature, 10, 60, 15))
    deadline = time.monotonic() + 120
    while cb.status.state != "training" and time.monotonic() < deadline:
        time.sleep(0.05)
    status = cb.status
    print(json.dumps({"state": status.state, "pid": status.pid, "dir": str(cb.work_dir)}))
    sys.stdout.flush()
    time.sleep(600)  # until killed
    """
).replace("KEYS", repr(KEYS))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_killed_session_leaves_no_work_directory_behind(tmp_path, monkeypatch):
    import signal
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TMPDIR": str(temp)}
    script = subprocess.Popen(
        [sys.executable, "-c", KILLED_SCRIPT],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        report = json.loads(_read_line(script.stdout, TRAINING_TIMEOUT))
        assert report["state"] == "training"
        left = Path(report["dir"])
        assert left.parent == temp and left.is_dir()
        assert _live_group_members(report["pid"]), "the training process is not running"
        script.send_signal(signal.SIGKILL)  # no close(), no atexit: nothing of it runs
        script.wait(timeout=30)
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    # Its training notices and ends itself, even when the kill came while it was still
    # starting up (it was once left training for ever, at a full core); the callback's
    # directory stays behind.
    deadline = time.monotonic() + 30
    while _live_group_members(report["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _live_group_members(report["pid"]) == [], "the orphaned training did not end"
    assert left.is_dir()

    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where TwinCallback's mkdtemp goes
    with TwinCallback(prewarm=False) as live:
        assert not left.exists()  # the next callback removed what the dead one left
        assert live.work_dir.parent == temp
        with TwinCallback(prewarm=False) as other:
            assert live.work_dir.is_dir()  # a living callback's directory is not touched
            assert other.work_dir != live.work_dir
        assert not other.work_dir.exists()
    assert list(temp.glob("digitwin-callback-*")) == []
