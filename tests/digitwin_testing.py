"""Helpers shared by the tests: small data sets and where the paper's data are."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: The paper's published data, used only when present (it carries no licence: never copied).
SHARED_DATA = Path(
    os.environ.get(
        "DIGITWIN_SHARED_DATA",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "mat_interp",
    )
)


def smooth_table(n_fast: int = 25, slow=(0.0, 0.5, 1.0, 1.5, 2.0), seed: int = 0) -> pd.DataFrame:
    """Sweeps of a smooth function along ``x`` at a few values of ``h``, slightly ragged."""
    rng = np.random.default_rng(seed)
    rows = []
    for h in slow:
        x = np.sort(rng.uniform(0.0, 1.0, n_fast))
        y = np.tanh(4 * (x - 0.3 - 0.2 * h)) + 0.5 * h
        rows.append(pd.DataFrame({"x": x, "h": h, "y": y}))
    return pd.concat(rows, ignore_index=True)


def two_network_fit() -> dict:
    """``DigitalTwin.fit`` options for a tiny twin of two networks that can disagree.

    Two 2 x 16 networks, 20 epochs, both trials complete (no pruner) and both join the ensemble
    (a huge tolerance): a twin in seconds whose spread is not zero.
    """
    import optuna

    from bluesky_digitwin import EnsembleRecipe, SearchSpace, SearchStrategy, TrainConfig

    return {
        "n_trials": 2,
        "n_workers": 1,
        "ensemble": EnsembleRecipe(size=2, retrain=False, tolerance=1e6, refit_epochs=5),
        "strategy": SearchStrategy(pruner=optuna.pruners.NopPruner()),
        "seed": 0,
        "train_config": TrainConfig(max_epochs=20),
        "space": SearchSpace(n_layers=(2, 2), n_units=(16, 16), l2=None),
    }


def subprocess_env() -> dict[str, str]:
    """Environment of a test's Python subprocess: these helpers importable, one TF thread."""
    tests = str(Path(__file__).resolve().parent)
    return {**os.environ, "PYTHONPATH": tests, "DIGITWIN_TF_THREADS": "1"}


def wait_for(condition, timeout: float, what: str, poll: float = 0.2):
    """Poll ``condition()`` until it returns something true, and return that."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def freeze_when(process, condition, timeout: float, what: str, settle: float = 0.5):
    """Wait until ``condition()`` holds, freeze ``process`` (SIGSTOP) with it still holding,
    and return ``condition()``'s value; the caller kills the process or resumes it (SIGCONT).

    Between a check and a kill the process may change what was checked (finish the trial a
    test means to kill mid-way), so the process is frozen, given ``settle`` seconds for a write
    it has already sent to land, and checked again; if it no longer holds, the process runs on
    and is waited for again. Not holding is ``None`` or ``False`` (0 holds: trial 0).
    """
    import signal
    import time

    def holds(value) -> bool:
        return value is not None and value is not False

    def frozen():
        if not holds(condition()):
            return None
        process.send_signal(signal.SIGSTOP)
        time.sleep(settle)
        value = condition()
        if holds(value):
            return [value]
        process.send_signal(signal.SIGCONT)
        return None

    (value,) = wait_for(frozen, timeout=timeout, what=what)
    return value


@dataclass
class Status:
    """A twin source's status: ``state`` and ``message``, as TwinCallback's."""

    state: str = "idle"
    message: str = ""


class SyncTwinSource:
    """TwinCallback's face; trains synchronously when a plan asks for a newer twin.

    ``train=False`` never trains (a search that is slow or stuck); ``on_ask`` is called the
    first time a plan asks.
    """

    def __init__(self, buffer: Any, *, train: bool = True, status: Status | None = None):
        self.buffer = buffer
        self.twin: Any = None
        self.status = status or Status()
        self.train = train
        self.fits = 0
        self.on_ask = None
        self._version = -1

    def __call__(self, name: str, doc: dict) -> None:
        self.buffer(name, doc)

    @property
    def twin_version(self) -> int:
        if self.on_ask is not None:
            self.on_ask, on_ask = None, self.on_ask
            on_ask()
        if self.train and self.buffer.version > self._version:
            self.retrain()
        return self._version

    def retrain(self) -> None:
        from bluesky_digitwin import DigitalTwin

        data = self.buffer.snapshot()
        self.status = Status("training")
        self.twin = DigitalTwin.fit(
            data, self.buffer.features, self.buffer.target,
            provenance={"run_uids": self.buffer.run_uids}, **two_network_fit(),
        )  # fmt: skip
        self._version = int(data.attrs["buffer_version"])
        self.fits += 1
        self.status = Status("ready")

    def wait(self, timeout: float | None = None) -> Any:
        return self.twin
