"""What a training process is sent and answers (callbacks/training.py), as typed records, and
how its warnings reach the log.

The processes themselves run in tests/callbacks/test_twin_callback.py.
"""

from __future__ import annotations

import json
import logging
import pickle

from bluesky_digitwin.callbacks.training import TrainingJob, TrainingOutcome, relay_warnings


def test_a_job_travels_through_a_pipe_as_it_was_made():
    job = TrainingJob(
        data="data.nc",
        features=("T", "H"),
        target="M",
        options={"n_trials": 2},
        warm_start=None,
        provenance={"run_uids": ["a"]},
        twin_dir="twin-0001",
        result="result.json",
        progress="progress.json",
    )
    assert pickle.loads(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)) == job


def test_an_outcome_is_written_and_read_back(tmp_path):
    path = tmp_path / "result.json"
    outcome = TrainingOutcome(ok=False, error="DigitwinInputError: no", input_error=True)
    outcome.write(path)
    assert TrainingOutcome.read(path) == outcome
    written = TrainingOutcome(ok=True, twin_dir="t", id="x", warnings=("DataWarning: y",))
    written.write(path)
    assert TrainingOutcome.read(path) == written


def test_no_outcome_or_a_foreign_file_reads_as_none(tmp_path):
    path = tmp_path / "result.json"
    assert TrainingOutcome.read(path) is None  # the process died before answering
    path.write_text(json.dumps({"twin_dir": "t"}))  # no "ok": not written by this code
    assert TrainingOutcome.read(path) is None
    path.write_text("{truncated")
    assert TrainingOutcome.read(path) is None


def test_a_warning_the_previous_training_gave_is_not_told_again(caplog):
    """A long session retraining on the same lines is told of their jump once."""
    caplog.set_level(logging.DEBUG, logger="bluesky_digitwin.callbacks.twin")
    jump = "UnresolvedStepWarning: M jumps within one step of T on 4 line(s) (H = 100, ...)"
    worse = "TwinNotBetterWarning: the twin predicts the held-out points no better (RMSE 2)"
    told = relay_warnings(1, (jump, worse), frozenset())
    told = relay_warnings(2, (jump,), told)
    told = relay_warnings(3, (jump, worse), told)  # the other one again: news after a gap
    moved = jump.replace("4 line(s)", "5 line(s)")
    relay_warnings(4, (moved,), told)
    logged = [(r.levelno, r.getMessage().split(":")[1].strip()) for r in caplog.records]
    assert logged == [
        (logging.WARNING, "training #1"),
        (logging.WARNING, "training #1"),
        (logging.DEBUG, "training #2"),
        (logging.DEBUG, "training #3"),
        (logging.WARNING, "training #3"),
        (logging.WARNING, "training #4"),
    ]
