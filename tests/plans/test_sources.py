"""Twin sources named by string (as a queue names them), and names that are not devices."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bluesky import RunEngine

from bluesky_digitwin.buffer import ScanBuffer
from bluesky_digitwin.callbacks import TwinCallback
from bluesky_digitwin.plans import (
    TwinSourceError,
    adaptive_line_scan,
    register_twin_source,
    registered_twin_sources,
    resolve_twin_source,
    twin_guided_scan,
)
from bluesky_digitwin.sim import Magnetometer

KEYS = {"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"}


@pytest.fixture
def twin() -> Iterator[TwinCallback]:
    cb = TwinCallback(("T", "H"), "M", keys=KEYS, prewarm=False)
    yield cb
    cb.close()


def test_a_registered_source_is_found_by_its_name_and_a_source_is_itself(twin):
    register_twin_source("sources-test", twin)
    assert resolve_twin_source("sources-test") is twin
    assert resolve_twin_source(twin) is twin
    assert registered_twin_sources()["sources-test"] is twin
    other = TwinCallback(("T", "H"), "M", keys=KEYS, prewarm=False)
    try:
        register_twin_source("sources-test", other)  # a name registered again is replaced
        assert resolve_twin_source("sources-test") is other
    finally:
        other.close()


def test_an_unknown_name_is_one_error_that_lists_the_names_there_are(twin):
    register_twin_source("sources-known", twin)
    with pytest.raises(TwinSourceError, match=r"no twin source named 'nope'.*'sources-known'"):
        resolve_twin_source("nope")


def test_what_is_no_twin_source_is_refused():
    buffer = ScanBuffer(("T", "H"), "M", keys=KEYS)  # a buffer, not a source of twins
    with pytest.raises(TypeError, match="no twin source"):
        register_twin_source("buffer", buffer)
    with pytest.raises(TwinSourceError, match="must be a TwinCallback"):
        resolve_twin_source(buffer)
    with pytest.raises(ValueError, match="non-empty string"):
        register_twin_source("  ", ScanBuffer(("T", "H"), "M"))


LINES = {"fast_start": 10.0, "fast_stop": 60.0, "fast_num": 5}


@pytest.mark.parametrize(
    ("make_plan", "message"),
    [
        (
            lambda mag, source: twin_guided_scan(
                [mag],
                mag.temperature,
                **LINES,
                slow_axis=mag.field,
                coarse_values=[1e3, 2e3],
                twin_source="no-such-twin",
                slow_feature="H",
            ),
            "no twin source named 'no-such-twin'",
        ),
        (
            lambda mag, source: twin_guided_scan(
                ["det"],
                mag.temperature,
                **LINES,
                slow_axis=mag.field,
                coarse_values=[1e3, 2e3],
                twin_source=source,
                slow_feature="H",
            ),
            r"detectors\[0\] must be a readable device, got 'det' \(a name that is no device",
        ),
        (
            lambda mag, source: adaptive_line_scan(
                [mag],
                "mag.temperature",
                **LINES,
                slow_axis=mag.field,
                bounds=(1e3, 5e4),
                twin_source=source,
                slow_feature="H",
            ),
            "fast_axis must be a movable device, got 'mag.temperature'",
        ),
        (
            lambda mag, source: adaptive_line_scan(
                mag,
                mag.temperature,
                **LINES,
                slow_axis=mag.field,
                bounds=(1e3, 5e4),
                twin_source=source,
                slow_feature="H",
            ),
            "detectors must be a list of readable devices",
        ),
    ],
    ids=["unknown-source", "detector-name", "axis-name", "one-detector-not-a-list"],
)
def test_a_plan_given_names_that_are_nothing_here_stops_before_its_first_document(
    twin, make_plan, message
):
    RE = RunEngine({})
    documents: list[str] = []
    RE.subscribe(lambda name, doc: documents.append(name))
    mag = Magnetometer(noise=0.0, seconds_per_point=0.0, name="mag")
    with pytest.raises((TypeError, TwinSourceError), match=message):
        RE(make_plan(mag, twin))
    assert documents == []
