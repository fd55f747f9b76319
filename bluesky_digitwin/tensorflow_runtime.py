"""Import TensorFlow and Keras quietly, once, with the settings this package relies on.

Importing this module is the only place that touches TensorFlow's start-up, so the rest of the
package (and every worker process) gets the same quiet, CPU-friendly setup.

TensorFlow's CPU wheels print start-up lines from C++ (oneDNN, "Could not find cuda drivers",
"failed call to cuInit", CPU features) before its log level applies, whatever
``TF_CPP_MIN_LOG_LEVEL`` says. Those lines would bury the user's own output, so while
TensorFlow starts, the process's standard error (file descriptor 2, where C++ writes) goes
through a pipe that drops them (:func:`~bluesky_digitwin.processes.is_tensorflow_noise`) and
passes everything else on at once: other threads' messages are delayed by a line, never lost.
If the start fails, the hidden lines are printed with the error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator

from bluesky_digitwin.processes import TF_ENVIRONMENT, THREADS_ENV, is_tensorflow_noise

for _name, _value in TF_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

#: How long the end of the start-up waits for the filter to pass on the last lines, seconds.
#: The filter ends as soon as the pipe is drained, so this costs nothing as a rule; it bounds
#: the wait only when a child started meanwhile keeps the pipe open. 2 s was too short on a
#: loaded machine: another thread's line then came out after what followed it.
_DRAIN = 10.0


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    try:
        saved = os.dup(2)
    except OSError:  # no standard error (e.g. a GUI's pythonw): nothing to hide
        yield
        return
    hidden: list[str] = []
    read_end, write_end = os.pipe()

    def forward() -> None:
        with os.fdopen(read_end, "rb") as stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode(errors="replace")
                if is_tensorflow_noise(line):
                    hidden.append(line)
                else:
                    with contextlib.suppress(OSError):
                        os.write(saved, raw)
        # Every writer is gone (a child started meanwhile may have kept the pipe open longer).
        os.close(saved)

    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    filter_thread = threading.Thread(target=forward, name="digitwin-tf-stderr", daemon=True)
    filter_thread.start()
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.flush()
        # Restoring descriptor 2 closes the pipe's last write end: the filter drains and ends.
        os.dup2(saved, 2)
        filter_thread.join(_DRAIN)
        if failed:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.write("".join(hidden))


with _filtered_stderr():
    import keras
    import tensorflow as tf

    if os.environ.get(THREADS_ENV):
        threads = int(os.environ[THREADS_ENV])
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    # Start the runtime now, while its CUDA probing lines are filtered.
    tf.config.list_logical_devices()

# Retracing warnings are expected: every search trial traces a network of a new shape.
tf.get_logger().setLevel(logging.ERROR)

if keras.backend.backend() != "tensorflow":  # pragma: no cover - depends on the user's setup
    raise ImportError(
        "bluesky-digitwin trains with TensorFlow, but Keras is configured for the "
        f"{keras.backend.backend()!r} backend; set KERAS_BACKEND=tensorflow"
    )

__all__ = ["THREADS_ENV", "keras", "tf"]
