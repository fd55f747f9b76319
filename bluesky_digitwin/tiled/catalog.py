"""TwinCatalog: the two containers on an embedded or a facility Tiled server."""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from tiled.client import from_uri
from tiled.client.utils import ClientError

from bluesky_digitwin.errors import DigitwinInputError
from bluesky_digitwin.redaction import redact
from bluesky_digitwin.run_documents import (
    MEASURED,
    ORIGINS,
    SIMULATED,
    RunMetadataError,
    data_origin_of,
)

from .connection import connection_error, ensure_catalog, existing_catalog, node_uri, open_node
from .layout import (
    StartNormalizer,
    normalize_start,
    origin_stamp,
)
from .writing import (
    BACKUP_SUFFIX,
    ContainerWriter,
    OriginRouter,
    ReplayedRun,
    default_backup_directory,
    read_backup,
    replay_hint,
    try_lock,
    write_document,
)

__all__ = ["TwinCatalog"]

logger = logging.getLogger(__name__)

#: Tiled 0.2's SimpleTiledServer writes its API key into settings that every server of the
#: process shares (the last one started wins), so the embedded servers of one process must share
#: one key: a random one per process by default. Keys of running embedded servers, by id.
_PROCESS_KEY = secrets.token_hex(32)
_RUNNING_KEYS: dict[int, str] = {}


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
                self._containers[origin] = ensure_catalog(node, origin)

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
            raise connection_error(exc, node_uri(node)) from None

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
                self._containers[origin] = existing_catalog(self.node, origin)
            except KeyError:
                raise DigitwinInputError(
                    f"there is no container {origin!r} under {self.uri}; write runs with "
                    "TwinCatalog.connect(...) (which creates it) first"
                ) from None
        return self._containers[origin]

    @property
    def uri(self) -> str:
        """The URI of the node (no API key in it)."""
        return node_uri(self.node)

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
            patches={"start": origin_stamp(origin)},
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
        return ContainerWriter(origin, writer, node_uri(self.container(origin)))

    @property
    def backup_directory(self) -> Path:
        """Where :meth:`router` keeps runs by default (:func:`default_backup_directory`)."""
        return default_backup_directory(self.directory, None if self.directory else self.uri)

    def replay_hint(self, path: Path) -> str:
        return replay_hint(path, None if self._directory else self.uri, self._directory)

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
        return OriginRouter(writers, backup_directory=directory, replay_hint=self.replay_hint)

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
            raise connection_error(exc, self.uri) from None

    def _replay_file(self, path: Path) -> ReplayedRun:
        docs = read_backup(path)
        uid = str(docs[0][1]["uid"])
        with open(path, "rb") as held:
            if not try_lock(held):
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
                write_document(writer, name, doc)
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
