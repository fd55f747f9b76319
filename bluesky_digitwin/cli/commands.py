"""``digitwin demo``, ``worker``, ``dashboard`` and ``replay``: the commands around a search."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from bluesky_digitwin.errors import DigitwinInputError
from bluesky_digitwin.redaction import redact_url

from .output import EXIT_USAGE, say, show_result, start_tensorflow

__all__ = ["cmd_dashboard", "cmd_demo", "cmd_replay", "cmd_worker"]


# -- demo --------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from bluesky_digitwin.demo import DEMO_STORAGE, run_demo
    from bluesky_digitwin.surrogate.precision import allow_bfloat16_inside_matmuls

    if args.api_key and not args.tiled_uri:
        raise DigitwinInputError(
            "--api-key goes with --tiled-uri (the embedded server makes its own)"
        )
    # The whole process is the demo's: see cmd_fit.
    allow_bfloat16_inside_matmuls("auto")
    summary = run_demo(
        n_trials=args.trials,
        n_workers=args.workers,
        seed=args.seed,
        fast=args.fast,
        tiled_dir=args.tiled_dir,
        tiled_uri=args.tiled_uri,
        api_key=args.api_key,
        seconds_per_point=args.seconds_per_point,
        storage=None if args.no_storage else (args.storage or DEMO_STORAGE),
        say=lambda text: say(args, text),
    )
    if args.json:
        print(json.dumps(summary), flush=True)
    return 0


# -- worker ------------------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    from bluesky_digitwin.names import check_name
    from bluesky_digitwin.surrogate.precision import allow_bfloat16_inside_matmuls

    check_name(args.study, "--study")
    start_tensorflow()
    from bluesky_digitwin.surrogate.study_record import StudyRecord
    from bluesky_digitwin.surrogate.workers import run_worker

    def joined(record: StudyRecord) -> None:
        # This process is the worker's alone: before its first matmul, let oneDNN do the
        # bfloat16 rounding if the search trains so on this machine (see cmd_fit).
        allow_bfloat16_inside_matmuls(record.train_config.precision)
        say(args, f"joining study {args.study!r} on {redact_url(str(args.storage))}")

    report = run_worker(
        args.storage,
        args.study,
        n_trials=args.trials,
        artifacts=args.artifacts,
        heartbeat_interval=args.heartbeat,
        on_joined=joined,
    )
    say(
        args,
        f"worker done: ran {report.trials_run} trials; study {report.study!r} holds "
        f"{report.finished} of {report.n_trials} finished trials",
    )
    return 0


# -- dashboard ---------------------------------------------------------------------------------


def cmd_dashboard(args: argparse.Namespace) -> int:
    from bluesky_digitwin.dashboard import serve_dashboard

    storage = args.storage
    if storage is None:
        from bluesky_digitwin.demo import DEMO_STORAGE

        if not DEMO_STORAGE.is_file():
            raise DigitwinInputError(
                f"no --storage given, and no demo searches here ({DEMO_STORAGE}); give the "
                "--storage of a search (a journal file path or a database URL), or run "
                "'digitwin demo' in this directory first"
            )
        storage = DEMO_STORAGE
    # The contract is "Ctrl-C stops it": a shell starts a background job with SIGINT ignored,
    # and Python would then keep ignoring it, so `kill -INT` could not stop the server.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    serve_dashboard(
        storage,
        host=args.host,
        port=args.port,
        study=args.study,
        artifact_store=args.artifacts,
        open_browser=not args.no_browser,
        say=lambda text: say(args, text),
        # The address is the output asked for: printed even with -q.
        show_url=lambda url: print(url, flush=True),
    )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay backups into Tiled (the API key from TILED_API_KEY); exit 2 if any is left."""
    from bluesky_digitwin.tiled import TwinCatalog

    if args.tiled_dir is not None:
        if not Path(args.tiled_dir).is_dir():
            raise DigitwinInputError(f"--tiled-dir {args.tiled_dir} is not a directory")
        catalog = TwinCatalog.embedded(args.tiled_dir)
    else:
        catalog = TwinCatalog.connect(args.tiled_uri)
    with catalog:
        replayed = catalog.replay(args.path)
    for run in replayed:
        if run.ok:
            show_result(args, f"{run.outcome}: run {run.uid} in {run.origin} ({run.path})")
        else:
            print(f"digitwin: error: run {run.uid} {run.outcome}: {run.detail}", file=sys.stderr)
    if not replayed:
        show_result(args, f"no backup in {args.path}")
    return 0 if all(run.ok for run in replayed) else EXIT_USAGE
