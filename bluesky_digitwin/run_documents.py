"""What a run's start document says of its origin: the one rule plans, callbacks and Tiled share.

Measured and simulated data are kept apart by the start document alone:

- ``data_origin``: ``"measured"`` or ``"simulated"`` (any case, spaces around ignored);
- ``tiled_specs``: a simulated run also names the Tiled spec ``SimulatedRun``, which
  TiledWriter turns into a node spec a Tiled browser can search for.

A run without ``data_origin`` is measured unless its specs name ``SimulatedRun``. A run that
says ``"measured"`` while naming ``SimulatedRun`` contradicts itself and is refused. The plans
write these keys (:mod:`bluesky_digitwin.plans`), the buffer reads them to learn from measured
runs only (:mod:`bluesky_digitwin.buffer`), and Tiled routes each run to the container of its
origin by them (:mod:`bluesky_digitwin.tiled`).

The twin-guided plans also record, in each line's start document, which line it is and what the
twin decided (the keys below; docs/architecture.md has their full contents).
:class:`SlowAxis` is how a line says where it lies, :class:`RecordedDecision` how a reader
(:class:`~bluesky_digitwin.callbacks.LiveTwinPlot`, a script browsing Tiled) gets the decision
back without parsing dictionaries by key.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from bluesky_digitwin.errors import DigitwinInputError

__all__ = [
    "APPROVAL",
    "DECIDED_BY",
    "DECISION",
    "DECISION_RUN",
    "GUIDED_BY",
    "LINE",
    "MEASURED",
    "ORIGINS",
    "PHASE",
    "SIMULATED",
    "SIMULATED_SPEC",
    "SLOW_AXIS",
    "STEP_TABLE",
    "SUGGESTED_STEP",
    "DataOriginError",
    "Origin",
    "Phase",
    "RecordedDecision",
    "RunMetadataError",
    "SlowAxis",
    "data_origin_of",
    "describe_run",
    "normal_origin",
    "spec_names",
]

#: Where a run's data come from.
Origin = Literal["measured", "simulated"]
MEASURED: Final = "measured"
SIMULATED: Final = "simulated"
ORIGINS: tuple[Origin, ...] = (MEASURED, SIMULATED)
#: The Tiled spec on every simulated run.
SIMULATED_SPEC: Final = "SimulatedRun"

# -- the keys of the guided plans' start documents -------------------------------------------

#: Which part of a plan a run is: a guided scan's ``"coarse"`` and ``"suggested"`` lines, an
#: adaptive scan's ``"initial"`` and ``"adaptive"`` ones, or a ``"decision"`` (simulated).
Phase = Literal["coarse", "suggested", "initial", "adaptive", "decision"]
PHASE: Final = "phase"
#: The line's index within its plan.
LINE: Final = "line"
#: Where the line lies: :class:`SlowAxis` as a dict.
SLOW_AXIS: Final = "slow_axis"
#: twin_guided_scan's suggested lines: ``{"axis", "value", "units"}`` of the step, its table,
#: and the twin and message it was decided by.
SUGGESTED_STEP: Final = "suggested_step"
STEP_TABLE: Final = "step_table"
GUIDED_BY: Final = "guided_by"
#: adaptive_line_scan's chosen lines: ``value``, ``score``, ``criterion``, ``units``, ...
DECISION: Final = "decision"
#: The uid of the simulated run that records the decision as data.
DECISION_RUN: Final = "decision_run"
#: With ``confirm=True``: a person's answer, ``{"action", "values", "by"}``.
APPROVAL: Final = "approval"
#: On a decision run: the plan that decided.
DECIDED_BY: Final = "decided_by"


class RunMetadataError(DigitwinInputError):
    """A run's start metadata cannot be stored as given (its ``tiled_specs``, its origin)."""


class DataOriginError(RunMetadataError):
    """A run was sent where its origin does not belong (measured vs. simulated)."""


def describe_run(uid: Any) -> str:
    """``"run <uid>"`` for messages, or ``"the run"`` before it has one."""
    return f"run {uid}" if uid is not None else "the run"


def spec_names(specs: Any) -> set[str]:
    """Names in a ``tiled_specs`` entry or a node's specs (strings, dicts or Spec objects)."""
    if specs is None:
        return set()
    if (
        isinstance(specs, (str, Mapping))
        or hasattr(specs, "name")
        or not isinstance(specs, Iterable)
    ):
        specs = [specs]  # one spec
    names = set()
    for spec in specs:
        if isinstance(spec, str):
            names.add(spec)
        elif isinstance(spec, Mapping):
            names.add(str(spec.get("name")))
        else:
            names.add(str(getattr(spec, "name", spec)))
    return names


def normal_origin(declared: Any, uid: Any = None) -> Origin:
    """``"measured"`` or ``"simulated"`` from a declared ``data_origin`` (any case, spaces).

    Raises
    ------
    DataOriginError
        It is neither.
    """
    if isinstance(declared, str):
        origin = declared.strip().lower()
        if origin == MEASURED:
            return MEASURED
        if origin == SIMULATED:
            return SIMULATED
    raise DataOriginError(
        f"{describe_run(uid)} has data_origin {declared!r}; it must be 'measured' or "
        "'simulated' (or be left out for a measurement)"
    )


def data_origin_of(start: Mapping[str, Any]) -> Origin:
    """``"measured"`` or ``"simulated"``: where the run of this start document belongs.

    A run is simulated when its ``data_origin`` says so (in any case, spaces around ignored),
    or, without ``data_origin``, when its ``tiled_specs`` name ``SimulatedRun``; every other
    run is measured.

    Raises
    ------
    DataOriginError
        ``data_origin`` is neither value, or it says "measured" while the specs say simulated.
    """
    uid = start.get("uid")
    declared = start.get("data_origin")
    simulated_spec = SIMULATED_SPEC in spec_names(start.get("tiled_specs"))
    if declared is None:
        return SIMULATED if simulated_spec else MEASURED
    origin = normal_origin(declared, uid)
    if origin == MEASURED and simulated_spec:
        raise DataOriginError(
            f"{describe_run(uid)} says data_origin {declared!r} but its tiled_specs name "
            f"{SIMULATED_SPEC!r}; a run is either measured or simulated: drop one of them"
        )
    return origin


@dataclass(frozen=True)
class SlowAxis:
    """Where a guided plan's line lies: the slow axis' device, the twin's name of it, its value."""

    name: str
    feature: str
    value: float

    def to_doc(self) -> dict[str, Any]:
        """As the start document's ``slow_axis``."""
        return {"name": self.name, "feature": self.feature, "value": self.value}

    @classmethod
    def from_start(cls, start: Mapping[str, Any]) -> SlowAxis | None:
        """The line's slow axis, or ``None`` if the start document has none (or a broken one)."""
        record = start.get(SLOW_AXIS)
        if not isinstance(record, Mapping):
            return None
        try:
            return cls(str(record["name"]), str(record["feature"]), float(record["value"]))
        except (KeyError, TypeError, ValueError):
            return None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class RecordedDecision:
    """What a line's start document says the twin decided.

    Attributes
    ----------
    axis
        The twin's name of the slow axis.
    step, step_units
        twin_guided_scan: the suggested step (``None`` if none converged) and its units.
    value, score, criterion, score_units
        adaptive_line_scan: the line the twin chose, its score by ``criterion``, in
        ``score_units`` (the target's).
    message
        twin_guided_scan: the suggestion's message, when recorded.
    decision_run
        The uid of the simulated run that records the decision as data, if any.
    """

    axis: str
    step: float | None = None
    step_units: str = ""
    value: float | None = None
    score: float | None = None
    criterion: str = "score"
    score_units: str = ""
    message: str | None = None
    decision_run: str | None = None

    @classmethod
    def from_start(cls, start: Mapping[str, Any]) -> RecordedDecision | None:
        """The decision recorded in ``start``, or ``None`` if it records none."""
        run = start.get(DECISION_RUN)
        step = start.get(SUGGESTED_STEP)
        if isinstance(step, Mapping) and step.get("axis") is not None:
            guided = start.get(GUIDED_BY)
            message = guided.get("message") if isinstance(guided, Mapping) else None
            return cls(
                axis=str(step["axis"]),
                step=_number(step.get("value")),
                step_units=str(step.get("units") or ""),
                message=None if message is None else str(message),
                decision_run=None if run is None else str(run),
            )
        decision = start.get(DECISION)
        slow_axis = SlowAxis.from_start(start)
        if isinstance(decision, Mapping) and slow_axis is not None:
            value = _number(decision.get("value"))
            if value is None:
                return None
            run = decision.get(DECISION_RUN, run)
            return cls(
                axis=slow_axis.feature,
                value=value,
                score=_number(decision.get("score")),
                criterion=str(decision.get("criterion") or "score"),
                score_units=str(decision.get("units") or ""),
                decision_run=None if run is None else str(run),
            )
        return None
