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

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from bluesky_digitwin.errors import DigitwinError, DigitwinInputError
from bluesky_digitwin.json_values import jsonable
from bluesky_digitwin.surrogate.search import HEARTBEAT_INTERVAL, redact_url

__all__ = ["main"]

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


def _clear_status(args: argparse.Namespace) -> None:
    status = getattr(args, "status_line", None)
    if status is not None:
        status.clear()


def _say(args: argparse.Namespace, text: str) -> None:
    """Human-readable output: stderr when stdout carries JSON, else stdout; none with -q."""
    if getattr(args, "quiet", False):
        return
    _clear_status(args)
    stream = sys.stderr if getattr(args, "json", False) else sys.stdout
    print(text, file=stream, flush=True)


def _status(args: argparse.Namespace, text: str) -> None:
    """Show what the command waits for (:class:`StatusLine`: on a terminal only)."""
    status = getattr(args, "status_line", None)
    if status is not None:
        status.show(text)


def _result(args: argparse.Namespace, text: str) -> None:
    """The human-readable result asked for: stdout, even with -q. With --json the JSON line is
    the result, and this goes to stderr, as :func:`_say` does (none with -q)."""
    if getattr(args, "json", False):
        _say(args, text)
    else:
        _clear_status(args)
        print(text, flush=True)


@contextlib.contextmanager
def _one_line_warnings(status: StatusLine | None = None) -> Iterator[None]:
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


def _start_tensorflow() -> None:
    """Import TensorFlow now, under a status line: it takes seconds (its C++ start-up lines are
    kept off the terminal, see bluesky_digitwin._tf)."""
    import bluesky_digitwin._tf  # noqa: F401


def _quiet_libraries() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import optuna

    # Our progress line replaces Optuna's per-trial log lines.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)


# -- fit ---------------------------------------------------------------------------------------


def _cmd_fit(args: argparse.Namespace) -> int:
    from bluesky_digitwin.data import prepare_training_data
    from bluesky_digitwin.holdout import TwinNotBetterWarning
    from bluesky_digitwin.surrogate.ensemble import EnsembleRecipe
    from bluesky_digitwin.twin import DigitalTwin, EnsembleWarning, check_save_destination

    out = Path(args.out)
    # Before anything is learned: a twin that cannot be saved is a search thrown away.
    try:
        check_save_destination(out)
    except DigitwinInputError as exc:
        raise DigitwinInputError(f"--out {exc}") from None
    _check_search_options(args)
    if _from_tiled(args):
        data, source, provenance, data_source = _read_tiled_runs(args)
    else:
        data, source, provenance, data_source = args.data, args.data, None, None
    # Check the data before starting TensorFlow and the search, so mistakes fail in a second.
    prepare_training_data(data, args.features, args.target)
    _say(args, f"learning {args.target}({', '.join(args.features)}) from {source}")
    if args.workers == 0:
        _say(
            args,
            f"waiting for workers; on each machine run: digitwin worker --storage "
            f"{redact_url(str(args.storage))} --study {args.study}",
        )
    # TensorFlow starts inside the search, after its workers: they start theirs meanwhile,
    # on the other cores, instead of after this process's.
    progress = ProgressLine("search", quiet=args.quiet)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the data warnings were shown by the check above
        # ... but a twin of fewer networks than asked for is news (its uncertainty is poorer).
        warnings.simplefilter("always", EnsembleWarning)
        # ... and so is a twin that is no better than interpolating the data.
        warnings.simplefilter("always", TwinNotBetterWarning)
        twin = DigitalTwin.fit(
            data,
            args.features,
            args.target,
            n_trials=args.trials,
            n_workers=args.workers,
            ensemble_size=args.ensemble,
            ensemble=EnsembleRecipe.paper() if args.paper_ensemble else None,
            space=args.space,
            monotonic=args.monotonic,
            seed=args.seed,
            storage=args.storage,
            study_name=args.study,
            progress=progress,
            provenance=provenance,
            data_source=data_source,
            heartbeat_interval=args.heartbeat,
            artifact_store=_artifact_store(args.artifacts),
        )
    progress.done()
    _save_or_fall_back(twin, out)
    search = twin.metadata["search"]
    best = twin.metadata["members"][0]
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
    target_units = f" {twin.units[twin.target]}" if twin.units.get(twin.target) else ""
    _say(
        args,
        "\n".join(
            [
                f"saved twin {twin.id} to {out}",
                f"  trials: {search['n_trials']} ({search['n_complete']} complete, "
                f"{search['n_pruned']} pruned, {search['n_failed']} failed), "
                f"study {search['study_name']!r}",
                f"  best hyperparameters: {params}",
                f"  validation: RMSE {best['validation_rmse']:.4g}{target_units}, "
                f"R^2 {best['validation_r2']:.5f} (ensemble of {twin.ensemble_size})",
                *(
                    [f"  {twin.holdout.summary(twin.units.get(twin.target, ''))}"]
                    if twin.holdout is not None
                    else []
                ),
                f"  wall time: {search['wall_time_s']:.1f} s search",
            ]
        ),
    )
    return 0


def _save_or_fall_back(twin: Any, out: Path) -> None:
    """Save the twin to ``out``; if that fails after all (the destination changed during the
    search), save it where it can be and say where: a learned twin is never thrown away."""
    try:
        twin.save(out)
        return
    except (OSError, DigitwinInputError) as exc:
        reason = str(exc) if isinstance(exc, DigitwinInputError) else _os_reason(exc, out)
    tried = []
    for place in (Path.cwd(), Path(tempfile.gettempdir())):
        fallback = place / f"digitwin-twin-{twin.id[:8]}"
        n = 1
        while fallback.exists():
            n += 1
            fallback = place / f"digitwin-twin-{twin.id[:8]}-{n}"
        try:
            twin.save(fallback)
        except OSError as exc:
            tried.append(f"{fallback} ({_os_reason(exc, fallback)})")
            continue
        raise DigitwinInputError(
            f"cannot save the twin to --out {out} ({reason}); saved it to {fallback} instead: "
            "move it where you want it"
        )
    raise DigitwinInputError(
        f"cannot save the twin to --out {out} ({reason}), nor to {' or '.join(tried)}; "
        "the twin is lost: free some space or fix the permissions and fit again"
    )


def _os_reason(exc: OSError, path: Path) -> str:
    """An OSError in a phrase: its reason, and the file it concerns unless that is ``path``."""
    where = f": {exc.filename}" if exc.filename and Path(exc.filename) != path else ""
    return f"{exc.strerror or exc}{where}"


def _from_tiled(args: argparse.Namespace) -> bool:
    """Whether ``fit`` learns from Tiled runs rather than DATA (checking the combination)."""
    tiled = args.tiled_uri is not None or args.tiled_profile is not None
    if not tiled and args.runs is None:
        if args.data is None:
            raise DigitwinInputError(
                "give DATA (a CSV or netCDF file), or --tiled-uri URI --runs UID ... to learn "
                "from runs stored in Tiled"
            )
        if args.api_key is not None or args.include_simulated or args.keys:
            raise DigitwinInputError(
                "--api-key, --keys and --include-simulated go with --tiled-uri and --runs"
            )
        return False
    if args.data is not None:
        raise DigitwinInputError("give either DATA or --tiled-uri/--runs, not both")
    if args.tiled_uri is not None and args.tiled_profile is not None:
        raise DigitwinInputError("give either --tiled-uri or --tiled-profile, not both")
    if not tiled:
        raise DigitwinInputError("--runs needs the server: --tiled-uri URI (or --tiled-profile)")
    if args.runs is None:
        raise DigitwinInputError("--tiled-uri needs the runs to learn from: --runs UID ...")
    return True


def _parse_keys(pairs: Sequence[str] | None) -> dict[str, str]:
    keys = {}
    for pair in pairs or []:
        name, sep, key = pair.partition("=")
        if not (sep and name and key):
            raise DigitwinInputError(f"--keys takes NAME=DATA_KEY pairs, got {pair!r}")
        keys[name] = key
    return keys


def _check_search_options(args: argparse.Namespace) -> None:
    """Refuse bad search options before any data is read or TensorFlow starts."""
    from bluesky_digitwin.names import check_name

    if args.study is not None:
        check_name(args.study, "--study")
    if args.workers == 0 and (args.storage is None or args.study is None):
        raise DigitwinInputError(
            "--workers 0 waits for workers elsewhere: give the --storage they share (a database "
            "URL) and the --study NAME they join"
        )
    args.monotonic = _parse_monotonic(args.monotonic, args.features)
    if args.activations is not None or args.paper_search:
        from bluesky_digitwin.surrogate.search import SearchSpace

        make = SearchSpace.paper if args.paper_search else SearchSpace
        try:
            args.space = make(
                **({} if args.activations is None else {"activations": tuple(args.activations)})
            )
        except DigitwinInputError as exc:
            raise DigitwinInputError(f"--activations: {exc}") from None
    else:
        args.space = None


def _parse_monotonic(items: list[str] | None, features: list[str]) -> dict[str, str] | None:
    """``["H=increasing"]`` as ``{"H": "increasing"}``, checked against the features."""
    if not items:
        return None
    from bluesky_digitwin.twin import monotonic_pairs

    stated = {}
    for item in items:
        name, sep, direction = item.partition("=")
        if not sep or not name or not direction:
            raise DigitwinInputError(
                f"--monotonic takes FEATURE=increasing or FEATURE=decreasing, got {item!r}"
            )
        stated[name] = direction
    try:
        monotonic_pairs(stated, features)
    except DigitwinInputError as exc:
        raise DigitwinInputError(f"--monotonic: {exc}") from None
    return stated


def _artifact_store(directory: str | None) -> Any:
    if directory is None:
        return None
    from optuna.artifacts import FileSystemArtifactStore

    path = Path(directory).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def _read_tiled_runs(
    args: argparse.Namespace,
) -> tuple[Any, str, dict[str, Any], dict[str, Any]]:
    """The points of the Tiled runs, where they came from, the provenance to record, and how
    search workers elsewhere read them again."""
    from bluesky_digitwin.tiled import TwinCatalog, read_runs, runs_data_source, runs_provenance

    keys = _parse_keys(args.keys)
    catalog = TwinCatalog.connect(
        args.tiled_uri, profile=args.tiled_profile, api_key=args.api_key, create=False
    )
    data = read_runs(
        catalog,
        args.runs,
        features=args.features,
        target=args.target,
        keys=keys,
        stream=args.stream,
        include_simulated=args.include_simulated,
    )
    provenance = runs_provenance(data)
    source = runs_data_source(
        data, args.features, args.target, keys, args.stream, args.include_simulated
    )
    return data, f"{len(provenance['run_uids'])} run(s) at {catalog.uri}", provenance, source


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


# -- predict -----------------------------------------------------------------------------------


def _cmd_predict(args: argparse.Namespace) -> int:
    import math

    from bluesky_digitwin._files import CannotWriteError, atomic_path, check_can_create
    from bluesky_digitwin.data import load_table
    from bluesky_digitwin.twin import DigitalTwin, EnsembleWarning

    out = Path(args.out)
    if out.is_dir():
        raise DigitwinInputError(f"--out {out} is a directory; give the CSV file to write")
    try:
        check_can_create(out)
    except CannotWriteError as exc:
        raise DigitwinInputError(f"--out {out}: {exc}; choose a place you can write to") from None
    grid = load_table(args.grid)
    _status(args, f"loading the twin in {args.twin} ...")
    twin = DigitalTwin.load(args.twin)
    n_points = math.prod(grid.sizes.values())
    _status(args, f"simulating the measurement at {n_points} points ...")
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
    if twin.ensemble_size == 1:
        warnings.warn(
            f"the twin in {args.twin} has one network, so its uncertainty cannot be estimated: "
            f"{target}_std is left empty (NaN); fit it with --ensemble 2 or more for one",
            EnsembleWarning,
            stacklevel=1,
        )
    try:
        with atomic_path(out) as staging:
            frame.to_csv(staging, index=False)
    except OSError as exc:  # e.g. an immutable file there: the check above cannot tell
        raise DigitwinInputError(f"cannot write --out {out} ({exc.strerror or exc})") from None
    outside = int(prediction["outside_range"].sum())
    _say(
        args,
        f"wrote {len(frame)} predictions of {target} to {args.out}"
        + (f" ({outside} outside the learned range)" if outside else ""),
    )
    return 0


# -- demo --------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from bluesky_digitwin.demo import DEMO_STORAGE, run_demo

    if args.api_key and not args.tiled_uri:
        raise DigitwinInputError(
            "--api-key goes with --tiled-uri (the embedded server makes its own)"
        )
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
        say=lambda text: _say(args, text),
    )
    if args.json:
        print(json.dumps(summary), flush=True)
    return 0


# -- suggest-step ------------------------------------------------------------------------------


def _cmd_suggest_step(args: argparse.Namespace) -> int:
    from bluesky_digitwin.analysis.steps import TimeModel, suggest_step
    from bluesky_digitwin.analysis.units import FIELD_UNITS, normalize_unit
    from bluesky_digitwin.twin import DigitalTwin

    _status(args, f"loading the twin in {args.twin} ...")
    twin = DigitalTwin.load(args.twin)
    axis_units = args.axis_units or twin.units.get(args.axis) or None
    candidate_units = args.candidate_units
    if candidate_units is None and axis_units and normalize_unit(axis_units) in FIELD_UNITS:
        # A field is stepped in tesla (μ0H) on the command line, whatever it was recorded in.
        candidate_units = "T"
    time_model = TimeModel(
        seconds_per_point=args.seconds_per_point,
        seconds_per_step_change=args.seconds_per_change,
        sweep_rate=args.sweep_rate,
        points_per_line=args.points_per_line,
    )
    defaults = {"tol": args.tol, "sweep_points": args.sweep_points}
    _status(args, f"simulating the measurement at each candidate step of {args.axis} ...")
    result = suggest_step(
        twin,
        args.axis,
        args.candidates,
        quantity=args.quantity,
        candidate_units=candidate_units,
        axis_units=args.axis_units,
        reference_step=args.reference_step,
        mass=args.mass,
        mass_units=args.mass_units,
        target_units=args.target_units,
        field_change=args.field_change,
        time_model=time_model,
        **{k: v for k, v in defaults.items() if v is not None},
    )
    _result(args, str(result))
    if args.json:
        print(json.dumps(result.to_dict(), allow_nan=False), flush=True)
    return 0


# -- compare -----------------------------------------------------------------------------------


def _cmd_compare(args: argparse.Namespace) -> int:
    import numpy as np

    from bluesky_digitwin.analysis.baselines import (
        LinearInterpolator,
        RBFBaseline,
        SplineInterpolator,
    )
    from bluesky_digitwin.data import load_table, prepare_training_data
    from bluesky_digitwin.twin import DigitalTwin

    features, target = list(args.features), args.target
    # Check everything cheap before training anything, so mistakes fail in a second.
    prepared = prepare_training_data(args.data, features, target)
    if args.quantity == "magnetocaloric":
        mce = _mce_options(args, features, prepared.units)
    else:
        given = [o for o, v in (("--at", args.at), ("--mass", args.mass)) if v is not None]
        if given:
            raise DigitwinInputError(
                f"{' and '.join(given)} apply to --quantity magnetocaloric; add it or drop them"
            )
        mce = None
    reference = _load_reference(args, features, target, load_table) if args.reference else None

    if args.twin:
        _status(args, f"loading the twin in {args.twin} ...")
        twin = DigitalTwin.load(args.twin)
        if list(twin.features) != features or twin.target != target:
            raise DigitwinInputError(
                f"the twin in {args.twin} learned {twin.target}({', '.join(twin.features)}), "
                f"not {target}({', '.join(features)}); give matching --features and --target"
            )
        _say(args, f"loaded the twin from {args.twin}")
    else:
        _say(args, f"learning {target}({', '.join(features)}) from {args.data}")
        _status(args, "starting TensorFlow ...")
        _start_tensorflow()
        _clear_status(args)
        progress = ProgressLine("search", quiet=args.quiet)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # shown by the check above
            twin = DigitalTwin.fit(
                args.data,
                features,
                target,
                n_trials=args.trials,
                n_workers=args.workers,
                seed=args.seed,
                progress=progress,
            )
        progress.done()
    _status(
        args,
        "fitting the baselines: linear and cubic-spline interpolation, and RBF "
        f"({args.rbf_trials} tuning trials) ...",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models: list[tuple[str, Any, str]] = [
            ("twin", twin, f"validation RMSE {twin.validation_rmse:.4g}"),
            ("linear", LinearInterpolator.fit(args.data, features, target), "exact at the data"),
            ("spline", SplineInterpolator.fit(args.data, features, target), "exact at the data"),
        ]
        rbf = RBFBaseline.fit(args.data, features, target, n_trials=args.rbf_trials, seed=args.seed)
    models.append(("rbf", rbf, f"{rbf.params['kernel']}, CV RMSE {rbf.cv_rmse:.4g}"))

    rows = []
    for name, model, fit in models:
        row: dict[str, Any] = {"model": name, "fit": fit}
        if reference is not None:
            points = {f: reference[f].values for f in features}
            predicted = model.predict(points, warn=False)
            diff = predicted[target].values - reference[target].values
            usable = np.isfinite(diff)
            row["target_rmse"] = (
                float(np.sqrt(np.mean(diff[usable] ** 2))) if usable.any() else None
            )
            row["n_outside"] = int(predicted["outside_range"].sum())
        if mce is not None:
            row["entropy_change"] = _compare_entropy(model, reference, features, target, mce)
        rows.append(row)
    summary: dict[str, Any] = {
        "data": str(args.data),
        "reference": str(args.reference) if args.reference else None,
        "features": features,
        "target": target,
        "models": rows,
    }
    if mce is not None and reference is not None:
        summary["reference_entropy_change"] = _reference_entropy(reference, features, target, mce)
    _result(args, _compare_table(summary, mce))
    if args.json:
        print(json.dumps(jsonable(summary), allow_nan=False), flush=True)
    return 0


def _load_reference(args: argparse.Namespace, features: list[str], target: str, load_table):
    """The fine reference as a Dataset along ``point`` with the data's column names."""
    import numpy as np
    import xarray as xr

    ds = load_table(args.reference)
    names = [*features, target]
    columns = args.reference_columns or names
    if len(columns) != len(names):
        raise DigitwinInputError(
            f"--reference-columns needs {len(names)} names, for {', '.join(names)} in that "
            f"order (features, then target); got {len(columns)}"
        )
    missing = [c for c in columns if c not in ds.variables]
    if missing:
        raise DigitwinInputError(
            f"the reference {args.reference} has no column(s) {', '.join(map(repr, missing))}; "
            f"it has: {', '.join(map(str, ds.variables))} (map them with --reference-columns)"
        )
    out = xr.Dataset(
        {
            name: ("point", ds[c].values.astype(float))
            for name, c in zip(names, columns, strict=True)
        }
    )
    keep = np.isfinite(np.column_stack([out[n].values for n in names])).all(axis=1)
    return out.isel(point=np.flatnonzero(keep))


def _mce_options(
    args: argparse.Namespace, features: list[str], units: dict[str, str]
) -> dict[str, Any]:
    if len(features) != 2:
        raise DigitwinInputError("--quantity magnetocaloric needs two features: temperature, field")
    field = args.field or features[-1]
    if field not in features:
        raise DigitwinInputError(
            f"--field {field!r} is not one of the features ({', '.join(features)})"
        )
    field_units = args.field_units or units.get(field) or None
    if not field_units:
        raise DigitwinInputError(
            f"--quantity magnetocaloric needs the units of the field column {field!r}: "
            "--field-units Oe (or T)"
        )
    target_units = (
        args.target_units or units.get(args.target) or ("emu" if args.mass is not None else None)
    )
    if target_units is None:
        raise DigitwinInputError(
            "--quantity magnetocaloric needs the sample mass: --mass 0.61 --mass-units mg "
            "(or --target-units emu/g if the target is already per mass)"
        )
    return {
        "field": field,
        "temperature": next(f for f in features if f != field),
        "at": list(args.at or [5.0]),
        "options": {
            "mass": args.mass,
            "mass_units": args.mass_units,
            "field_units": field_units,
            "magnetization_units": target_units,
            "absolute": True,
        },
    }


def _entropy(points, features: list[str], target: str, mce: dict[str, Any]):
    from bluesky_digitwin.analysis.magnetocaloric import entropy_change

    try:
        return entropy_change(
            points,
            temperature=mce["temperature"],
            field=mce["field"],
            magnetization=target,
            **mce["options"],
        )
    except ValueError as exc:
        raise DigitwinInputError(f"|ΔS_M|: {exc}") from None


def _at_field(dsm, field: str, change: float) -> int:
    """Index of the upper field whose μ0ΔH is ``change`` (T), within half a field step."""
    import numpy as np

    delta = np.asarray(dsm[f"delta_{field}"].values, dtype=float)
    # The first field is H0 itself (no field change), never a match.
    i = 1 + int(np.argmin(np.abs(delta[1:] - change)))
    half_step = 0.5 * float(np.median(np.diff(delta))) if delta.size > 1 else 0.0
    if abs(delta[i] - change) > half_step + 1e-9:
        raise DigitwinInputError(
            f"no field change of {change:g} T in the grid; available μ0ΔH: "
            f"{', '.join(f'{d:.3g}' for d in delta[1:])} T"
        )
    return i


def _grid_points(model: Any, features: list[str], mce: dict[str, Any]):
    """A dense grid over the learned range: 201 temperatures, 0.1 T field steps."""
    import numpy as np

    from bluesky_digitwin.analysis.steps import axis_grid
    from bluesky_digitwin.analysis.units import field_to_tesla
    from bluesky_digitwin.data import make_grid

    lo_t, hi_t = model.ranges[mce["temperature"]]
    lo_h, hi_h = model.ranges[mce["field"]]
    per_tesla = 1.0 / float(field_to_tesla(1.0, mce["options"]["field_units"]))
    grid = make_grid(
        **{
            mce["field"]: axis_grid(lo_h, hi_h, 0.1 * per_tesla),
            mce["temperature"]: np.linspace(lo_t, hi_t, 201),
        }
    )
    return grid


def _compare_entropy(model, reference, features, target, mce) -> dict[str, Any]:
    """Per field change: peak |ΔS_M| from the model and, with a reference, the RMSE against it."""
    import numpy as np
    import xarray as xr

    if reference is not None:
        points = xr.Dataset({f: reference[f] for f in features})
    else:
        points = _grid_points(model, features, mce)
    predicted = model.predict(points, warn=False)[target]
    if reference is not None:
        data = xr.Dataset({**{f: reference[f] for f in features}, target: predicted})
        ref_dsm = _entropy(reference, features, target, mce)
    else:
        data, ref_dsm = predicted, None
    dsm = _entropy(data, features, target, mce)
    field, temperature = mce["field"], mce["temperature"]
    out = {}
    for change in mce["at"]:
        row = dsm.isel({field: _at_field(dsm, field, change)})
        entry = {"peak": float(np.nanmax(row.values))}
        if ref_dsm is not None:
            ref_row = ref_dsm.isel({field: _at_field(ref_dsm, field, change)})
            on_ref = row.interp({temperature: ref_row[temperature].values}).values
            diff = on_ref - ref_row.values
            usable = np.isfinite(diff)
            entry["rmse"] = float(np.sqrt(np.mean(diff[usable] ** 2))) if usable.any() else None
        out[f"{change:g}"] = entry
    return out


def _reference_entropy(reference, features, target, mce) -> dict[str, Any]:
    import numpy as np

    dsm = _entropy(reference, features, target, mce)
    field = mce["field"]
    return {
        f"{c:g}": {"peak": float(np.nanmax(dsm.isel({field: _at_field(dsm, field, c)}).values))}
        for c in mce["at"]
    }


def _compare_table(summary: dict[str, Any], mce: dict[str, Any] | None) -> str:
    header = ["model", "fit"]
    has_ref = summary["reference"] is not None
    if has_ref:
        header.append(f"{summary['target']} RMSE")
    changes = [f"{c:g}" for c in mce["at"]] if mce else []
    for c in changes:
        if has_ref:
            header.append(f"|ΔS_M| RMSE @{c} T")
        header.append(f"peak |ΔS_M| @{c} T")
    table = []
    for row in summary["models"]:
        cells = [row["model"], row["fit"]]
        if has_ref:
            cells.append(_num(row.get("target_rmse")))
        for c in changes:
            entry = row["entropy_change"][c]
            if has_ref:
                cells.append(_num(entry.get("rmse")))
            cells.append(_num(entry["peak"]))
        table.append(cells)
    if mce and has_ref:
        cells = ["reference", "measured", ""]
        for c in changes:
            cells += ["", _num(summary["reference_entropy_change"][c]["peak"])]
        table.append(cells)
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    if mce:
        lines.append("|ΔS_M| in J/(kg K); μ0ΔH from the lowest field")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


# -- worker ------------------------------------------------------------------------------------


def _cmd_worker(args: argparse.Namespace) -> int:
    from bluesky_digitwin.names import check_name

    check_name(args.study, "--study")
    _start_tensorflow()
    from bluesky_digitwin.surrogate.workers import run_worker

    where = redact_url(str(args.storage))
    _say(args, f"joining study {args.study!r} on {where}")
    report = run_worker(
        args.storage,
        args.study,
        n_trials=args.trials,
        artifacts=args.artifacts,
        heartbeat_interval=args.heartbeat,
    )
    _say(
        args,
        f"worker done: ran {report.trials_run} trials; study {report.study!r} holds "
        f"{report.finished} of {report.n_trials} finished trials",
    )
    return 0


# -- dashboard ---------------------------------------------------------------------------------


def _cmd_dashboard(args: argparse.Namespace) -> int:
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
        say=lambda text: _say(args, text),
        # The address is the output asked for: printed even with -q.
        show_url=lambda url: print(url, flush=True),
    )
    return 0


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
    fit.add_argument("--seed", type=int, default=None, help="make the search repeatable")
    fit.add_argument(
        "--storage",
        default=None,
        help="Optuna storage: a journal file path or a database URL (default: temporary)",
    )
    fit.add_argument("--study", default=None, help="study name to create or continue")
    _add_worker_options(fit)
    fit.add_argument(
        "--ensemble", type=_positive_int, default=None, help="networks in the twin (12)"
    )
    fit.add_argument(
        "--paper-ensemble",
        action="store_true",
        help="the twin is the best trials' own networks (the paper's way; 5 unless --ensemble)",
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
        help="the paper's search space: ReLU networks, no L2 penalty",
    )
    fit.add_argument(
        "--monotonic",
        nargs="+",
        default=None,
        metavar="FEATURE=DIRECTION",
        help="shape knowledge: the target is increasing or decreasing in FEATURE, e.g. "
        "H=increasing",
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
    demo.set_defaults(func=_cmd_demo)

    _add_suggest_step(sub, common)
    _add_compare(sub, common)
    _add_dashboard(sub, common)
    _add_replay(sub, common)
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
    worker.set_defaults(func=_cmd_worker)

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
    dashboard.set_defaults(func=_cmd_dashboard)


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
    step.set_defaults(func=_cmd_suggest_step)


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
    compare.add_argument("--seed", type=int, default=None, help="make the fits repeatable")
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
    compare.set_defaults(func=_cmd_compare)


# -- replay --------------------------------------------------------------------------------------


def _add_replay(sub: Any, common: argparse.ArgumentParser) -> None:
    replay = sub.add_parser(
        "replay",
        parents=[common],
        help="store in Tiled the runs kept in backups when Tiled refused them or was away",
    )
    replay.add_argument("path", metavar="PATH", help="a backup file (UID.jsonl) or directory")
    where = replay.add_mutually_exclusive_group(required=True)
    where.add_argument("--tiled-uri", default=None, help="the node holding measured/simulated")
    where.add_argument("--tiled-dir", default=None, help="an embedded catalog's directory")
    replay.set_defaults(func=_cmd_replay)


def _cmd_replay(args: argparse.Namespace) -> int:
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
            _result(args, f"{run.outcome}: run {run.uid} in {run.origin} ({run.path})")
        else:
            print(f"digitwin: error: run {run.uid} {run.outcome}: {run.detail}", file=sys.stderr)
    if not replayed:
        _result(args, f"no backup in {args.path}")
    return 0 if all(run.ok for run in replayed) else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    args.status_line = StatusLine(quiet=args.quiet)
    start = time.perf_counter()
    with _one_line_warnings(args.status_line):
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
