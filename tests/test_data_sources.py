"""Where a search's training data can be read again (bluesky_digitwin/data_sources.py)."""

from __future__ import annotations

import json

import pytest

from bluesky_digitwin.data_sources import ArtifactSource, TiledRunsSource, data_source_from_json
from bluesky_digitwin.errors import DigitwinInputError

RUNS = TiledRunsSource(
    uri="http://127.0.0.1:8000/api/v1/metadata/measured",
    runs=["a", "b"],
    features="T",
    target="M",
)


def test_a_source_is_a_value_whatever_sequences_it_was_given():
    assert RUNS.runs == ("a", "b") and RUNS.features == ("T",)
    assert RUNS == TiledRunsSource(RUNS.uri, ("a", "b"), ("T",), "M")
    assert hash(ArtifactSource("x")) == hash(ArtifactSource("x"))


@pytest.mark.parametrize("source", [RUNS, ArtifactSource("artifact-1")])
def test_sources_survive_the_storages_json(source):
    stored = json.loads(json.dumps(source.to_json()))
    assert stored["kind"] == source.kind
    assert data_source_from_json(stored) == source


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"kind": "s3", "bucket": "b"}, "unknown kind of training data source 's3'"),
        ({"kind": "tiled", "uri": "http://x"}, "the 'tiled' data source is malformed"),
        (["tiled"], "a data source is a mapping with a 'kind', got list"),
    ],
)
def test_a_source_this_code_cannot_read_is_one_clear_error(value, message):
    with pytest.raises(DigitwinInputError, match=message):
        data_source_from_json(value)


def test_workers_elsewhere_read_runs_again_or_nothing():
    from bluesky_digitwin import RemoteWorkers

    assert RemoteWorkers(data_source=RUNS).data_source is RUNS
    with pytest.raises(DigitwinInputError, match="data_source must be runs to read again"):
        RemoteWorkers(data_source=ArtifactSource("a"))
    with pytest.raises(DigitwinInputError, match="data_source must be runs to read again"):
        RemoteWorkers(data_source=RUNS.to_json())
