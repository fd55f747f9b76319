"""Is the twin better than the trivial answer? The held-out comparison every fit records.

A twin that interpolates worse than linear interpolation of the same scan is worse than
useless: it looks authoritative. So every fit scores its ensemble on the points the search held
out (before the members see them in the final refit) and scores linear interpolation and a
thin-plate RBF fitted to exactly the training points on the same held-out points. The result
goes into ``twin.json`` and the summaries, and a warning says so when the twin is not better
than linear interpolation, the trivial answer.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from bluesky_digitwin.errors import DigitwinInputError, DigitwinWarning

__all__ = ["HoldoutComparison", "TwinNotBetterWarning", "compare_on_holdout"]


class TwinNotBetterWarning(DigitwinWarning):
    """The twin predicts held-out points no better than linear interpolation of the data."""


@dataclass(frozen=True)
class HoldoutComparison:
    """RMSE of the twin and of classical interpolators on the same held-out points.

    Attributes
    ----------
    held_out
        What was held out: ``"points"`` or ``"lines"``.
    n_points
        How many points were held out.
    twin_rmse
        The twin's ensemble mean, in the target's units.
    twin_r2
        The same as a coefficient of determination (1 - MSE / variance of the held-out
        values); None in twins saved before it was recorded.
    baselines
        Method name -> RMSE on the same points (methods that could not be fitted are left out,
        with the reason in ``skipped``).
    skipped
        Method name -> why it was not scored.
    """

    held_out: str
    n_points: int
    twin_rmse: float
    baselines: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    twin_r2: float | None = None

    @property
    def best_baseline(self) -> tuple[str, float] | None:
        """The classical method with the lowest RMSE, or None when none was scored."""
        if not self.baselines:
            return None
        name = min(self.baselines, key=self.baselines.__getitem__)
        return name, self.baselines[name]

    @property
    def trivial_baseline(self) -> tuple[str, float] | None:
        """The trivial answer the twin must beat: linear interpolation (RBF where there are no
        scan lines to interpolate along), or None when neither was scored."""
        for name in ("linear", "thin-plate RBF"):
            if name in self.baselines:
                return name, self.baselines[name]
        return None

    @property
    def twin_is_better(self) -> bool:
        """True when the twin beats the trivial answer (:attr:`trivial_baseline`).

        A thin-plate RBF often predicts random held-out points of densely measured lines
        better than any network, while the network wins between the lines, where the derived
        quantities live; so RBF is recorded beside it but not demanded.
        """
        trivial = self.trivial_baseline
        return trivial is None or self.twin_rmse < trivial[1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HoldoutComparison:
        return cls(
            held_out=str(d["held_out"]),
            n_points=int(d["n_points"]),
            twin_rmse=float(d["twin_rmse"]),
            baselines={str(k): float(v) for k, v in d.get("baselines", {}).items()},
            skipped={str(k): str(v) for k, v in d.get("skipped", {}).items()},
            twin_r2=None if d.get("twin_r2") is None else float(d["twin_r2"]),
        )

    def summary(self, units: str = "") -> str:
        """One line: the twin's held-out RMSE against the baselines'."""
        unit = f" {units}" if units else ""
        parts = [f"twin {self.twin_rmse:.4g}{unit}"]
        parts += [f"{name} {rmse:.4g}" for name, rmse in self.baselines.items()]
        trivial = self.trivial_baseline
        verdict = "" if self.twin_is_better else f" - the twin is NOT better than {trivial[0]}"
        return f"held-out {self.held_out} ({self.n_points}): RMSE " + ", ".join(parts) + verdict


def compare_on_holdout(
    features: list[str],
    target: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    twin_val: np.ndarray,
    *,
    held_out: str = "points",
    warn: bool = True,
    suggest_fourier: bool = False,
) -> HoldoutComparison:
    """Score the twin and the classical interpolators on the held-out points.

    Parameters
    ----------
    features, target
        Names of the columns (the baselines read tables).
    x_train, y_train
        The points the twin's networks trained on, in raw units.
    x_val, y_val
        The held-out points, in raw units.
    twin_val
        The twin's ensemble mean at ``x_val`` from networks that did not train on them.
    held_out
        ``"points"`` or ``"lines"``, recorded with the result.
    warn
        Warn (:class:`TwinNotBetterWarning`) when the trivial answer (linear interpolation, or
        RBF without scan lines) does at least as well.
    suggest_fourier
        Whether the warning may advise Fourier features for held-out points: for a large map
        (the regime where they were measured to help) whose twin does not use them yet.
    """
    from bluesky_digitwin.analysis.baselines import LinearInterpolator, RBFBaseline

    y_val = np.asarray(y_val, np.float64)
    twin_mse = float(np.mean((np.asarray(twin_val, np.float64) - y_val) ** 2))
    twin_rmse = math.sqrt(twin_mse)
    spread = float(np.var(y_val))
    twin_r2 = 1.0 - twin_mse / spread if spread > 0 else None
    table = pd.DataFrame(np.column_stack([x_train, y_train]), columns=[*features, target])
    queries = {name: x_val[:, i] for i, name in enumerate(features)}
    baselines: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for name, fit in (
        ("linear", lambda: LinearInterpolator.fit(table, features, target)),
        ("thin-plate RBF", lambda: RBFBaseline.fit(table, features, target, tune=False)),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # held-out points at a ragged edge, for example
                predicted = fit().predict(queries, warn=False)[target].to_numpy()
        except (DigitwinInputError, ValueError, np.linalg.LinAlgError) as exc:
            skipped[name] = str(exc).splitlines()[0]
            continue
        finite = np.isfinite(predicted)
        if not finite.any():
            skipped[name] = "no finite prediction at the held-out points"
            continue
        # Linear interpolation does not extrapolate (NaN beyond a sweep's ragged end): it is
        # scored where it answers, which can only flatter it; the gap is recorded.
        rmse = float(np.sqrt(np.mean((predicted[finite] - y_val[finite]) ** 2)))
        if not finite.all():
            skipped[f"{name} (partial)"] = f"no value at {int((~finite).sum())} point(s)"
        baselines[name] = rmse
    result = HoldoutComparison(held_out, len(y_val), twin_rmse, baselines, skipped, twin_r2)
    if warn and not result.twin_is_better and math.isfinite(twin_rmse):
        name, rmse = result.trivial_baseline  # type: ignore[misc]
        # Random points of densely measured lines are easy for interpolation along the line;
        # they say nothing of what the user computes between the lines, so the advice says
        # where it holds. What matched linear there on the 30 k-point ARPES map is Fourier
        # features, which interpolate worse between the lines: so only for points, and only
        # on a large map. On ErCo2 (808 points) they made the held-out RMSE 6-10 times worse
        # (benchmarks/RESULTS.md), so a smaller table is pointed to a finer measurement.
        if held_out == "lines":
            advice = (
                f"for lines like these trust {name}, or give the search more trials or a wider "
                "space (SearchSpace)"
            )
        else:
            remedy = (
                "to reproduce densely measured lines, Fourier features (fourier_scale=, "
                "--fourier-scale) matched them on a 30 000-point map, at a cost between the lines"
                if suggest_fourier
                else "they do not test the twin between the lines: score it there against a "
                "finer measurement (digitwin compare --reference, or "
                "analysis.compare.compare_models)"
            )
            advice = f"at points like these (on the measured lines) trust {name}; {remedy}"
        warnings.warn(
            f"the twin predicts the held-out {held_out} no better than {name} interpolation "
            f"(RMSE {twin_rmse:.4g} against {rmse:.4g}); {advice}",
            TwinNotBetterWarning,
            stacklevel=3,
        )
    return result
