"""Tiled: layout, writers, refusals, reading back and training, against a real server on loopback.

One embedded server (Tiled's SimpleTiledServer, started by TwinCatalog.embedded) serves the
whole module; tests tell their runs apart by a unique ``tag`` in the start document.
"""

from __future__ import annotations

import secrets
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import bluesky.plan_stubs as bps
import event_model
import numpy as np
import pytest
import xarray as xr
from bluesky import RunEngine
from bluesky.plans import count, scan
from bluesky.preprocessors import SupplementalData
from hypothesis import given, settings
from hypothesis import strategies as st
from tiled.client import from_uri
from tiled.queries import Key

from bluesky_digitwin import DigitwinError, EnsembleRecipe, SearchSpace, TrainConfig
from bluesky_digitwin.buffer import ScanBuffer
from bluesky_digitwin.data import DataWarning, DigitwinInputError
from bluesky_digitwin.sim import FirstOrderMagnet, Magnetometer
from bluesky_digitwin.tiled import (
    SIMULATED_SPEC,
    DataOriginError,
    OriginRouter,
    RunMetadataError,
    TiledConnectionError,
    TwinCatalog,
    data_origin_of,
    measured_runs_of_twin,
    normalize_start,
    read_backup,
    read_runs,
    run_documents,
    select_runs,
    simulated_runs_from_measured,
    simulated_runs_of_twin,
)
from bluesky_digitwin.twin import DigitalTwin

FEATURES, TARGET = ["T", "H"], "M"
MAG_KEYS = {"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"}


# -- fixtures and plans --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Iterator[TwinCatalog]:
    with TwinCatalog.embedded(tmp_path_factory.mktemp("tiled")) as catalog:
        yield catalog


@pytest.fixture(scope="module")
def RE() -> RunEngine:
    return RunEngine({})


@pytest.fixture(scope="module")
def mag() -> Magnetometer:
    return Magnetometer(FirstOrderMagnet(), noise=0.0, seconds_per_point=0, name="mag")


@pytest.fixture
def routed(RE: RunEngine, catalog: TwinCatalog) -> Iterator[OriginRouter]:
    """The RunEngine with the catalog's routing callback subscribed, for one test."""
    router = catalog.router()
    token = RE.subscribe(router)
    yield router
    RE.unsubscribe(token)


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex


def measure(RE: RunEngine, mag: Magnetometer, field: float, md: dict[str, Any], n: int = 6) -> str:
    """A measured temperature scan at one field; returns its uid."""
    RE(bps.mv(mag.field, field))
    (uid,) = RE(scan([mag], mag.temperature, 10, 60, n, md=md))
    return uid


def simulated_md(tag: str, twin_id: str = "twin", learned_from=(), **extra: Any) -> dict:
    """What simulate_scan puts in a simulated run's start document."""
    return {
        "tag": tag,
        "data_origin": "simulated",
        "tiled_specs": [SIMULATED_SPEC],
        "digital_twin": {
            "id": twin_id,
            "learned_from": list(learned_from),
            "hyperparameters": {"n_layers": 2},
            "validation_rmse": 0.01,
            "versions": {"bluesky-digitwin": "0.1.0"},
        },
        **extra,
    }


def simulate(RE: RunEngine, mag: Magnetometer, md: dict[str, Any]) -> str:
    """A tiny 'simulated' run: the same data keys as a measurement, emitted under ``md``."""

    def plan():
        yield from bps.open_run(md)
        for temperature in (12.0, 30.0, 45.0):
            yield from bps.mv(mag.temperature, temperature)
            yield from bps.trigger_and_read([mag])
        yield from bps.close_run()

    (uid,) = RE(plan())
    return uid


def backed_up(path: Any) -> tuple[str, int, bool]:
    """A backup's run uid, number of events (the router passes them on as pages), and stop."""
    docs = read_backup(path)
    events = sum(
        len(doc["seq_num"]) if name == "event_page" else 1
        for name, doc in docs
        if name in ("event", "event_page")
    )
    return docs[0][1]["uid"], events, docs[-1][0] == "stop"


def tagged(container: Any, tag: str) -> set[str]:
    return set(container.search(Key("tag") == tag))


# -- layout, server, keys ------------------------------------------------------------------------


def test_layout_is_created_once_and_reused(catalog, RE, mag, routed, tag):
    root = catalog.node
    before = sorted(root)
    assert {"measured", "simulated"} <= set(before)
    for name in ("measured", "simulated"):
        (spec,) = root[name].specs
        assert (spec.name, spec.version) == ("CatalogOfBlueskyRuns", "3.0")
    uid = measure(RE, mag, 1000.0, {"tag": tag})
    again = TwinCatalog.connect(node=root)
    by_uri = TwinCatalog.connect(catalog.uri, api_key=catalog.api_key)
    assert sorted(root) == before  # nothing new: the containers were reused
    assert uid in again.measured and uid in by_uri.measured


def test_embedded_server_listens_on_loopback_and_hides_its_key(catalog):
    assert catalog.uri.startswith("http://127.0.0.1:")
    assert catalog.uri.endswith("/api/v1")
    assert len(catalog.api_key) >= 32
    assert catalog.api_key not in catalog.uri + repr(catalog)
    assert catalog.directory is not None


def test_a_wrong_api_key_is_a_clear_error(catalog, monkeypatch):
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    with pytest.raises(TiledConnectionError, match="refused the API key") as info:
        TwinCatalog.connect(catalog.uri, api_key="wrong0key")
    assert "wrong0key" not in str(info.value)
    monkeypatch.setenv("TILED_API_KEY", "wrong1key")
    with pytest.raises(TiledConnectionError, match="refused the API key; set TILED_API_KEY"):
        TwinCatalog.connect(catalog.uri)


@pytest.mark.parametrize("bad", ["two words", "this&that", "key\twith\ttabs", "schlüssel?"])
def test_an_api_key_tiled_cannot_send_is_refused(catalog, monkeypatch, bad):
    # Tiled's client drops such a key unsent and then says the server needs one.
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    with pytest.raises(TiledConnectionError, match="refused the API key") as info:
        TwinCatalog.connect(catalog.uri, api_key=bad)
    assert bad not in str(info.value)
    monkeypatch.setenv("TILED_API_KEY", bad)
    with pytest.raises(TiledConnectionError, match=r"refused the API key .*; set TILED_API_KEY"):
        TwinCatalog.connect(catalog.uri)


def test_a_missing_api_key_is_a_clear_error(catalog, monkeypatch):
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    with pytest.raises(TiledConnectionError, match=r"needs an API key; set .*TILED_API_KEY"):
        TwinCatalog.connect(catalog.uri)


def test_an_unreachable_server_is_a_clear_error(monkeypatch):
    import tiled.client.utils

    monkeypatch.setattr(tiled.client.utils, "TILED_RETRY_ATTEMPTS", 1)  # no 25 s of retries
    with pytest.raises(TiledConnectionError, match="cannot reach the Tiled server at http") as info:
        TwinCatalog.connect("http://127.0.0.1:9/api/v1?api_key=secret0key")
    assert "secret0key" not in str(info.value)
    # What it is: a lost connection, which the CLI reports as a message, not an input error.
    assert isinstance(info.value, ConnectionError) and isinstance(info.value, DigitwinError)
    assert not isinstance(info.value, ValueError)


def test_the_cli_says_an_unreachable_server_in_one_line(monkeypatch, tmp_path, capsys):
    import tiled.client.utils

    from bluesky_digitwin.cli import main

    monkeypatch.setattr(tiled.client.utils, "TILED_RETRY_ATTEMPTS", 1)
    argv = ["fit", "--tiled-uri", "http://127.0.0.1:9/api/v1", "--runs", "abc"]
    argv += ["--features", "T", "H", "--target", "M", "--out", str(tmp_path / "twin"), "-q"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("digitwin: error: ") and "cannot reach the Tiled server" in error
    assert "Traceback" not in error and not (tmp_path / "twin").exists()


def test_the_api_key_comes_from_the_environment(catalog, monkeypatch):
    monkeypatch.setenv("TILED_API_KEY", catalog.api_key)
    connected = TwinCatalog.connect(catalog.uri)
    assert {"measured", "simulated"} <= set(connected.node)


def test_a_tiled_profile_gives_the_server(catalog, tmp_path, monkeypatch):
    import tiled.profiles

    (tmp_path / "digitwin.yml").write_text(f"digitwin-test:\n  uri: {catalog.uri}\n")
    monkeypatch.setattr(tiled.profiles, "paths", [tmp_path])
    tiled.profiles.load_profiles.cache_clear()
    try:
        monkeypatch.setenv("TILED_API_KEY", catalog.api_key)
        connected = TwinCatalog.connect(profile="digitwin-test")
        assert connected.uri == catalog.uri
        with pytest.raises(TiledConnectionError, match="not found"):
            TwinCatalog.connect(profile="no-such-profile")
    finally:
        monkeypatch.undo()
        tiled.profiles.load_profiles.cache_clear()


def test_connect_wants_exactly_one_place(catalog):
    with pytest.raises(DigitwinInputError, match="exactly one of uri, profile or node"):
        TwinCatalog.connect()
    with pytest.raises(DigitwinInputError, match="exactly one"):
        TwinCatalog.connect(catalog.uri, node=catalog.node)


def test_a_foreign_container_in_the_way_is_reported(catalog):
    other = catalog.node.create_container(key=f"other-{uuid.uuid4().hex[:8]}")
    other.create_container(key="measured")
    with pytest.raises(DigitwinInputError, match=r"is not a CatalogOfBlueskyRuns 3\.x container"):
        TwinCatalog.connect(node=other)


@pytest.mark.slow
def test_runs_survive_a_restart(catalog, tmp_path, mag):
    RE = RunEngine({})
    with TwinCatalog.embedded(tmp_path / "store") as first:
        # Tiled 0.2 applies the last started server's key to every server of the process, so
        # the module's server and this one share theirs.
        assert first.api_key == catalog.api_key
        with pytest.raises(DigitwinInputError, match="another API key"):
            TwinCatalog.embedded(tmp_path / "third", api_key=secrets.token_hex(8))
        first.subscribe(RE)
        measured = measure(RE, mag, 5000.0, {"tag": "restart"})
        simulated = simulate(RE, mag, simulated_md("restart", learned_from=[measured]))
    with TwinCatalog.embedded(tmp_path / "store") as second:
        assert sorted(second.node) == ["measured", "simulated"]
        assert list(second.measured) == [measured]
        assert list(second.simulated) == [simulated]
        assert SIMULATED_SPEC in {s.name for s in second.simulated[simulated].specs}
        primary = second.measured[measured]["primary"].read()
        np.testing.assert_allclose(primary["mag_field"].values, 5000.0)


# -- writing -------------------------------------------------------------------------------------


def test_the_router_sends_each_run_to_its_container(catalog, RE, mag, routed, tag):
    starts: dict[str, dict] = {}
    token = RE.subscribe(lambda name, doc: starts.setdefault(doc["uid"], doc), "start")
    try:
        measured = measure(RE, mag, 1000.0, {"tag": tag})
        full = simulate(RE, mag, simulated_md(tag, learned_from=[measured]))
        origin_only = simulate(RE, mag, {"tag": tag, "data_origin": "simulated"})
        spec_only = simulate(RE, mag, {"tag": tag, "tiled_specs": [SIMULATED_SPEC]})
    finally:
        RE.unsubscribe(token)

    assert tagged(catalog.measured, tag) == {measured}
    assert tagged(catalog.simulated, tag) == {full, origin_only, spec_only}
    assert catalog.measured[measured].start["data_origin"] == "measured"
    assert "data_origin" not in starts[measured]  # stamped on the stored copy only
    for uid in (full, origin_only, spec_only):
        run = catalog.simulated[uid]
        assert run.start["data_origin"] == "simulated"
        assert SIMULATED_SPEC in {s.name for s in run.specs}
    assert catalog.simulated[full].start["digital_twin"]["learned_from"] == [measured]
    assert not routed.refused and not routed.failed


def test_writing_a_run_does_not_repeat_a_warning_shown_once(catalog, RE, mag, routed, tag):
    # A callback of the session's that warns at every event: Python shows it once. Setting a
    # warning filter resets that record, so the writers set theirs around start documents only.
    def warns(name, doc):
        warnings.warn("said once per session", UserWarning, stacklevel=1)

    token = RE.subscribe(warns, "event")
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("default")
            measure(RE, mag, 1000.0, {"tag": tag}, n=5)
    finally:
        RE.unsubscribe(token)
    assert [str(w.message) for w in said].count("said once per session") == 1
    assert tagged(catalog.measured, tag)


@pytest.mark.parametrize(
    "md",
    [
        {"data_origin": "measured", "tiled_specs": [SIMULATED_SPEC]},
        {"data_origin": "interpolated"},
    ],
)
def test_the_router_skips_contradictory_runs_without_raising(catalog, RE, mag, routed, tag, md):
    with pytest.warns(DataWarning, match="not written to Tiled.*every document of the run is kept"):
        uid = measure(RE, mag, 1000.0, {"tag": tag, **md})
    assert uid in routed.refused
    assert tagged(catalog.measured, tag) == set() == tagged(catalog.simulated, tag)
    # Not lost: the whole run waits in the backup, for its metadata to be corrected.
    backup = routed.backup_directory / f"{uid}.jsonl"
    assert backed_up(backup) == (uid, 6, True)
    backup.unlink()


def test_a_connected_catalog_keeps_backups_in_the_users_data_per_server(
    catalog, mag, tag, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    connected = TwinCatalog.connect(catalog.uri, api_key=catalog.api_key)
    port = catalog.uri.split(":")[2].split("/")[0]
    expected = tmp_path / "bluesky-digitwin" / "tiled-backup" / f"127.0.0.1_{port}_api_v1"
    assert connected.backup_directory == expected
    RE = RunEngine({})
    RE.subscribe(connected.router())  # no normaliser: the run starts, and is kept
    kept = f"kept in {expected}/.*digitwin replay {expected}/.*jsonl --tiled-uri {catalog.uri}"
    with pytest.warns(DataWarning, match=kept):
        (uid,) = RE(count([mag], 2, md={"tag": tag, "data_origin": "interpolated"}))
    assert backed_up(expected / f"{uid}.jsonl") == (uid, 2, True)


def test_a_failing_write_never_reaches_the_run_engine(RE, mag, tag, caplog, tmp_path):
    def broken(name, doc):
        raise ConnectionError("the server went away")

    router = OriginRouter({"measured": broken, "simulated": broken}, backup_directory=tmp_path)
    token = RE.subscribe(router)
    try:
        with pytest.warns(DataWarning, match=f"kept in {tmp_path}"):
            uid = measure(RE, mag, 1000.0, {"tag": tag})
    finally:
        RE.unsubscribe(token)
    assert "the server went away" in router.failed[uid]
    assert "writing run" in caplog.text and "Traceback" not in caplog.text
    assert backed_up(tmp_path / f"{uid}.jsonl") == (uid, 6, True)


def test_a_simulated_run_sent_toward_measured_is_refused(catalog, RE, mag, tag):
    token = RE.subscribe(catalog.writer("measured"))
    try:
        with pytest.raises(DataOriginError, match="does not belong in the 'measured' container"):
            simulate(RE, mag, simulated_md(tag))
        # The RunEngine goes on; measured runs are still written.
        measured = measure(RE, mag, 1000.0, {"tag": tag})
    finally:
        RE.unsubscribe(token)
    assert tagged(catalog.measured, tag) == {measured}
    assert tagged(catalog.simulated, tag) == set()


def test_a_measured_run_sent_toward_simulated_is_refused(catalog, RE, mag, tag):
    token = RE.subscribe(catalog.writer("simulated"))
    try:
        with pytest.raises(DataOriginError, match="it is measured") as info:
            measure(RE, mag, 1000.0, {"tag": tag})
    finally:
        RE.unsubscribe(token)
    assert "nothing of it was written" in str(info.value)
    assert tagged(catalog.measured, tag) == set() == tagged(catalog.simulated, tag)


def test_a_refused_run_writes_nothing_document_by_document(catalog, tag):
    writer = catalog.writer("measured")
    bundle = event_model.compose_run(metadata={"tag": tag, "data_origin": "simulated"})
    with pytest.raises(DataOriginError, match=bundle.start_doc["uid"]):
        writer("start", bundle.start_doc)
    stream = bundle.compose_descriptor(
        name="primary", data_keys={"x": {"source": "sim", "dtype": "number", "shape": []}}
    )
    writer("descriptor", stream.descriptor_doc)  # the rest of the run is dropped quietly
    writer("event", stream.compose_event(data={"x": 1.0}, timestamps={"x": 0.0}))
    writer("stop", bundle.compose_stop())
    assert tagged(catalog.measured, tag) == set() == tagged(catalog.simulated, tag)


def test_data_origin_of_start_documents():
    assert data_origin_of({"uid": "a"}) == "measured"
    assert data_origin_of({"uid": "a", "tiled_specs": [{"name": SIMULATED_SPEC}]}) == "simulated"
    assert data_origin_of({"uid": "a", "data_origin": "simulated"}) == "simulated"
    with pytest.raises(DataOriginError, match="run a has data_origin 'mixed'"):
        data_origin_of({"uid": "a", "data_origin": "mixed"})
    assert data_origin_of({"uid": "a", "data_origin": " Simulated\n"}) == "simulated"
    assert data_origin_of({"uid": "a", "data_origin": "MEASURED"}) == "measured"


def test_normalize_start_fixes_what_is_unambiguous():
    start = {"uid": "a", "data_origin": "Measured ", "tiled_specs": "MyMeasurement"}
    assert normalize_start(start) == {
        "uid": "a",
        "data_origin": "measured",
        "tiled_specs": ["MyMeasurement"],
    }
    # Repeats, and the spec TiledWriter adds itself, would make Tiled refuse the run.
    specs = ["A", "A", {"name": "BlueskyRun", "version": "3.0"}, {"name": "B"}]
    assert normalize_start({"tiled_specs": specs})["tiled_specs"] == [
        "A",
        {"name": "B", "version": None},
    ]
    assert normalize_start({"tiled_specs": {"name": "A"}})["tiled_specs"] == [
        {"name": "A", "version": None}
    ]
    assert normalize_start({"tiled_specs": [{"name": "BlueskyRun"}, "A"]})["tiled_specs"] == ["A"]


@pytest.mark.parametrize(
    ("md", "problem"),
    [
        ({"tiled_specs": 5}, r"tiled_specs 5 \(int\); give a list of spec names"),
        ({"tiled_specs": ["A", 1]}, "1 among its tiled_specs; each spec is a name"),
        ({"tiled_specs": [{"name": "A", "owner": "me"}]}, "each spec is a name"),
        ({"tiled_specs": [""]}, "a spec's name is 1 to 255 characters"),
        ({"tiled_specs": ["x" * 256]}, "a spec's name is 1 to 255 characters"),
        ({"tiled_specs": [f"S{i}" for i in range(19)]}, "Tiled stores at most 18"),
        ({"tiled_specs": [{"name": "BlueskyRun", "version": "1"}]}, "set by TiledWriter"),
        ({"tiled_specs": ["CatalogOfBlueskyRuns"]}, "a spec of the bluesky layout"),
        ({"data_origin": "interpolated"}, "data_origin 'interpolated'; it must be 'measured'"),
        ({"data_origin": 1}, "data_origin 1; it must be"),
        ({"data_origin": ["measured"]}, "data_origin \\['measured'\\]; it must be"),
        (
            {"data_origin": "Measured", "tiled_specs": SIMULATED_SPEC},
            "either measured or simulated",
        ),
    ],
)
def test_metadata_tiled_cannot_store_fails_before_the_run_starts(catalog, mag, tag, md, problem):
    RE = RunEngine({})
    catalog.subscribe(RE)
    emitted: list[str] = []
    RE.subscribe(lambda name, doc: emitted.append(name))
    with pytest.raises(RunMetadataError, match=problem) as info:
        RE(count([mag], 2, md={"tag": tag, **md}))
    assert str(info.value).endswith("the run was not started, nothing was written")
    assert emitted == []  # no start document: nothing to store, nothing lost
    assert tagged(catalog.measured, tag) == set() == tagged(catalog.simulated, tag)
    assert not list(catalog.backup_directory.glob("*.jsonl"))


@pytest.mark.parametrize("through", ["subscribe", "router only"])
def test_unambiguous_metadata_is_normalised_and_stored(catalog, mag, tag, through):
    RE = RunEngine({})
    if through == "subscribe":
        catalog.subscribe(RE)
    else:  # the documents of a RunEngine without the normaliser, e.g. replayed from elsewhere
        RE.subscribe(catalog.router())
    (measured,) = RE(count([mag], 3, md={"tag": tag, "tiled_specs": "MyMeasurement"}))
    (shouted,) = RE(count([mag], 3, md={"tag": tag, "data_origin": "Measured "}))
    (simulated,) = RE(count([mag], 3, md={"tag": tag, "data_origin": " SIMULATED\t"}))
    assert tagged(catalog.measured, tag) == {measured, shouted}
    assert tagged(catalog.simulated, tag) == {simulated}
    run = catalog.measured[measured]
    assert [s.name for s in run.specs] == ["MyMeasurement", "BlueskyRun"]
    assert len(run["primary"].read()["time"]) == 3
    assert catalog.measured[shouted].start["data_origin"] == "measured"
    assert catalog.simulated[simulated].start["data_origin"] == "simulated"
    assert SIMULATED_SPEC in {s.name for s in catalog.simulated[simulated].specs}
    assert not list(catalog.backup_directory.glob("*.jsonl"))  # stored: no backup left


def test_subscribe_keeps_the_normaliser_already_set(catalog, mag, tag):
    def stamp_operator(md):
        return {**md, "operator": "beamline staff"}

    RE = RunEngine({}, md_normalizer=stamp_operator)
    RE.unsubscribe(catalog.subscribe(RE))
    catalog.subscribe(RE)  # again: still one check
    assert RE.md_normalizer.previous is stamp_operator
    (uid,) = RE(count([mag], 1, md={"tag": tag, "tiled_specs": "MyMeasurement"}))
    run = catalog.measured[uid]
    assert run.start["operator"] == "beamline staff"
    assert [s.name for s in run.specs] == ["MyMeasurement", "BlueskyRun"]


# -- reading back --------------------------------------------------------------------------------


def test_runs_read_back_with_tiled_and_databroker_clients(catalog, RE, mag, routed, tag):
    events: list[dict] = []
    token = RE.subscribe(lambda name, doc: events.append(doc), "event")
    try:
        uid = measure(RE, mag, 20000.0, {"tag": tag, "sample": "ErCo2"})
    finally:
        RE.unsubscribe(token)
    emitted = [e["data"]["mag_moment"] for e in events]

    client = from_uri(catalog.uri, api_key=catalog.api_key)  # Tiled's own client
    run = client["measured"][uid]
    assert run.metadata["start"]["sample"] == "ErCo2"
    np.testing.assert_allclose(run["primary"].read()["mag_moment"].values, emitted)

    runs = client["measured"]  # databroker 2: a catalog of BlueskyRuns, v2 interface
    run2 = runs.v2[uid[:8]]
    np.testing.assert_allclose(run2.primary.read()["mag_moment"].values, emitted)
    np.testing.assert_allclose(run2["primary"]["data"]["mag_moment"].read(), emitted)
    assert list(runs.search(Key("sample") == "ErCo2").search(Key("tag") == tag)) == [uid]


def test_read_runs_assembles_points_like_a_live_buffer(catalog, RE, mag, routed, tag):
    """Runs read back from Tiled give the same Dataset a ScanBuffer made live."""
    live = ScanBuffer(FEATURES, TARGET, keys=MAG_KEYS)
    token = RE.subscribe(live)
    baseline = SupplementalData(baseline=[mag.field])
    RE.preprocessors.append(baseline)
    try:
        uids = []
        for field in (1000.0, 5000.0):
            RE(bps.mv(mag.field, field))
            # Only the moment in the events: the field comes from the baseline.
            uids += RE(scan([mag.moment], mag.temperature, 10, 60, 6, md={"tag": tag}))
    finally:
        RE.preprocessors.remove(baseline)
        RE.unsubscribe(token)
    stored = read_runs(catalog, uids, features=FEATURES, target=TARGET, keys=MAG_KEYS)
    expected = live.snapshot()
    for name in (*FEATURES, TARGET, "run_uid", "seq_num"):
        np.testing.assert_array_equal(stored[name].values, expected[name].values)
    assert stored["M"].attrs["units"] == "emu" and stored["H"].attrs["units"] == "Oe"
    assert stored.attrs["run_uids"] == uids
    assert stored.attrs["tiled_uri"] == catalog.uri


def test_read_runs_leaves_simulated_runs_out_unless_asked(catalog, RE, mag, routed, tag):
    measured = measure(RE, mag, 1000.0, {"tag": tag})
    simulated = simulate(RE, mag, simulated_md(tag, learned_from=[measured]))
    options = {"features": FEATURES, "target": TARGET, "keys": MAG_KEYS}

    by_query = read_runs(catalog, query=Key("tag") == tag, **options)
    assert set(by_query["run_uid"].values) == {measured}
    with pytest.raises(DataOriginError, match=f"run\\(s\\) {simulated} are simulated"):
        read_runs(catalog, [measured, simulated], **options)
    both = read_runs(catalog, [measured, simulated], include_simulated=True, **options)
    assert set(both["run_uid"].values) == {measured, simulated}
    assert both.attrs["data_origin"] == "mixed"
    # The measured container read as a plain catalog of runs: still no simulated run.
    assert read_runs(catalog.measured, measured, **options).attrs["run_uids"] == [measured]


def test_read_runs_reports_what_it_cannot_use(catalog, RE, mag, routed, tag):
    options = {"features": FEATURES, "target": TARGET, "keys": MAG_KEYS}
    with pytest.raises(DigitwinInputError, match="uids or a query"):
        read_runs(catalog, **options)
    with pytest.raises(DigitwinInputError, match="no run 0123456789abcdef at"):
        read_runs(catalog, ["0123456789abcdef"], **options)
    with pytest.raises(DigitwinInputError, match=r"no run at .* matches the query"):
        read_runs(catalog, query=Key("tag") == tag, **options)
    uid = measure(RE, mag, 1000.0, {"tag": tag})
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        read_runs(catalog, [uid], features=["T"], target="R", keys={"T": "mag_temperature"})
    messages = [str(w.message) for w in record if issubclass(w.category, DataWarning)]
    assert f"run(s) {uid} gave no points with mag_temperature, R in stream 'primary'" in messages


def test_select_runs_says_what_the_catalog_holds_when_nothing_matches(catalog, RE, mag, tag):
    """Only reads: a query matching simulated runs only, or a catalog of simulated runs only,
    is one clear error, and nothing is written to Tiled."""
    token = catalog.subscribe(RE)
    try:
        # The catalog holds measured runs, only none that match (whatever ran before here).
        measure(RE, mag, 1000.0, {"tag": f"not-{tag}"}, n=4)
        simulated = simulate(RE, mag, simulated_md(tag))
    finally:
        RE.unsubscribe(token)
    with pytest.raises(DigitwinInputError, match=r"among the measured runs \(1 simulated run"):
        select_runs(catalog, query=Key("tag") == tag)
    assert (
        select_runs(catalog, query=Key("tag") == tag, include_simulated=True)[0].start["uid"]
        == simulated
    )

    # A node of its own holding simulated runs only.
    only = TwinCatalog(catalog.node.create_container(key=f"only-simulated-{tag}"))
    token = only.subscribe(RE)
    try:
        simulate(RE, mag, simulated_md(tag))
    finally:
        RE.unsubscribe(token)
    before = {key: len(only.container(key)) for key in ("measured", "simulated")}
    for source in (only, only.node):
        with pytest.raises(DigitwinInputError, match="holds no measured run, only simulated ones"):
            select_runs(source, query=Key("tag") == tag)
    assert {key: len(only.container(key)) for key in ("measured", "simulated")} == before


def test_run_documents_give_seq_nums_and_the_stop(catalog, RE, mag, routed, tag):
    emitted: list[tuple[str, dict]] = []
    RE(bps.mv(mag.field, 1000.0))
    (uid,) = RE(
        scan([mag], mag.temperature, 10, 60, 4, md={"tag": tag}),
        lambda name, doc: emitted.append((name, doc)),
    )
    (run,) = select_runs(catalog, [uid])
    stored = list(run_documents(run, keys={"mag_moment"}))
    assert [name for name, _ in stored] == ["start", "descriptor", *["event"] * 4, "stop"]
    live_events = [doc for name, doc in emitted if name == "event"]
    stored_events = [doc for name, doc in stored if name == "event"]
    assert [e["seq_num"] for e in stored_events] == [e["seq_num"] for e in live_events]
    assert [e["data"] for e in stored_events] == [
        {"mag_moment": e["data"]["mag_moment"]} for e in live_events
    ]
    assert stored[-1][1]["uid"] == emitted[-1][1]["uid"]  # the stop document itself


# -- searching -----------------------------------------------------------------------------------


def test_search_helpers_follow_twins_and_runs(catalog, RE, mag, routed, tag):
    m1, m2, m3 = (measure(RE, mag, h, {"tag": tag}) for h in (1000.0, 5000.0, 20000.0))
    twin_a, twin_b = f"a-{tag}", f"b-{tag}"
    s1 = simulate(RE, mag, simulated_md(tag, twin_a, [m1, m2]))
    s2 = simulate(RE, mag, simulated_md(tag, twin_a, [m3]))
    s3 = simulate(RE, mag, simulated_md(tag, twin_b, [m1]))

    assert set(simulated_runs_of_twin(catalog, twin_a)) == {s1, s2}
    assert set(simulated_runs_of_twin(catalog, {"id": twin_b})) == {s3}
    assert set(simulated_runs_from_measured(catalog, m1)) == {s1, s3}
    assert set(simulated_runs_from_measured(catalog, m3)) == {s2}
    assert set(measured_runs_of_twin(catalog, twin_a)) == {m1, m2, m3}
    assert set(measured_runs_of_twin(catalog, twin_b)) == {m1}
    # A twin's own provenance counts too, even before it simulated anything.
    twin_c = {"id": f"c-{tag}", "provenance": {"run_uids": [m2]}}
    assert set(measured_runs_of_twin(catalog, twin_c)) == {m2}
    assert set(measured_runs_of_twin(catalog.node, f"none-{tag}")) == set()


# -- the property: simulated runs never pass for measured ones ------------------------------------

KINDS = (
    "measured",  # no data_origin: measured
    "measured_declared",  # data_origin "measured"
    "simulated",  # as simulate_scan writes it
    "simulated_origin_only",  # data_origin only: the spec is added on the way
    "simulated_spec_only",  # the spec only: data_origin is added on the way
    "simulated_toward_measured",  # sent through writer("measured"): refused
)


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=5))
def test_simulated_runs_are_never_measured_nor_learned_from(catalog, RE, mag, kinds):
    tag = uuid.uuid4().hex
    md_of = {
        "measured": {"tag": tag},
        "measured_declared": {"tag": tag, "data_origin": "measured"},
        "simulated": simulated_md(tag),
        "simulated_origin_only": {"tag": tag, "data_origin": "simulated"},
        "simulated_spec_only": {"tag": tag, "tiled_specs": [SIMULATED_SPEC]},
        "simulated_toward_measured": simulated_md(tag),
    }
    measured, simulated = set(), set()
    for i, kind in enumerate(kinds):
        if kind == "simulated_toward_measured":
            token = RE.subscribe(catalog.writer("measured"))
            with pytest.raises(DataOriginError):
                simulate(RE, mag, md_of[kind])
        else:
            token = catalog.subscribe(RE)
            if kind.startswith("measured"):
                measured.add(measure(RE, mag, 1000.0 * (i + 1), md_of[kind], n=4))
            else:
                simulated.add(simulate(RE, mag, md_of[kind]))
        RE.unsubscribe(token)

    assert tagged(catalog.measured, tag) == measured
    assert tagged(catalog.simulated, tag) == simulated
    for uid in simulated:
        assert SIMULATED_SPEC in {s.name for s in catalog.simulated[uid].specs}

    seen: list[xr.Dataset] = []

    def fake_fit(cls, data, features, target, **options):
        seen.append(data)
        return options["provenance"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DigitalTwin, "fit", classmethod(fake_fit))
        options = {"features": FEATURES, "target": TARGET, "keys": MAG_KEYS}
        for source in (catalog, catalog.node):
            if measured:
                provenance = DigitalTwin.fit_runs(source, query=Key("tag") == tag, **options)
                assert set(provenance["run_uids"]) == measured
                assert set(seen[-1]["run_uid"].values) == measured
            else:
                with pytest.raises(DigitwinInputError, match="no run"):
                    DigitalTwin.fit_runs(source, query=Key("tag") == tag, **options)
            if simulated:
                with pytest.raises(DataOriginError, match="simulated"):
                    DigitalTwin.fit_runs(source, sorted(measured | simulated), **options)


# -- training ------------------------------------------------------------------------------------


def test_fit_runs_learns_from_measured_runs_only(catalog, RE, mag, routed, tag):
    uids = [measure(RE, mag, h, {"tag": tag}, n=11) for h in (1000.0, 5000.0, 20000.0)]
    simulate(RE, mag, simulated_md(tag, learned_from=uids))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. a smaller ensemble than asked
        twin = DigitalTwin.fit_runs(
            catalog,
            query=Key("tag") == tag,
            features=FEATURES,
            target=TARGET,
            keys=MAG_KEYS,
            n_trials=2,
            n_workers=1,
            ensemble=EnsembleRecipe(size=1),
            seed=0,
            train_config=TrainConfig(max_epochs=20),
            space=SearchSpace(n_layers=(2, 2), n_units=(16, 16), l2=None),
            provenance={"note": "test"},
        )
    provenance = twin.metadata["provenance"]
    assert provenance["run_uids"] == uids
    assert provenance["tiled_uri"] == catalog.uri
    assert provenance["data_origin"] == "measured"
    assert provenance["data_keys"] == MAG_KEYS
    assert provenance["note"] == "test"
    assert twin.metadata["data"]["n_points"] == 33
    assert twin.units == {"T": "K", "H": "Oe", "M": "emu"}
    assert set(measured_runs_of_twin(catalog, twin)) == set(uids)


@pytest.mark.slow
def test_a_worker_elsewhere_reads_the_runs_from_tiled(catalog, RE, mag, routed, tag, tmp_path):
    """A study learned from stored runs names them; a worker process reads them itself."""
    import os
    import subprocess
    import sys

    import optuna

    from bluesky_digitwin.surrogate.search import STUDY_RECORD, open_storage

    uids = [measure(RE, mag, h, {"tag": tag}, n=11) for h in (1000.0, 5000.0, 20000.0)]
    journal = tmp_path / "search.journal"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        DigitalTwin.fit_runs(
            catalog,
            uids,
            features=FEATURES,
            target=TARGET,
            keys=MAG_KEYS,
            n_trials=1,
            n_workers=1,
            ensemble=EnsembleRecipe(size=1),
            storage=journal,
            study_name="from-tiled",
            train_config=TrainConfig(max_epochs=10),
            space=SearchSpace(n_layers=(1, 2), n_units=(8, 16), l2=None),
        )
    study = optuna.load_study(study_name="from-tiled", storage=open_storage(journal))
    source = study.user_attrs[STUDY_RECORD]["data"]
    assert source["kind"] == "tiled"
    assert (source["uri"], source["runs"], source["keys"]) == (catalog.uri, uids, MAG_KEYS)
    # The worker gets the server's key from the environment, as any Tiled client would.
    code = (
        "import sys\n"
        "from bluesky_digitwin.surrogate.workers import run_worker\n"
        "print(run_worker(sys.argv[1], 'from-tiled', n_trials=3).trials_run)\n"
    )
    env = {**os.environ, "TILED_API_KEY": catalog.api_key, "DIGITWIN_TF_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(journal)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "2"
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
