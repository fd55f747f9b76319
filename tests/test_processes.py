"""Child processes start quietly: TensorFlow's C++ start-up lines never reach the terminal.

Real processes only: a bare TensorFlow start, ``digitwin fit`` with a spawned worker, and a
script whose TwinCallback trains in the background while a RunEngine scans.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from digitwin_testing import smooth_table, subprocess_env

from bluesky_digitwin.processes import PARENT_ENV, is_tensorflow_noise

#: What TensorFlow prints from C++ while it starts on a CPU-only machine.
START_UP = ("oneDNN", "cuInit", "cuda", "This TensorFlow binary", "absl::InitializeLog")


def _assert_quiet(stderr: str) -> None:
    for text in START_UP:
        assert text not in stderr, stderr


def test_what_tensorflow_prints_starting_is_noise_and_real_errors_are_not():
    # Unfiltered: TensorFlow imported directly, as a user's own code would.
    started = subprocess.run(
        [sys.executable, "-c", "import tensorflow as tf; tf.config.list_logical_devices()"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = started.stderr.splitlines(keepends=True)
    assert started.returncode == 0 and lines, "TensorFlow printed nothing to filter"
    assert [line for line in lines if not is_tensorflow_noise(line)] == []
    for real in (
        "Traceback (most recent call last):\n",
        "E0000 00:00:1796191206.118115    5824 bfc_allocator.cc:485] Allocator ran out of memory\n",
        "UserWarning: the twin is worse than linear interpolation\n",
    ):
        assert not is_tensorflow_noise(real)


def test_importing_tensorflow_through_the_package_is_quiet_with_other_threads_running():
    # A RunEngine, a Tiled server or the TwinCallback's monitor run threads while TensorFlow
    # starts; their messages still get through.
    code = """
import sys, threading, time
def talk():
    print("other thread starts", file=sys.stderr, flush=True)
    while "tensorflow" not in sys.modules:
        time.sleep(0.01)
    print("other thread while TensorFlow starts", file=sys.stderr, flush=True)
thread = threading.Thread(target=talk)
thread.start()
import bluesky_digitwin.tensorflow_runtime
thread.join()
print("done", file=sys.stderr)
"""
    started = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert started.returncode == 0, started.stderr
    _assert_quiet(started.stderr)
    assert started.stderr.splitlines() == [
        "other thread starts",
        "other thread while TensorFlow starts",
        "done",
    ]


@pytest.mark.slow
def test_digitwin_fit_with_a_worker_prints_no_tensorflow_start_up(tmp_path):
    smooth_table().to_csv(tmp_path / "scans.csv", index=False)
    digitwin = Path(sys.executable).with_name("digitwin")
    data = ["scans.csv", "--features", "x", "h", "--target", "y"]
    search = ["--trials", "2", "--workers", "2", "--ensemble", "1", "--seed", "0"]
    fit = subprocess.run(
        [str(digitwin), "fit", *data, *search, "--out", "twin"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert fit.returncode == 0, fit.stderr
    assert "saved twin" in fit.stdout
    _assert_quiet(fit.stderr)
    assert "Traceback" not in fit.stderr and "exited with an error" not in fit.stderr


#: A bluesky session as a script: scans, a TwinCallback training (with a search worker) behind.
CALLBACK_SCRIPT = """
import bluesky.plan_stubs as bps
from bluesky import RunEngine
from bluesky.plans import scan

from bluesky_digitwin import EnsembleRecipe, SearchSpace, TrainConfig
from bluesky_digitwin.callbacks import TwinCallback
from bluesky_digitwin.sim.devices import Magnetometer

RE = RunEngine({})
mag = Magnetometer(name="mag", seed=0, seconds_per_point=0)
cb = TwinCallback(
    ("T", "H"),
    "M",
    keys={"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"},
    work_dir="work",
    fit_options={
        "n_trials": 2,
        "n_workers": 2,
        "ensemble": EnsembleRecipe(size=1, refit_epochs=5),
        "seed": 0,
        "train_config": TrainConfig(max_epochs=20),
        "space": SearchSpace(n_layers=(2, 2), n_units=(16, 16), l2=None),
    },
)
RE.subscribe(cb)
for field in (1e4, 2e4, 3e4):
    RE(bps.mv(mag.field, field))
    RE(scan([mag], mag.temperature, 10, 60, 15))
twin = cb.wait(timeout=400)
print("twin", twin.id, cb.status.state)
cb.close()
"""


@pytest.mark.slow
def test_a_twin_callback_training_prints_no_tensorflow_start_up(tmp_path):
    script = tmp_path / "session.py"
    script.write_text(CALLBACK_SCRIPT)
    session = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert session.returncode == 0, session.stderr
    assert session.stdout.startswith("twin ") and "ready" in session.stdout, session.stdout
    _assert_quiet(session.stderr)
    assert "Traceback" not in session.stderr


WATCHER = """
import os, time
from bluesky_digitwin.processes import watch_parent

watch_parent(lambda: os._exit(7), interval=0.05)
print("watching", flush=True)
time.sleep(30)
"""


@pytest.mark.parametrize(("launcher", "orphaned"), [("me", False), ("gone", True)])
def test_a_child_ends_when_the_process_that_launched_it_is_gone(tmp_path, launcher, orphaned):
    # PARENT_ENV names who launched the child: this test (alive), or a process that is gone.
    env = {**subprocess_env(), PARENT_ENV: str(os.getpid() if launcher == "me" else 1)}
    child = subprocess.Popen(
        [sys.executable, "-c", WATCHER], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        if orphaned:
            assert child.wait(timeout=30) == 7  # on_orphaned ran, at its first look
        else:
            assert child.stdout.readline().strip() == "watching"
            with pytest.raises(subprocess.TimeoutExpired):
                child.wait(timeout=1)
    finally:
        child.kill()
        child.wait()


def test_a_process_that_skips_the_exit_collection_still_runs_its_exit_handlers(tmp_path):
    """What `digitwin` and each search worker do last: exit without collecting the heap, but
    with atexit handlers, finalizers (temporary directories) and the exit code as before."""
    script = f"""
import atexit, sys, tempfile, weakref
from pathlib import Path
from bluesky_digitwin.processes import skip_exit_collection

out = Path({str(tmp_path)!r})
atexit.register((out / "atexit").write_text, "ran")
kept = tempfile.TemporaryDirectory(dir=out)
(out / "tempdir").write_text(kept.name)
class Cycle:
    pass
cycle = Cycle()
cycle.self = cycle
weakref.finalize(cycle, (out / "finalized").write_text, "ran")
skip_exit_collection()
sys.exit(3)
"""
    done = subprocess.run([sys.executable, "-c", script], env=subprocess_env(), timeout=120)
    assert done.returncode == 3
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "finalized").read_text() == "ran"
    assert not Path((tmp_path / "tempdir").read_text()).exists()
