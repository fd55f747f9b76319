"""The start-document rule and keys shared by plans, callbacks and Tiled (run_documents)."""

from __future__ import annotations

import pytest

from bluesky_digitwin.run_documents import (
    DataOriginError,
    RecordedDecision,
    SlowAxis,
    data_origin_of,
)


@pytest.mark.parametrize(
    ("start", "origin"),
    [
        ({}, "measured"),
        ({"data_origin": " Simulated "}, "simulated"),
        ({"tiled_specs": ["SimulatedRun"]}, "simulated"),
        ({"tiled_specs": [{"name": "SimulatedRun", "version": None}]}, "simulated"),
        ({"data_origin": "simulated", "tiled_specs": ["SimulatedRun"]}, "simulated"),
    ],
)
def test_where_a_run_belongs(start, origin):
    assert data_origin_of(start) == origin


@pytest.mark.parametrize(
    ("start", "match"),
    [
        ({"uid": "u1", "data_origin": "twin"}, "run u1 has data_origin 'twin'"),
        (
            {"data_origin": "measured", "tiled_specs": "SimulatedRun"},
            "a run is either measured or simulated",
        ),
    ],
)
def test_a_run_that_breaks_the_rule_is_refused(start, match):
    with pytest.raises(DataOriginError, match=match):
        data_origin_of(start)


def test_a_slow_axis_travels_as_a_dict():
    axis = SlowAxis("mag_field", "H", 25000.0)
    assert SlowAxis.from_start({"slow_axis": axis.to_doc()}) == axis
    assert SlowAxis.from_start({}) is None
    assert SlowAxis.from_start({"slow_axis": {"name": "m", "feature": "H"}}) is None


def test_a_guided_scans_decision_is_read_back():
    start = {
        "suggested_step": {"axis": "H", "value": 5000.0, "units": "Oe"},
        "guided_by": {"message": "converged at 5000 Oe"},
        "decision_run": "run-d",
    }
    assert RecordedDecision.from_start(start) == RecordedDecision(
        axis="H", step=5000.0, step_units="Oe", message="converged at 5000 Oe", decision_run="run-d"
    )
    none_converged = {"suggested_step": {"axis": "H", "value": None, "units": "Oe"}}
    assert RecordedDecision.from_start(none_converged).step is None


def test_an_adaptive_scans_decision_is_read_back():
    start = {
        "slow_axis": {"name": "mag_field", "feature": "H", "value": 30000.0},
        "decision": {
            "value": 25000.0,
            "score": 0.5,
            "criterion": "disagreement",
            "units": "emu",
            "decision_run": "run-a",
        },
    }
    recorded = RecordedDecision.from_start(start)
    assert recorded == RecordedDecision(
        axis="H",
        value=25000.0,
        score=0.5,
        criterion="disagreement",
        score_units="emu",
        decision_run="run-a",
    )


@pytest.mark.parametrize(
    "start",
    [
        {},
        {"decision": {"value": 1.0}},  # no slow axis: no axis to name
        {"slow_axis": {"name": "m", "feature": "H", "value": 1.0}, "decision": {"value": "x"}},
    ],
)
def test_no_decision_is_none(start):
    assert RecordedDecision.from_start(start) is None
