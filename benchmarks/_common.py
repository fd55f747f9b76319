"""Shared helpers of the benchmarks: where the paper's data is, and how results are printed."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

#: The paper's published datasets (no licence: read in place, never copied into the repo).
SHARED_DATA = Path(
    os.environ.get(
        "DIGITWIN_SHARED_DATA",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "mat_interp",
    )
)

#: Sample mass of the ErCo2 measurement (SOURCE.md), in grams.
ERCO2_MASS_G = 0.61e-3


#: The installed ``digitwin`` command of this interpreter, as a user starts it; the environment
#: variable DIGITWIN_EXECUTABLE times another (e.g. the ``bin/digitwin`` of an install of
#: another commit made with ``pip install --target``, its package put first by PYTHONPATH).
DIGITWIN = os.environ.get("DIGITWIN_EXECUTABLE", str(Path(sys.executable).with_name("digitwin")))


def run_cold(command: list[str], cwd: str) -> tuple[float, str]:
    """Run ``command`` as a new process: its wall time and its standard output.

    Exits with the command's output when it fails: a benchmark of a failed run measures
    nothing.
    """
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} ... failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def require_shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        sys.exit(f"benchmark needs {path}; set DIGITWIN_SHARED_DATA to the mat_interp folder")
    return path


def erco2_coarse() -> pd.DataFrame:
    """ErCo2 coarse M(T) at 8 fields: columns T (K), H (Oe), M (emu)."""
    frame = pd.read_csv(require_shared("traindata_Section3_1.csv"))
    return frame.set_axis(["T", "H", "M"], axis=1)


def erco2_fine() -> pd.DataFrame:
    """ErCo2 fine-step validation measurement: columns T (K), H (Oe), M (emu)."""
    frame = pd.read_csv(require_shared("experimental/fine_step.csv"))
    return frame.rename(columns={"t": "T", "h": "H", "m": "M"})[["T", "H", "M"]]


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {cores} cores, Python {platform.python_version()}"


def timed_event_path(
    callback: Callable[[str, dict], None], doc_path: list[float], every_other: bool = False
) -> Callable[[str, dict], None]:
    """``callback`` wrapped to time its event path into ``doc_path``.

    With ``every_other`` the even events are not given to it at all, so that the gaps after
    events it took and after events it skipped can be compared within one scan.
    """

    def call(name: str, doc: dict) -> None:
        if name != "event":
            callback(name, doc)
            return
        if every_other and doc["seq_num"] % 2 == 0:
            return
        start = time.perf_counter()
        callback(name, doc)
        doc_path.append(time.perf_counter() - start)

    return call


def fit_options_from_json(options: dict[str, Any]) -> dict[str, Any]:
    """``DigitalTwin.fit`` options read from JSON.

    ``train_config``, ``space``, ``ensemble`` and ``strategy`` may be given as objects of the
    fields of :class:`TrainConfig`, :class:`SearchSpace`, :class:`EnsembleRecipe` (``{"retrain":
    false, "size": 5}`` is the paper's) and :class:`SearchStrategy`. The flat names ``fit``
    took before its settings were grouped (``ensemble_size``, ``refit_epochs``, ``holdout``,
    ...; ``bluesky_digitwin.fit_settings.MOVED_KEYWORDS``) are put into their objects, so the
    commands recorded in RESULTS.md keep meaning what they meant. The rest are passed as they are.
    """
    from bluesky_digitwin import EnsembleRecipe, SearchSpace, SearchStrategy, TrainConfig

    options = dict(options)
    flat = {
        "ensemble": {
            "ensemble_size": "size",
            "ensemble_tolerance": "tolerance",
            "refit_epochs": "refit_epochs",
        },
        "strategy": {"validation_fraction": "validation_fraction", "holdout": "holdout"},
    }
    for group, names in flat.items():
        moved = {field: options.pop(name) for name, field in names.items() if name in options}
        if moved:
            options[group] = {**dict(options.get(group) or {}), **moved}
    kinds = {
        "train_config": TrainConfig,
        "ensemble": EnsembleRecipe,
        "strategy": SearchStrategy,
        "space": SearchSpace,
    }
    for name, kind in kinds.items():
        if isinstance(options.get(name), dict):
            fields = {k: tuple(v) if isinstance(v, list) else v for k, v in options[name].items()}
            options[name] = kind(**fields)
    return options


def peak_memory_mib() -> dict[str, float]:
    """Peak resident memory of this process and of its largest finished child, MiB (Linux).

    A child's peak includes the fork of this process that multiprocessing's spawn makes before
    it runs a new interpreter, so it is at least this process's size at that moment.
    """
    import resource

    return {
        "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
