"""Atomic writes: the old file or the whole new one, never a part, and no litter on failure."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bluesky_digitwin.atomic_files import atomic_path, recover_dir, replace_dir


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


def _complete(path):
    return (path / "done").is_file()


@pytest.mark.parametrize("name", ["twin", "digitwin-old-x.digitwin-new-y"])
def test_replace_dir_swaps_a_directory_and_leaves_nothing_else(tmp_path, name):
    target = tmp_path / name
    for text in ("old", "new"):
        with replace_dir(target, _complete) as staging:
            (staging / "done").write_text(text)
    assert (target / "done").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_failed_replace_dir_leaves_the_old_directory(tmp_path):
    target = tmp_path / "twin"
    target.mkdir()
    (target / "done").write_text("old")
    with pytest.raises(RuntimeError), replace_dir(target, _complete) as staging:
        (staging / "done").write_text("half")
        raise RuntimeError("disk full, say")
    assert (target / "done").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["twin"]


def test_recovery_leaves_a_live_writers_staging_and_other_names_alone(tmp_path):
    """Debris is removed only if it is ours (our names, this target) and stale (no process
    holds the parent's lock, as a writer does while it writes)."""
    target = tmp_path / "twin"
    target.mkdir()
    (target / "done").write_text("old")
    staging = tmp_path / ".twin.digitwin-new-abc123"
    staging.mkdir()
    others = [tmp_path / ".twin.notes", tmp_path / ".other.digitwin-new-abc123"]
    for other in others:
        other.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(tmp_path)!r}, os.O_RDONLY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        recover_dir(target, _complete)  # a writer is at work: its staging stays
        assert staging.is_dir()
    finally:
        holder.kill()
        holder.wait()
    recover_dir(target, _complete)  # the writer died: its staging is debris
    assert not staging.exists()
    assert all(other.is_dir() for other in others)
    assert (target / "done").read_text() == "old"


def test_recovery_finishes_a_swap_killed_between_its_renames(tmp_path):
    """The old directory aside, the complete new one beside it: the new one goes in place."""
    target = tmp_path / "twin"
    aside = tmp_path / ".twin.digitwin-old-abc123"
    staging = tmp_path / ".twin.digitwin-new-abc123"
    for path, text in ((aside, "old"), (staging, "new")):
        path.mkdir()
        (path / "done").write_text(text)
    recover_dir(target, _complete)
    assert (target / "done").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["twin"]
    # An incomplete new one: the old one goes back.
    target.rename(aside)
    staging.mkdir()
    recover_dir(target, _complete)
    assert (target / "done").read_text() == "new"  # the one set aside
    assert [p.name for p in tmp_path.iterdir()] == ["twin"]
