"""What a run's start document says of its origin: the one rule plans, callbacks and Tiled share.

Measured and simulated data are kept apart by the start document alone:

- ``data_origin``: ``"measured"`` or ``"simulated"`` (any case, spaces around ignored);
- ``tiled_specs``: a simulated run also names the Tiled spec ``SimulatedRun``, which
  TiledWriter turns into a node spec a Tiled browser can search for.

A run without ``data_origin`` is measured unless its specs name ``SimulatedRun``. A run that
says ``"measured"`` while naming ``SimulatedRun`` contradicts itself and is refused. The plans
write these keys (:mod:`bluesky_digitwin.plans`), the buffer reads them to learn from measured
runs only (:mod:`bluesky_digitwin.buffer`), and Tiled routes each run to the container of its
origin by them (:mod:`bluesky_digitwin.tiled`); docs/architecture.md lists the other
start-document keys of the guided plans.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from bluesky_digitwin.errors import DigitwinInputError

__all__ = [
    "MEASURED",
    "ORIGINS",
    "SIMULATED",
    "SIMULATED_SPEC",
    "DataOriginError",
    "Origin",
    "RunMetadataError",
    "data_origin_of",
    "describe_run",
    "normal_origin",
    "spec_names",
]

#: Where a run's data come from.
Origin = Literal["measured", "simulated"]
MEASURED: Final = "measured"
SIMULATED: Final = "simulated"
ORIGINS: tuple[Origin, ...] = (MEASURED, SIMULATED)
#: The Tiled spec on every simulated run.
SIMULATED_SPEC: Final = "SimulatedRun"


class RunMetadataError(DigitwinInputError):
    """A run's start metadata cannot be stored as given (its ``tiled_specs``, its origin)."""


class DataOriginError(RunMetadataError):
    """A run was sent where its origin does not belong (measured vs. simulated)."""


def describe_run(uid: Any) -> str:
    """``"run <uid>"`` for messages, or ``"the run"`` before it has one."""
    return f"run {uid}" if uid is not None else "the run"


def spec_names(specs: Any) -> set[str]:
    """Names in a ``tiled_specs`` entry or a node's specs (strings, dicts or Spec objects)."""
    if specs is None:
        return set()
    if isinstance(specs, (str, Mapping)) or hasattr(specs, "name"):
        specs = [specs]
    elif not isinstance(specs, Iterable):
        specs = [specs]
    names = set()
    for spec in specs:
        if isinstance(spec, str):
            names.add(spec)
        elif isinstance(spec, Mapping):
            names.add(str(spec.get("name")))
        else:
            names.add(str(getattr(spec, "name", spec)))
    return names


def normal_origin(declared: Any, uid: Any = None) -> Origin:
    """``"measured"`` or ``"simulated"`` from a declared ``data_origin`` (any case, spaces).

    Raises
    ------
    DataOriginError
        It is neither.
    """
    if isinstance(declared, str):
        origin = declared.strip().lower()
        if origin == MEASURED:
            return MEASURED
        if origin == SIMULATED:
            return SIMULATED
    raise DataOriginError(
        f"{describe_run(uid)} has data_origin {declared!r}; it must be 'measured' or "
        "'simulated' (or be left out for a measurement)"
    )


def data_origin_of(start: Mapping[str, Any]) -> Origin:
    """``"measured"`` or ``"simulated"``: where the run of this start document belongs.

    A run is simulated when its ``data_origin`` says so (in any case, spaces around ignored),
    or, without ``data_origin``, when its ``tiled_specs`` name ``SimulatedRun``; every other
    run is measured.

    Raises
    ------
    DataOriginError
        ``data_origin`` is neither value, or it says "measured" while the specs say simulated.
    """
    uid = start.get("uid")
    declared = start.get("data_origin")
    simulated_spec = SIMULATED_SPEC in spec_names(start.get("tiled_specs"))
    if declared is None:
        return SIMULATED if simulated_spec else MEASURED
    origin = normal_origin(declared, uid)
    if origin == MEASURED and simulated_spec:
        raise DataOriginError(
            f"{describe_run(uid)} says data_origin {declared!r} but its tiled_specs name "
            f"{SIMULATED_SPEC!r}; a run is either measured or simulated: drop one of them"
        )
    return origin
