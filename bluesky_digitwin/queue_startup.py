"""Startup code for bluesky-queueserver's RE Manager: a beamline with a live twin.

Point RE Manager at it (``--keep-re``: the RunEngine built here, with its subscriptions, is
the one that runs the queue)::

    start-re-manager --startup-module bluesky_digitwin.queue_startup --keep-re \\
        --existing-plans-devices ./existing_plans_and_devices.yaml \\
        --user-group-permissions ./user_group_permissions.yaml

or run it in an IPython session (``%run -m bluesky_digitwin.queue_startup``). A beamline copies
it and puts its own devices in place of the simulated magnetometer. It builds:

- ``RE``, a RunEngine whose runs go to Tiled through ``catalog`` (a
  :class:`~bluesky_digitwin.tiled.TwinCatalog`: measured runs in ``measured``, simulated ones
  in ``simulated``);
- ``mag``, a simulated magnetometer (ophyd) on the shipped first-order magnet, with axes
  ``mag.temperature`` (K) and ``mag.field`` (Oe);
- ``twin``, a :class:`~bluesky_digitwin.callbacks.TwinCallback` learning M(T, H), registered
  as the twin source ``"twin"``, so that plans sent as JSON name it as they name devices;
- the plans ``twin_guided_scan``, ``adaptive_line_scan``, ``simulate_twin_grid`` and bluesky's
  ``scan``, ``list_scan``, ``grid_scan``, ``count``; the functions ``twin_suggestion``, and
  ``pending_decision`` and ``answer_decision`` for plans run with ``confirm=True`` (execute
  them with ``run_in_background=True`` while the plan waits).

Settings come from the environment, since RE Manager passes no arguments to startup code:

``DIGITWIN_TILED_URI`` (and ``TILED_API_KEY``)
    A Tiled server to write to. Without it, an embedded server keeps the runs in
    ``DIGITWIN_TILED_DIR`` (default ``./digitwin-queue/tiled``).
``DIGITWIN_WORK_DIR``
    Where the twins are saved (default ``./digitwin-queue/twins``).
``DIGITWIN_QUEUE_FAST``
    ``1``: tiny searches (a few trials of small networks), for tests and trying things out.

A queue item, as JSON (``qserver queue add plan``, or ``BPlan`` of bluesky-queueserver-api)::

    {"name": "twin_guided_scan",
     "args": [["mag"], "mag.temperature", 10, 60, 51, "mag.field", [1000, 20000, 50000]],
     "kwargs": {"twin_source": "twin", "slow_feature": "H", "quantity": "magnetocaloric",
                "suggest_kwargs": {"mass": 0.61, "mass_units": "g", "candidate_units": "T"}}}
"""

from __future__ import annotations

import os
from pathlib import Path

from bluesky import RunEngine
from bluesky.plans import count, grid_scan, list_scan, scan

from bluesky_digitwin.callbacks import RetrainPolicy, TwinCallback
from bluesky_digitwin.plans import adaptive_line_scan, register_twin_source, twin_guided_scan
from bluesky_digitwin.queue import (
    answer_decision,
    pending_decision,
    simulate_twin_grid,
    twin_suggestion,
)
from bluesky_digitwin.sim import FirstOrderMagnet, Magnetometer
from bluesky_digitwin.surrogate.ensemble import EnsembleRecipe
from bluesky_digitwin.surrogate.search_space import SearchSpace
from bluesky_digitwin.surrogate.training import TrainConfig
from bluesky_digitwin.tiled import TwinCatalog

__all__ = [
    "RE",
    "adaptive_line_scan",
    "answer_decision",
    "catalog",
    "count",
    "grid_scan",
    "list_scan",
    "mag",
    "pending_decision",
    "scan",
    "simulate_twin_grid",
    "twin",
    "twin_guided_scan",
    "twin_suggestion",
]

_uri = os.environ.get("DIGITWIN_TILED_URI")
if _uri:
    catalog = TwinCatalog.connect(_uri, api_key=os.environ.get("TILED_API_KEY"))
else:
    catalog = TwinCatalog.embedded(
        Path(os.environ.get("DIGITWIN_TILED_DIR", Path("digitwin-queue") / "tiled"))
    )

# Without call_returns_result: RE Manager would send a plan's return value (a StepSuggestion with
# its curves) back through its pipes and time out. The decision is in the runs' documents.
RE = RunEngine({})
catalog.subscribe(RE)

mag = Magnetometer(material=FirstOrderMagnet(), noise=1e-6, name="mag")

# The default search, as the demo's: on this magnet a stated shape (monotonic=) made |ΔS_M| no
# better and the training twice as long (benchmarks/RESULTS.md).
_fit_options: dict = {}
if os.environ.get("DIGITWIN_QUEUE_FAST") == "1":
    _fit_options.update(
        n_trials=2,
        n_workers=1,
        ensemble=EnsembleRecipe(size=2),
        train_config=TrainConfig(max_epochs=30),
        space=SearchSpace(n_layers=(2, 2), n_units=(32, 32)),
    )
twin = TwinCallback(
    ("T", "H"),
    "M",
    keys={"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"},
    fit_options=_fit_options,
    # Lines of one plan come seconds apart: the twin a plan waits for is the one on all of them.
    policy=RetrainPolicy(max_restarts=10),
    work_dir=Path(os.environ.get("DIGITWIN_WORK_DIR", Path("digitwin-queue") / "twins")),
)
RE.subscribe(twin)
register_twin_source("twin", twin)
