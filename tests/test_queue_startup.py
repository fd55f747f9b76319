"""The twin-guided plans behind bluesky-queueserver: a real RE Manager, parameters as JSON.

Real parts, started here on loopback: Debian's redis-server, RE Manager (``start-re-manager``)
on the startup module ``bluesky_digitwin.queue_startup``, and a Tiled server
(``TwinCatalog.embedded``) in this process, which the RE worker writes its runs to. The client
is bluesky-queueserver-api, as a GUI or an agent would use it. CI installs and starts them
(``DIGITWIN_REQUIRE_QSERVER=1``); elsewhere the module is skipped without them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from digitwin_testing import wait_for
from tiled.queries import Key

from bluesky_digitwin.tiled import SIMULATED_SPEC, TwinCatalog

pytestmark = pytest.mark.slow

PERMISSIONS = (
    Path(__file__).resolve().parents[1] / "examples" / "queue" / "user_group_permissions.yaml"
)


def _missing() -> list[str]:
    missing = [tool for tool in ("redis-server", "start-re-manager") if not shutil.which(tool)]
    try:
        import bluesky_queueserver_api  # noqa: F401
    except ImportError:
        missing.append("bluesky-queueserver-api")
    return missing


if _missing():
    _why = (
        f"no {', '.join(_missing())}: install Debian's redis-server and "
        "pip install '.[queueserver]' (CI does: .ci/run)"
    )
    if os.environ.get("DIGITWIN_REQUIRE_QSERVER") == "1":
        pytest.fail(f"DIGITWIN_REQUIRE_QSERVER=1 but {_why}", pytrace=False)
    pytest.skip(_why, allow_module_level=True)

from bluesky_queueserver_api import BFunc, BPlan  # noqa: E402
from bluesky_queueserver_api.zmq import REManagerAPI  # noqa: E402

#: RE Manager starts a worker process that imports TensorFlow; a twin trains in another.
TIMEOUT = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def redis(tmp_path_factory) -> Iterator[str]:
    """Debian's redis-server on a free loopback port, nothing kept on disk."""
    port = _free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _redis_answers(port), 30, "redis-server to answer")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Iterator[TwinCatalog]:
    with TwinCatalog.embedded(tmp_path_factory.mktemp("tiled")) as catalog:
        yield catalog


@pytest.fixture(scope="module")
def manager(redis, catalog, tmp_path_factory) -> Iterator[REManagerAPI]:
    """RE Manager on the package's startup module, its environment open."""
    directory = tmp_path_factory.mktemp("re-manager")
    control, info = f"tcp://127.0.0.1:{_free_port()}", f"tcp://127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        "DIGITWIN_TILED_URI": catalog.uri,
        "TILED_API_KEY": catalog.api_key,
        "DIGITWIN_WORK_DIR": str(directory / "twins"),
        "DIGITWIN_QUEUE_FAST": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    command = [
        str(Path(sys.executable).with_name("start-re-manager")),
        "--startup-module",
        "bluesky_digitwin.queue_startup",
        "--keep-re",
        "--existing-plans-devices",
        str(directory / "existing_plans_and_devices.yaml"),
        "--update-existing-plans-devices",
        "ENVIRONMENT_OPEN",
        "--user-group-permissions",
        str(PERMISSIONS),
        "--redis-addr",
        redis,
        "--redis-name-prefix",
        f"digitwin_{uuid.uuid4().hex[:8]}",
        "--zmq-control-addr",
        control,
        "--zmq-info-addr",
        info,
    ]
    log = (directory / "re-manager.log").open("w")
    process = subprocess.Popen(
        command, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    api = REManagerAPI(zmq_control_addr=control, zmq_info_addr=info)
    try:
        wait_for(lambda: _answers(api), 60, "RE Manager to answer")
        assert api.environment_open()["success"]
        api.wait_for_idle(timeout=TIMEOUT)
        assert api.status()["worker_environment_exists"], _tail(directory / "re-manager.log")
        yield api
    finally:
        try:
            api.environment_close()
            api.wait_for_idle(timeout=60)
        except Exception:  # the manager is stopped below in any case
            pass
        api.close()
        process.terminate()
        process.wait(timeout=60)
        log.close()


def _answers(api: REManagerAPI) -> bool:
    try:
        api.status(reload=True)
        return True
    except Exception:  # not listening yet
        return False


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


def _run(api: REManagerAPI, plan: BPlan) -> dict[str, Any]:
    """Queue one plan, run the queue, and return the plan's history item."""
    added = api.item_add(plan)
    assert added["success"], added["msg"]
    return _run_queue(api)


def _start_queue(api: REManagerAPI, attempts: int = 5) -> int:
    """Start the queue until its first plan has started, and return the history's length before.

    RE Manager resets its worker before each plan and gives the worker 0.5 s to answer (a fixed
    timeout of bluesky-queueserver). On a loaded machine the answer can come later: the manager
    logs "Failed to reset RE Worker", goes back to idle and leaves the plan queued, although
    ``queue_start`` said it started. A client that needs the plan run starts the queue again.
    """
    before = api.status(reload=True)["items_in_history"]
    for _ in range(attempts):
        assert api.queue_start()["success"]
        # queue_start returns with the manager starting the queue: idle again with nothing run
        # is the failed reset.
        status = wait_for(
            lambda: _after_start(api.status(reload=True), before), 60, "the queue to start"
        )
        if _plan_started(status, before):
            return before
    raise AssertionError(f"RE Manager did not start the queue in {attempts} attempts")


def _plan_started(status: dict[str, Any], before: int) -> bool:
    """A plan runs, or has run since the history held ``before`` items."""
    return status["running_item_uid"] is not None or status["items_in_history"] > before


def _after_start(status: dict[str, Any], before: int) -> dict[str, Any] | None:
    """RE Manager's status once the queue has left 'starting', else None."""
    started = _plan_started(status, before)
    return status if started or status["manager_state"] == "idle" else None


def _run_queue(api: REManagerAPI) -> dict[str, Any]:
    """Run the queue until its plan is in the history and return that history item."""
    before = _start_queue(api)
    # Not wait_for_idle alone: on a busy machine it can see "idle" before the queue starts.
    wait_for(
        lambda: len(api.history_get(reload=True)["items"]) > before, TIMEOUT, "the plan to end"
    )
    api.wait_for_idle(timeout=TIMEOUT)
    return api.history_get(reload=True)["items"][-1]


def _tagged(container: Any, tag: str) -> set[str]:
    return set(container.search(Key("tag") == tag))


def test_a_guided_scan_sent_as_json_measures_learns_and_simulates_apart(manager, catalog):
    tag = uuid.uuid4().hex
    allowed = manager.plans_allowed()["plans_allowed"]
    assert {"twin_guided_scan", "adaptive_line_scan", "simulate_twin_grid"} <= set(allowed)

    coarse = [1000.0, 20000.0, 50000.0]
    candidates = [5000.0, 10000.0, 25000.0]
    guided = BPlan(
        "twin_guided_scan",
        ["mag"],
        "mag.temperature",
        10.0,
        60.0,
        21,
        "mag.field",
        coarse,
        twin_source="twin",
        slow_feature="H",
        quantity="map",
        candidates=candidates,
        timeout=TIMEOUT,
        md={"tag": tag},
    )
    item = _run(manager, guided)
    assert item["result"]["exit_status"] == "completed", item["result"]
    measured = _tagged(catalog.measured, tag)
    assert len(measured) >= len(coarse)
    # Its decision, as data: one simulated run, linked from the lines measured at the step.
    (decision,) = _tagged(catalog.simulated, tag)
    start = catalog.simulated[decision].metadata["start"]
    assert start["phase"] == "decision" and start["decided_by"] == "twin_guided_scan"
    assert list(catalog.simulated[decision]["decision"].read()["step"].values) == candidates

    # A client asks the twin, without measuring: JSON back.
    started = manager.function_execute(
        BFunc("twin_suggestion", "twin", "H", [5000.0, 10000.0, 25000.0], quantity="map")
    )
    assert started["success"], started["msg"]
    manager.wait_for_completed_task(started["task_uid"], timeout=TIMEOUT)
    answer = manager.task_result(started["task_uid"])["result"]
    assert answer["success"], answer["traceback"]
    suggestion = answer["return_value"]
    # The newest twin: of the coarse lines, or already of the suggested ones too.
    learned = set(suggestion["twin"]["learned_from"])
    assert len(learned) >= len(coarse) and learned <= measured
    assert [row["step"] for row in suggestion["suggestion"]["table"]] == [5000.0, 10000.0, 25000.0]

    # The twin's simulation goes to `simulated`, never among the measured runs.
    simulate = BPlan(
        "simulate_twin_grid",
        "twin",
        {"H": [15000.0, 30000.0], "T": [10.0, 20.0, 30.0, 40.0]},
        md={"tag": tag},
    )
    item = _run(manager, simulate)
    assert item["result"]["exit_status"] == "completed", item["result"]
    (simulated,) = _tagged(catalog.simulated, tag) - {decision}
    assert _tagged(catalog.measured, tag) == measured
    run = catalog.simulated[simulated]
    assert SIMULATED_SPEC in {spec.name for spec in run.specs}
    assert run.metadata["start"]["num_points"] == 8


def _call(api: REManagerAPI, function: BFunc) -> Any:
    """Execute a function in the RE worker's background thread (a plan may be running)."""
    started = api.function_execute(function, run_in_background=True)
    assert started["success"], started["msg"]
    api.wait_for_completed_task(started["task_uid"], timeout=TIMEOUT)
    answer = api.task_result(started["task_uid"])["result"]
    assert answer["success"], answer["traceback"]
    return answer["return_value"]


def test_a_client_edits_the_decision_a_confirmed_plan_waits_for(manager, catalog):
    tag = uuid.uuid4().hex
    coarse = [1000.0, 50000.0]
    guided = BPlan(
        "twin_guided_scan",
        ["mag"],
        "mag.temperature",
        10.0,
        60.0,
        11,
        "mag.field",
        coarse,
        twin_source="twin",
        slow_feature="H",
        quantity="map",
        candidates=[24500.0],
        suggest_kwargs={"tol": 10.0},  # loose: the tiny twin's map must converge at 24.5 kOe
        confirm=True,
        timeout=TIMEOUT,
        md={"tag": tag},
    )
    assert manager.item_add(guided)["success"]
    before = _start_queue(manager)
    # While the plan waits, a client sees what it proposes, with its decision run, and edits it.
    pending = wait_for(
        lambda: _call(manager, BFunc("pending_decision")), TIMEOUT, "the plan's proposal"
    )
    assert pending["plan_name"] == "twin_guided_scan" and pending["values"] == [25500.0]
    assert manager.status()["manager_state"] == "executing_queue"
    (decision,) = _tagged(catalog.simulated, tag)
    assert pending["decision_run"] == decision
    answer = _call(manager, BFunc("answer_decision", "edit", [20000.0, 30000.0], pending["id"]))
    assert answer == {"action": "edit", "values": [20000.0, 30000.0], "by": "queue"}
    wait_for(
        lambda: len(manager.history_get(reload=True)["items"]) > before, TIMEOUT, "the plan to end"
    )
    manager.wait_for_idle(timeout=TIMEOUT)
    item = manager.history_get(reload=True)["items"][-1]
    assert item["result"]["exit_status"] == "completed", item["result"]

    lines = {uid: catalog.measured[uid].metadata["start"] for uid in _tagged(catalog.measured, tag)}
    suggested = sorted(s["slow_axis"]["value"] for s in lines.values() if s["phase"] == "suggested")
    assert suggested == [20000.0, 30000.0]
    assert all(s["approval"] == answer for s in lines.values() if s["phase"] == "suggested")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        # A twin source nobody registered: the plan stops before its first document.
        (
            [["mag"], "mag.temperature", 10, 60, 5, "mag.field", [1000, 2000]],
            {"twin_source": "no-such-twin", "slow_feature": "H"},
            "no twin source named 'no-such-twin'",
        ),
        # A device the startup code does not have: refused before anything moves.
        (
            [["no_such_detector"], "mag.temperature", 10, 60, 5, "mag.field", [1000, 2000]],
            {"twin_source": "twin", "slow_feature": "H"},
            "detectors[0] must be a readable device, got 'no_such_detector'",
        ),
    ],
    ids=["unknown-twin-source", "unknown-device"],
)
def test_bad_names_from_the_queue_are_one_clear_error_and_write_nothing(
    manager, catalog, args, kwargs, message
):
    tag = uuid.uuid4().hex
    plan = BPlan("twin_guided_scan", *args, md={"tag": tag}, **kwargs)
    added = manager.item_add(plan)
    if added["success"]:
        item = _run_queue(manager)
        assert item["result"]["exit_status"] != "completed"
        assert message in item["result"]["msg"], item["result"]["msg"]
        # A failed plan stays at the head of the queue (RE Manager's way): not for the next test.
        manager.queue_clear()
    else:
        assert message in added["msg"], added["msg"]
    assert not _tagged(catalog.measured, tag)
    assert not _tagged(catalog.simulated, tag)
