"""Search workers on this machine: fresh interpreters that share the study's storage.

A worker is started without re-importing the caller's script (a script without an ``if
__name__ == "__main__":`` guard would die in a ``multiprocessing`` child), gets its
:class:`WorkerSpec` on its standard input, searches until the study holds its trials, then
does its part of the work shared after the search (``run_search(after=...)``).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import optuna
from optuna.artifacts import FileSystemArtifactStore

from bluesky_digitwin.atomic_files import atomic_path
from bluesky_digitwin.processes import (
    THREADS_ENV,
    child_environment,
    forward_stderr,
    python_command,
    skip_exit_collection,
)
from bluesky_digitwin.surrogate.network import Scaling
from bluesky_digitwin.surrogate.precision import allow_bfloat16_inside_matmuls
from bluesky_digitwin.surrogate.recovery import UnclaimedTrials, exit_with_parent
from bluesky_digitwin.surrogate.search_settings import HEARTBEAT_INTERVAL
from bluesky_digitwin.surrogate.search_space import SearchSpace
from bluesky_digitwin.surrogate.split import SplitData
from bluesky_digitwin.surrogate.storage import open_storage
from bluesky_digitwin.surrogate.training import TrainConfig
from bluesky_digitwin.surrogate.trials import (
    make_objective,
    make_pruner,
    make_sampler,
    optimize_until,
    settled_trials,
)

__all__ = ["AfterSearch", "LocalWorker", "WorkerSpec", "after_path", "start_worker", "worker_main"]


class AfterSearch(Protocol):
    """Work shared out to every process that searched, once no trial runs any more.

    It is sent to the spawned workers with their :class:`WorkerSpec` (so it must pickle: a
    module-level class). A worker's part comes back to the search's own process as a file the
    work writes and reads itself, arrays and plain values, never a pickle: the parts are
    networks (:class:`~bluesky_digitwin.surrogate.ensemble.BestShapeShare`).
    """

    def __call__(
        self, split: SplitData, trials: list[optuna.trial.FrozenTrial], part: int, parts: int
    ) -> Any:
        """Do part ``part`` of ``parts`` with the complete ``trials`` (best first)."""

    def save_part(self, output: Any, file: BinaryIO) -> None:
        """Write what a call returned, in a spawned worker."""

    def load_part(self, path: Path) -> Any:
        """Read what :meth:`save_part` wrote, in the search's own process."""


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs, as plain values (sent to a fresh interpreter)."""

    storage: str
    study_name: str
    data_dir: str
    scaling: dict
    artifact_dir: str
    space: SearchSpace
    train_config: TrainConfig
    n_trials: int
    seed: int | None
    worker_index: int
    threads: int
    sampler: Any = None
    pruner: Any = None
    heartbeat_interval: int | None = HEARTBEAT_INTERVAL
    after: AfterSearch | None = None
    parts: int = 1


def after_path(data_dir: str | os.PathLike, part: int) -> Path:
    """Where a spawned worker leaves its part of the work after the search."""
    return Path(data_dir) / f"after-{part}.part"


#: What a worker process runs: a fresh interpreter that imports this package and nothing of the
#: caller's. (multiprocessing's "spawn" re-imports the caller's ``__main__``: a user's script
#: without an ``if __name__ == "__main__":`` guard then dies in the worker.)
WORKER_BOOT = "from bluesky_digitwin.surrogate.local_workers import worker_main; worker_main()"


@dataclass
class LocalWorker:
    """A running worker process and the thread passing its standard error on."""

    process: subprocess.Popen
    stderr: threading.Thread

    def wait(self) -> int:
        code = self.process.wait()
        # Its last lines (an error's traceback) come before the search says it failed.
        self.stderr.join(5.0)
        return code


def start_worker(spec: WorkerSpec) -> LocalWorker:
    """Start a worker in a fresh interpreter; its spec goes through its standard input.

    The spec is plain values, plus the sampler and pruner objects when custom ones were given
    (pickled, as multiprocessing did; :func:`run_search` refuses classes defined in the script,
    which the worker cannot import). It holds no model. The worker's standard error reaches
    ours without TensorFlow's start-up lines; it shares our process group, so a signal to the
    group reaches it too.
    """
    process = subprocess.Popen(
        python_command(WORKER_BOOT),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_environment({THREADS_ENV: str(spec.threads)}),
        close_fds=True,
    )
    try:
        with process.stdin:
            pickle.dump(spec, process.stdin)
    except BrokenPipeError:
        pass  # it died starting; its standard error says why, and the search goes on
    stderr = forward_stderr(process.stderr, f"digitwin-search-worker-{spec.worker_index}")
    return LocalWorker(process=process, stderr=stderr)


def worker_main() -> None:
    """Entry point of a worker process (:data:`WORKER_BOOT`): read the spec, search."""
    exit_with_parent()
    try:
        spec = pickle.load(sys.stdin.buffer)
    except EOFError:
        return  # the search ended before this worker got its spec
    try:
        _search_in_worker(spec)
    except KeyboardInterrupt:
        # Ctrl-C reached the whole process group; the search itself says it was interrupted.
        sys.exit(130)
    # The search's own process waits for this one to exit before it builds the twin.
    skip_exit_collection()


def _search_in_worker(spec: WorkerSpec) -> None:
    # A worker process is the search's alone: before its first matmul, let oneDNN run them in
    # bfloat16 if the search trains so (no Cast ops around them).
    allow_bfloat16_inside_matmuls(spec.train_config.precision)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(spec.storage, heartbeat_interval=spec.heartbeat_interval)
    study = optuna.load_study(
        study_name=spec.study_name,
        storage=storage,
        sampler=spec.sampler or make_sampler(spec.seed, spec.worker_index),
        pruner=spec.pruner or make_pruner(spec.train_config),
    )
    split = SplitData.load(Path(spec.data_dir), Scaling.from_dict(spec.scaling))
    store = FileSystemArtifactStore(spec.artifact_dir)
    objective = make_objective(split, spec.space, spec.train_config, store, spec.seed)
    unclaimed = UnclaimedTrials()
    optimize_until(study, objective, spec.n_trials, unclaimed=unclaimed)
    if spec.after is not None:
        trials = settled_trials(study, unclaimed=unclaimed)
        if trials:
            # An error here ends this worker with a traceback; the search's own process then
            # does this part itself.
            output = spec.after(split, trials, spec.worker_index, spec.parts)
            path = after_path(spec.data_dir, spec.worker_index)
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                spec.after.save_part(output, f)
