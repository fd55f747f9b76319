"""``simulate_scan``: a run of real bluesky documents made by a digital twin, no hardware.

The twin predicts the whole grid up front (one batched call). The plan then hands the
prediction to the RunEngine through bluesky's fly-scan protocol (``collect``), one event page per
line, so that everything downstream (LiveTable, Tiled, databroker, a ScanBuffer) sees an ordinary
run. Pages are about 20 times faster than a ``trigger_and_read`` per point, whose RunEngine
messages cost several milliseconds per point: about 5000 points per second (the RunEngine
validates every event of a page), so 100 000 points take some 20 s.

The run is marked simulated three ways, as measured and simulated data must never be confused
(Terashima et al., Digital Discovery 2 (2023) 339, §3.5): the start document's
``data_origin: "simulated"``, the Tiled spec ``SimulatedRun``, and the twin's provenance under
``digital_twin``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pandas as pd
import xarray as xr
from bluesky.utils import MsgGenerator, plan
from ophyd.status import StatusBase

from bluesky_digitwin.json_values import jsonable
from bluesky_digitwin.protocols import Twin

from .stubs import SIMULATED_SPEC, check_origin

__all__ = ["TwinPrediction", "simulate_scan", "twin_provenance"]

#: Points per event page when the grid is a list of points rather than lines.
PAGE_SIZE = 1000


def _finished() -> StatusBase:
    status = StatusBase()
    status.set_finished()
    return status


class TwinPrediction:
    """A precomputed prediction served to the RunEngine as event pages (a "flyer").

    It follows bluesky's fly-scan protocol: ``describe_collect`` gives the data keys,
    ``collect_pages`` the selected page. Selecting a page is a move (``bps.mv(readout, k)``),
    so a pause that rewinds to a checkpoint replays the same page rather than the next one.

    Parameters
    ----------
    columns
        Data key -> values, one per point, in scan order (the features, ``<target>`` and
        ``<target>_std``).
    data_keys
        Data key -> its description (``dtype``, ``shape``, ``source``, ``units``).
    pages
        The slices of points that make up each event page.
    hinted
        Data keys to hint (plotted by BestEffortCallback): the target.
    name
        Name of the device (the descriptor's ``object_keys``).
    stream
        Name of the event stream.
    """

    parent = None

    def __init__(
        self,
        columns: Mapping[str, np.ndarray],
        data_keys: Mapping[str, dict[str, Any]],
        pages: Sequence[slice],
        *,
        hinted: Sequence[str] = (),
        name: str = "twin",
        stream: str = "primary",
    ) -> None:
        if set(columns) != set(data_keys):
            raise ValueError("columns and data_keys must name the same keys")
        self.name = name
        self.stream = stream
        self._columns = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in columns.items()}
        self._data_keys = {k: dict(v) for k, v in data_keys.items()}
        self._pages = list(pages)
        self._hinted = list(hinted)
        self.page = 0

    def __len__(self) -> int:
        """Number of pages."""
        return len(self._pages)

    @property
    def hints(self) -> dict[str, list[str]]:
        return {"fields": list(self._hinted)}

    def set(self, page: int) -> StatusBase:
        """Select the page the next ``collect`` emits; finished at once."""
        page = int(page)
        if not 0 <= page < len(self._pages):
            raise IndexError(f"page {page} does not exist; there are {len(self._pages)}")
        self.page = page
        return _finished()

    def kickoff(self) -> StatusBase:
        return _finished()

    def complete(self) -> StatusBase:
        return _finished()

    def describe_collect(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {self.stream: {k: dict(v) for k, v in self._data_keys.items()}}

    def collect_pages(self) -> Iterator[dict[str, Any]]:
        points = self._pages[self.page]
        data = {k: v[points].tolist() for k, v in self._columns.items()}
        n = len(next(iter(data.values())))
        now = time.time()
        yield {"data": data, "timestamps": {k: [now] * n for k in data}, "time": [now] * n}


def twin_provenance(twin: Any) -> dict[str, Any]:
    """What a simulated run records about the twin that made it (JSON-friendly).

    ``learned_from`` lists the measured runs the twin was trained on (its
    ``metadata["provenance"]["run_uids"]``, empty when it learned from a file).
    """
    meta = twin.metadata
    return jsonable(
        {
            "id": twin.id,
            "learned_from": list(meta.get("provenance", {}).get("run_uids", [])),
            "features": list(twin.features),
            "target": twin.target,
            "units": twin.units,
            "ranges": {k: list(v) for k, v in twin.ranges.items()},
            "hyperparameters": twin.hyperparameters,
            "validation_rmse": twin.validation_rmse,
            "ensemble_size": twin.ensemble_size,
            "versions": meta.get("versions", {}),
            "created": meta.get("created"),
        }
    )


def _scan_order(grid: Any, prediction: xr.Dataset) -> list[str]:
    """The prediction's dims in scan order: as the grid lists them (first outermost)."""
    if isinstance(grid, xr.Dataset):
        given = [str(d) for d in grid.dims if d in prediction.dims]
        return given + [str(d) for d in prediction.dims if d not in given]
    return [str(d) for d in prediction.dims]


def _pages(shape: Sequence[int]) -> list[slice]:
    """One page per line of the fastest dimension; a list of points in pages of PAGE_SIZE."""
    n = int(np.prod(shape))
    size = int(shape[-1]) if len(shape) > 1 else PAGE_SIZE
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def _describe_grid(columns: Mapping[str, np.ndarray], order: list[str], shape: list[int]) -> dict:
    """The grid for ``plan_args``: its shape and each feature's extent, not its arrays."""
    return {
        "dims": order,
        "shape": shape,
        "num_points": int(np.prod(shape)),
        "axes": {
            name: {
                "min": float(np.min(values)),
                "max": float(np.max(values)),
                "num": int(np.unique(values).size),
            }
            for name, values in columns.items()
        },
    }


@plan
def simulate_scan(
    twin: Twin,
    grid: Mapping[str, Any] | xr.Dataset | pd.DataFrame,
    *,
    md: dict[str, Any] | None = None,
    name: str = "twin",
    tables: Mapping[str, Mapping[str, Sequence[float]] | pd.DataFrame] | None = None,
) -> MsgGenerator[str]:
    """Simulate a measurement with a twin: one run of bluesky documents, no hardware.

    The twin predicts every point up front; the run's ``primary`` stream then holds one
    event per point in scan order, with a data key for each feature, ``<target>`` (the
    ensemble mean) and ``<target>_std`` (the ensemble spread), units from the twin. The
    events come as event pages, one per line of the grid.

    Parameters
    ----------
    twin
        A :class:`~bluesky_digitwin.twin.DigitalTwin`.
    grid
        What :meth:`~bluesky_digitwin.twin.DigitalTwin.predict` accepts: a grid from
        :func:`~bluesky_digitwin.data.make_grid`, a dict of equal-length arrays (a list of
        points) or a DataFrame. The scan order follows the grid: its first dimension is the
        outermost, its last the fastest, as in ``grid_scan``; e.g.
        ``make_grid(H=[1e4, 2e4], T=np.linspace(10, 60, 51))`` sweeps T at each field.
    md
        Metadata for the start document. It cannot set ``data_origin`` to anything but
        ``"simulated"``; ``tiled_specs`` it gives are kept, plus ``"SimulatedRun"``.
    name
        Name of the simulated detector (the descriptor's ``object_keys``).
    tables
        More event streams of the run, by name: columns of numbers, one event per row, e.g.
        the candidate table a plan decided by (``{"decision": suggestion.table}``), so that a
        Tiled browser can plot why. Their data keys must differ from the primary stream's.

    Returns
    -------
    str
        The run's uid (returned by ``yield from``).

    Raises
    ------
    ValueError
        ``md`` claims another ``data_origin`` (raised before any document is emitted).

    Notes
    -----
    The start document carries ``data_origin: "simulated"``, ``tiled_specs`` with
    ``"SimulatedRun"``, ``num_points``, and ``digital_twin``: the twin's id, the measured run
    uids it learned from (``learned_from``), its hyperparameters, validation RMSE, ensemble
    size, package versions and creation time. Points outside the learned range are
    extrapolated; the twin warns about them (:class:`~bluesky_digitwin.OutsideRangeWarning`).

    Examples
    --------
    >>> grid = make_grid(H=[1e4, 3e4], T=np.linspace(10, 60, 101))
    >>> RE(simulate_scan(twin, grid, md={"sample": "ErCo2"}))
    """
    md = check_origin(md, "simulated")
    prediction = twin.predict(grid)
    target, features = str(twin.target), [str(f) for f in twin.features]
    order = _scan_order(grid, prediction)
    mean = prediction[target].transpose(*order)
    columns = {
        f: prediction[f].broadcast_like(mean).transpose(*order).values.ravel() for f in features
    }
    columns[target] = mean.values.ravel()
    columns[f"{target}_std"] = prediction[f"{target}_std"].transpose(*order).values.ravel()
    units = twin.units
    units[f"{target}_std"] = units.get(target, "")
    # Units travel with the data keys; an unknown unit is left out rather than set to "".
    data_keys = {
        key: {
            "source": f"digitwin:{twin.id}",
            "dtype": "number",
            "shape": [],
            **({"units": units[key]} if units.get(key) else {}),
        }
        for key in columns
    }
    shape = list(mean.shape)
    readout = TwinPrediction(columns, data_keys, _pages(shape), hinted=[target], name=name)
    extra_streams = [
        _table_stream(stream, table, source=f"digitwin:{twin.id}", taken=set(columns))
        for stream, table in (tables or {}).items()
    ]

    # One dimension per grid axis (grid_scan's hints); a list of points is one trajectory.
    dimensions = [([f for f in features if dim in prediction[f].dims], "primary") for dim in order]
    specs = list(md.pop("tiled_specs", []))
    _md = {
        "plan_name": "simulate_scan",
        "plan_args": {
            "twin": twin.id,
            "grid": _describe_grid({f: columns[f] for f in features}, order, shape),
            "name": name,
        },
        "num_points": int(np.prod(shape)),
        "digital_twin": twin_provenance(twin),
    }
    _md.update(md)
    _md["hints"] = {"fields": [target], "dimensions": dimensions, **(md.get("hints") or {})}
    _md["data_origin"] = "simulated"
    _md["tiled_specs"] = [*specs, *([] if SIMULATED_SPEC in specs else [SIMULATED_SPEC])]

    @bpp.run_decorator(md=_md)
    def inner() -> MsgGenerator[None]:
        yield from bps.kickoff(readout, wait=True)
        yield from bps.complete(readout, wait=True)
        for page in range(len(readout)):
            yield from bps.checkpoint()
            yield from bps.mv(readout, page)
            yield from bps.collect(readout, return_payload=False)
        for table in extra_streams:
            yield from bps.kickoff(table, wait=True)
            yield from bps.complete(table, wait=True)
            yield from bps.collect(table, return_payload=False)

    return (yield from inner())


def _table_stream(
    stream: str, table: Mapping[str, Sequence[float]] | pd.DataFrame, source: str, taken: set[str]
) -> TwinPrediction:
    """A table of numbers as one event page of its own stream."""
    columns = {
        str(key): np.asarray(values, dtype=np.float64).ravel() for key, values in table.items()
    }
    lengths = {len(values) for values in columns.values()}
    if stream == "primary" or not columns or len(lengths) != 1:
        raise ValueError(
            f"table {stream!r} must be named other than 'primary' and hold columns of equal "
            f"length; got columns {sorted(columns)} of lengths {sorted(lengths)}"
        )
    if taken & set(columns):
        raise ValueError(
            f"table {stream!r} repeats data keys of the run: {sorted(taken & set(columns))}"
        )
    keys = {key: {"source": source, "dtype": "number", "shape": []} for key in columns}
    return TwinPrediction(columns, keys, [slice(0, lengths.pop())], name=stream, stream=stream)
