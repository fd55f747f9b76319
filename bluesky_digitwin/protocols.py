"""The faces the rooms meet each other by: what a twin is to a plan, and what feeds a plan one.

As in blop's ``protocols.py``, these are :class:`typing.Protocol` classes: anything with the
attributes is accepted, nothing has to inherit. :class:`~bluesky_digitwin.twin.DigitalTwin`
and the classical interpolators of :mod:`bluesky_digitwin.analysis.baselines` are
:class:`Twin`; :class:`~bluesky_digitwin.callbacks.TwinCallback` is a :class:`TwinSource`,
and so is a test's stand-in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import xarray as xr

__all__ = [
    "TWIN_STATES",
    "EnsembleTwin",
    "SourceStatus",
    "Twin",
    "TwinBuffer",
    "TwinSource",
    "TwinState",
]

#: What a twin source is doing: ``"idle"`` (nothing asked yet), ``"waiting"`` (a training is
#: asked for and debounced, or there are too few points), ``"training"``, ``"ready"`` (a twin of
#: the newest data asked for), ``"error"`` (the last training failed) or ``"closed"``.
TwinState = Literal["idle", "waiting", "training", "ready", "error", "closed"]
TWIN_STATES: tuple[TwinState, ...] = get_args(TwinState)


class Twin(Protocol):
    """A model of the measurement: what the step suggestion, the plans and the plots ask of it.

    Attributes
    ----------
    features, target
        The names of its inputs (the scanned axes) and of what it predicts.
    units
        Units by name (features and target; ``""`` when unknown).
    ranges
        The learned range ``(low, high)`` of each feature: it interpolates within them only.
    """

    @property
    def features(self) -> Sequence[str]: ...

    @property
    def target(self) -> str: ...

    @property
    def units(self) -> Mapping[str, str]: ...

    @property
    def ranges(self) -> Mapping[str, tuple[float, float]]: ...

    def predict(self, points: Any, *, warn: bool = True) -> xr.Dataset:
        """The prediction at ``points`` (``<target>``, ``<target>_std``, ``outside_range``)."""
        ...


class EnsembleTwin(Twin, Protocol):
    """A twin of several networks, whose disagreement says where it knows least."""

    @property
    def id(self) -> str: ...

    def predict_members(self, points: Any, *, warn: bool = True) -> xr.DataArray:
        """Every member's prediction at ``points``, along a ``member`` dimension."""
        ...


class TwinBuffer(Protocol):
    """What a plan reads of the buffer behind a twin source."""

    @property
    def features(self) -> tuple[str, ...]: ...

    @property
    def version(self) -> int:
        """Grows with every point taken: a twin trained on version ``v`` knows them up to ``v``."""
        ...


class SourceStatus(Protocol):
    """What a twin source is doing, in a word and a line."""

    @property
    def state(self) -> TwinState: ...

    @property
    def message(self) -> str: ...


@runtime_checkable
class TwinSource(Protocol):
    """Where a plan gets its twin: :class:`bluesky_digitwin.callbacks.TwinCallback` or alike.

    Attributes
    ----------
    buffer
        The buffer the RunEngine's documents feed
        (:class:`~bluesky_digitwin.buffer.ScanBuffer`).
    twin
        The newest twin (:class:`~bluesky_digitwin.twin.DigitalTwin`), or ``None``.
    twin_version
        The ``buffer.version`` the current twin was trained on (-1 if there is none).
    status
        Its ``state`` (``"error"`` when the last training failed) and ``message``.
    """

    @property
    def buffer(self) -> TwinBuffer: ...

    @property
    def twin(self) -> EnsembleTwin | None: ...

    @property
    def twin_version(self) -> int: ...

    @property
    def status(self) -> SourceStatus: ...
