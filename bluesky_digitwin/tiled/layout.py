"""The Tiled layout: the two containers, their spec, and the start metadata Tiled can store.

What a run's start document must be for TiledWriter to take it (:func:`normalize_start`),
checked before the run starts (:class:`StartNormalizer`), and how a stored copy is marked
with its origin (:func:`origin_stamp`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from tiled.structures.core import Spec

from bluesky_digitwin.errors import DigitwinError
from bluesky_digitwin.run_documents import (
    MEASURED,
    SIMULATED,
    SIMULATED_SPEC,
    RunMetadataError,
    data_origin_of,
    describe_run,
    normal_origin,
    spec_names,
)

__all__ = [
    "API_KEY_ENV",
    "CATALOG_SPEC",
    "CONTAINER_DESCRIPTIONS",
    "StartNormalizer",
    "TiledConnectionError",
    "is_simulated_run",
    "normalize_start",
    "origin_stamp",
]

logger = logging.getLogger(__name__)

#: The spec of the two containers; 3.x is the SQL-backed layout TiledWriter writes.
CATALOG_SPEC = Spec("CatalogOfBlueskyRuns", version="3.0")
#: Where Tiled's client (and this module) look for the API key.
API_KEY_ENV = "TILED_API_KEY"

CONTAINER_DESCRIPTIONS = {
    MEASURED: "bluesky runs measured on an instrument (start.data_origin == 'measured')",
    SIMULATED: (
        "bluesky runs simulated by a digital twin (start.data_origin == 'simulated', "
        "spec SimulatedRun, provenance in start.digital_twin)"
    ),
}


class TiledConnectionError(DigitwinError, ConnectionError):
    """The Tiled server cannot be reached, or refused the API key (a ``ConnectionError``)."""


# -- origins -------------------------------------------------------------------------------------

#: Tiled refuses a node with more than 20 specs, repeated specs, or names over 255 characters.
_MAX_SPECS = 20
_MAX_SPEC_TEXT = 255
#: The spec TiledWriter gives every run: naming it again would repeat it.
_RUN_SPEC = ("BlueskyRun", "3.0")
#: Specs by which bluesky-tiled-plugins' clients read nodes: on a run they would misread it.
_LAYOUT_SPECS = ("BlueskyRun", "BlueskyEventStream", CATALOG_SPEC.name)


def _normal_specs(specs: Any, uid: Any) -> list[Any]:
    """``tiled_specs`` as the list TiledWriter wants; what cannot be read so is refused.

    One name (or one ``{"name", "version"}``) is taken as a list of one; repeated specs, and
    the ``BlueskyRun`` 3.0 that TiledWriter adds itself, are dropped (Tiled refuses repeats).
    """
    fix = "give a list of spec names, e.g. tiled_specs=['MySpec']"
    if isinstance(specs, (str, Mapping)):
        specs = [specs]
    elif not isinstance(specs, (list, tuple)):
        raise RunMetadataError(
            f"{describe_run(uid)} has tiled_specs {specs!r} ({type(specs).__name__}); {fix}"
        )
    normal, seen = [], set()
    for spec in specs:
        if isinstance(spec, str):
            name, version = spec, None
        elif (
            isinstance(spec, Mapping)
            and set(spec) <= {"name", "version"}
            and isinstance(spec.get("name"), str)
            and isinstance(spec.get("version"), (str, type(None)))
        ):
            name, version = spec["name"], spec.get("version")
        else:
            raise RunMetadataError(
                f"{describe_run(uid)} has {spec!r} among its tiled_specs; each spec is a name "
                "(text) or {'name': ..., 'version': ...}: " + fix
            )
        if not name.strip() or max(len(name), len(version or "")) > _MAX_SPEC_TEXT:
            raise RunMetadataError(
                f"{describe_run(uid)} has the spec {spec!r} in tiled_specs; a spec's name is 1 to "
                f"{_MAX_SPEC_TEXT} characters, not all blank (its version at most {_MAX_SPEC_TEXT})"
            )
        if name in _LAYOUT_SPECS and (name, version or _RUN_SPEC[1]) != _RUN_SPEC:
            raise RunMetadataError(
                f"{describe_run(uid)} has the spec {spec!r} in tiled_specs; {name} is a spec of "
                "the bluesky layout, set by TiledWriter (every run is a BlueskyRun 3.0): leave "
                "it out, or name a spec of your own"
            )
        if (name, version or _RUN_SPEC[1]) == _RUN_SPEC:
            continue  # TiledWriter sets it
        if (name, version) not in seen:
            seen.add((name, version))
            normal.append(spec if isinstance(spec, str) else {"name": name, "version": version})
    # TiledWriter adds BlueskyRun; a simulated run gets SimulatedRun.
    room = _MAX_SPECS - 1 - (SIMULATED_SPEC not in spec_names(normal))
    if len(normal) > room:
        raise RunMetadataError(
            f"{describe_run(uid)} has {len(normal)} tiled_specs; Tiled stores at most {room} "
            "besides those added for it: name fewer"
        )
    return normal


def normalize_start(start: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a start document (or a run's metadata) as the Tiled layout stores it.

    What is unambiguous is made canonical: ``tiled_specs`` given as one name becomes a list
    (repeats dropped), ``data_origin`` in another case or with spaces becomes "measured" or
    "simulated". What is not is refused.

    Raises
    ------
    RunMetadataError
        ``tiled_specs`` is not a list of spec names; :class:`DataOriginError` when the
        origin is unknown or contradicts the specs (see :func:`data_origin_of`).
    """
    doc = dict(start)
    uid = doc.get("uid")
    if doc.get("tiled_specs") is not None:
        doc["tiled_specs"] = _normal_specs(doc["tiled_specs"], uid)
    if doc.get("data_origin") is not None:
        doc["data_origin"] = normal_origin(doc["data_origin"], uid)
    data_origin_of(doc)  # a measured run naming SimulatedRun is refused
    return doc


class StartNormalizer:
    """A RunEngine ``md_normalizer`` checking a run's metadata before its start document exists.

    Installed by :meth:`TwinCatalog.subscribe`, after the normaliser the RunEngine had (which
    still runs first). A run whose metadata cannot be stored (:func:`normalize_start`) does not
    start: the plan fails with a :class:`RunMetadataError` naming the problem and the fix, and
    nothing is written anywhere.
    """

    def __init__(self, previous: Callable[[Any], Any] | None = None) -> None:
        self.previous = previous

    def __call__(self, md: Any) -> dict[str, Any]:
        if self.previous is not None:
            md = self.previous(md)
        try:
            return normalize_start(md)
        except RunMetadataError as exc:
            raise type(exc)(f"{exc}; the run was not started, nothing was written") from None


def is_simulated_run(run: Any) -> bool:
    """Whether a stored run is anything but plainly measured (judged on metadata and specs)."""
    start = run.metadata.get("start", {})
    declared = start.get("data_origin", MEASURED)
    return declared != MEASURED or SIMULATED_SPEC in spec_names(run.specs)


def origin_stamp(origin: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A TiledWriter start patch: the stored copy normalised and marked with ``origin``."""

    def patch(doc: dict[str, Any]) -> dict[str, Any]:
        # TiledWriter hands its patches a copy: the RunEngine's document is untouched.
        doc = normalize_start(doc)
        doc["data_origin"] = origin
        if origin == SIMULATED and SIMULATED_SPEC not in spec_names(doc.get("tiled_specs")):
            doc["tiled_specs"] = [*(doc.get("tiled_specs") or []), SIMULATED_SPEC]
        return doc

    return patch
