"""Reading runs back: the runs of a twin, runs selected by uid or query, their documents,
and the table a twin learns from.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import httpx
import numpy as np
import xarray as xr
from tiled.client.utils import ClientError
from tiled.queries import Contains, Eq, In, SpecsQuery

from bluesky_digitwin.buffer import BASELINE_STREAM, ScanBuffer
from bluesky_digitwin.data_sources import TiledRunsSource
from bluesky_digitwin.errors import DataWarning, DigitwinInputError
from bluesky_digitwin.run_documents import (
    MEASURED,
    ORIGINS,
    SIMULATED,
    SIMULATED_SPEC,
    DataOriginError,
    spec_names,
)

from .catalog import TwinCatalog
from .connection import connection_error, node_uri
from .layout import CATALOG_SPEC, is_simulated_run

__all__ = [
    "measured_runs_of_twin",
    "read_runs",
    "run_documents",
    "runs_data_source",
    "runs_provenance",
    "select_runs",
    "simulated_runs_from_measured",
    "simulated_runs_of_twin",
]

logger = logging.getLogger(__name__)

# -- searching -----------------------------------------------------------------------------------


def _as_catalog(source: TwinCatalog | Any) -> TwinCatalog:
    return source if isinstance(source, TwinCatalog) else TwinCatalog(source, create=False)


def _twin_id(twin: Any) -> str:
    if isinstance(twin, str):
        return twin
    if isinstance(twin, Mapping):
        return str(twin["id"])
    return str(twin.id)


def simulated_runs_of_twin(catalog: TwinCatalog | Any, twin: Any) -> Any:
    """All simulated runs made by one twin (a DigitalTwin, its metadata, or its id).

    Returns
    -------
    A Tiled container (search result) of the runs: ``list(result)`` gives their uids.
    """
    simulated = _as_catalog(catalog).simulated
    return simulated.search(SpecsQuery([SIMULATED_SPEC])).search(
        Eq("start.digital_twin.id", _twin_id(twin))
    )


def simulated_runs_from_measured(catalog: TwinCatalog | Any, run_uid: str) -> Any:
    """All simulated runs made by twins that learned from the measured run ``run_uid``."""
    simulated = _as_catalog(catalog).simulated
    return simulated.search(SpecsQuery([SIMULATED_SPEC])).search(
        Contains("start.digital_twin.learned_from", run_uid)
    )


def measured_runs_of_twin(catalog: TwinCatalog | Any, twin: Any) -> Any:
    """All measured runs a twin learned from.

    They are the run uids in the twin's provenance (when a DigitalTwin or its metadata is
    given) together with those named in ``digital_twin.learned_from`` by its simulated runs
    (which is all there is to go on when only the twin's id is given).
    """
    catalog = _as_catalog(catalog)
    uids: set[str] = set()
    metadata = twin if isinstance(twin, Mapping) else getattr(twin, "metadata", None)
    if isinstance(metadata, Mapping):
        uids.update(metadata.get("provenance", {}).get("run_uids", []))
    for run in simulated_runs_of_twin(catalog, twin).values():
        uids.update(run.metadata["start"].get("digital_twin", {}).get("learned_from", []))
    return catalog.measured.search(In("start.uid", sorted(uids)))


# -- reading runs back ---------------------------------------------------------------------------


def _sources(source: TwinCatalog | Any) -> tuple[list[tuple[str, Any]], str]:
    """The containers to look for runs in, as (origin or "", container), and where they are."""
    if isinstance(source, TwinCatalog):
        catalog = source
    elif CATALOG_SPEC.name in spec_names(getattr(source, "specs", None)):
        # A catalog of runs itself: its runs are told apart by their metadata and specs.
        return [("", source)], node_uri(source)
    else:
        catalog = TwinCatalog(source, create=False)
    found = []
    for origin in ORIGINS:
        try:
            found.append((origin, catalog.container(origin)))
        except DigitwinInputError:
            if origin == MEASURED:
                raise
    return found, catalog.uri


def _lookup(uid: str, containers: Iterable[Any]) -> Any | None:
    for container in containers:
        try:
            return container[uid]
        except KeyError:
            continue
        except ValueError as exc:  # a partial uid too short, or matching several runs
            raise DigitwinInputError(str(exc)) from None
    return None


def select_runs(
    source: TwinCatalog | Any,
    uids: Sequence[str] | str | None = None,
    *,
    query: Any = None,
    include_simulated: bool = False,
) -> list[Any]:
    """The stored runs named by ``uids`` or matching ``query``: measured ones only, by default.

    Only reads: nothing is written to Tiled, and a catalog without its containers is not
    given them.

    Parameters
    ----------
    source
        A :class:`TwinCatalog`, a Tiled node holding ``measured`` (and ``simulated``), or a
        Tiled catalog of bluesky runs.
    uids
        The runs (full or partial uids), looked for in both containers, so that a simulated
        run is refused as such rather than reported missing.
    query
        Instead of ``uids``: a Tiled query (e.g. ``Key("sample") == "ErCo2"``, which searches
        the start documents), run on ``measured`` (and on ``simulated`` if included).
    include_simulated
        Also select simulated runs; by default a twin never learns from simulated data.

    Returns
    -------
    list
        The runs' clients (bluesky-tiled-plugins ``BlueskyRun``), in the order of ``uids``, or
        of the search.

    Raises
    ------
    DigitwinInputError
        Neither or both of ``uids`` and ``query``; a uid no run has; a query that matches no
        run (the message says when simulated runs match it, or when the catalog holds no
        measured run at all). :class:`DataOriginError` when a uid names a simulated run and
        ``include_simulated`` is false. :class:`TiledConnectionError` when Tiled fails.
    """
    return _select(source, uids, query, include_simulated)[0]


def _select(
    source: TwinCatalog | Any,
    uids: Sequence[str] | str | None,
    query: Any,
    include_simulated: bool,
) -> tuple[list[Any], str]:
    """:func:`select_runs`, and where the runs are (for messages)."""
    if (uids is None) == (query is None):
        raise DigitwinInputError("give the runs to read: uids or a query (one of them)")
    if isinstance(uids, str):
        uids = [uids]
    sources, where = _sources(source)
    try:
        if uids is not None:
            return _runs_by_uid(sources, where, uids, include_simulated), where
        runs = [
            run
            for origin, container in sources
            if include_simulated or origin != SIMULATED
            for run in container.search(query).values()
        ]
        # A plain catalog of runs may mix origins: its simulated runs are left out too.
        if not include_simulated:
            runs = [run for run in runs if not is_simulated_run(run)]
        if not runs:
            raise _no_match(sources, where, query, include_simulated)
        return runs, where
    except (ClientError, httpx.TransportError) as exc:
        raise connection_error(exc, where) from None


def _runs_by_uid(
    sources: list[tuple[str, Any]], where: str, uids: Sequence[str], include_simulated: bool
) -> list[Any]:
    # Look everywhere, so that a simulated uid is refused as such, not as "not found".
    runs, missing = [], []
    for uid in dict.fromkeys(uids):
        run = _lookup(uid, [c for _, c in sources])
        if run is None:
            missing.append(uid)
        else:
            runs.append(run)
    if missing:
        raise DigitwinInputError(
            f"no run {', '.join(missing)} at {where}; check the uid(s) (a run's full uid, or "
            "its first characters)"
        )
    simulated = [run.metadata["start"]["uid"] for run in runs if is_simulated_run(run)]
    if simulated and not include_simulated:
        raise DataOriginError(
            f"run(s) {', '.join(simulated)} are simulated (data_origin 'simulated' or spec "
            f"{SIMULATED_SPEC}); a twin learns from measured runs only, unless simulated "
            "ones are included explicitly (include_simulated=True, --include-simulated)"
        )
    return runs


def _no_match(
    sources: list[tuple[str, Any]], where: str, query: Any, include_simulated: bool
) -> DigitwinInputError:
    """The error for a query that selects no run, saying what the catalog does hold."""
    if include_simulated:
        return DigitwinInputError(f"no run at {where} matches the query {query!r}")
    # Iterating asks the server (a container's len() may be a second old).
    measured = [c for origin, c in sources if origin != SIMULATED]
    if all(next(iter(c), None) is None for c in measured):
        simulated = [c for origin, c in sources if origin == SIMULATED]
        held = (
            "only simulated ones"
            if any(next(iter(c), None) is not None for c in simulated)
            else "no run at all"
        )
        return DigitwinInputError(
            f"no run at {where} matches the query {query!r}: it holds no measured run, "
            f"{held}, and a twin learns from measured runs only; measure first, or name the "
            "catalog that holds the measurements"
        )
    matching = [c.search(query) for origin, c in sources if origin == SIMULATED]
    n_simulated = sum(len(c) for c in matching)
    also = (
        f" ({n_simulated} simulated run(s) do, and a twin never learns from simulated runs)"
        if n_simulated
        else ""
    )
    return DigitwinInputError(
        f"no run at {where} matches the query {query!r} among the measured runs{also}; "
        "check the query: it searches the start documents, e.g. Key('sample') == 'ErCo2'"
    )


def run_documents(
    run: Any,
    stream: str = "primary",
    keys: Collection[str] | Callable[[], Collection[str]] | None = None,
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The documents of a stored run that a :class:`~bluesky_digitwin.buffer.ScanBuffer` uses.

    Read back through the run's bluesky-tiled-plugins client. For the SQL-backed layout
    TiledWriter writes: the start document, the descriptors of the points stream and of the
    baseline, one event per stored row carrying the wanted data keys (in time order, so the
    latest baseline reading is the one a live buffer would have used) with the row's
    ``seq_num`` and ``time``, and the stop document when the run has one. Tiled keeps no event
    uids: each event gets one made of its descriptor's uid and its row. Runs of the MongoDB
    layout export their documents themselves.

    Parameters
    ----------
    run
        A run of a catalog (``catalog.measured[uid]``, or from :func:`select_runs`).
    stream
        The stream of points.
    keys
        The data keys to read from the tables (the others are not fetched); or a function
        giving them, asked once the run's descriptors have been yielded (a buffer that takes
        its names from a run's hints knows them only then); None: every column.

    Every descriptor comes before the first event (a live run may interleave them).
    """
    from bluesky_tiled_plugins.clients.bluesky_run import BlueskyRunV2Mongo

    if isinstance(run, BlueskyRunV2Mongo):
        yield from run.documents()
        return
    # The v3 interface of the run, whatever client class the catalog handed out: in
    # bluesky-tiled-plugins 2.0.12 one use of ``catalog.v2`` makes every later run a v2 client.
    run = run.v3
    yield "start", dict(run.metadata["start"])
    # The baseline first: at equal times its reading precedes the points, as in a live run.
    names = [name for name in dict.fromkeys((BASELINE_STREAM, stream)) if name in run]
    nodes = [(name, node, node.descriptors) for name, node in ((n, run[n]) for n in names)]
    # Every descriptor before any event, so that the keys are known when the tables are read.
    for _, _, descriptors in nodes:
        for descriptor in descriptors:
            yield "descriptor", descriptor
    wanted = keys() if callable(keys) else keys
    events: list[tuple[float, dict[str, Any]]] = []
    for name, node, descriptors in nodes:
        if not descriptors:
            continue
        declared = set(descriptors[0].get("data_keys", {}))
        columns_wanted = sorted(declared if wanted is None else declared & set(wanted))
        # Points lacking the keys wanted are still events, as live, so that a buffer can say
        # which keys the run has; a baseline without them has nothing to give.
        if not columns_wanted and name != stream:
            continue
        table = node.read(variables=[*columns_wanted, "time", "seq_num"])
        times = np.asarray(table["time"].values, dtype=np.float64)
        seq_nums = np.asarray(table["seq_num"].values).tolist()
        columns = {key: table[key].values for key in columns_wanted}
        descriptor_uid = descriptors[0]["uid"]
        for i, time in enumerate(times):
            event = {
                "uid": f"{descriptor_uid}/{i + 1}",
                "descriptor": descriptor_uid,
                "seq_num": int(seq_nums[i]),
                "time": float(time),
                "data": {key: values[i] for key, values in columns.items()},
                "timestamps": {},
            }
            events.append((float(time), event))
    events.sort(key=lambda item: item[0])  # stable: ties keep the baseline first
    for _, event in events:
        yield "event", event
    stop = run.metadata.get("stop")
    if isinstance(stop, Mapping):
        yield "stop", dict(stop)


def read_runs(
    source: TwinCatalog | Any,
    uids: Sequence[str] | str | None = None,
    *,
    query: Any = None,
    features: Sequence[str] | str,
    target: str,
    keys: Mapping[str, str] | None = None,
    stream: str = "primary",
    include_simulated: bool = False,
) -> xr.Dataset:
    """Read stored runs into the Dataset a twin learns from.

    The runs are read through the bluesky-tiled-plugins clients and assembled by a
    :class:`~bluesky_digitwin.buffer.ScanBuffer`, exactly as a live buffer would have done:
    features are found in the events, the baseline, the descriptors' configuration or the start
    document.

    Parameters
    ----------
    source
        A :class:`TwinCatalog`, a Tiled node holding ``measured`` (and ``simulated``), or a
        Tiled catalog of bluesky runs.
    uids
        The runs (full or partial uids). Naming a simulated run is an error unless
        ``include_simulated``.
    query
        Instead of ``uids``: a Tiled query (e.g. ``Key("sample") == "ErCo2"``, which searches
        the start documents), run on ``measured`` (and on ``simulated`` if included).
    features, target, keys, stream
        As for :class:`~bluesky_digitwin.buffer.ScanBuffer`.
    include_simulated
        Also use simulated runs; by default a twin never learns from simulated data.

    Returns
    -------
    xarray.Dataset
        As :meth:`ScanBuffer.snapshot`, with ``attrs["run_uids"]`` (the runs that gave points)
        and ``attrs["tiled_uri"]``; :func:`runs_provenance` turns them into a twin's provenance.
    """
    buffer = ScanBuffer(
        features, target, keys=keys, stream=stream, include_simulated=include_simulated
    )
    runs, where = _select(source, uids, query, include_simulated)
    try:
        wanted = set(buffer.keys.values())
        for run in runs:
            buffer.replay(run_documents(run, stream, wanted))
    except (ClientError, httpx.TransportError) as exc:
        raise connection_error(exc, where) from None
    data = buffer.snapshot()
    used = buffer.run_uids
    empty = [run.metadata["start"]["uid"] for run in runs]
    empty = [uid for uid in empty if uid not in used]
    if empty:
        warnings.warn(
            f"run(s) {', '.join(empty)} gave no points with "
            f"{', '.join(buffer.keys.values())} in stream {stream!r}",
            DataWarning,
            stacklevel=2,
        )
    data.attrs["run_uids"] = used
    data.attrs["tiled_uri"] = where
    return data


def runs_provenance(data: xr.Dataset) -> dict[str, Any]:
    """The provenance of a Dataset from :func:`read_runs`, for ``DigitalTwin.fit``."""
    names = [n for n in data.data_vars if "data_key" in data[n].attrs]
    return {
        "run_uids": list(data.attrs["run_uids"]),
        "tiled_uri": data.attrs["tiled_uri"],
        "stream": data.attrs["stream"],
        "data_keys": {str(n): data[n].attrs["data_key"] for n in names},
        "data_origin": data.attrs["data_origin"],
    }


def runs_data_source(
    data: xr.Dataset,
    features: Sequence[str] | str,
    target: str,
    keys: Mapping[str, str] | None = None,
    stream: str = "primary",
    include_simulated: bool = False,
) -> TiledRunsSource:
    """How to read the Dataset of :func:`read_runs` again: a search's ``data_source``.

    Search workers on other machines read the same runs from Tiled
    (:mod:`bluesky_digitwin.surrogate.workers`), so the study needs no copy of the data.
    """
    return TiledRunsSource(
        uri=data.attrs["tiled_uri"],
        runs=tuple(data.attrs["run_uids"]),
        features=features,
        target=target,
        keys=keys or None,
        stream=stream,
        include_simulated=include_simulated,
    )
