"""Twin sources named by string, as the queue server names devices.

Behind bluesky-queueserver a plan's parameters arrive as JSON: a device is named by a string
that RE Manager looks up in the startup code's namespace, but a TwinCallback is not a device.
The startup code registers it under a name (``register_twin_source("twin", cb)``) and the
twin-guided plans, given that name, find it here; in an IPython session they are given the
callback itself, as before.
"""

from __future__ import annotations

import inspect
import threading

from bluesky_digitwin.data import DigitwinInputError

from .stubs import TwinSource

__all__ = [
    "TwinSourceError",
    "register_twin_source",
    "registered_twin_sources",
    "resolve_twin_source",
]

_lock = threading.Lock()
_sources: dict[str, TwinSource] = {}


#: What a twin source has (TwinSource's attributes).
_ATTRIBUTES = ("buffer", "twin", "twin_version", "status")


def _is_twin_source(source: object) -> bool:
    # Looked up statically: on Python 3.11, isinstance(x, TwinSource) reads the attributes,
    # and a source's twin_version may be a property that does work (trains, in tests).
    def has(name: str) -> bool:
        try:
            inspect.getattr_static(source, name)
        except AttributeError:
            return False
        return True

    return all(has(name) for name in _ATTRIBUTES)


class TwinSourceError(DigitwinInputError):
    """A twin source was named that this process does not know, or is not one."""


def register_twin_source(name: str, source: TwinSource) -> None:
    """Make ``source`` findable by ``name`` in this process (the RE worker's, on a queue).

    Parameters
    ----------
    name
        What plans and functions sent through the queue give as ``twin_source``.
    source
        A :class:`~bluesky_digitwin.callbacks.TwinCallback` or anything with its attributes
        (:class:`~bluesky_digitwin.plans.TwinSource`). Registering a name again replaces it.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a twin source's name must be a non-empty string, got {name!r}")
    if not _is_twin_source(source):
        raise TypeError(
            f"{source!r} is no twin source (it needs buffer, twin, twin_version and status: "
            "a TwinCallback has them)"
        )
    with _lock:
        _sources[name] = source


def registered_twin_sources() -> dict[str, TwinSource]:
    """The twin sources registered in this process, by name."""
    with _lock:
        return dict(_sources)


def resolve_twin_source(source: TwinSource | str) -> TwinSource:
    """The twin source itself, or the one registered under the name given.

    Raises
    ------
    TwinSourceError
        A name nobody registered (the message lists the names there are), or an object that
        is no twin source.
    """
    if isinstance(source, str):
        with _lock:
            found = _sources.get(source)
            known = sorted(_sources)
        if found is None:
            there = ", ".join(repr(n) for n in known) if known else "none is registered"
            raise TwinSourceError(
                f"no twin source named {source!r} in this process ({there}); the startup code "
                "registers its TwinCallback with register_twin_source(name, callback)"
            )
        return found
    if not _is_twin_source(source):
        raise TwinSourceError(
            f"twin_source must be a TwinCallback (or its registered name), got {source!r}"
        )
    return source
