"""Twin-guided bluesky plans: installed as ``bluesky_digitwin.plans``.

- :func:`simulate_scan`: a complete run of bluesky documents from a twin's predictions,
  marked ``data_origin: "simulated"`` with the Tiled spec ``SimulatedRun`` and the twin's
  provenance; no hardware.
- :func:`twin_guided_scan`: coarse lines, a twin, the suggested step, the lines at that step.
- :func:`adaptive_line_scan`: each next line where the twin knows least, until a budget or a
  tolerance.
- :func:`register_twin_source`: a TwinCallback named by string, for plans sent through a
  queue (bluesky-queueserver) as JSON.
- :func:`wait_for_twin`, :func:`call_in_thread`: plan stubs that wait without blocking the
  RunEngine.
- :data:`approvals`, :func:`wait_for_approval`: with ``confirm=True`` the guided plans wait
  for a person to accept, edit or decline what the twin proposes.

Measured runs of these plans carry ``data_origin: "measured"``.
"""

from .approval import (
    Answer,
    ApprovalError,
    Approvals,
    Proposal,
    approvals,
    wait_for_approval,
)
from .guided import (
    CRITERIA,
    AdaptiveResult,
    adaptive_line_scan,
    score_lines,
    suggested_lines,
    twin_guided_scan,
)
from .simulate import TwinPrediction, simulate_scan, twin_provenance
from .sources import (
    TwinSourceError,
    register_twin_source,
    registered_twin_sources,
    resolve_twin_source,
)
from .stubs import SIMULATED_SPEC, TwinSource, call_in_thread, wait_for_twin

__all__ = [
    "CRITERIA",
    "SIMULATED_SPEC",
    "AdaptiveResult",
    "Answer",
    "ApprovalError",
    "Approvals",
    "Proposal",
    "TwinPrediction",
    "TwinSource",
    "TwinSourceError",
    "adaptive_line_scan",
    "approvals",
    "call_in_thread",
    "register_twin_source",
    "registered_twin_sources",
    "resolve_twin_source",
    "score_lines",
    "simulate_scan",
    "suggested_lines",
    "twin_guided_scan",
    "twin_provenance",
    "wait_for_approval",
    "wait_for_twin",
]
