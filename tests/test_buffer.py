"""Tests of ScanBuffer: real RunEngine runs, synthetic documents, bad documents, threads."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import event_model
import numpy as np
import pytest
import xarray as xr
from bluesky import RunEngine
from bluesky.plans import scan
from bluesky.preprocessors import SupplementalData
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ophyd.sim import det4, motor1, motor2
from ophyd_async import sim as async_sim
from ophyd_async.core import init_devices

from bluesky_digitwin.buffer import DataKeyError, ScanBuffer
from bluesky_digitwin.data import DataWarning, DigitwinInputError
from bluesky_digitwin.sim import FirstOrderMagnet, Magnetometer
from bluesky_digitwin.sim.async_devices import AsyncMagnetometer

Document = tuple[str, dict[str, Any]]
FIELDS = (1000.0, 5000.0, 20000.0)
MAG_KEYS = {"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"}


@pytest.fixture
def RE() -> RunEngine:
    return RunEngine({})


@pytest.fixture
def mag() -> Magnetometer:
    return Magnetometer(FirstOrderMagnet(), noise=0.0, name="mag")


def data_warnings(record: Iterable[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


def synthetic_run(
    rows: Sequence[dict[str, Any]],
    *,
    md: dict[str, Any] | None = None,
    units: dict[str, str] | None = None,
    configuration: dict[str, Any] | None = None,
    baseline: dict[str, Any] | None = None,
    stream: str = "primary",
) -> list[Document]:
    """The documents of one run whose ``stream`` events hold ``rows`` (keys may vary by row).

    The descriptor declares the keys of the first row; later rows may lack some (bad events).
    """
    bundle = event_model.compose_run(metadata=md or {})
    docs: list[Document] = [("start", bundle.start_doc)]
    units = units or {}

    def keys_of(values: dict[str, Any]) -> dict[str, Any]:
        return {
            k: {"source": "test", "dtype": "number", "shape": [], "units": units.get(k, "")}
            for k in values
        }

    if baseline is not None:
        base = bundle.compose_descriptor(name="baseline", data_keys=keys_of(baseline))
        docs.append(("descriptor", base.descriptor_doc))
        docs.append(
            ("event", base.compose_event(data=baseline, timestamps=dict.fromkeys(baseline, 0)))
        )
    config = {}
    if configuration is not None:
        config = {
            "det": {
                "data": configuration,
                "timestamps": dict.fromkeys(configuration, 0.0),
                "data_keys": keys_of(configuration),
            }
        }
    desc = bundle.compose_descriptor(
        name=stream, data_keys=keys_of(rows[0]) if rows else {}, configuration=config
    )
    docs.append(("descriptor", desc.descriptor_doc))
    for row in rows:
        event = desc.compose_event(data=row, timestamps=dict.fromkeys(row, 0.0), validate=False)
        docs.append(("event", event))
    docs.append(("stop", bundle.compose_stop()))
    return docs


def feed(buffer: ScanBuffer, docs: Iterable[Document]) -> None:
    for name, doc in docs:
        buffer(name, doc)


# -- real RunEngine runs ------------------------------------------------------------------------


def isofield_plan(mag: Magnetometer, *, md_field: bool, detectors=None):
    """M(T) line scans at several fixed fields, the field in the metadata or not."""
    for field in FIELDS:
        yield from bps.mv(mag.field, field)
        md = {"H": field, "units": {"H": "Oe"}} if md_field else {}
        yield from scan(detectors or [mag.moment], mag.temperature, 10, 60, 6, md=md)


def check_isofield_map(buffer: ScanBuffer, mag: Magnetometer) -> None:
    ds = buffer.snapshot()
    assert ds.sizes["point"] == buffer.n_points == 18
    np.testing.assert_array_equal(ds["H"], np.repeat(FIELDS, 6))
    np.testing.assert_allclose(ds["T"], np.tile(np.linspace(10, 60, 6), 3))
    np.testing.assert_allclose(ds["M"], mag.material.moment(ds["T"].values, ds["H"].values))
    assert {name: ds[name].attrs["units"] for name in ("T", "H", "M")} == {
        "T": "K",
        "H": "Oe",
        "M": "emu",
    }
    assert len(buffer.run_uids) == 3
    assert list(dict.fromkeys(ds["run_uid"].values.tolist())) == buffer.run_uids
    np.testing.assert_array_equal(ds["seq_num"], np.tile(np.arange(1, 7), 3))
    assert np.all(np.diff(ds["time"].values) >= 0)
    assert ds.attrs["data_origin"] == "measured"


def test_line_scans_with_the_field_in_the_start_metadata(RE, mag):
    buffer = ScanBuffer(("T", "H"), "M", keys={"T": "mag_temperature", "M": "mag_moment"})
    RE.subscribe(buffer)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        RE(isofield_plan(mag, md_field=True))
    assert data_warnings(record) == []
    check_isofield_map(buffer, mag)


def test_line_scans_with_the_field_in_the_baseline(RE, mag):
    RE.preprocessors.append(SupplementalData(baseline=[mag.field]))
    buffer = ScanBuffer(("T", "H"), "M", keys=MAG_KEYS)
    RE.subscribe(buffer)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        RE(isofield_plan(mag, md_field=False))
    assert data_warnings(record) == []
    check_isofield_map(buffer, mag)  # the units of H come from the baseline's data keys


def test_line_scans_with_the_whole_device_as_detector(RE, mag):
    buffer = ScanBuffer(("T", "H"), "M", keys=MAG_KEYS)
    RE.subscribe(buffer)
    RE(isofield_plan(mag, md_field=False, detectors=[mag]))
    check_isofield_map(buffer, mag)


def test_a_line_scan_without_the_field_anywhere_is_skipped_with_one_warning(RE, mag):
    buffer = ScanBuffer(("T", "H"), "M", keys=MAG_KEYS)
    RE.subscribe(buffer)
    with pytest.warns(DataWarning, match="lack 'mag_field'") as record:
        RE(scan([mag.moment], mag.temperature, 10, 60, 6))
    assert len(data_warnings(record)) == 1
    assert buffer.n_points == 0
    assert list(buffer.skipped.values()) == [{"mag_field": 6}]


def test_simulated_runs_are_ignored_unless_asked_for(RE, mag):
    measured = ScanBuffer(("T", "H"), "M", keys=MAG_KEYS)
    everything = ScanBuffer(("T", "H"), "M", keys=MAG_KEYS, include_simulated=True)
    RE.subscribe(measured)
    RE.subscribe(everything)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        RE(scan([mag], mag.temperature, 10, 60, 4, md={"data_origin": "simulated"}))
    assert data_warnings(record) == []  # ignoring a simulated run is not a problem
    assert measured.n_points == 0 and measured.run_uids == []
    assert everything.n_points == 4
    assert everything.snapshot().attrs["data_origin"] == "simulated"
    RE(scan([mag], mag.temperature, 10, 60, 4))
    assert measured.n_points == 4
    assert measured.snapshot().attrs["data_origin"] == "measured"
    assert everything.snapshot().attrs["data_origin"] == "mixed"


@pytest.mark.parametrize(
    "md",
    [
        {"data_origin": "Simulated "},
        {"data_origin": " SIMULATED\t"},
        {"tiled_specs": "SimulatedRun"},
        {"tiled_specs": [{"name": "SimulatedRun", "version": None}]},
    ],
)
def test_simulated_runs_are_known_however_they_are_marked(RE, mag, md):
    """The Tiled router stores these in `simulated`; the buffer must not learn from them."""
    measured = ScanBuffer(("T", "H"), "M", keys=MAG_KEYS)
    RE.subscribe(measured)
    RE(scan([mag], mag.temperature, 10, 60, 4, md=md))
    assert measured.n_points == 0
    RE(scan([mag], mag.temperature, 10, 60, 4, md={"data_origin": "Measured"}))
    assert measured.n_points == 4


def test_a_run_of_unknown_origin_is_not_learned_from(RE, mag):
    measured = ScanBuffer(("T", "H"), "M", keys=MAG_KEYS)
    RE.subscribe(measured)
    with pytest.warns(DataWarning, match="it must be 'measured' or 'simulated'"):
        RE(scan([mag], mag.temperature, 10, 60, 4, md={"data_origin": "twin"}))
    assert measured.n_points == 0
    # Measured by its word, simulated by its spec: Tiled refuses it, and nothing learns from it.
    contradictory = {"data_origin": "measured", "tiled_specs": ["SimulatedRun"]}
    with pytest.warns(DataWarning, match="a run is either measured or simulated"):
        RE(scan([mag], mag.temperature, 10, 60, 4, md=contradictory))
    assert measured.n_points == 0


def test_another_stream_can_be_chosen(RE, mag):
    buffer = ScanBuffer(("T", "H"), "M", keys=MAG_KEYS, stream="sweep")

    def plan():
        yield from bps.open_run()
        for T in (10.0, 20.0, 30.0):
            yield from bps.mv(mag.temperature, T)
            yield from bps.trigger_and_read([mag], name="sweep")
        yield from bps.trigger_and_read([mag])  # primary: not wanted
        yield from bps.close_run()

    RE(plan(), buffer)
    np.testing.assert_array_equal(buffer.snapshot()["T"], [10.0, 20.0, 30.0])


# -- standard plans, names from the hints -------------------------------------------------------


@pytest.fixture(params=["ophyd", "ophyd-async"])
def magnetometer(request, RE) -> tuple[Any, str]:
    """A noiseless magnetometer of either library, and its data keys' prefix."""
    if request.param == "ophyd":
        return Magnetometer(FirstOrderMagnet(), noise=0.0, name="mag"), "mag_"
    with init_devices():  # after the RunEngine, whose event loop connects the device
        amag = AsyncMagnetometer(FirstOrderMagnet(), noise=0.0)
    return amag, "amag-"


def check_moments(buffer: ScanBuffer, T: str, H: str | float, M: str) -> xr.Dataset:
    """The buffer holds the material's moment at each point, with units; ``H`` is the name of
    the field, or its value when it is not a feature."""
    ds = buffer.snapshot()
    expected = FirstOrderMagnet().moment(ds[T].values, ds[H].values if isinstance(H, str) else H)
    np.testing.assert_allclose(ds[M], expected, rtol=1e-12)
    assert {ds[name].attrs["units"] for name in (T, M)} == {"K", "emu"}
    return ds


PLANS = {
    # name: (plan of (magnetometer), expected temperatures, fields or None if not a feature)
    "scan": (lambda m: bp.scan([m], m.temperature, 10, 60, 6), np.linspace(10, 60, 6), None),
    "rel_scan": (lambda m: bp.rel_scan([m], m.temperature, -10, 10, 3), [20, 30, 40], None),
    "list_scan": (lambda m: bp.list_scan([m], m.temperature, [40, 10, 25]), [40, 10, 25], None),
    "grid_scan": (
        lambda m: bp.grid_scan([m], m.temperature, 10, 60, 3, m.field, 0, 5e4, 2),
        [10, 10, 35, 35, 60, 60],
        [0, 5e4, 0, 5e4, 0, 5e4],
    ),
    "grid_scan snaking": (
        lambda m: bp.grid_scan([m], m.temperature, 10, 60, 3, m.field, 0, 5e4, 2, snake_axes=True),
        [10, 10, 35, 35, 60, 60],
        [0, 5e4, 5e4, 0, 0, 5e4],
    ),
}


@pytest.mark.parametrize("plan_name", list(PLANS))
def test_standard_plans_name_features_and_target(RE, magnetometer, plan_name):
    mag, prefix = magnetometer
    make_plan, temperatures, fields = PLANS[plan_name]
    RE(bps.mv(mag.temperature, 30.0, mag.field, 5000.0))
    buffer = ScanBuffer()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        RE(make_plan(mag), buffer)
    assert data_warnings(record) == []
    T, H, M = (f"{prefix}{name}" for name in ("temperature", "field", "moment"))
    features = (T,) if fields is None else (T, H)
    assert (buffer.features, buffer.target) == (features, M)
    assert buffer.layout.inferred and buffer.keys == {name: name for name in (*features, M)}
    ds = check_moments(buffer, T, 5000.0 if fields is None else H, M)
    np.testing.assert_allclose(ds[T], temperatures)
    if fields is not None:
        np.testing.assert_array_equal(ds[H], fields)


def test_count_with_a_baseline_names_the_features_and_takes_the_target(RE, magnetometer):
    """count scans no motor: the features are named (here: the baseline's keys)."""
    mag, prefix = magnetometer
    T, H, M = (f"{prefix}{name}" for name in ("temperature", "field", "moment"))
    RE.preprocessors.append(SupplementalData(baseline=[mag.temperature, mag.field]))
    buffer = ScanBuffer((T, H))
    for temperature, field in ((20.0, 1e3), (40.0, 2e4)):
        RE(bps.mv(mag.temperature, temperature, mag.field, field))
        RE(bp.count([mag], 2), buffer)
    assert buffer.target == M and buffer.features == (T, H)
    ds = check_moments(buffer, T, H, M)
    np.testing.assert_array_equal(ds[T], [20.0, 20.0, 40.0, 40.0])
    np.testing.assert_array_equal(ds[H], [1e3, 1e3, 2e4, 2e4])
    assert ds[H].attrs["units"] == "Oe"  # from the baseline's data keys


def test_count_without_features_is_one_clear_error_listing_the_keys(RE, magnetometer):
    mag, prefix = magnetometer
    RE.preprocessors.append(SupplementalData(baseline=[mag.field]))
    buffer = ScanBuffer()
    with pytest.warns(DataWarning) as record:
        (uid,) = RE(bp.count([mag], 3), buffer)
    (message,) = data_warnings(record)
    assert "scans no motor" in message and "name them" in message
    assert f"Data keys of the run: {prefix}moment (stream 'primary')" not in message  # all
    assert f"{prefix}field" in message.split("; ")[-1] and "('baseline')" in message
    error = buffer.key_error
    assert isinstance(error, DataKeyError) and isinstance(error, ValueError)
    assert str(error) == message and error.run_uid == uid
    assert {f"{prefix}moment", f"{prefix}temperature", f"{prefix}field"} <= set(error.data_keys)
    assert buffer.layout is None and buffer.n_points == 0
    # The next run that says what it scans gives the names, and clears the error.
    RE(bp.scan([mag], mag.temperature, 10, 20, 3), buffer)
    assert buffer.features == (f"{prefix}temperature",) and buffer.n_points == 3
    assert buffer.key_error is None


def test_names_taken_from_the_first_run_hold_for_later_runs(RE, magnetometer):
    """A 2-D grid names T and H; later 1-D line scans give H from their events."""
    mag, prefix = magnetometer
    T, H, M = (f"{prefix}{name}" for name in ("temperature", "field", "moment"))
    buffer = ScanBuffer()
    RE(bp.grid_scan([mag], mag.temperature, 10, 60, 3, mag.field, 0, 5e4, 2), buffer)
    for field in (1e4, 3e4):
        RE(bps.mv(mag.field, field))
        RE(bp.scan([mag], mag.temperature, 10, 60, 4), buffer)
    assert buffer.features == (T, H) and len(buffer.run_uids) == 3
    ds = check_moments(buffer, T, H, M)
    np.testing.assert_array_equal(ds[H][6:], [1e4] * 4 + [3e4] * 4)


def test_names_given_are_mapped_and_the_rest_comes_from_the_hints(RE, magnetometer):
    mag, prefix = magnetometer
    buffer = ScanBuffer(("T", "H"), keys={"T": f"{prefix}temperature", "H": f"{prefix}field"})
    RE(bp.grid_scan([mag], mag.temperature, 10, 60, 3, mag.field, 0, 5e4, 2), buffer)
    assert (buffer.features, buffer.target) == (("T", "H"), f"{prefix}moment")
    check_moments(buffer, "T", "H", f"{prefix}moment")


def test_ophyd_sim_grid_scan_trains_on_det4_over_two_motors(RE):
    """The plain ophyd.sim example: bp.grid_scan([det4], motor1, ..., motor2, ...)."""
    buffer = ScanBuffer()
    RE(bp.grid_scan([det4], motor1, -1, 1, 5, motor2, -1, 1, 4), buffer)
    assert (buffer.features, buffer.target) == (("motor1", "motor2"), "det4")
    ds = buffer.snapshot()
    assert ds.sizes["point"] == 20 and np.ptp(ds["det4"].values) > 0


def test_a_scan_mixing_ophyd_async_and_ophyd_devices_is_learned(RE):
    """An ophyd-async instrument's temperature and reading, an ophyd motor's position."""
    with init_devices():
        amag = AsyncMagnetometer(FirstOrderMagnet(), noise=0.0)
    buffer = ScanBuffer()
    RE(bp.grid_scan([amag], amag.temperature, 10, 60, 3, motor1, 0, 1, 2), buffer)
    assert (buffer.features, buffer.target) == (("amag-temperature", "motor1"), "amag-moment")
    ds = check_moments(buffer, "amag-temperature", 0.0, "amag-moment")
    np.testing.assert_array_equal(ds["motor1"], [0, 1] * 3)


def test_several_hinted_detector_fields_are_one_clear_error(RE):
    """ophyd_async.sim's point detector hints three channels: the target must be named."""
    pattern = async_sim.PatternGenerator()
    with init_devices():
        stage = async_sim.SimStage(pattern)
        pdet = async_sim.SimPointDetector(pattern)
    for motor in (stage.x, stage.y):  # instant moves
        RE(bps.mv(motor.velocity, 0))
    buffer = ScanBuffer()
    with pytest.warns(DataWarning, match="several fields") as record:
        RE(bp.grid_scan([pdet], stage.x, -1, 1, 3, stage.y, -1, 1, 3), buffer)
    (message,) = data_warnings(record)
    channels = [f"pdet-channel-{i}-value" for i in (1, 2, 3)]
    assert all(channel in message for channel in channels)
    assert "ScanBuffer(target='pdet-channel-1-value')" in message
    assert buffer.n_points == 0

    named = ScanBuffer(target="pdet-channel-2-value")
    RE(bp.grid_scan([pdet], stage.x, -1, 1, 3, stage.y, -1, 1, 3), named)
    assert named.features == ("stage-x", "stage-y")  # the motors' readbacks: dashed keys
    assert named.n_points == 9 and named.target == "pdet-channel-2-value"


def test_names_that_are_no_data_key_are_one_clear_error_listing_the_keys(RE, magnetometer):
    mag, prefix = magnetometer
    buffer = ScanBuffer(("T", "H"), "M")
    with pytest.warns(DataWarning) as record:
        RE(bp.scan([mag], mag.temperature, 10, 60, 4), buffer)
    (message,) = data_warnings(record)
    assert "lack 'T', 'H', 'M' (the target 'M')" in message
    assert f"it scans {prefix}temperature and its detectors hint {prefix}moment" in message
    assert f"Data keys of the run: {prefix}field" in message
    assert buffer.key_error.data_keys == tuple(sorted(buffer.key_error.data_keys))
    assert f"{prefix}moment" in buffer.key_error.data_keys
    assert buffer.n_points == 0 and list(buffer.skipped.values()) == [{"T": 4}]


# -- where a feature comes from ----------------------------------------------------------------


def test_lookup_order_event_baseline_configuration_start():
    buffer = ScanBuffer(("T", "H"), "M")
    rows = [{"T": 1.0, "M": 1.0}, {"T": 2.0, "H": 4.0, "M": 2.0}]
    everywhere = {"md": {"H": 1.0}, "configuration": {"H": 3.0}, "baseline": {"H": 2.0}}
    feed(buffer, synthetic_run(rows, **everywhere))  # baseline, then the event's own value
    feed(buffer, synthetic_run(rows[:1], md={"H": 1.0}, configuration={"H": 3.0}))
    feed(buffer, synthetic_run(rows[:1], md={"H": 1.0}))
    np.testing.assert_array_equal(buffer.snapshot()["H"], [2.0, 4.0, 3.0, 1.0])


def test_the_target_is_read_from_the_event_only():
    buffer = ScanBuffer(("T",), "M")
    with pytest.warns(DataWarning, match="the target 'M'"):
        feed(buffer, synthetic_run([{"T": 1.0}], md={"M": 5.0}, baseline={"M": 5.0}))
    assert buffer.n_points == 0


def test_units_from_data_keys_beat_the_start_metadata_and_conflicts_warn():
    buffer = ScanBuffer(("T", "H"), "M")
    md = {"H": 5.0, "units": {"T": "mK", "H": "Oe"}}
    feed(buffer, synthetic_run([{"T": 1.0, "M": 1.0}], md=md, units={"T": "K", "M": "emu"}))
    units = {name: buffer.snapshot()[name].attrs.get("units") for name in ("T", "H", "M")}
    assert units == {"T": "K", "H": "Oe", "M": "emu"}
    with pytest.warns(DataWarning, match="'T' in 'mK'"):
        feed(buffer, synthetic_run([{"T": 2.0, "M": 1.0}], md=md, units={"T": "mK"}))
    assert buffer.snapshot()["T"].attrs["units"] == "K"
    assert buffer.n_points == 2  # the values are kept as they are


def test_empty_snapshot_has_the_variables():
    ds = ScanBuffer(("T", "H"), "M").snapshot()
    assert set(ds.data_vars) == {"T", "H", "M"}
    assert set(ds.coords) == {"run_uid", "time", "seq_num"}
    assert ds.sizes["point"] == 0
    assert ds.attrs["data_origin"] == "none"


# -- events and pages --------------------------------------------------------------------------


def test_events_missing_a_key_are_skipped_with_one_warning():
    buffer = ScanBuffer(("T", "H"), "M")
    rows = [{"T": float(i), "H": 0.0, "M": float(i)} for i in range(10)]
    for i in (2, 5, 7):
        del rows[i]["H"]
    rows[8]["M"] = "overload"  # not a number: skipped too, under its own key
    with pytest.warns(DataWarning) as record:
        feed(buffer, synthetic_run(rows))
    messages = data_warnings(record)
    assert len(messages) == 2
    assert "lack 'H'" in messages[0] and "'M'" in messages[1]
    np.testing.assert_array_equal(buffer.snapshot()["T"], [0, 1, 3, 4, 6, 9])
    ((_, counts),) = buffer.skipped.items()
    assert counts == {"H": 3, "M": 1}


def test_event_pages_give_the_same_points_as_events():
    start, descriptor, *events, stop = synthetic_run(
        [{"T": float(i), "H": 2.0, "M": i**2} for i in range(7)]
    )
    by_event, by_page = ScanBuffer(("T", "H"), "M"), ScanBuffer(("T", "H"), "M")
    feed(by_event, [start, descriptor, *events, stop])
    pages = [
        ("event_page", event_model.pack_event_page(*(doc for _, doc in part)))
        for part in (events[:3], events[3:])
    ]
    feed(by_page, [start, descriptor, *pages, stop])
    assert by_page.version == 2
    xr.testing.assert_identical(
        by_page.snapshot().drop_attrs(deep=False), by_event.snapshot().drop_attrs(deep=False)
    )
    assert by_page.snapshot().sizes["point"] == 7


@pytest.mark.parametrize("column", ["uid", "time", "seq_num"])
def test_a_ragged_page_is_refused_and_taken_when_whole_without_its_short_column(column):
    """Regression (tests/test_hostile_documents.py, a stored falsifying example): a page whose
    ``column`` is one short is refused; the same page without that column (a page may lack
    uid, time or seq_num, as an event may) is whole, and each row is its own event's values."""
    start, descriptor, *events, stop = synthetic_run(
        [{"T": float(i), "M": 10.0 + i} for i in (1, 2)], md={"H": 0.0}
    )
    page = event_model.pack_event_page(*(doc for _, doc in events))
    ragged = {**page, column: page[column][:-1]}
    buffer = ScanBuffer(("T", "H"), "M")
    feed(buffer, [start, descriptor])
    with pytest.warns(DataWarning, match=f"differ in length.*{column}: 1"):
        buffer("event_page", ragged)
    assert buffer.n_points == 0
    feed(buffer, [("event_page", {k: v for k, v in ragged.items() if k != column}), stop])
    ds = buffer.snapshot()
    assert ds["T"].values.tolist() == [1.0, 2.0]
    assert ds["M"].values.tolist() == [11.0, 12.0]
    assert ds["seq_num"].values.tolist() == ([-1, -1] if column == "seq_num" else [1, 2])


def test_baseline_in_an_event_page():
    docs = synthetic_run([{"T": 1.0, "M": 1.0}], baseline={"H": 7.0})
    docs = [
        ("event_page", event_model.pack_event_page(doc))
        if name == "event" and "H" in doc["data"]
        else (name, doc)
        for name, doc in docs
    ]
    buffer = ScanBuffer(("T", "H"), "M")
    feed(buffer, docs)
    np.testing.assert_array_equal(buffer.snapshot()["H"], [7.0])


def test_version_counts_additions_and_clear_keeps_a_run_going():
    buffer = ScanBuffer(("T",), "M")
    docs = synthetic_run([{"T": float(i), "M": 0.0} for i in range(4)])
    feed(buffer, docs[:4])  # start, descriptor, two events
    assert (buffer.n_points, buffer.version) == (2, 2)
    buffer.clear()
    assert (buffer.n_points, buffer.version, buffer.run_uids) == (0, 3, [])
    feed(buffer, docs[4:])
    np.testing.assert_array_equal(buffer.snapshot()["T"], [2.0, 3.0])
    assert buffer.version == 5


# -- runs read back from storage (replay) -------------------------------------------------------


def as_stored(docs: Sequence[Document], n_events: int | None = None) -> list[Document]:
    """``docs`` as Tiled gives them back (tiled.run_documents): the same start, descriptors and
    stop, events with the same seq_num, time and data but uids of their own (Tiled keeps none).
    ``n_events``: only the first so many events and no stop (a run stored in part)."""
    stored: list[Document] = []
    events = 0
    for name, doc in docs:
        if name == "event":
            events += 1
            if n_events is not None and events > n_events:
                continue
            doc = {**doc, "uid": f"{doc['descriptor']}/{events}"}
        elif name == "stop" and n_events is not None:
            continue
        stored.append((name, doc))
    return stored


def point_ids(buffer: ScanBuffer) -> list[tuple[str, int]]:
    ds = buffer.snapshot()
    return list(zip(ds["run_uid"].values.tolist(), ds["seq_num"].values.tolist(), strict=True))


@pytest.fixture
def live_runs(RE, mag) -> list[list[Document]]:
    """The documents of two real line scans, as the RunEngine emitted them."""
    runs: list[list[Document]] = []
    for field in FIELDS[:2]:
        RE(bps.mv(mag.field, field))
        docs: list[Document] = []
        RE(
            scan([mag], mag.temperature, 10, 60, 6),
            lambda name, doc, docs=docs: docs.append((name, doc)),
        )
        runs.append(docs)
    return runs


def test_replayed_runs_give_the_points_live_runs_give(live_runs):
    live, replayed = (
        ScanBuffer(("T", "H"), "M", keys=MAG_KEYS),
        ScanBuffer(("T", "H"), "M", keys=MAG_KEYS),
    )
    for docs in live_runs:
        feed(live, docs)
        replayed.replay(as_stored(docs))
    xr.testing.assert_identical(
        replayed.snapshot().drop_attrs(deep=False), live.snapshot().drop_attrs(deep=False)
    )


def test_a_run_replayed_then_seen_live_is_counted_once(live_runs):
    whole, part = live_runs
    buffer = ScanBuffer(("T", "H"), "M", keys=MAG_KEYS)
    buffer.replay(as_stored(whole))
    buffer.replay(as_stored(part, n_events=4))  # stored in part: 4 events, no stop yet
    assert buffer.n_points == 6 + 4
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        feed(buffer, whole)  # all of it was stored: nothing new
        feed(buffer, part)  # only the 2 points storage did not have
    assert data_warnings(record) == []
    ids = point_ids(buffer)
    assert len(ids) == len(set(ids)) == 12
    assert buffer.run_uids == [whole[0][1]["uid"], part[0][1]["uid"]]
    feed(buffer, part)  # and again: nothing
    assert buffer.n_points == 12


def test_a_run_seen_live_then_replayed_is_counted_once(live_runs):
    whole, running = live_runs
    buffer = ScanBuffer(("T", "H"), "M", keys=MAG_KEYS)
    feed(buffer, whole)
    feed(buffer, running[:5])  # start, descriptor(s) and the first events: still running
    n = buffer.n_points
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        buffer.replay(as_stored(whole))
        buffer.replay(as_stored(running))  # stored whole, stop included: the live run wins
        assert buffer.n_points == n
        feed(buffer, running[5:])  # the rest of the live run is taken as ever
    assert data_warnings(record) == []
    ids = point_ids(buffer)
    assert len(ids) == len(set(ids)) == 12


def test_a_point_measured_twice_after_a_pause_is_kept_twice_across_the_boundary():
    """After a rewind the RunEngine repeats seq_nums with new event uids: both are points."""
    bundle = event_model.compose_run()
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={k: {"source": "s", "dtype": "number", "shape": []} for k in ("T", "M")},
    )
    live: list[Document] = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    for i, seq_num in enumerate((1, 2, 3, 2, 3, 4)):  # rewound to the checkpoint before 2
        data = {"T": float(i), "M": float(seq_num)}
        event = desc.compose_event(data=data, timestamps=dict.fromkeys(data, 0.0), seq_num=seq_num)
        live.append(("event", event))
    live.append(("stop", bundle.compose_stop()))
    buffer = ScanBuffer(("T",), "M")
    buffer.replay(as_stored(live, n_events=4))  # seq_nums 1, 2, 3, 2
    feed(buffer, live)
    np.testing.assert_array_equal(buffer.snapshot()["T"], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])


# -- bad documents -----------------------------------------------------------------------------


def test_bad_and_out_of_order_documents_warn_and_never_raise():
    buffer = ScanBuffer(("T",), "M")
    good = synthetic_run([{"T": 1.0, "M": 1.0}])
    feed(buffer, good)
    start, descriptor, event, stop = (doc for _, doc in good)
    orphan = synthetic_run([{"T": 9.0, "M": 9.0}])
    still_open = synthetic_run([{"T": 2.0, "M": 2.0}])
    feed(buffer, still_open[:2])  # start, descriptor
    bad: list[tuple[Any, Any]] = [
        ("event", orphan[2][1]),  # its descriptor was never seen
        ("descriptor", orphan[1][1]),  # its start was never seen
        ("stop", orphan[3][1]),
        ("start", start),  # a second start for a known run
        ("descriptor", descriptor),
        ("event", event),  # after the stop
        ("stop", stop),
        ("event", {"data": {"T": 1.0, "M": 1.0}}),  # no descriptor uid
        ("event", {"descriptor": ["unhashable"], "data": {}}),
        ("event_page", {"descriptor": still_open[1][1]["uid"], "data": 3}),
        ("start", {"uid": 42}),
        ("start", {}),
        ("start", "not a mapping"),
        ("bogus", {}),
        (None, None),
        (["not", "a", "name"], {}),
    ]
    for name, doc in bad:
        with pytest.warns(DataWarning):
            buffer(name, doc)
    assert buffer.n_points == 1
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        buffer("resource", {"uid": "r"})  # valid bluesky documents the buffer has no use for
        buffer("datum", {"datum_id": "d"})
    assert data_warnings(record) == []


def test_a_buffer_subscribed_mid_run_warns_once():
    buffer = ScanBuffer(("T",), "M")
    docs = synthetic_run([{"T": float(i), "M": 0.0} for i in range(50)])
    with pytest.warns(DataWarning) as record:
        feed(buffer, docs[2:])  # missed the start and the descriptor
    assert len(data_warnings(record)) == 2  # the unknown descriptor, the unknown run's stop
    feed(buffer, synthetic_run([{"T": 1.0, "M": 0.0}]))
    assert buffer.n_points == 1


def test_warnings_turned_into_errors_reach_the_caller_unchanged():
    buffer = ScanBuffer(("T",), "M")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        with pytest.raises(DataWarning, match="unknown kind"):
            buffer("bogus", {})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"features": ()}, "no features"),
        ({"features": ("T", "M")}, "repeat"),
        ({"features": ("time",)}, "reserved"),
        ({"keys": {"X": "x"}}, "neither a feature"),
        ({"keys": {"T": 3}}, "strings"),
        ({"features": None, "target": None, "keys": {"T": "t"}}, r"name both, e\.g\."),
        ({"features": None, "target": "run_uid"}, "reserved"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(DigitwinInputError, match=match):
        ScanBuffer(**{"features": ("T", "H"), "target": "M", **kwargs})


# -- threads ----------------------------------------------------------------------------------


def test_snapshots_are_consistent_while_events_arrive():
    n_events = 5000
    docs = synthetic_run([{"T": float(i), "H": -float(i), "M": 2.0 * i} for i in range(n_events)])
    buffer = ScanBuffer(("T", "H"), "M")
    errors: list[BaseException] = []
    # Halfway through, the feeder waits for one snapshot: at least one lands mid-run, however
    # the threads happen to be scheduled.
    halfway, snapped = threading.Event(), threading.Event()

    def feeder() -> None:
        try:
            for i, (name, doc) in enumerate(docs):
                buffer(name, doc)
                if i == len(docs) // 2:
                    halfway.set()
                    snapped.wait(timeout=30)
                elif i % 50 == 0:
                    time.sleep(0)  # let snapshots in, as a RunEngine waiting on hardware would
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    buffer.snapshot()  # xarray's first Dataset is slow (lazy imports): not part of the race
    thread = threading.Thread(target=feeder)
    thread.start()
    counts = []
    while thread.is_alive() or not counts:
        waiting = halfway.is_set()
        ds = buffer.snapshot()
        n = ds.sizes["point"]
        assert all(ds[name].shape == (n,) for name in (*ds.data_vars, *ds.coords))
        # Each snapshot is a prefix of the feed, with every row intact.
        np.testing.assert_array_equal(ds["T"], np.arange(n))
        np.testing.assert_array_equal(ds["H"], -ds["T"])
        np.testing.assert_array_equal(ds["M"], 2 * ds["T"])
        counts.append(n)
        if waiting:
            snapped.set()
    thread.join()
    assert not errors
    assert counts == sorted(counts)
    assert buffer.snapshot().sizes["point"] == n_events
    assert any(0 < n < n_events for n in counts)


# -- property: random document streams ---------------------------------------------------------

junk = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(
        st.sampled_from(["uid", "run_start", "descriptor", "data", "name", "time", "seq_num"]),
        # Data never names T or M: junk must not be able to form a valid point.
        st.one_of(
            st.none(),
            st.text(max_size=5),
            st.integers(),
            st.dictionaries(st.text(alphabet="xyz"), st.integers(), max_size=3),
        ),
        max_size=5,
    ),
)
junk_documents = st.tuples(
    st.one_of(
        st.sampled_from(["start", "descriptor", "event", "event_page", "stop", "datum", "x"]),
        junk,
    ),
    junk,
)


@st.composite
def valid_runs(draw) -> tuple[list[Document], int]:
    """A run's documents and how many points they should add."""
    n = draw(st.integers(0, 5))
    rows = [{"T": float(i), "M": float(i)} for i in range(n)]
    simulated = draw(st.booleans())
    docs = synthetic_run(
        rows or [{"T": 0.0, "M": 0.0}], md={"data_origin": "simulated"} if simulated else {}
    )
    if not rows:
        docs = [d for d in docs if d[0] != "event"]
    if draw(st.booleans()) and rows:  # the same events as one page
        events = [doc for name, doc in docs if name == "event"]
        docs = [d for d in docs if d[0] != "event"]
        docs.insert(2, ("event_page", event_model.pack_event_page(*events)))
    return docs, 0 if simulated else n


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    runs=st.lists(valid_runs(), max_size=4),
    noise=st.lists(junk_documents, max_size=30),
    positions=st.lists(st.floats(0, 1), max_size=30),
)
def test_random_documents_never_raise_nor_lose_points(runs, noise, positions):
    # Interleave the runs' documents (each run in order) with junk at random places.
    stream: list[Any] = [doc for docs, _ in runs for doc in docs]
    for junk_doc, where in zip(noise, positions, strict=False):
        stream.insert(int(where * len(stream)), junk_doc)
    buffer = ScanBuffer(("T",), "M")
    seen = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        for name, doc in stream:
            buffer(name, doc)  # must not raise
            assert buffer.n_points >= seen  # points are never lost
            seen = buffer.n_points
    assert buffer.n_points == sum(expected for _, expected in runs)
    ds = buffer.snapshot()
    assert ds.sizes["point"] == buffer.n_points
