"""Plan stubs of the twin-guided plans: wait for a twin, compute without blocking, metadata.

A plan must never block the RunEngine: while it waits for a twin to be trained, or for a
computation on a twin (a step suggestion), it yields ``bps.sleep`` messages, so that pause,
resume, abort and Ctrl+C keep working.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator, plan

from bluesky_digitwin.protocols import TwinSource
from bluesky_digitwin.run_documents import MEASURED, SIMULATED_SPEC, Origin

__all__ = ["SIMULATED_SPEC", "TwinSource", "call_in_thread", "wait_for_twin"]


#: Seconds between two looks at a computation running in a thread (they take ~0.1-2 s).
COMPUTE_POLL = 0.05

T = TypeVar("T")


@plan
def wait_for_twin(
    twin_source: TwinSource,
    min_version: int,
    timeout: float | None = 600.0,
    poll: float = 0.5,
) -> MsgGenerator[Any]:
    """Wait, without blocking the RunEngine, for a twin trained on ``min_version`` or later.

    Parameters
    ----------
    twin_source
        A :class:`TwinSource`, e.g. a ``TwinCallback`` subscribed to the RunEngine.
    min_version
        The buffer version the twin must have learned: ``twin_source.buffer.version`` right
        after the last line it must know.
    timeout
        Seconds (wall time, pauses included) to wait at most; ``None`` waits for ever.
    poll
        Seconds between two looks at the source.

    Returns
    -------
    DigitalTwin
        The twin (returned by ``yield from``).

    Raises
    ------
    TimeoutError
        No such twin within ``timeout``.
    RuntimeError
        The source's training failed (``status.state == "error"`` at two looks in a row) or
        the source is closed.

    Notes
    -----
    A source reports ``"error"`` until it takes up the next request: right after a line, the
    error of an earlier training may still show while the training of the new line is about
    to start. So an error counts only when it is still there one ``poll`` later.
    """
    if not (math.isfinite(poll) and poll > 0):
        raise ValueError(f"poll must be a number of seconds > 0, got {poll!r}")
    # A pause while waiting then resumes waiting here, instead of replaying the last line.
    yield from bps.checkpoint()
    start = time.monotonic()
    errors_in_row = 0
    while True:
        # The version first: a twin swapped in between the two reads is then only newer.
        version = twin_source.twin_version
        twin = twin_source.twin
        if twin is not None and version >= min_version:
            return twin
        status = twin_source.status
        state = getattr(status, "state", None)
        message = getattr(status, "message", "") or "no message"
        errors_in_row = errors_in_row + 1 if state == "error" else 0
        if errors_in_row >= 2:
            raise RuntimeError(
                f"the twin's training failed ({message}); no twin has learned buffer version "
                f"{min_version}: fix the cause and call retrain() on the twin's callback, or "
                "run the plan again"
            )
        if state == "closed":
            raise RuntimeError(f"the twin's callback is closed ({message}); no twin will come")
        waited = time.monotonic() - start
        if timeout is not None and waited >= timeout:
            newest = f"the newest knows version {version}" if twin is not None else "no twin yet"
            raise TimeoutError(
                f"no twin trained on buffer version {min_version} or later within {timeout:g} s "
                f"({newest}; status {state}: {message}); give a larger timeout, or a smaller "
                "search to the twin's callback"
            )
        remaining = math.inf if timeout is None else timeout - waited
        yield from bps.sleep(min(poll, remaining))


@plan
def call_in_thread(func: Callable[[], T], poll: float = COMPUTE_POLL) -> MsgGenerator[T]:
    """Run ``func()`` in a thread and wait for it with ``bps.sleep``, so the RunEngine stays free.

    For computations on a twin that take longer than a RunEngine should be held up (a step
    suggestion predicts on many grids: 0.1 s to seconds). If the plan is aborted meanwhile,
    the thread finishes on its own and its result is dropped.

    Returns
    -------
    object
        What ``func()`` returns (returned by ``yield from``); what it raises is raised here.
    """
    future: Future = Future()

    def work() -> None:
        try:
            future.set_result(func())
        except BaseException as exc:  # handed to the plan, which raises it
            future.set_exception(exc)

    threading.Thread(target=work, name="digitwin-plan-compute", daemon=True).start()
    while not future.done():
        yield from bps.sleep(poll)
    return future.result()


# -- metadata ------------------------------------------------------------------------------------


def check_origin(md: Mapping[str, Any] | None, origin: Origin) -> dict[str, Any]:
    """A copy of the user's ``md``, refused if it claims a ``data_origin`` other than ``origin``.

    Measured and simulated runs are kept apart by ``start.data_origin``: a plan that measures
    must not label its runs "simulated", and one that simulates can never label them
    "measured".
    """
    md = dict(md or {})
    claimed = md.get("data_origin", origin)
    if claimed != origin:
        raise ValueError(
            f"md sets data_origin={claimed!r}, but this plan's runs are {origin!r}; the origin "
            "is set by the plan and cannot be overridden"
        )
    specs = md.get("tiled_specs", [])
    if isinstance(specs, str) or not isinstance(specs, (list, tuple)):
        raise ValueError(f"md['tiled_specs'] must be a list of spec names, got {specs!r}")
    if origin == MEASURED and SIMULATED_SPEC in specs:
        raise ValueError(f"measured runs cannot carry the Tiled spec {SIMULATED_SPEC!r}")
    return md
