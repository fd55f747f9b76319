"""Simulated materials (and, later, simulated devices) for the four cases of the paper.

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

# Simulated ophyd instruments measuring the materials above. They are imported on first use:
# ophyd adds about a second to the import, which code that needs only the materials should not pay.
_DEVICES = ("ArpesDetector", "Magnetometer", "ResistanceBridge", "SimAxis", "SimReading")
__all__ += _DEVICES


def __getattr__(name: str):
    if name in _DEVICES:
        from bluesky_digitwin.sim import devices

        return getattr(devices, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
