"""What the ``digitwin`` command shows: progress on one line, results, one-line warnings."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = [
    "EXIT_USAGE",
    "ProgressLine",
    "StatusLine",
    "clear_status",
    "one_line_warnings",
    "quiet_libraries",
    "say",
    "show_result",
    "show_status",
    "start_tensorflow",
]

EXIT_USAGE = 2


class ProgressLine:
    """A one-line progress display of a search on stderr: redrawn in place on a terminal, else
    one line per change; silent when quiet.

    Give it as the ``progress`` of :meth:`DigitalTwin.fit
    <bluesky_digitwin.twin.DigitalTwin.fit>` (or of the search), and call :meth:`done` after.
    The examples use it too.
    """

    def __init__(self, label: str, quiet: bool = False, stream: TextIO | None = None):
        self.label = label
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._width = 0
        self._last: tuple[Any, ...] | None = None

    def __call__(self, p: Any) -> None:
        if self.quiet:
            return
        total = max(p.total, p.finished)  # parallel workers may finish a trial or two extra
        state = (p.finished, total, p.pruned, p.best_value)
        if not self.tty and state == self._last:
            return  # the search reports once more when it ends: in a log, once is enough
        self._last = state
        best = "-" if p.best_value is None else f"{p.best_value:.4g}"
        minutes, seconds = divmod(int(p.elapsed), 60)
        bar_len = 20
        filled = int(bar_len * p.finished / max(total, 1))
        text = (
            f"{self.label} [{'#' * filled}{'.' * (bar_len - filled)}] trial {p.finished}/{total}"
            f" ({p.pruned} pruned), best validation MSE {best}, {minutes}:{seconds:02d} elapsed"
        )
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty and self._width and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()


class StatusLine:
    """What a command is waiting for, on stderr.

    On a terminal, one transient line: the next status replaces it, and it is erased before
    anything else is printed, so the screen keeps only results and errors (an error stays one
    line). In a pipe or a log it prints nothing, as git does: there, nobody watches the wait.
    Silent when quiet.
    """

    def __init__(self, quiet: bool = False, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self._shown = False

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        # Cut to the terminal's width: a wrapped line could not be erased.
        self.stream.write("\r\033[K" + text[: self._width() - 1])
        self.stream.flush()
        self._shown = True

    def _width(self) -> int:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        return columns or shutil.get_terminal_size().columns  # 0: a terminal never sized

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False


def clear_status(args: argparse.Namespace) -> None:
    status = getattr(args, "status_line", None)
    if status is not None:
        status.clear()


def say(args: argparse.Namespace, text: str) -> None:
    """Human-readable output: stderr when stdout carries JSON, else stdout; none with -q."""
    if getattr(args, "quiet", False):
        return
    clear_status(args)
    stream = sys.stderr if getattr(args, "json", False) else sys.stdout
    print(text, file=stream, flush=True)


def show_status(args: argparse.Namespace, text: str) -> None:
    """Show what the command waits for (:class:`StatusLine`: on a terminal only)."""
    status = getattr(args, "status_line", None)
    if status is not None:
        status.show(text)


def show_result(args: argparse.Namespace, text: str) -> None:
    """The human-readable result asked for: stdout, even with -q. With --json the JSON line is
    the result, and this goes to stderr, as :func:`say` does (none with -q)."""
    if getattr(args, "json", False):
        say(args, text)
    else:
        clear_status(args)
        print(text, flush=True)


@contextlib.contextmanager
def one_line_warnings(status: StatusLine | None = None) -> Iterator[None]:
    """Show warnings as ``digitwin: warning: ...`` lines instead of Python's two-line form."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if status is not None:
            status.clear()
        print(f"digitwin: warning: {message}", file=sys.stderr, flush=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def start_tensorflow() -> None:
    """Import TensorFlow now, under a status line: it takes seconds (its C++ start-up lines are
    kept off the terminal, see bluesky_digitwin.tensorflow_runtime)."""
    import bluesky_digitwin.tensorflow_runtime  # noqa: F401


def quiet_libraries() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import optuna

    # Our progress line replaces Optuna's per-trial log lines.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)
