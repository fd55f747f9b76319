"""What a bluesky-queueserver client can ask of the twin: JSON in, JSON out.

Behind RE Manager every parameter is JSON and every object is named by string. The
twin-guided plans (:func:`~bluesky_digitwin.plans.twin_guided_scan`,
:func:`~bluesky_digitwin.plans.adaptive_line_scan`) take ``twin_source`` as the name the
startup code registered its TwinCallback under. This module adds the two things a queue needs
beyond them:

- :func:`simulate_twin_grid`, a plan: the twin's simulation of a grid given as JSON (one list
  of values per feature), written as a simulated run (``SimulatedRun``), never among the
  measured ones.
- :func:`twin_suggestion`, a function for RE Manager's ``function_execute``: the step the
  twin suggests now, with its candidate table, as JSON, without measuring anything.
- :func:`pending_decision` and :func:`answer_decision`, functions to execute in the background
  (``function_execute(..., run_in_background=True)``) while a plan run with ``confirm=True``
  waits: what it proposes, and the answer (accept, edit, decline).

``bluesky_digitwin.queue_startup`` is a startup module that uses them.
"""

# No `from __future__ import annotations`: bluesky-queueserver describes a plan's parameters
# from its annotations as objects (Readable, Movable, float | None); as strings it cannot.

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from bluesky.utils import MsgGenerator, plan

from bluesky_digitwin.analysis.steps import suggest_step
from bluesky_digitwin.data import DigitwinInputError, make_grid
from bluesky_digitwin.plans import (
    TwinSource,
    approvals,
    resolve_twin_source,
    simulate_scan,
    twin_provenance,
)

__all__ = ["answer_decision", "pending_decision", "simulate_twin_grid", "twin_suggestion"]


def _current_twin(twin_source: TwinSource | str) -> Any:
    source = resolve_twin_source(twin_source)
    twin = source.twin
    if twin is None:
        raise DigitwinInputError(
            f"the twin source has no twin yet ({source.status.message}); measure at least two "
            "lines and wait for its training"
        )
    return twin


@plan
def simulate_twin_grid(
    twin_source: TwinSource | str,
    axes: Mapping[str, Sequence[float]],
    *,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Simulate a grid measurement with the twin source's newest twin (a simulated run).

    Parameters
    ----------
    twin_source
        A TwinCallback or the name it was registered under.
    axes
        One list of values per feature of the twin, outermost first, e.g.
        ``{"H": [10000, 20000], "T": [10, 12.5, 15]}`` sweeps T at each H (as
        :func:`~bluesky_digitwin.data.make_grid`).
    md
        Metadata of the start document; ``data_origin`` stays ``"simulated"``.

    Returns
    -------
    str
        The simulated run's uid.
    """
    twin = _current_twin(twin_source)
    if not isinstance(axes, Mapping) or set(axes) != set(twin.features):
        given = sorted(axes) if isinstance(axes, Mapping) else axes
        raise DigitwinInputError(
            f"axes must give one list of values per feature of the twin, "
            f"{sorted(twin.features)}; got {given!r}"
        )
    grid = make_grid(**{name: list(values) for name, values in axes.items()})
    return (yield from simulate_scan(twin, grid, md=md))


def twin_suggestion(
    twin_source: TwinSource | str = "twin",
    axis: str = "H",
    candidates: Sequence[float] | None = None,
    quantity: str = "map",
    **suggest_kwargs: Any,
) -> dict[str, Any]:
    """The step along ``axis`` that the twin source's newest twin suggests, as JSON.

    For a client of the queue server (``function_execute``): nothing is measured or written.

    Parameters
    ----------
    twin_source
        The registered name of a TwinCallback (default ``"twin"``), or the callback.
    axis, candidates, quantity, suggest_kwargs
        As for :func:`~bluesky_digitwin.analysis.steps.suggest_step` (``quantity`` by name:
        ``"map"`` or ``"magnetocaloric"``, which needs ``mass``).

    Returns
    -------
    dict
        ``twin`` (what a simulated run records of it,
        :func:`~bluesky_digitwin.plans.twin_provenance`: its id, the runs it learned from,
        ...), ``suggestion`` (the step, its candidate table, the message) and ``warnings``
        (what the computation warned about).
    """
    twin = _current_twin(twin_source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        suggestion = suggest_step(twin, axis, candidates, quantity=quantity, **suggest_kwargs)
    return {
        "twin": twin_provenance(twin),
        "suggestion": suggestion.to_dict(),
        "warnings": sorted({str(w.message) for w in caught}),
    }


def pending_decision() -> dict[str, Any] | None:
    """What a plan run with ``confirm=True`` proposes and waits for, as JSON; ``None`` if none.

    For a queue client, executed in the background while the plan runs
    (``function_execute(BFunc("pending_decision"), run_in_background=True)``).

    Returns
    -------
    dict or None
        ``id``, ``plan_name``, ``slow_feature``, ``values`` (what it would measure),
        ``message`` (why), ``decision_run`` (the simulated run that records the decision),
        ``max_values`` and ``bounds`` (what an edit may give).
    """
    proposal = approvals.pending
    return None if proposal is None else proposal.to_json()


def answer_decision(
    action: str,
    values: Sequence[float] | None = None,
    proposal_id: str | None = None,
) -> dict[str, Any]:
    """Answer what a plan run with ``confirm=True`` waits for, from a queue client.

    Executed in the background while the plan runs (``function_execute(BFunc(
    "answer_decision", "edit", [0.5, 1.5]), run_in_background=True)``).

    Parameters
    ----------
    action
        ``"accept"``, ``"edit"`` or ``"decline"``.
    values
        With ``"edit"``: the slow-axis values to measure instead.
    proposal_id
        The ``id`` from :func:`pending_decision`: the answer is taken only if that proposal
        still waits.

    Returns
    -------
    dict
        The answer as the plan records it: ``action``, ``values``, ``by`` (``"queue"``).

    Raises
    ------
    ApprovalError
        Nothing waits, another proposal waits, or the answer is malformed.
    """
    return approvals.answer(action, values, proposal_id=proposal_id, by="queue").to_json()
