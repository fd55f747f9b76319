"""The ``digitwin`` command.

Contract (docs/architecture.md; keep it stable)::

    digitwin fit DATA --features A B --target Y [--trials N] [--workers K] [--seed S]
                 [--storage URL] [--study NAME] --out DIR
    digitwin fit --tiled-uri URI --runs UID ... --features A B --target Y [...] --out DIR
                 (added: learn from runs stored in Tiled; the API key from TILED_API_KEY)
    digitwin predict DIR GRID --out PRED.csv
    digitwin demo [--json]
                 (added: [--fast] [--tiled-dir DIR | --tiled-uri URI]
                 [--storage URL | --no-storage])

Analysis (added; see ``digitwin suggest-step --help`` and ``digitwin compare --help``)::

    digitwin suggest-step DIR --axis H [--candidates 0.05 0.1 ...] [--candidate-units T]
                 [--quantity map|magnetocaloric] [--mass 0.61 --mass-units mg] [--tol 0.02] [--json]
    digitwin compare DATA --features A B --target Y [--twin DIR | --trials N] [--seed S]
                 [--reference FINE.csv [--reference-columns t h m]]
                 [--quantity magnetocaloric --mass 0.61 --mass-units mg --at 3 5] [--json]

Searches (added; see ``digitwin worker --help`` and ``digitwin dashboard --help``)::

    digitwin fit ... --storage postgresql://user@host/db --study NAME --workers 0
                 [--artifacts DIR] [--heartbeat S]   (wait for workers elsewhere, then build)
    digitwin worker --storage URL --study NAME [--trials N] [--artifacts DIR] [--heartbeat S]
                 (join a search from any machine; the study says what and on what data)

    digitwin dashboard [--storage URL] [--study NAME] [--artifacts DIR] [--host 127.0.0.1]
                 [--port 8080] [--no-browser]   (optuna-dashboard: learning curves, pruning,
                 importances, the trial models)

Backups (added; see ``digitwin replay --help``)::

    digitwin replay PATH (--tiled-uri URI | --tiled-dir DIR)
                 (store the runs TwinCatalog.subscribe kept when Tiled refused them or was away)

Every command takes ``-q`` (print nothing but errors and the output asked for: JSON, the
dashboard's address) and ``--debug``. Usage errors exit with code 2 and one line that names the
problem; warnings are one line each.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence

from bluesky_digitwin.errors import DigitwinError
from bluesky_digitwin.processes import skip_exit_collection

from .output import EXIT_USAGE, ProgressLine, StatusLine, one_line_warnings, quiet_libraries
from .parser import build_parser

__all__ = ["ProgressLine", "build_parser", "command", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_libraries()
    args.status_line = StatusLine(quiet=args.quiet)
    start = time.perf_counter()
    with one_line_warnings(args.status_line):
        try:
            try:
                code = args.func(args)
            finally:  # before any error: the screen keeps results and errors only
                args.status_line.clear()
        except DigitwinError as exc:  # input, connection, files: the message says what to do
            print(f"digitwin: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("digitwin: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            if args.debug:
                raise
            print(
                f"digitwin: internal error: {type(exc).__name__}: {exc} "
                "(run with --debug for the traceback and please report it)",
                file=sys.stderr,
            )
            return 1
    logging.getLogger(__name__).debug("%s took %.1f s", args.command, time.perf_counter() - start)
    return code


def command() -> None:
    """The ``digitwin`` executable: :func:`main` on the command line's arguments, then exit.

    What :func:`main` printed is the end of the command; the interpreter's teardown after
    TensorFlow is not waited through (:func:`~bluesky_digitwin.processes.skip_exit_collection`).
    :func:`main` itself stays an ordinary function for code and tests that call it.
    """
    code = main()
    skip_exit_collection()
    sys.exit(code)
