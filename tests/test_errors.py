"""The package's exceptions and warnings: two roots a user can catch (bluesky_digitwin.errors)."""

from __future__ import annotations

import inspect

import pytest

import bluesky_digitwin
import bluesky_digitwin.plans
import bluesky_digitwin.tiled
from bluesky_digitwin import DigitwinError, DigitwinInputError, DigitwinWarning
from bluesky_digitwin.atomic_files import CannotWriteError
from bluesky_digitwin.buffer import DataKeyError

PUBLIC = (bluesky_digitwin, bluesky_digitwin.tiled, bluesky_digitwin.plans)


def _public_classes(base: type) -> list[type]:
    found = []
    for module in PUBLIC:
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value) and issubclass(value, base):
                found.append(value)
    return found


def test_every_public_exception_is_a_digitwin_error():
    exceptions = _public_classes(Exception)
    warnings = [c for c in exceptions if issubclass(c, Warning)]
    errors = [c for c in exceptions if not issubclass(c, Warning)]
    assert len(errors) >= 6 and len(warnings) >= 4
    assert all(issubclass(c, DigitwinError) for c in errors), errors
    assert all(issubclass(c, DigitwinWarning) for c in warnings), warnings


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (DigitwinInputError, ValueError),  # bad arguments, as Python code expects
        (DataKeyError, ValueError),
        (bluesky_digitwin.tiled.TiledConnectionError, ConnectionError),  # the world, not input
        (CannotWriteError, OSError),
    ],
)
def test_each_error_is_also_the_builtin_that_says_what_it_is(error, builtin):
    assert issubclass(error, DigitwinError) and issubclass(error, builtin)


def test_a_connection_error_is_not_an_input_error():
    assert not issubclass(bluesky_digitwin.tiled.TiledConnectionError, ValueError)


def test_the_old_import_paths_still_work():
    from bluesky_digitwin.data import DataWarning
    from bluesky_digitwin.data import DigitwinInputError as FromData

    assert FromData is DigitwinInputError
    assert issubclass(DataWarning, DigitwinWarning)
