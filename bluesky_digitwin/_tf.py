"""Import TensorFlow and Keras quietly, once, with the settings this package relies on.

Importing this module is the only place that touches TensorFlow's start-up, so the rest of the
package (and every worker process) gets the same quiet, CPU-friendly setup.

TensorFlow's CPU wheels still probe for CUDA and print "Could not find cuda drivers" and
"failed call to cuInit" from C++, before its log level applies. Those lines would bury the
user's own output, so standard error is captured while TensorFlow starts; if the start fails,
what was captured is printed with the error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

#: Environment variable: TensorFlow thread-pool size, set by workers that share the cores.
THREADS_ENV = "DIGITWIN_TF_THREADS"

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _captured_stderr() -> Iterator[None]:
    # The redirect is process-wide: with other threads running (a RunEngine, a Tiled server's
    # logging) it would swallow their messages for seconds, or hand them a file that is gone
    # by the time they write. So TensorFlow's start-up lines are hidden only when this is the
    # process's one thread.
    if threading.active_count() > 1:
        yield
        return
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. a notebook's stream: nothing to hide
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            yield
        except BaseException:
            os.dup2(saved, fd)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, fd)
            os.close(saved)


with _captured_stderr():
    import keras
    import tensorflow as tf

    if os.environ.get(THREADS_ENV):
        threads = int(os.environ[THREADS_ENV])
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    # Start the runtime now, while the CUDA probing messages are captured.
    tf.config.list_logical_devices()

# Retracing warnings are expected: every search trial traces a network of a new shape.
tf.get_logger().setLevel(logging.ERROR)

if keras.backend.backend() != "tensorflow":  # pragma: no cover - depends on the user's setup
    raise ImportError(
        "bluesky-digitwin trains with TensorFlow, but Keras is configured for the "
        f"{keras.backend.backend()!r} backend; set KERAS_BACKEND=tensorflow"
    )

__all__ = ["THREADS_ENV", "keras", "tf"]
