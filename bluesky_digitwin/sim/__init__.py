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
