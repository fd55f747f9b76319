"""What a step suggestion compares: the twin's lines simulated, the quantity computed from them,
and its error against the reference step's.

The built-in quantities are ``"magnetocaloric"`` (|ΔS_M| by the Maxwell relation at the top
field) and ``"map"`` (the twin's map itself); any function of the simulated Dataset works too
(:func:`~bluesky_digitwin.analysis.steps.suggest_step` describes them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from bluesky_digitwin.data import DigitwinInputError, make_grid

from .magnetocaloric import entropy_change
from .step_grids import is_field_unit
from .units import ENTROPY_UNITS, FIELD_UNITS, MOMENT_UNITS, normalize_unit

__all__ = [
    "QUANTITIES",
    "Quantity",
    "align_quantity",
    "quantity_curves",
    "quantity_errors",
    "relative_scale",
    "resolve_quantity",
    "run_quantity",
    "simulate_members",
]

#: The built-in quantities.
QUANTITIES = ("magnetocaloric", "map")

#: A quantity: a function of the simulated Dataset.
Quantity = Callable[[xr.Dataset], Any]


def simulate_members(
    twin: Any,
    target: str,
    axis: str,
    grid: np.ndarray,
    over: Mapping[str, np.ndarray],
    axis_units: str | None,
) -> xr.DataArray:
    """The target on the (axis, *sweep) grid, per network: dims ("member", axis, *sweep)."""
    points = make_grid(**{axis: grid}, **over)
    if hasattr(twin, "predict_members"):
        members = twin.predict_members(points)
    else:
        members = twin.predict(points)[target].expand_dims(member=[0])
    members = members.transpose("member", axis, *over)
    if axis_units and not members[axis].attrs.get("units"):
        members[axis].attrs["units"] = axis_units
    return members


def run_quantity(
    evaluate: Quantity, simulated: xr.DataArray, name: str, label: str
) -> xr.DataArray:
    """Run the quantity on one simulation; a failure names the quantity and the step."""
    if "member" in simulated.coords:
        simulated = simulated.drop_vars("member")
    ds = xr.Dataset({simulated.name: simulated}, attrs={"data_origin": "simulated", "step": label})
    try:
        result = evaluate(ds)
    except DigitwinInputError as exc:
        raise DigitwinInputError(f"the {name} quantity at step {label}: {exc}") from None
    except Exception as exc:
        what = f"the {name} quantity" if name in QUANTITIES else "the quantity function"
        raise DigitwinInputError(
            f"{what} raised {type(exc).__name__} at step {label}: {exc}"
        ) from exc
    if isinstance(result, xr.DataArray):
        return result.astype(float)
    try:
        return xr.DataArray(np.asarray(result, dtype=float))
    except (TypeError, ValueError):
        raise DigitwinInputError(
            f"the quantity function returned a {type(result).__name__} at step {label}; "
            "return numbers (an xarray DataArray, a numpy array or a float)"
        ) from None


def align_quantity(
    candidate: xr.DataArray, reference: xr.DataArray, name: str, label: str
) -> np.ndarray:
    """The candidate's values on the reference's coordinates (linear interpolation)."""
    if set(candidate.dims) != set(reference.dims):
        raise DigitwinInputError(
            f"the {name} quantity has dims {candidate.dims} at step {label} but "
            f"{reference.dims} at the reference step; it must keep the same dims"
        )
    candidate = candidate.transpose(*reference.dims)
    for dim in reference.dims:
        has_coords = dim in reference.coords and dim in candidate.coords
        if has_coords:
            ref_coord = np.asarray(reference[dim].values, dtype=float)
            cand_coord = np.asarray(candidate[dim].values, dtype=float)
            if cand_coord.shape != ref_coord.shape or not np.allclose(
                cand_coord, ref_coord, rtol=1e-12, atol=0
            ):
                candidate = candidate.interp({dim: ref_coord})
        elif candidate.sizes[dim] != reference.sizes[dim]:
            raise DigitwinInputError(
                f"the {name} quantity has {candidate.sizes[dim]} values along {dim!r} at step "
                f"{label} but {reference.sizes[dim]} at the reference step; return a DataArray "
                "with coordinates so it can be interpolated"
            )
    return np.asarray(candidate.values, dtype=float)


def quantity_errors(values: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """RMSE and largest absolute difference over the points where both are finite."""
    diff = np.asarray(values, dtype=float) - np.asarray(reference, dtype=float)
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return float("nan"), float("nan")
    return float(np.sqrt(np.mean(diff**2))), float(np.max(np.abs(diff)))


def relative_scale(reference: xr.DataArray, relative: bool) -> float:
    if not relative:
        return 1.0
    values = np.abs(np.asarray(reference.values, dtype=float))
    values = values[np.isfinite(values)]
    scale = float(values.max()) if values.size else 0.0
    if not scale > 0:
        raise DigitwinInputError(
            "the quantity is zero (or not finite) everywhere at the reference step, so relative "
            "errors are undefined; pass relative=False and an absolute tol"
        )
    return scale


def quantity_curves(
    values: list[np.ndarray],
    reference: xr.DataArray,
    steps: Sequence[float],
    units: str | None,
    description: str,
) -> xr.DataArray:
    coords: dict[str, Any] = {
        dim: reference[dim] for dim in reference.dims if dim in reference.coords
    }
    coords["step"] = ("step", np.asarray(steps, dtype=float), {"units": units or ""})
    coords["role"] = ("step", ["reference"] + ["candidate"] * (len(steps) - 1))
    return xr.DataArray(
        np.stack(values),
        dims=("step", *reference.dims),
        coords=coords,
        name=reference.name or "quantity",
        attrs={**reference.attrs, "description": description, "data_origin": "simulated"},
    )


def resolve_quantity(
    quantity: str | Quantity,
    *,
    twin: Any,
    axis: str,
    sweep_names: list[str],
    axis_units: str | None,
    target_units: str | None,
    mass: float | None,
    mass_units: str,
    field_change: float | None,
    span: tuple[float, float],
    sweep_units: Mapping[str, str | None],
) -> tuple[str, str, Quantity, str, float]:
    """Name, description, function, units of its values, and the top of the stepped range."""
    target = str(twin.target)
    lo, hi = span
    if callable(quantity):
        name = getattr(quantity, "__name__", type(quantity).__name__)
        return name, name, quantity, "", hi
    if quantity == "map":
        description = (
            f"the {target}({', '.join([axis, *sweep_names])}) map, measured lines interpolated "
            f"linearly along {axis}"
        )
        return "map", description, lambda ds: ds[target], target_units or "", hi
    if quantity != "magnetocaloric":
        raise DigitwinInputError(
            f"unknown quantity {quantity!r}; choose 'magnetocaloric', 'map' or give a function "
            "of the simulated xarray Dataset"
        )
    if len(sweep_names) != 1:
        raise DigitwinInputError(
            "the magnetocaloric quantity needs a twin of two features, temperature and field; "
            f"this one has {', '.join([axis, *sweep_names])}"
        )
    temperature = sweep_names[0]
    if not is_field_unit(axis_units):
        raise DigitwinInputError(
            f"the magnetocaloric quantity needs the field units of {axis!r} "
            f"({'the twin records none' if axis_units is None else f'got {axis_units!r}'}): "
            "pass axis_units='Oe' or 'T' (CLI: --axis-units)"
        )
    if target_units is None:
        # The MPMS default: a moment in emu when a mass is given, else already per mass.
        target_units = "emu" if mass is not None else None
    if mass is None and (target_units is None or normalize_unit(target_units) in MOMENT_UNITS):
        raise DigitwinInputError(
            f"the magnetocaloric quantity needs the sample mass to turn the moment {target!r} "
            "into a magnetisation: pass mass=... and mass_units=... (CLI: --mass 0.61 "
            "--mass-units mg); if the target is already per mass, give its units with "
            "target_units='emu/g' (CLI: --target-units)"
        )
    per_tesla = FIELD_UNITS[normalize_unit(axis_units)]
    if field_change is not None:
        top = lo + float(field_change) * per_tesla
        if not (math.isfinite(top) and lo < top <= hi * (1 + 1e-9) + 1e-12):
            raise DigitwinInputError(
                f"field_change {field_change!r} T does not fit the learned range of {axis}, "
                f"{lo:g} to {hi:g} {axis_units} (at most {(hi - lo) / per_tesla:g} T)"
            )
        hi = min(top, hi)
    options = {
        "temperature": temperature,
        "field": axis,
        "magnetization": target,
        "mass": mass,
        "mass_units": mass_units,
        "magnetization_units": target_units,
        "field_units": axis_units,
        "temperature_units": sweep_units.get(temperature),
        "absolute": True,
    }

    def magnetocaloric(ds: xr.Dataset) -> xr.DataArray:
        try:
            dsm = entropy_change(ds[target], **options)
        except ValueError as exc:  # units, mass: a usage error
            raise DigitwinInputError(str(exc)) from None
        return dsm.isel({axis: -1}, drop=True)

    description = (
        f"|ΔS_M|({temperature}) at μ0ΔH = {(hi - lo) / per_tesla:.3g} T "
        f"({lo:g} to {hi:g} {axis_units}), {ENTROPY_UNITS}"
    )
    return "magnetocaloric", description, magnetocaloric, ENTROPY_UNITS, hi
