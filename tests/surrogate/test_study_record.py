"""A search's record in its study, as workers elsewhere read it (surrogate/study_record.py)."""

from __future__ import annotations

import json
from dataclasses import replace

from bluesky_digitwin import SearchSpace, TrainConfig
from bluesky_digitwin.data_sources import ArtifactSource, TiledRunsSource
from bluesky_digitwin.surrogate.study_record import ArtifactLocation, StudyRecord

RECORD = StudyRecord(
    space=SearchSpace(n_layers=(2, 4), batch_sizes=(16, 32), activations=("relu", "silu")),
    train_config=TrainConfig(max_epochs=20),
    holdout="lines",
    seed=3,
    scaling={"x_mean": [0.0], "x_std": [1.0], "y_mean": 0.0, "y_std": 1.0},
    data=ArtifactSource("a1"),
    artifacts=ArtifactLocation("filesystem", "/shared/models"),
    custom_sampler_or_pruner=True,
    n_trials=30,
)


def test_a_record_survives_the_storages_json():
    stored = json.loads(json.dumps(RECORD.to_json()))  # as Optuna keeps user attributes
    assert stored["format"] == 1 and stored["space"]["n_layers"] == [2, 4]
    assert StudyRecord.from_json(stored) == RECORD
    # The layout studies already keep (format 1) is unchanged by the typed record.
    assert stored["data"] == {"kind": "artifact", "artifact_id": "a1"}
    assert stored["artifacts"] == {"kind": "filesystem", "path": "/shared/models"}


def test_a_record_of_runs_in_tiled_and_another_store_survives_too():
    runs = TiledRunsSource(
        uri="http://127.0.0.1:8000/api/v1/metadata/measured",
        runs=["u1", "u2"],
        features=["T", "H"],
        target="M",
        keys={"M": "mag_moment"},
    )
    record = replace(RECORD, data=runs, artifacts=ArtifactLocation("S3ArtifactStore"))
    stored = json.loads(json.dumps(record.to_json()))
    assert stored["artifacts"] == {"kind": "S3ArtifactStore"}
    again = StudyRecord.from_json(stored)
    assert again == record and again.data.runs == ("u1", "u2")


def test_a_study_without_a_record_this_code_reads_has_none():
    assert StudyRecord.from_json(None) is None
    assert StudyRecord.from_json({**RECORD.to_json(), "format": 2}) is None
    assert StudyRecord.from_json("digitwin") is None
