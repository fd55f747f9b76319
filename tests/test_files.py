"""Atomic writes: the old file or the whole new one, never a part, and no litter on failure."""

from __future__ import annotations

import pytest

from bluesky_digitwin._files import atomic_path


def test_a_finished_write_replaces_the_file(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    with atomic_path(target) as path:
        assert path.parent == target.parent and path != target
        path.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]


def test_a_failed_write_leaves_the_old_file_and_nothing_else(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as path:
        path.write_text("half")
        raise RuntimeError("disk full, say")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]
