"""TwinCallback.from_catalog: a session killed mid-training, continued by the next one.

The first session is a real Python process: a RunEngine measuring the simulated magnetometer
into Tiled (a real server on loopback, started by this test) with a TwinCallback keeping its
twins in a work directory and its searches in a journal file. It is SIGKILLed while its second
training runs. The second session (this process) starts from the runs in Tiled and the twin on
disk. Trainings are tiny (2 trials of a 2x16 network, 20 epochs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.plans import scan
from tiled.queries import Key

from bluesky_digitwin import (
    DataWarning,
    DigitwinInputError,
    EnsembleRecipe,
    SearchSpace,
    TrainConfig,
)
from bluesky_digitwin.buffer import DataKeyError
from bluesky_digitwin.callbacks import RetrainPolicy, TwinCallback
from bluesky_digitwin.callbacks.training import RUNNING_TRAINING
from bluesky_digitwin.sim.devices import Magnetometer
from bluesky_digitwin.tiled import SIMULATED_SPEC, DataOriginError, TwinCatalog

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
POINTS_PER_RUN = 15


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Iterator[TwinCatalog]:
    with TwinCatalog.embedded(tmp_path_factory.mktemp("tiled")) as catalog:
        yield catalog


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex


def simulated_plan(mag: Magnetometer, md: dict[str, Any]):
    """A run marked simulated with the data keys of a measurement: were it learned from, its
    points would be in the buffer (a twin's own simulate_scan names its keys otherwise)."""
    yield from bps.open_run(
        {**md, "data_origin": "simulated", "tiled_specs": [SIMULATED_SPEC], "digital_twin": {}}
    )
    for temperature in (15.0, 35.0, 55.0):
        yield from bps.mv(mag.temperature, temperature)
        yield from bps.trigger_and_read([mag])
    yield from bps.close_run()


# -- a session killed mid-training, and the next one -----------------------------------------------

FIRST_SESSION = textwrap.dedent(
    """
    import json, sys, time
    import bluesky.plan_stubs as bps
    import event_model
    from bluesky import RunEngine
    from bluesky.plans import scan
    from bluesky_digitwin.callbacks import RetrainPolicy, TwinCallback
    from bluesky_digitwin.sim.devices import Magnetometer
    from bluesky_digitwin.tiled import TwinCatalog
    from test_restart import FAST, KEYS, POINTS_PER_RUN, TRAINING_TIMEOUT, simulated_plan

    args = json.loads(sys.argv[1])
    catalog = TwinCatalog.connect(args["uri"], create=False)  # the key from TILED_API_KEY
    RE = RunEngine({})
    catalog.subscribe(RE, backup_directory=args["backup"])
    emitted = open(args["documents"], "w")  # what the RunEngine emitted, to show it again

    def keep(name, doc):
        emitted.write(json.dumps([name, doc], cls=event_model.NumpyEncoder) + "\\n")
        emitted.flush()

    RE.subscribe(keep)
    mag = Magnetometer(name="mag", seed=0, seconds_per_point=0)
    cb = TwinCallback(
        ("T", "H"), "M", keys=KEYS, policy=RetrainPolicy(debounce=0.2), prewarm=False,
        work_dir=args["work"],
        fit_options={**FAST, "storage": args["journal"], "study_name": "restart"},
    )
    RE.subscribe(cb)
    md = {"tag": args["tag"]}
    measured = []
    for field in (1e4, 2e4):
        RE(bps.mv(mag.field, field))
        measured += RE(scan([mag], mag.temperature, 10, 60, POINTS_PER_RUN, md=md))
    twin = cb.wait(timeout=TRAINING_TIMEOUT)  # training #1, of the first two runs
    (simulated,) = RE(simulated_plan(mag, md))
    RE(bps.mv(mag.field, 3e4))
    measured += RE(scan([mag], mag.temperature, 10, 60, POINTS_PER_RUN, md=md))
    # A training asked for before this run stopped (on a busy machine, by the simulated run's
    # stop) is cancelled for its data and started again under the next number: wait past the
    # debounce, then report the training of all three runs, whatever its number.
    time.sleep(2)
    deadline = time.monotonic() + TRAINING_TIMEOUT
    while cb.status.state != "training":
        assert time.monotonic() < deadline, str(cb.status)
        time.sleep(0.02)
    report = {
        "pid": cb.status.pid,
        "training": cb.status.trainings,
        "twin": twin.id,
        "measured": measured,
        "simulated": simulated,
    }
    print(json.dumps(report), flush=True)
    time.sleep(600)  # until killed
    """
)


def trials(journal: Path, prefix: str, state: str) -> list[Any]:
    """The trials in ``state`` of the studies whose name starts with ``prefix``."""
    import optuna

    from bluesky_digitwin.surrogate.search import open_storage

    if not journal.exists():
        return []
    storage = open_storage(journal)
    return [
        trial
        for summary in optuna.get_all_study_summaries(storage)
        if summary.study_name.startswith(prefix)
        for trial in optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(
            deepcopy=False, states=(getattr(optuna.trial.TrialState, state),)
        )
    ]


def live_group_members(pgid: int) -> list[int]:
    """Pids of the processes of process group ``pgid`` that are not zombies (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def run_first_session(catalog: TwinCatalog, tmp_path: Path, tag: str) -> dict[str, Any]:
    """Run the first session until its second training is under way, then SIGKILL it.

    The training is frozen (SIGSTOP of its process group) the moment a trial of its study
    runs, so that it is caught mid-training whatever the machine's speed; once its session is
    dead it is let go, and ends itself as an orphaned training does.
    """
    args = {
        "uri": catalog.uri,
        "tag": tag,
        "work": str(tmp_path / "work"),
        "journal": str(tmp_path / "work" / "searches.journal"),
        "backup": str(tmp_path / "backup"),
        "documents": str(tmp_path / "documents.jsonl"),
    }
    tests = str(Path(__file__).resolve().parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([tests, *sys.path]),
        "TILED_API_KEY": catalog.api_key,
        "DIGITWIN_TF_THREADS": "1",
    }
    stderr = tmp_path / "first-session.err"
    with open(stderr, "wb") as err:
        session = subprocess.Popen(
            [sys.executable, "-c", FIRST_SESSION, json.dumps(args)],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=tmp_path,
        )  # fmt: skip
    pgid = None
    try:
        line = session.stdout.readline()
        assert line, f"the first session ended early:\n{stderr.read_text()[-3000:]}"
        report = json.loads(line)
        pgid = report["pid"]
        deadline = time.monotonic() + TRAINING_TIMEOUT
        number = report["training"]
        last_twin = tmp_path / "work" / f"twin-{number:04d}"
        while not trials(Path(args["journal"]), f"restart-{number}-", "RUNNING"):
            assert time.monotonic() < deadline, f"training #{number} never ran a trial"
            assert not last_twin.exists(), f"training #{number} ended first"
            time.sleep(0.05)
        os.killpg(pgid, signal.SIGSTOP)
        assert not last_twin.exists()
        session.send_signal(signal.SIGKILL)  # no close(), no atexit: nothing of it runs
        session.wait(timeout=30)
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
        if pgid is not None:
            os.killpg(pgid, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while live_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live_group_members(pgid) == [], "the orphaned training did not end"
    return {**report, **args}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_session_killed_mid_training_is_continued_from_tiled_and_its_twin(catalog, tmp_path, tag):
    first = run_first_session(catalog, tmp_path, tag)
    work, journal = Path(first["work"]), Path(first["journal"])
    measured, simulated = first["measured"], first["simulated"]
    # The killed training's number: 2, or more when a busy machine made the callback cancel
    # and restart a training for newer data.
    number = first["training"]
    (first_twin,) = sorted(work.glob("twin-*"))  # the first session's one twin
    assert (first_twin / "twin.json").is_file()
    abandoned = json.loads((work / RUNNING_TRAINING).read_text())
    assert abandoned["number"] == number
    assert abandoned["study_name"].startswith(f"restart-{number}-")
    assert trials(journal, abandoned["study_name"], "RUNNING")  # left running by the kill
    assert set(catalog.simulated.search(Key("tag") == tag)) == {simulated}

    cb = TwinCallback.from_catalog(
        catalog,
        query=Key("tag") == tag,  # matches the simulated run too
        work_dir=work,
        # No study_name: the earlier studies' ("restart") is kept.
        fit_options={**FAST, "storage": str(journal)},
        policy=RetrainPolicy(debounce=0.1),
        prewarm=False,
    )
    try:
        # The twin of the first session, at once.
        assert cb.twin is not None and cb.twin.id == first["twin"]
        assert (cb.buffer.features, cb.buffer.target, cb.buffer.keys) == (("T", "H"), "M", KEYS)
        # Every measured point once, no simulated one.
        points = cb.buffer.snapshot()
        run_uids, seq_nums = points["run_uid"].values.tolist(), points["seq_num"].values.tolist()
        ids = Counter(zip(run_uids, seq_nums, strict=True))
        assert set(ids.values()) == {1}
        assert len(ids) == cb.buffer.n_points == 3 * POINTS_PER_RUN
        assert set(cb.buffer.run_uids) == set(measured) and simulated not in cb.buffer.run_uids
        assert points.attrs["data_origin"] == "measured"
        # The training the kill cut short: its study's running trials are closed.
        assert trials(journal, abandoned["study_name"], "RUNNING") == []
        assert trials(journal, abandoned["study_name"], "FAIL")

        # The same runs seen live again (as the first session's RunEngine emitted them):
        # not one point more, and nothing to warn about.
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            with open(first["documents"]) as documents:
                for line in documents:
                    cb(*json.loads(line))
        assert [w for w in record if issubclass(w.category, DataWarning)] == []
        assert cb.buffer.n_points == 3 * POINTS_PER_RUN

        # The twin did not learn the third run: the next training warm-starts from it,
        # numbered after the training that was cut short, in the same series of studies.
        newer = cb.wait(timeout=TRAINING_TIMEOUT)
        provenance = newer.metadata["provenance"]
        assert provenance["warm_start_from"] == first["twin"]
        assert set(provenance["run_uids"]) == set(measured)
        assert provenance["data_keys"] == KEYS and provenance["stream"] == "primary"
        assert newer.metadata["data"]["n_points"] == 3 * POINTS_PER_RUN
        assert newer.metadata["search"]["study_name"].startswith(f"restart-{number + 1}-")
        next_twin = work / f"twin-{number + 1:04d}"
        assert json.loads((next_twin / "twin.json").read_text())["id"] == newer.id
        assert sorted(work.glob("twin-*")) == [first_twin, next_twin]
        assert cb.status.trainings == 1 and cb.status.state == "ready"
    finally:
        cb.close()
    assert not (work / RUNNING_TRAINING).exists()


@pytest.mark.slow
def test_a_twin_of_the_same_points_is_the_buffers_twin_and_trains_nothing(catalog, tmp_path, tag):
    """Restarted after the last twin had learned everything: nothing to train."""
    RE = RunEngine({})
    token = catalog.subscribe(RE, backup_directory=tmp_path / "backup")
    mag = Magnetometer(name="mag", seed=0, seconds_per_point=0)
    work = tmp_path / "work"
    with TwinCallback(
        ("T", "H"), "M", keys=KEYS, policy=RetrainPolicy(debounce=0.1), fit_options=FAST,
        work_dir=work, prewarm=False,
    ) as first:  # fmt: skip
        RE.subscribe(first)
        uids = []
        for field in (1e4, 2e4):
            RE(bps.mv(mag.field, field))
            uids += RE(scan([mag], mag.temperature, 10, 60, POINTS_PER_RUN, md={"tag": tag}))
        twin = first.wait(timeout=TRAINING_TIMEOUT)
    RE.unsubscribe(token)

    # By uids this time, with no names: they are the twin's.
    with TwinCallback.from_catalog(catalog, uids, work_dir=work, prewarm=False) as cb:
        assert cb.twin.id == twin.id
        assert cb.wait(timeout=1) is cb.twin  # the twin of the points buffered
        assert cb.twin_version == cb.buffer.version
        assert cb.status.state == "ready" and cb.status.trainings == 0
        assert cb.buffer.n_points == 2 * POINTS_PER_RUN and cb.buffer.keys == KEYS
        time.sleep(0.5)
        assert cb.status.trainings == 0


# -- bad input: one clear error each, nothing written ------------------------------------------


@pytest.fixture(scope="module")
def stored(catalog, tmp_path_factory) -> dict[str, Any]:
    """One measured and one simulated run in ``catalog``, and a node holding a simulated run
    only."""
    tag = uuid.uuid4().hex
    RE = RunEngine({})
    mag = Magnetometer(name="mag", seed=0, seconds_per_point=0)
    backup = tmp_path_factory.mktemp("backup")
    token = catalog.subscribe(RE, backup_directory=backup)
    (measured,) = RE(scan([mag], mag.temperature, 10, 60, 5, md={"tag": tag}))
    (simulated,) = RE(simulated_plan(mag, {"tag": tag, "label": f"simulated-{tag}"}))
    RE.unsubscribe(token)
    only = TwinCatalog(catalog.node.create_container(key=f"simulated-only-{tag}"))
    token = only.subscribe(RE, backup_directory=backup)
    RE(simulated_plan(mag, {"tag": tag}))
    RE.unsubscribe(token)
    return {"tag": tag, "measured": measured, "simulated": simulated, "only": only}


def node_count(catalog: TwinCatalog) -> dict[str, int]:
    return {origin: len(catalog.container(origin)) for origin in ("measured", "simulated")}


@pytest.mark.parametrize(
    "case, error, match",
    [
        ("no measured run matches", DigitwinInputError,
         r"no run at .* matches the query .* among the measured runs \(1 simulated run"),
        ("simulated runs only", DigitwinInputError,
         r"holds no measured run, only simulated ones, and a twin learns from measured runs"),
        ("unknown uid", DigitwinInputError, r"no run 0123456789abcdef at .*; check the uid"),
        ("simulated uid", DataOriginError, r"are simulated .*; a twin learns from measured runs"),
        ("no runs named", DigitwinInputError, r"name the measured runs to start from"),
        ("both named", DigitwinInputError, r"name the measured runs to start from"),
        ("no twin there", DigitwinInputError, r"holds no saved twin"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_error_and_writes_nothing(
    catalog, stored, tmp_path, case, error, match
):
    tag, only = stored["tag"], stored["only"]
    by_tag = {"query": Key("tag") == tag}
    source, kwargs = {
        "no measured run matches": (catalog, {"query": Key("label") == f"simulated-{tag}"}),
        "simulated runs only": (only, by_tag),
        "unknown uid": (catalog, {"uids": ["0123456789abcdef"]}),
        "simulated uid": (catalog, {"uids": [stored["measured"], stored["simulated"]]}),
        "no runs named": (catalog, {}),
        "both named": (catalog, {"uids": [stored["measured"]], **by_tag}),
        "no twin there": (catalog, {**by_tag, "twin": tmp_path}),
    }[case]  # fmt: skip
    work = tmp_path / "work"
    before = {"catalog": node_count(catalog), "only": node_count(only)}
    with pytest.raises(error, match=match):
        TwinCallback.from_catalog(source, work_dir=work, prewarm=False, **kwargs)
    assert {"catalog": node_count(catalog), "only": node_count(only)} == before
    assert not work.exists()


@pytest.mark.parametrize("keys", [{"T": "mag_temperature"}, None])
def test_runs_without_the_keys_named_are_one_clear_error(catalog, stored, tmp_path, keys):
    work = tmp_path / "work"
    with (
        pytest.raises(DataKeyError, match=r"none of the 1 measured run.* Data keys of the run: "),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", DataWarning)
        TwinCallback.from_catalog(
            catalog, stored["measured"], features="T", target="R", keys=keys, work_dir=work,
            prewarm=False,
        )  # fmt: skip
    assert not work.exists()


@pytest.mark.filterwarnings("ignore::bluesky_digitwin.holdout.TwinNotBetterWarning")
def test_names_other_than_the_twins_are_refused(catalog, stored, tmp_path):
    from digitwin_testing import smooth_table, two_network_fit

    from bluesky_digitwin.twin import DigitalTwin

    twin = DigitalTwin.fit(smooth_table(), ["x", "h"], "y", **two_network_fit())
    with pytest.raises(DigitwinInputError, match=r"the twin learned y\(x, h\), but the callback"):
        TwinCallback.from_catalog(
            catalog, stored["measured"], twin=twin, features=("T", "H"), target="M", keys=KEYS,
            prewarm=False,
        )  # fmt: skip
