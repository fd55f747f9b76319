"""What a training process is sent and answers (callbacks/training.py), as typed records.

The processes themselves run in tests/callbacks/test_twin_callback.py.
"""

from __future__ import annotations

import json
import pickle

from bluesky_digitwin.callbacks.training import TrainingJob, TrainingOutcome


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
