"""Hostile document streams: the buffer and the callback skip what is bad, keep what is good.

Property-based (hypothesis). Runs are generated with hostile values in their events (NaN, inf,
text, None, arrays, ints beyond float64, missing keys), some events packed into event pages
(some ragged), runs interleaved, an unknown stream alongside; then the stream is disturbed:
junk documents, documents delivered twice, documents moved earlier (an event before its
descriptor, a stop before its start), documents missing a key. The properties:

- no exception escapes :class:`ScanBuffer` or :class:`TwinCallback` (with warnings turned into
  errors, the callback logs them);
- points once buffered are never lost or changed; every point is finite and is one good event,
  taken once;
- a run no disturbance touched is buffered exactly: its good events in order, its bad events
  counted in ``ScanBuffer.skipped`` (by the first key that failed) and warned about.

A real RunEngine scan with an ophyd detector that reads NaN, inf and text finishes, with its
good points buffered.

Odd start metadata on its way to Tiled (one name where a list is expected, ``data_origin`` in
any case with spaces, numbers, lists): it is normalised or refused with a reason, and a real
RunEngine writing to a real Tiled server on loopback either refuses the run before it starts
or stores it in the container of its origin: no run is ever stored nowhere.

Settings: examples take milliseconds (a TwinCallback per example starts and joins one thread),
so hypothesis's defaults are kept except ``deadline=None``: thread start-up on a busy machine
is not what is tested.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import cycle
from typing import Any

import event_model
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count, scan
from hypothesis import given, settings
from hypothesis import strategies as st
from ophyd.sim import SynSignal, det

from bluesky_digitwin.buffer import ScanBuffer
from bluesky_digitwin.callbacks import RetrainPolicy, TwinCallback
from bluesky_digitwin.data import DataWarning
from bluesky_digitwin.sim import Magnetometer
from bluesky_digitwin.tiled import RunMetadataError, TwinCatalog, data_origin_of, normalize_start

Document = tuple[Any, Any]
FEATURES, TARGET = ("T", "H"), "M"
KEY_ORDER = (*FEATURES, TARGET)  # the order in which the buffer looks values up
#: A policy that never asks for a training: the tests stay in the document path.
NEVER_TRAIN = RetrainPolicy(on_stop=False, min_points=10_000)

STREAMS = settings(max_examples=100, deadline=None)


# -- values and what they mean -----------------------------------------------------------------

#: Values an event may carry; the buffer takes finite real scalars only.
values = st.one_of(
    st.floats(-1e6, 1e6),
    st.floats(-1e6, 1e6),
    st.floats(-1e6, 1e6),
    st.integers(-(2**40), 2**40),
    st.sampled_from(
        [
            math.nan,
            math.inf,
            -math.inf,
            1e308,
            -1e-320,
            True,
            2**2000,  # beyond float64
            np.float32(1.5),
            np.int64(-3),
            np.array(2.5),  # a 0-d array: a number
            np.finfo(np.longdouble).max,  # beyond float64 where longdouble is wider
            np.float64("nan"),
            "1.5",  # text, even if it reads as a number
            "overload",
            None,
            [1.0],
            {"value": 1.0},
            np.array([1.0, 2.0]),
            b"\x00",
        ]
    ),
)


def number(value: Any) -> float | None:
    """The oracle: the float the buffer must keep for ``value``, or None if it must skip it."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if not isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        return None
    try:
        with np.errstate(over="ignore"):
            result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


# -- runs ----------------------------------------------------------------------------------------


@dataclass
class Run:
    """One generated run: its documents, and what the buffer must make of them if undisturbed."""

    uid: str
    docs: list[Document]
    simulated: bool
    #: Per primary event, in order: (uid, seq_num, T, M, the first key that fails or None).
    events: list[tuple[str, int, float | None, float | None, str | None]] = field(
        default_factory=list
    )
    #: Events in ragged pages: never buffered, never counted (unless a disturbance drops the
    #: short column: see :func:`drop_key`).
    ragged: set[str] = field(default_factory=set)
    #: Uids of the events of each event page (by the page's id(), copies made by
    #: :func:`drop_key` too): a ragged page lacks the last uid.
    pages: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: Events of the unknown stream: points only if its descriptor lost its name (disturbed).
    other: list[tuple[str, int, float, float]] = field(default_factory=list)

    def good(self) -> list[tuple[str, int, float, float]]:
        return [
            (uid, seq, t, m)
            for uid, seq, t, m, failing in self.events
            if failing is None and uid not in self.ragged
        ]

    def bad(self) -> Counter[str]:
        return Counter(
            failing
            for uid, *_, failing in self.events
            if failing is not None and uid not in self.ragged
        )


def data_keys(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {n: {"source": "test", "dtype": "number", "shape": [], "units": "u"} for n in names}


@st.composite
def runs(draw: st.DrawFn) -> Run:
    """A run: start (H in its metadata), primary events, maybe pages, an unknown stream, stop."""
    simulated = draw(st.booleans()) and draw(st.booleans())  # one run in four
    field_value = draw(st.one_of(st.floats(0, 5e4), st.floats(0, 5e4), values))
    md: dict[str, Any] = {"H": field_value}
    if simulated:
        md["data_origin"] = "simulated"
    bundle = event_model.compose_run(metadata=md)
    start = bundle.start_doc
    docs: list[Document] = [("start", start)]
    primary = bundle.compose_descriptor(name="primary", data_keys=data_keys(["T", "M"]))
    docs.append(("descriptor", primary.descriptor_doc))
    run = Run(uid=start["uid"], docs=docs, simulated=simulated)
    if draw(st.booleans()):
        # A stream the buffer was not asked for: good-looking points it must not take.
        other = bundle.compose_descriptor(name="unknown-stream", data_keys=data_keys(["T", "M"]))
        # Values no primary event of this test has: its point, if taken, is told apart.
        values_ = {"T": 0.123456789, "M": -0.987654321}
        event = other.compose_event(data=values_, timestamps={}, validate=False)
        docs += [("descriptor", other.descriptor_doc), ("event", event)]
        # Unless its descriptor loses its name: then it is "primary" (as before event-model 1.0).
        run.other.append((event["uid"], event["seq_num"], values_["T"], values_["M"]))
    events = []
    for _ in range(draw(st.integers(0, 8))):
        row = {k: draw(values) for k in ("T", "M") if draw(st.integers(0, 9)) > 0}  # 10% lack
        event = primary.compose_event(data=row, timestamps=dict.fromkeys(row, 0.0), validate=False)
        events.append(event)
        found = {"T": row.get("T"), "H": field_value, "M": row.get("M")}
        numbers = {k: number(v) for k, v in found.items()}
        failing = [k for k in KEY_ORDER if numbers[k] is None]
        run.events.append(
            (
                event["uid"],
                event["seq_num"],
                numbers["T"],
                numbers["M"],
                failing[0] if failing else None,
            )
        )
    # Some consecutive events as one event page; some pages ragged (a column one short).
    i = 0
    while i < len(events):
        size = draw(st.integers(1, 4))
        chunk = events[i : i + size]
        i += size
        keys = {frozenset(e["data"]) for e in chunk}
        if len(chunk) < 2 or len(keys) > 1 or not draw(st.booleans()):
            docs.extend(("event", e) for e in chunk)
            continue
        page = event_model.pack_event_page(*chunk)
        run.pages[id(page)] = tuple(e["uid"] for e in chunk)
        if draw(st.booleans()) and draw(st.booleans()):
            column = draw(st.sampled_from(["uid", "time", "seq_num", *page["data"]]))
            if column in page["data"]:
                page["data"][column] = page["data"][column][:-1]
            else:
                page[column] = page[column][:-1]
            run.ragged.update(e["uid"] for e in chunk)
        docs.append(("event_page", page))
    docs.append(("stop", bundle.compose_stop()))
    return run


junk = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(
        st.sampled_from(["uid", "run_start", "descriptor", "data", "name", "time", "seq_num"]),
        # Never data that could form a point (no T or M key).
        st.one_of(st.none(), st.text(max_size=4), st.integers(), st.just({"x": 1})),
        max_size=4,
    ),
)
junk_documents = st.tuples(
    st.one_of(st.sampled_from(["start", "descriptor", "event", "event_page", "stop", "x"]), junk),
    junk,
)


@dataclass
class Stream:
    """Documents to deliver, the runs they come from, and which runs were disturbed."""

    docs: list[Document]
    runs: list[Run]
    disturbed: set[str]
    n_bad: int  # documents inserted or changed to be bad


def whole(page: dict[str, Any]) -> bool:
    """Whether an event page's columns (uid, time, seq_num, data) all have one length."""
    columns = [page[k] for k in ("uid", "time", "seq_num") if page.get(k) is not None]
    data = page.get("data")
    columns += list(data.values()) if isinstance(data, dict) else []
    return len({len(c) for c in columns}) <= 1


def drop_key(
    doc: dict[str, Any], key: str, owner: dict[int, str], by_uid: dict[str, Run]
) -> dict[str, Any]:
    """A copy of ``doc`` without ``key``, owned by the run of ``doc``.

    A ragged page whose short column (time or seq_num) is dropped is whole again: its rows
    are its events' own values, which the buffer takes (an event page may lack uid, time or
    seq_num, as an event may), so they are no longer ragged in the oracle's eyes.
    """
    copy = {k: v for k, v in doc.items() if k != key}
    owner[id(copy)] = owner.get(id(doc), "")
    run = by_uid.get(owner[id(copy)])
    if run is not None and id(doc) in run.pages:
        run.pages[id(copy)] = run.pages[id(doc)]
        if whole(copy):
            run.ragged.difference_update(run.pages[id(doc)])
    return copy


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    generated = draw(st.lists(runs(), max_size=3))
    # Interleave the runs, each in its own order.
    queues = [list(r.docs) for r in generated]
    owner = {id(doc): r.uid for r in generated for _, doc in r.docs}
    by_uid = {r.uid: r for r in generated}
    docs: list[Document] = []
    while any(queues):
        queue = draw(st.sampled_from([q for q in queues if q]))
        docs.append(queue.pop(0))
    disturbed: set[str] = set()
    n_bad = 0
    for _ in range(draw(st.integers(0, 6))):
        action = draw(st.sampled_from(["junk", "twice", "earlier", "drop-key", "rename"]))
        if action == "junk" or not docs:
            docs.insert(draw(st.integers(0, len(docs))), draw(junk_documents))
            n_bad += 1
            continue
        i = draw(st.integers(0, len(docs) - 1))
        name, doc = docs[i]
        if isinstance(doc, dict) and id(doc) in owner:
            disturbed.add(owner[id(doc)])
        if action == "twice":  # the same document delivered again, later
            docs.insert(draw(st.integers(i + 1, len(docs))), (name, doc))
        elif action == "earlier":  # out of order: e.g. an event before its descriptor
            docs.insert(draw(st.integers(0, i)), docs.pop(i))
        elif action == "drop-key" and isinstance(doc, dict) and doc:
            # Never the uid of an event or an event page (whatever name it is delivered
            # under): the buffer takes events without one, so one delivered twice could not
            # be told from its repeat, and "taken once" would not hold by construction.
            key = draw(
                st.sampled_from(sorted(k for k in doc if k != "uid" or "descriptor" not in doc))
            )
            docs[i] = (name, drop_key(doc, key, owner, by_uid))
        elif action == "rename":
            docs[i] = (draw(st.sampled_from(["start", "descriptor", "event", "stop"])), doc)
        n_bad += 1
    return Stream(docs=docs, runs=generated, disturbed=disturbed, n_bad=n_bad)


# -- checking ----------------------------------------------------------------------------------


def rows(buffer: ScanBuffer) -> list[tuple[str, int, float, float, float]]:
    ds = buffer.snapshot()
    return list(
        zip(
            ds["run_uid"].values.tolist(),
            ds["seq_num"].values.tolist(),
            ds["T"].values.tolist(),
            ds["H"].values.tolist(),
            ds["M"].values.tolist(),
            strict=True,
        )
    )


def feed_and_watch(take: Any, buffer: ScanBuffer, docs: list[Document]) -> list[str]:
    """Deliver ``docs`` to ``take`` (never raising); check nothing buffered is ever lost.

    Returns the DataWarnings' messages.
    """
    messages: list[str] = []
    earlier: list[list[Any]] = []  # what was buffered after (at most 5) bad documents
    n = 0
    for name, doc in docs:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            take(name, doc)  # must not raise
        new = [str(w.message) for w in record if issubclass(w.category, DataWarning)]
        messages += new
        assert buffer.n_points >= n, "points were lost"
        n = buffer.n_points
        if (new or name not in ("start", "descriptor", "event", "event_page", "stop")) and (
            len(earlier) < 5
        ):
            earlier.append(rows(buffer))
    final = rows(buffer)
    for before in earlier:
        # Still there, unchanged, in front.
        assert final[: len(before)] == before
    return messages


def check_buffer(buffer: ScanBuffer, stream: Stream, messages: list[str]) -> None:
    final = rows(buffer)
    assert len(final) == buffer.n_points
    # Every point is finite, is one good event, and is taken once. (Of a measured run, too:
    # but a disturbed simulated run may have lost its data_origin, so that is checked below.)
    good = {(run.uid, seq, t, m): uid for run in stream.runs for uid, seq, t, m in run.good()}
    good.update(
        ((run.uid, seq, t, m), uid)
        for run in stream.runs
        if run.uid in stream.disturbed
        for uid, seq, t, m in run.other
    )
    h_of = {r.uid: number(r.docs[0][1]["H"]) for r in stream.runs}
    for run_uid, seq, t, h, m in final:
        assert all(math.isfinite(v) for v in (t, h, m))
        assert (run_uid, seq, t, m) in good or seq == -1, (run_uid, seq, t, m)
        assert h == h_of[run_uid]
    taken = [(r, s, t, m) for r, s, t, _, m in final if s != -1]
    assert len(taken) == len(set(taken)), "an event was taken twice"
    # A run nothing disturbed: exactly its good events, its bad ones counted and warned.
    skipped = buffer.skipped
    for run in stream.runs:
        if run.uid in stream.disturbed:
            continue
        mine = [(s, t, m) for r, s, t, _, m in final if r == run.uid]
        if run.simulated:
            assert mine == [] and run.uid not in skipped
            continue
        assert mine == [(s, t, m) for _, s, t, m in run.good()]
        bad = run.bad()
        assert Counter(skipped.get(run.uid, {})) == bad
        if bad:
            assert any(run.uid in message for message in messages)
    if stream.n_bad == 0 and not any(r.bad() or r.ragged for r in stream.runs if not r.simulated):
        assert messages == [], messages


# -- the buffer --------------------------------------------------------------------------------


@STREAMS
@given(stream=streams())
def test_scan_buffer_takes_any_stream(stream: Stream) -> None:
    buffer = ScanBuffer(FEATURES, TARGET)
    messages = feed_and_watch(buffer, buffer, stream.docs)
    check_buffer(buffer, stream, messages)


# -- the callback ------------------------------------------------------------------------------


@STREAMS
@given(stream=streams(), strict=st.booleans())
def test_twin_callback_takes_any_stream(stream: Stream, strict: bool) -> None:
    """As the buffer; with DataWarnings turned into errors, the callback logs, never raises."""
    reference = ScanBuffer(FEATURES, TARGET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        for name, doc in stream.docs:
            reference(name, doc)
    with TwinCallback(FEATURES, TARGET, policy=NEVER_TRAIN, prewarm=False) as cb:

        def take(name: Any, doc: Any) -> None:
            with warnings.catch_warnings():
                if strict:
                    warnings.simplefilter("error", DataWarning)
                assert cb(name, doc) == (name, doc)

        messages = feed_and_watch(take, cb.buffer, stream.docs)
        if strict:
            assert messages == []  # raised, and logged by the callback
        else:
            check_buffer(cb.buffer, stream, messages)
        # The warnings come after the document is taken: raised as errors, they lose nothing.
        assert rows(cb.buffer) == rows(reference)
        assert cb.buffer.skipped == reference.skipped
        assert cb.status.trainings == 0


# -- cases worth naming ------------------------------------------------------------------------


def one_run(rows_: list[dict[str, Any]], md: dict[str, Any] | None = None) -> list[Document]:
    bundle = event_model.compose_run(metadata={"H": 1.0, **(md or {})})
    descriptor = bundle.compose_descriptor(name="primary", data_keys=data_keys(["T", "M"]))
    events = [
        ("event", descriptor.compose_event(data=r, timestamps={}, validate=False)) for r in rows_
    ]
    return [
        ("start", bundle.start_doc),
        ("descriptor", descriptor.descriptor_doc),
        *events,
        ("stop", bundle.compose_stop()),
    ]


def test_nan_inf_and_text_are_skipped_counted_and_warned_once() -> None:
    buffer = ScanBuffer(FEATURES, TARGET)
    docs = one_run(
        [{"T": t, "M": m} for t, m in [(1, 1), (math.nan, 2), (3, math.inf), (4, "x"), (5, 5)]]
    )
    with pytest.warns(DataWarning) as record:
        for name, doc in docs:
            buffer(name, doc)
    messages = [str(w.message) for w in record]
    assert len(messages) == 2  # one per key: 'T', 'M'
    assert all("not a finite number" in m for m in messages)
    assert buffer.snapshot()["T"].values.tolist() == [1.0, 5.0]
    assert buffer.skipped == {docs[0][1]["uid"]: {"T": 1, "M": 2}}


def test_an_event_delivered_twice_is_taken_once() -> None:
    buffer = ScanBuffer(FEATURES, TARGET)
    start, descriptor, event, stop = one_run([{"T": 1.0, "M": 2.0}])
    with pytest.warns(DataWarning, match="taken before"):
        for name, doc in (start, descriptor, event, event, stop):
            buffer(name, doc)
    assert buffer.n_points == 1


def test_a_ragged_event_page_is_skipped_whole() -> None:
    buffer = ScanBuffer(FEATURES, TARGET)
    start, descriptor, *events, stop = one_run([{"T": float(i), "M": 1.0} for i in range(4)])
    page = event_model.pack_event_page(*(doc for _, doc in events))
    page["data"]["M"] = page["data"]["M"][:-1]
    for name, doc in (start, descriptor):
        buffer(name, doc)
    with pytest.warns(DataWarning, match=r"differ in length.*data\['M'\]: 3"):
        buffer("event_page", page)
    assert buffer.n_points == 0
    buffer("event_page", event_model.pack_event_page(*(doc for _, doc in events)))
    buffer(*stop)
    assert buffer.n_points == 4


def test_a_stop_before_its_start_and_an_event_before_its_descriptor() -> None:
    buffer = ScanBuffer(FEATURES, TARGET)
    start, descriptor, first, second, stop = one_run([{"T": 1.0, "M": 1.0}, {"T": 2.0, "M": 2.0}])
    with pytest.warns(DataWarning) as record:
        for name, doc in (stop, start, first, descriptor, second):
            buffer(name, doc)
    messages = " | ".join(str(w.message) for w in record)
    assert "whose start was not seen" in messages and "was not seen" in messages
    # The stop came too early to close the run, the first event too early to be placed.
    assert buffer.snapshot()["T"].values.tolist() == [2.0]


def test_a_ragged_page_made_whole_by_a_dropped_column_gives_good_points() -> None:
    """Regression (a stored falsifying example, minimal): a page ragged in its time column
    loses that column to a disturbance; it is whole again, its rows its events' own: the
    oracle counts them good, as the buffer takes them."""
    bundle = event_model.compose_run(metadata={"H": 0.0})
    descriptor = bundle.compose_descriptor(name="primary", data_keys=data_keys(["T", "M"]))
    events = [
        descriptor.compose_event(data={"T": t, "M": 1.0}, timestamps={}, validate=False)
        for t in (1.0, 2.0)
    ]
    page = event_model.pack_event_page(*events)
    page["time"] = page["time"][:-1]
    start, stop = ("start", bundle.start_doc), ("stop", bundle.compose_stop())
    run = Run(
        uid=bundle.start_doc["uid"],
        docs=[start, ("descriptor", descriptor.descriptor_doc), ("event_page", page), stop],
        simulated=False,
        events=[(e["uid"], e["seq_num"], e["data"]["T"], 1.0, None) for e in events],
        ragged={e["uid"] for e in events},
        pages={id(page): tuple(e["uid"] for e in events)},
    )
    owner = {id(doc): run.uid for _, doc in run.docs}
    mended = drop_key(page, "time", owner, {run.uid: run})
    assert run.ragged == set()
    stream = Stream(
        docs=[*run.docs[:2], ("event_page", mended), stop],
        runs=[run],
        disturbed={run.uid},
        n_bad=1,
    )
    buffer = ScanBuffer(FEATURES, TARGET)
    check_buffer(buffer, stream, feed_and_watch(buffer, buffer, stream.docs))
    assert buffer.snapshot()["T"].values.tolist() == [1.0, 2.0]


def test_a_seq_num_beyond_int64_does_not_break_snapshots() -> None:
    buffer = ScanBuffer(FEATURES, TARGET)
    start, descriptor, event, stop = one_run([{"T": 1.0, "M": 1.0}])
    for name, doc in (start, descriptor, ("event", {**event[1], "seq_num": 2**70}), stop):
        buffer(name, doc)
    assert buffer.snapshot()["seq_num"].values.tolist() == [-1]


# -- a real RunEngine with a detector that misbehaves -------------------------------------------


def test_a_runengine_scan_with_a_hostile_detector_finishes(caplog) -> None:
    readings = [1.0, math.nan, 2.0, math.inf, "overload", 3.0, -math.inf, None, 4.0, 2**2000]
    values_ = cycle(readings)
    hostile = SynSignal(func=lambda: next(values_), name="hostile")
    mag = Magnetometer(name="mag", seed=0, seconds_per_point=0)
    keys = {"T": "mag_temperature", "H": "mag_field", "M": "hostile"}
    RE = RunEngine({})
    with TwinCallback(FEATURES, TARGET, keys=keys, policy=NEVER_TRAIN, prewarm=False) as cb:
        RE.subscribe(cb)
        with caplog.at_level(logging.ERROR, logger="bluesky_digitwin.callbacks.twin"):
            with warnings.catch_warnings():
                # Strict: the callback must keep its warnings (turned into errors) to itself.
                warnings.simplefilter("error", DataWarning)
                (uid,) = RE(scan([mag, hostile], mag.temperature, 10, 60, len(readings)))
        assert RE.state == "idle"
        ds = cb.buffer.snapshot()
        buffered = ds["M"].values.tolist()
        assert buffered and all(math.isfinite(v) for v in buffered)
        assert set(buffered) <= {1.0, 2.0, 3.0, 4.0}
        assert sum(cb.buffer.skipped[uid].values()) == len(readings) - len(buffered)
        assert "TwinCallback ignored an error" in caplog.text  # the warning, logged
        np.testing.assert_allclose(ds["T"], np.linspace(10, 60, len(readings))[ds["seq_num"] - 1])


# -- odd start-document metadata on its way to Tiled ---------------------------------------------

#: Whitespace of the kinds people type around a word.
blanks = st.text(alphabet=" \t\n\r", max_size=3)
#: ``data_origin`` as people write it: the two words in any case with spaces, other words,
#: non-text values.
origins = st.one_of(
    st.builds(
        lambda word, case, before, after: before + case(word) + after,
        st.sampled_from(["measured", "simulated"]),
        st.sampled_from([str.lower, str.upper, str.title, str.swapcase]),
        blanks,
        blanks,
    ),
    st.text(max_size=12),
    st.sampled_from(["measure", "simulation", "", "measured simulated", "Measured."]),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.sampled_from(["measured", "simulated"]), max_size=2),
)
spec_names = st.one_of(
    st.sampled_from(
        ["MySpec", "SimulatedRun", "BlueskyRun", "BlueskyEventStream", "XRD", "A B", ""]
    ),
    st.text(max_size=8),
)
versions = st.sampled_from(["1", "3.0", ""])
one_spec = st.one_of(
    spec_names,
    st.fixed_dictionaries({"name": spec_names}, optional={"version": versions}),
    st.integers(),
    st.none(),
)
#: ``tiled_specs``: a list as Tiled wants, or one name, one dict, a number, a tuple...
specs = st.one_of(
    st.lists(one_spec, max_size=4),
    spec_names,
    st.fixed_dictionaries({"name": spec_names}),
    st.tuples(spec_names, spec_names),
    st.integers(),
    st.floats(),
)
start_metadata = st.fixed_dictionaries({}, optional={"data_origin": origins, "tiled_specs": specs})


def canonical_origin(md: dict[str, Any]) -> str | None:
    """What ``data_origin`` unambiguously means, if anything: the word, whatever case or spaces."""
    declared = md.get("data_origin")
    if isinstance(declared, str) and declared.strip().lower() in ("measured", "simulated"):
        return declared.strip().lower()
    return None


@settings(max_examples=300, deadline=None)
@given(md=start_metadata)
def test_start_metadata_is_normalised_or_refused(md: dict[str, Any]) -> None:
    try:
        normal = normalize_start(md)
    except RunMetadataError as exc:
        # Refused, with a reason naming the field; never for a plain variant of the two words
        # with usable specs (only a measured run naming SimulatedRun contradicts itself).
        assert "data_origin" in str(exc) or "tiled_specs" in str(exc)
        if canonical_origin(md) is not None and "data_origin" not in str(exc).split(";")[0]:
            assert "tiled_specs" in str(exc) or "either measured or simulated" in str(exc)
        return
    if md.get("data_origin") is not None:
        assert normal["data_origin"] == canonical_origin(md)
    if md.get("tiled_specs") is not None:
        stored = normal["tiled_specs"]
        assert isinstance(stored, list) and len(stored) <= 19
        keys = [(s, None) if isinstance(s, str) else (s["name"], s["version"]) for s in stored]
        assert len(set(keys)) == len(keys)
        assert not {"BlueskyRun", "BlueskyEventStream", "CatalogOfBlueskyRuns"} & {
            name for name, _ in keys
        }  # the layout's own specs, which would make clients misread the run
        if isinstance(md["tiled_specs"], str):  # one name: a list of it (unless TiledWriter's)
            assert stored == ([] if md["tiled_specs"] == "BlueskyRun" else [md["tiled_specs"]])
    assert data_origin_of(normal) in ("measured", "simulated")
    assert normalize_start(normal) == normal  # canonical: nothing left to change


@pytest.fixture(scope="module")
def tiled_catalog(tmp_path_factory) -> Iterable[TwinCatalog]:
    with TwinCatalog.embedded(tmp_path_factory.mktemp("tiled")) as catalog:
        yield catalog


@settings(max_examples=25, deadline=None)
@given(md=start_metadata)
def test_a_run_with_odd_metadata_is_stored_or_never_started(
    tiled_catalog: TwinCatalog, md: dict[str, Any]
) -> None:
    """A real RunEngine writing to a real Tiled server: no run is ever stored nowhere."""
    RE = RunEngine({})
    tiled_catalog.subscribe(RE)
    starts: list[dict[str, Any]] = []
    RE.subscribe(lambda name, doc: starts.append(doc), "start")
    try:
        (uid,) = RE(count([det], 1, md=md))
    except RunMetadataError:
        assert starts == []  # refused before the run started: there is nothing to lose
        return
    origin = data_origin_of(normalize_start(md))
    other = "simulated" if origin == "measured" else "measured"
    assert uid in tiled_catalog.container(origin)
    assert uid not in tiled_catalog.container(other)
    assert tiled_catalog.container(origin)[uid].start["data_origin"] == origin
    assert not list(tiled_catalog.backup_directory.glob("*.jsonl"))
