"""Child Python processes: fresh interpreters, started quietly.

The search's workers and the TwinCallback's training process are fresh interpreters
(``python -c``), not ``multiprocessing`` children: the "spawn" start method re-imports the
caller's ``__main__`` module in the child, so a user's script without an
``if __name__ == "__main__":`` guard runs again there (a search worker dies in multiprocessing's
bootstrapping check, and the search quietly runs on one core).

TensorFlow's C++ start-up lines (oneDNN, CUDA probing, CPU features) are printed before its log
level applies, whatever the environment says; :func:`is_tensorflow_noise` recognises them, and
:func:`forward_stderr` passes a child's standard error on without them. This module imports
neither TensorFlow nor anything slow.
"""

from __future__ import annotations

import gc
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO

__all__ = [
    "PARENT_ENV",
    "TF_ENVIRONMENT",
    "THREADS_ENV",
    "child_environment",
    "forward_stderr",
    "is_tensorflow_noise",
    "launching_parent",
    "python_command",
    "python_path",
    "skip_exit_collection",
    "watch_parent",
]

#: Environment variable: TensorFlow thread-pool size, set for workers that share the cores.
THREADS_ENV = "DIGITWIN_TF_THREADS"
#: The pid of the process that started a child (set by child_environment).
PARENT_ENV = "DIGITWIN_PARENT_PID"
#: Environment every process that trains starts with (unless the user set otherwise).
TF_ENVIRONMENT = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}

# A line of TensorFlow's C++ logging (absl/glog format): level letter, date, time, thread, file.
_CPP_LOG = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")
# Start-up lines that are not in that format, or that are logged as errors but are not ones
# (a CPU-only machine has no CUDA driver).
_STARTUP = (
    "All log messages before absl::InitializeLog() is called",
    "failed call to cuInit",
    "Could not find cuda drivers",
    "To enable the following instructions:",
    "rebuild TensorFlow with the appropriate compiler flags",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
)


def is_tensorflow_noise(line: str) -> bool:
    """True for a line of TensorFlow's C++ start-up chatter, which a user can do nothing about.

    That is its informational and warning lines (which ``TF_CPP_MIN_LOG_LEVEL=2`` hides once
    TensorFlow's logging is set up, but not before) and the CUDA probing of a machine without a
    GPU. Real errors (other error lines, Python tracebacks, warnings) are not noise.
    """
    match = _CPP_LOG.match(line)
    if match is not None and match.group(1) in "IW":
        return True
    return any(text in line for text in _STARTUP)


def forward_stderr(stream: IO[bytes], name: str, write_fd: int | None = None) -> threading.Thread:
    """Pass ``stream`` (a child's standard error) on line by line, without TensorFlow's noise.

    Lines go to this process's ``sys.stderr`` (so a notebook shows a worker's error too), or to
    the file descriptor ``write_fd`` when given. A daemon thread does it; it ends, closing
    ``stream``, when every writer has closed the other end. Returns the thread.
    """

    def write(text: str) -> None:
        try:
            if write_fd is not None:
                os.write(write_fd, text.encode())
            else:
                sys.stderr.write(text)
                sys.stderr.flush()
        except (OSError, ValueError):  # our own stderr is gone: nothing to tell
            pass

    def forward() -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode(errors="replace")
                if not is_tensorflow_noise(line):
                    write(line)

    thread = threading.Thread(target=forward, name=name, daemon=True)
    thread.start()
    return thread


def python_path() -> list[str]:
    """This process's module search path, absolute (what a child needs to import the same)."""
    return [os.path.abspath(p) if p else os.getcwd() for p in sys.path]


def python_command(code: str) -> list[str]:
    """The command of a fresh interpreter running ``code``, with this process's module path.

    ``python -c`` puts the working directory first on the path; it is dropped, so that a source
    checkout there cannot shadow the package the parent imported (:func:`child_environment`
    gives the parent's path instead).
    """
    return [sys.executable, "-c", f"import sys; sys.path[:] = [p for p in sys.path if p]; {code}"]


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of a child process: ours, TensorFlow's quiet defaults, our module path.

    ``extra`` is set last (e.g. ``DIGITWIN_TF_THREADS``).
    """
    env = {**TF_ENVIRONMENT, **os.environ}
    # What multiprocessing's "spawn" does: the child finds the modules the parent finds.
    env["PYTHONPATH"] = os.pathsep.join(python_path())
    # Who started it, for the child's watch of its parent (see launching_parent).
    env[PARENT_ENV] = str(os.getpid())
    env.update(extra or {})
    return env


def launching_parent() -> int:
    """The pid of the process that started this one with :func:`child_environment`.

    Not ``os.getppid()`` read when the child's code starts: a parent killed while the child
    was still importing has already been replaced by init (or a subreaper) by then, and a
    child that took that for its parent would never notice its death and run on for ever.
    """
    try:
        return int(os.environ[PARENT_ENV])
    except (KeyError, ValueError):
        return os.getppid()


def watch_parent(on_orphaned: Callable[[], object], interval: float = 0.5) -> threading.Thread:
    """Call ``on_orphaned()`` once, from a daemon thread, when this process's parent dies.

    A child started with :func:`child_environment` (a search worker, a TwinCallback's
    training) must not outlive the process that started it, even one killed by SIGKILL that
    could not stop it: ``on_orphaned`` ends it (and cleans up what only it knows of). The
    parent is :func:`launching_parent`, checked every ``interval`` seconds.
    """
    parent = launching_parent()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        on_orphaned()

    thread = threading.Thread(target=watch, daemon=True, name="digitwin-parent-watch")
    thread.start()
    return thread


def skip_exit_collection() -> None:
    """Let this process end without Python's last garbage collections over its whole heap.

    At exit CPython collects every object it still tracks; once TensorFlow has run, that is
    TensorFlow's and Keras's whole object graph: 0.6 s for a bare Keras script, about 1 s
    after a fit, which a user waits through at the end of ``digitwin fit`` (and the search, at
    the end of each worker). Frozen objects are left to the operating system instead.
    ``atexit`` handlers and ``weakref.finalize`` callbacks (temporary directories) still run,
    and objects outside reference cycles are still freed as before. For a process that is
    about to exit only: frozen memory is never collected.
    """
    gc.disable()
    gc.freeze()
