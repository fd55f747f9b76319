"""The twin's bluesky plans, run by a real RunEngine on the simulated magnetometer.

The guided plans get their twin from a stand-in for ``TwinCallback``: the same face (buffer,
twin, twin_version, status), trained for real with ``DigitalTwin.fit`` on the buffer's snapshot,
but synchronously, when a plan asks. Searches are tiny (two trials of 2 x 16 networks).
"""

from __future__ import annotations

import json
import threading
import warnings
from typing import Any

import event_model
import numpy as np
import pytest
import xarray as xr
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted, is_plan
from digitwin_testing import Status, SyncTwinSource, two_network_fit

from bluesky_digitwin import DataWarning, DigitalTwin, make_grid
from bluesky_digitwin.analysis.steps import StepSuggestion
from bluesky_digitwin.buffer import ScanBuffer
from bluesky_digitwin.plans import (
    SIMULATED_SPEC,
    AdaptiveResult,
    Approvals,
    adaptive_line_scan,
    approvals,
    score_lines,
    simulate_scan,
    twin_guided_scan,
)
from bluesky_digitwin.sim import Magnetometer

FIT = two_network_fit()
KEYS = {"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"}
# Lines: T from 10 to 60 K in 6 points at fields between 100 Oe and 5 T.
LINE = {"fast_start": 10.0, "fast_stop": 60.0, "fast_num": 6}


# -- a stand-in for TwinCallback -----------------------------------------------------------------


class StaleError:
    """An error left by an earlier training, gone at the next look (a new training began)."""

    message = "training #1 failed"

    def __init__(self) -> None:
        self.looks = 0

    @property
    def state(self) -> str:
        self.looks += 1
        return "error" if self.looks == 1 else "training"


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def RE() -> RunEngine:
    return RunEngine({}, call_returns_result=True)


@pytest.fixture
def mag() -> Magnetometer:
    return Magnetometer(noise=0.0, seconds_per_point=0.0, name="mag")


@pytest.fixture
def docs(RE: RunEngine) -> list[tuple[str, dict]]:
    collected: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: collected.append((name, doc)))
    return collected


def source_for(RE: RunEngine, **kwargs: Any) -> SyncTwinSource:
    source = SyncTwinSource(ScanBuffer(("T", "H"), "M", keys=KEYS), **kwargs)
    RE.subscribe(source)
    return source


def validate(docs: list[tuple[str, dict]]) -> None:
    """Every document passes event-model's JSON schema."""
    for name, doc in docs:
        event_model.schema_validators[event_model.DocumentNames(name)].validate(doc)


def runs(docs: list[tuple[str, dict]]) -> list[dict[str, Any]]:
    """The runs in the documents: start, stop, the primary events unpacked, in order, and every
    stream's events by name (``streams``)."""
    by_uid: dict[str, dict[str, Any]] = {}
    descriptors: dict[str, tuple[str, str]] = {}
    for name, doc in docs:
        if name == "start":
            by_uid[doc["uid"]] = {"start": doc, "events": [], "streams": {}, "stop": None}
        elif name == "descriptor":
            descriptors[doc["uid"]] = (doc["run_start"], doc["name"])
            run = by_uid[doc["run_start"]]
            run["streams"][doc["name"]] = []
            if doc["name"] == "primary":
                run["descriptor"] = doc
        elif name in ("event", "event_page"):
            events = [doc] if name == "event" else list(event_model.unpack_event_page(doc))
            uid, stream = descriptors[doc["descriptor"]]
            by_uid[uid]["streams"][stream].extend(events)
            if stream == "primary":
                by_uid[uid]["events"].extend(events)
        elif name == "stop":
            by_uid[doc["run_start"]]["stop"] = doc
    return list(by_uid.values())


def measured_runs(docs: list[tuple[str, dict]]) -> list[dict[str, Any]]:
    return [r for r in runs(docs) if r["start"]["data_origin"] == "measured"]


def decision_runs(docs: list[tuple[str, dict]]) -> list[dict[str, Any]]:
    return [r for r in runs(docs) if r["start"].get("phase") == "decision"]


def column(run: dict[str, Any], key: str) -> np.ndarray:
    return np.array([event["data"][key] for event in run["events"]], dtype=float)


@pytest.fixture(scope="module")
def twin() -> DigitalTwin:
    """A twin of M(T, H) learned from three measured lines, with their run uids."""
    RE = RunEngine({})
    mag = Magnetometer(noise=0.0, name="mag")
    source = source_for(RE)
    RE(
        adaptive_line_scan(
            [mag.moment], mag.temperature, 10, 60, 11, mag.field, (100, 50000),
            twin_source=source, slow_feature="H", budget=3,
        )
    )  # fmt: skip
    assert source.fits == 0  # the budget is spent on the initial lines: no twin needed
    source.retrain()
    return source.twin


# -- simulate_scan -------------------------------------------------------------------------------


def test_simulate_scan_emits_a_simulated_run(RE, docs, twin):
    buffer = ScanBuffer(("T", "H"), "M")
    RE.subscribe(buffer)
    grid = make_grid(H=[1e4, 3e4], T=np.linspace(10, 60, 6))
    result = RE(simulate_scan(twin, grid, md={"sample": "ErCo2-like"}))

    validate(docs)
    assert [name for name, _ in docs] == ["start", "descriptor", "event_page", "event_page", "stop"]
    (run,) = runs(docs)
    start, descriptor, stop = run["start"], run["descriptor"], run["stop"]
    assert result.plan_result == start["uid"]
    assert stop["exit_status"] == "success"
    assert stop["num_events"] == {"primary": 12}
    json.dumps(start, allow_nan=False)  # plan_args and provenance are plain JSON

    assert start["data_origin"] == "simulated"
    assert start["tiled_specs"] == ["SimulatedRun"]
    assert start["sample"] == "ErCo2-like"
    assert start["plan_name"] == "simulate_scan"
    assert start["plan_args"]["twin"] == twin.id
    assert start["plan_args"]["grid"]["dims"] == ["H", "T"]
    assert start["plan_args"]["grid"]["axes"]["T"] == {"min": 10.0, "max": 60.0, "num": 6}
    assert start["num_points"] == 12
    hints = json.loads(json.dumps(start["hints"]))
    assert hints == {"fields": ["M"], "dimensions": [[["H"], "primary"], [["T"], "primary"]]}
    provenance = start["digital_twin"]
    assert provenance["id"] == twin.id
    assert provenance["learned_from"] == twin.metadata["provenance"]["run_uids"]
    assert len(provenance["learned_from"]) == 3
    assert provenance["hyperparameters"] == twin.hyperparameters
    assert provenance["validation_rmse"] == pytest.approx(twin.validation_rmse)
    assert provenance["ensemble_size"] == 2
    assert provenance["versions"] == twin.metadata["versions"]
    assert provenance["created"] == twin.metadata["created"]

    keys = descriptor["data_keys"]
    assert set(keys) == {"T", "H", "M", "M_std"}
    assert {k: keys[k]["units"] for k in keys} == {"T": "K", "H": "Oe", "M": "emu", "M_std": "emu"}
    assert all(keys[k]["dtype"] == "number" for k in keys)

    # One event per point in scan order (T swept at each H), values those of twin.predict.
    expected = twin.predict(grid).transpose("H", "T")
    assert [e["seq_num"] for e in run["events"]] == list(range(1, 13))
    np.testing.assert_allclose(column(run, "H"), np.repeat([1e4, 3e4], 6))
    np.testing.assert_allclose(column(run, "T"), np.tile(np.linspace(10, 60, 6), 2))
    np.testing.assert_allclose(column(run, "M"), expected["M"].values.ravel(), rtol=1e-12)
    np.testing.assert_allclose(column(run, "M_std"), expected["M_std"].values.ravel())
    # A twin never learns from its own output.
    assert buffer.n_points == 0


def test_simulate_scan_of_a_point_list_keeps_its_order_and_user_specs(RE, docs, twin):
    points = {"T": [40.0, 20.0, 30.0], "H": [5000.0, 100.0, 20000.0]}
    RE(simulate_scan(twin, points, md={"tiled_specs": ["Magnetometry"]}, name="sim"))

    validate(docs)
    (run,) = runs(docs)
    assert run["start"]["tiled_specs"] == ["Magnetometry", "SimulatedRun"]
    assert json.loads(json.dumps(run["start"]["hints"]))["dimensions"] == [[["T", "H"], "primary"]]
    assert run["descriptor"]["object_keys"] == {"sim": ["T", "H", "M", "M_std"]}
    np.testing.assert_allclose(column(run, "T"), points["T"])
    np.testing.assert_allclose(column(run, "M"), twin.predict(points)["M"].values, rtol=1e-12)


@pytest.mark.parametrize("origin", ["measured", "mixed"])
def test_simulate_scan_refuses_another_data_origin(RE, docs, twin, origin):
    with pytest.raises(ValueError, match="data_origin"):
        RE(simulate_scan(twin, make_grid(T=[10, 20], H=[100]), md={"data_origin": origin}))
    assert docs == []
    assert RE.state == "idle"


def test_plans_are_bluesky_plans():
    for plan in (simulate_scan, twin_guided_scan, adaptive_line_scan):
        assert is_plan(plan)


# -- twin_guided_scan ----------------------------------------------------------------------------


def guided(mag: Magnetometer, source: SyncTwinSource, **kwargs: Any):
    options = {
        "twin_source": source,
        "slow_feature": "H",
        "quantity": "map",
        "candidates": [12475.0, 24950.0],
        # A loose tolerance: the tiny twin's map must "converge" at the coarser candidate.
        "suggest_kwargs": {"tol": 10.0, "sweep_points": 11},
        "poll": 0.05,
        **kwargs,
    }
    return twin_guided_scan(
        [mag.moment], mag.temperature, *LINE.values(), mag.field, [100.0, 50000.0], **options
    )


def test_twin_guided_scan_measures_the_suggested_lines(RE, docs, mag):
    source = source_for(RE)
    result = RE(guided(mag, source, md={"operator": "test"}))

    validate(docs)
    suggestion = result.plan_result
    assert isinstance(suggestion, StepSuggestion)
    assert suggestion.step == 24950.0
    assert source.fits == 1  # one twin, after the coarse lines
    measured = measured_runs(docs)
    assert [r["start"]["phase"] for r in measured] == ["coarse", "coarse", "suggested"]
    for run in measured:
        start = run["start"]
        assert start["data_origin"] == "measured"
        assert start["operator"] == "test"
        assert start["plan_name"] == "twin_guided_scan"
        assert start["hints"]["dimensions"] == [(["mag_temperature"], "primary")]
        assert run["stop"]["exit_status"] == "success"
        assert len(run["events"]) == 6
        # The slow axis is read at every point, though only the moment was a detector.
        np.testing.assert_allclose(column(run, "mag_field"), start["slow_axis"]["value"])
    assert [r["start"]["slow_axis"]["value"] for r in measured] == [100.0, 50000.0, 25050.0]

    # The suggestion and its table travel with the suggested line.
    start = measured[-1]["start"]
    assert start["suggested_step"] == {"axis": "H", "value": 24950.0, "units": "Oe"}
    assert [row["step"] for row in start["step_table"]] == [12475.0, 24950.0]
    assert start["step_table"] == suggestion.to_dict()["table"]
    assert start["guided_by"]["twin_id"] == source.twin.id
    assert start["guided_by"]["learned_from"] == [r["start"]["uid"] for r in measured[:2]]
    assert "suggested_step" not in measured[0]["start"]

    # The decision as data: a simulated run between the coarse and the suggested lines, of the
    # twin's lines at the suggested step, with the candidate table as its `decision` stream.
    phases = [r["start"]["phase"] for r in runs(docs)]
    assert phases == ["coarse", "coarse", "decision", "suggested"]
    (decision,) = decision_runs(docs)
    assert start["decision_run"] == decision["start"]["uid"]
    assert decision["start"]["data_origin"] == "simulated"
    assert SIMULATED_SPEC in decision["start"]["tiled_specs"]
    assert decision["start"]["decided_by"] == "twin_guided_scan"
    assert decision["start"]["operator"] == "test"
    assert decision["start"]["decision"]["suggested_step"] == start["suggested_step"]
    assert decision["start"]["digital_twin"]["id"] == source.twin.id
    np.testing.assert_allclose(sorted(set(column(decision, "H"))), [100.0, 25050.0, 50000.0])
    assert len(decision["events"]) == 3 * 6  # the suggested measurement, simulated
    table = decision["streams"]["decision"]
    assert [e["data"]["step"] for e in table] == [12475.0, 24950.0]
    for event, row in zip(table, start["step_table"], strict=True):
        assert event["data"]["n_lines"] == row["n_lines"]
        assert event["data"]["error"] == pytest.approx(row["error"])
        assert event["data"]["time_s"] == pytest.approx(row["time_s"])


def test_twin_guided_scan_refuses_to_label_its_runs_simulated(RE, docs, mag):
    with pytest.raises(ValueError, match="data_origin"):
        RE(guided(mag, source_for(RE), md={"data_origin": "simulated"}))
    with pytest.raises(ValueError, match="SimulatedRun"):
        RE(guided(mag, source_for(RE), md={"tiled_specs": ["SimulatedRun"]}))
    assert docs == []


def test_guided_plan_fails_fast_when_the_buffer_takes_no_points(RE, docs, mag):
    source = SyncTwinSource(ScanBuffer(("T", "H"), "M", keys={**KEYS, "M": "no_such_key"}))
    RE.subscribe(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(RuntimeError, match="took no points"):
            RE(guided(mag, source))
    assert source.fits == 0
    assert [r["stop"]["exit_status"] for r in runs(docs)] == ["success", "success"]


# -- waiting for the twin ends cleanly -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "match"),
    [
        (Status("training"), TimeoutError, "within 0.3 s"),
        (Status("error", "out of memory"), RuntimeError, "out of memory"),
        (Status("closed", "closed: no more trainings"), RuntimeError, "closed"),
        # An error that is gone at the next look was an earlier training's: keep waiting.
        (StaleError(), TimeoutError, "within 0.3 s"),
    ],
)
def test_no_twin_ends_the_plan_cleanly(RE, docs, mag, status, error, match):
    source = source_for(RE, train=False, status=status)
    with pytest.raises(error, match=match):
        RE(guided(mag, source, timeout=0.3))
    assert RE.state == "idle"
    measured = measured_runs(docs)
    assert [r["start"]["phase"] for r in measured] == ["coarse", "coarse"]
    assert all(r["stop"]["exit_status"] == "success" for r in measured)


def test_pause_and_abort_while_waiting_for_the_twin(RE, docs, mag):
    source = source_for(RE, train=False)
    # Pause from another thread (as Ctrl+C would) once the plan waits for the twin.
    source.on_ask = lambda: threading.Timer(0.2, RE.request_pause).start()
    with pytest.raises(RunEngineInterrupted):
        RE(guided(mag, source, timeout=None))
    assert RE.state == "paused"
    RE.abort("no twin today")
    assert RE.state == "idle"
    measured = measured_runs(docs)
    assert len(measured) == 2  # the coarse lines, closed before the wait
    assert all(r["stop"]["exit_status"] == "success" for r in measured)


def test_pause_while_waiting_then_resume_measures_no_line_twice(RE, docs, mag):
    source = source_for(RE, train=False)
    source.on_ask = lambda: threading.Timer(0.2, RE.request_pause).start()
    with pytest.raises(RunEngineInterrupted):
        RE(guided(mag, source, timeout=None))
    source.train = True  # the twin can come now
    result = RE.resume()

    validate(docs)
    assert isinstance(result.plan_result, StepSuggestion)
    measured = measured_runs(docs)
    assert [r["start"]["phase"] for r in measured] == ["coarse", "coarse", "suggested"]
    assert all(len(r["events"]) == 6 for r in measured)


# -- adaptive_line_scan --------------------------------------------------------------------------


def adaptive(mag: Magnetometer, source: SyncTwinSource, **kwargs: Any):
    options = {
        "twin_source": source,
        "slow_feature": "H",
        "initial": (100.0, 50000.0),
        "candidates": 21,
        "poll": 0.05,
        **kwargs,
    }
    return adaptive_line_scan(
        [mag], mag.temperature, *LINE.values(), mag.field, (100.0, 50000.0), **options
    )


def test_adaptive_line_scan_spends_its_budget_where_the_twin_disagrees(RE, docs, mag):
    source = source_for(RE)
    result = RE(adaptive(mag, source, budget=3)).plan_result

    validate(docs)
    assert isinstance(result, AdaptiveResult)
    assert result.reason == "budget"
    assert len(result.values) == 3 and len(result.run_uids) == 3
    assert source.fits == 1
    (decision,) = result.decisions
    value = decision["value"]
    min_spacing = 49900 / 4  # half the spacing of 3 evenly spaced lines
    assert 100 + min_spacing <= value <= 50000 - min_spacing
    # The twin's networks disagree most there among the allowed candidates.
    candidates = np.linspace(100, 50000, 21)
    scores = score_lines(source.twin, "H", candidates, np.linspace(10, 60, 6))
    allowed = (candidates >= 100 + min_spacing) & (candidates <= 50000 - min_spacing)
    assert value == candidates[allowed][np.argmax(scores[allowed])]
    assert decision["score"] == pytest.approx(scores[allowed].max())

    measured = measured_runs(docs)
    assert [r["start"]["phase"] for r in measured] == ["initial", "initial", "adaptive"]
    assert all(r["start"]["data_origin"] == "measured" for r in measured)
    assert [r["start"]["uid"] for r in measured] == list(result.run_uids)
    start = measured[-1]["start"]
    assert start["decision"]["value"] == value
    assert start["decision"]["criterion"] == "disagreement"
    assert start["decision"]["twin_id"] == source.twin.id
    np.testing.assert_allclose(column(measured[-1], "mag_field"), value)

    # Each look at the twin as data: its line at the chosen value, every candidate's score.
    (look,) = decision_runs(docs)
    assert start["decision"]["decision_run"] == look["start"]["uid"] == decision["decision_run"]
    assert look["start"]["data_origin"] == "simulated"
    assert look["start"]["decision"]["action"] == "measure"
    np.testing.assert_allclose(column(look, "H"), value)
    table = look["streams"]["decision"]
    np.testing.assert_allclose([e["data"]["candidate"] for e in table], candidates)
    np.testing.assert_allclose([e["data"]["score"] for e in table], scores)
    assert [bool(e["data"]["allowed"]) for e in table] == list(allowed)


def test_adaptive_line_scan_stops_at_the_tolerance(RE, docs, mag):
    source = source_for(RE)
    result = RE(adaptive(mag, source, budget=10, tol=1e9)).plan_result
    assert result.reason == "tol"
    assert result.values == (100.0, 50000.0)
    assert result.decisions == ()
    assert result.final_score < 1e9
    assert len(measured_runs(docs)) == 2
    # The look that stopped it is data too.
    (look,) = decision_runs(docs)
    assert look["start"]["decision"]["action"] == "stop: below tol"


def test_adaptive_line_scan_checks_its_arguments(RE, mag):
    source = source_for(RE)
    with pytest.raises(ValueError, match="budget"):
        RE(adaptive(mag, source, budget=1))
    with pytest.raises(ValueError, match="within bounds"):
        RE(adaptive(mag, source, initial=(0.0, 60000.0)))
    with pytest.raises(ValueError, match="criterion"):
        RE(adaptive(mag, source, criterion="luck"))


# -- scoring lines (no training needed) ----------------------------------------------------------


class FormulaTwin:
    """Two networks' worth of a formula: they agree except near H = 30 000 Oe."""

    features = ("T", "H")
    target = "M"

    def __init__(self, n_members: int = 2):
        self.n_members = n_members

    def predict_members(self, points: xr.Dataset, warn: bool = True) -> xr.DataArray:
        T, H = xr.broadcast(points["T"], points["H"])
        base = (H / 50000.0) ** 2 + 0 * T
        bump = np.exp(-(((H - 30000.0) / 3000.0) ** 2))
        members = [base + i * 0.1 * bump for i in range(self.n_members)]
        return xr.concat(members, dim="member").transpose("member", "T", "H")


# -- confirm=True: a person accepts, edits or declines ------------------------------------------


def answer_when_posted(desk: Approvals, answer) -> threading.Thread:
    """Answer from another thread once the plan's proposal waits, as a user or queue client."""

    def run() -> None:
        for _ in range(3000):
            proposal = desk.pending
            if proposal is not None:
                answer(desk, proposal)
                return
            threading.Event().wait(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_confirmed_guided_scan_measures_the_lines_the_user_edited(RE, docs, mag):
    seen = []

    def edit(desk, proposal):
        seen.append(proposal)
        desk.edit([20000.0, 30000.0], by="queue")

    thread = answer_when_posted(approvals, edit)
    suggestion = RE(guided(mag, source_for(RE), confirm=True)).plan_result
    thread.join()

    validate(docs)
    (proposal,) = seen
    assert proposal.values == (25050.0,)  # what the twin proposed
    assert proposal.plan_name == "twin_guided_scan" and proposal.slow_feature == "H"
    (decision,) = decision_runs(docs)
    assert proposal.decision_run == decision["start"]["uid"]  # to look at before answering
    measured = measured_runs(docs)
    assert [r["start"]["phase"] for r in measured] == ["coarse"] * 2 + ["suggested"] * 2
    assert [r["start"]["slow_axis"]["value"] for r in measured[2:]] == [20000.0, 30000.0]
    for run in measured[2:]:
        assert run["start"]["approval"] == {
            "action": "edit",
            "values": [20000.0, 30000.0],
            "by": "queue",
        }
        assert run["start"]["suggested_step"] == suggestion.as_json_step()
    assert approvals.pending is None


def test_declined_guided_scan_measures_no_suggested_line(RE, docs, mag):
    thread = answer_when_posted(approvals, lambda desk, proposal: desk.decline())
    with pytest.warns(UserWarning, match="the suggestion was declined"):
        result = RE(guided(mag, source_for(RE), confirm=True)).plan_result
    thread.join()
    assert isinstance(result, StepSuggestion) and result.step == 24950.0
    assert [r["start"]["phase"] for r in runs(docs)] == ["coarse", "coarse", "decision"]


def test_confirmed_adaptive_scan_measures_the_edited_line_and_stops_when_declined(RE, docs, mag):
    answers = iter([lambda d: d.edit(30000.0), lambda d: d.decline()])
    proposals = []

    def answer_each() -> None:
        for answer in answers:
            for _ in range(3000):
                proposal = approvals.pending
                if proposal is not None and proposal not in proposals:
                    proposals.append(proposal)
                    answer(approvals)
                    break
                threading.Event().wait(0.01)

    thread = threading.Thread(target=answer_each, daemon=True)
    thread.start()
    result = RE(adaptive(mag, source_for(RE), budget=5, confirm=True)).plan_result
    thread.join()

    assert result.reason == "declined"
    assert result.values == (100.0, 50000.0, 30000.0)
    first, second = result.decisions
    assert first["approval"] == {"action": "edit", "values": [30000.0], "by": "python"}
    assert first["value"] == proposals[0].values[0] != 30000.0  # the twin's choice, kept
    assert second["approval"]["action"] == "decline"
    assert all(p.max_values == 1 and p.bounds == (100.0, 50000.0) for p in proposals)
    measured = measured_runs(docs)
    np.testing.assert_allclose(column(measured[-1], "mag_field"), 30000.0)
    assert measured[-1]["start"]["decision"]["approval"]["action"] == "edit"


def test_score_lines_disagreement_and_sensitivity():
    candidates = np.linspace(0, 50000, 11)
    fast = np.linspace(10, 60, 5)
    disagreement = score_lines(FormulaTwin(), "H", candidates, fast)
    assert candidates[np.argmax(disagreement)] == 30000.0
    # (H/50 kOe)^2 departs most from the straight line between 0 and 50 kOe at its middle.
    sensitivity = score_lines(
        FormulaTwin(1), "H", candidates, fast, criterion="sensitivity", measured=[0, 50000]
    )
    assert candidates[np.argmax(sensitivity)] == 25000.0
    np.testing.assert_allclose(sensitivity[[0, -1]], 0, atol=1e-12)
    with pytest.raises(ValueError, match="one network"):
        score_lines(FormulaTwin(1), "H", candidates, fast)


# -- the real TwinCallback -----------------------------------------------------------------------


@pytest.mark.slow
def test_twin_guided_scan_with_the_real_twin_callback(RE, docs, mag):
    callbacks = pytest.importorskip("bluesky_digitwin.callbacks")
    if not hasattr(callbacks, "TwinCallback"):
        # Not exported yet: its module, if it is there.
        callbacks = pytest.importorskip("bluesky_digitwin.callbacks.twin")
    cb = callbacks.TwinCallback(
        ("T", "H"), "M", keys=KEYS, fit_options=FIT, prewarm=False,
        policy=callbacks.RetrainPolicy(debounce=0.0, min_points=10),
    )  # fmt: skip
    RE.subscribe(cb)
    try:
        result = RE(guided(mag, cb, timeout=300))
    finally:
        cb.close()

    validate(docs)
    suggestion = result.plan_result
    assert suggestion.step == 24950.0
    measured = measured_runs(docs)
    assert [r["start"]["phase"] for r in measured] == ["coarse", "coarse", "suggested"]
    start = measured[-1]["start"]
    assert start["data_origin"] == "measured"
    assert start["guided_by"]["learned_from"] == [r["start"]["uid"] for r in measured[:2]]
