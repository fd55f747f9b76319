"""Figures: each function returns a Figure, labels it from the data, marks simulated data, and
never shows it."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import matplotlib
import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import PathCollection, QuadMesh
from matplotlib.figure import Figure

from bluesky_digitwin.analysis import suggest_step
from bluesky_digitwin.data import DigitwinInputError, make_grid
from bluesky_digitwin.plot import plot_entropy_change, plot_lines, plot_map, plot_step_table
from bluesky_digitwin.prediction import prediction_dataset
from bluesky_digitwin.resolution import UnresolvedStep
from bluesky_digitwin.sim import (
    FirstOrderMagnet,
    coarse_arpes,
    coarse_magnetization,
    coarse_resistance,
)

matplotlib.use("Agg")

MAGNET = FirstOrderMagnet()
TWIN_ID = "0123456789abcdef"


class FakeTwin:
    """The twin's interface over the exact model: instant, no training."""

    def __init__(self):
        self.features, self.target, self.id = ("T", "H"), "M", TWIN_ID
        self.units = {"T": "K", "H": "Oe", "M": "emu"}
        self.ranges = {"T": (10.0, 60.0), "H": (100.0, 50000.0)}

    def predict(self, points, *, warn=True):
        def evaluate(x, outside):
            return MAGNET.moment(x[:, 0], x[:, 1]), np.full(len(x), 1e-3)

        return prediction_dataset(
            points,
            self.features,
            self.target,
            self.units,
            self.ranges,
            evaluate,
            warn=warn,
            attrs={"twin_id": self.id},
        )


@pytest.fixture(scope="module")
def coarse() -> xr.Dataset:
    ds = coarse_magnetization(seed=0)
    return ds.isel(point=np.isin(ds["H"].values, [100.0, 10000.0, 50000.0]))


@pytest.fixture(scope="module")
def simulated() -> xr.Dataset:
    return FakeTwin().predict(make_grid(T=np.linspace(10, 60, 31), H=[100, 5000, 20000, 50000]))


@pytest.fixture(scope="module")
def suggestion():
    return suggest_step(
        FakeTwin(),
        "H",
        [0.1, 0.2, 0.5],
        candidate_units="T",
        quantity="magnetocaloric",
        over=np.linspace(10, 60, 41),
        mass=MAGNET.mass_g,
    )


def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


# -- lines ---------------------------------------------------------------------------------------


def test_lines_measured_and_simulated(coarse, simulated):
    fig = plot_lines(coarse, simulated, fast="T", slow="H")
    assert isinstance(fig, Figure)
    ax, colorbar = fig.axes  # the plot and the colour bar of the field
    assert len(ax.lines) == 3 + 4  # three measured fields, four simulated ones
    texts = legend_texts(ax)
    assert "measured on simulated ErCo2-like" in texts
    assert f"simulated by twin {TWIN_ID[:8]}" in texts
    # Units from attrs; the measured data's long names.
    assert ax.get_xlabel() == "temperature T (K)"
    assert ax.get_ylabel() == "magnetic moment M (emu)"
    assert colorbar.get_ylabel() == "magnetic field H (Oe)"
    # Measured points are markers only, simulated data lines only: told apart at a glance.
    measured, sim = ax.lines[0], ax.lines[-1]
    assert measured.get_linestyle() == "None" and measured.get_marker() == "o"
    assert sim.get_linestyle() == "-" and sim.get_marker() in ("None", "", None)
    assert len(ax.collections) == 4  # the ensemble spread around each simulated line


def test_lines_baseline_and_no_std(simulated):
    baseline = simulated.assign_attrs(method="linear", twin_id="")
    fig = plot_lines(simulated=simulated, baseline=baseline, fast="T", slow="H", show_std=False)
    ax = fig.axes[0]
    assert len(ax.lines) == 8
    assert not ax.collections
    assert "simulated by linear interpolation" in legend_texts(ax)
    assert ax.get_xlabel() == "T (K)"  # a prediction carries units, not long names


def test_lines_from_a_dataframe_and_into_given_axes(coarse, simulated):
    fig = Figure()
    ax = fig.add_subplot()
    frame = coarse.to_dataframe()[["T", "H", "M"]]
    assert plot_lines(frame, simulated["M"], fast="T", slow="H", ax=ax) is fig
    assert "measured" in legend_texts(ax)


def test_lines_errors(simulated):
    with pytest.raises(DigitwinInputError, match="measured data, simulated data or both"):
        plot_lines(fast="T", slow="H")
    with pytest.raises(DigitwinInputError, match="grid over"):
        plot_lines(simulated=simulated, fast="T", slow="X")


# -- maps ----------------------------------------------------------------------------------------


def test_map_of_a_prediction(simulated, coarse):
    fig = plot_map(simulated, measured=coarse)
    ax, colorbar = fig.axes
    assert any(isinstance(c, QuadMesh) for c in ax.collections)
    assert ax.get_title() == (
        f"simulated by twin {TWIN_ID[:8]}; dots: measured on simulated ErCo2-like"
    )
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("T (K)", "H (Oe)")
    assert colorbar.get_ylabel() == "M (emu)"
    assert len(ax.lines) == 1  # the measured positions
    assert plot_map(simulated).axes[0].get_title() == f"simulated by twin {TWIN_ID[:8]}"


def test_map_of_measured_points():
    arpes = coarse_arpes(seed=0)
    thetas = np.unique(arpes["theta"].values)[::20]
    small = arpes.isel(point=np.isin(arpes["theta"].values, thetas))
    ax = plot_map(small).axes[0]
    # A full grid of many lines is a mesh; a few ragged lines are markers.
    assert any(isinstance(c, QuadMesh) for c in ax.collections)
    assert ax.get_ylabel() == "secondary emission angle phi (deg)"
    ragged = plot_map(coarse_resistance(seed=0)).axes[0]
    assert any(isinstance(c, PathCollection) for c in ragged.collections)
    assert ragged.get_title() == "measured on simulated superconducting film"


def test_map_errors(simulated):
    cube = simulated["M"].expand_dims(extra=[1, 2])
    with pytest.raises(DigitwinInputError, match="2 dims"):
        plot_map(cube)


# -- the quantity per step and the step table -----------------------------------------------------


def test_entropy_change_per_step(suggestion):
    temperatures = suggestion.curves["T"]
    truth = xr.DataArray(np.ones(temperatures.size), coords={"T": temperatures}, dims="T")
    fig = plot_entropy_change(
        suggestion, truth=truth, compare={"linear": truth * 2}, twin_id=TWIN_ID
    )
    (ax,) = fig.axes
    n_steps = suggestion.curves.sizes["step"]  # the reference and three candidates
    assert len(ax.lines) == n_steps + 2
    texts = legend_texts(ax)
    assert f"{suggestion.step:g} T (suggested)" in texts
    assert "true value (model)" in texts and "linear" in texts
    assert ax.get_legend().get_title().get_text().startswith(f"simulated by twin {TWIN_ID[:8]}")
    assert ax.get_ylabel() == "|ΔS_M| (J/(kg K))"
    assert ax.get_xlabel() == "T (K)"
    # The suggestion is drawn boldest.
    widths = {line.get_label(): line.get_linewidth() for line in ax.lines}
    assert widths[f"{suggestion.step:g} T (suggested)"] == max(widths.values())


def test_entropy_change_of_one_curve_and_selected_steps(suggestion):
    fig = plot_entropy_change(suggestion, steps=[0.5])
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels[0].startswith("reference step")
    assert len(labels) == 2 + (suggestion.step != 0.5)
    curve = suggestion.curves.isel(step=1, drop=True).assign_attrs(twin_id=TWIN_ID)
    ax = plot_entropy_change(curve).axes[0]
    assert legend_texts(ax) == [f"simulated by twin {TWIN_ID[:8]}"]
    with pytest.raises(DigitwinInputError, match="plot_map"):
        plot_entropy_change(suggestion.curves.expand_dims(extra=[1, 2]))


def test_entropy_change_shades_the_steps_that_hold_a_jump(suggestion):
    steps = (
        UnresolvedStep("H", 100.0, "T", 34.5, 35.0, 0.73, 40.0),
        UnresolvedStep("H", 1000.0, "T", 35.0, 35.5, 0.69, 32.0),
    )
    ax = plot_entropy_change(dataclasses.replace(suggestion, unresolved_steps=steps)).axes[0]
    shaded = [p for p in ax.patches if p.get_x() != 0 or p.get_width() != 1]
    assert sorted((p.get_x(), p.get_x() + p.get_width()) for p in shaded) == [
        (34.5, 35.0),
        (35.0, 35.5),
    ]
    assert legend_texts(ax).count("a jump inside one measured T step") == 1
    # Given for a single curve; steps along another axis are not this curve's.
    curve = suggestion.curves.isel(step=1, drop=True)
    other = UnresolvedStep("T", 20.0, "H", 100.0, 500.0, 0.5, 5.0)
    ax = plot_entropy_change(curve, unresolved=[steps[0], other]).axes[0]
    assert "a jump inside one measured T step" in legend_texts(ax)
    assert len(ax.patches) == 1
    assert "a jump inside" not in " ".join(legend_texts(plot_entropy_change(suggestion).axes[0]))


def test_step_table(suggestion):
    fig = plot_step_table(suggestion, twin_id=TWIN_ID)
    ax, table_ax, time_ax = fig.axes  # errors, the table, the time (twin x-axis)
    assert table_ax.tables and len(table_ax.tables[0].get_celld()) == 6 * (
        len(suggestion.table) + 1
    )
    assert time_ax.get_ylabel().startswith("estimated measurement time")
    assert ax.get_xlabel() == "step of H (T)"
    assert ax.get_ylabel() == "error of the quantity (%)"
    texts = legend_texts(ax)
    assert "tol 2.5%" in texts
    assert any(t.startswith(f"suggested: {suggestion.step:g} T") for t in texts)
    assert TWIN_ID[:8] in ax.get_title()
    assert len(plot_step_table(suggestion, table=False).axes) == 2


def test_step_table_without_a_suggestion(suggestion):
    strict = suggest_step(
        FakeTwin(),
        "H",
        [0.1, 0.2],
        candidate_units="T",
        quantity="magnetocaloric",
        over=np.linspace(10, 60, 41),
        mass=MAGNET.mass_g,
        tol=1e-9,
    )
    assert strict.step is None
    ax = plot_step_table(strict).axes[0]
    assert "no candidate meets tol" in [t.get_text() for t in ax.texts]


# -- figures are only returned: saved, never shown ------------------------------------------------


def all_figures(coarse, simulated, suggestion) -> list[Figure]:
    return [
        plot_lines(coarse, simulated, fast="T", slow="H"),
        plot_map(simulated),
        plot_map(coarse),
        plot_entropy_change(suggestion),
        plot_step_table(suggestion),
    ]


def test_never_shown_and_saved_as_png(coarse, simulated, suggestion, monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    def refuse(*args, **kwargs):
        raise AssertionError("library code called show()")

    monkeypatch.setattr(plt, "show", refuse)
    monkeypatch.setattr(Figure, "show", refuse)
    assert matplotlib.get_backend().lower() == "agg"
    for i, fig in enumerate(all_figures(coarse, simulated, suggestion)):
        path = tmp_path / f"figure-{i}.png"
        fig.savefig(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5000
    assert not plt.get_fignums()  # no pyplot figure was opened


def test_headless_without_pyplot(tmp_path):
    """No pyplot, no backend chosen: the figures still render to PNG."""
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from bluesky_digitwin.plot import plot_map
        from bluesky_digitwin.sim import coarse_resistance

        fig = plot_map(coarse_resistance(seed=0))
        fig.savefig({str(tmp_path / "map.png")!r})
        assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY")}
    # cwd away from a source checkout, which `-c` would put first on sys.path.
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120, cwd=tmp_path)
    assert (tmp_path / "map.png").stat().st_size > 0


def test_clear_error_without_matplotlib(simulated, monkeypatch):
    # A None entry in sys.modules makes "import matplotlib" fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "bluesky-digitwin\[plot\]"'):
        plot_map(simulated)
