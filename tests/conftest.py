"""Shared fixtures: small data sets that train in a second or two."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

# Test the installed package, not the source tree: from a checkout's root, `python -m pytest`
# puts the root on sys.path, where bluesky_digitwin lacks plans/ and callbacks/ (they install
# into it from the top-level folders, the layout of docs/architecture.md).
_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != _ROOT]

from digitwin_testing import SHARED_DATA, smooth_table  # noqa: E402

# Quiet TensorFlow's C++ logging in every test process, including spawned search workers.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = ["SHARED_DATA", "smooth_table"]


@pytest.fixture
def table() -> pd.DataFrame:
    return smooth_table()


@pytest.fixture
def csv_path(tmp_path: Path, table: pd.DataFrame) -> Path:
    path = tmp_path / "scans.csv"
    table.to_csv(path, index=False)
    return path
