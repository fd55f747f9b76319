"""Names that become paths or URLs: safe ones pass unchanged, anything else is refused clearly."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bluesky_digitwin.data import DigitwinInputError
from bluesky_digitwin.names import check_name
from bluesky_digitwin.surrogate.search import run_search


@pytest.mark.parametrize("name", ["erco2", "ErCo2-2026.11.21", "twin_callback-3-ab12", "a" * 128])
def test_ordinary_names_pass(name):
    assert check_name(name, "study name") == name


@pytest.mark.parametrize(
    "name", ["", "../x", "a/b", "/abs", "a..b", ".hidden", "-rf", "a b", "é", "a" * 129, None, 3]
)
def test_unsafe_names_are_refused_with_the_rule(name):
    with pytest.raises(DigitwinInputError, match="letters, digits"):
        check_name(name, "study name")


@given(st.text(max_size=200))
def test_an_accepted_name_is_one_plain_path_component(name):
    try:
        checked = check_name(name, "study name")
    except DigitwinInputError:
        return
    assert PurePosixPath(checked).name == checked
    assert checked not in (".", "..") and "/" not in checked and "\\\\" not in checked


def test_a_search_refuses_a_study_name_before_touching_the_storage(tmp_path):
    journal = tmp_path / "search.journal"
    with pytest.raises(DigitwinInputError, match=r"study name '\.\./escape'"):
        run_search(None, storage=journal, study_name="../escape")
    assert not journal.exists()
