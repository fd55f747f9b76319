"""Nothing lost when a worker dies: retry its trial, count only what really finished.

Two ways a trial's worker is found dead:

- On a database storage, Optuna's heartbeats (``RDBStorage(heartbeat_interval=...)``): a running
  trial beats every interval; one silent for the grace period is failed by whichever worker next
  starts a trial, and :func:`retry_trial` queues it again with the same hyperparameters.
- On the journal file (which has no heartbeats), every trial records which process runs it
  (:func:`worker_identity`); :func:`recover_orphaned_trials` fails and retries the running trials
  whose process on this machine is gone. A search killed and rerun on the same journal and study
  resumes this way: finished trials are kept, the interrupted ones run again.
- A trial is running from the moment Optuna creates it, before its objective records the
  process: a worker killed in between leaves a running trial that no process claims. Heartbeats
  cannot see it either (they start with the objective), so a process that waits on the search
  fails and retries such a trial once it has seen it unclaimed for :data:`CLAIM_GRACE` seconds
  (:class:`UnclaimedTrials`).

A failed trial that was retried does not count toward the search's number of trials
(:func:`count_finished`): a killed worker costs the time of its trial, not a trial of the search.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bluesky_digitwin.processes import watch_parent

__all__ = [
    "CLAIM_GRACE",
    "FINISHED",
    "MAX_RETRY",
    "WORKER_ATTR",
    "StopWhenFinished",
    "UnclaimedTrials",
    "count_finished",
    "count_taken",
    "exit_with_parent",
    "recover_orphaned_trials",
    "retry_trial",
    "worker_identity",
]

logger = logging.getLogger(__name__)

# Failed trials count as finished: a search whose every trial fails must end, not loop.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
#: The user attribute where a running trial records its process.
WORKER_ATTR = "worker"
#: How many times one trial is run again after its worker died (a trial that kills every
#: worker it runs on, e.g. by exhausting memory, must not take the whole search down).
MAX_RETRY = 2
#: Seconds a running trial may stay without its process recorded before it counts as lost.
#: Its objective records the process first thing, milliseconds after Optuna created the trial
#: (longer only on a slow database), so half a minute is generous and costs a killed search's
#: rerun at most that.
CLAIM_GRACE = 30.0


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields are counted after the last ")".
    return stat.rsplit(")", 1)[1].split()


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (in clock ticks), to tell a reused pid apart."""
    fields = _proc_stat(pid)
    return None if fields is None else fields[19]


def worker_identity(trial_number: int) -> dict[str, Any]:
    """Who runs ``trial_number``: host, pid and the process' start time."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "started": _process_start(pid),
        "trial": trial_number,
    }


def _is_gone(identity: dict[str, Any]) -> bool:
    """True when the process of ``identity`` ran on this machine and no longer runs."""
    if identity.get("host") != socket.gethostname():
        return False  # another machine's process: only its heartbeat can tell
    pid = int(identity.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, someone else's
    fields = _proc_stat(pid)
    if fields is None:
        return False  # no /proc: the pid answers, so count it alive
    if fields[0] == "Z":
        return True  # killed, not yet reaped by its parent
    started = identity.get("started")
    return started is not None and fields[19] != started


def retry_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue a failed trial again with the same hyperparameters (at most :data:`MAX_RETRY`).

    Used as the storage's heartbeat-stale callback and for orphans of the journal. The
    ``failed_trial``/``retry_history`` system attributes follow Optuna's
    ``RetryHeartbeatStaleTrialCallback``, so Optuna's tools read them the same way.
    """
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > MAX_RETRY:
        logger.warning(
            "trial %d failed %d times with its worker gone; not retried", trial.number, MAX_RETRY
        )
        return
    system_attrs = {
        **trial.system_attrs,
        "failed_trial": trial.system_attrs.get("failed_trial", trial.number),
        "retry_history": history,
    }
    # The dead worker's identity stays behind: the retry records its own when it starts.
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k != WORKER_ATTR}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
        )
    )
    logger.info("trial %d lost its worker; queued again", trial.number)


class UnclaimedTrials:
    """Running trials that no process has claimed yet, and since when this process saw them.

    The time is this process's own clock, from its first sight of the trial: the trial's
    ``datetime_start`` was written by whichever machine created it, with that machine's clock.

    Parameters
    ----------
    grace
        Seconds a trial may stay unclaimed before :meth:`lost` says its worker died;
        :data:`CLAIM_GRACE` by default.
    """

    def __init__(self, grace: float | None = None) -> None:
        self.grace = CLAIM_GRACE if grace is None else grace
        self._first_seen: dict[int, float] = {}

    def lost(self, running: list[FrozenTrial]) -> list[FrozenTrial]:
        """The unclaimed trials among ``running`` that have been so for the grace period."""
        now = time.monotonic()
        unclaimed = {t._trial_id: t for t in running if not _claimed(t)}
        # Forget trials claimed or finished since: only a continuous stretch unclaimed counts.
        self._first_seen = {i: self._first_seen.get(i, now) for i in unclaimed}
        return [t for i, t in unclaimed.items() if now - self._first_seen[i] >= self.grace]


def _claimed(trial: FrozenTrial) -> bool:
    # A retry carries no identity until its new worker writes one; an identity of another
    # trial number would be a copy, not this trial's worker.
    identity = trial.user_attrs.get(WORKER_ATTR)
    return isinstance(identity, dict) and identity.get("trial") == trial.number


def recover_orphaned_trials(
    study: optuna.Study, unclaimed: UnclaimedTrials | None = None
) -> list[int]:
    """Fail and retry the running trials whose worker process on this machine is gone.

    Returns the numbers of the trials recovered. Trials run by other machines are left to the
    storage's heartbeats. With ``unclaimed``, running trials that no process has claimed for
    its grace period are recovered too (their worker died between Optuna creating the trial
    and the objective's first line), on whichever machine.
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    dead = [t for t in running if _claimed(t) and _is_gone(t.user_attrs[WORKER_ATTR])]
    if unclaimed is not None:
        dead += unclaimed.lost(running)
    recovered = []
    for trial in dead:
        try:
            changed = study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process recovered it first
        if changed:
            retry_trial(study, study._storage.get_trial(trial._trial_id))
            recovered.append(trial.number)
    return recovered


def _count(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    # One read of the trials; a failure that was retried is counted as its retry.
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    return sum(t.state in states and t.number not in retried for t in trials)


def count_finished(study: optuna.Study) -> int:
    """Finished trials (complete, pruned, failed), leaving out failures that were retried."""
    return _count(study, FINISHED)


def count_taken(study: optuna.Study) -> int:
    """Trials finished (as :func:`count_finished` counts them) or running in some worker."""
    return _count(study, (*FINISHED, TrialState.RUNNING))


class StopWhenFinished:
    """An ``optimize`` callback: stop once the study's ``n_trials`` are finished or running.

    Running trials count: a worker that stopped only at ``n_trials`` *finished* ones would
    start one more trial while the others' last ones still run, and a 30-trial search of two
    workers would run 31 (and wait for the extra one before the twin can be made).
    """

    def __init__(self, n_trials: int) -> None:
        self.n_trials = n_trials

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if count_taken(study) >= self.n_trials:
            study.stop()


def exit_with_parent(interval: float = 1.0) -> threading.Thread:
    """End this process when its parent dies (a spawned worker must not outlive its search).

    Without it, the workers of a killed ``DigitalTwin.fit`` would go on searching for nobody.
    The trial they leave running is recovered when the search is rerun.
    """

    def leave() -> None:
        logger.warning("the search that started this worker is gone; exiting")
        os._exit(3)

    return watch_parent(leave, interval)
