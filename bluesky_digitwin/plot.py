"""Figures of measured and simulated scans, derived quantities and step suggestions.

Every function returns a :class:`matplotlib.figure.Figure` and never calls ``show()``: save it
(``fig.savefig("lines.png")``) or let a notebook display it. Figures are built from
:class:`~matplotlib.figure.Figure` itself rather than through ``pyplot``, so they work headless
without choosing a backend, and a script making many of them keeps no global figure state. Pass
``ax=`` to draw into an axes of a figure of your own instead.

Simulated data is always told apart from measurements (Terashima et al., Digital Discovery 2
(2023) 339, §3.5): measured points are drawn as open markers, simulated data as lines, and the
legend or title names where the simulation came from, e.g. "simulated by twin 3f2a9c1e" or
"simulated by linear interpolation". Data from one of the package's simulated materials
(``attrs["source"]`` of ``bluesky_digitwin.sim``) is labelled as such, too.

Axis labels come from the data: ``attrs["long_name"]`` (or the variable's name) and
``attrs["units"]``.

matplotlib is an optional dependency: ``pip install "bluesky-digitwin[plot]"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bluesky_digitwin.analysis.steps import StepSuggestion
from bluesky_digitwin.analysis.time_model import format_duration
from bluesky_digitwin.data import DigitwinInputError, as_dataset
from bluesky_digitwin.plot_style import (
    MEASURED_STYLE,
    SIMULATED_STYLE,
    axis_label,
    origin_label,
    require_matplotlib,
    root_figure,
)
from bluesky_digitwin.resolution import UnresolvedStep
from bluesky_digitwin.scan_lines import line_indices

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_entropy_change", "plot_lines", "plot_map", "plot_step_table"]

#: Point data is drawn as a mesh, not as markers, when it fills this share of its grid...
_MIN_GRID_FILL = 0.25
#: ... and has at least this many distinct values along each axis.
_MIN_GRID_LINES = 20
_BASELINE_STYLE = {"linestyle": "--", "linewidth": 1.0}
_TRUTH_STYLE = {"color": "black", "linestyle": ":", "linewidth": 2.0}

Table = xr.Dataset | pd.DataFrame


# -- helpers -------------------------------------------------------------------------------------


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """The caller's axes and its figure, or a new figure (no pyplot) with one axes."""
    require_matplotlib()
    from matplotlib.figure import Figure

    if ax is not None:
        return root_figure(ax), ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _measured_label(ds: xr.Dataset) -> str:
    """The label of measured data, saying so when the "measurement" ran on a simulated material."""
    source = str(ds.attrs.get("source", ""))
    if source.startswith("bluesky_digitwin.sim"):
        material = ds.attrs.get("material") or source.rsplit(".", 1)[-1]
        return f"measured on simulated {material}"
    return "measured"


def _is_simulated(obj: xr.DataArray | xr.Dataset) -> bool:
    return obj.attrs.get("data_origin") == "simulated" or bool(obj.attrs.get("twin_id"))


def _points(data: Table, names: Sequence[str]) -> xr.Dataset:
    """Point data (Dataset along ``point`` or DataFrame) with ``names`` checked to exist."""
    ds = as_dataset(data) if isinstance(data, pd.DataFrame) else data
    if not isinstance(ds, xr.Dataset):
        raise DigitwinInputError(
            f"expected an xarray Dataset or a pandas DataFrame, got {type(data).__name__}"
        )
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise DigitwinInputError(
            f"no variable {missing[0]!r} in the data; it has {', '.join(map(str, ds.variables))}"
        )
    return ds


def _target_of(ds: xr.Dataset, target: str | None) -> str:
    """The plotted quantity: given, or the variable with a ``<name>_std`` partner, or the last."""
    if target is not None:
        if target not in ds.data_vars:
            raise DigitwinInputError(
                f"no variable {target!r} in the data; it has {', '.join(map(str, ds.data_vars))}"
            )
        return target
    names = [str(n) for n in ds.data_vars]
    paired = [n for n in names if f"{n}_std" in names]
    if paired:
        return paired[0]
    candidates = [n for n in names if n != "outside_range" and not n.endswith("_std")]
    if not candidates:
        raise DigitwinInputError("the data has no variable to plot; pass target=...")
    # Scan tables list the axes first and the measured quantity last (T, H, M).
    return candidates[-1]


def _gridded(da: xr.DataArray, fast: str, slow: str) -> xr.DataArray:
    """``da`` with dims (slow, fast); a scalar slow coordinate becomes a dimension of one."""
    if slow not in da.dims and slow in da.coords and da[slow].ndim == 0:
        da = da.expand_dims(slow)
    if set(da.dims) != {fast, slow}:
        raise DigitwinInputError(
            f"simulated data must be a grid over ({fast!r}, {slow!r}), e.g. a twin's prediction "
            f"on make_grid({fast}=..., {slow}=...); got dims {da.dims}"
        )
    return da.transpose(slow, fast)


def _as_array(data: xr.Dataset | xr.DataArray, target: str | None) -> xr.DataArray:
    if isinstance(data, xr.DataArray):
        return data
    name = _target_of(data, target)
    # Keep the Dataset's attrs (twin_id, data_origin) on the variable plotted.
    return data[name].assign_attrs({**data.attrs, **data[name].attrs})


# -- measured and simulated lines ----------------------------------------------------------------


def plot_lines(
    measured: Table | None = None,
    simulated: xr.Dataset | xr.DataArray | None = None,
    *,
    fast: str,
    slow: str,
    target: str | None = None,
    baseline: xr.Dataset | xr.DataArray | None = None,
    show_std: bool = True,
    measured_label: str | None = None,
    cmap: str = "viridis",
    ax: Axes | None = None,
) -> Figure:
    """Measured scan lines as markers and simulated lines over them, coloured by the slow axis.

    Parameters
    ----------
    measured
        Point data (an xarray Dataset along ``point`` or a DataFrame) with ``fast``, ``slow``
        and ``target``, e.g. the coarse scans a twin learned.
    simulated
        A twin's prediction on a grid over ``fast`` and ``slow`` (``twin.predict(make_grid(...))``)
        or a DataArray of it. Drawn as solid lines, with a band of ± the ensemble spread
        (``<target>_std``) when ``show_std``.
    fast, slow
        The swept axis (x) and the stepped axis (one line per value, by colour).
    target
        The quantity; by default the predicted variable or the last variable of ``measured``.
    baseline
        Another simulation on a grid, e.g. of a
        :class:`~bluesky_digitwin.analysis.LinearInterpolator`; drawn dashed.
    show_std
        Shade the ensemble spread of ``simulated``.
    measured_label
        Legend entry of the measured points (default "measured", or "measured on simulated
        <material>" for data from :mod:`bluesky_digitwin.sim`).
    cmap
        Colour map of the slow axis.
    ax
        Draw into this axes instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with the lines and a colour bar of the slow axis.
    """
    if measured is None and simulated is None:
        raise DigitwinInputError("give measured data, simulated data or both")
    fig, ax = _figure_and_axes(ax, (7.0, 4.5))
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    sim = None
    if simulated is not None:
        sim = _gridded(_as_array(simulated, target), fast, slow)
        target = target or str(sim.name)
    base = None
    if baseline is not None:
        base = _gridded(_as_array(baseline, target), fast, slow)
    meas = None
    if measured is not None:
        meas = _points(measured, [fast, slow])
        target = _target_of(meas, target)
        _points(meas, [target])

    slow_values = []
    if meas is not None:
        slow_values.append(np.asarray(meas[slow].values, dtype=float))
    for grid in (sim, base):
        if grid is not None:
            slow_values.append(np.asarray(grid[slow].values, dtype=float))
    every = np.concatenate(slow_values)
    norm = Normalize(float(np.nanmin(every)), float(np.nanmax(every)))
    colours = ScalarMappable(norm=norm, cmap=cmap)
    handles = []

    if meas is not None:
        x = np.asarray(meas[fast].values, dtype=float)
        s = np.asarray(meas[slow].values, dtype=float)
        y = np.asarray(meas[target].values, dtype=float)
        for idx in line_indices(s):
            idx = idx[np.argsort(x[idx], kind="stable")]
            ax.plot(x[idx], y[idx], color=colours.to_rgba(s[idx[0]]), **MEASURED_STYLE)
        label = measured_label or _measured_label(meas)
        handles.append(Line2D([], [], color="0.3", label=label, **MEASURED_STYLE))
    if base is not None:
        for value, line in zip(base[slow].values, base.values, strict=True):
            ax.plot(base[fast].values, line, color=colours.to_rgba(value), **_BASELINE_STYLE)
        handles.append(Line2D([], [], color="0.3", label=origin_label(base), **_BASELINE_STYLE))
    if sim is not None:
        std = None
        if show_std and isinstance(simulated, xr.Dataset) and f"{sim.name}_std" in simulated:
            std = _gridded(simulated[f"{sim.name}_std"], fast, slow).values
        x = np.asarray(sim[fast].values, dtype=float)
        for i, (value, line) in enumerate(zip(sim[slow].values, sim.values, strict=True)):
            colour = colours.to_rgba(value)
            ax.plot(x, line, color=colour, **SIMULATED_STYLE)
            if std is not None and np.any(std[i] > 0):
                ax.fill_between(x, line - std[i], line + std[i], color=colour, alpha=0.2, lw=0)
        handles.append(Line2D([], [], color="0.3", label=origin_label(sim), **SIMULATED_STYLE))
        if std is not None and np.any(std > 0):
            handles.append(Patch(label="± ensemble spread (simulated)", color="0.3", alpha=0.2))

    # Measured data usually carries long names; predictions carry units.
    sources = [g for g in (meas, sim, base) if g is not None]
    ax.set_xlabel(axis_label(fast, *(g[fast] for g in sources)))
    ax.set_ylabel(
        axis_label(str(target), *(g if isinstance(g, xr.DataArray) else g[target] for g in sources))
    )
    fig.colorbar(colours, ax=ax, label=axis_label(slow, *(g[slow] for g in sources)))
    ax.legend(handles=handles, loc="best", fontsize="small")
    return fig


# -- maps ----------------------------------------------------------------------------------------


def plot_map(
    data: xr.Dataset | xr.DataArray | pd.DataFrame,
    *,
    x: str | None = None,
    y: str | None = None,
    target: str | None = None,
    title: str | None = None,
    measured: Table | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    ax: Axes | None = None,
) -> Figure:
    """An intensity map of a 2-D prediction or of measured points, with a colour bar.

    A grid (a twin's prediction, a 2-D DataArray) is drawn with ``pcolormesh``, each cell
    centred on its coordinates. Point data (a Dataset along ``point`` or a DataFrame) is drawn as
    a mesh too when it is a fairly full grid of at least 20 values along each axis (e.g. an ARPES
    map; missing cells stay blank), and otherwise as coloured markers, so that a few scan lines
    do not look like a measured area.

    Parameters
    ----------
    data
        The map: a gridded Dataset or DataArray, or point data.
    x, y
        The horizontal and vertical axes. Default: for a grid its dims in order, for point data
        the first two variables other than ``target``.
    target
        The plotted quantity; default the predicted variable, or the last variable of point data.
    title
        Default: where the data came from ("simulated by twin 3f2a9c1e", "measured").
    measured
        Point data whose ``x`` and ``y`` are marked on the map as small dots (and named in the
        title): where a simulated map was measured, and so where it only interpolates.
    cmap, vmin, vmax
        Colours and their limits (default: the data's range).
    ax
        Draw into this axes instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with the map and a colour bar.
    """
    fig, ax = _figure_and_axes(ax, (6.5, 4.8))
    if isinstance(data, pd.DataFrame):
        data = as_dataset(data)
    if isinstance(data, xr.DataArray) or any(d != "point" for d in data.dims):
        da = _as_array(data, target)
        if da.ndim != 2:
            raise DigitwinInputError(f"a map needs 2 dims, got {da.dims}")
        x = x or str(da.dims[0])
        y = y or next(str(d) for d in da.dims if d != x)
        da = da.transpose(y, x)
        mesh = ax.pcolormesh(
            da[x].values,
            da[y].values,
            da.values,
            shading="nearest",
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            rasterized=True,
        )
        xs, ys, values = da[x], da[y], da
        origin = origin_label(da) if _is_simulated(da) else "measured"
    else:
        name = _target_of(data, target)
        axes = [str(n) for n in data.data_vars if n != name]
        x = x or axes[0]
        y = y or next(n for n in axes if n != x)
        _points(data, [x, y, name])
        xs, ys, values = data[x], data[y], data[name]
        mesh = _point_map(ax, xs.values, ys.values, values.values, cmap, vmin, vmax)
        origin = origin_label(data) if _is_simulated(data) else _measured_label(data)
    if measured is not None:
        points = _points(measured, [x, y])
        # White dots ringed in black show on light and dark colours alike.
        ax.plot(
            points[x].values,
            points[y].values,
            linestyle="none",
            marker="o",
            markersize=1.8,
            markerfacecolor="white",
            markeredgecolor="black",
            markeredgewidth=0.3,
            label=_measured_label(points),
        )
        origin += f"; dots: {_measured_label(points)}"
    ax.set_xlabel(axis_label(x, xs))
    ax.set_ylabel(axis_label(y, ys))
    fig.colorbar(mesh, ax=ax, label=axis_label(str(values.name or target or ""), values))
    ax.set_title(title if title is not None else origin, fontsize="medium")
    return fig


def _point_map(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    values: np.ndarray,
    cmap: str,
    vmin: float | None,
    vmax: float | None,
) -> Any:
    """Scattered points as a mesh when they nearly fill a grid, else as coloured markers."""
    ux, ix = np.unique(x, return_inverse=True)
    uy, iy = np.unique(y, return_inverse=True)
    # A mesh fills the gaps between lines; with few lines that would look measured.
    dense = min(ux.size, uy.size) >= _MIN_GRID_LINES
    if dense and len(x) >= _MIN_GRID_FILL * ux.size * uy.size:
        grid = np.full((uy.size, ux.size), np.nan)
        grid[iy, ix] = values
        return ax.pcolormesh(
            ux,
            uy,
            np.ma.masked_invalid(grid),
            shading="nearest",
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            rasterized=True,
        )
    return ax.scatter(
        x,
        y,
        c=values,
        s=8,
        marker="s",
        linewidths=0,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        rasterized=True,
    )


# -- the derived quantity at each candidate step -------------------------------------------------


def plot_entropy_change(
    data: StepSuggestion | xr.DataArray,
    *,
    truth: xr.DataArray | None = None,
    compare: Mapping[str, xr.DataArray] | None = None,
    measured: Mapping[str, xr.DataArray] | None = None,
    steps: Sequence[float] | None = None,
    twin_id: str | None = None,
    cmap: str = "viridis_r",
    ax: Axes | None = None,
    unresolved: Sequence[UnresolvedStep] | None = None,
) -> Figure:
    """|ΔS_M| (or any 1-D derived quantity) simulated at each candidate step, the suggestion marked.

    Parameters
    ----------
    data
        A :class:`~bluesky_digitwin.analysis.StepSuggestion` (its ``curves``; its ``step`` is
        drawn bold and labelled "suggested"), or curves with dims ``("step", <sweep>)`` as in
        :attr:`StepSuggestion.curves`, or a single simulated 1-D curve (e.g. Tc(H)).
    truth
        The exact quantity, e.g. of a simulated material; a dotted black line.
    compare
        More simulated curves by legend label, e.g. ``{"linear interpolation": ...}``; dashed.
    measured
        The quantity derived from measurements, by legend label (e.g. from the coarse scans);
        open markers on a thin line.
    steps
        Draw only these candidate steps (the reference and the suggestion are always drawn).
    twin_id
        Named in the legend as the source of the simulated curves (default: ``twin_id`` of the
        curves' attrs, if any).
    cmap
        Colours of the candidate steps, finest first.
    ax
        Draw into this axes instead of a new figure.
    unresolved
        Steps of the measured lines that each hold a jump they do not resolve
        (``DigitalTwin.unresolved_steps``; default: the suggestion's): those along the curves'
        axis are shaded grey, as what the measurement's step limits there, whatever the twin or
        the candidate step.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; the legend stands to the right of it.
    """
    fig, ax = _figure_and_axes(ax, (8.5, 4.5))
    from matplotlib import colormaps

    suggested, axis = None, ""
    if isinstance(data, StepSuggestion):
        curves, suggested, axis = data.curves, data.step, data.axis
        step_units, title = data.units, data.description
    elif isinstance(data, xr.DataArray):
        curves = data if "step" in data.dims else data.expand_dims(step=[math.nan])
        step_units = str(curves["step"].attrs.get("units", ""))
        title = str(curves.attrs.get("description", ""))
    else:
        raise DigitwinInputError(
            f"expected a StepSuggestion or an xarray DataArray, got {type(data).__name__}"
        )
    sweep_dims = [d for d in curves.dims if d != "step"]
    if len(sweep_dims) != 1:
        raise DigitwinInputError(
            f"the quantity has dims {tuple(sweep_dims)} besides 'step'; this plot draws curves "
            "along one dim (use plot_map for a map)"
        )
    sweep = str(sweep_dims[0])
    twin_id = twin_id or curves.attrs.get("twin_id")
    source = f"simulated by twin {str(twin_id)[:8]}" if twin_id else "simulated"
    single = curves.sizes["step"] == 1 and not np.isfinite(curves["step"].values[0])
    unit = f" {step_units}" if step_units else ""
    roles = (
        [str(r) for r in curves["role"].values]
        if "role" in curves.coords
        else ["candidate"] * curves.sizes["step"]
    )
    n_candidates = max(roles.count("candidate") - 1, 1)
    palette = colormaps[cmap]
    x = curves[sweep].values
    rank = 0
    for values, step, role in zip(curves.values, curves["step"].values, roles, strict=True):
        if single:
            ax.plot(x, values, color="tab:blue", lw=2.0, label=source)
            continue
        if role == "reference":
            # Above the candidates (they converge onto it), below the suggestion.
            ax.plot(
                x, values, color="black", lw=0.9, zorder=2.5, label=f"reference step {step:g}{unit}"
            )
            continue
        colour = palette(0.1 + 0.8 * rank / n_candidates)
        rank += 1
        is_suggested = suggested is not None and bool(np.isclose(step, suggested))
        if steps is not None and not is_suggested and not np.any(np.isclose(step, steps)):
            continue
        ax.plot(
            x,
            values,
            color=colour,
            lw=2.8 if is_suggested else 1.0,
            zorder=3 if is_suggested else 2,
            label=f"{step:g}{unit}" + (" (suggested)" if is_suggested else ""),
        )
    extra_colours = iter(["tab:red", "tab:orange", "tab:brown", "tab:pink", "tab:olive"] * 4)
    for label, curve in (compare or {}).items():
        ax.plot(*_xy(curve, sweep), color=next(extra_colours), label=label, **_BASELINE_STYLE)
    for label, curve in (measured or {}).items():
        style = {**MEASURED_STYLE, "linestyle": "-", "linewidth": 0.6}
        ax.plot(*_xy(curve, sweep), color=next(extra_colours), label=label, **style)
    if truth is not None:
        ax.plot(*_xy(truth, sweep), label="true value (model)", **_TRUTH_STYLE)
    if unresolved is None and isinstance(data, StepSuggestion):
        unresolved = data.unresolved_steps
    _shade_unresolved(ax, [s for s in unresolved or () if s.along == sweep], sweep)
    ax.set_xlabel(axis_label(sweep, curves[sweep]))
    ax.set_ylabel(axis_label(str(curves.name or "quantity"), curves))
    if title:
        ax.set_title(title, fontsize="medium")
    legend_title = None if single else f"{source}, step{f' of {axis}' if axis else ''}:"
    ax.legend(
        title=legend_title,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize="small",
        title_fontsize="small",
    )
    return fig


def _shade_unresolved(ax: Axes, steps: Sequence[UnresolvedStep], sweep: str) -> None:
    """Grey spans over the steps that hold a jump (one legend entry for all of them)."""
    for i, step in enumerate(steps):
        ax.axvspan(
            step.start,
            step.stop,
            color="0.6",
            alpha=0.35,
            lw=0,
            zorder=1,
            label=f"a jump inside one measured {sweep} step" if i == 0 else None,
        )


def _xy(curve: xr.DataArray, sweep: str) -> tuple[np.ndarray, np.ndarray]:
    """A 1-D curve's coordinate along ``sweep`` and its values."""
    if curve.ndim != 1 or sweep not in curve.coords:
        raise DigitwinInputError(
            f"a curve to compare must be 1-D with a coordinate {sweep!r}; got dims {curve.dims}"
        )
    return np.asarray(curve[sweep].values, dtype=float), np.asarray(curve.values, dtype=float)


# -- the step table ------------------------------------------------------------------------------


def plot_step_table(
    suggestion: StepSuggestion,
    *,
    table: bool = True,
    twin_id: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Error against step with the tolerance, the measurement time on a second axis, the
    suggested step marked; below it, the table itself.

    Parameters
    ----------
    suggestion
        The outcome of :func:`~bluesky_digitwin.analysis.suggest_step`.
    table
        Also draw the table (step, lines, errors, spread, time) under the plot; only in a new
        figure (ignored with ``ax``).
    twin_id
        Named in the title as the source of the simulated errors.
    ax
        Draw the plot into this axes instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The error axes, its twin axes of the time and, with ``table``, an axes holding the table.
    """
    require_matplotlib()
    if not isinstance(suggestion, StepSuggestion):
        raise DigitwinInputError(f"expected a StepSuggestion, got {type(suggestion).__name__}")
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    rows = suggestion.table
    with_table = table and ax is None
    if ax is None:
        fig = Figure(figsize=(7.5, 6.8 if with_table else 4.5), layout="constrained")
        if with_table:
            ax, table_ax = fig.subplots(2, 1, height_ratios=[3, 2])
        else:
            ax = fig.add_subplot()
    else:
        fig = root_figure(ax)
    steps = rows["step"].to_numpy(dtype=float)
    scale, err_unit = (100.0, "%") if suggestion.relative else (1.0, suggestion.error_units)
    error = rows["error"].to_numpy(dtype=float) * scale
    worst = rows["max_error"].to_numpy(dtype=float) * scale
    spread = rows["spread"].to_numpy(dtype=float) * scale
    unit = f" {suggestion.units}" if suggestion.units else ""

    ax.errorbar(
        steps,
        error,
        yerr=np.where(np.isfinite(spread), spread, 0.0),
        marker="o",
        color="tab:blue",
        capsize=3,
        label="RMS error (± spread over networks)",
    )
    ax.plot(steps, worst, marker="v", ls=":", color="tab:blue", alpha=0.6, label="largest error")
    ax.axhline(
        suggestion.tol * scale,
        color="tab:red",
        ls="--",
        lw=1.2,
        label=f"tol {suggestion.tol * scale:g}{err_unit}",
    )
    if steps.size > 1 and steps.max() / steps.min() > 4:
        ax.set_xscale("log")
        # Ticks at the candidates, in plain numbers: "0.3" reads better than "3 x 10^-1".
        ax.set_xticks(steps, [f"{v:g}" for v in steps])
        ax.xaxis.set_minor_formatter(NullFormatter())
    finite = np.concatenate([error, worst])
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if finite.size and finite.max() / finite.min() > 20:
        ax.set_yscale("log")
    ax.set_xlabel(f"step of {suggestion.axis}{f' ({suggestion.units})' if unit else ''}")
    ax.set_ylabel(f"error of the quantity ({err_unit})" if err_unit else "error of the quantity")

    seconds = rows["time_s"].to_numpy(dtype=float)
    time_unit, per_unit = _time_unit(float(np.nanmax(seconds)))
    time_ax = ax.twinx()
    time_ax.plot(
        steps,
        seconds / per_unit,
        marker="s",
        color="0.45",
        lw=1.0,
        label="estimated measurement time",
    )
    time_ax.set_ylabel(f"estimated measurement time ({time_unit})", color="0.35")
    time_ax.set_ylim(bottom=0)

    if suggestion.step is not None:
        # Named in the legend, not annotated inside: a box there would hide points.
        chosen = rows.loc[np.isclose(steps, suggestion.step)].iloc[0]
        ax.axvline(
            suggestion.step,
            color="tab:green",
            lw=8,
            alpha=0.3,
            label=f"suggested: {suggestion.step:g}{unit}, {int(chosen['n_lines'])} lines, "
            f"about {format_duration(chosen['time_s'])}",
        )
    else:
        ax.text(
            0.5,
            0.97,
            "no candidate meets tol",
            transform=ax.transAxes,
            ha="center",
            va="top",
            color="tab:red",
        )
    lines = ax.get_legend_handles_labels()
    more = time_ax.get_legend_handles_labels()
    # Below the plot: inside it would hide points of one axes or the other.
    ax.legend(
        lines[0] + more[0],
        lines[1] + more[1],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncols=2,
        fontsize="small",
    )
    source = f"simulated by twin {twin_id[:8]}" if twin_id else "simulated measurements"
    ax.set_title(
        f"step of {suggestion.axis}: {suggestion.description or suggestion.quantity}\n"
        f"({source}, compared at a reference step of {suggestion.reference_step:g}{unit})",
        fontsize="medium",
    )
    if with_table:
        _draw_table(table_ax, suggestion)
    return fig


def _time_unit(longest_s: float) -> tuple[str, float]:
    """A unit for times up to ``longest_s`` and its length in seconds."""
    if not longest_s < 2 * 3600:
        return ("days", 86400.0) if longest_s > 72 * 3600 else ("h", 3600.0)
    return "min", 60.0


def _fmt_error(suggestion: StepSuggestion, value: float) -> str:
    """An error as the suggestion prints it: a percentage when relative."""
    if not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.2f}%" if suggestion.relative else f"{value:.3g}"


def _draw_table(ax: Axes, suggestion: StepSuggestion) -> None:
    """The step table as a matplotlib table, the suggested row highlighted."""
    ax.axis("off")
    unit = f" ({suggestion.units})" if suggestion.units else ""
    header = [f"step{unit}", "lines", "error", "max error", "spread", "time"]
    cells = [
        [
            f"{r.step:g}",
            f"{int(r.n_lines)}",
            _fmt_error(suggestion, r.error),
            _fmt_error(suggestion, r.max_error),
            _fmt_error(suggestion, r.spread),
            format_duration(r.time_s),
        ]
        for r in suggestion.table.itertuples(index=False)
    ]
    drawn = ax.table(cellText=cells, colLabels=header, loc="center", cellLoc="right")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8.5)
    for (row, _), cell in drawn.get_celld().items():
        if row == 0:
            cell.set_text_props(weight="bold")
        elif suggestion.step is not None and np.isclose(
            suggestion.table["step"].iloc[row - 1], suggestion.step
        ):
            cell.set_facecolor("#d9f2d9")
