"""A twin against the classical interpolators, on the points and on what the user computes.

What ``digitwin compare`` prints, as a Python API: each model (a
:class:`~bluesky_digitwin.twin.DigitalTwin`, a baseline of :mod:`.baselines`, anything with a
twin's face, :class:`~bluesky_digitwin.protocols.Twin`) is scored

- against a fine reference measurement, when there is one: the target's RMSE at its points;
- on the magnetocaloric entropy change |ΔS_M| (Maxwell relation, integrated from the lowest
  field), when asked: its peak at each field change and, with a reference, its RMSE against
  the reference's own |ΔS_M|.

::

    setup = MagnetocaloricSetup("T", "H", field_units="Oe", magnetization_units="emu",
                                mass=0.61, mass_units="mg", at=(3.0, 5.0))
    comparison = compare_models(
        [("twin", twin, ""), ("linear", LinearInterpolator.fit(data, ["T", "H"], "M"), "")],
        ["T", "H"], "M", reference=fine, magnetocaloric=setup,
    )
    comparison.models[0].entropy_change["5"].rmse
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from bluesky_digitwin.data import DigitwinInputError, make_grid
from bluesky_digitwin.protocols import Twin

from .magnetocaloric import entropy_change
from .step_grids import axis_grid
from .units import field_to_tesla

__all__ = [
    "Comparison",
    "EntropyAt",
    "MagnetocaloricSetup",
    "ModelScore",
    "compare_models",
    "score_model",
]


@dataclass(frozen=True)
class MagnetocaloricSetup:
    """How |ΔS_M| is computed from M(T, H), and at which field changes it is compared.

    Attributes
    ----------
    temperature, field
        The names of the temperature and field features.
    field_units, magnetization_units
        Units of the field column (``"Oe"``, ``"T"``, ...) and of the target (``"emu"``, or
        per mass such as ``"emu/g"``).
    at
        Field changes μ0ΔH (T) from the lowest field at which |ΔS_M| is compared.
    mass, mass_units
        The sample's mass, for a moment in emu.
    """

    temperature: str
    field: str
    field_units: str
    magnetization_units: str
    at: tuple[float, ...] = (5.0,)
    mass: float | None = None
    mass_units: str = "g"

    def entropy_change(self, points: Any, target: str) -> xr.DataArray:
        """|ΔS_M|(T, μ0ΔH) of ``points`` (a table or a grid of the target)."""
        try:
            return entropy_change(
                points,
                temperature=self.temperature,
                field=self.field,
                magnetization=target,
                mass=self.mass,
                mass_units=self.mass_units,
                field_units=self.field_units,
                magnetization_units=self.magnetization_units,
                absolute=True,
            )
        except ValueError as exc:
            raise DigitwinInputError(f"|ΔS_M|: {exc}") from None

    def at_field(self, dsm: xr.DataArray, change: float) -> int:
        """Index of the upper field whose μ0ΔH is ``change`` (T), within half a field step."""
        delta = np.asarray(dsm[f"delta_{self.field}"].values, dtype=float)
        # The first field is H0 itself (no field change), never a match.
        i = 1 + int(np.argmin(np.abs(delta[1:] - change)))
        half_step = 0.5 * float(np.median(np.diff(delta))) if delta.size > 1 else 0.0
        if abs(delta[i] - change) > half_step + 1e-9:
            raise DigitwinInputError(
                f"no field change of {change:g} T in the grid; available μ0ΔH: "
                f"{', '.join(f'{d:.3g}' for d in delta[1:])} T"
            )
        return i

    def grid(self, model: Twin) -> xr.Dataset:
        """A dense grid over the model's learned range: 201 temperatures, 0.1 T field steps."""
        lo_t, hi_t = model.ranges[self.temperature]
        lo_h, hi_h = model.ranges[self.field]
        per_tesla = 1.0 / float(field_to_tesla(1.0, self.field_units))
        return make_grid(
            **{
                self.field: axis_grid(lo_h, hi_h, 0.1 * per_tesla),
                self.temperature: np.linspace(lo_t, hi_t, 201),
            }
        )


@dataclass(frozen=True)
class EntropyAt:
    """|ΔS_M| at one field change: its peak, and its RMSE against the reference's (if any)."""

    peak: float
    rmse: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {"peak": self.peak} if self.rmse is None else {"peak": self.peak, "rmse": self.rmse}


@dataclass(frozen=True)
class ModelScore:
    """One model's scores (``None``: not computed, for want of a reference or a setup).

    Attributes
    ----------
    name, fit
        The model's name and a line about how it was fitted.
    target_rmse, n_outside
        With a reference: the target's RMSE at its points (where the model predicts), and how
        many of them lie outside the model's learned range.
    entropy_change
        With a magnetocaloric setup: :class:`EntropyAt` by field change (``"3"``, ``"5"``).
    """

    name: str
    fit: str = ""
    target_rmse: float | None = None
    n_outside: int | None = None
    entropy_change: Mapping[str, EntropyAt] | None = None

    def to_dict(self) -> dict[str, Any]:
        """As ``digitwin compare --json`` prints it."""
        row: dict[str, Any] = {"model": self.name, "fit": self.fit}
        if self.n_outside is not None:  # scored against a reference
            row["target_rmse"] = self.target_rmse
            row["n_outside"] = self.n_outside
        if self.entropy_change is not None:
            row["entropy_change"] = {c: e.to_dict() for c, e in self.entropy_change.items()}
        return row


@dataclass(frozen=True)
class Comparison:
    """Every model's scores, and the reference's own |ΔS_M| peaks (with a reference and setup)."""

    features: tuple[str, ...]
    target: str
    models: tuple[ModelScore, ...]
    reference_entropy_change: Mapping[str, EntropyAt] | None = None


def _rmse(diff: np.ndarray) -> float | None:
    usable = np.isfinite(diff)
    return float(np.sqrt(np.mean(diff[usable] ** 2))) if usable.any() else None


def _entropy_scores(
    model: Twin,
    features: Sequence[str],
    target: str,
    setup: MagnetocaloricSetup,
    reference: xr.Dataset | None,
) -> dict[str, EntropyAt]:
    """Per field change: peak |ΔS_M| from the model and, with a reference, the RMSE against it."""
    if reference is not None:
        points = xr.Dataset({f: reference[f] for f in features})
    else:
        points = setup.grid(model)
    predicted = model.predict(points, warn=False)[target]
    if reference is not None:
        data = xr.Dataset({**{f: reference[f] for f in features}, target: predicted})
        ref_dsm = setup.entropy_change(reference, target)
    else:
        data, ref_dsm = predicted, None
    dsm = setup.entropy_change(data, target)
    out = {}
    for change in setup.at:
        row = dsm.isel({setup.field: setup.at_field(dsm, change)})
        rmse = None
        if ref_dsm is not None:
            ref_row = ref_dsm.isel({setup.field: setup.at_field(ref_dsm, change)})
            on_ref = row.interp({setup.temperature: ref_row[setup.temperature].values}).values
            rmse = _rmse(on_ref - ref_row.values)
        out[f"{change:g}"] = EntropyAt(peak=float(np.nanmax(row.values)), rmse=rmse)
    return out


def score_model(
    name: str,
    model: Twin,
    features: Sequence[str],
    target: str,
    *,
    fit: str = "",
    reference: xr.Dataset | None = None,
    magnetocaloric: MagnetocaloricSetup | None = None,
) -> ModelScore:
    """Score one model (see the module's description)."""
    target_rmse = n_outside = None
    if reference is not None:
        predicted = model.predict({f: reference[f].values for f in features}, warn=False)
        target_rmse = _rmse(predicted[target].values - reference[target].values)
        n_outside = int(predicted["outside_range"].sum())
    entropy = None
    if magnetocaloric is not None:
        entropy = _entropy_scores(model, features, target, magnetocaloric, reference)
    return ModelScore(
        name=name,
        fit=fit,
        target_rmse=target_rmse,
        n_outside=n_outside,
        entropy_change=entropy,
    )


def compare_models(
    models: Sequence[tuple[str, Twin, str]],
    features: Sequence[str],
    target: str,
    *,
    reference: xr.Dataset | None = None,
    magnetocaloric: MagnetocaloricSetup | None = None,
) -> Comparison:
    """Score every model on the same reference and the same |ΔS_M| setup.

    Parameters
    ----------
    models
        ``(name, model, fit)``: a name, anything with a twin's face, a line about its fit.
    features, target
        The columns, as the models learned them.
    reference
        A fine measurement along ``point`` with the same column names, or ``None``.
    magnetocaloric
        How to compute |ΔS_M|, or ``None`` not to.

    Returns
    -------
    Comparison
        The scores, in the order of ``models``.
    """
    scores = tuple(
        score_model(
            name,
            model,
            features,
            target,
            fit=fit,
            reference=reference,
            magnetocaloric=magnetocaloric,
        )
        for name, model, fit in models
    )
    reference_entropy = None
    if reference is not None and magnetocaloric is not None:
        dsm = magnetocaloric.entropy_change(reference, target)
        reference_entropy = {
            f"{c:g}": EntropyAt(
                peak=float(
                    np.nanmax(
                        dsm.isel({magnetocaloric.field: magnetocaloric.at_field(dsm, c)}).values
                    )
                )
            )
            for c in magnetocaloric.at
        }
    return Comparison(tuple(features), target, scores, reference_entropy)
