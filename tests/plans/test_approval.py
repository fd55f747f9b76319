"""A person's answer to a plan's proposal: the desk, typed answers, and the waiting plan stub.

The guided plans with ``confirm=True`` are tested in ``test_plans.py``; here a real RunEngine
runs ``wait_for_approval`` alone, answered from another thread or through a pipe standing for
the terminal.
"""

from __future__ import annotations

import os
import threading

import pytest
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted

from bluesky_digitwin.plans import Answer, ApprovalError, Approvals, Proposal, wait_for_approval
from bluesky_digitwin.plans.approval import parse_answer


def proposal(**changes) -> Proposal:
    options = {
        "plan_name": "twin_guided_scan",
        "slow_feature": "H",
        "values": (1.0, 2.0),
        "message": "suggested step 1 T",
        "decision_run": "abc",
    }
    return Proposal(**{**options, **changes})


@pytest.fixture
def RE() -> RunEngine:
    return RunEngine({}, call_returns_result=True)


# -- the desk ------------------------------------------------------------------------------------


def test_an_answer_with_nothing_waiting_is_refused():
    desk = Approvals()
    assert desk.pending is None
    with pytest.raises(ApprovalError, match="no plan is waiting"):
        desk.accept()


def test_accept_edit_and_decline_say_what_the_plan_measures():
    desk, p = Approvals(), proposal()
    desk.post(p)
    assert desk.pending is p
    assert desk.take(p) is None
    assert desk.edit([3, "4.5"]) == Answer("edit", (3.0, 4.5), "python")
    assert desk.take(p) == Answer("edit", (3.0, 4.5), "python")
    assert desk.pending is None  # answered: nothing more to answer
    with pytest.raises(ApprovalError, match="no plan is waiting"):
        desk.decline()

    desk.post(p)  # posted again: a new wait
    assert desk.accept(by="queue").values == (1.0, 2.0)
    desk.post(p)
    assert desk.decline().values == ()
    desk.withdraw(p)
    assert desk.pending is None and desk.take(p) is None


@pytest.mark.parametrize(
    ("action", "values", "changes", "match"),
    [
        ("approve", None, {}, "unknown action 'approve'"),
        ("accept", [1.0], {}, "'accept' takes no values"),
        ("edit", None, {}, "'edit' needs the values"),
        ("edit", [], {}, "at least one value"),
        ("edit", "1, 2", {}, "a list of numbers"),
        ("edit", [1.0, "two"], {}, "a list of numbers"),
        ("edit", [float("nan")], {}, "finite numbers"),
        ("edit", [1.0, 2.0], {"max_values": 1}, "give at most 1 value"),
        ("edit", [7.0], {"bounds": (0.0, 5.0)}, r"outside the plan's bounds 0..5"),
    ],
)
def test_a_malformed_answer_is_one_clear_error_and_the_proposal_still_waits(
    action, values, changes, match
):
    desk, p = Approvals(), proposal(**changes)
    desk.post(p)
    with pytest.raises(ApprovalError, match=match):
        desk.answer(action, values)
    assert desk.pending is p and desk.take(p) is None


def test_an_answer_meant_for_an_older_proposal_is_not_taken():
    desk, old, new = Approvals(), proposal(), proposal()
    desk.post(new)
    with pytest.raises(ApprovalError, match=f"proposal {old.id} is no longer waiting"):
        desk.answer("accept", proposal_id=old.id)
    assert desk.answer("accept", proposal_id=new.id).action == "accept"


def test_a_proposal_is_json():
    p = proposal(max_values=1, bounds=(0.0, 5.0))
    assert p.to_json() == {
        "id": p.id,
        "plan_name": "twin_guided_scan",
        "slow_feature": "H",
        "values": [1.0, 2.0],
        "message": "suggested step 1 T",
        "decision_run": "abc",
        "max_values": 1,
        "bounds": [0.0, 5.0],
    }
    assert "H = 1, 2" in p.describe() and "decision run abc" in p.describe()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\n", Answer("accept", (1.0, 2.0), "terminal")),
        ("Y\n", Answer("accept", (1.0, 2.0), "terminal")),
        ("no\n", Answer("decline", (), "terminal")),
        ("1.5, 2.5 3.5\n", Answer("edit", (1.5, 2.5, 3.5), "terminal")),
    ],
)
def test_typed_answers(text, expected):
    assert parse_answer(text, proposal()) == expected


def test_a_typed_answer_not_understood_says_what_is():
    with pytest.raises(ApprovalError, match=r"type y \(accept\), n \(decline\) or numbers"):
        parse_answer("maybe later", proposal())


# -- the waiting plan stub -----------------------------------------------------------------------


def answer_when_posted(desk: Approvals, answer) -> threading.Thread:
    """Answer from another thread once a proposal waits, as a user or a queue client would."""

    def run() -> None:
        for _ in range(500):
            if desk.pending is not None:
                answer(desk)
                return
            threading.Event().wait(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_plan_waits_for_an_answer_from_another_thread(RE, capsys):
    desk, p = Approvals(), proposal()
    thread = answer_when_posted(desk, lambda d: d.edit([5.0]))
    answer = RE(wait_for_approval(p, desk=desk, terminal=None, poll=0.01)).plan_result
    thread.join()
    assert answer == Answer("edit", (5.0,), "python")
    assert desk.pending is None
    shown = capsys.readouterr().out
    assert "twin_guided_scan proposes to measure H = 1, 2" in shown
    assert "twin_guided_scan: edit (python)" in shown


def test_the_plan_reads_a_typed_answer_and_says_when_it_is_not_understood(RE, capsys):
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as terminal, os.fdopen(write_end, "w") as typed:
        typed.write("maybe\n")
        typed.flush()
        threading.Timer(0.2, lambda: (typed.write("2, 3\n"), typed.flush())).start()
        answer = RE(wait_for_approval(proposal(), terminal=terminal, poll=0.01)).plan_result
    assert answer == Answer("edit", (2.0, 3.0), "terminal")
    assert "not understood: 'maybe'" in capsys.readouterr().out


def test_nobody_answering_times_out_and_withdraws_the_proposal(RE):
    desk = Approvals()
    with pytest.raises(TimeoutError, match="nobody answered twin_guided_scan's proposal"):
        RE(wait_for_approval(proposal(), desk=desk, terminal=None, timeout=0.1, poll=0.01))
    assert desk.pending is None


def test_pause_while_waiting_then_answer_and_resume(RE):
    desk, p = Approvals(), proposal()
    # Pause as Ctrl+C would, once the proposal waits; answer while paused; resume.
    answer_when_posted(desk, lambda d: threading.Timer(0.1, RE.request_pause).start())
    with pytest.raises(RunEngineInterrupted):
        RE(wait_for_approval(p, desk=desk, terminal=None, poll=0.01))
    assert RE.state == "paused"
    assert desk.pending is p  # still waiting, answerable from the prompt
    desk.decline()
    assert RE.resume().plan_result == Answer("decline", (), "python")
    assert desk.pending is None


def test_abort_while_waiting_withdraws_the_proposal(RE):
    desk = Approvals()
    answer_when_posted(desk, lambda d: threading.Timer(0.1, RE.request_pause).start())
    with pytest.raises(RunEngineInterrupted):
        RE(wait_for_approval(proposal(), desk=desk, terminal=None, poll=0.01))
    RE.abort("not today")
    assert RE.state == "idle"
    assert desk.pending is None


SCRIPT = """
from bluesky import RunEngine
from bluesky_digitwin.plans import Proposal, wait_for_approval

RE = RunEngine({}, call_returns_result=True)
proposal = Proposal("adaptive_line_scan", "H", (2.0,), "best score", max_values=1)
print("ANSWER", RE(wait_for_approval(proposal, poll=0.02)).plan_result, flush=True)
"""


@pytest.mark.skipif(os.name != "posix", reason="a terminal is read with select(): POSIX only")
def test_a_plan_in_a_real_terminal_reads_what_the_user_types(tmp_path):
    import pty
    import subprocess
    import sys

    # The process's standard input is a real terminal (a pseudo-terminal), as in IPython.
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        cwd=tmp_path,  # not the checkout, whose bluesky_digitwin/ is not the installed package
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    os.close(terminal)
    try:
        shown = ""
        while "Answer: y (accept)" not in shown:
            line = process.stdout.readline()
            assert line, f"the plan ended without asking: {shown}"
            shown += line
        os.write(controller, b"3.5\n")
        out, _ = process.communicate(timeout=60)
    finally:
        process.kill()
        os.close(controller)
    assert "ANSWER Answer(action='edit', values=(3.5,), by='terminal')" in out
