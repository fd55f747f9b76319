"""Magnetic entropy change ΔS_M from magnetisation data by the Maxwell relation.

The magnetocaloric example of Terashima et al., Digital Discovery 2 (2023) 339
(doi:10.1039/D2DD00124A): a derived quantity that needs a derivative along T and an integral
along H, which is where coarse field steps and naive interpolation go wrong.

Two forms, both integrated with the trapezoidal rule along the field:

- :func:`entropy_change`, from isofield M(T) sweeps (paper, main text)::

      ΔS_M(T, H) = μ0 ∫_{H0}^{H} (∂M/∂T)_{H'} dH'

  with ∂M/∂T taken by :func:`numpy.gradient` on the actual, possibly non-uniform, T grid.
- :func:`entropy_change_isothermal`, from isothermal M(H) sweeps (paper SI)::

      ΔS_M(T_mid, H) = ∫_{H0}^{H} (M(T_{i+1}, H') − M(T_i, H')) / (T_{i+1} − T_i) d(μ0H')

  returned at the mid temperatures T_mid = (T_i + T_{i+1}) / 2 between neighbouring isotherms.

Sign convention
---------------
The result is the entropy change ΔS_M = S(T, H) − S(T, H0) *with its sign*: negative where the
field orders the moments (a ferromagnet near T_C, a paramagnet). The paper plots −ΔS_M, positive
for a ferromagnet. Pass ``absolute=True`` for |ΔS_M|, or use :func:`peak_entropy_change`.

Units
-----
Input units come from ``attrs["units"]`` of the magnetisation and of the T and H variables;
explicit ``*_units`` arguments override them (see :mod:`bluesky_digitwin.analysis.units`).
Internally M is in A m²/kg (= emu/g) and the field is μ0H in T, so the integral is directly in
J/(kg K). A moment (emu, A m²) needs the sample ``mass`` with its ``mass_units``. The output field
coordinate is μ0H in T (the upper field of integration), the temperature is in K.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike
from scipy.integrate import cumulative_trapezoid
from scipy.interpolate import make_interp_spline

from bluesky_digitwin.scan_lines import line_indices

from .units import ENTROPY_UNITS, check_temperature_units, field_to_tesla, magnetization_to_si

__all__ = [
    "EntropyPeak",
    "entropy_change",
    "entropy_change_isothermal",
    "peak_entropy_change",
]

# Two fields closer than this (μ0H, in T) are the same field when matching h0 or a requested field.
_FIELD_ATOL = 1e-9

_SIGN_CONVENTION = (
    "delta_S_M = S(T, H) - S(T, H0), signed: negative when the field orders the moments; "
    "the paper plots -delta_S_M"
)


class _Curve(NamedTuple):
    label: float  # the variable held constant along the sweep (H for M(T), T for M(H))
    x: np.ndarray  # the swept variable
    m: np.ndarray  # magnetisation along the sweep


class _Grid(NamedTuple):
    labels: np.ndarray  # sorted constant values, one per curve
    axis: np.ndarray  # the common, sorted sweep grid
    m: np.ndarray  # magnetisation, shape (labels, axis)
    units: dict[str, str | None]  # units from attrs: "label", "axis", "m"


class EntropyPeak(NamedTuple):
    """The extremum of ΔS_M(T) at one field.

    Attributes
    ----------
    delta_s : float
        ΔS_M at the peak, with the sign of the input, in the input's units (J/(kg K)).
    temperature : float
        Temperature of the peak (K).
    field : float
        The upper field of integration, μ0H (T).
    """

    delta_s: float
    temperature: float
    field: float

    @property
    def magnitude(self) -> float:
        """|ΔS_M| at the peak."""
        return abs(self.delta_s)


def _attr_units(obj: xr.DataArray) -> str | None:
    units = obj.attrs.get("units")
    # An empty string is how many files say "no units recorded".
    return None if units is None or not str(units).strip() else str(units)


def _check_distinct(values: np.ndarray, name: str, where: str = "") -> None:
    """Raise if ``values`` repeats: which of two equal points to use would be a guess."""
    unique, counts = np.unique(values, return_counts=True)
    if np.any(counts > 1):
        duplicated = float(unique[counts > 1][0])
        raise ValueError(
            f"duplicated {name} value {duplicated!r}{where}: each {name} may appear only once "
            "(average repeated points or select one sweep branch first)"
        )


def _curves_from_grid(data: xr.DataArray, label: str, axis: str) -> tuple[list[_Curve], dict]:
    if set(data.dims) != {label, axis}:
        raise ValueError(
            f"gridded magnetization must have exactly the dims ({label!r}, {axis!r}), "
            f"got {data.dims}"
        )
    for name in (label, axis):
        if name not in data.coords:
            raise ValueError(f"gridded magnetization has no coordinate values for {name!r}")
    data = data.transpose(label, axis)
    labels = np.asarray(data[label].values, dtype=float)
    _check_distinct(labels, label)
    x = np.asarray(data[axis].values, dtype=float)
    values = np.asarray(data.values, dtype=float)
    curves = [_Curve(lab, x, row) for lab, row in zip(labels, values, strict=True)]
    units = {
        "label": _attr_units(data[label]),
        "axis": _attr_units(data[axis]),
        "m": _attr_units(data),
    }
    return curves, units


def _curves_from_points(
    data: xr.Dataset, label: str, axis: str, magnetization: str
) -> tuple[list[_Curve], dict]:
    columns = []
    for name in (label, axis, magnetization):
        if name not in data.variables:
            raise ValueError(
                f"no variable {name!r} in the dataset; it has {sorted(data.variables)}"
            )
        values = np.asarray(data[name].values, dtype=float)
        if values.ndim != 1:
            raise ValueError(f"point data must be 1-D; {name!r} has dims {data[name].dims}")
        columns.append(values)
    lab, x, m = columns
    finite = np.flatnonzero(np.isfinite(lab))
    # One curve per field, by the scan-line rule (equal up to float rounding).
    curves = [
        _Curve(float(np.median(lab[idx])), x[idx], m[idx])
        for idx in (finite[line] for line in line_indices(lab[finite]))
    ]
    units = {
        "label": _attr_units(data[label]),
        "axis": _attr_units(data[axis]),
        "m": _attr_units(data[magnetization]),
    }
    return curves, units


def _to_grid(
    data: xr.DataArray | xr.Dataset,
    label: str,
    axis: str,
    magnetization: str,
    axis_grid: ArrayLike | None,
) -> _Grid:
    """Bring gridded or point data onto one rectangular (label, axis) grid.

    Each curve (constant ``label``) is sorted along ``axis``, stripped of NaN and linearly
    interpolated onto ``axis_grid``. Without ``axis_grid`` the grid is the sample points, inside
    the overlap of all curves' ranges, of the curve that has most points there; a gridded input
    therefore keeps its own grid.
    """
    if isinstance(data, xr.Dataset):
        if magnetization not in data.variables:
            raise ValueError(f"no variable {magnetization!r} in the dataset")
        if data[magnetization].ndim == 2:
            data = data[magnetization]
    if isinstance(data, xr.DataArray):
        if data.ndim == 2:
            curves, units = _curves_from_grid(data, label, axis)
        elif data.ndim == 1:
            curves, units = _curves_from_points(
                data.to_dataset(name=magnetization), label, axis, magnetization
            )
        else:
            raise ValueError(
                f"magnetization must be 1-D points or a 2-D grid, got dims {data.dims}"
            )
    elif isinstance(data, xr.Dataset):
        curves, units = _curves_from_points(data, label, axis, magnetization)
    else:
        raise TypeError(f"expected an xarray DataArray or Dataset, got {type(data).__name__}")

    cleaned = []
    for curve in sorted(curves, key=lambda c: c.label):
        where = f" in the curve at {label} = {curve.label!r}"
        ok = np.isfinite(curve.x) & np.isfinite(curve.m)
        x, m = curve.x[ok], curve.m[ok]
        _check_distinct(x, axis, where)
        if x.size < 2:
            raise ValueError(f"need at least two {axis} points{where}, got {x.size}")
        order = np.argsort(x)
        cleaned.append(_Curve(curve.label, x[order], m[order]))
    if not cleaned:
        raise ValueError("no magnetization curves in the data")

    if axis_grid is None:
        lo = max(c.x[0] for c in cleaned)
        hi = min(c.x[-1] for c in cleaned)
        inside = [c.x[(c.x >= lo) & (c.x <= hi)] for c in cleaned]
        grid = max(inside, key=len)
    else:
        grid = np.asarray(axis_grid, dtype=float).ravel()
        _check_distinct(grid, axis, " in the requested grid")
        grid = np.sort(grid)
        for c in cleaned:
            # Linear extrapolation over the last step is harmless (grids that start a hair
            # earlier); further out it would invent data.
            step = float(np.median(np.diff(c.x)))
            if grid[0] < c.x[0] - step or grid[-1] > c.x[-1] + step:
                raise ValueError(
                    f"the requested {axis} grid [{grid[0]:g}, {grid[-1]:g}] reaches beyond the "
                    f"curve at {label} = {c.label!r}, measured over [{c.x[0]:g}, {c.x[-1]:g}], "
                    "by more than one step"
                )
    if grid.size < 2:
        raise ValueError(f"the curves share fewer than two {axis} points; pass an {axis} grid")

    rows = [
        c.m if np.array_equal(c.x, grid) else make_interp_spline(c.x, c.m, k=1)(grid)
        for c in cleaned
    ]
    labels = np.array([c.label for c in cleaned])
    return _Grid(labels, grid, np.vstack(rows), units)


def _integrate_over_field(
    integrand: np.ndarray, b: np.ndarray, b0: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative trapezoid of ``integrand`` (fields along axis 0) from ``b0`` up to each field.

    Returns the integral and the fields it ends at, starting with ``b0`` (where it is zero).
    A ``b0`` between measured fields gets a linearly interpolated integrand.
    """
    if b0 is None:
        b0 = b[0]
    if b0 < b[0] - _FIELD_ATOL or b0 > b[-1] + _FIELD_ATOL:
        raise ValueError(
            f"h0 (μ0H0 = {b0:g} T) lies outside the measured fields [{b[0]:g}, {b[-1]:g}] T; "
            "omit h0 to start at the lowest measured field"
        )
    match = np.flatnonzero(np.abs(b - b0) <= _FIELD_ATOL)
    if match.size:
        b0, start = b[match[0]], integrand[match[0]]
    else:
        start = make_interp_spline(b, integrand, k=1, axis=0)(b0)
    above = b > b0
    if not np.any(above):
        raise ValueError(f"no measured field above h0 (μ0H0 = {b0:g} T): no field change")
    fields = np.concatenate([[b0], b[above]])
    values = np.concatenate([start[np.newaxis], integrand[above]])
    return cumulative_trapezoid(values, fields, axis=0, initial=0.0), fields


def _resolve_units(
    grid: _Grid,
    *,
    label_is_field: bool,
    field_units: str | None,
    temperature_units: str | None,
    magnetization_units: str | None,
) -> tuple[str | None, str | None, str | None]:
    """Explicit arguments win over attrs; return (field, temperature, magnetization) units."""
    field_attr, temp_attr = (
        (grid.units["label"], grid.units["axis"])
        if label_is_field
        else (grid.units["axis"], grid.units["label"])
    )
    return (
        field_units or field_attr,
        temperature_units or temp_attr,
        magnetization_units or grid.units["m"],
    )


def _result(
    values: np.ndarray,
    fields: np.ndarray,
    temperatures: np.ndarray,
    *,
    field: str,
    temperature: str,
    absolute: bool,
    method: str,
) -> xr.DataArray:
    if absolute:
        values = np.abs(values)
    return xr.DataArray(
        values,
        dims=(field, temperature),
        coords={
            field: (field, fields, {"units": "T", "long_name": "μ0H, upper field of integration"}),
            f"delta_{field}": (
                field,
                fields - fields[0],
                {"units": "T", "long_name": "μ0ΔH = μ0(H − H0)"},
            ),
            temperature: (temperature, temperatures, {"units": "K"}),
        },
        name="abs_delta_S_M" if absolute else "delta_S_M",
        attrs={
            "units": ENTROPY_UNITS,
            "long_name": "|ΔS_M|" if absolute else "ΔS_M",
            "h0": float(fields[0]),
            "h0_units": "T",
            "method": method,
            "sign_convention": "absolute value |delta_S_M|" if absolute else _SIGN_CONVENTION,
        },
    )


def entropy_change(
    data: xr.DataArray | xr.Dataset,
    *,
    temperature: str = "T",
    field: str = "H",
    magnetization: str = "M",
    mass: float | None = None,
    mass_units: str = "g",
    magnetization_units: str | None = None,
    field_units: str | None = None,
    temperature_units: str | None = None,
    h0: float | None = None,
    temperature_grid: ArrayLike | None = None,
    derivative: Literal["gradient", "secant"] = "gradient",
    absolute: bool = False,
) -> xr.DataArray:
    """Magnetic entropy change from isofield M(T) sweeps by the Maxwell relation.

    ΔS_M(T, H) = μ0 ∫_{H0}^{H} (∂M/∂T)_{H'} dH', trapezoidal along H through every measured
    field, ∂M/∂T along the actual T grid.

    Parameters
    ----------
    data : xarray.DataArray or xarray.Dataset
        Either magnetisation on a grid, a DataArray (or a Dataset variable ``magnetization``) with
        dims ``(field, temperature)`` in any order, e.g. a twin prediction; or point data, a 1-D
        Dataset with variables ``temperature``, ``field`` and ``magnetization`` (or a 1-D
        DataArray with those as coordinates), grouped by exact field value into M(T) curves.
        Points need not be sorted and grids may be ragged; NaN points are dropped.
    temperature, field, magnetization : str
        Names of the temperature, field and magnetisation variables or dims.
    mass : float, optional
        Sample mass; required when the magnetisation is a moment (emu, A m²).
    mass_units : {"g", "mg", "kg"}
        Units of ``mass``.
    magnetization_units, field_units, temperature_units : str, optional
        Override ``attrs["units"]`` of the data. Field: Oe, kOe, T, mT (μ0H) or A/m. Magnetisation:
        emu, A m^2 (moments) or emu/g, A m^2/kg. Temperature: K (assumed when absent).
    h0 : float, optional
        Lower field of integration, in the data's field units; default the lowest measured field.
        It must lie within the measured fields; between two of them the integrand is interpolated
        linearly.
    temperature_grid : array_like, optional
        Temperatures to interpolate every M(T) curve onto (linearly; extrapolation is allowed by at
        most one measured step). Default: the grid's own T, or for point data the sample points,
        inside the overlap of all fields' T ranges, of the field with most points there.
    derivative : {"gradient", "secant"}
        ``"gradient"``: ``numpy.gradient(M, T)``, second-order accurate on a non-uniform grid.
        ``"secant"``: ``(M[i+1] - M[i-1]) / (T[i+1] - T[i-1])``, i.e.
        ``numpy.gradient(M) / numpy.gradient(T)``, as in the authors' reference code
        (mat_interp ``utils/mce.py``), whose numbers it reproduces; first order where the grid is
        uneven. Both use one-sided first-order differences at the two end temperatures.
    absolute : bool
        Return |ΔS_M| instead of the signed ΔS_M.

    Returns
    -------
    xarray.DataArray
        ΔS_M (named ``delta_S_M``; ``abs_delta_S_M`` if ``absolute``) in J/(kg K) with dims
        ``(field, temperature)``. ``field`` is the upper field of integration as μ0H in T, starting
        with H0 (where ΔS_M = 0); the coordinate ``delta_<field>`` holds μ0(H − H0).
        ``attrs["h0"]`` is μ0H0 in T.

    Raises
    ------
    ValueError
        On duplicated fields or temperatures (naming the value), fewer than two fields, unknown
        units, a moment without ``mass``, or ``h0`` outside the measured fields.

    Examples
    --------
    >>> dsm = entropy_change(scans, mass=0.61, mass_units="mg")  # doctest: +SKIP
    >>> peak_entropy_change(dsm, 5.0).magnitude  # doctest: +SKIP
    """
    grid = _to_grid(data, field, temperature, magnetization, temperature_grid)
    f_units, t_units, m_units = _resolve_units(
        grid,
        label_is_field=True,
        field_units=field_units,
        temperature_units=temperature_units,
        magnetization_units=magnetization_units,
    )
    check_temperature_units(t_units)
    b = field_to_tesla(grid.labels, f_units)
    if b.size < 2:
        raise ValueError(
            f"need M(T) at two or more fields; only {field} = {grid.labels[0]!r} was given, "
            "which is no field change"
        )
    m = magnetization_to_si(grid.m, m_units, mass, mass_units)
    t = grid.axis
    if derivative == "gradient":
        dm_dt = np.gradient(m, t, axis=1)
    elif derivative == "secant":
        dm_dt = np.gradient(m, axis=1) / np.gradient(t)
    else:
        raise ValueError(f"derivative must be 'gradient' or 'secant', got {derivative!r}")
    b0 = None if h0 is None else float(field_to_tesla(h0, f_units))
    values, fields = _integrate_over_field(dm_dt, b, b0)
    return _result(
        values,
        fields,
        t,
        field=field,
        temperature=temperature,
        absolute=absolute,
        method=f"isofield Maxwell relation, dM/dT by {derivative}, trapezoid in H",
    )


def entropy_change_isothermal(
    data: xr.DataArray | xr.Dataset,
    *,
    temperature: str = "T",
    field: str = "H",
    magnetization: str = "M",
    mass: float | None = None,
    mass_units: str = "g",
    magnetization_units: str | None = None,
    field_units: str | None = None,
    temperature_units: str | None = None,
    h0: float | None = None,
    field_grid: ArrayLike | None = None,
    absolute: bool = False,
) -> xr.DataArray:
    """Magnetic entropy change from isothermal M(H) sweeps, at the mid temperatures.

    ΔS_M(T_mid, H) = ∫_{H0}^{H} (M(T_{i+1}, H') − M(T_i, H')) / (T_{i+1} − T_i) d(μ0H'),
    with T_mid = (T_i + T_{i+1}) / 2 for each pair of neighbouring isotherms, trapezoidal in H.
    The difference quotient is centred at T_mid, so the result is second-order accurate there.
    For values at the measured temperatures use :func:`entropy_change` on the same grid.

    Parameters
    ----------
    data : xarray.DataArray or xarray.Dataset
        Magnetisation on a grid with dims ``(temperature, field)`` in any order, or 1-D point data
        (see :func:`entropy_change`), grouped by exact temperature into M(H) curves. A curve must
        not revisit a field: split up-and-down sweeps and pass one branch.
    temperature, field, magnetization : str
        Names of the temperature, field and magnetisation variables or dims.
    mass, mass_units, magnetization_units, field_units, temperature_units
        As in :func:`entropy_change`.
    h0 : float, optional
        Lower field of integration in the data's field units; default the lowest grid field.
    field_grid : array_like, optional
        Fields (in the data's field units) to interpolate every M(H) curve onto, linearly.
        Default: the grid's own H, or for point data the sample points, inside the overlap of all
        isotherms' H ranges, of the isotherm with most points there.
    absolute : bool
        Return |ΔS_M| instead of the signed ΔS_M.

    Returns
    -------
    xarray.DataArray
        ΔS_M in J/(kg K) with dims ``(field, temperature)``: the upper field as μ0H in T and the
        mid temperatures in K (one fewer than the isotherms).

    Raises
    ------
    ValueError
        On duplicated temperatures or fields (naming the value), fewer than two isotherms, unknown
        units, a moment without ``mass``, or ``h0`` outside the fields.
    """
    grid = _to_grid(data, temperature, field, magnetization, field_grid)
    f_units, t_units, m_units = _resolve_units(
        grid,
        label_is_field=False,
        field_units=field_units,
        temperature_units=temperature_units,
        magnetization_units=magnetization_units,
    )
    check_temperature_units(t_units)
    t = grid.labels
    if t.size < 2:
        raise ValueError(
            f"need M(H) at two or more temperatures; only {temperature} = {t[0]!r} was given"
        )
    b = field_to_tesla(grid.axis, f_units)
    m = magnetization_to_si(grid.m, m_units, mass, mass_units)
    dm_dt = np.diff(m, axis=0) / np.diff(t)[:, np.newaxis]
    t_mid = (t[:-1] + t[1:]) / 2
    b0 = None if h0 is None else float(field_to_tesla(h0, f_units))
    values, fields = _integrate_over_field(dm_dt.T, b, b0)
    return _result(
        values,
        fields,
        t_mid,
        field=field,
        temperature=temperature,
        absolute=absolute,
        method="isothermal M(H) difference quotient at mid temperatures, trapezoid in H",
    )


def peak_entropy_change(
    dsm: xr.DataArray,
    field: float,
    *,
    field_dim: str = "H",
    temperature_dim: str = "T",
) -> EntropyPeak:
    """Find the largest |ΔS_M| over temperature at one upper field.

    Parameters
    ----------
    dsm : xarray.DataArray
        The result of :func:`entropy_change` or :func:`entropy_change_isothermal`.
    field : float
        The upper field of integration, μ0H in T (in the field coordinate's units if it carries
        others); it must match one of ``dsm``'s fields.
    field_dim, temperature_dim : str
        Dim names in ``dsm``.

    Returns
    -------
    EntropyPeak
        The signed ΔS_M at the peak of |ΔS_M|, its temperature and field;
        ``.magnitude`` is |ΔS_M|.
    """
    coord = dsm[field_dim]
    fields = np.asarray(coord.values, dtype=float)
    i = int(np.argmin(np.abs(fields - field)))
    if not np.isclose(fields[i], field, rtol=1e-6, atol=_FIELD_ATOL):
        raise ValueError(
            f"no field {field!r} {coord.attrs.get('units', '')} in the entropy change; "
            f"available: {fields.tolist()}"
        )
    row = dsm.isel({field_dim: i})
    values = np.asarray(row.values, dtype=float)
    if not np.any(np.isfinite(values)):
        raise ValueError(f"the entropy change at {field_dim} = {fields[i]!r} is all NaN")
    j = int(np.nanargmax(np.abs(values)))
    return EntropyPeak(float(values[j]), float(row[temperature_dim].values[j]), float(fields[i]))
