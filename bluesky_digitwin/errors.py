"""The package's exceptions and warnings, rooted in two classes a user can catch.

- :class:`DigitwinError`: everything this package raises on purpose. Its message says what
  went wrong and what to do instead; a traceback adds nothing to it (``digitwin`` prints the
  message alone).
- :class:`DigitwinInputError`: the user's input cannot be used (data, options, names). It is
  also a ``ValueError``, what Python code expects of bad arguments.
- :class:`DigitwinWarning`: what the package warns about (skipped data, a twin no better than
  interpolation, a prediction outside the learned range).

Errors of the world rather than of the input derive from the builtin that says so as well: a
Tiled server that cannot be reached is a ``ConnectionError``
(:class:`~bluesky_digitwin.tiled.TiledConnectionError`), a file that cannot be written an
``OSError``.
"""

from __future__ import annotations

__all__ = ["DataWarning", "DigitwinError", "DigitwinInputError", "DigitwinWarning"]


class DigitwinError(Exception):
    """Raised by bluesky-digitwin on purpose; the message says why and what to do instead."""


class DigitwinInputError(DigitwinError, ValueError):
    """The user's input cannot be used; the message says why and what to do instead."""


class DigitwinWarning(UserWarning):
    """Something bluesky-digitwin wants the user to know; the message says what."""


class DataWarning(DigitwinWarning):
    """Something in the user's data was skipped or repaired; the message says what."""
