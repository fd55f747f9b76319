"""Measurements guided by a live digital twin: the paper's workflow in one plan, and adaptive lines.

Both plans measure lines: a sweep of a fast axis (e.g. the temperature) at one value of a slow
axis (e.g. the field), each line its own run made by ``bluesky.plans.scan``, with a checkpoint
between lines. A :class:`~plans.stubs.TwinSource` (a ``TwinCallback`` subscribed to the same
RunEngine) learns the lines as they arrive; the plans wait for it with ``bps.sleep``, never
blocking the RunEngine, then ask the twin where to measure next.

- :func:`twin_guided_scan`: measure coarse lines, learn, let :func:`suggest_step` pick the
  coarsest step of the slow axis at which the derived quantity has converged, and measure the
  lines at that step (Terashima et al., Digital Discovery 2 (2023) 339, Fig. 1).
- :func:`adaptive_line_scan`: after each line, measure next where the twin's networks disagree
  most (or where the quantity bends most between measured lines), until a budget of lines or a
  tolerance is reached.

Every line's start document says ``data_origin: "measured"``, its ``phase`` and the slow axis'
value, and records the plan's decision (the suggested step and its table, or the chosen value and
its score), so the run alone tells why it was measured. Each decision is also data: a simulated
run (``phase: "decision"``) of the twin's lines at that moment, whose ``decision`` stream holds
one event per candidate, linked from the lines by ``decision_run``; it lands among the
simulated runs, and no twin learns from it.
"""

# No `from __future__ import annotations`: bluesky-queueserver describes a plan's parameters
# from its annotations as objects (Readable, Movable, float | None); as strings it cannot.

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
from bluesky.protocols import Movable, Readable
from bluesky.utils import MsgGenerator, plan

from bluesky_digitwin.analysis.steps import StepSuggestion, suggest_step
from bluesky_digitwin.data import make_grid
from bluesky_digitwin.json_values import jsonable
from bluesky_digitwin.protocols import EnsembleTwin, Twin
from bluesky_digitwin.run_documents import LINE, MEASURED, PHASE, SLOW_AXIS, Phase, SlowAxis

from .approval import Answer, Proposal, wait_for_approval
from .simulate import simulate_scan
from .sources import resolve_twin_source
from .stubs import TwinSource, call_in_thread, check_origin, wait_for_twin

__all__ = [
    "CRITERIA",
    "AdaptiveResult",
    "adaptive_line_scan",
    "score_lines",
    "suggested_lines",
    "twin_guided_scan",
]

#: How :func:`adaptive_line_scan` scores a candidate line.
CRITERIA = ("disagreement", "sensitivity")


# -- helpers -------------------------------------------------------------------------------------


def _slow_values(values: Any, what: str) -> list[float]:
    """Finite, distinct values of the slow axis, in the order given; at least two."""
    try:
        array = np.atleast_1d(np.asarray(values, dtype=float))
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numbers, got {values!r}") from None
    if array.ndim != 1 or not np.isfinite(array).all():
        raise ValueError(f"{what} must be a 1-D sequence of finite numbers, got {values!r}")
    if np.unique(array).size < 2:
        # One line gives the twin no variation along the slow axis to learn.
        raise ValueError(f"{what} needs at least two different values, got {values!r}")
    if np.unique(array).size != array.size:
        raise ValueError(f"{what} repeats a value: {values!r}")
    return [float(v) for v in array]


def _check_devices(detectors: Any, **axes: Any) -> None:
    """Devices where devices belong: a name a queue could not resolve arrives as a string."""

    def refuse(what: str, value: Any, kind: str) -> None:
        hint = (
            " (a name that is no device here: on a queue, RE Manager passes a name it does not "
            "know on as a string)"
            if isinstance(value, str)
            else ""
        )
        raise TypeError(f"{what} must be {kind}, got {value!r}{hint}")

    if isinstance(detectors, (str, bytes)) or not isinstance(detectors, Sequence):
        refuse("detectors", detectors, "a list of readable devices")
    for index, detector in enumerate(detectors):
        if not isinstance(detector, Readable):
            refuse(f"detectors[{index}]", detector, "a readable device")
    for what, axis in axes.items():
        if not isinstance(axis, Movable):
            refuse(what, axis, "a movable device")


def _check_features(twin_source: TwinSource, slow_feature: str) -> tuple[str, ...]:
    features = tuple(twin_source.buffer.features)
    if slow_feature not in features:
        raise ValueError(
            f"slow_feature {slow_feature!r} is not a feature of the twin's buffer "
            f"({', '.join(features)}); give slow_feature= the buffer's name of the slow axis"
        )
    return features


def _grown(twin_source: TwinSource, before: int) -> int:
    """The buffer's version after new lines; an error if they brought it no points."""
    version = int(twin_source.buffer.version)
    if version == before:
        buffer = twin_source.buffer
        raise RuntimeError(
            "the twin's buffer took no points from the lines just measured, so no twin can learn "
            f"them: its features {tuple(buffer.features)} and target {buffer.target!r} must be "
            f"data keys of the detectors (ScanBuffer keys={getattr(buffer, 'keys', {})!r})"
        )
    return version


def _near(value: float, others: Sequence[float], tolerance: float) -> bool:
    return any(abs(value - other) <= tolerance for other in others)


@plan
def _measure_line(
    detectors: Sequence[Readable],
    fast_axis: Movable,
    fast_start: float,
    fast_stop: float,
    fast_num: int,
    slow_axis: Movable,
    value: float,
    md: dict[str, Any],
) -> MsgGenerator[str]:
    """Move the slow axis, checkpoint, and scan the fast axis as one run; returns its uid."""
    yield from bps.mv(slow_axis, value)
    yield from bps.checkpoint()
    # The slow axis is read at every point too, so the events carry its value and units for
    # the twin's buffer (bluesky reads it once if a detector already contains it).
    if not any(d is slow_axis for d in detectors):
        detectors = [*detectors, slow_axis]
    return (yield from bp.scan(list(detectors), fast_axis, fast_start, fast_stop, fast_num, md=md))


def _line_md(
    plan_md: Mapping[str, Any],
    user_md: Mapping[str, Any],
    *,
    phase: Phase,
    index: int,
    slow_axis: Movable,
    slow_feature: str,
    value: float,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The start document metadata of one line: the plan's, the line's, then the user's."""
    return {
        **plan_md,
        PHASE: phase,
        LINE: index,
        SLOW_AXIS: SlowAxis(slow_axis.name, slow_feature, value).to_doc(),
        **(extra or {}),
        **user_md,
        "data_origin": MEASURED,
    }


def _decision_run(
    twin: Any,
    slow_feature: str,
    slow_values: Sequence[float],
    fast_values: Sequence[float],
    table: Mapping[str, Sequence[float]],
    user_md: Mapping[str, Any],
    *,
    decided_by: str,
    decision: Mapping[str, Any],
) -> MsgGenerator[str | None]:
    """Write a decision as data: a simulated run of the twin's lines at decision time, whose
    ``decision`` stream holds the table it decided by (one event per candidate).

    Returns the run's uid, or ``None`` for a twin of other than two features (no lines to
    simulate: the decision stays in the measured lines' metadata only).
    """
    features = [str(f) for f in twin.features]
    if len(features) != 2 or slow_feature not in features:
        return None
    fast_feature = features[1 - features.index(slow_feature)]
    grid = make_grid(
        **{
            slow_feature: [float(v) for v in slow_values],
            fast_feature: [float(v) for v in fast_values],
        }
    )
    md = {
        **{k: v for k, v in user_md.items() if k not in ("data_origin", "tiled_specs")},
        "phase": "decision",
        "decided_by": decided_by,
        "decision": jsonable(dict(decision)),
    }
    return (yield from simulate_scan(twin, grid, md=md, tables={"decision": table}))


# -- the paper's workflow ------------------------------------------------------------------------


def suggested_lines(
    twin: Twin, suggestion: StepSuggestion, axis_units: str | None = None
) -> np.ndarray:
    """The slow-axis values a measurement at the suggested step covers, in the axis' units.

    As :func:`suggest_step` simulated them: from the bottom of the learned range in steps of
    the suggestion, ending on its top (the last step shorter if need be).

    Parameters
    ----------
    twin
        The twin the suggestion was made with.
    suggestion
        A suggestion with a step (``suggestion.step`` not ``None``).
    axis_units
        Units of the axis if the twin records none (as given to :func:`suggest_step`).
    """
    # The same unit conversion and line placement as the suggestion itself used.
    from bluesky_digitwin.analysis.step_grids import axis_conversion, axis_grid

    if suggestion.step is None:
        raise ValueError(f"the suggestion has no step: {suggestion.message}")
    units = axis_units or twin.units.get(suggestion.axis) or None
    to_axis = axis_conversion(suggestion.units or None, units, suggestion.axis)
    lo, hi = twin.ranges[suggestion.axis]
    return axis_grid(lo, hi, suggestion.step * to_axis)


@plan
def twin_guided_scan(
    detectors: Sequence[Readable],
    fast_axis: Movable,
    fast_start: float,
    fast_stop: float,
    fast_num: int,
    slow_axis: Movable,
    coarse_values: Sequence[float],
    *,
    twin_source: TwinSource | str,
    slow_feature: str | None = None,
    quantity: Any = "magnetocaloric",
    candidates: Sequence[float] | None = None,
    suggest_kwargs: Mapping[str, Any] | None = None,
    confirm: bool = False,
    timeout: float | None = 600.0,
    poll: float = 0.5,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[StepSuggestion]:
    """Measure coarse lines, learn them, and measure the lines at the step the twin suggests.

    1. For each coarse value of the slow axis: move there, checkpoint, and scan the fast axis
       (one run per line, ``phase: "coarse"``).
    2. Wait (``bps.sleep``) until ``twin_source`` has a twin trained on all of them.
    3. :func:`~bluesky_digitwin.analysis.steps.suggest_step` simulates the measurement at each
       candidate step of the slow axis and picks the coarsest at which ``quantity`` has
       converged. It runs in a thread (it predicts on many grids: 0.1 s to seconds) while the
       RunEngine keeps serving pause and abort.
    4. Measure the lines at that step over the learned range, skipping values already measured
       (``phase: "suggested"``); their start documents record ``suggested_step``,
       ``step_table`` (one row per candidate), ``guided_by`` (the twin and the message) and
       ``decision_run``: the simulated run, written before them, of the twin's lines at that
       step with the candidate table as its ``decision`` stream.
    5. With ``confirm=True``, before step 4: show the lines it would measure and wait (without
       blocking pause or abort) until someone accepts, edits or declines them
       (:mod:`~plans.approval`); the answer is recorded as ``approval`` with the lines.

    Parameters
    ----------
    detectors
        What to read at every point, e.g. ``[mag]`` or ``[mag.moment]``. The slow axis is
        read too.
    fast_axis, fast_start, fast_stop, fast_num
        The sweep of each line, as in ``scan(detectors, fast_axis, start, stop, num)``.
    slow_axis
        The stepped axis, e.g. ``mag.field``.
    coarse_values
        The preliminary lines: at least two different values of the slow axis.
    twin_source
        Where the twin comes from: a ``TwinCallback`` subscribed to the same RunEngine, whose
        buffer turns these runs into points, or the name it was registered under
        (:func:`~bluesky_digitwin.plans.register_twin_source`; how a queue names it).
    slow_feature
        The twin's name of the slow axis, e.g. ``"H"`` (default: ``slow_axis.name``).
    quantity
        What must converge: ``"magnetocaloric"`` (needs ``mass`` in ``suggest_kwargs`` for a
        moment in emu), ``"map"``, or a function; see :func:`suggest_step`.
    candidates
        Candidate steps (default: :func:`suggest_step`'s).
    suggest_kwargs
        More arguments of :func:`suggest_step`, e.g. ``{"mass": 0.61, "mass_units": "mg",
        "tol": 0.025, "time_model": TimeModel(...)}``.
    confirm
        Wait for a person to accept, edit or decline the suggested lines before measuring
        them (see :func:`~plans.approval.wait_for_approval`; declined: none is measured).
    timeout, poll
        How long to wait for the twin at most (s; ``None``: for ever) and how often to look.
    md
        Metadata for every line's start document; ``data_origin`` cannot be changed.

    Returns
    -------
    StepSuggestion
        The suggestion (returned by ``yield from``; ``RE(...).plan_result`` with
        ``RunEngine(call_returns_result=True)``). If no candidate converged, no suggested line
        is measured and a warning says why.

    Raises
    ------
    TimeoutError, RuntimeError
        From :func:`~plans.stubs.wait_for_twin`: no twin in time, or its training failed.
    """
    _check_devices(detectors, fast_axis=fast_axis, slow_axis=slow_axis)
    twin_source = resolve_twin_source(twin_source)
    user_md = check_origin(md, "measured")
    coarse = _slow_values(coarse_values, "coarse_values")
    slow_feature = slow_feature or slow_axis.name
    _check_features(twin_source, slow_feature)
    suggest_kwargs = dict(suggest_kwargs or {})
    clash = {"twin", "axis", "candidates", "quantity"} & set(suggest_kwargs)
    if clash:
        raise ValueError(
            f"give {', '.join(sorted(clash))} as arguments of the plan, not in suggest_kwargs"
        )
    plan_md = {
        "plan_name": "twin_guided_scan",
        "plan_args": jsonable(
            {
                "detectors": list(map(repr, detectors)),
                "fast_axis": repr(fast_axis),
                "fast_start": fast_start,
                "fast_stop": fast_stop,
                "fast_num": fast_num,
                "slow_axis": repr(slow_axis),
                "coarse_values": coarse,
                "slow_feature": slow_feature,
                "quantity": quantity if isinstance(quantity, str) else repr(quantity),
                "candidates": candidates,
                "suggest_kwargs": suggest_kwargs,
                "confirm": confirm,
                "timeout": timeout,
            }
        ),
    }
    line_md = partial(_line_md, plan_md, user_md, slow_axis=slow_axis, slow_feature=slow_feature)
    measure = partial(_measure_line, detectors, fast_axis, fast_start, fast_stop, fast_num)

    before = twin_source.buffer.version
    for index, value in enumerate(coarse):
        md_ = line_md(phase="coarse", index=index, value=value)
        yield from measure(slow_axis, value, md_)
    version = _grown(twin_source, before)
    twin = yield from wait_for_twin(twin_source, version, timeout=timeout, poll=poll)

    suggestion = yield from call_in_thread(
        partial(suggest_step, twin, slow_feature, candidates, quantity=quantity, **suggest_kwargs)
    )
    record = suggestion.to_dict()
    decision = {
        "suggested_step": suggestion.as_json_step(),
        "guided_by": jsonable(
            {
                "twin_id": twin.id,
                "twin_version": version,
                "learned_from": twin.metadata.get("provenance", {}).get("run_uids", []),
                "quantity": record["quantity"],
                "description": record["description"],
                "tol": record["tol"],
                "message": record["message"],
            }
        ),
    }
    if suggestion.step is not None:
        positions = suggested_lines(twin, suggestion, suggest_kwargs.get("axis_units"))
    else:
        positions = np.asarray(coarse, dtype=float)
    # The twin's lines at the suggested step (the coarse ones if none converged), and the
    # candidate table, as data: why these lines, for anyone browsing Tiled.
    columns = ("step", "n_lines", "error", "max_error", "spread", "time_s")
    decision_run = yield from _decision_run(
        twin,
        slow_feature,
        positions,
        np.linspace(fast_start, fast_stop, fast_num),
        {column: suggestion.table[column].to_numpy() for column in columns},
        user_md,
        decided_by="twin_guided_scan",
        decision=decision,
    )
    if suggestion.step is None:
        warnings.warn(
            f"twin_guided_scan measured no suggested lines: {suggestion.message}",
            UserWarning,
            stacklevel=2,
        )
        return suggestion

    # A coarse line within a thousandth of the step of a suggested one is that line already
    # (the largest spacing is the step: only the last one can be shorter).
    step = float(np.max(np.diff(positions)))
    todo = [float(p) for p in positions if not _near(p, coarse, 1e-3 * step)]
    extra = {**decision, "step_table": record["table"], "decision_run": decision_run}
    if confirm and todo:
        proposal = Proposal(
            plan_name="twin_guided_scan",
            slow_feature=slow_feature,
            values=tuple(todo),
            message=f"suggested step {suggestion.as_json_step()}: {suggestion.message}",
            decision_run=decision_run,
        )
        answer: Answer = yield from wait_for_approval(proposal, poll=poll)
        extra["approval"] = answer.to_json()
        if answer.action == "decline":
            warnings.warn(
                "twin_guided_scan measured no suggested lines: the suggestion was declined",
                UserWarning,
                stacklevel=2,
            )
            return suggestion
        todo = list(answer.values)
    for offset, value in enumerate(todo):
        md_ = line_md(phase="suggested", index=len(coarse) + offset, value=value, extra=extra)
        yield from measure(slow_axis, value, md_)
    return suggestion


# -- adaptive lines ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdaptiveResult:
    """What :func:`adaptive_line_scan` did.

    Attributes
    ----------
    values
        The slow-axis values measured, in order (the initial ones first).
    decisions
        One per line the twin chose: ``value``, ``score``, ``criterion``, ``units``, ``twin_id``,
        ``twin_version``, ``candidates`` (how many were allowed), ``decision_run`` (the uid of the
        simulated run that records the look at the twin, every candidate's score in its
        ``decision`` stream), ``approval`` (with ``confirm=True``: the answer, its action, values
        and origin; the line is measured at its value), as in the line's ``decision`` metadata.
    reason
        Why it stopped: ``"budget"`` (that many lines measured), ``"tol"`` (the best score fell
        below ``tol``), ``"exhausted"`` (every candidate lies too close to a measured line) or
        ``"declined"`` (with ``confirm=True``, a person declined the next line).
    run_uids
        The runs, one per line, in order.
    final_score
        The best score of the last look at the twin (``None`` if the budget was spent before).
    """

    values: tuple[float, ...]
    decisions: tuple[dict[str, Any], ...]
    reason: str
    run_uids: tuple[str, ...]
    final_score: float | None = None


def score_lines(
    twin: EnsembleTwin,
    slow_feature: str,
    candidates: Sequence[float] | np.ndarray,
    fast_values: Sequence[float] | np.ndarray,
    *,
    criterion: str = "disagreement",
    measured: Sequence[float] = (),
) -> np.ndarray:
    """How much the twin would learn from a line at each candidate value of the slow axis.

    Parameters
    ----------
    twin
        A two-feature :class:`~bluesky_digitwin.twin.DigitalTwin` (any object with
        ``features`` and ``predict_members``).
    slow_feature
        The stepped feature; the other feature is swept over ``fast_values``.
    candidates
        Values of the slow axis to score.
    fast_values
        The points of a line along the other feature.
    criterion
        ``"disagreement"``: the spread (standard deviation) of the twin's networks, averaged
        over the line; the twin is least sure there. Needs two networks or more.
        ``"sensitivity"``: how far the twin's line departs from the straight interpolation
        between the nearest measured lines on either side (the nearest one outside them),
        averaged over the line; the quantity bends most there, where linear interpolation
        between measured lines misses most.
    measured
        The values already measured (for ``"sensitivity"``).

    Returns
    -------
    numpy.ndarray
        One score per candidate, in the target's units.
    """
    features = tuple(twin.features)
    others = [f for f in features if f != slow_feature]
    if slow_feature not in features or len(others) != 1:
        raise ValueError(
            f"scoring lines needs a twin of two features, one of them {slow_feature!r}; "
            f"this one has {', '.join(features)}"
        )
    (fast_feature,) = others
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {CRITERIA}")
    fast_values = np.asarray(fast_values, dtype=float)

    def members(values: Any) -> Any:
        grid = make_grid(**{slow_feature: values, fast_feature: fast_values})
        # Candidates beyond the measured lines extrapolate by design: no warning wanted.
        return twin.predict_members(grid, warn=False).transpose("member", slow_feature, ...)

    simulated = members(candidates)
    if criterion == "disagreement":
        if simulated.sizes["member"] < 2:
            raise ValueError(
                "the twin has one network, so its networks cannot disagree; use "
                "criterion='sensitivity' or a twin with ensemble_size >= 2"
            )
        return simulated.std("member", ddof=1).mean(fast_feature).values
    lines = np.unique(np.asarray(measured, dtype=float))
    if lines.size == 0:
        raise ValueError("criterion='sensitivity' needs the measured values")
    mean = simulated.mean("member").values  # (candidate, fast)
    at_lines = members(lines).mean("member").values  # (line, fast)
    # np.interp holds the end values beyond the outermost lines: the nearest line there.
    straight = np.column_stack(
        [
            np.interp(simulated[slow_feature].values, lines, at_lines[:, j])
            for j in range(fast_values.size)
        ]
    )
    return np.abs(mean - straight).mean(axis=1)


@plan
def adaptive_line_scan(
    detectors: Sequence[Readable],
    fast_axis: Movable,
    fast_start: float,
    fast_stop: float,
    fast_num: int,
    slow_axis: Movable,
    bounds: tuple[float, float],
    *,
    twin_source: TwinSource | str,
    initial: Sequence[float] | None = None,
    budget: int = 10,
    tol: float | None = None,
    slow_feature: str | None = None,
    candidates: int | Sequence[float] = 201,
    min_spacing: float | None = None,
    criterion: str = "disagreement",
    confirm: bool = False,
    timeout: float | None = 600.0,
    poll: float = 0.5,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[AdaptiveResult]:
    """Measure lines where the twin knows least, one after the other, until budget or tol.

    Measure the ``initial`` lines; then, until ``budget`` lines are measured: wait for a twin
    trained on every line so far, score the candidate values of the slow axis
    (:func:`score_lines`), and measure the line at the best one that is at least
    ``min_spacing`` away from every measured line. Stop early when the best score is below
    ``tol`` (the twin knows the map well enough) or no candidate is left. With
    ``confirm=True`` each chosen line waits for a person to accept, edit (another value within
    bounds) or decline it (the plan then stops); the answer is recorded as the decision's
    ``approval``.

    Parameters
    ----------
    detectors, fast_axis, fast_start, fast_stop, fast_num, slow_axis
        The lines, as in :func:`twin_guided_scan`.
    bounds
        (low, high) of the slow axis: every line lies within.
    twin_source
        Where the twin comes from (a ``TwinCallback`` subscribed to the same RunEngine, or
        the name it was registered under).
    initial
        The first lines, within bounds, at least two different values (default: the bounds and
        their middle).
    budget
        Lines to measure in all, the initial ones included.
    tol
        Stop when the best score is below this, in the target's units (``None``: spend the
        budget).
    slow_feature
        The twin's name of the slow axis (default: ``slow_axis.name``); the twin's other
        feature is the fast axis.
    candidates
        How many evenly spaced candidate values within bounds, or the values themselves.
    min_spacing
        No line closer than this to a measured one (default: half the spacing of ``budget``
        evenly spaced lines, so lines can crowd twice as densely as a uniform grid where the
        twin needs them).
    criterion
        ``"disagreement"`` (default; needs a twin of two or more networks) or
        ``"sensitivity"``; see :func:`score_lines`.
    confirm
        Wait for a person's answer before each line the twin chooses (see
        :func:`~plans.approval.wait_for_approval`).
    timeout, poll
        How long to wait for each twin at most (s) and how often to look.
    md
        Metadata for every line's start document; ``data_origin`` cannot be changed.

    Returns
    -------
    AdaptiveResult
        The values measured, the decisions, and why it stopped (returned by ``yield from``).
    """
    _check_devices(detectors, fast_axis=fast_axis, slow_axis=slow_axis)
    twin_source = resolve_twin_source(twin_source)
    user_md = check_origin(md, "measured")
    slow_feature = slow_feature or slow_axis.name
    features = _check_features(twin_source, slow_feature)
    if len(features) != 2:
        raise ValueError(f"adaptive lines need a twin of two features; its buffer has {features}")
    lo, hi = (float(b) for b in bounds)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
    initial = _slow_values(np.linspace(lo, hi, 3) if initial is None else initial, "initial")
    if not all(lo <= v <= hi for v in initial):
        raise ValueError(f"initial values {initial} must lie within bounds {lo:g}..{hi:g}")
    if not (isinstance(budget, (int, np.integer)) and budget >= len(initial)):
        raise ValueError(
            f"budget must be a whole number of lines >= the {len(initial)} initial ones, "
            f"got {budget!r}"
        )
    if tol is not None and not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a number > 0 or None, got {tol!r}")
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {CRITERIA}")
    if isinstance(candidates, (int, np.integer)):
        if candidates < 2:
            raise ValueError(f"candidates must be at least 2, got {candidates}")
        values = np.linspace(lo, hi, int(candidates))
    else:
        values = np.unique(np.asarray(candidates, dtype=float))
        if values.size == 0 or not ((values >= lo) & (values <= hi)).all():
            raise ValueError(f"candidates must be values within bounds {lo:g}..{hi:g}")
    if min_spacing is None:
        min_spacing = (hi - lo) / (2 * max(budget - 1, 1))
    fast_values = np.linspace(fast_start, fast_stop, fast_num)
    plan_md = {
        "plan_name": "adaptive_line_scan",
        "plan_args": jsonable(
            {
                "detectors": list(map(repr, detectors)),
                "fast_axis": repr(fast_axis),
                "fast_start": fast_start,
                "fast_stop": fast_stop,
                "fast_num": fast_num,
                "slow_axis": repr(slow_axis),
                "bounds": [lo, hi],
                "initial": initial,
                "budget": budget,
                "tol": tol,
                "slow_feature": slow_feature,
                "candidates": candidates,
                "min_spacing": min_spacing,
                "criterion": criterion,
                "confirm": confirm,
                "timeout": timeout,
            }
        ),
    }
    line_md = partial(_line_md, plan_md, user_md, slow_axis=slow_axis, slow_feature=slow_feature)
    measure = partial(_measure_line, detectors, fast_axis, fast_start, fast_stop, fast_num)

    measured: list[float] = []
    uids: list[str] = []
    decisions: list[dict[str, Any]] = []
    before = twin_source.buffer.version
    for index, value in enumerate(initial):
        md_ = line_md(phase="initial", index=index, value=value)
        uid = yield from measure(slow_axis, value, md_)
        measured.append(value)
        uids.append(uid)

    reason, final_score = "budget", None
    while len(measured) < budget:
        version = _grown(twin_source, before)
        twin = yield from wait_for_twin(twin_source, version, timeout=timeout, poll=poll)
        scores = yield from call_in_thread(
            partial(
                score_lines,
                twin,
                slow_feature,
                values,
                fast_values,
                criterion=criterion,
                measured=list(measured),
            )
        )
        allowed = np.array([not _near(v, measured, min_spacing * (1 - 1e-9)) for v in values])
        if not allowed.any():
            reason = "exhausted"
            break
        ranked = np.where(np.isfinite(scores), scores, -np.inf)
        best = int(np.flatnonzero(allowed)[np.argmax(ranked[allowed])])
        final_score = float(ranked[best])
        decision = {
            "value": float(values[best]),
            "score": final_score,
            "criterion": criterion,
            "units": twin.units.get(twin.target, ""),
            "twin_id": twin.id,
            "twin_version": version,
            "candidates": int(allowed.sum()),
        }
        stop = tol is not None and final_score < tol
        # Every look at the twin as data: its line at the best candidate, and every
        # candidate's score (NaN where none), whether the plan measures there or stops.
        decision["decision_run"] = yield from _decision_run(
            twin,
            slow_feature,
            [decision["value"]],
            fast_values,
            {"candidate": values, "score": scores, "allowed": allowed.astype(float)},
            user_md,
            decided_by="adaptive_line_scan",
            decision={**decision, "action": "stop: below tol" if stop else "measure"},
        )
        if stop:
            reason = "tol"
            break
        value = decision["value"]
        if confirm:
            proposal = Proposal(
                plan_name="adaptive_line_scan",
                slow_feature=slow_feature,
                values=(value,),
                message=f"the best {criterion} score, {final_score:.4g} {decision['units']}",
                decision_run=decision["decision_run"],
                max_values=1,
                bounds=(lo, hi),
            )
            answer: Answer = yield from wait_for_approval(proposal, poll=poll)
            decision["approval"] = answer.to_json()
            if answer.action == "decline":
                reason = "declined"
                decisions.append(decision)
                break
            (value,) = answer.values
        before = twin_source.buffer.version
        md_ = line_md(
            phase="adaptive",
            index=len(measured),
            value=value,
            extra={"decision": decision},
        )
        uid = yield from measure(slow_axis, value, md_)
        measured.append(value)
        uids.append(uid)
        decisions.append(decision)
    return AdaptiveResult(
        values=tuple(measured),
        decisions=tuple(decisions),
        reason=reason,
        run_uids=tuple(uids),
        final_score=final_score,
    )
