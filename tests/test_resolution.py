"""Finding a jump inside one step of a measured line: where no interpolator knows a derivative."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bluesky_digitwin.resolution import (
    UnresolvedStep,
    find_unresolved_steps,
    unresolved_steps_message,
)
from bluesky_digitwin.sim import FirstOrderMagnet, MovingTransitionMagnet
from bluesky_digitwin.sim.materials import ERCO2_FIELDS_OE, coarse_resistance, isofield_scans


def columns(data, features=("T", "H"), target="M"):
    return np.column_stack([data[f].values for f in features]), data[target].values


def test_a_first_order_jump_between_two_temperatures_is_found_where_it_is():
    magnet = FirstOrderMagnet()
    data = isofield_scans(magnet, ERCO2_FIELDS_OE, np.linspace(10.0, 60.0, 101), seed=0)
    x, y = columns(data)
    steps = find_unresolved_steps(x, y, ["T", "H"])
    # The low fields, where the transition is first order and narrower than the 0.5 K step;
    # at 2 T and above it is spread over many steps.
    assert [s.line for s in steps] == [100.0, 1000.0, 5000.0, 10000.0]
    for step in steps:
        assert (step.line_feature, step.along) == ("H", "T")
        assert step.stop - step.start == pytest.approx(0.5)
        assert step.share >= 0.25 and step.dominance >= 3
        # The jump of the true moment lies inside the step found.
        fine = np.linspace(step.start - 2, step.stop + 2, 4001)
        true = magnet.moment(fine, np.full_like(fine, step.line))
        assert step.start <= fine[np.argmax(np.abs(np.diff(true)))] <= step.stop


@pytest.mark.parametrize("eta", [0.5, 1.0])
@pytest.mark.parametrize("noise", [1e-6, 1e-3])
def test_a_continuous_transition_at_the_same_step_has_none(eta, noise):
    """η ≤ 1: the same magnet without the discontinuity (second order) is resolved at 0.5 K,
    also under noise of about 1 % of its range (five draws)."""
    magnet = FirstOrderMagnet(eta=eta)
    for seed in range(5):
        data = isofield_scans(
            magnet, ERCO2_FIELDS_OE, np.linspace(10.0, 60.0, 101), noise=noise, seed=seed
        )
        assert find_unresolved_steps(*columns(data), ["T", "H"]) == []


@pytest.mark.parametrize(
    "data, target",
    [
        # A continuous transition that moves with the field (7 temperature steps wide).
        (
            isofield_scans(
                MovingTransitionMagnet(), [100.0, 5e3, 1e4, 3e4], np.linspace(40, 250, 161), seed=0
            ),
            "M",
        ),
        # The paper's noisy superconducting film: sharp crossings, resolved by the 0.05 K step.
        (coarse_resistance(seed=0), "R"),
    ],
    ids=["moving transition", "noisy superconductor"],
)
def test_smooth_or_noisy_lines_have_none(data, target):
    assert find_unresolved_steps(*columns(data, target=target), ["T", "H"]) == []


def test_a_lone_outlier_is_not_a_jump():
    t = np.linspace(0.0, 10.0, 50)
    x = np.column_stack([np.tile(t, 3), np.repeat([0.0, 1.0, 2.0], t.size)])
    y = np.tile(np.tanh(t - 5), 3)
    y[10] += 5.0  # out and back inside a line
    y[3 * t.size - 1] -= 5.0  # the very last point of the last line
    assert find_unresolved_steps(x, y, ["t", "h"]) == []
    # A true jump on the middle line is found, between the right two points.
    y[t.size + 30 :] += 5.0 * (np.arange(2 * t.size - 30) < t.size - 30)
    (step,) = find_unresolved_steps(x, y, ["t", "h"])
    assert (step.line, step.start, step.stop) == (1.0, t[29], t[30])


def test_points_that_are_not_scan_lines_have_none():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(300, 2))
    y = (x[:, 0] > 0.5).astype(float)  # a jump, but no lines to place it on
    assert find_unresolved_steps(x, y, ["a", "b"]) == []


def test_a_step_is_recorded_and_told_with_its_units():
    step = UnresolvedStep("H", 1000.0, "T", 32.692, 33.963, 0.77, 22.9)
    assert UnresolvedStep.from_dict(step.to_dict()) == step
    assert step.summary({"H": "Oe", "T": "K"}) == (
        "H = 1000 Oe: 77 % of the line's change between T = 32.692 and 33.963 K"
    )
    message = unresolved_steps_message(
        [UnresolvedStep("H", 100.0, "T", 32.7, 33.6, 0.73, 9.0), step], "M", {"H": "Oe", "T": "K"}
    )
    assert message.startswith(
        "M jumps within one step of T on 2 line(s) (H = 100, 1000 Oe; the largest, 77 % of its "
        "line's change, between T = 32.692 and 33.963 K)"
    )
    assert "finer T step around the jump" in message


def test_a_jump_on_an_otherwise_flat_line_is_recorded_without_infinities():
    """Counts that do not change but at one step: every other step is zero."""
    t = np.arange(20.0)
    x = np.column_stack([np.tile(t, 3), np.repeat([0.0, 1.0, 2.0], t.size)])
    y = np.tile(np.where(t < 10, 5.0, 9.0), 3)
    steps = find_unresolved_steps(x, y, ["t", "h"])
    found = [(s.start, s.stop, s.share, s.dominance) for s in steps]
    assert found == [(9.0, 10.0, 1.0, np.inf)] * 3
    recorded = json.loads(json.dumps(steps[0].to_dict(), allow_nan=False))
    assert recorded["dominance"] is None
    assert UnresolvedStep.from_dict(recorded) == steps[0]
