"""A model against a reference, on the target and on |ΔS_M| (bluesky_digitwin.analysis.compare)."""

from __future__ import annotations

import json

import pytest

from bluesky_digitwin.analysis.baselines import LinearInterpolator, SplineInterpolator
from bluesky_digitwin.analysis.compare import (
    EntropyAt,
    MagnetocaloricSetup,
    compare_models,
)
from bluesky_digitwin.data import DigitwinInputError
from bluesky_digitwin.sim.materials import coarse_magnetization

SETUP = MagnetocaloricSetup(
    "T", "H", field_units="Oe", magnetization_units="emu", mass=0.6, mass_units="mg", at=(3.0, 5.0)
)


@pytest.fixture(scope="module")
def coarse():
    return coarse_magnetization(seed=0)


@pytest.fixture(scope="module")
def models(coarse):
    return [
        ("linear", LinearInterpolator.fit(coarse, ["T", "H"], "M"), "exact at the data"),
        ("spline", SplineInterpolator.fit(coarse, ["T", "H"], "M"), "exact at the data"),
    ]


def test_interpolators_scored_on_their_own_points_are_exact(coarse, models):
    comparison = compare_models(models, ["T", "H"], "M", reference=coarse, magnetocaloric=SETUP)
    assert [m.name for m in comparison.models] == ["linear", "spline"]
    for score in comparison.models:
        assert score.target_rmse == pytest.approx(0.0, abs=1e-12)
        assert score.n_outside == 0
        assert set(score.entropy_change) == {"3", "5"}
        for entry in score.entropy_change.values():
            assert entry.rmse == pytest.approx(0.0, abs=1e-9)
            assert entry.peak > 0
    # The reference's own peaks: the same computation on the same points.
    for change, entry in comparison.reference_entropy_change.items():
        assert entry.peak == pytest.approx(comparison.models[0].entropy_change[change].peak)


def test_against_another_measurement_the_errors_are_real(coarse, models):
    # A second draw of the noise, as a "fine" measurement of the same material.
    other = coarse_magnetization(seed=1)
    comparison = compare_models(models, ["T", "H"], "M", reference=other, magnetocaloric=SETUP)
    linear = comparison.models[0]
    assert 0 < linear.target_rmse < 1e-5  # noise of 1 µemu, drawn twice
    assert all(e.rmse > 0 for e in linear.entropy_change.values())


def test_without_a_reference_the_peaks_are_taken_on_a_dense_grid(models):
    comparison = compare_models(models, ["T", "H"], "M", magnetocaloric=SETUP)
    row = comparison.models[0].to_dict()
    assert row.keys() == {"model", "fit", "entropy_change"}  # no reference: no RMSE
    assert row["entropy_change"]["5"].keys() == {"peak"}
    assert comparison.reference_entropy_change is None
    json.dumps(row, allow_nan=False)


def test_the_json_of_a_score(coarse, models):
    row = compare_models(models, ["T", "H"], "M", reference=coarse).models[1].to_dict()
    assert row.keys() == {"model", "fit", "target_rmse", "n_outside"}
    assert EntropyAt(1.5, 0.1).to_dict() == {"peak": 1.5, "rmse": 0.1}


def test_a_field_change_the_data_do_not_reach_is_one_clear_error(coarse, models):
    setup = MagnetocaloricSetup("T", "H", field_units="Oe", magnetization_units="emu",
                                mass=0.6, mass_units="mg", at=(9.0,))  # fmt: skip
    with pytest.raises(DigitwinInputError, match="no field change of 9 T in the grid"):
        compare_models(models, ["T", "H"], "M", reference=coarse, magnetocaloric=setup)
