"""``digitwin fit`` and ``digitwin predict``: learn a twin from a table or from Tiled and save
it; simulate a grid with a saved twin.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bluesky_digitwin.data_sources import TiledRunsSource
from bluesky_digitwin.errors import DigitwinInputError
from bluesky_digitwin.redaction import redact_url

from .output import ProgressLine, say, show_status

if TYPE_CHECKING:
    from bluesky_digitwin.surrogate.ensemble import EnsembleRecipe
    from bluesky_digitwin.surrogate.search import OtherTrainingError
    from bluesky_digitwin.surrogate.search_settings import SearchStrategy
    from bluesky_digitwin.surrogate.training import TrainConfig

__all__ = ["cmd_fit", "cmd_predict"]


# -- fit ---------------------------------------------------------------------------------------


def cmd_fit(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    from bluesky_digitwin.data import prepare_training_data
    from bluesky_digitwin.holdout import TwinNotBetterWarning
    from bluesky_digitwin.resolution import UnresolvedStepWarning
    from bluesky_digitwin.surrogate.precision import allow_bfloat16_inside_matmuls
    from bluesky_digitwin.surrogate.search import OtherTrainingError
    from bluesky_digitwin.surrogate.search_settings import RemoteWorkers
    from bluesky_digitwin.twin import DigitalTwin, EnsembleWarning
    from bluesky_digitwin.twin_files import check_save_destination

    out = Path(args.out)
    # Before anything is learned: a twin that cannot be saved is a search thrown away.
    try:
        check_save_destination(out)
    except DigitwinInputError as exc:
        raise DigitwinInputError(f"--out {exc}") from None
    _check_search_options(args)
    # The whole process is this command's: its batched matmuls may run in bfloat16 inside
    # oneDNN, without the casts a user's own Python session keeps.
    allow_bfloat16_inside_matmuls(args.precision)
    if _from_tiled(args):
        data, source, provenance, data_source = _read_tiled_runs(args)
    else:
        data, source, provenance, data_source = args.data, args.data, None, None
    # Check the data before starting TensorFlow and the search, so mistakes fail in a second.
    prepare_training_data(data, args.features, args.target)
    say(args, f"learning {args.target}({', '.join(args.features)}) from {source}")
    if args.workers == 0:
        say(
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
        # ... and so is a twin that is no better than interpolating the data, and data whose
        # jumps no interpolator can place.
        warnings.simplefilter("always", TwinNotBetterWarning)
        warnings.simplefilter("always", UnresolvedStepWarning)
        try:
            twin = DigitalTwin.fit(
                data,
                args.features,
                args.target,
                n_trials=args.trials,
                n_workers=args.workers,
                ensemble=_ensemble_recipe(args),
                space=args.space,
                monotonic=args.monotonic,
                strategy=args.strategy,
                train_config=_train_config(args),
                seed=args.seed,
                storage=args.storage,
                study_name=args.study,
                progress=progress,
                provenance=provenance,
                remote=RemoteWorkers(
                    artifact_store=_artifact_store(args.artifacts),
                    data_source=data_source,
                    heartbeat_interval=args.heartbeat,
                ),
            )
        except OtherTrainingError as refused:
            raise DigitwinInputError(_continue_with_flags(refused)) from None
    progress.done()
    _save_or_fall_back(twin, out)
    search = twin.metadata["search"]
    best = twin.metadata["members"][0]
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
    target_units = f" {twin.units[twin.target]}" if twin.units.get(twin.target) else ""
    say(
        args,
        "\n".join(
            [
                f"saved twin {twin.id} to {out}",
                f"  trials: {search['n_trials']} ({search['n_complete']} complete, "
                f"{search['n_pruned']} pruned, {search['n_failed']} failed), "
                f"study {search['study_name']!r}",
                f"  best hyperparameters: {params}",
                f"  {_networks_line(twin, target_units)}",
                *(
                    [f"  {twin.holdout.summary(twin.units.get(twin.target, ''))}"]
                    if twin.holdout is not None
                    else []
                ),
                f"  wall time: {time.perf_counter() - start:.1f} s, of which "
                f"{search['wall_time_s']:.1f} s searching",
            ]
        ),
    )
    return 0


def _networks_line(twin: Any, target_units: str) -> str:
    """How the twin's networks did on the held-out points, alone and together.

    Each network's own figure is from before the refit on all the points; together is the
    twin, their mean. So a stray network shows without being taken for the twin.
    """
    rmses = [float(m["validation_rmse"]) for m in twin.metadata["members"]]
    holdout = twin.holdout
    where = f"held-out {'points' if holdout is None else holdout.held_out}"
    if len(rmses) == 1:
        return f"networks: 1, on the {where} RMSE {rmses[0]:.4g}{target_units}"
    together = (
        ""
        if holdout is None or holdout.twin_r2 is None
        else f"; together R^2 {holdout.twin_r2:.5f}"
    )
    return (
        f"networks: {len(rmses)}, on the {where} RMSE {min(rmses):.4g}-{max(rmses):.4g}"
        f"{target_units} each{together}"
    )


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
    args.strategy = _strategy(args)
    if args.activations is not None or args.paper_search:
        from bluesky_digitwin.surrogate.search_space import SearchSpace

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
    from bluesky_digitwin.fit_settings import monotonic_pairs

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


def _strategy(args: argparse.Namespace) -> SearchStrategy | None:
    """The search strategy --fourier-scale asks for (None: the default), checked now."""
    from bluesky_digitwin.surrogate.search_settings import (
        SearchStrategy,
        check_fourier_with_monotonic,
    )

    if args.fourier_scale is None:
        return None
    try:
        strategy = SearchStrategy(fourier_scale=args.fourier_scale)
        check_fourier_with_monotonic(strategy.fourier_scale, tuple(args.monotonic or ()))
    except DigitwinInputError as exc:
        raise DigitwinInputError(f"--fourier-scale: {exc}") from None
    return strategy


#: The flag of each training setting a study records that ``digitwin fit`` can set.
_TRAINING_FLAGS = {
    "max_epochs": "--max-epochs",
    "reference_points": "--epoch-points",
    "precision": "--precision",
}


def _continue_with_flags(refused: OtherTrainingError) -> str:
    """A study's refusal of other training, in this command's terms: the flags that continue
    it, and as ``TrainConfig`` fields the settings no flag sets (changed since by an upgrade)."""
    flags = {
        name: value
        for name, value in refused.searched.items()
        if name in _TRAINING_FLAGS and value is not None
    }
    others = ", ".join(
        f"{name}={value!r}" for name, value in refused.searched.items() if name not in flags
    )
    ways = []
    if flags:
        ways.append(
            "digitwin fit " + " ".join(f"{_TRAINING_FLAGS[k]} {v}" for k, v in flags.items())
        )
    if others:
        ways.append(f"TrainConfig({others}) in Python")
    return refused.message("; ".join(ways))


def _train_config(args: argparse.Namespace) -> TrainConfig | None:
    """The training --epoch-points, --max-epochs, --precision and --paper-search (the paper's
    500 epochs) ask for; None (the default) when none is given."""
    from bluesky_digitwin.surrogate.training import TrainConfig

    defaults = args.epoch_points is None and args.max_epochs is None and args.precision == "auto"
    if defaults and not args.paper_search:
        return None
    make = TrainConfig.paper if args.paper_search else TrainConfig
    config = make(precision=args.precision)
    if args.epoch_points is not None:
        config = replace(config, reference_points=args.epoch_points)
    if args.max_epochs is not None:
        config = replace(config, max_epochs=args.max_epochs)
    return config


def _ensemble_recipe(args: argparse.Namespace) -> EnsembleRecipe | None:
    """The recipe --paper-ensemble and --ensemble ask for; None (the fit chooses by the data's
    size, ``default_recipe``) when neither is given."""
    from bluesky_digitwin.surrogate.ensemble import EnsembleRecipe

    if not args.paper_ensemble and args.ensemble is None:
        return None
    recipe = EnsembleRecipe.paper() if args.paper_ensemble else EnsembleRecipe()
    return recipe if args.ensemble is None else replace(recipe, size=args.ensemble)


def _artifact_store(directory: str | None) -> Any:
    if directory is None:
        return None
    from optuna.artifacts import FileSystemArtifactStore

    path = Path(directory).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def _read_tiled_runs(
    args: argparse.Namespace,
) -> tuple[Any, str, dict[str, Any], TiledRunsSource]:
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


def cmd_predict(args: argparse.Namespace) -> int:
    import math

    from bluesky_digitwin.atomic_files import CannotWriteError, atomic_path, check_can_create
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
    show_status(args, f"loading the twin in {args.twin} ...")
    twin = DigitalTwin.load(args.twin)
    n_points = math.prod(grid.sizes.values())
    show_status(args, f"simulating the measurement at {n_points} points ...")
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
    say(
        args,
        f"wrote {len(frame)} predictions of {target} to {args.out}"
        + (f" ({outside} outside the learned range)" if outside else ""),
    )
    return 0
