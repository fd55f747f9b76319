"""Fault injection on the way to Tiled: the server refuses, or disappears, in the middle of a run.

Real parts only: a RunEngine, ophyd's simulated detector, an embedded Tiled server on loopback
(TwinCatalog.embedded), and the faults done to that server for real (its container removed,
the server stopped between two readings). The properties: the RunEngine finishes, the error is
said with the backup's path, every document is in the backup, and ``TwinCatalog.replay`` puts
the run in ``measured`` with its own uid, once.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import pytest
import stamina
from bluesky import RunEngine
from digitwin_testing import subprocess_env, wait_for
from ophyd.sim import SynAxis, SynGauss

from bluesky_digitwin.data import DataWarning, DigitwinInputError
from bluesky_digitwin.tiled import TwinCatalog, read_backup

N_BEFORE, N_AFTER = 2, 3


@pytest.fixture
def no_retries() -> Iterator[None]:
    """Tiled's client retries a lost server for 45 s; once is enough to see it gone."""
    with stamina.set_testing(True, attempts=1):
        yield


@pytest.fixture
def devices() -> tuple[SynAxis, SynGauss]:
    motor = SynAxis(name="motor")
    det = SynGauss("det", motor, "motor", center=0, Imax=1, sigma=1)
    return motor, det


def faulty_run(
    motor: SynAxis, det: SynGauss, fault: Callable[[], None], md: dict[str, Any]
) -> Iterator[Any]:
    """A run of N_BEFORE readings, the fault, then N_AFTER readings."""
    yield from bps.open_run(md)
    for i in range(N_BEFORE + N_AFTER):
        if i == N_BEFORE:
            fault()
        yield from bps.mv(motor, 0.1 * i)
        yield from bps.trigger_and_read([det, motor])
    yield from bps.close_run()


def run_with_fault(
    catalog: TwinCatalog,
    devices: tuple[SynAxis, SynGauss],
    fault: Callable[[], None],
    warns: bool = True,
    **kw: Any,
) -> tuple[str, list[dict[str, Any]]]:
    """The uid of the faulty run and the events the RunEngine emitted."""
    RE = RunEngine({})
    catalog.subscribe(RE, **kw)
    events: list[dict[str, Any]] = []
    RE.subscribe(lambda name, doc: events.append(doc), "event")
    plan = faulty_run(*devices, fault, {"sample": "ErCo2"})
    if not warns:
        (uid,) = RE(plan)
        return uid, events
    with pytest.warns(DataWarning, match="failed at its .* document .* kept in .*: store it with"):
        (uid,) = RE(plan)
    return uid, events


def check_backup(path: Path, uid: str, events: list[dict[str, Any]]) -> None:
    """Every document of the run is in its backup."""
    docs = read_backup(path)
    assert docs[0] == ("start", docs[0][1]) and docs[0][1]["uid"] == uid
    assert docs[-1][0] == "stop" and docs[-1][1]["num_events"] == {"primary": len(events)}
    seq = [n for name, doc in docs if name == "event_page" for n in doc["seq_num"]]
    assert seq == [event["seq_num"] for event in events]


def check_stored(catalog: TwinCatalog, uid: str, events: list[dict[str, Any]]) -> None:
    """The run is in ``measured``, whole, with the values read."""
    assert uid in list(catalog.measured) and uid not in list(catalog.simulated)
    run = catalog.measured[uid]
    assert run.start["data_origin"] == "measured" and run.start["sample"] == "ErCo2"
    assert run.metadata["stop"]["exit_status"] == "success"
    table = run["primary"].read()
    assert list(table["det"].values) == [event["data"]["det"] for event in events]


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [None, 1])
def test_the_server_disappears_mid_run(tmp_path, devices, no_retries, batch_size):
    catalog = TwinCatalog.embedded(tmp_path / "tiled")
    try:
        uid, events = run_with_fault(catalog, devices, catalog.close, batch_size=batch_size)
    finally:
        catalog.close()
    assert len(events) == N_BEFORE + N_AFTER  # the RunEngine went on to the end
    backup = catalog.backup_directory / f"{uid}.jsonl"
    check_backup(backup, uid, events)
    kept = tmp_path / "copy.jsonl"
    shutil.copy(backup, kept)

    with TwinCatalog.embedded(tmp_path / "tiled") as again:
        # With batch_size=1 the server had the start and two events: that part is replaced.
        (replayed,) = again.replay(again.backup_directory)
        assert (replayed.uid, replayed.origin, replayed.outcome) == (uid, "measured", "stored")
        assert not backup.exists()  # stored: the backup has done its work
        check_stored(again, uid, events)
        # Replaying the same run again stores nothing twice.
        (twice,) = again.replay(kept)
        assert twice.outcome == "already stored"
        assert list(again.measured).count(uid) == 1


def test_tiled_refuses_mid_run(tmp_path, devices):
    with TwinCatalog.embedded(tmp_path / "tiled") as catalog:

        def remove_measured() -> None:
            catalog.node.delete_contents("measured", recursive=True, external_only=False)

        uid, events = run_with_fault(catalog, devices, remove_measured, batch_size=1)
        backup = catalog.backup_directory / f"{uid}.jsonl"
        check_backup(backup, uid, events)
        # The layout made again (connect creates what is missing), the run goes in.
        fresh = TwinCatalog.connect(node=catalog.node)
        (replayed,) = fresh.replay(backup)
        assert replayed.ok and replayed.outcome == "stored"
        check_stored(fresh, uid, events)


@pytest.mark.slow
def test_a_router_made_later_says_what_is_still_to_replay(tmp_path, devices, no_retries):
    catalog = TwinCatalog.embedded(tmp_path / "tiled")
    try:
        uid, _ = run_with_fault(catalog, devices, catalog.close)
    finally:
        catalog.close()
    with TwinCatalog.embedded(tmp_path / "tiled") as again:
        with pytest.warns(DataWarning, match=f"1 run.* kept in {again.backup_directory}"):
            again.router()
        assert [run.uid for run in again.replay(again.backup_directory)] == [uid]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again.router()  # nothing left to say


#: A session measuring into a Tiled server given by URI (key in TILED_API_KEY), slowly, until
#: it is killed.
_SESSION = """
import sys, bluesky.plan_stubs as bps
from bluesky import RunEngine
from ophyd.sim import det
from bluesky_digitwin.tiled import TwinCatalog

catalog = TwinCatalog.connect(sys.argv[1])
RE = RunEngine({})
catalog.subscribe(RE, backup_directory=sys.argv[2])

def slow():
    yield from bps.open_run({"sample": "ErCo2"})
    while True:
        yield from bps.trigger_and_read([det])
        yield from bps.sleep(0.05)

RE(slow())
"""


@pytest.mark.slow
def test_a_session_killed_mid_run_leaves_its_run_to_replay(tmp_path):
    backups = tmp_path / "backup"
    with TwinCatalog.embedded(tmp_path / "tiled") as catalog:
        env = {**subprocess_env(), "TILED_API_KEY": catalog.api_key}
        argv = [sys.executable, "-c", _SESSION, catalog.uri, str(backups)]
        session = subprocess.Popen(argv, env=env)
        try:
            (backup,) = wait_for(
                lambda: [p for p in backups.glob("*.jsonl") if p.read_text().count("\n") > 4],
                timeout=120,
                what="the session to measure a few points",
            )
        finally:
            session.kill()
            session.wait()
        docs = read_backup(backup)
        uid = docs[0][1]["uid"]
        assert uid in list(catalog.measured)  # TiledWriter had made the run's node, no more
        with pytest.warns(DataWarning, match=f"1 run.* kept in {backups}"):
            catalog.router(backup_directory=backups)
        (replayed,) = catalog.replay(backups)
        assert (replayed.uid, replayed.outcome) == (uid, "stored")
        assert "no stop document" in replayed.detail
        table = catalog.measured[uid]["primary"].read()
        events = [doc for name, doc in docs if name == "event_page"]
        assert list(table["det"].values) == [v for page in events for v in page["data"]["det"]]
        assert list(catalog.measured).count(uid) == 1


def test_a_replay_leaves_a_run_being_measured_alone(tmp_path, devices):
    with TwinCatalog.embedded(tmp_path / "tiled") as catalog:
        replayed = []

        def replay_now() -> None:  # e.g. from another session, while this run goes on
            replayed.extend(catalog.replay(catalog.backup_directory))

        uid, events = run_with_fault(catalog, devices, replay_now, warns=False)
        (during,) = replayed
        assert (during.uid, during.outcome, during.ok) == (uid, "in progress", False)
        check_stored(catalog, uid, events)  # written live, as usual
        assert not list(catalog.backup_directory.iterdir())  # and its backup removed


def test_a_backup_directory_that_cannot_be_written_is_said_at_once(tmp_path):
    (tmp_path / "a-file").write_text("")
    with TwinCatalog.embedded(tmp_path / "tiled") as catalog:
        with pytest.raises(DigitwinInputError, match=r"cannot keep backups of runs in .*a-file"):
            catalog.subscribe(RunEngine({}), backup_directory=tmp_path / "a-file" / "backup")


def test_tiled_refuses_a_run_at_its_start(tmp_path, devices):
    # Subscribed twice, the second router's run is refused by Tiled (409: it exists already).
    with TwinCatalog.embedded(tmp_path / "tiled") as catalog:
        second = catalog.router(backup_directory=tmp_path / "second")
        RE = RunEngine({})
        catalog.subscribe(RE)
        RE.subscribe(second)
        with pytest.warns(DataWarning, match="failed at its 'start' document .*409") as said:
            (uid,) = RE(faulty_run(*devices, lambda: None, {"sample": "ErCo2"}))
        assert uid in second.failed
        # Tiled's refusal is said once, with the backup; not as event_model's advice to update
        # a RunRouter factory, which is not the user's code.
        assert [str(w.message) for w in said if "RunRouter" in str(w.message)] == []
        backup = tmp_path / "second" / f"{uid}.jsonl"
        assert read_backup(backup)[-1][0] == "stop"
        (replayed,) = catalog.replay(backup)
        assert (replayed.uid, replayed.outcome) == (uid, "already stored")
        assert not backup.exists() and list(catalog.measured).count(uid) == 1
