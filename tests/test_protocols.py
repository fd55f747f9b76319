"""The faces the rooms meet by (bluesky_digitwin.protocols): who has them, and the states."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from digitwin_testing import smooth_table, two_network_fit

from bluesky_digitwin import DigitalTwin
from bluesky_digitwin.analysis.baselines import LinearInterpolator, RBFBaseline
from bluesky_digitwin.buffer import ScanBuffer
from bluesky_digitwin.callbacks import TwinCallback
from bluesky_digitwin.protocols import TWIN_STATES, TwinSource

ROOT = Path(__file__).resolve().parents[1]
#: What a plan and the analysis ask of a twin (bluesky_digitwin.protocols.Twin).
TWIN_FACE = ("features", "target", "units", "ranges", "predict")


@pytest.fixture(scope="module")
def table():
    return smooth_table()


def test_a_digital_twin_and_the_baselines_have_a_twins_face(table):
    twin = DigitalTwin.fit(table, ["x", "h"], "y", **two_network_fit())
    for model in (
        twin,
        LinearInterpolator.fit(table, ["x", "h"], "y"),
        RBFBaseline.fit(table, ["x", "h"], "y"),
    ):
        for name in TWIN_FACE:
            assert hasattr(model, name), (type(model).__name__, name)
        predicted = model.predict({"x": np.array([0.5]), "h": np.array([1.0])}, warn=False)
        assert {"y", "y_std", "outside_range"} <= set(predicted.variables)
    assert twin.predict_members({"x": [0.5], "h": [1.0]}).sizes["member"] == 2


def test_a_twin_callback_is_a_twin_source_and_says_a_known_state(tmp_path):
    callback = TwinCallback(("x", "h"), "y", work_dir=tmp_path / "work")
    try:
        assert isinstance(callback, TwinSource)
        assert isinstance(callback.buffer, ScanBuffer)
        assert callback.status.state in TWIN_STATES
    finally:
        callback.close()
    assert callback.status.state == "closed"


def _compared_states(path: Path) -> list[tuple[int, str]]:
    """String literals a file compares with a ``.state``/``state`` or publishes as one."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            names = [node.left, *node.comparators]
            if any(
                (isinstance(n, ast.Attribute) and n.attr == "state")
                or (isinstance(n, ast.Name) and n.id == "state")
                for n in names
            ):
                for n in names:
                    values = n.elts if isinstance(n, (ast.Tuple, ast.List, ast.Set)) else [n]
                    found += [(v.lineno, v.value) for v in values if isinstance(v, ast.Constant)]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("_publish", "_block")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


#: Where a status' state is compared or published, and whether this file does either.
STATE_READERS = [
    ("callbacks/training.py", True),
    ("callbacks/twin.py", False),
    ("callbacks/plot.py", True),
    ("plans/stubs.py", True),
    ("bluesky_digitwin/demo.py", True),
]


@pytest.mark.parametrize(("path", "compares"), STATE_READERS)
def test_every_state_a_room_compares_with_is_a_twin_state(path, compares):
    states = _compared_states(ROOT / path)
    unknown = [(line, state) for line, state in states if state not in TWIN_STATES]
    assert not unknown, f"{path}: states that are no TwinState: {unknown}"
    assert bool(states) == compares  # the scan finds them: the test can fail
