"""optuna-dashboard on a search's storage: learning curves, pruned trials, importances.

Every search (``digitwin fit``, :meth:`DigitalTwin.fit <bluesky_digitwin.twin.DigitalTwin.fit>`,
the :class:`~bluesky_digitwin.callbacks.TwinCallback`'s trainings) keeps its trials in an Optuna
storage: a journal file, or a database. Each trial reports its best validation loss as it trains
(the intermediate values the pruner judges), so the dashboard shows the learning curves of every
trial, which ones were pruned and when, the history of the search and which hyperparameters
mattered. The trials' networks are Optuna artifacts; when their directory is found (the one the
study records, or the search's default: beside the journal, ``<journal>.artifacts``), the
dashboard lists them too.

The dashboard has no login and can edit and delete studies: it listens on the loopback
interface unless told otherwise.

>>> dashboard = start_dashboard("search.journal", study="twin-1")  # doctest: +SKIP
>>> dashboard.study_url  # doctest: +SKIP
'http://127.0.0.1:41823/dashboard/studies/1'
>>> dashboard.close()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import sys
import threading
import warnings
import webbrowser
from collections.abc import Callable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import unquote, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from bluesky_digitwin.data import DigitwinInputError
from bluesky_digitwin.redaction import redact, redact_url

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Dashboard",
    "artifact_dir_for",
    "describe_storage",
    "open_dashboard_storage",
    "recorded_artifact_dir",
    "serve_dashboard",
    "start_dashboard",
    "study_names",
    "study_path",
]

logger = logging.getLogger(__name__)

#: Loopback only: the dashboard has no login and can delete studies.
DEFAULT_HOST = "127.0.0.1"
#: optuna-dashboard's own default port.
DEFAULT_PORT = 8080
#: How many study names an error message lists before "and N more".
_LISTED = 10

StorageLike = Any  # a journal file path, a database URL, or an Optuna storage object


def _is_url(text: str) -> bool:
    return "://" in text


def describe_storage(storage: StorageLike) -> str:
    """How to name ``storage`` to a user: the journal's path, or the URL without its secrets."""
    if isinstance(storage, (str, os.PathLike)):
        text = os.fspath(storage)
        return redact_url(text) if _is_url(text) else f"journal {text}"
    return type(storage).__name__


def open_dashboard_storage(storage: StorageLike) -> Any:
    """Open an existing storage for reading, as the search opens it (journal file or database).

    Unlike a search, which creates what it is given, a dashboard on a storage that does not
    exist yet would only show an empty page: a missing journal file, or a missing SQLite
    database file, is an error that says what to give instead.

    Raises
    ------
    DigitwinInputError
        The storage does not exist, cannot be opened, or is not an Optuna storage.
    """
    import optuna

    from bluesky_digitwin.surrogate.storage import open_storage

    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    text = os.fspath(storage)
    where = describe_storage(storage)
    if _is_url(text):
        _check_sqlite_file(text)
    else:
        path = Path(text)
        if path.is_dir():
            raise DigitwinInputError(
                f"--storage {text} is a directory; give the journal file a search wrote "
                "(the --storage of 'digitwin fit'), or a database URL"
            )
        if not path.is_file():
            raise DigitwinInputError(
                f"no journal file {text}; give the --storage of a search ('digitwin fit "
                "--storage PATH', or the demo's digitwin-demo/search.journal), or a database URL"
            )
    try:
        opened = open_storage(text)
        # Reading the studies reads (and so checks) the whole journal, or connects to the
        # database: a file that is not a journal fails here, not in the browser.
        opened.get_all_studies()
    except DigitwinInputError:
        raise
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        # Database drivers may quote the URL, password included.
        reason = redact(reason, url=text)
        kind = "a database" if _is_url(text) else "an Optuna journal file"
        raise DigitwinInputError(
            f"cannot read {where} as {kind}: {type(exc).__name__}: {reason}"
        ) from None
    return opened


def _check_sqlite_file(url: str) -> None:
    """SQLAlchemy creates a missing SQLite file: for a viewer, that is a typo, not a wish."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("sqlite") or not url.startswith(f"{parts.scheme}:///"):
        return
    name = unquote(url[len(f"{parts.scheme}:///") :].split("?", 1)[0])
    if name in ("", ":memory:") or name.startswith("file:"):
        return
    if not Path(name).is_file():
        raise DigitwinInputError(
            f"no SQLite database {name} (from --storage {redact_url(url)}); give the --storage "
            "of a search"
        )


def artifact_dir_for(storage: StorageLike) -> Path | None:
    """Where a search on ``storage`` puts its trial models by default, if that directory exists.

    For a journal file that is ``<journal>.artifacts``; for a database, the search's default
    directory in the user cache. ``None`` when there is none, or for a storage object (its
    searches may have used any store).
    """
    if not isinstance(storage, (str, os.PathLike)):
        return None
    # The search's own rule, kept in one place: beside a journal, or the user cache.
    from bluesky_digitwin.surrogate.storage import default_artifact_dir

    directory = default_artifact_dir(os.fspath(storage))
    return directory if directory.is_dir() else None


def recorded_artifact_dir(storage: Any, study: str) -> Path | None:
    """The trial models' directory that ``study`` records (searches write where their models
    go into the study, for workers elsewhere), if it is a directory here."""
    from bluesky_digitwin.surrogate.study_record import STUDY_RECORD, StudyRecord

    try:
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(study))
    except KeyError:
        return None
    record = StudyRecord.from_json(attrs.get(STUDY_RECORD))
    where = record.artifacts if record is not None else None
    if where is not None and where.kind == "filesystem" and where.path:
        directory = Path(where.path)
        return directory if directory.is_dir() else None
    return None


def study_names(storage: Any) -> list[str]:
    """Names of the studies ``storage`` holds, oldest first."""
    return [s.study_name for s in storage.get_all_studies()]


def study_path(storage: Any, study: str, where: str = "that storage") -> str:
    """The dashboard's path of ``study``'s page, e.g. ``/dashboard/studies/3``.

    optuna-dashboard addresses studies by the storage's study id, not by name.

    Raises
    ------
    DigitwinInputError
        No study of that name; the message lists those there are.
    """
    try:
        study_id = storage.get_study_id_from_name(study)
    except KeyError:
        names = study_names(storage)
        if not names:
            there = "it holds no study yet"
        else:
            shown = ", ".join(repr(n) for n in names[-_LISTED:])
            more = f" and {len(names) - _LISTED} older" if len(names) > _LISTED else ""
            there = f"it has: {shown}{more}"
        raise DigitwinInputError(f"no study {study!r} in {where}; {there}") from None
    return f"/dashboard/studies/{study_id}"


class _QuietHandler(WSGIRequestHandler):
    """wsgiref writes a line per request to stderr; the dashboard makes dozens a second."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("dashboard: " + format, *args)


class _Server(ThreadingMixIn, WSGIServer):
    """What optuna-dashboard's own command runs (a threaded wsgiref server): the page asks for
    several things at once. Its threads must not keep the process alive after Ctrl-C."""

    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser that closes a connection early is no error of ours: no traceback.
        logger.debug("dashboard: request from %s failed", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class Dashboard:
    """optuna-dashboard bound to a port, serving in a background thread or in the caller's.

    Made by :func:`start_dashboard` (already serving) or by :func:`serve_dashboard`. A context
    manager: leaving it stops the server.

    Attributes
    ----------
    url
        The dashboard's address, e.g. ``http://127.0.0.1:8080/dashboard``.
    study_url
        The page of the study asked for, or None.
    storage
        The opened Optuna storage.
    description
        What the storage is, for people (a database URL's password hidden).
    artifact_store
        The trial models' artifact store shown, or None.
    artifact_dir
        Its directory, when it is one (not a store object given).
    """

    def __init__(
        self,
        storage: StorageLike,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        study: str | None = None,
        artifact_store: Any = None,
    ):
        from optuna_dashboard import wsgi

        self.description = describe_storage(storage)
        self.storage = open_dashboard_storage(storage)
        path = study_path(self.storage, study, self.description) if study is not None else None
        self.artifact_dir, self.artifact_store = _artifacts(
            artifact_store, self.storage, storage, study
        )
        # optuna-dashboard's run_server() blocks in bottle's server, which can neither be
        # stopped from another thread nor tell the port it bound; its documented wsgi() app
        # under the same wsgiref server can.
        app = wsgi(self.storage, artifact_store=self.artifact_store)
        self._server = _bind(app, host, port)
        base = f"http://{_url_host(host)}:{self.port}"  # port 0: the one the system chose
        self.url = f"{base}/dashboard"
        self.study_url = base + path if path is not None else None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def port(self) -> int:
        """The port listened on."""
        return int(self._server.server_address[1])

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`close` is called from another (or Ctrl-C)."""
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> Dashboard:
        """Serve in a daemon thread; returns ``self``."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.serve_forever, name="digitwin-dashboard", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._server.shutdown()  # returns once serve_forever has ended
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Dashboard {self.study_url or self.url} on {self.description}>"


def _artifacts(
    given: Any, opened: Any, storage: StorageLike, study: str | None
) -> tuple[Path | None, Any]:
    """The trial models' directory and store: as given (a store, or a directory), else the
    directory the study records, else the search's default one; (None, None) if none exists."""
    from optuna.artifacts import FileSystemArtifactStore

    if given is not None and not isinstance(given, (str, os.PathLike)):
        return None, given
    if given is not None:
        directory: Path | None = Path(given)
        if not directory.is_dir():
            raise DigitwinInputError(
                f"--artifacts {given} is not a directory; give the directory of the trial models "
                "(the --artifacts of the search), or leave it out"
            )
    else:
        recorded = recorded_artifact_dir(opened, study) if study is not None else None
        directory = recorded or artifact_dir_for(storage)
    if directory is None:
        return None, None
    return directory, FileSystemArtifactStore(str(directory))


def _bind(app: Any, host: str, port: int) -> WSGIServer:
    if not 0 <= port <= 65535:
        raise DigitwinInputError(f"--port must be 0 (any free port) to 65535, got {port}")
    server_class = _Server6 if ":" in host else _Server
    try:
        return make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    except OSError as exc:
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise DigitwinInputError(
                f"port {port} on {host} is in use (another dashboard?); give another with "
                "--port, or --port 0 for any free one"
            ) from None
        raise DigitwinInputError(f"cannot listen on {host} port {port}: {exc.strerror}") from None


def _url_host(host: str) -> str:
    """The host part of a URL that reaches a server bound to ``host``."""
    if host in ("", "0.0.0.0", "::"):  # every interface: this machine's name reaches it
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def start_dashboard(
    storage: StorageLike,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    study: str | None = None,
    artifact_store: Any = None,
) -> Dashboard:
    """Start optuna-dashboard on ``storage`` in a background thread.

    For IPython sessions and tests: the call returns at once with the running
    :class:`Dashboard`; its ``url`` (or ``study_url``) is the address to open, and ``close()``
    stops it (so does leaving a ``with`` block).

    Parameters
    ----------
    storage
        A journal file path, a database URL, or an Optuna storage object.
    host, port
        Where to listen. Port 0 (the default here) takes any free port.
    study
        Also find this study's page (``study_url``); an error if there is no such study.
    artifact_store
        The trial models: an Optuna artifact store, or the directory of one. Default: the
        directory ``study`` records (:func:`recorded_artifact_dir`), else the search's default
        one (:func:`artifact_dir_for`), when it exists.
    """
    _warn_if_exposed(host)
    return Dashboard(
        storage, host=host, port=port, study=study, artifact_store=artifact_store
    ).start()


def serve_dashboard(
    storage: StorageLike,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    study: str | None = None,
    open_browser: bool = True,
    artifact_store: Any = None,
    say: Callable[[str], None] = print,
    show_url: Callable[[str], None] = print,
) -> None:
    """Serve optuna-dashboard on ``storage`` until Ctrl-C.

    Parameters
    ----------
    storage, host, port, study, artifact_store
        As for :func:`start_dashboard` (the default port here is 8080).
    open_browser
        Open the page in the user's web browser, when there is a graphical one.
    say
        Where the lines about the storage go.
    show_url
        Where the page's address goes (the study's, if one was asked for).

    Returns when interrupted (Ctrl-C), with the port released.
    """
    _warn_if_exposed(host)
    with Dashboard(
        storage, host=host, port=port, study=study, artifact_store=artifact_store
    ) as dashboard:
        n_studies = len(study_names(dashboard.storage))
        if dashboard.artifact_dir is not None:
            artifacts = f", trial models in {dashboard.artifact_dir}"
        elif dashboard.artifact_store is not None:
            artifacts = ", trial models in the store given"
        else:
            artifacts = ", no trial models found"
        say(
            f"optuna-dashboard on {dashboard.description} ({n_studies} "
            f"stud{'y' if n_studies == 1 else 'ies'}{artifacts}); Ctrl-C stops it"
        )
        url = dashboard.study_url or dashboard.url
        show_url(url)
        if open_browser:
            _open_in_browser(url)
        with contextlib.suppress(KeyboardInterrupt), warnings.catch_warnings():
            # Optuna warns about its importance estimates on small studies at every page
            # view; on the terminal those lines bury the address. (The filters are global, so
            # this covers the request threads too.)
            warnings.simplefilter("ignore")
            dashboard.serve_forever()


def _warn_if_exposed(host: str) -> None:
    if not _is_loopback(host):
        warnings.warn(
            f"the dashboard on {host or 'every interface'} has no login: anyone who can reach "
            "this machine's port can read, edit and delete the studies",
            stacklevel=3,
        )


def _open_in_browser(url: str) -> None:
    """Open ``url`` in a graphical browser; never a text browser that would take the terminal."""
    graphical = (
        sys.platform in ("darwin", "win32")
        or os.environ.get("BROWSER")
        or os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
    )
    if not graphical:
        logger.debug("no graphical browser to open %s", url)
        return
    # In a thread: some browsers' launchers take a while, and the server must answer meanwhile.
    threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
