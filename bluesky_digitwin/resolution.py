"""Where the measurement, not the twin, limits a derived quantity: a transition inside one step.

A first-order transition measured along a line at a step wider than the transition shows as
one jump between two neighbouring points. Where inside that step the jump lies, and how sharp
it is, is not in the data: no interpolator, the twin included, can know it, and a quantity that
differentiates along the line depends on exactly that (∂M/∂T, and |ΔS_M|, which integrates it
over the field). On the simulated first-order magnets of the fidelity benchmark most of the
twin's |ΔS_M| error is made at such a jump, and there its networks agree with one another, so
the ensemble's ±2σ does not show it (benchmarks/RESULTS.md, "Where the first-order magnets'
error sits" and "Is the derived quantity's uncertainty honest?").

So every fit looks for such steps in its data (:func:`find_unresolved_steps`), records them in
``twin.json`` and says where they are (:class:`UnresolvedStepWarning`): measuring those lines
again with a finer step around the jump is what would help, not a better interpolator.

The rule, measured on the benchmark's materials (``benchmarks/RESULTS.md``, "A transition
inside one step"): a step is unresolved when it carries at least :data:`MIN_SHARE` of the
line's total change, is :data:`MIN_DOMINANCE` times the line's next largest step, and the line
stays at its new level after it (the mean of the next points, against that of the points
before), so that a lone outlier, which steps out and back, is not a jump. Smooth transitions,
even ones spread over a few steps, and noisy lines do not qualify.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from bluesky_digitwin.errors import DigitwinWarning
from bluesky_digitwin.scan_lines import slow_axis

__all__ = [
    "MIN_DOMINANCE",
    "MIN_SHARE",
    "UnresolvedStep",
    "UnresolvedStepWarning",
    "find_unresolved_steps",
    "unresolved_steps_message",
    "unresolved_steps_note",
]

#: A step carrying at least this share of its line's total change (the sum of the absolute
#: changes along it) ...
MIN_SHARE = 0.25
#: ... and at least this many times the line's next largest step is a jump inside one step.
MIN_DOMINANCE = 3.0
#: Points on each side of a step whose means must differ as the step does (a jump stays).
SIDE_POINTS = 3
#: Fewer points than this on a line: too few to call one step dominant.
MIN_LINE_POINTS = 8


class UnresolvedStepWarning(DigitwinWarning):
    """The data jump within one step of a line: derivatives along it there are not known."""


@dataclass(frozen=True)
class UnresolvedStep:
    """One step of one measured line that holds a jump the step does not resolve.

    Attributes
    ----------
    line_feature
        The feature that is constant along a line (the slow axis), e.g. ``"H"``.
    line
        Its value on this line (the median of the line's points).
    along
        The feature swept along the line, e.g. ``"T"``.
    start, stop
        The two neighbouring points of ``along`` the jump lies between.
    share
        The share of the line's total change (the sum of the target's absolute changes along
        it) this step carries.
    dominance
        This step's absolute change of the target over the line's next largest step's (inf when
        every other step is zero; None in ``twin.json``, which holds no infinities).
    """

    line_feature: str
    line: float
    along: str
    start: float
    stop: float
    share: float
    dominance: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dominance"] = self.dominance if math.isfinite(self.dominance) else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> UnresolvedStep:
        return cls(
            line_feature=str(d["line_feature"]),
            line=float(d["line"]),
            along=str(d["along"]),
            start=float(d["start"]),
            stop=float(d["stop"]),
            share=float(d["share"]),
            dominance=math.inf if d["dominance"] is None else float(d["dominance"]),
        )

    def summary(self, units: Mapping[str, str] | None = None) -> str:
        """E.g. ``H = 1000 Oe: 77 % of the line's change between T = 32.69 and 33.96 K``."""
        return (
            f"{self.line_feature} = {self.line:.5g}{_unit(units, self.line_feature)}: "
            f"{100 * self.share:.0f} % of the line's change between {self.along} = "
            f"{self.start:.5g} and {self.stop:.5g}{_unit(units, self.along)}"
        )


def find_unresolved_steps(
    x: np.ndarray,
    y: np.ndarray,
    features: Sequence[str],
    *,
    min_share: float = MIN_SHARE,
    min_dominance: float = MIN_DOMINANCE,
) -> list[UnresolvedStep]:
    """The steps of the measured lines that each hold a jump they do not resolve.

    Parameters
    ----------
    x : ndarray, shape (n, n_features)
        The points' features.
    y : ndarray, shape (n,)
        The measured target.
    features
        The names of ``x``'s columns.
    min_share, min_dominance
        The rule's thresholds (:data:`MIN_SHARE`, :data:`MIN_DOMINANCE`).

    Returns
    -------
    list of UnresolvedStep
        In slow-axis order, at most one per line; empty when the data are not scan lines (no
        feature takes between 3 and 64 values, :func:`~bluesky_digitwin.scan_lines.slow_axis`).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    found = slow_axis(x)
    if found is None:
        return []
    column, labels, n_lines = found
    lines = [np.flatnonzero(labels == i) for i in range(n_lines)]
    # Along a line: the feature that varies most within the lines (the other one, for two).
    others = [i for i in range(x.shape[1]) if i != column]
    spreads = [np.median([np.ptp(x[idx, i]) for idx in lines]) for i in others]
    along = others[int(np.argmax(spreads))]
    steps = []
    for idx in lines:
        if idx.size < MIN_LINE_POINTS:
            continue
        order = idx[np.argsort(x[idx, along], kind="stable")]
        step = _dominant_step(y[order], min_share, min_dominance)
        if step is None:
            continue
        i, share, dominance = step
        steps.append(
            UnresolvedStep(
                line_feature=features[column],
                line=float(np.median(x[idx, column])),
                along=features[along],
                start=float(x[order[i], along]),
                stop=float(x[order[i + 1], along]),
                share=share,
                dominance=dominance,
            )
        )
    return steps


def _dominant_step(
    values: np.ndarray, min_share: float, min_dominance: float
) -> tuple[int, float, float] | None:
    """(index, share, dominance) of the line's jump inside one step, or None if it has none."""
    change = np.diff(values)
    size = np.abs(change)
    total = float(size.sum())
    if total == 0 or size.size < 2:
        return None
    i = int(np.argmax(size))
    next_largest = float(np.partition(size, -2)[-2])
    share = float(size[i]) / total
    dominance = float(size[i]) / next_largest if next_largest > 0 else math.inf
    if share < min_share or dominance < min_dominance:
        return None
    # A jump stays: the points after it sit at the new level. A lone outlier steps out and
    # back (and one at a line's end has nothing after it to stay).
    before = values[max(0, i + 1 - SIDE_POINTS) : i + 1]
    after = values[i + 1 : i + 1 + SIDE_POINTS]
    if after.size < 2 or before.size < 2:
        return None
    if (after.mean() - before.mean()) * change[i] < 0.5 * change[i] ** 2:
        return None
    return i, share, dominance


def unresolved_steps_message(
    steps: Sequence[UnresolvedStep], target: str, units: Mapping[str, str] | None = None
) -> str:
    """What a fit says about the steps it found: where, what it means, what helps."""
    first = steps[0]
    largest = max(steps, key=lambda s: s.share)
    along = first.along
    lines = ", ".join(f"{s.line:.5g}" for s in steps)
    return (
        f"{target} jumps within one step of {along} on {len(steps)} line(s) "
        f"({first.line_feature} = {lines}{_unit(units, first.line_feature)}; the largest, "
        f"{100 * largest.share:.0f} % of its line's change, between {along} = "
        f"{largest.start:.5g} and {largest.stop:.5g}{_unit(units, along)}). "
        f"Where inside such a step the jump lies is not in the data: derivatives along {along} "
        f"there (∂{target}/∂{along}, |ΔS_M|) are uncertain beyond the twin's ±2σ, for any "
        f"interpolator. To know them, measure those lines again with a finer {along} step "
        "around the jump (twin.json: unresolved_steps)"
    )


def unresolved_steps_note(
    steps: Sequence[UnresolvedStep],
    units: Mapping[str, str] | None = None,
    *,
    quantity: str = "the quantity",
    stepped: str | None = None,
) -> str:
    """One line for a result that derives ``quantity`` from the twin: where the steps limit it.

    ``stepped`` names the axis whose step a suggestion chooses, which cannot help there.
    """
    along = steps[0].along
    lo, hi = min(s.start for s in steps), max(s.stop for s in steps)
    unchanged = f", which no step of {stepped} changes and" if stepped else " and"
    return (
        f"note: {len(steps)} measured line(s) jump within one step of {along} "
        f"({along} = {lo:.4g}-{hi:.4g}{_unit(units, along)}): near there {quantity} is "
        f"limited by that step{unchanged} the twin's spread does not show; measure those "
        f"lines again with a finer {along} step around the jump"
    )


def _unit(units: Mapping[str, str] | None, name: str) -> str:
    """`` K`` after a value of ``name`` when its units are known, else nothing."""
    return f" {units[name]}" if units and units.get(name) else ""
