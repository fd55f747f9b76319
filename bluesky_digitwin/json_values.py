"""Values made fit for JSON: a start document, a summary printed with ``--json``, twin.json.

JSON has no NaN or infinity, no numpy scalars and no tuples: :func:`jsonable` turns a value of
Python and numpy types into numbers, strings, lists and dicts, with ``None`` for what is not a
finite number, so that ``json.dumps(..., allow_nan=False)`` never fails on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` made fit for JSON: numbers, strings, lists and dicts, ``None`` for NaN and
    infinities; the rest as its repr (devices, callables), as bluesky's own plans record
    their arguments."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None  # NaN is not JSON
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return repr(value)
