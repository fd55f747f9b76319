"""The ``digitwin`` command line: its subcommands, options and their checks."""

from __future__ import annotations

import argparse
from typing import Any

from bluesky_digitwin.surrogate.precision import PRECISIONS
from bluesky_digitwin.surrogate.search_settings import HEARTBEAT_INTERVAL
from bluesky_digitwin.surrogate.training import TrainConfig

from .analysis import cmd_compare, cmd_suggest_step
from .commands import cmd_dashboard, cmd_demo, cmd_replay, cmd_worker
from .fit import cmd_fit, cmd_predict
from .output import EXIT_USAGE

#: Above this many points a fit without a named recipe takes the paper's ensemble
#: (``surrogate.ensemble.default_recipe``): the training's reference size, read, not repeated.
LARGE_MAP_POINTS = TrainConfig().reference_points

__all__ = ["build_parser"]


# -- the parser --------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as argparse does, but shorter
        self.exit(EXIT_USAGE, f"digitwin: error: {message} (see: {self.prog} --help)\n")


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--artifacts",
        default=None,
        metavar="DIR",
        help="directory of the trial models, shared by all workers (default: beside a journal "
        "file, or the user cache for a database; a worker uses the one its study records)",
    )
    parser.add_argument(
        "--heartbeat",
        type=_positive_int,
        default=HEARTBEAT_INTERVAL,
        metavar="S",
        help=f"seconds between heartbeats of a running trial on a database ({HEARTBEAT_INTERVAL});"
        " the trial of a worker silent for twice that is run again",
    )


def _non_negative_int(text: str) -> int:
    return 0 if text.strip() == "0" else _positive_int(text)


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
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print nothing but errors and the results asked for",
    )
    common.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    fit = sub.add_parser(
        "fit", parents=[common], help="learn a twin from a table of measured points"
    )
    fit.add_argument(
        "data",
        nargs="?",
        default=None,
        help="CSV (header row) or netCDF file of measured points (or use --tiled-uri and --runs)",
    )
    fit.add_argument("--features", nargs="+", required=True, help="input columns, e.g. T H")
    fit.add_argument("--target", required=True, help="measured column, e.g. M")
    fit.add_argument("--trials", type=_positive_int, default=30, help="search trials (30)")
    fit.add_argument(
        "--workers",
        type=_non_negative_int,
        default=None,
        help="parallel workers on this machine (one per core); 0: train nothing here, wait for "
        "'digitwin worker' processes elsewhere",
    )
    fit.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed the split, the sampler and the networks: the same twin again with "
        "--workers 1; with several workers the order trials finish in depends on timing, so "
        "the search, and the twin, may differ",
    )
    fit.add_argument(
        "--storage",
        default=None,
        help="Optuna storage: a journal file path or a database URL (default: temporary)",
    )
    fit.add_argument("--study", default=None, help="study name to create or continue")
    _add_worker_options(fit)
    fit.add_argument(
        "--ensemble",
        type=_positive_int,
        default=None,
        help=f"networks in the twin (12; above {LARGE_MAP_POINTS} points, or --epoch-points, the "
        "paper's 5, as --paper-ensemble)",
    )
    fit.add_argument(
        "--paper-ensemble",
        action="store_true",
        help="the twin is the best trials' own networks (the paper's way; 5 unless --ensemble; "
        f"the default above {LARGE_MAP_POINTS} points, or --epoch-points)",
    )
    fit.add_argument(
        "--activations",
        nargs="+",
        default=None,
        metavar="NAME",
        help="hidden-layer activations the search chooses from (default silu; also relu, "
        "tanh, softplus, gelu)",
    )
    fit.add_argument(
        "--paper-search",
        action="store_true",
        help="the paper's search: ReLU networks, no L2 penalty, trials of at most 500 epochs "
        "(unless --max-epochs)",
    )
    fit.add_argument(
        "--monotonic",
        nargs="+",
        default=None,
        metavar="FEATURE=DIRECTION",
        help="shape knowledge: the target is increasing or decreasing in FEATURE, e.g. "
        "H=increasing",
    )
    fit.add_argument(
        "--fourier-scale",
        type=float,
        default=None,
        metavar="CYCLES",
        help="also give the networks Fourier features of the coordinates, this many cycles "
        "per standard deviation of a feature (e.g. 10): fine structure along measured lines "
        "(a dense map), at the cost of worse interpolation between lines; not with --monotonic",
    )
    fit.add_argument(
        "--epoch-points",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"count an epoch as a pass over N training points ({LARGE_MAP_POINTS}): a larger "
        "table trains fewer real epochs, so a dense map's search takes minutes; lower it to fit "
        "a large map faster, at some cost in accuracy (e.g. 6144 with --fourier-scale 10 on a "
        "30 000-point map)",
    )
    fit.add_argument(
        "--max-epochs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="the most epochs a network trains (250; with --paper-search the paper's 500): "
        "measured against 500, 250 made a cold ErCo2 fit 12-15%% shorter, with the same "
        "|ΔS_M| within the seeds' spread on the benchmark's magnets",
    )
    fit.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="arithmetic of the networks' hidden matmuls while training (auto: bfloat16 where "
        "the CPU multiplies it natively, e.g. AMX or AVX512-BF16, else float32; predictions are "
        "float32 either way)",
    )
    fit.add_argument("--out", required=True, help="directory to save the twin in")
    tiled = fit.add_argument_group(
        "learning from runs stored in Tiled (instead of DATA)",
        "The API key is read from the environment variable TILED_API_KEY or the Tiled profile.",
    )
    tiled.add_argument("--tiled-uri", default=None, help="the node holding 'measured' runs")
    tiled.add_argument("--tiled-profile", default=None, help="a Tiled profile instead of a URI")
    tiled.add_argument(
        "--api-key",
        default=None,
        help="prefer TILED_API_KEY: a key on the command line is visible to other users",
    )
    tiled.add_argument("--runs", nargs="+", default=None, help="uids of the runs to learn from")
    tiled.add_argument(
        "--keys",
        nargs="+",
        default=None,
        metavar="NAME=DATA_KEY",
        help="data key of each feature and the target, e.g. T=mag_temperature (default: the name)",
    )
    tiled.add_argument("--stream", default="primary", help="stream of the points (primary)")
    tiled.add_argument(
        "--include-simulated",
        action="store_true",
        help="allow simulated runs among --runs (a twin learns from measured runs by default)",
    )
    fit.set_defaults(func=cmd_fit)

    predict = sub.add_parser(
        "predict", parents=[common], help="simulate the measurement on a grid of points"
    )
    predict.add_argument("twin", metavar="DIR", help="a twin saved by 'digitwin fit'")
    predict.add_argument("grid", metavar="GRID", help="CSV or netCDF of the points to simulate")
    predict.add_argument("--out", required=True, help="CSV file to write")
    predict.set_defaults(func=cmd_predict)

    demo = sub.add_parser("demo", parents=[common], help="the whole story on a simulated magnet")
    demo.add_argument("--json", action="store_true", help="end with a one-line JSON summary")
    demo.add_argument("--trials", type=_positive_int, default=None, help="search trials")
    demo.add_argument("--workers", type=_positive_int, default=None, help="parallel workers")
    demo.add_argument("--seed", type=int, default=0, help="seed of data and search (0)")
    demo.add_argument("--fast", action="store_true", help="a quick run with tiny searches")
    demo.add_argument(
        "--tiled-dir", default=None, help="embedded Tiled server's data (./digitwin-demo/tiled)"
    )
    demo.add_argument("--tiled-uri", default=None, help="write to this Tiled server instead")
    demo.add_argument(
        "--api-key", default=None, help="its API key (prefer the TILED_API_KEY variable)"
    )
    demo.add_argument(
        "--seconds-per-point",
        type=float,
        default=0.0,
        help="simulated measuring time per point (0)",
    )
    searches = demo.add_mutually_exclusive_group()
    searches.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="record the searches in this journal file or database URL, for 'digitwin "
        "dashboard' (default: digitwin-demo/search.journal)",
    )
    searches.add_argument(
        "--no-storage",
        action="store_true",
        help="keep the searches in temporary files only",
    )
    demo.set_defaults(func=cmd_demo)

    _add_suggest_step(sub, common)
    _add_compare(sub, common)
    _add_dashboard(sub, common)
    add_replay(sub, common)
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected a port from 0 (any free one) to 65535, got {value}"
        )
    return value


def _add_dashboard(sub: Any, common: argparse.ArgumentParser) -> None:
    from bluesky_digitwin.dashboard import DEFAULT_HOST, DEFAULT_PORT

    worker = sub.add_parser(
        "worker",
        parents=[common],
        help="join a search from any machine (the study says what and on what data)",
        description="Run trials of a search started by 'digitwin fit --storage URL --study NAME' "
        "until the study holds its number of finished trials. Give the database password in "
        "PGPASSWORD or ~/.pgpass, not in the URL.",
    )
    worker.add_argument(
        "--storage",
        required=True,
        help="the search's storage: a database URL, or a journal file on a shared disk",
    )
    worker.add_argument("--study", required=True, help="the study the search started")
    worker.add_argument(
        "--trials",
        type=_positive_int,
        default=None,
        help="finished trials to reach (default: the number the search asked for)",
    )
    _add_worker_options(worker)
    worker.set_defaults(func=cmd_worker)

    dashboard = sub.add_parser(
        "dashboard",
        parents=[common],
        help="show the searches in optuna-dashboard: learning curves, pruning, importances",
        description=(
            "Serve optuna-dashboard on a search's storage until Ctrl-C: every trial's learning "
            "curve (the validation loss it reported while training), which trials were pruned "
            "and when, the search's history and the hyperparameters' importances; the trial "
            "models too, when they are found beside the journal (<journal>.artifacts). It has "
            "no login and can delete studies: it listens on this machine only unless --host "
            "says otherwise."
        ),
    )
    dashboard.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="the search's journal file or database URL (default: the demo's, "
        "digitwin-demo/search.journal)",
    )
    dashboard.add_argument(
        "--study",
        default=None,
        metavar="NAME",
        help="print the address of this study's page (and open it)",
    )
    dashboard.add_argument(
        "--artifacts",
        default=None,
        metavar="DIR",
        help="directory of the trial models (default: the one --study records, else beside a "
        "journal file, or the user cache for a database)",
    )
    dashboard.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"interface to listen on ({DEFAULT_HOST}: this machine only)",
    )
    dashboard.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT}; 0: any free one)"
    )
    dashboard.add_argument(
        "--no-browser", action="store_true", help="do not open the page in a web browser"
    )
    dashboard.set_defaults(func=cmd_dashboard)


def _add_suggest_step(sub: Any, common: argparse.ArgumentParser) -> None:
    step = sub.add_parser(
        "suggest-step",
        parents=[common],
        help="simulate candidate steps with a twin and suggest the coarsest that converges",
        description=(
            "Simulate the measurement at each candidate step of AXIS with a saved twin, compute "
            "the quantity, compare it with a finer reference step and suggest the coarsest "
            "step whose error (RMSE relative to the reference's peak) stays below --tol."
        ),
    )
    step.add_argument("twin", metavar="DIR", help="a twin saved by 'digitwin fit'")
    step.add_argument("--axis", required=True, help="the stepped feature, e.g. H")
    step.add_argument(
        "--candidates",
        nargs="+",
        type=_positive_float,
        default=None,
        help="candidate steps, in --candidate-units (default for a field: "
        "0.05 0.1 0.15 0.2 0.3 0.5 0.75 1 T; for another axis: the same fractions of 5)",
    )
    step.add_argument(
        "--candidate-units",
        default=None,
        help="units of --candidates and --reference-step (default: T for a field axis "
        "recorded in Oe, kOe, mT or A/m; else the axis' own units)",
    )
    step.add_argument(
        "--axis-units",
        default=None,
        help="units of the axis when the twin recorded none, e.g. Oe",
    )
    step.add_argument(
        "--quantity",
        choices=("map", "magnetocaloric"),
        default="map",
        help="what must converge: the map itself, linearly interpolated (default), or "
        "|ΔS_M|(T) at the top field",
    )
    step.add_argument(
        "--tol",
        type=_positive_float,
        default=None,
        help="largest relative RMSE accepted (default 0.025, i.e. 2.5%%)",
    )
    step.add_argument(
        "--reference-step",
        type=_positive_float,
        default=None,
        help="the fine step to compare with (default: the finest candidate / 4)",
    )
    step.add_argument(
        "--sweep-points",
        type=_positive_int,
        default=None,
        help="points of the simulated sweep over the other feature (201)",
    )
    step.add_argument(
        "--mass",
        type=_positive_float,
        default=None,
        help="sample mass, for --quantity magnetocaloric with a moment (relative errors do not "
        "depend on it: any positive mass gives the same suggestion)",
    )
    step.add_argument(
        "--mass-units", default="g", choices=("g", "mg", "kg"), help="units of --mass (g)"
    )
    step.add_argument(
        "--target-units",
        default=None,
        help="units of the target when the twin recorded none (with --mass: emu)",
    )
    step.add_argument(
        "--field-change",
        type=_positive_float,
        default=None,
        help="μ0ΔH in T up to which |ΔS_M| is compared (default: the whole learned range)",
    )
    step.add_argument(
        "--seconds-per-point",
        type=_nonnegative_float,
        default=45.0,
        help="time model: seconds per measured point (45, a settled MPMS point)",
    )
    step.add_argument(
        "--seconds-per-change",
        type=_nonnegative_float,
        default=2400.0,
        help="time model: seconds per change of the stepped axis, incl. return to the sweep "
        "start (2400)",
    )
    step.add_argument(
        "--sweep-rate",
        type=_positive_float,
        default=None,
        help="time model: continuous sweep rate, sweep units per second (e.g. K/s)",
    )
    step.add_argument(
        "--points-per-line",
        type=_positive_int,
        default=None,
        help="time model: points measured per line (default: --sweep-points)",
    )
    step.add_argument("--json", action="store_true", help="end with a one-line JSON result")
    step.set_defaults(func=cmd_suggest_step)


def _add_compare(sub: Any, common: argparse.ArgumentParser) -> None:
    compare = sub.add_parser(
        "compare",
        parents=[common],
        help="compare the twin with linear, spline and RBF interpolation",
        description=(
            "Fit (or load) a twin and the linear, cubic-spline and RBF baselines on DATA and "
            "tabulate them; with --reference (a fine-step measurement), the RMSE of the target "
            "and, with --quantity magnetocaloric, of |ΔS_M| at the field changes --at."
        ),
    )
    compare.add_argument("data", help="CSV (header row) or netCDF file of the coarse points")
    compare.add_argument("--features", nargs="+", required=True, help="input columns, e.g. T H")
    compare.add_argument("--target", required=True, help="measured column, e.g. M")
    compare.add_argument("--twin", default=None, help="reuse a twin saved by 'digitwin fit'")
    compare.add_argument("--trials", type=_positive_int, default=30, help="search trials (30)")
    compare.add_argument(
        "--workers", type=_positive_int, default=None, help="parallel workers (one per core)"
    )
    compare.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed the fits (the same twin again with --workers 1; see digitwin fit --help)",
    )
    compare.add_argument(
        "--rbf-trials", type=_positive_int, default=30, help="RBF tuning trials (30)"
    )
    compare.add_argument(
        "--reference", default=None, help="CSV of a fine-step measurement to compare with"
    )
    compare.add_argument(
        "--reference-columns",
        nargs="+",
        default=None,
        help="the reference's columns for the features, then the target (e.g. t h m)",
    )
    compare.add_argument(
        "--quantity",
        choices=("magnetocaloric",),
        default=None,
        help="also compare |ΔS_M| (needs --mass and --field-units)",
    )
    compare.add_argument(
        "--field", default=None, help="the field feature (default: the last feature)"
    )
    compare.add_argument("--field-units", default=None, help="units of the field column, e.g. Oe")
    compare.add_argument("--mass", type=_positive_float, default=None, help="sample mass")
    compare.add_argument(
        "--mass-units", default="g", choices=("g", "mg", "kg"), help="units of --mass (g)"
    )
    compare.add_argument(
        "--target-units", default=None, help="units of the target (with --mass: emu)"
    )
    compare.add_argument(
        "--at",
        "--field-change",
        dest="at",
        nargs="+",
        type=_positive_float,
        default=None,
        help="field changes μ0ΔH in T at which to compare |ΔS_M| (5)",
    )
    compare.add_argument("--json", action="store_true", help="end with a one-line JSON summary")
    compare.set_defaults(func=cmd_compare)


# -- replay --------------------------------------------------------------------------------------


def add_replay(sub: Any, common: argparse.ArgumentParser) -> None:
    replay = sub.add_parser(
        "replay",
        parents=[common],
        help="store in Tiled the runs kept in backups when Tiled refused them or was away",
    )
    replay.add_argument("path", metavar="PATH", help="a backup file (UID.jsonl) or directory")
    where = replay.add_mutually_exclusive_group(required=True)
    where.add_argument("--tiled-uri", default=None, help="the node holding measured/simulated")
    where.add_argument("--tiled-dir", default=None, help="an embedded catalog's directory")
    replay.set_defaults(func=cmd_replay)
