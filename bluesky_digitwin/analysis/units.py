"""Unit conversions for magnetisation analysis.

Everything is converted to one internal system in which the Maxwell relation needs no extra
constant:

- field as μ0H in tesla (T),
- magnetisation per mass in A m²/kg (numerically equal to emu/g),
- mass in kg, temperature in K.

Then μ0 ∫ (∂M/∂T) dH with M in A m²/kg and μ0H in T is directly in J/(kg K), because
A m² T = J.

Unit strings are matched loosely: case, spaces, ``*``, ``·``, ``^`` and ``²`` do not matter, so
``"A m^2/kg"``, ``"Am2/kg"`` and ``"A·m²/kg"`` are the same unit.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.constants import mu_0

__all__ = [
    "ENTROPY_UNITS",
    "FIELD_UNITS",
    "MAGNETIZATION_UNITS",
    "MASS_UNITS",
    "MOMENT_UNITS",
    "TEMPERATURE_UNITS",
    "check_temperature_units",
    "field_to_tesla",
    "magnetization_to_si",
    "mass_to_kg",
    "normalize_unit",
]

ENTROPY_UNITS = "J/(kg K)"

# Each table maps a normalised unit string to how many of that unit make one base unit, so a
# conversion is a division. Dividing by exact powers of ten keeps e.g. 50000 Oe -> exactly 5.0 T.
# Field: per tesla of μ0H (1 Oe of H corresponds to μ0H = 1e-4 T).
FIELD_UNITS: dict[str, float] = {"t": 1.0, "mt": 1e3, "oe": 1e4, "koe": 10.0, "a/m": 1.0 / mu_0}
# Magnetic moment: per A m² (1 emu = 1e-3 A m²; A m² = J/T).
MOMENT_UNITS: dict[str, float] = {"am2": 1.0, "j/t": 1.0, "emu": 1e3}
# Magnetisation per mass: per A m²/kg (1 emu/g = 1 A m²/kg).
MAGNETIZATION_UNITS: dict[str, float] = {
    "am2/kg": 1.0,
    "j/(tkg)": 1.0,
    "j/(kgt)": 1.0,
    "j/t/kg": 1.0,
    "emu/g": 1.0,
    "emu/kg": 1e3,
}
# Mass: per kg.
MASS_UNITS: dict[str, float] = {"kg": 1.0, "g": 1e3, "mg": 1e6}
TEMPERATURE_UNITS: dict[str, float] = {"k": 1.0, "kelvin": 1.0}

# Human-readable spellings for error messages.
_SUPPORTED = {
    "field": "Oe, kOe, T, mT, A/m",
    "magnetization": "emu, A m^2, J/T (moments, need a mass); emu/g, emu/kg, A m^2/kg, J/(T kg)",
    "mass": "g, mg, kg",
    "temperature": "K",
}


def normalize_unit(units: str) -> str:
    """Return a canonical spelling of ``units`` for table look-up.

    Parameters
    ----------
    units : str
        A unit string such as ``"A m^2/kg"`` or ``"Oe"``.

    Returns
    -------
    str
        Lower case, without spaces, ``*``, ``·`` or ``^``; ``²`` becomes ``2``.
    """
    text = units.strip().lower().replace("²", "2")
    for char in (" ", "*", "·", "^"):
        text = text.replace(char, "")
    return text


def _lookup(table: dict[str, float], units: str | None, kind: str) -> float:
    if units is None:
        raise ValueError(
            f"{kind} units are unknown: set attrs['units'] on the {kind} data or pass "
            f"{kind}_units=...; supported: {_SUPPORTED[kind]}"
        )
    try:
        return table[normalize_unit(units)]
    except KeyError:
        raise ValueError(
            f"unsupported {kind} unit {units!r}; supported: {_SUPPORTED[kind]}"
        ) from None


def field_to_tesla(values: ArrayLike, units: str | None) -> np.ndarray:
    """Convert a magnetic field to μ0H in tesla.

    Parameters
    ----------
    values : array_like
        Field values.
    units : str or None
        Their units: ``"Oe"``, ``"kOe"``, ``"T"`` or ``"mT"`` (meaning μ0H), or ``"A/m"``.

    Returns
    -------
    numpy.ndarray
        μ0H in T.

    Raises
    ------
    ValueError
        If ``units`` is None or not supported.
    """
    return np.asarray(values, dtype=float) / _lookup(FIELD_UNITS, units, "field")


def check_temperature_units(units: str | None) -> None:
    """Raise ValueError unless ``units`` is kelvin; None (no units recorded) is taken as kelvin."""
    if units is not None:
        _lookup(TEMPERATURE_UNITS, units, "temperature")


def mass_to_kg(mass: float, units: str) -> float:
    """Convert a sample mass to kg.

    Parameters
    ----------
    mass : float
        The mass, a positive finite number.
    units : str
        ``"g"``, ``"mg"`` or ``"kg"``.

    Returns
    -------
    float
        The mass in kg.
    """
    per_kg = _lookup(MASS_UNITS, units, "mass")
    if not np.isfinite(mass) or mass <= 0:
        raise ValueError(f"mass must be a positive number, got {mass!r}")
    return float(mass) / per_kg


def magnetization_to_si(
    values: ArrayLike,
    units: str | None,
    mass: float | None = None,
    mass_units: str = "g",
) -> np.ndarray:
    """Convert a moment or a specific magnetisation to magnetisation per mass in A m²/kg.

    Parameters
    ----------
    values : array_like
        Moments (``"emu"``, ``"A m^2"``, ``"J/T"``) or magnetisation per mass (``"emu/g"``,
        ``"emu/kg"``, ``"A m^2/kg"``, ``"J/(T kg)"``).
    units : str or None
        The units of ``values``.
    mass : float, optional
        Sample mass, required for moments and refused for per-mass data (a likely mix-up).
    mass_units : str, default "g"
        Units of ``mass``: ``"g"``, ``"mg"`` or ``"kg"``.

    Returns
    -------
    numpy.ndarray
        Magnetisation in A m²/kg (= emu/g).

    Raises
    ------
    ValueError
        On unknown units, a moment without ``mass``, or a ``mass`` given with per-mass data.
    """
    values = np.asarray(values, dtype=float)
    key = normalize_unit(units) if units is not None else None
    if key in MOMENT_UNITS:
        if mass is None:
            raise ValueError(
                f"magnetization is a magnetic moment in {units!r}: pass the sample mass with the "
                "`mass` argument (and `mass_units`, default 'g') to get J/(kg K)"
            )
        return values / MOMENT_UNITS[key] / mass_to_kg(mass, mass_units)
    per_si = _lookup(MAGNETIZATION_UNITS, units, "magnetization")
    if mass is not None:
        raise ValueError(
            f"magnetization is already per mass ({units!r}); do not pass `mass`, or give the "
            "data as a moment (e.g. 'emu')"
        )
    return values / per_si
