"""The ``digitwin`` command.

Contract (design.md; keep it stable)::

    digitwin fit DATA --features A B --target Y [--trials N] [--workers K] [--seed S]
                 [--storage URL] [--study NAME] --out DIR
    digitwin predict DIR GRID --out PRED.csv
    digitwin demo [--json]

Usage errors exit with code 2 and one line that names the problem; warnings are one line each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from bluesky_digitwin.data import DigitwinInputError

__all__ = ["main"]

EXIT_USAGE = 2


class ProgressLine:
    """A one-line progress display on stderr: redrawn in place on a terminal, else one line per
    change; silent when quiet."""

    def __init__(self, label: str, quiet: bool = False, stream: TextIO | None = None):
        self.label = label
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._width = 0

    def __call__(self, p: Any) -> None:
        if self.quiet:
            return
        best = "-" if p.best_value is None else f"{p.best_value:.4g}"
        total = max(p.total, p.finished)  # parallel workers may finish a trial or two extra
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


def _say(args: argparse.Namespace, text: str) -> None:
    """Human-readable output: stderr when stdout carries JSON, else stdout."""
    if getattr(args, "quiet", False):
        return
    stream = sys.stderr if getattr(args, "json", False) else sys.stdout
    print(text, file=stream, flush=True)


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Show warnings as ``digitwin: warning: ...`` lines instead of Python's two-line form."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"digitwin: warning: {message}", file=sys.stderr, flush=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def _quiet_libraries() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import optuna

    # Our progress line replaces Optuna's per-trial log lines.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)


# -- fit ---------------------------------------------------------------------------------------


def _cmd_fit(args: argparse.Namespace) -> int:
    from bluesky_digitwin.data import prepare_training_data
    from bluesky_digitwin.twin import DigitalTwin

    out = Path(args.out)
    if out.exists() and not (
        out.is_dir() and (not any(out.iterdir()) or (out / "twin.json").exists())
    ):
        raise DigitwinInputError(
            f"--out {out} exists and is not a saved twin; choose a new directory"
        )
    # Check the data before starting TensorFlow and the search, so mistakes fail in a second.
    prepare_training_data(args.data, args.features, args.target)
    _say(args, f"learning {args.target}({', '.join(args.features)}) from {args.data}")
    progress = ProgressLine("search", quiet=args.quiet)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the data warnings were shown by the check above
        twin = DigitalTwin.fit(
            args.data,
            args.features,
            args.target,
            n_trials=args.trials,
            n_workers=args.workers,
            ensemble_size=args.ensemble,
            seed=args.seed,
            storage=args.storage,
            study_name=args.study,
            progress=progress,
        )
    progress.done()
    twin.save(out)
    search = twin.metadata["search"]
    best = twin.metadata["members"][0]
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
    _say(
        args,
        "\n".join(
            [
                f"saved twin {twin.id} to {out}",
                f"  trials: {search['n_trials']} ({search['n_complete']} complete, "
                f"{search['n_pruned']} pruned, {search['n_failed']} failed), "
                f"study {search['study_name']!r}",
                f"  best hyperparameters: {params}",
                f"  validation: RMSE {best['validation_rmse']:.4g} "
                f"{twin.units.get(twin.target, '')}, R^2 {best['validation_r2']:.5f} "
                f"(ensemble of {twin.ensemble_size})".replace("  (", " ("),
                f"  wall time: {search['wall_time_s']:.1f} s search",
            ]
        ),
    )
    return 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


# -- predict -----------------------------------------------------------------------------------


def _cmd_predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from bluesky_digitwin.data import load_table
    from bluesky_digitwin.twin import DigitalTwin

    grid = load_table(args.grid)
    twin = DigitalTwin.load(args.twin)
    prediction = twin.predict(grid)
    target = twin.target
    frame = grid.to_dataframe().reset_index(drop=True)
    if target in frame.columns or f"{target}_std" in frame.columns:
        raise DigitwinInputError(
            f"GRID already has a column {target!r} or {target + '_std'!r}; "
            "remove it so the prediction does not overwrite it"
        )
    frame[target] = prediction[target].values
    frame[f"{target}_std"] = prediction[f"{target}_std"].values
    _write_atomic_csv(frame, Path(args.out), pd)
    outside = int(prediction["outside_range"].sum())
    _say(
        args,
        f"wrote {len(frame)} predictions of {target} to {args.out}"
        + (f" ({outside} outside the learned range)" if outside else ""),
    )
    return 0


def _write_atomic_csv(frame: Any, path: Path, pd: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            frame.to_csv(f, index=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# -- demo --------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from bluesky_digitwin.demo import run_offline_demo

    summary = run_offline_demo(
        n_trials=args.trials,
        n_workers=args.workers,
        seed=args.seed,
        fast=args.fast,
        out=args.out,
        say=lambda text: _say(args, text),
        progress=ProgressLine("search", quiet=args.quiet or args.json),
    )
    if args.json:
        print(json.dumps(summary), flush=True)
    return 0


# -- the parser --------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as argparse does, but shorter
        self.exit(EXIT_USAGE, f"digitwin: error: {message} (see: {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="digitwin",
        description="A neural-network digital twin of scanning measurements.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    common.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    fit = sub.add_parser(
        "fit", parents=[common], help="learn a twin from a table of measured points"
    )
    fit.add_argument("data", help="CSV (header row) or netCDF file of measured points")
    fit.add_argument("--features", nargs="+", required=True, help="input columns, e.g. T H")
    fit.add_argument("--target", required=True, help="measured column, e.g. M")
    fit.add_argument("--trials", type=_positive_int, default=30, help="search trials (30)")
    fit.add_argument(
        "--workers", type=_positive_int, default=None, help="parallel workers (one per core)"
    )
    fit.add_argument("--seed", type=int, default=None, help="make the search repeatable")
    fit.add_argument(
        "--storage",
        default=None,
        help="Optuna storage: a journal file path or a database URL (default: temporary)",
    )
    fit.add_argument("--study", default=None, help="study name to create or continue")
    fit.add_argument("--ensemble", type=_positive_int, default=5, help="networks in the twin (5)")
    fit.add_argument("--out", required=True, help="directory to save the twin in")
    fit.set_defaults(func=_cmd_fit)

    predict = sub.add_parser(
        "predict", parents=[common], help="simulate the measurement on a grid of points"
    )
    predict.add_argument("twin", metavar="DIR", help="a twin saved by 'digitwin fit'")
    predict.add_argument("grid", metavar="GRID", help="CSV or netCDF of the points to simulate")
    predict.add_argument("--out", required=True, help="CSV file to write")
    predict.set_defaults(func=_cmd_predict)

    demo = sub.add_parser("demo", parents=[common], help="the whole story on a simulated magnet")
    demo.add_argument("--json", action="store_true", help="end with a one-line JSON summary")
    demo.add_argument("--trials", type=_positive_int, default=None, help="search trials")
    demo.add_argument("--workers", type=_positive_int, default=None, help="parallel workers")
    demo.add_argument("--seed", type=int, default=0, help="seed of data and search (0)")
    demo.add_argument("--fast", action="store_true", help="a quick run with tiny searches")
    demo.add_argument("--out", default=None, help="also save the twin to this directory")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    start = time.perf_counter()
    with _one_line_warnings():
        try:
            code = args.func(args)
        except DigitwinInputError as exc:
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
