"""Tiled: the ``measured`` and ``simulated`` containers, their writers, reading runs back, and
the embedded server.

The layout is a contract (docs/architecture.md): under the node given, two containers with the
spec ``CatalogOfBlueskyRuns`` 3.0, ``measured`` and ``simulated``. Runs are written into them by
:class:`bluesky_tiled_plugins.TiledWriter`; measured runs carry ``start.data_origin ==
"measured"``, simulated runs ``start.data_origin == "simulated"`` and the Tiled spec
``SimulatedRun`` (TiledWriter turns the start document's ``tiled_specs`` into node specs), plus
the provenance that ``simulate_scan`` puts in ``start.digital_twin``.

Where the server is:

- :meth:`TwinCatalog.embedded` starts a Tiled server inside this process (Tiled's
  ``SimpleTiledServer``) on 127.0.0.1 with an API key, keeping catalog and data in a directory,
  so the runs survive a restart;
- :meth:`TwinCatalog.connect` reaches a facility server by URI or by Tiled profile; the API key
  comes from the ``TILED_API_KEY`` environment variable or the profile (or an argument), never
  from code.

Writing::

    catalog = TwinCatalog.embedded("twin-data")
    catalog.subscribe(RE)  # one callback: each run goes to the container of its origin

Learning from stored runs (simulated runs are left out unless asked for) is the twin's
:meth:`DigitalTwin.fit_runs <bluesky_digitwin.twin.DigitalTwin.fit_runs>`, which reads them with
:func:`read_runs`::

    twin = DigitalTwin.fit_runs(catalog, [uid1, uid2], features=["T", "H"], target="M",
                                keys={"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"})

This module imports nothing of the twin: the twin and the search workers read runs through it
(the layers of docs/architecture.md).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import event_model
import httpx
import numpy as np
import xarray as xr
from tiled.client import from_profile, from_uri
from tiled.client.utils import ClientError
from tiled.profiles import ProfileNotFound, load_profiles
from tiled.queries import Contains, Eq, In, SpecsQuery
from tiled.structures.core import Spec

from bluesky_digitwin.buffer import BASELINE_STREAM, ScanBuffer
from bluesky_digitwin.errors import DataWarning, DigitwinError, DigitwinInputError
from bluesky_digitwin.redaction import redact
from bluesky_digitwin.run_documents import (
    MEASURED,
    ORIGINS,
    SIMULATED,
    SIMULATED_SPEC,
    DataOriginError,
    RunMetadataError,
    data_origin_of,
    describe_run,
    normal_origin,
    spec_names,
)

__all__ = [
    "API_KEY_ENV",
    "MEASURED",
    "SIMULATED",
    "SIMULATED_SPEC",
    "ContainerWriter",
    "DataOriginError",
    "OriginRouter",
    "ReplayedRun",
    "RunMetadataError",
    "StartNormalizer",
    "TiledConnectionError",
    "TwinCatalog",
    "data_origin_of",
    "default_backup_directory",
    "measured_runs_of_twin",
    "normalize_start",
    "read_backup",
    "read_runs",
    "run_documents",
    "runs_data_source",
    "runs_provenance",
    "select_runs",
    "simulated_runs_from_measured",
    "simulated_runs_of_twin",
]

logger = logging.getLogger(__name__)

#: The spec of the two containers; 3.x is the SQL-backed layout TiledWriter writes.
CATALOG_SPEC = Spec("CatalogOfBlueskyRuns", version="3.0")
#: Where Tiled's client (and this module) look for the API key.
API_KEY_ENV = "TILED_API_KEY"

#: Tiled 0.2's SimpleTiledServer writes its API key into settings that every server of the
#: process shares (the last one started wins), so the embedded servers of one process must share
#: one key: a random one per process by default. Keys of running embedded servers, by id.
_PROCESS_KEY = secrets.token_hex(32)
_RUNNING_KEYS: dict[int, str] = {}

_DESCRIPTIONS = {
    MEASURED: "bluesky runs measured on an instrument (start.data_origin == 'measured')",
    SIMULATED: (
        "bluesky runs simulated by a digital twin (start.data_origin == 'simulated', "
        "spec SimulatedRun, provenance in start.digital_twin)"
    ),
}


class TiledConnectionError(DigitwinError, ConnectionError):
    """The Tiled server cannot be reached, or refused the API key (a ``ConnectionError``)."""


# -- origins -------------------------------------------------------------------------------------

#: Tiled refuses a node with more than 20 specs, repeated specs, or names over 255 characters.
_MAX_SPECS = 20
_MAX_SPEC_TEXT = 255
#: The spec TiledWriter gives every run: naming it again would repeat it.
_RUN_SPEC = ("BlueskyRun", "3.0")
#: Specs by which bluesky-tiled-plugins' clients read nodes: on a run they would misread it.
_LAYOUT_SPECS = ("BlueskyRun", "BlueskyEventStream", CATALOG_SPEC.name)


def _normal_specs(specs: Any, uid: Any) -> list[Any]:
    """``tiled_specs`` as the list TiledWriter wants; what cannot be read so is refused.

    One name (or one ``{"name", "version"}``) is taken as a list of one; repeated specs, and
    the ``BlueskyRun`` 3.0 that TiledWriter adds itself, are dropped (Tiled refuses repeats).
    """
    fix = "give a list of spec names, e.g. tiled_specs=['MySpec']"
    if isinstance(specs, (str, Mapping)):
        specs = [specs]
    elif not isinstance(specs, (list, tuple)):
        raise RunMetadataError(
            f"{describe_run(uid)} has tiled_specs {specs!r} ({type(specs).__name__}); {fix}"
        )
    normal, seen = [], set()
    for spec in specs:
        if isinstance(spec, str):
            name, version = spec, None
        elif (
            isinstance(spec, Mapping)
            and set(spec) <= {"name", "version"}
            and isinstance(spec.get("name"), str)
            and isinstance(spec.get("version"), (str, type(None)))
        ):
            name, version = spec["name"], spec.get("version")
        else:
            raise RunMetadataError(
                f"{describe_run(uid)} has {spec!r} among its tiled_specs; each spec is a name "
                "(text) or {'name': ..., 'version': ...}: " + fix
            )
        if not name.strip() or max(len(name), len(version or "")) > _MAX_SPEC_TEXT:
            raise RunMetadataError(
                f"{describe_run(uid)} has the spec {spec!r} in tiled_specs; a spec's name is 1 to "
                f"{_MAX_SPEC_TEXT} characters, not all blank (its version at most {_MAX_SPEC_TEXT})"
            )
        if name in _LAYOUT_SPECS and (name, version or _RUN_SPEC[1]) != _RUN_SPEC:
            raise RunMetadataError(
                f"{describe_run(uid)} has the spec {spec!r} in tiled_specs; {name} is a spec of "
                "the bluesky layout, set by TiledWriter (every run is a BlueskyRun 3.0): leave "
                "it out, or name a spec of your own"
            )
        if (name, version or _RUN_SPEC[1]) == _RUN_SPEC:
            continue  # TiledWriter sets it
        if (name, version) not in seen:
            seen.add((name, version))
            normal.append(spec if isinstance(spec, str) else {"name": name, "version": version})
    # TiledWriter adds BlueskyRun; a simulated run gets SimulatedRun.
    room = _MAX_SPECS - 1 - (SIMULATED_SPEC not in spec_names(normal))
    if len(normal) > room:
        raise RunMetadataError(
            f"{describe_run(uid)} has {len(normal)} tiled_specs; Tiled stores at most {room} "
            "besides those added for it: name fewer"
        )
    return normal


def normalize_start(start: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a start document (or a run's metadata) as the Tiled layout stores it.

    What is unambiguous is made canonical: ``tiled_specs`` given as one name becomes a list
    (repeats dropped), ``data_origin`` in another case or with spaces becomes "measured" or
    "simulated". What is not is refused.

    Raises
    ------
    RunMetadataError
        ``tiled_specs`` is not a list of spec names; :class:`DataOriginError` when the
        origin is unknown or contradicts the specs (see :func:`data_origin_of`).
    """
    doc = dict(start)
    uid = doc.get("uid")
    if doc.get("tiled_specs") is not None:
        doc["tiled_specs"] = _normal_specs(doc["tiled_specs"], uid)
    if doc.get("data_origin") is not None:
        doc["data_origin"] = normal_origin(doc["data_origin"], uid)
    data_origin_of(doc)  # a measured run naming SimulatedRun is refused
    return doc


class StartNormalizer:
    """A RunEngine ``md_normalizer`` checking a run's metadata before its start document exists.

    Installed by :meth:`TwinCatalog.subscribe`, after the normaliser the RunEngine had (which
    still runs first). A run whose metadata cannot be stored (:func:`normalize_start`) does not
    start: the plan fails with a :class:`RunMetadataError` naming the problem and the fix, and
    nothing is written anywhere.
    """

    def __init__(self, previous: Callable[[Any], Any] | None = None) -> None:
        self.previous = previous

    def __call__(self, md: Any) -> dict[str, Any]:
        if self.previous is not None:
            md = self.previous(md)
        try:
            return normalize_start(md)
        except RunMetadataError as exc:
            raise type(exc)(f"{exc}; the run was not started, nothing was written") from None


def _is_simulated(run: Any) -> bool:
    """Whether a stored run is anything but plainly measured (judged on metadata and specs)."""
    start = run.metadata.get("start", {})
    declared = start.get("data_origin", MEASURED)
    return declared != MEASURED or SIMULATED_SPEC in spec_names(run.specs)


def _stamp(origin: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A TiledWriter start patch: the stored copy normalised and marked with ``origin``."""

    def patch(doc: dict[str, Any]) -> dict[str, Any]:
        # TiledWriter hands its patches a copy: the RunEngine's document is untouched.
        doc = normalize_start(doc)
        doc["data_origin"] = origin
        if origin == SIMULATED and SIMULATED_SPEC not in spec_names(doc.get("tiled_specs")):
            doc["tiled_specs"] = [*(doc.get("tiled_specs") or []), SIMULATED_SPEC]
        return doc

    return patch


# -- connecting ----------------------------------------------------------------------------------


#: What Tiled's client accepts as an API key: it silently drops any other key (one with a space
#: or an ``&``, say) and then reports that the server needs a key, which misleads.
_API_KEY_PATTERN = re.compile(r"\w+")


def _refused_key(where: str, why: str = "") -> TiledConnectionError:
    return TiledConnectionError(
        f"the Tiled server at {where} refused the API key{why}; set {API_KEY_ENV} (or the "
        "profile's key) to a valid key for this server"
    )


def _connection_error(exc: BaseException, where: str) -> TiledConnectionError:
    """A clear error for a failed request (the key itself is never part of it)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401:
        return _refused_key(where)
    if status == 403:
        return TiledConnectionError(
            f"the Tiled server at {where} does not allow this with the API key given "
            f"({redact(str(exc))}); use a key with write access"
        )
    if isinstance(exc, RuntimeError) and "API key" in str(exc):
        return TiledConnectionError(
            f"the Tiled server at {where} needs an API key; set the environment variable "
            f"{API_KEY_ENV} or use a Tiled profile that provides one"
        )
    if isinstance(exc, httpx.TransportError):
        return TiledConnectionError(
            f"cannot reach the Tiled server at {where} ({type(exc).__name__}: "
            f"{redact(str(exc))}); is it running, and is the URI right?"
        )
    return TiledConnectionError(f"Tiled at {where}: {type(exc).__name__}: {redact(str(exc))}")


def _given_api_key(uri: str | None, profile: str | None, api_key: str | None) -> str | None:
    """The key Tiled's client will use: from the argument, URI, profile or variable."""
    if api_key is not None:
        return api_key
    if profile is not None:
        _, content = load_profiles().get(profile, (None, {}))
        if content.get("api_key"):
            return str(content["api_key"])
        uri = content.get("uri")
    if uri is not None:
        in_uri = parse_qs(urlsplit(uri).query).get("api_key")
        if in_uri:
            return in_uri[0]
    return os.environ.get(API_KEY_ENV)


def open_node(uri: str | None, profile: str | None, api_key: str | None) -> Any:
    """A Tiled client of the node at ``uri`` or of ``profile``; errors made clear."""
    where = redact(uri) if uri is not None else f"profile {profile!r}"
    # Without an explicit key, Tiled's client takes one from the URI's query, the profile, or
    # TILED_API_KEY, in that order; so nothing is passed then.
    options = {} if api_key is None else {"api_key": api_key}
    key = _given_api_key(uri, profile, api_key)
    if key and not _API_KEY_PATTERN.fullmatch(key):
        raise _refused_key(
            where, " (a Tiled API key is letters, digits and '_' only; this one has others)"
        )
    try:
        if uri is not None:
            return from_uri(uri, **options)
        return from_profile(profile, **options)
    except ProfileNotFound as exc:
        raise TiledConnectionError(str(exc)) from None
    except (ClientError, httpx.TransportError, RuntimeError) as exc:
        raise _connection_error(exc, where) from None


def _node_uri(node: Any) -> str:
    """The URI of a client's node, without any API key: ``.../api/v1`` for a server's root."""
    api = str(node.context.api_uri).rstrip("/")
    parts = [part for part in getattr(node, "path_parts", None) or [] if part]
    return f"{api}/metadata/{'/'.join(parts)}" if parts else api


def _existing_catalog(node: Any, key: str) -> Any:
    """The child ``key`` of ``node``, checked to be a catalog of bluesky runs (KeyError if none)."""
    child = node[key]
    versions = [s.version or "" for s in child.specs if s.name == CATALOG_SPEC.name]
    if not any(v.startswith("3.") for v in versions):
        raise DigitwinInputError(
            f"{_node_uri(child)} exists but is not a {CATALOG_SPEC.name} 3.x container (its "
            f"specs: {', '.join(str(s) for s in child.specs) or 'none'}); the layout needs "
            f"'{key}' to be one: use another node, or move that container away"
        )
    return child


def _ensure_catalog(node: Any, key: str) -> Any:
    """The container ``key`` under ``node``, created the first time (with its spec)."""
    try:
        return _existing_catalog(node, key)
    except KeyError:
        pass
    try:
        return node.create_container(
            key=key, specs=[CATALOG_SPEC], metadata={"description": _DESCRIPTIONS[key]}
        )
    except ClientError as exc:
        if exc.response.status_code != httpx.codes.CONFLICT:
            raise _connection_error(exc, _node_uri(node)) from None
    # Someone else created it between our look-up and our creation: use theirs.
    return _existing_catalog(node, key)


class TwinCatalog:
    """The ``measured`` and ``simulated`` containers under one Tiled node.

    Make one with :meth:`connect` (a server by URI or profile, or a client node you have) or
    :meth:`embedded` (a server started here). The containers are created the first time, with
    the spec ``CatalogOfBlueskyRuns`` 3.0, and reused afterwards.

    Attributes
    ----------
    node
        The Tiled client of the node holding the two containers.
    """

    def __init__(self, node: Any, *, create: bool = True, server: Any = None) -> None:
        self.node = node
        self._server = server
        # Kept after close(): the backups of an embedded catalog live in its directory.
        self._directory = None if server is None else str(server.directory)
        self._containers: dict[str, Any] = {}
        if create:
            for origin in ORIGINS:
                self._containers[origin] = _ensure_catalog(node, origin)

    @classmethod
    def connect(
        cls,
        uri: str | None = None,
        *,
        api_key: str | None = None,
        profile: str | None = None,
        node: Any = None,
        create: bool = True,
    ) -> TwinCatalog:
        """Use the node at ``uri``, of Tiled ``profile``, or the client ``node`` given.

        Parameters
        ----------
        uri
            e.g. ``"https://tiled.facility.org/api/v1/metadata/beamline/digitwin"``.
        api_key
            Best left out: the key is then taken from ``TILED_API_KEY`` or the profile, so that
            it never sits in code or in a command line.
        profile
            Name of a Tiled profile (``tiled profile list``).
        node
            A Tiled client node, already authenticated.
        create
            Create the containers when missing (needs write access); with False a missing
            container is an error when it is used.

        Raises
        ------
        TiledConnectionError
            The server cannot be reached, or the API key is missing or wrong.
        """
        given = [
            name
            for name, value in (("uri", uri), ("profile", profile), ("node", node))
            if value is not None
        ]
        if len(given) != 1:
            raise DigitwinInputError(
                f"give exactly one of uri, profile or node (got {', '.join(given) or 'none'})"
            )
        if node is None:
            node = open_node(uri, profile, api_key)
        elif api_key is not None:
            raise DigitwinInputError("api_key goes with uri or profile; a node has its key")
        try:
            return cls(node, create=create)
        except (ClientError, httpx.TransportError) as exc:
            raise _connection_error(exc, _node_uri(node)) from None

    @classmethod
    def embedded(
        cls, directory: str | os.PathLike, *, api_key: str | None = None, port: int = 0
    ) -> TwinCatalog:
        """Start a Tiled server in this process, on 127.0.0.1, storing everything in ``directory``.

        The server runs until :meth:`close` (or the end of a ``with`` block). Started again on
        the same directory, it serves the runs written before.

        Parameters
        ----------
        directory
            Where the catalog (SQLite), tables (DuckDB), arrays and logs are kept.
        api_key
            The key clients must give (letters and digits); by default a random one, the same
            for all embedded servers of this process, available as :attr:`api_key` for other
            clients of this session. (Tiled 0.2 lets the embedded servers of one process have
            one key only: a different key while one runs is refused.)
        port
            TCP port; by default a free one chosen by the system.
        """
        from tiled.server import SimpleTiledServer

        running = set(_RUNNING_KEYS.values())
        if api_key is None:
            api_key = next(iter(running), _PROCESS_KEY)
        elif not re.fullmatch("[A-Za-z0-9]+", api_key):
            raise DigitwinInputError("the embedded server's API key must be letters and digits")
        elif running - {api_key}:
            raise DigitwinInputError(
                "another embedded Tiled server of this process uses another API key, and Tiled "
                "0.2 gives all servers of a process the key of the last one started; close it "
                "first, or leave api_key out to share its key"
            )
        # SimpleTiledServer listens on 127.0.0.1 only (uvicorn's default host).
        server = SimpleTiledServer(os.fspath(directory), api_key=api_key, port=port)
        try:
            # The key goes in a header, not in the URI (which servers log).
            node = from_uri(f"http://127.0.0.1:{server.port}/api/v1", api_key=api_key)
            catalog = cls(node, server=server)
        except BaseException:
            server.close()
            raise
        _RUNNING_KEYS[id(catalog)] = api_key
        return catalog

    # -- what it is ----------------------------------------------------------------------------

    @property
    def measured(self) -> Any:
        """The container of measured runs (a bluesky-tiled-plugins ``CatalogOfBlueskyRuns``)."""
        return self.container(MEASURED)

    @property
    def simulated(self) -> Any:
        """The container of simulated runs."""
        return self.container(SIMULATED)

    def container(self, origin: str) -> Any:
        """The container of runs of ``origin`` ("measured" or "simulated")."""
        if origin not in ORIGINS:
            raise DigitwinInputError(f"origin must be 'measured' or 'simulated', not {origin!r}")
        if origin not in self._containers:
            try:
                self._containers[origin] = _existing_catalog(self.node, origin)
            except KeyError:
                raise DigitwinInputError(
                    f"there is no container {origin!r} under {self.uri}; write runs with "
                    "TwinCatalog.connect(...) (which creates it) first"
                ) from None
        return self._containers[origin]

    @property
    def uri(self) -> str:
        """The URI of the node (no API key in it)."""
        return _node_uri(self.node)

    @property
    def api_key(self) -> str | None:
        """The API key in use, for other clients of this session. Never print or log it."""
        return self.node.context.api_key

    @property
    def directory(self) -> str | None:
        """The embedded server's directory (None for a server reached by URI)."""
        return self._directory

    def __repr__(self) -> str:
        kind = "embedded" if self._directory is not None else "connected"
        return f"<TwinCatalog {kind} {self.uri}>"

    # -- writing -------------------------------------------------------------------------------

    def _tiled_writer(
        self, origin: str, backup_directory: str | None = None, batch_size: int | None = None
    ) -> Callable[[str, Mapping[str, Any]], None]:
        from bluesky_tiled_plugins import TiledWriter

        options: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
        return TiledWriter(
            self.container(origin),
            patches={"start": _stamp(origin)},
            backup_directory=backup_directory,
            **options,
        )

    def writer(
        self,
        origin: str,
        *,
        backup_directory: str | None = None,
        batch_size: int | None = None,
    ) -> ContainerWriter:
        """A callback writing runs of ``origin`` only; others are refused at their start.

        The refusal is a :class:`DataOriginError` raised from the callback, before anything is
        written: subscribed to a RunEngine, it aborts the plan. To send each run where it
        belongs, without ever raising and keeping a backup of every run Tiled did not take,
        use :meth:`subscribe` (or :meth:`router`).

        Parameters
        ----------
        origin
            "measured" or "simulated".
        backup_directory
            TiledWriter keeps the documents of a run it failed to write here (JSON lines).
        batch_size
            Events gathered before a write (TiledWriter's default: until the run stops; 1
            streams each event, e.g. for live viewing).
        """
        writer = self._tiled_writer(origin, backup_directory, batch_size)
        return ContainerWriter(origin, writer, _node_uri(self.container(origin)))

    @property
    def backup_directory(self) -> Path:
        """Where :meth:`router` keeps runs by default (:func:`default_backup_directory`)."""
        return default_backup_directory(self.directory, None if self.directory else self.uri)

    def _replay_hint(self, path: Path) -> str:
        return _replay_hint(path, None if self._directory else self.uri, self._directory)

    def router(
        self,
        *,
        backup_directory: str | os.PathLike | None = None,
        batch_size: int | None = None,
    ) -> OriginRouter:
        """One callback sending each run to the container of its origin (:class:`OriginRouter`).

        Parameters
        ----------
        backup_directory
            Where every run is kept until Tiled has all of it, and where runs Tiled refused or
            could not take stay (see :meth:`replay`). By default :attr:`backup_directory`:
            ``backup/`` in an embedded catalog's directory, else the user's data directory.
        batch_size
            As for :meth:`writer`.
        """
        directory = self.backup_directory if backup_directory is None else backup_directory
        writers = {origin: self._tiled_writer(origin, None, batch_size) for origin in ORIGINS}
        return OriginRouter(writers, backup_directory=directory, replay_hint=self._replay_hint)

    def subscribe(
        self,
        RE: Any,
        *,
        backup_directory: str | os.PathLike | None = None,
        batch_size: int | None = None,
    ) -> int:
        """Subscribe :meth:`router` to the RunEngine ``RE``; return the subscription token.

        Also installs a :class:`StartNormalizer` as ``RE.md_normalizer`` (after the one set
        before, which keeps running first), so that a run whose metadata cannot be stored
        fails before it starts, with a clear error, instead of being stored nowhere.
        Unsubscribing leaves it in place.
        """
        if not isinstance(RE.md_normalizer, StartNormalizer):
            RE.md_normalizer = StartNormalizer(RE.md_normalizer)
        return RE.subscribe(self.router(backup_directory=backup_directory, batch_size=batch_size))

    # -- replaying backups ---------------------------------------------------------------------

    def replay(self, path: str | os.PathLike) -> list[ReplayedRun]:
        """Store the runs kept in backup files (by :meth:`router`) where they belong.

        Each run goes to the container of its origin with its own uid, as if written live. A
        run Tiled already holds whole is not written again; a run Tiled holds in part (the
        write broke off) is replaced. The backup file of a run now stored is removed; the
        others are kept and reported.

        Parameters
        ----------
        path
            A backup file (``<uid>.jsonl``) or a directory of them.

        Returns
        -------
        list of ReplayedRun
            One per backup file, in the order of their names.

        Raises
        ------
        DigitwinInputError
            ``path`` is no backup; :class:`TiledConnectionError` when the server cannot be
            reached (the backups are kept).
        """
        path = Path(path)
        if path.is_dir():
            files = sorted(path.glob(f"*{BACKUP_SUFFIX}"))
        elif path.is_file():
            files = [path]
        else:
            raise DigitwinInputError(f"{path} is no backup file nor a directory of them")
        try:
            return [self._replay_file(file) for file in files]
        except (ClientError, httpx.TransportError) as exc:
            raise _connection_error(exc, self.uri) from None

    def _replay_file(self, path: Path) -> ReplayedRun:
        docs = read_backup(path)
        uid = str(docs[0][1]["uid"])
        with open(path, "rb") as held:
            if not _lock(held):
                detail = "a running session is still writing it; replay it once that run ends"
                return ReplayedRun(uid, None, path, "in progress", detail)
            return self._replay_run(path, uid, docs)

    def _replay_run(
        self, path: Path, uid: str, docs: list[tuple[str, dict[str, Any]]]
    ) -> ReplayedRun:
        start = docs[0][1]
        try:
            origin = data_origin_of(normalize_start(start))
        except RunMetadataError as exc:
            return ReplayedRun(uid, None, path, "refused", f"{exc}; correct it in {path}")
        container = self.container(origin)
        try:
            stored = container[uid]
        except KeyError:
            stored = None
        if stored is not None:
            if stored.metadata.get("stop") is not None:
                path.unlink()
                return ReplayedRun(uid, origin, path, "already stored")
            # The write broke off after the run's node was made: write it anew.
            container.delete_contents(uid, recursive=True, external_only=False)
        # Without a stop document TiledWriter would keep the events for the stop forever.
        ends = any(name == "stop" for name, _ in docs)
        writer = self._tiled_writer(origin, batch_size=None if ends else 1)
        try:
            for name, doc in docs:
                writer(name, doc)
        except Exception as exc:
            detail = f"{type(exc).__name__}: {redact(str(exc))}"
            logger.debug("replaying %s failed", path, exc_info=True)
            return ReplayedRun(uid, origin, path, "failed", detail)
        path.unlink()
        return ReplayedRun(uid, origin, path, "stored", "" if ends else "it has no stop document")

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the embedded server (if this catalog started one); the data stay on disk."""
        if self._server is not None:
            self._server.close()
            self._server = None
            _RUNNING_KEYS.pop(id(self), None)

    def __enter__(self) -> TwinCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ContainerWriter:
    """A bluesky callback writing runs of one origin to its container, refusing the others.

    A run of the other origin (or with a contradictory ``data_origin``) is refused at its start
    document with a :class:`DataOriginError`, before TiledWriter sees it: nothing of it is
    written, and its later documents are dropped.
    """

    def __init__(self, origin: str, writer: Callable[[str, Any], None], uri: str) -> None:
        self.origin = origin
        self.uri = uri
        self._writer = writer
        # event_model's RunRouter follows each run's documents; a factory that raises at the
        # start leaves that run with no callbacks, so nothing of it reaches the writer.
        self._router = event_model.RunRouter([self._factory])

    def _factory(self, name: str, start: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
        origin = data_origin_of(start)
        if origin != self.origin:
            raise DataOriginError(
                f"refused run {start.get('uid')}: it is {origin} (data_origin "
                f"{start.get('data_origin')!r}, tiled_specs {start.get('tiled_specs')!r}) and "
                f"does not belong in the {self.origin!r} container at {self.uri}; nothing of "
                "it was written (TwinCatalog.subscribe routes each run to its container)"
            )
        return [self._writer], []

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        self._router(name, doc)

    def __repr__(self) -> str:
        return f"<ContainerWriter {self.origin!r} -> {self.uri}>"


# -- backups of runs Tiled did not take ----------------------------------------------------------

#: The name of a backup file: the run's uid and this suffix (JSON lines, one document a line).
BACKUP_SUFFIX = ".jsonl"


def default_backup_directory(
    catalog_directory: str | os.PathLike | None = None, uri: str | None = None
) -> Path:
    """Where runs Tiled did not take are kept when no backup directory is given.

    ``backup/`` inside an embedded catalog's directory; otherwise
    ``$XDG_DATA_HOME/bluesky-digitwin/tiled-backup`` (``~/.local/share/...`` by default), in a
    folder per server node when its ``uri`` is given (so that a replay sends runs back where
    they were meant to go).
    """
    if catalog_directory is not None:
        return Path(catalog_directory) / "backup"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    directory = Path(base) / "bluesky-digitwin" / "tiled-backup"
    if uri is None:
        return directory
    parts = urlsplit(uri)
    return directory / re.sub(r"[^A-Za-z0-9._-]+", "_", f"{parts.netloc}{parts.path}").strip("_")


class _DocumentEncoder(event_model.NumpyEncoder):
    """JSON for documents: numpy values as numbers and lists, anything else as its repr."""

    def default(self, obj: Any) -> Any:
        try:
            return super().default(obj)
        except TypeError:
            return repr(obj)  # kept readable rather than lost with the rest of the run


def _lock(file: Any) -> bool:
    """Take an exclusive lock on an open file, where the system has them: whether it was taken.

    The backup of a run being written is locked, so that a replay (from this session or
    another) leaves it alone.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no such locks; a run still being written is not detected
        return True
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class _Journal:
    """The documents of one run appended to ``<directory>/<uid>.jsonl`` as they come.

    The format is TiledWriter's and bluesky's JSON-lines backup: ``{"name": ..., "doc": ...}``
    a line. Written before Tiled sees a document, so that a failed write, a server gone or a
    killed session loses nothing; removed once Tiled has the whole run.
    """

    def __init__(self, directory: Path, uid: str) -> None:
        self.path = directory / f"{uid}{BACKUP_SUFFIX}"
        self.broken: str | None = None
        self._file: Any = None

    def write(self, name: str, doc: Mapping[str, Any]) -> None:
        if self.broken is not None:
            return
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Open for the whole run (closed at its stop): one flush per document.
                self._file = open(self.path, "a", encoding="utf-8")
                _lock(self._file)
            line = json.dumps({"name": name, "doc": doc}, cls=_DocumentEncoder)
            self._file.write(line + "\n")
            self._file.flush()
        except (OSError, ValueError) as exc:
            self.broken = f"{type(exc).__name__}: {exc}"
            logger.error("cannot keep the documents of a run in %s (%s)", self.path, self.broken)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)  # still locked: no replay takes it meanwhile
        self.close()


def read_backup(path: str | os.PathLike) -> list[tuple[str, dict[str, Any]]]:
    """The documents of a run kept in a backup file, as ``(name, doc)`` pairs.

    A last line cut off (the session was killed while writing it) is left out with a
    :class:`~bluesky_digitwin.errors.DataWarning`.

    Raises
    ------
    DigitwinInputError
        The file is not a backup of a run (no start document first, a line that is not a
        document).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DigitwinInputError(f"cannot read the backup {path}: {exc}") from None
    docs = []
    for number, line in enumerate(lines, start=1):
        try:
            item = json.loads(line)
            docs.append((str(item["name"]), dict(item["doc"])))
        except (ValueError, TypeError, KeyError) as exc:
            if number == len(lines) and docs:
                warnings.warn(f"{path}: its last line is cut off; left out", DataWarning, 2)
                break
            raise DigitwinInputError(
                f"{path} line {number} is not a bluesky document ({exc}); a backup holds one "
                '{"name": ..., "doc": ...} a line'
            ) from None
    if not docs or docs[0][0] != "start" or "uid" not in docs[0][1]:
        raise DigitwinInputError(f"{path} is not the backup of a run: it does not begin with one")
    return docs


@dataclass(frozen=True)
class ReplayedRun:
    """What :meth:`TwinCatalog.replay` did with one backup file.

    Attributes
    ----------
    uid, origin, path
        The run, where it belongs ("measured", "simulated"; None if refused), its backup file.
    outcome
        "stored" (written now; the backup file is removed), "already stored" (Tiled had the
        whole run; the file is removed), "refused" (its metadata cannot be stored: ``detail``
        says why; the file is kept), "failed" (Tiled did not take it: ``detail``; kept) or
        "in progress" (a session is still writing the run; left alone).
    """

    uid: str
    origin: str | None
    path: Path
    outcome: Literal["stored", "already stored", "refused", "failed", "in progress"]
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("stored", "already stored")


def _replay_hint(path: Path, uri: str | None, catalog_directory: str | None) -> str:
    """How to put the runs of a backup into Tiled, for the messages."""
    if catalog_directory is not None:
        cli = f"digitwin replay {path} --tiled-dir {catalog_directory} (with the server stopped)"
    elif uri is not None:
        cli = f"digitwin replay {path} --tiled-uri {uri}"
    else:
        cli = f"digitwin replay {path} --tiled-uri URI"
    return f"catalog.replay({str(path)!r}), or {cli}"


class _RunShield:
    """One run's documents: into its backup first, then to the writer; never raising.

    After a failed write the writer gets nothing more of the run; the backup is kept and said
    loudly. The backup is removed when the writer took the whole run.
    """

    def __init__(
        self,
        writer: Callable[[str, Any], None] | None,
        uid: str,
        journal: _Journal,
        failed: dict[str, str],
        hint: str,
        refused: str | None = None,
    ) -> None:
        self._refused = refused
        self._writer = writer
        self._uid = uid
        self._journal = journal
        self._failed = failed
        self._hint = hint

    def lost(self, what: str) -> None:
        """Say that the run is not in Tiled, and where its documents are."""
        if self._journal.broken is None:
            message = (
                f"{what}; every document of the run is kept in {self._journal.path}: store it "
                f"with {self._hint}"
            )
        else:
            message = f"{what}, and its backup failed too ({self._journal.broken}): run LOST"
        logger.error(message)
        warnings.warn(message, DataWarning, stacklevel=2)

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        self._journal.write(name, doc)
        if name == "start" and self._refused is not None:
            self.lost(f"not written to Tiled: {self._refused}")
        writing = self._writer is not None and self._uid not in self._failed
        if writing:
            try:
                self._writer(name, doc)  # type: ignore[misc]
            except Exception as exc:
                writing = False
                self._failed[self._uid] = f"{type(exc).__name__}: {redact(str(exc))}"
                logger.debug("writing run %s to Tiled failed", self._uid, exc_info=True)
                if name == "stop":
                    self._journal.close()
                self.lost(
                    f"writing run {self._uid} to Tiled failed at its {name!r} document "
                    f"({self._failed[self._uid]})"
                )
        if name == "stop":
            if writing:
                self._journal.discard()
            else:
                self._journal.close()


class OriginRouter:
    """One bluesky callback sending each run to the Tiled container of its origin.

    Measured runs go to ``measured`` (stored with ``data_origin: "measured"``), simulated runs
    to ``simulated`` (stored with ``data_origin: "simulated"`` and the spec ``SimulatedRun``);
    the stored start is normalised (:func:`normalize_start`).

    Nothing here raises into the RunEngine, and no run is lost: every document is first
    appended to a backup file ``<backup_directory>/<uid>.jsonl``, removed once Tiled has the
    whole run. A run whose start metadata cannot be stored (see :func:`normalize_start`; the
    :class:`StartNormalizer` that :meth:`TwinCatalog.subscribe` installs stops such runs before
    they start) is not written, and recorded in :attr:`refused`; a failed write (Tiled refuses,
    or is gone) stops the writing of that run and is recorded in :attr:`failed`. Either way the
    backup is kept, and an error is logged and a :class:`~bluesky_digitwin.errors.DataWarning`
    issued, with the backup's path and how to store it (:meth:`TwinCatalog.replay`).

    Parameters
    ----------
    writers
        A writer callback per origin (TiledWriters on the two containers).
    backup_directory
        Where the backups go (created when needed); by default
        :func:`default_backup_directory`.
    replay_hint
        How to store a backup, for the messages, given its path.

    Attributes
    ----------
    refused : dict
        Run uid -> why it was not written.
    failed : dict
        Run uid -> the error that stopped its writing.
    backup_directory : Path
    """

    def __init__(
        self,
        writers: Mapping[str, Callable[[str, Any], None]],
        *,
        backup_directory: str | os.PathLike | None = None,
        replay_hint: Callable[[Path], str] | None = None,
    ) -> None:
        self._writers = dict(writers)
        self.backup_directory = Path(
            default_backup_directory() if backup_directory is None else backup_directory
        )
        try:  # a backup directory that cannot be written is said now, not when it is needed
            self.backup_directory.mkdir(parents=True, exist_ok=True)
            if not os.access(self.backup_directory, os.W_OK | os.X_OK):
                raise PermissionError("not writable")
        except OSError as exc:
            raise DigitwinInputError(
                f"cannot keep backups of runs in {self.backup_directory} ({exc}); give "
                "backup_directory= a directory this session can write"
            ) from None
        self._hint = replay_hint or (lambda path: f"TwinCatalog.replay({str(path)!r})")
        self.refused: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self._router = event_model.RunRouter([self._factory])
        self._warn_of_leftovers()

    def _warn_of_leftovers(self) -> None:
        """Backups left by earlier sessions (a write that failed, a session killed) are said."""
        left = sorted(self.backup_directory.glob(f"*{BACKUP_SUFFIX}"))
        if left:
            message = (
                f"{len(left)} run(s) kept in {self.backup_directory} are not in Tiled yet (a "
                "write that failed, a session that ended mid-run, or one still measuring): "
                "store them with "
                f"{self._hint(self.backup_directory)}"
            )
            logger.warning(message)
            warnings.warn(message, DataWarning, stacklevel=3)

    def _factory(self, name: str, start: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
        uid = str(start.get("uid"))
        journal = _Journal(self.backup_directory, uid)
        try:
            origin = data_origin_of(normalize_start(start))
        except RunMetadataError as exc:
            self.refused[uid] = str(exc)
            hint = self._hint(journal.path)
            return [_RunShield(None, uid, journal, self.failed, hint, refused=str(exc))], []
        if origin == SIMULATED and "digital_twin" not in start:
            logger.warning("simulated run %s carries no digital_twin provenance", uid)
        shield = _RunShield(
            self._writers[origin], uid, journal, self.failed, self._hint(journal.path)
        )
        return [shield], []

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        try:
            self._router(name, doc)
        except Warning:
            raise  # the caller turned warnings into errors: theirs to see
        except Exception:
            # E.g. a document of a run whose start was never seen (subscribed mid-run).
            logger.exception("OriginRouter skipped a %r document", name)


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
        return [("", source)], _node_uri(source)
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
            runs = [run for run in runs if not _is_simulated(run)]
        if not runs:
            raise _no_match(sources, where, query, include_simulated)
        return runs, where
    except (ClientError, httpx.TransportError) as exc:
        raise _connection_error(exc, where) from None


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
    simulated = [run.metadata["start"]["uid"] for run in runs if _is_simulated(run)]
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
        raise _connection_error(exc, where) from None
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
) -> dict[str, Any]:
    """How to read the Dataset of :func:`read_runs` again: a search's ``data_source``.

    Search workers on other machines read the same runs from Tiled
    (:mod:`bluesky_digitwin.surrogate.workers`), so the study needs no copy of the data.
    """
    return {
        "kind": "tiled",
        "uri": data.attrs["tiled_uri"],
        "runs": list(data.attrs["run_uids"]),
        "features": [features] if isinstance(features, str) else list(features),
        "target": target,
        "keys": dict(keys) if keys else None,
        "stream": stream,
        "include_simulated": include_simulated,
    }
