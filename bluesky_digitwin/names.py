"""Names that end up in paths, URLs and database keys, checked before they are used.

A study name becomes part of the dashboard's URLs and of the worker command users copy between
machines; a twin's member files are joined to its directory when it is loaded. A name is one to
128 characters of letters, digits, ``.``, ``_`` and ``-``, starting with a letter or a digit: no
separators, no ``..``, nothing a shell or a URL would need to quote.
"""

from __future__ import annotations

import re

from bluesky_digitwin.data import DigitwinInputError

__all__ = ["check_name"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_name(name: object, what: str) -> str:
    """Return ``name`` if it is a safe name, else raise a :class:`DigitwinInputError`.

    Parameters
    ----------
    name
        The name to check.
    what
        What it names, for the message (e.g. ``"study name"``).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise DigitwinInputError(
            f"{what} {name!r} is not allowed: use 1 to 128 letters, digits, '.', '_' or '-', "
            "starting with a letter or a digit (e.g. 'erco2-2026-11-21')"
        )
    return name
