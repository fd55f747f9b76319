"""Simulated materials, and instruments measuring them, for the four cases of the paper.

Everything here is simulated: Datasets carry ``attrs["source"] = "bluesky_digitwin.sim.<Model>"``.
"""

from bluesky_digitwin.sim.materials import (
    ArpesMap,
    FirstOrderMagnet,
    MovingTransitionMagnet,
    SuperconductingFilm,
    arpes_scan,
    coarse_arpes,
    coarse_magnetization,
    coarse_moving_transition,
    coarse_resistance,
    isofield_scans,
    resistance_scans,
)

__all__ = [
    "ArpesMap",
    "FirstOrderMagnet",
    "MovingTransitionMagnet",
    "SuperconductingFilm",
    "arpes_scan",
    "coarse_arpes",
    "coarse_magnetization",
    "coarse_moving_transition",
    "coarse_resistance",
    "isofield_scans",
    "resistance_scans",
]

# Simulated instruments measuring the materials above, as ophyd devices and as ophyd-async
# devices (one material model for both: sim.instruments). They are imported on first use: ophyd
# and ophyd-async add a second or more to the import, which code that needs only the materials
# should not pay.
_DEVICES = ("ArpesDetector", "Magnetometer", "ResistanceBridge", "SimAxis", "SimReading")
_ASYNC_DEVICES = ("AsyncArpesDetector", "AsyncMagnetometer", "AsyncResistanceBridge")
__all__ += [*_DEVICES, *_ASYNC_DEVICES]


def __getattr__(name: str):
    if name in _DEVICES:
        from bluesky_digitwin.sim import devices

        return getattr(devices, name)
    if name in _ASYNC_DEVICES:
        from bluesky_digitwin.sim import async_devices

        return getattr(async_devices, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
