"""What a queue client asks in JSON (bluesky_digitwin.queue), in this process.

A real RE Manager runs them in tests/test_queue_startup.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from bluesky import RunEngine
from digitwin_testing import Status, smooth_table, two_network_fit

from bluesky_digitwin import DigitalTwin
from bluesky_digitwin.buffer import ScanBuffer
from bluesky_digitwin.data import DigitwinInputError
from bluesky_digitwin.plans import ApprovalError, Proposal, approvals, register_twin_source
from bluesky_digitwin.queue import (
    answer_decision,
    pending_decision,
    simulate_twin_grid,
    twin_suggestion,
)


@dataclass
class FixedSource:
    """A twin source holding a twin trained beforehand (a TwinCallback's face)."""

    twin: Any = None
    buffer: ScanBuffer = field(default_factory=lambda: ScanBuffer(("x", "h"), "y"))
    twin_version: int = -1
    status: Status = field(default_factory=lambda: Status(message="nothing measured yet"))


@pytest.fixture(scope="module")
def twin() -> DigitalTwin:
    options = {**two_network_fit(), "provenance": {"run_uids": ["run-a", "run-b"]}}
    return DigitalTwin.fit(smooth_table(), ["x", "h"], "y", **options)


@pytest.fixture(scope="module")
def source(twin) -> FixedSource:
    source = FixedSource(twin=twin, twin_version=0)
    register_twin_source("queue-test", source)
    return source


def test_the_suggestion_is_json_with_the_twin_it_came_from(source, twin):
    answer = twin_suggestion("queue-test", "h", [0.25, 0.5, 1.0], quantity="map")
    assert json.loads(json.dumps(answer)) == answer  # JSON all the way down
    assert answer["twin"]["id"] == twin.id
    assert answer["twin"]["learned_from"] == ["run-a", "run-b"]
    assert [row["step"] for row in answer["suggestion"]["table"]] == [0.25, 0.5, 1.0]
    assert answer["suggestion"]["axis"] == "h"


def test_a_grid_given_as_json_is_simulated_as_a_simulated_run(source):
    RE = RunEngine({})
    starts: list[dict] = []
    RE.subscribe(lambda name, doc: starts.append(doc) if name == "start" else None)
    (uid,) = RE(simulate_twin_grid("queue-test", {"h": [0.5, 1.5], "x": [0.1, 0.5, 0.9]}))
    (start,) = starts
    assert start["uid"] == uid
    assert start["data_origin"] == "simulated"
    assert start["num_points"] == 6


def test_axes_that_are_not_the_twins_features_are_one_clear_error(source):
    RE = RunEngine({})
    documents: list[str] = []
    RE.subscribe(lambda name, doc: documents.append(name))
    with pytest.raises(DigitwinInputError, match=r"one list of values per feature.*\['h', 'x'\]"):
        RE(simulate_twin_grid("queue-test", {"H": [1.0], "x": [0.5]}))
    assert documents == []


def test_a_source_without_a_twin_yet_says_so():
    register_twin_source("queue-test-empty", FixedSource())
    with pytest.raises(DigitwinInputError, match=r"no twin yet.*nothing measured yet"):
        twin_suggestion("queue-test-empty", "h")


def test_a_waiting_decision_is_json_and_answered_by_id():
    assert pending_decision() is None
    with pytest.raises(ApprovalError, match="no plan is waiting"):
        answer_decision("accept")
    proposal = Proposal("adaptive_line_scan", "H", (2.5,), "best score", max_values=1)
    approvals.post(proposal)
    try:
        pending = pending_decision()
        assert json.loads(json.dumps(pending)) == pending
        assert pending["values"] == [2.5] and pending["id"] == proposal.id
        with pytest.raises(ApprovalError, match="give at most 1 value"):
            answer_decision("edit", [1.0, 2.0], pending["id"])
        answer = answer_decision("edit", [3.0], pending["id"])
        assert answer == {"action": "edit", "values": [3.0], "by": "queue"}
        assert approvals.take(proposal).values == (3.0,)
        assert pending_decision() is None  # answered
    finally:
        approvals.withdraw(proposal)
