"""Tiled: the ``measured`` and ``simulated`` containers, their writers, reading runs back, and
the embedded server.

The layout is a contract (docs/architecture.md): under the node given, two containers with the
spec ``CatalogOfBlueskyRuns`` 3.0, ``measured`` and ``simulated``. Runs are written into them by
:class:`bluesky_tiled_plugins.TiledWriter`; measured runs carry ``start.data_origin ==
"measured"``, simulated runs ``start.data_origin == "simulated"`` and the Tiled spec
``SimulatedRun`` (TiledWriter turns the start document's ``tiled_specs`` into node specs), plus
the provenance that ``simulate_scan`` puts in ``start.digital_twin``.

Where the server is:

- :meth:`TwinCatalog.embedded` starts a Tiled server inside this process (Tiled's
  ``SimpleTiledServer``) on 127.0.0.1 with an API key, keeping catalog and data in a directory,
  so the runs survive a restart;
- :meth:`TwinCatalog.connect` reaches a facility server by URI or by Tiled profile; the API key
  comes from the ``TILED_API_KEY`` environment variable or the profile (or an argument), never
  from code.

Writing::

    catalog = TwinCatalog.embedded("twin-data")
    catalog.subscribe(RE)  # one callback: each run goes to the container of its origin

Learning from stored runs (simulated runs are left out unless asked for) is the twin's
:meth:`DigitalTwin.fit_runs <bluesky_digitwin.twin.DigitalTwin.fit_runs>`, which reads them with
:func:`read_runs`::

    twin = DigitalTwin.fit_runs(catalog, [uid1, uid2], features=["T", "H"], target="M",
                                keys={"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"})

This module imports nothing of the twin: the twin and the search workers read runs through it
(the layers of docs/architecture.md).
"""

from bluesky_digitwin.run_documents import (
    MEASURED,
    SIMULATED,
    SIMULATED_SPEC,
    DataOriginError,
    RunMetadataError,
    data_origin_of,
)

from .catalog import TwinCatalog
from .connection import open_node
from .layout import API_KEY_ENV, StartNormalizer, TiledConnectionError, normalize_start
from .reading import (
    measured_runs_of_twin,
    read_runs,
    run_documents,
    runs_data_source,
    runs_provenance,
    select_runs,
    simulated_runs_from_measured,
    simulated_runs_of_twin,
)
from .writing import (
    ContainerWriter,
    OriginRouter,
    ReplayedRun,
    default_backup_directory,
    read_backup,
)

__all__ = [
    "API_KEY_ENV",
    "MEASURED",
    "SIMULATED",
    "SIMULATED_SPEC",
    "ContainerWriter",
    "DataOriginError",
    "OriginRouter",
    "ReplayedRun",
    "RunMetadataError",
    "StartNormalizer",
    "TiledConnectionError",
    "TwinCatalog",
    "data_origin_of",
    "default_backup_directory",
    "measured_runs_of_twin",
    "normalize_start",
    "open_node",
    "read_backup",
    "read_runs",
    "run_documents",
    "runs_data_source",
    "runs_provenance",
    "select_runs",
    "simulated_runs_from_measured",
    "simulated_runs_of_twin",
]
