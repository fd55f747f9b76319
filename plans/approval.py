"""A person approves the twin's decision before a plan acts on it (``confirm=True``).

The twin-guided plans decide where to measure next. With ``confirm=True`` they first show the
proposal (the values of the slow axis they would measure, and why) and wait, yielding
``bps.sleep`` so that pause, resume and abort keep working, until someone answers:

- **accept**: measure what was proposed;
- **edit**: measure other values instead (the answer gives them);
- **decline**: measure none of it (the plan ends or stops adapting).

Answers come from wherever the user is:

- the terminal the RunEngine runs in: while a plan waits, type ``y``, ``n`` or new values and
  Enter (read without blocking the RunEngine, only while the plan waits, so nothing is taken
  from IPython's own prompt after a pause);
- Python, in another thread or while the plan is paused: ``approvals.accept()``,
  ``approvals.edit([...])``, ``approvals.decline()``;
- a bluesky-queueserver client: :func:`bluesky_digitwin.queue.pending_decision` and
  :func:`bluesky_digitwin.queue.answer_decision`, executed by RE Manager in the background
  while the plan runs.

The answer is recorded with the decision (``approval`` in the measured lines' start
documents and in ``AdaptiveResult.decisions``), so an audit sees who changed what.
"""

from __future__ import annotations

import math
import os
import re
import select
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator, plan

from bluesky_digitwin.data import DigitwinInputError

__all__ = [
    "ACTIONS",
    "Answer",
    "ApprovalError",
    "Approvals",
    "Proposal",
    "approvals",
    "parse_answer",
    "wait_for_approval",
]

Action = Literal["accept", "edit", "decline"]

#: What an answer can do with a proposal.
ACTIONS: tuple[Action, ...] = ("accept", "edit", "decline")

_ACCEPT_WORDS = {"", "y", "yes", "a", "accept", "ok"}
_DECLINE_WORDS = {"n", "no", "d", "decline"}


class ApprovalError(DigitwinInputError):
    """An answer that cannot be taken: nothing waits for one, or the answer is malformed."""


@dataclass(frozen=True)
class Proposal:
    """What a plan would do next, waiting for a person's answer.

    Attributes
    ----------
    plan_name
        The plan that proposes, e.g. ``"twin_guided_scan"``.
    slow_feature
        The twin's name of the slow axis whose values are proposed.
    values
        The slow-axis values the plan would measure next, in order.
    message
        Why, in one or two sentences (the twin's suggestion or score).
    decision_run
        The uid of the simulated run that records the decision as data (look at it in Tiled
        before answering), or ``None``.
    max_values
        How many values an edit may give at most (``None``: any number).
    bounds
        (low, high) that edited values must lie within, or ``None``.
    id
        A fresh identifier, so that an answer meant for this proposal is never taken by another.
    """

    plan_name: str
    slow_feature: str
    values: tuple[float, ...]
    message: str
    decision_run: str | None = None
    max_values: int | None = None
    bounds: tuple[float, float] | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> dict[str, Any]:
        """The proposal as JSON (what a queue client receives)."""
        return {
            "id": self.id,
            "plan_name": self.plan_name,
            "slow_feature": self.slow_feature,
            "values": list(self.values),
            "message": self.message,
            "decision_run": self.decision_run,
            "max_values": self.max_values,
            "bounds": None if self.bounds is None else list(self.bounds),
        }

    def describe(self) -> str:
        """The proposal and how to answer it, as shown in the terminal."""
        values = ", ".join(f"{v:g}" for v in self.values)
        where = f" (decision run {self.decision_run})" if self.decision_run else ""
        edit = "a new value" if self.max_values == 1 else "new values, e.g. 1, 2.5, 4"
        return (
            f"{self.plan_name} proposes to measure {self.slow_feature} = {values}{where}.\n"
            f"  {self.message}\n"
            f"  Answer: y (accept), n (decline) or {edit}, then Enter; or from Python "
            "bluesky_digitwin.plans.approvals.accept() / .edit([...]) / .decline(); "
            "Ctrl+C pauses as usual."
        )

    def check_values(self, values: Any) -> tuple[float, ...]:
        """``values`` as an edit of this proposal, or an :class:`ApprovalError` saying why not."""
        if isinstance(values, (int, float)) and not isinstance(values, bool):
            values = [values]
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ApprovalError(f"an edit gives a list of numbers, got {values!r}")
        try:
            numbers = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            raise ApprovalError(f"an edit gives a list of numbers, got {values!r}") from None
        if not numbers:
            raise ApprovalError("an edit gives at least one value; to measure none, decline")
        if not all(math.isfinite(v) for v in numbers):
            raise ApprovalError(f"edited values must be finite numbers, got {list(numbers)}")
        if self.max_values is not None and len(numbers) > self.max_values:
            raise ApprovalError(
                f"{self.plan_name} measures {self.max_values} line(s) at a time; "
                f"give at most {self.max_values} value(s), got {len(numbers)}"
            )
        if self.bounds is not None:
            lo, hi = self.bounds
            outside = [v for v in numbers if not lo <= v <= hi]
            if outside:
                raise ApprovalError(
                    f"edited values {outside} lie outside the plan's bounds {lo:g}..{hi:g}"
                )
        return numbers


@dataclass(frozen=True)
class Answer:
    """A person's answer to a :class:`Proposal`.

    Attributes
    ----------
    action
        ``"accept"``, ``"edit"`` or ``"decline"``.
    values
        What the plan measures: the proposal's values (accept), the new ones (edit), none
        (decline).
    by
        Where the answer came from: ``"terminal"``, ``"python"``, ``"queue"``.
    """

    action: Action
    values: tuple[float, ...]
    by: str = "python"

    def to_json(self) -> dict[str, Any]:
        """The answer as JSON (recorded with the decision)."""
        return {"action": self.action, "values": list(self.values), "by": self.by}


class Approvals:
    """Where a waiting plan posts its proposal and where the answer to it arrives.

    One proposal waits at a time (a RunEngine runs one plan at a time). Thread-safe: the plan
    reads it in the RunEngine's thread, a user or a queue client answers from another.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Proposal | None = None
        self._answer: Answer | None = None

    # -- the user's side ---------------------------------------------------------------------

    @property
    def pending(self) -> Proposal | None:
        """The proposal waiting for an answer, or ``None``."""
        with self._lock:
            return None if self._answer is not None else self._pending

    def answer(
        self,
        action: str,
        values: Any = None,
        *,
        proposal_id: str | None = None,
        by: str = "python",
    ) -> Answer:
        """Answer the waiting proposal.

        Parameters
        ----------
        action
            ``"accept"``, ``"edit"`` or ``"decline"``.
        values
            The values to measure instead (``"edit"`` only).
        proposal_id
            If given, the answer is taken only if this is the waiting proposal's ``id`` (so an
            answer to an older proposal is never applied to a newer one).
        by
            Where the answer comes from, recorded with the decision.

        Returns
        -------
        Answer
            What the plan will do.

        Raises
        ------
        ApprovalError
            No proposal waits, it is another one, or the answer is malformed.
        """
        if action not in ACTIONS:
            raise ApprovalError(f"unknown action {action!r}; answer one of {ACTIONS}")
        if action != "edit" and values is not None:
            raise ApprovalError(f"{action!r} takes no values; to measure other values, 'edit'")
        with self._lock:
            proposal = self._pending
            if proposal is None or self._answer is not None:
                raise ApprovalError(
                    "no plan is waiting for an answer (run a twin-guided plan with confirm=True)"
                )
            if proposal_id is not None and proposal_id != proposal.id:
                raise ApprovalError(
                    f"proposal {proposal_id} is no longer waiting (the waiting one is "
                    f"{proposal.id}); look at pending again and answer that"
                )
            if action == "edit":
                if values is None:
                    raise ApprovalError("'edit' needs the values to measure instead")
                chosen = proposal.check_values(values)
            elif action == "accept":
                chosen = proposal.values
            else:
                chosen = ()
            self._answer = Answer(action, chosen, by)
            return self._answer

    def accept(self, *, by: str = "python") -> Answer:
        """Measure what the waiting proposal says."""
        return self.answer("accept", by=by)

    def edit(self, values: Sequence[float] | float, *, by: str = "python") -> Answer:
        """Measure ``values`` instead of what the waiting proposal says."""
        return self.answer("edit", values, by=by)

    def decline(self, *, by: str = "python") -> Answer:
        """Measure none of what the waiting proposal says."""
        return self.answer("decline", by=by)

    # -- the plan's side ---------------------------------------------------------------------

    def post(self, proposal: Proposal) -> None:
        """Make ``proposal`` the one waiting (replacing any other, whose plan has ended)."""
        with self._lock:
            self._pending, self._answer = proposal, None

    def take(self, proposal: Proposal) -> Answer | None:
        """The answer to ``proposal`` if one has come, else ``None``."""
        with self._lock:
            if self._pending is not proposal:
                return None
            return self._answer

    def withdraw(self, proposal: Proposal) -> None:
        """``proposal`` waits no more (answered, timed out or its plan aborted)."""
        with self._lock:
            if self._pending is proposal:
                self._pending, self._answer = None, None


#: The process's approvals: what the plans post to unless given others.
approvals = Approvals()


def parse_answer(text: str, proposal: Proposal, *, by: str = "terminal") -> Answer:
    """An answer typed at the terminal: ``y``/Enter, ``n``, or values separated by commas or
    spaces.

    Raises
    ------
    ApprovalError
        The text is none of these; the message says what is understood.
    """
    words = text.strip().lower()
    if words in _ACCEPT_WORDS:
        return Answer("accept", proposal.values, by)
    if words in _DECLINE_WORDS:
        return Answer("decline", (), by)
    parts = [p for p in re.split(r"[,\s;]+", words) if p]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise ApprovalError(
            f"not understood: {text.strip()!r}; type y (accept), n (decline) or numbers"
        ) from None
    return Answer("edit", proposal.check_values(numbers), by)


def _terminal() -> TextIO | None:
    # The RunEngine's terminal, if it is one select() can watch (POSIX; not Jupyter's stdin).
    stdin = sys.stdin
    if os.name != "posix" or stdin is None:
        return None
    try:
        return stdin if stdin.isatty() else None
    except (AttributeError, ValueError, OSError):
        return None


def _typed_line(terminal: TextIO) -> str | None:
    # A line only if one is there now: never block the RunEngine's loop.
    try:
        ready, _, _ = select.select([terminal], [], [], 0)
    except (OSError, ValueError, TypeError):
        return None
    if not ready:
        return None
    line = terminal.readline()
    return line if line else None


@plan
def wait_for_approval(
    proposal: Proposal,
    *,
    desk: Approvals | None = None,
    terminal: TextIO | Literal["auto"] | None = "auto",
    timeout: float | None = None,
    poll: float = 0.2,
) -> MsgGenerator[Answer]:
    """Show ``proposal`` and wait, without blocking the RunEngine, for a person's answer.

    Parameters
    ----------
    proposal
        What the plan would do.
    desk
        Where answers arrive (default: the process's :data:`approvals`).
    terminal
        Where typed answers are read from: ``"auto"`` (the RunEngine's standard input when it
        is a terminal), a text stream select() can watch, or ``None`` (answers only through
        ``desk``).
    timeout
        Seconds to wait at most (``None``: until answered, paused or aborted).
    poll
        Seconds between two looks for an answer.

    Returns
    -------
    Answer
        The answer (returned by ``yield from``).

    Raises
    ------
    TimeoutError
        Nobody answered within ``timeout``; the proposal is withdrawn.
    """
    if not (math.isfinite(poll) and poll > 0):
        raise ValueError(f"poll must be a number of seconds > 0, got {poll!r}")
    desk = approvals if desk is None else desk
    terminal = _terminal() if terminal == "auto" else terminal
    desk.post(proposal)
    print(proposal.describe(), flush=True)
    try:
        # A pause while waiting resumes waiting here, not by measuring the last line again.
        yield from bps.checkpoint()
        start = time.monotonic()
        while True:
            answer = desk.take(proposal)
            if answer is None and terminal is not None:
                line = _typed_line(terminal)
                if line is not None:
                    try:
                        answer = parse_answer(line, proposal)
                    except ApprovalError as exc:
                        print(exc, flush=True)
            if answer is not None:
                print(f"{proposal.plan_name}: {answer.action} ({answer.by})", flush=True)
                return answer
            waited = time.monotonic() - start
            if timeout is not None and waited >= timeout:
                raise TimeoutError(
                    f"nobody answered {proposal.plan_name}'s proposal within {timeout:g} s; it "
                    "was withdrawn: run the plan again, with a larger timeout or confirm=False"
                )
            remaining = math.inf if timeout is None else timeout - waited
            yield from bps.sleep(min(poll, remaining))
    finally:
        desk.withdraw(proposal)
