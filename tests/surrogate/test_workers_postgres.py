"""A distributed search on a real PostgreSQL server: a coordinator, two workers, one SIGKILLed.

The server is the one `.ci/start-postgres` starts on loopback; it exports
``DIGITWIN_TEST_POSTGRES_URL`` (no password in it) and ``PGPASSWORD``. Without them the test is
skipped on developer machines; CI sets ``DIGITWIN_REQUIRE_POSTGRES=1``, which turns the skip into
a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid

import numpy as np
import optuna
import pytest
from digitwin_testing import freeze_when, smooth_table, subprocess_env, wait_for

from bluesky_digitwin import DigitalTwin, make_grid
from bluesky_digitwin.surrogate.recovery import count_finished
from bluesky_digitwin.surrogate.search import STUDY_RECORD, open_storage

# Worker processes killed and restarted against a database server: end to end.
pytestmark = pytest.mark.slow

URL = os.environ.get("DIGITWIN_TEST_POSTGRES_URL")
if not URL:
    if os.environ.get("DIGITWIN_REQUIRE_POSTGRES") == "1":
        pytest.fail(
            "DIGITWIN_REQUIRE_POSTGRES=1 but DIGITWIN_TEST_POSTGRES_URL is not set: "
            "source .ci/start-postgres first",
            pytrace=False,
        )
    pytest.skip(
        "no PostgreSQL server: set DIGITWIN_TEST_POSTGRES_URL (source .ci/start-postgres)",
        allow_module_level=True,
    )

N_TRIALS = 6
#: The coordinator: creates the study with trials that last seconds (so a worker can be killed in
#: the middle of one), trains nothing itself (n_workers=0), then builds and saves the twin.
COORDINATOR = """
import sys
from bluesky_digitwin import DigitalTwin, EnsembleRecipe, RemoteWorkers, SearchSpace, TrainConfig

twin = DigitalTwin.fit(
    sys.argv[1],
    ["x", "h"],
    "y",
    n_trials=int(sys.argv[5]),
    n_workers=0,
    ensemble=EnsembleRecipe(size=2),
    seed=0,
    storage=sys.argv[2],
    study_name=sys.argv[3],
    space=SearchSpace(n_layers=(2, 3), n_units=(32, 64)),
    train_config=TrainConfig(max_epochs=150, patience=150, lr_drop_epoch=100, chunk_epochs=5),
    remote=RemoteWorkers(heartbeat_interval=1),
)
twin.save(sys.argv[4])
print("saved", twin.id)
"""


def _digitwin() -> list[str]:
    exe = shutil.which("digitwin")
    return [exe] if exe else [sys.executable, "-m", "bluesky_digitwin.cli"]


def _study(name: str) -> optuna.Study | None:
    storage = open_storage(URL, heartbeat_interval=None)
    if name not in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        return None
    study = optuna.load_study(study_name=name, storage=storage)
    return study if STUDY_RECORD in study.user_attrs else None


def test_a_killed_worker_costs_one_trial_and_the_twin_is_built(tmp_path):
    name = f"pg-{uuid.uuid4().hex[:10]}"
    table = tmp_path / "scans.csv"
    smooth_table().to_csv(table, index=False)
    out = tmp_path / "twin"
    logs = {key: open(tmp_path / f"{key}.log", "w+") for key in ("coord", "w0", "w1")}
    coordinator = subprocess.Popen(
        [sys.executable, "-c", COORDINATOR, str(table), URL, name, str(out), str(N_TRIALS)],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=logs["coord"],
        stderr=subprocess.STDOUT,
    )
    workers = []

    def start_worker(key: str) -> subprocess.Popen:
        # A worker joins with nothing but the storage and the study's name.
        command = [*_digitwin(), "worker", "--storage", URL, "--study", name, "--heartbeat", "1"]
        worker = subprocess.Popen(
            command, cwd=tmp_path, env=subprocess_env(), stdout=logs[key], stderr=subprocess.STDOUT
        )
        workers.append(worker)
        return worker

    try:
        wait_for(lambda: _study(name), timeout=120, what="the coordinator's study")
        # The victim joins first and alone: two workers started together race for six short
        # trials, and on a loaded machine the first to import TensorFlow can run them all before
        # the other holds one (CI saw that: the victim never had a trial to be killed in).
        victim = start_worker("w0")

        def running_trial_of_victim():
            study = _study(name)
            for trial in study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
            ):
                worker = trial.user_attrs.get("worker", {})
                # Mid-trial: it has trained and reported at least one chunk.
                if worker.get("pid") == victim.pid and trial.intermediate_values:
                    return trial.number
            return None

        # Frozen with its trial still running: ASHA may prune it between a look and the kill.
        try:
            killed = freeze_when(
                victim, running_trial_of_victim, timeout=300, what="a trial of worker 0"
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n{_logs(logs)}") from None
        # The second worker joins while the first is frozen mid-trial, then the first dies.
        start_worker("w1")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)

        assert coordinator.wait(timeout=600) == 0, _read(logs["coord"])
        assert workers[1].wait(timeout=120) == 0, _read(logs["w1"])
    finally:
        for proc in [coordinator, *workers]:
            proc.kill()
            proc.wait()

    study = _study(name)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    # The killed worker's trial was failed by the heartbeat check and run again, same params.
    assert trials[killed].state.name == "FAIL"
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1
    (retry,) = retries
    assert retry.params == trials[killed].params
    # The retry ran to the end, unless the other worker had finished the search's trials before
    # the killed one was found stale: then it waits in the study, and is not needed.
    if retry.state.name == "WAITING":
        assert count_finished(study) >= N_TRIALS
    else:
        assert retry.state.name in ("COMPLETE", "PRUNED")
    # It cost that trial only: the study holds its six finished trials besides the failure.
    assert count_finished(study) >= N_TRIALS
    # The trials ran in the workers, none in the coordinator.
    pids = {t.user_attrs["worker"]["pid"] for t in trials.values() if "worker" in t.user_attrs}
    assert pids <= {workers[0].pid, workers[1].pid} and len(pids) == 2
    # And the coordinator built the twin from the best trials, wherever they ran.
    twin = DigitalTwin.load(out)
    # Of two networks, or one when ASHA pruned all but one trial.
    assert twin.ensemble_size in (1, 2)
    grid = make_grid(x=np.linspace(0.1, 0.9, 5), h=[0.0, 1.0])
    assert np.isfinite(twin.predict(grid)["y"].values).all()
    # The worker printed what it did, and nobody printed the database password.
    password = os.environ.get("PGPASSWORD", "")
    for log in logs.values():
        text = _read(log)
        assert not password or password not in text
    assert "trials" in _read(logs["w1"])


def _logs(logs: dict) -> str:
    return "\n".join(f"--- {key}.log:\n{_read(log)}" for key, log in logs.items())


def _read(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()
