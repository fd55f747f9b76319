"""``digitwin suggest-step`` and ``digitwin compare``: the twin's step suggestion, and the twin
against the classical interpolators (and a fine-step reference) on what the user computes.
"""

from __future__ import annotations

import argparse
import json
import warnings
from typing import TYPE_CHECKING, Any

from bluesky_digitwin.errors import DigitwinInputError
from bluesky_digitwin.json_values import jsonable

from .output import ProgressLine, clear_status, say, show_result, show_status, start_tensorflow

if TYPE_CHECKING:
    from bluesky_digitwin.analysis.compare import MagnetocaloricSetup

__all__ = ["cmd_compare", "cmd_suggest_step"]


# -- suggest-step ------------------------------------------------------------------------------


def cmd_suggest_step(args: argparse.Namespace) -> int:
    from bluesky_digitwin.analysis.steps import TimeModel, suggest_step
    from bluesky_digitwin.analysis.units import FIELD_UNITS, normalize_unit
    from bluesky_digitwin.twin import DigitalTwin

    show_status(args, f"loading the twin in {args.twin} ...")
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
    show_status(args, f"simulating the measurement at each candidate step of {args.axis} ...")
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
    show_result(args, str(result))
    if args.json:
        print(json.dumps(result.to_dict(), allow_nan=False), flush=True)
    return 0


# -- compare -----------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    from bluesky_digitwin.analysis.baselines import (
        LinearInterpolator,
        RBFBaseline,
        SplineInterpolator,
    )
    from bluesky_digitwin.analysis.compare import compare_models
    from bluesky_digitwin.data import load_table, prepare_training_data
    from bluesky_digitwin.resolution import unresolved_steps_note
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
        show_status(args, f"loading the twin in {args.twin} ...")
        twin = DigitalTwin.load(args.twin)
        if list(twin.features) != features or twin.target != target:
            raise DigitwinInputError(
                f"the twin in {args.twin} learned {twin.target}({', '.join(twin.features)}), "
                f"not {target}({', '.join(features)}); give matching --features and --target"
            )
        say(args, f"loaded the twin from {args.twin}")
    else:
        say(args, f"learning {target}({', '.join(features)}) from {args.data}")
        show_status(args, "starting TensorFlow ...")
        start_tensorflow()
        clear_status(args)
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
    show_status(
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

    comparison = compare_models(models, features, target, reference=reference, magnetocaloric=mce)
    summary: dict[str, Any] = {
        "data": str(args.data),
        "reference": str(args.reference) if args.reference else None,
        "features": features,
        "target": target,
        "models": [score.to_dict() for score in comparison.models],
    }
    if comparison.reference_entropy_change is not None:
        summary["reference_entropy_change"] = {
            c: e.to_dict() for c, e in comparison.reference_entropy_change.items()
        }
    table = _compare_table(summary, mce)
    steps = twin.unresolved_steps
    if mce and steps:
        # A jump inside one temperature step limits every model's |ΔS_M| alike: said with it.
        summary["unresolved_steps"] = [s.to_dict() for s in steps]
        note = unresolved_steps_note(steps, twin.units, quantity="every model's |ΔS_M|")
        summary["resolution_note"] = note
        table += "\n" + note
    show_result(args, table)
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
) -> MagnetocaloricSetup:
    from bluesky_digitwin.analysis.compare import MagnetocaloricSetup

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
    return MagnetocaloricSetup(
        temperature=next(f for f in features if f != field),
        field=field,
        field_units=field_units,
        magnetization_units=target_units,
        at=tuple(args.at or [5.0]),
        mass=args.mass,
        mass_units=args.mass_units,
    )


def _compare_table(summary: dict[str, Any], mce: MagnetocaloricSetup | None) -> str:
    header = ["model", "fit"]
    has_ref = summary["reference"] is not None
    if has_ref:
        header.append(f"{summary['target']} RMSE")
    changes = [f"{c:g}" for c in mce.at] if mce else []
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
