"""ScanBuffer: bluesky documents of one or many runs in, one xarray Dataset along ``point`` out.

A :class:`ScanBuffer` is a bluesky callback (``RE.subscribe(buffer)``). It keeps, for every
event of the chosen stream, the features, the target and where the point came from, and hands
out consistent copies (:meth:`ScanBuffer.snapshot`) to whoever trains a twin, from any thread.

It is built to sit in the RunEngine's document path: an event costs a few dictionary look-ups
and list appends, a bad or unexpected document costs a
:class:`~bluesky_digitwin.errors.DataWarning`, never an exception (an exception in a callback
would abort the scan).
"""

from __future__ import annotations

import math
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import xarray as xr

from bluesky_digitwin.errors import DataWarning, DigitwinInputError
from bluesky_digitwin.run_documents import MEASURED, DataOriginError, data_origin_of

__all__ = ["BufferLayout", "DataKeyError", "ScanBuffer"]

#: Names of the bookkeeping coordinates; features and target cannot use them.
BOOKKEEPING = ("run_uid", "time", "seq_num")

#: The stream bluesky's SupplementalData writes its baseline readings to.
BASELINE_STREAM = "baseline"

#: Valid bluesky documents that carry nothing a ScanBuffer uses (external data is not read).
_PASSED_OVER = frozenset({"resource", "datum", "datum_page", "stream_resource", "stream_datum"})

#: Remember at most this many unknown descriptor uids (to warn once each), so that a stream of
#: garbage cannot grow the buffer's memory without bound.
_MAX_UNKNOWN = 10_000

#: Remember at most this many event uids of an open run (to skip an event delivered twice);
#: forgotten at the run's stop, after which its events are skipped anyway.
_MAX_EVENT_UIDS = 1_000_000

#: seq_num is stored as int64; anything else is recorded as -1 ("unknown").
_INT64 = np.iinfo(np.int64)

_MISSING = object()

# What a descriptor's stream is to the buffer.
_POINTS, _BASELINE, _OTHER = "points", "baseline", "other"

#: The pseudo-field bluesky's count() names as its dimension: not a data key, never a feature.
_TIME = "time"


class DataKeyError(DigitwinInputError):
    """A run's documents lack the data keys a buffer needs, or do not say which they are.

    The message names what is missing and lists the data keys the run has. A
    :class:`ScanBuffer` never raises it in the document path (an exception there would abort
    the scan): it issues the message as a :class:`~bluesky_digitwin.errors.DataWarning`, once per
    run, and keeps the error as :attr:`ScanBuffer.key_error`;
    :meth:`TwinCallback.wait <bluesky_digitwin.callbacks.TwinCallback.wait>` raises it.

    Attributes
    ----------
    run_uid
        The run whose points were skipped.
    data_keys
        The data keys that run has (events, baseline and configuration), sorted.
    """

    def __init__(self, message: str, *, run_uid: str, data_keys: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.run_uid = run_uid
        self.data_keys = tuple(sorted(data_keys))


@dataclass(frozen=True)
class BufferLayout:
    """The variables of a :class:`ScanBuffer`: their names, and the data key of each.

    Attributes
    ----------
    features
        Names of the inputs, in order.
    target
        Name of the measured variable.
    keys
        Name -> data key, for every feature and the target (read-only).
    inferred
        True when the names came from a run's hints (``ScanBuffer()`` without features or
        target); each inferred name is its own data key.
    """

    features: tuple[str, ...]
    target: str
    keys: Mapping[str, str]
    inferred: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """The features, then the target."""
        return (*self.features, self.target)


@dataclass
class _Run:
    """What the buffer remembers of one run."""

    uid: str
    start: Mapping[str, Any]
    origin: str
    ignored: bool
    closed: bool = False
    #: Latest baseline reading of each wanted data key (of every key until the buffer knows
    #: which it wants: the baseline comes before the first descriptor of points).
    baseline: dict[str, Any] = field(default_factory=dict)
    #: Data keys of the run's baseline stream, and their units until the buffer knows its keys.
    baseline_keys: set[str] = field(default_factory=set)
    baseline_units: dict[str, str] = field(default_factory=dict)
    #: Reasons already warned about for this run (each is warned once).
    warned: set[str] = field(default_factory=set)
    #: Uids of the events taken while the run is open.
    event_uids: set[str] = field(default_factory=set)
    #: First seen in documents read back from storage (:meth:`ScanBuffer.replay`), not live.
    replayed: bool = False
    #: Of a replayed run still open: how many stored events of the points stream had each
    #: seq_num, so that the same events seen live are not taken again (storage keeps no
    #: event uids).
    stored_seq_nums: Counter[int] = field(default_factory=Counter)


@dataclass
class _Stream:
    """One event descriptor: its run, its role, its configuration values of wanted keys, and
    (for a stream of points) what it declares, to say what exists when a key is missing."""

    run: _Run
    role: str
    configuration: dict[str, Any]
    data_keys: frozenset[str] = frozenset()
    configuration_keys: frozenset[str] = frozenset()
    dimensions: tuple[str, ...] = ()
    hinted: tuple[str, ...] = ()


class ScanBuffer:
    """Collect the points of bluesky runs into an xarray Dataset along the dimension ``point``.

    Subscribe it to a RunEngine (``RE.subscribe(buffer)``) or feed it documents by hand
    (``buffer(name, doc)`` or ``buffer.ingest(name, doc)``). Each event of the chosen stream
    becomes one point with the features, the target, and the bookkeeping coordinates
    ``run_uid``, ``time`` (the event's time) and ``seq_num``.

    Where a value comes from. The target is read from the event's data only. A feature is
    looked up, in this order, in

    1. the event's data;
    2. the latest reading of its key in the run's ``"baseline"`` stream (bluesky's
       ``SupplementalData(baseline=[...])``);
    3. the event descriptor's ``configuration`` (the read_configuration() of the detectors);
    4. the run's start document, ``start[key]`` (e.g. ``md={"H": 5000}`` given to the plan).

    So a 2-D map can be assembled from many 1-D line scans: a temperature scan at a fixed field
    has no field in its events, but the field can come from the baseline or the metadata. An
    event whose value cannot be found, or is not a finite real number (NaN, inf, text, an
    array), is skipped; one :class:`~bluesky_digitwin.errors.DataWarning` per run and key says
    so, and :attr:`skipped` counts them.

    Which data keys. With ``features`` and ``target`` left out, the buffer takes them from the
    first run it learns from, as bluesky's plans describe it: the features are the fields of
    the scanned motors (the start document's ``hints["dimensions"]``, or its ``motors``), the
    target is the one field the detectors hint (the descriptor's ``hints``, each object's
    ``fields``), each under its data key as name. That works for ``scan``, ``rel_scan``,
    ``list_scan`` and ``grid_scan`` over ophyd and ophyd-async devices alike; ``count`` scans
    no motor, so its features are named (for instance the data keys of a baseline). Either can
    be named and the other left to the hints. Once taken, the names hold for every later run.

    A run that does not say which its keys are (no motor, several hinted detector fields), or
    whose documents lack a named key everywhere, is skipped with one
    :class:`DataKeyError` message, listing the data keys it has, as a
    :class:`~bluesky_digitwin.errors.DataWarning`; the latest is :attr:`key_error`.

    Units (``attrs["units"]`` of each variable) come from the ``units`` of the data keys of the
    descriptors (the chosen stream's, the baseline's, or the configuration's); failing that,
    from a ``units`` mapping in the start document, keyed by data key or by buffer name
    (``md={"H": 5000, "units": {"H": "Oe"}}``). The first units seen for a variable are kept;
    a run reporting others triggers a warning.

    Runs whose start document says ``data_origin: "simulated"`` (results of a twin) are ignored
    unless ``include_simulated`` is True, so that a twin never learns from its own output.

    Bad documents (an event of an unknown descriptor, a descriptor before its start, a document
    after its run's stop, an event whose uid was already taken, an event page whose columns
    differ in length, a malformed document) are skipped with a warning; points already
    buffered are never lost, except by :meth:`clear`.

    Runs stored earlier (in Tiled) are read back with :meth:`replay`, which takes their
    documents as :meth:`ingest` takes live ones and remembers where each run came from, so
    that a run arriving both ways is counted once.

    Parameters
    ----------
    features
        Names of the input variables (e.g. ``("T", "H")``); None (the default): the scanned
        motors' fields of the first run learned from.
    target
        Name of the measured variable (e.g. ``"M"``); None (the default): the detector field
        that run hints.
    keys
        Buffer name -> data key (e.g. ``{"T": "mag_temperature", "H": "mag_field",
        "M": "mag_moment"}``); names left out are their own data key. Only for names given.
    stream
        Name of the event stream whose events are points (bluesky's default is ``"primary"``).
    include_simulated
        Also buffer runs marked ``data_origin: "simulated"``.

    Examples
    --------
    >>> buffer = ScanBuffer(("T", "H"), "M", keys={"T": "mag_temperature", "M": "mag_moment"})
    >>> RE.subscribe(buffer)
    >>> RE(bps.mv(mag.field, 5000))
    >>> RE(scan([mag.moment], mag.temperature, 10, 60, 51, md={"H": 5000}))
    >>> buffer.snapshot()["M"].attrs["units"]
    'emu'

    Without names, a grid scan says what is what:

    >>> buffer = ScanBuffer()
    >>> RE(grid_scan([mag.moment], mag.temperature, 10, 60, 11, mag.field, 0, 5e4, 6), buffer)
    >>> buffer.features, buffer.target
    (('mag_temperature', 'mag_field'), 'mag_moment')
    """

    def __init__(
        self,
        features: Iterable[str] | str | None = None,
        target: str | None = None,
        *,
        keys: Mapping[str, str] | None = None,
        stream: str = "primary",
        include_simulated: bool = False,
    ) -> None:
        if features is not None:
            features = (features,) if isinstance(features, str) else tuple(features)
            features = tuple(str(f) for f in features)
            if not features:
                raise DigitwinInputError(
                    "no features given; name at least one input, e.g. ('T',), or leave "
                    "features out to take the scanned motors"
                )
        target = None if target is None else str(target)
        self.stream = str(stream)
        self.include_simulated = bool(include_simulated)
        names = (*(features or ()), *(() if target is None else (target,)))
        if len(set(names)) != len(names):
            raise DigitwinInputError(f"features and target repeat a name: {names}")
        reserved = [n for n in names if n in BOOKKEEPING]
        if reserved:
            raise DigitwinInputError(
                f"{', '.join(map(repr, reserved))} is reserved for bookkeeping; use another "
                f"name and map it to the data key, e.g. keys={{'t': {reserved[0]!r}}}"
            )
        keys = dict(keys or {})
        unknown = [k for k in keys if k not in names]
        if unknown:
            advice = (
                f"(those are {', '.join(names)})"
                if features is not None and target is not None
                else "(name both, e.g. ScanBuffer(('T', 'H'), 'M', keys=...), to map them)"
            )
            raise DigitwinInputError(
                f"keys names {', '.join(map(repr, unknown))}, which is neither a feature nor "
                f"the target {advice}"
            )
        if not all(isinstance(v, str) for v in keys.values()):
            raise DigitwinInputError("keys must map buffer names to data keys (strings)")
        # What was given; the rest comes from the first run learned from (_infer_layout).
        self._given_features: tuple[str, ...] | None = features
        self._given_target: str | None = target
        self._given_keys: dict[str, str] = {name: keys.get(name, name) for name in names}
        # The layout is set once (here, or from a run's hints before its first point) and then
        # never changes; the event path reads it without a lock.
        self._layout: BufferLayout | None = None
        self._wanted: frozenset[str] = frozenset()
        self._lookups: tuple[tuple[str, str, bool], ...] = ()
        self._key_error: DataKeyError | None = None

        # Document state, touched only under _state_lock (one document at a time).
        self._state_lock = threading.RLock()
        self._runs: dict[str, _Run] = {}
        self._streams: dict[str, _Stream] = {}
        self._unknown_descriptors: set[str] = set()
        self._pending: list[str] | None = None  # warnings of the document being taken
        self._replaying = False  # the document being taken was read back from storage
        self._skipped: dict[str, dict[str, int]] = {}
        self._handlers: dict[str, Callable[[Mapping[str, Any]], None]] = {
            "start": self._start,
            "descriptor": self._descriptor,
            "event": self._event,
            "event_page": self._event_page,
            "stop": self._stop,
        }

        # Points, touched under _data_lock, which is held only for appends and O(1) reads.
        # One column per name of the layout, then the bookkeeping ones (none without a layout).
        self._data_lock = threading.Lock()
        self._columns: list[list[Any]] = []
        self._n = 0
        self._version = 0
        self._run_origins: dict[str, str] = {}  # runs with points, in order of their first point
        # Units by buffer name: from data keys, and (second choice) from start documents.
        self._units: dict[str, str] = {}
        self._start_units: dict[str, str] = {}
        if features is not None and target is not None:
            self._set_layout(BufferLayout(features, target, MappingProxyType(self._given_keys)))

    # -- the public face -----------------------------------------------------------------------

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        """Take one document, like any bluesky callback (see :meth:`ingest`)."""
        self.ingest(name, doc)

    def ingest(self, name: str, doc: Mapping[str, Any]) -> None:
        """Take one document: ``start``, ``descriptor``, ``event``, ``event_page`` or ``stop``.

        Other bluesky documents (resource, datum, ...) are passed over. Never raises for a bad
        document: it is skipped with a :class:`~bluesky_digitwin.errors.DataWarning`.

        The warnings are issued after the document is taken, so that warnings turned into
        errors (``warnings.simplefilter("error")``) reach the caller without costing the good
        points of the document they are about.
        """
        pending: list[str] = []
        with self._state_lock:
            self._pending = pending
            try:
                handler = self._handlers.get(name) if isinstance(name, str) else None
                if handler is None:
                    if name not in _PASSED_OVER:
                        self._warn(f"ignored a document of unknown kind {name!r}")
                elif not isinstance(doc, Mapping):
                    self._warn(f"ignored a {name!r} document that is a {type(doc).__name__}")
                else:
                    handler(doc)
            except Warning:
                raise  # the caller turned warnings into errors: theirs to see, unchanged
            except Exception as exc:
                # The backstop: whatever a malformed document trips over, the RunEngine must
                # not see an exception (it would abort the scan).
                self._warn(f"ignored a malformed {name!r} document ({type(exc).__name__}: {exc})")
            finally:
                self._pending = None
        for message in pending:
            warnings.warn(message, DataWarning, stacklevel=3)

    def replay(self, documents: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Take the documents of runs read back from storage, as :meth:`ingest` takes live ones.

        The points are those a live buffer would have made of the same runs
        (:func:`bluesky_digitwin.tiled.run_documents` reads a run's documents from Tiled). The
        buffer remembers which runs came this way, so that a run arriving both ways (the same
        run uid) is counted once:

        - a run replayed, then seen live: its live documents add only the points storage did
          not have (a run stored in part, e.g. one still being written), told apart by the
          events' ``seq_num`` in the points stream, as storage keeps no event uids; a run
          stored whole adds nothing;
        - a run seen live, then replayed: the replay adds nothing (the live documents have it).

        Documents of one run seen twice the same way are warned about as by :meth:`ingest`.
        May be called while live documents arrive from another thread.

        Parameters
        ----------
        documents
            ``(name, doc)`` pairs of whole runs, in the order they were emitted.
        """
        for name, doc in documents:
            with self._state_lock:  # reentrant: ingest takes it again
                self._replaying = True
                try:
                    self.ingest(name, doc)
                finally:
                    self._replaying = False

    def snapshot(self) -> xr.Dataset:
        """A consistent copy of the points so far, safe to call while documents arrive.

        Returns
        -------
        xarray.Dataset
            Along ``point``: one float64 variable per feature and the target (with
            ``attrs["units"]`` when known and ``attrs["data_key"]``), and the coordinates
            ``run_uid`` (str), ``time`` (float, s since the epoch) and ``seq_num`` (int).
            ``attrs["data_origin"]`` is "measured", "simulated" or "mixed" (or "none" when
            empty). Before a buffer without names has taken them from a run, only the names
            given are there (with no points).
        """
        with self._data_lock:
            # Columns only ever grow (clear() swaps in new lists), so their first n items
            # cannot change after the lock is released: copying them can happen outside it.
            n, columns, version = self._n, self._columns, self._version
            layout = self._layout
            origins = set(self._run_origins.values())
            units = {**self._start_units, **self._units}
        if layout is not None:
            names, keys = layout.names, layout.keys
            by_name = dict(zip((*names, *BOOKKEEPING), columns, strict=True))
        else:
            names, keys, by_name = tuple(self._given_keys), self._given_keys, {}
        data_vars = {}
        for name in names:
            attrs = {"data_key": keys[name]}
            if units.get(name):
                attrs["units"] = units[name]
            values = by_name.get(name, [])[:n]
            data_vars[name] = ("point", np.array(values, dtype=np.float64), attrs)
        coords = {
            "run_uid": ("point", np.array(by_name.get("run_uid", [])[:n], dtype=str)),
            "time": (
                "point",
                np.array(by_name.get("time", [])[:n], dtype=np.float64),
                {"units": "s"},
            ),
            "seq_num": ("point", np.array(by_name.get("seq_num", [])[:n], dtype=np.int64)),
        }
        origin = origins.pop() if len(origins) == 1 else ("mixed" if origins else "none")
        attrs = {
            "source": "bluesky documents via bluesky_digitwin.buffer.ScanBuffer",
            "stream": self.stream,
            "data_origin": origin,
            "buffer_version": version,
        }
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)

    @property
    def layout(self) -> BufferLayout | None:
        """Names and data keys of the variables; None until a buffer without names has taken
        them from a run."""
        return self._layout

    @property
    def features(self) -> tuple[str, ...]:
        """Names of the features (those given, or () until they are taken from a run)."""
        layout = self._layout
        return layout.features if layout is not None else (self._given_features or ())

    @property
    def target(self) -> str | None:
        """Name of the target (the one given, or None until it is taken from a run)."""
        layout = self._layout
        return layout.target if layout is not None else self._given_target

    @property
    def keys(self) -> dict[str, str]:
        """Name -> data key of each feature and the target known so far."""
        layout = self._layout
        return dict(layout.keys if layout is not None else self._given_keys)

    @property
    def key_error(self) -> DataKeyError | None:
        """Why the latest run not learned from for its data keys was skipped, or None.

        Cleared when a later run gives points.
        """
        return self._key_error

    @property
    def n_points(self) -> int:
        """Number of points buffered."""
        return self._n

    @property
    def run_uids(self) -> list[str]:
        """Uids of the runs that have points, in the order of their first point."""
        with self._data_lock:
            return list(self._run_origins)

    @property
    def version(self) -> int:
        """A counter that increases whenever points are added (or cleared); never decreases.

        Compare it with the value seen at the last training to decide whether to retrain.
        """
        return self._version

    @property
    def skipped(self) -> dict[str, dict[str, int]]:
        """Events skipped so far: run uid -> data key -> count."""
        with self._state_lock:
            return {run: dict(counts) for run, counts in self._skipped.items()}

    def clear(self) -> None:
        """Drop all points (and the skip counts). Runs in progress keep being buffered."""
        with self._state_lock, self._data_lock:
            self._columns = [[] for _ in self._columns]
            self._n = 0
            self._run_origins = {}
            self._version += 1
            self._skipped = {}

    def __repr__(self) -> str:
        return (
            f"ScanBuffer(features={self.features}, target={self.target!r}, "
            f"stream={self.stream!r}, n_points={self.n_points}, runs={len(self._run_origins)})"
        )

    # -- documents -----------------------------------------------------------------------------

    def _start(self, doc: Mapping[str, Any]) -> None:
        uid = doc["uid"]
        if not isinstance(uid, str):
            self._warn(f"ignored a start document whose uid is a {type(uid).__name__}")
            return
        known = self._runs.get(uid)
        if known is not None:
            if known.replayed == self._replaying:  # else the same run the other way: replay()
                self._warn(f"ignored a second start document for run {uid}")
            return
        # Tiled's rule (run_documents): a run that breaks it is warned about, not raised about
        # (an exception in a callback would abort the scan), and never learned from.
        try:
            origin: str = data_origin_of(doc)
        except DataOriginError as exc:
            origin = "unknown"
            self._warn(f"{exc}; its points are not learned from")
        ignored = origin == "unknown" or (origin != MEASURED and not self.include_simulated)
        self._runs[uid] = run = _Run(
            uid=uid, start=doc, origin=origin, ignored=ignored, replayed=self._replaying
        )
        if not ignored:
            self._take_start_units(run, self.keys)

    def _take_start_units(self, run: _Run, keys: Mapping[str, str]) -> None:
        units = run.start.get("units")
        if isinstance(units, Mapping):
            for name, key in keys.items():
                value = units.get(key, units.get(name))
                if isinstance(value, str) and value:
                    with self._data_lock:
                        self._start_units.setdefault(name, value)

    def _descriptor(self, doc: Mapping[str, Any]) -> None:
        uid, run_uid = doc["uid"], doc["run_start"]
        if not isinstance(uid, str):
            self._warn(f"ignored a descriptor whose uid is a {type(uid).__name__}")
            return
        run = self._runs.get(run_uid)
        if run is None:
            self._warn(
                f"ignored descriptor {uid}: its run {run_uid} has no start document "
                "(documents out of order, or the buffer was subscribed mid-run)"
            )
            return
        if uid in self._streams:
            if self._streams[uid].run.replayed == self._replaying:  # else see replay()
                self._warn(f"ignored a second descriptor {uid} of run {run_uid}")
            return
        name = doc.get("name", "primary")  # descriptors before event-model 1.0 had no name
        role = _POINTS if name == self.stream else _BASELINE if name == BASELINE_STREAM else _OTHER
        data_keys = doc.get("data_keys")
        declared = frozenset(data_keys) if isinstance(data_keys, Mapping) else frozenset()
        stream = _Stream(run=run, role=role, configuration={}, data_keys=declared)
        if run.ignored or role == _OTHER:
            self._streams[uid] = stream
            return
        # Read all of it before anything is kept: a malformed descriptor raises here and is
        # then unknown, like one never seen (its events are warned about, not taken).
        configuration: dict[str, Any] = {}
        units: dict[str, str] = {}
        for obj in (doc.get("configuration") or {}).values():
            if not isinstance(obj, Mapping):
                continue
            data = obj.get("data") or {}
            configuration.update(data.items())
            described = obj.get("data_keys")
            if isinstance(described, Mapping):
                units.update(_units_of(described, frozenset(described)))
        units.update(_units_of(data_keys, declared))  # readings beat config
        if role == _BASELINE:
            run.baseline_keys.update(declared)
            if self._layout is None:  # its units are wanted once the keys are known
                run.baseline_units.update(units)
        else:
            stream.dimensions = _dimension_fields(run.start, doc, self.stream)
            stream.hinted = _hinted_fields(doc, run.start)
            stream.configuration_keys = frozenset(configuration)
            if self._layout is None and not self._infer_layout(stream):
                stream.role = _OTHER  # its events are passed over: the warning said why
                self._streams[uid] = stream
                return
        wanted = self._wanted
        stream.configuration = {k: v for k, v in configuration.items() if k in wanted}
        self._streams[uid] = stream
        for name_, key in self.keys.items():
            if key in units:
                self._set_units(name_, units[key], run)

    def _infer_layout(self, stream: _Stream) -> bool:
        """Take the names left out from the hints of ``stream``'s run; False if it cannot tell.

        The features are the fields of the scanned motors, the target the one field the
        detectors hint besides them; each name is its data key.
        """
        run = stream.run
        features = self._given_features
        target = self._given_target
        if features is None:
            features = tuple(f for f in stream.dimensions if f != target)
        candidates = [f for f in stream.hinted if f not in features and f not in stream.dimensions]
        plan = run.start.get("plan_name")
        about = f"run {run.uid}" + (f" ({plan})" if isinstance(plan, str) else "")
        problem = None
        if not features:
            problem = (
                f"{about} scans no motor, so the buffer cannot tell its features; name them, "
                "e.g. ScanBuffer(features=(...)) with data keys of its events or baseline"
            )
        elif target is None and not candidates:
            problem = (
                f"{about}: its detectors hint no field besides the scanned "
                f"{', '.join(features)}, so the buffer cannot tell its target; name it, "
                "e.g. ScanBuffer(target=...) with a data key of its events"
            )
        elif target is None and len(candidates) > 1:
            problem = (
                f"{about}: its detectors hint several fields ({', '.join(candidates)}), so the "
                f"buffer cannot tell which is the target; name it, e.g. "
                f"ScanBuffer(target={candidates[0]!r})"
            )
        else:
            target = target if target is not None else candidates[0]
            reserved = [n for n in (*features, target) if n in BOOKKEEPING]
            if reserved:
                problem = (
                    f"{about}: its data key {reserved[0]!r} is reserved for bookkeeping; name "
                    f"the features and target and map it, e.g. keys={{'t': {reserved[0]!r}}}"
                )
        if problem is not None:
            self._key_problem(stream, f"{problem}; its points are skipped")
            return False
        keys = {name: self._given_keys.get(name, name) for name in (*features, target)}
        self._set_layout(BufferLayout(features, target, MappingProxyType(keys), inferred=True))
        # What came before the keys were known: the start's units, the baseline's.
        self._take_start_units(run, keys)
        for name, key in keys.items():
            if key in run.baseline_units:
                self._set_units(name, run.baseline_units[key], run)
        run.baseline_units = {}
        return True

    def _set_layout(self, layout: BufferLayout) -> None:
        with self._data_lock:
            self._layout = layout
            self._wanted = frozenset(layout.keys.values())
            # What the event path looks up, per name: its data key, and whether it is the
            # target (read from the event only).
            self._lookups = tuple(
                (name, layout.keys[name], name == layout.target) for name in layout.names
            )
            self._columns = [[] for _ in (*layout.names, *BOOKKEEPING)]

    def _event(self, doc: Mapping[str, Any]) -> None:
        stream = self._stream_of(doc)
        if stream is None:
            return
        if stream.role == _BASELINE:
            self._update_baseline(stream.run, doc["data"])
            return
        if self._seen(stream.run, doc.get("uid")):
            return
        if stream.run.replayed and self._stored_before(stream.run, doc.get("seq_num")):
            return
        row = self._row(stream, doc["data"], doc.get("time"), doc.get("seq_num"))
        if row is not None:
            self._append([row], stream.run)

    def _event_page(self, doc: Mapping[str, Any]) -> None:
        stream = self._stream_of(doc)
        if stream is None:
            return
        run, data = stream.run, doc["data"]
        if not isinstance(data, Mapping):
            raise TypeError(f"its data is a {type(data).__name__}, not a mapping")
        # The page's columns, by name; uid, time and seq_num may be absent (as in _event).
        columns = {name: doc.get(name) for name in ("uid", "time", "seq_num")}
        columns = {name: column for name, column in columns.items() if column is not None}
        columns.update((f"data[{key!r}]", column) for key, column in data.items())
        lengths = {name: _length(column) for name, column in columns.items()}
        if None in lengths.values() or len(set(lengths.values())) > 1:
            # Rows cannot be told apart: taking some would pair values of different events.
            found = ", ".join(
                f"{name}: {n if n is not None else 'not a list'}" for name, n in lengths.items()
            )
            self._warn(
                f"ignored an event page of run {run.uid} whose columns differ in length or are "
                f"not lists ({found}); its events are skipped (a malformed document)"
            )
            return
        wanted = [key for key in data if key in self._wanted]
        uids, times, seq_nums = (doc.get(name) for name in ("uid", "time", "seq_num"))
        rows = []
        for i in range(next(iter(lengths.values()), 0)):
            event_data = {key: data[key][i] for key in wanted}
            if stream.role == _BASELINE:
                self._update_baseline(run, event_data)
                continue
            if uids is not None and self._seen(run, uids[i]):
                continue
            if run.replayed and self._stored_before(run, None if seq_nums is None else seq_nums[i]):
                continue
            row = self._row(
                stream,
                event_data,
                None if times is None else times[i],
                None if seq_nums is None else seq_nums[i],
            )
            if row is not None:
                rows.append(row)
        if rows:
            self._append(rows, run)

    def _stop(self, doc: Mapping[str, Any]) -> None:
        run_uid = doc["run_start"]
        run = self._runs.get(run_uid)
        if run is None:
            self._warn(f"ignored a stop document for run {run_uid}, whose start was not seen")
        elif run.closed:
            if run.replayed == self._replaying:  # else the same run the other way: replay()
                self._warn(f"ignored a second stop document for run {run_uid}")
        elif self._replaying and not run.replayed:
            return  # a run seen live is not taken again from storage, its stop neither
        else:
            run.closed = True
            # Its events are skipped from now on anyway.
            run.event_uids, run.baseline, run.baseline_units = set(), {}, {}
            run.stored_seq_nums = Counter()

    # -- the event path ------------------------------------------------------------------------

    def _stream_of(self, doc: Mapping[str, Any]) -> _Stream | None:
        """The stream of an event (page) whose points or baseline are wanted, else None."""
        uid = doc["descriptor"]
        stream = self._streams.get(uid)
        if stream is None:
            # Warn once per descriptor: a buffer subscribed mid-run would otherwise warn at
            # every event of that run.
            if uid not in self._unknown_descriptors:
                if len(self._unknown_descriptors) < _MAX_UNKNOWN:
                    self._unknown_descriptors.add(uid)
                self._warn(
                    f"skipping events of descriptor {uid}, which was not seen (documents out "
                    "of order, or the buffer was subscribed mid-run)"
                )
            return None
        run = stream.run
        if run.ignored or stream.role == _OTHER:
            return None
        if run.closed:
            if run.replayed == self._replaying:  # else the same run the other way: replay()
                self._warn_once(run, "closed", f"skipping events of run {run.uid} after its stop")
            return None
        if self._replaying and not run.replayed:
            return None  # a run seen live is not taken again from storage (replay())
        return stream

    def _seen(self, run: _Run, uid: Any) -> bool:
        """True (with a warning) if an event of this uid was taken before: skip it."""
        if not isinstance(uid, str):
            return False
        if uid in run.event_uids:
            self._warn_once(
                run,
                "duplicate",
                f"run {run.uid}: skipping events whose uid was taken before (the same event "
                "delivered twice; the first one is kept)",
            )
            return True
        if len(run.event_uids) < _MAX_EVENT_UIDS:
            run.event_uids.add(uid)
        return False

    def _stored_before(self, run: _Run, seq_num: Any) -> bool:
        """For a replayed run: count a stored event's seq_num; skip a live event whose
        seq_num storage had (as often as it had it: a point measured again after a pause
        repeats a seq_num)."""
        if not isinstance(seq_num, (int, np.integer)):
            return False
        counts = run.stored_seq_nums
        if self._replaying:
            counts[int(seq_num)] += 1
            return False
        seq_num = int(seq_num)
        if counts.get(seq_num, 0) > 0:
            counts[seq_num] -= 1
            return True
        return False

    def _update_baseline(self, run: _Run, data: Mapping[str, Any]) -> None:
        if self._layout is None:
            run.baseline.update(data)  # the keys wanted are not known yet
        else:
            run.baseline.update((k, v) for k, v in data.items() if k in self._wanted)

    def _row(
        self, stream: _Stream, data: Mapping[str, Any], time: Any, seq_num: Any
    ) -> tuple[Any, ...] | None:
        """The values of one point in column order, or None (with a warning) to skip it."""
        run = stream.run
        row: list[Any] = []
        for name, key, is_target in self._lookups:
            value = data.get(key, _MISSING)
            if value is _MISSING and not is_target:
                value = run.baseline.get(key, _MISSING)
                if value is _MISSING:
                    value = stream.configuration.get(key, _MISSING)
                if value is _MISSING:
                    value = run.start.get(key, _MISSING)
            number = _MISSING if value is _MISSING else _as_number(value)
            if number is None or number is _MISSING:
                self._skip(stream, name, key, found=value is not _MISSING)
                return None
            row.append(number)
        time = _as_number(time)
        is_int = isinstance(seq_num, (int, np.integer))
        seq_num = int(seq_num) if is_int and _INT64.min <= seq_num <= _INT64.max else -1
        row.extend((run.uid, np.nan if time is None else time, seq_num))
        return tuple(row)

    def _append(self, rows: list[tuple[Any, ...]], run: _Run) -> None:
        with self._data_lock:
            for column, values in zip(self._columns, zip(*rows, strict=True), strict=True):
                column.extend(values)
            self._n += len(rows)
            self._run_origins.setdefault(run.uid, run.origin)
            self._version += 1
        error = self._key_error
        if error is not None and error.run_uid != run.uid:
            self._key_error = None  # a later run gives points: that one is history

    # -- warnings ------------------------------------------------------------------------------

    def _skip(self, stream: _Stream, name: str, key: str, *, found: bool) -> None:
        run = stream.run
        counts = self._skipped.setdefault(run.uid, {})
        counts[key] = counts.get(key, 0) + 1
        if "keys" in run.warned:
            return  # the run lacks keys everywhere: said once, in _key_problem
        if found:
            reason = f"whose {key!r} (for {name!r}) is not a finite number (NaN, inf, text, ...)"
        elif self._missing(stream):
            self._key_problem(stream)
            return
        elif name == self.target:
            reason = f"that lack {key!r} (the target {name!r}) in their data"
        else:
            reason = (
                f"that lack {key!r} (for {name!r}) in their data, the baseline, the "
                "descriptor's configuration and the start document"
            )
        self._warn_once(
            run,
            f"skip:{key}",
            f"run {run.uid}: skipping events {reason}; ScanBuffer.skipped counts them",
        )

    def _missing(self, stream: _Stream) -> list[tuple[str, str]]:
        """(name, data key) of the names for which ``stream``'s run has no data key at all.

        Not an event that lacks a key its descriptor declares (a bad event), but a run that
        will never give a point: the target is not among the stream's data keys, a feature
        not among them, the baseline's, the configuration's or the start document's keys.
        """
        run = stream.run
        missing = []
        for name, key, is_target in self._lookups:
            if key in stream.data_keys:
                continue
            if is_target or not (
                key in run.baseline_keys or key in stream.configuration_keys or key in run.start
            ):
                missing.append((name, key))
        return missing

    def _key_problem(self, stream: _Stream, message: str | None = None) -> None:
        """Warn, once per run, that ``stream``'s run gives no points for its keys; keep it as
        :attr:`key_error`. The message lists the data keys the run has."""
        run = stream.run
        if "keys" in run.warned:
            return
        if message is None:
            lacks = []
            for name, key in self._missing(stream):
                if name == self.target:
                    lacks.append(f"{key!r} (the target {name!r})")
                else:
                    lacks.append(f"{key!r}" + (f" (for {name!r})" if name != key else ""))
            hints = ""
            if stream.dimensions or stream.hinted:
                hints = (
                    f"; it scans {', '.join(stream.dimensions) or 'no motor'} and its "
                    f"detectors hint {', '.join(stream.hinted) or 'nothing'}"
                )
            message = (
                f"run {run.uid}: its events lack {', '.join(lacks)} in their data, the "
                "baseline, the descriptor's configuration and the start document; map each "
                "name to a data key it has with keys={name: data key}, record the value in a "
                "baseline or the plan's md, or leave features and target out to take them "
                f"from the plan's hints{hints}; its points are skipped (ScanBuffer.skipped "
                "counts them)"
            )
        existing = stream.data_keys | run.baseline_keys | stream.configuration_keys
        message += (
            f". Data keys of the run: {', '.join(sorted(stream.data_keys)) or 'none'} "
            f"(stream {self.stream!r})"
        )
        if run.baseline_keys:
            message += f"; {', '.join(sorted(run.baseline_keys))} ({BASELINE_STREAM!r})"
        if stream.configuration_keys:
            message += f"; {', '.join(sorted(stream.configuration_keys))} (configuration)"
        self._key_error = DataKeyError(message, run_uid=run.uid, data_keys=existing)
        self._warn_once(run, "keys", message)

    def _set_units(self, name: str, units: str, run: _Run) -> None:
        with self._data_lock:
            known = self._units.setdefault(name, units)
        if known != units:
            self._warn_once(
                run,
                f"units:{name}",
                f"run {run.uid} gives {name!r} in {units!r}, earlier runs in {known!r}; "
                f"keeping {known!r} (the values are not converted)",
            )

    def _warn_once(self, run: _Run, reason: str, message: str) -> None:
        if reason not in run.warned:
            run.warned.add(reason)
            self._warn(message)

    def _warn(self, message: str) -> None:
        """Queue a warning for the end of :meth:`ingest` (or issue it, outside one)."""
        if self._pending is not None:
            self._pending.append(message)
        else:
            warnings.warn(message, DataWarning, stacklevel=2)


def _dimension_fields(
    start: Mapping[str, Any], descriptor: Mapping[str, Any], stream: str
) -> tuple[str, ...]:
    """The data keys of the motors a run scans, in order, as its documents say.

    First the start document's ``hints["dimensions"]`` (``[(fields, stream), ...]``, which
    bluesky's plans write: one entry per axis of a grid, one entry holding every motor of a
    ``scan`` that moves several together), the dimensions of ``stream`` only; failing that,
    its ``motors`` (object names), each resolved through the descriptor's ``hints`` or
    ``object_keys``. ``count``'s pseudo-dimension ``time`` is not a data key and is left out.
    """
    fields: list[str] = []
    hints = start.get("hints")
    dimensions = hints.get("dimensions") if isinstance(hints, Mapping) else None
    if isinstance(dimensions, (list, tuple)):
        for dimension in dimensions:
            if not (isinstance(dimension, (list, tuple)) and len(dimension) == 2):
                continue
            names, dimension_stream = dimension
            if dimension_stream != stream or not isinstance(names, (list, tuple)):
                continue
            fields.extend(f for f in names if isinstance(f, str))
    else:
        motors = start.get("motors")
        if isinstance(motors, str):
            motors = [motors]
        descriptor_hints = descriptor.get("hints")
        if not isinstance(descriptor_hints, Mapping):
            descriptor_hints = {}
        object_keys = descriptor.get("object_keys")
        for motor in motors if isinstance(motors, (list, tuple)) else ():
            motor_hints = descriptor_hints.get(motor)
            hinted = motor_hints.get("fields") if isinstance(motor_hints, Mapping) else None
            if not hinted and isinstance(object_keys, Mapping):
                keys = object_keys.get(motor)
                # An ophyd motor's readback is its first key (the setpoint follows).
                hinted = keys[:1] if isinstance(keys, (list, tuple)) else None
            if not hinted:
                hinted = [motor]
            fields.extend(f for f in hinted if isinstance(f, str))
    return tuple(dict.fromkeys(f for f in fields if f != _TIME))


def _hinted_fields(descriptor: Mapping[str, Any], start: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields the objects read into a stream hint, in order.

    Each object's ``hints["fields"]``, which bluesky writes into the descriptor's ``hints``
    keyed by object name; then every data key (``object_keys``) of the objects that are
    neither motors (the start's ``motors``) nor give hints: an ophyd-async signal read on its
    own (``scan([det.value], ...)``) has no hints, and is the detector all the same.
    """
    hints = descriptor.get("hints")
    hints = hints if isinstance(hints, Mapping) else {}
    fields: list[str] = []
    for obj_hints in hints.values():
        hinted = obj_hints.get("fields") if isinstance(obj_hints, Mapping) else None
        if isinstance(hinted, (list, tuple)):
            fields.extend(f for f in hinted if isinstance(f, str))
    motors = start.get("motors")
    if isinstance(motors, str):
        motors = [motors]
    motors = {m for m in motors if isinstance(m, str)} if isinstance(motors, (list, tuple)) else ()
    object_keys = descriptor.get("object_keys")
    for obj, keys in object_keys.items() if isinstance(object_keys, Mapping) else ():
        if obj not in hints and obj not in motors and isinstance(keys, (list, tuple)):
            fields.extend(k for k in keys if isinstance(k, str))
    return tuple(dict.fromkeys(fields))


def _units_of(data_keys: Any, wanted: frozenset[str]) -> dict[str, str]:
    """Units of the wanted keys in a descriptor's ``data_keys`` mapping (if it is one)."""
    if not isinstance(data_keys, Mapping):
        return {}
    units = {}
    for key in wanted & data_keys.keys():
        entry = data_keys[key]
        value = entry.get("units") if isinstance(entry, Mapping) else None
        if isinstance(value, str) and value:
            units[key] = value
    return units


def _as_number(value: Any) -> float | None:
    """``value`` as a finite Python float if it is a real scalar (bool, int, float, numpy).

    None for anything else: NaN, inf, an int beyond float64, text, an array, None.
    """
    number = None
    try:
        if isinstance(value, (float, int)):  # includes bool and numpy.float64
            number = float(value)
        elif isinstance(value, (np.generic, np.ndarray)) and value.ndim == 0:
            if value.dtype.kind in "biuf":
                with np.errstate(over="ignore"):  # a longdouble beyond float64 becomes inf
                    number = float(value)
    except OverflowError:  # an int beyond float64
        return None
    return number if number is not None and math.isfinite(number) else None


def _length(column: Any) -> int | None:
    """The length of an event page's column (a list, tuple or 1-D array), else None."""
    if isinstance(column, (list, tuple)) or (isinstance(column, np.ndarray) and column.ndim == 1):
        return len(column)
    return None
