"""Helpers shared by the tests: small data sets and where the paper's data are."""

from __future__ import annotations

import os
from pathlib import Path

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
