"""Saving a twin survives a kill at every step: the next load or save finds the old twin or the
new one, whole, and no debris (fault injection in real subprocesses)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from digitwin_testing import smooth_table, subprocess_env, two_network_fit

from bluesky_digitwin import DigitalTwin, DigitwinInputError

# Saves a twin (argv[1]) under a new id to argv[2], SIGKILLing itself just before the k-th
# (argv[3]) step of the save that touches the target's directories: making the staging
# directory, writing twin.json into it, each rename, each removal, each directory fsync. With
# k = 0 it dies nowhere and prints the steps it took, one per line.
CHILD = textwrap.dedent(
    """
    import builtins, os, shutil, signal, stat, sys

    from bluesky_digitwin import DigitalTwin

    twin = DigitalTwin.load(sys.argv[1])
    twin.metadata["id"] = "new"
    kill_at = int(sys.argv[3])
    steps = []
    removing = []

    def ours(*paths):
        return any(".digitwin-" in os.fspath(p) for p in paths if isinstance(p, (str, os.PathLike)))

    def step(name):
        steps.append(name)
        if len(steps) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def counted(module, name, when):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            if when(*args, **kwargs):
                step(name)
            return original(*args, **kwargs)

        setattr(module, name, wrapper)

    counted(os, "mkdir", lambda path, *a, **k: ours(path))
    counted(os, "replace", lambda src, dst, *a, **k: ours(src, dst))
    counted(os, "unlink", lambda *a, **k: any(removing))
    counted(os, "rmdir", lambda *a, **k: any(removing))
    counted(os, "fsync", lambda fd: stat.S_ISDIR(os.fstat(fd).st_mode))
    counted(builtins, "open", lambda f, mode="r", *a, **k: "w" in mode and ours(f))
    rmtree = shutil.rmtree

    def tracked_rmtree(path, *args, **kwargs):
        removing.append(ours(path))
        try:
            return rmtree(path, *args, **kwargs)
        finally:
            removing.pop()

    shutil.rmtree = tracked_rmtree
    twin.save(sys.argv[2])
    print("\\n".join(steps))
    """
)


@pytest.fixture(scope="module")
def old_twin(tmp_path_factory):
    """A saved twin of two networks (id "old" on disk)."""
    twin = DigitalTwin.fit(smooth_table(), ["x", "h"], "y", **two_network_fit())
    twin.metadata["id"] = "old"
    return twin.save(tmp_path_factory.mktemp("twins") / "old")


def _run_child(script, source, target, kill_at):
    return subprocess.Popen(
        [sys.executable, str(script), str(source), str(target), str(kill_at)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
        cwd=script.parent,
    )


@pytest.mark.slow
@pytest.mark.parametrize("replacing", [True, False], ids=["over-a-twin", "new-directory"])
def test_a_save_killed_at_any_step_leaves_the_old_or_the_new_twin_and_no_debris(
    old_twin, tmp_path, replacing
):
    script = tmp_path / "child.py"
    script.write_text(CHILD)

    def fresh(k):
        parent = tmp_path / f"kill-{k}"
        parent.mkdir()
        if replacing:
            shutil.copytree(old_twin, parent / "twin")
        return parent / "twin"

    # A run that dies nowhere: the steps a save takes.
    done = _run_child(script, old_twin, fresh("none"), 0)
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err
    steps = out.split()
    # The staging directory; its files (member files as Keras opens them, then twin.json);
    # the swap.
    swap = ["fsync", "replace"]
    if replacing:  # old twin aside, new one in, old one removed (its 3 files, its directory)
        swap += ["replace", "fsync", "unlink", "unlink", "unlink", "rmdir", "fsync"]
    else:
        swap += ["fsync"]
    assert steps[0] == "mkdir" and steps[-len(swap) :] == swap, steps
    assert set(steps[1 : -len(swap)]) == {"open"}, steps

    # Kill before each step (k = 2 .. n), a few processes at a time; of the files written
    # into the staging directory, before the last one only (twin.json: all else written).
    # (Before step 1, making the staging directory, nothing has happened yet.)
    last_open = len(steps) - steps[::-1].index("open")
    kill_points = [k for k in range(2, len(steps) + 1) if steps[k - 1] != "open" or k == last_open]
    targets = {k: fresh(k) for k in kill_points}
    pending = sorted(targets)
    running = {}
    while pending or running:
        while pending and len(running) < 3:
            k = pending.pop(0)
            running[k] = _run_child(script, old_twin, targets[k], k)
        k, child = next(iter(running.items()))
        child.communicate(timeout=600)
        del running[k]
        assert child.returncode == -signal.SIGKILL, f"step {k} ({steps[k - 1]}) was not killed"

    for k, target in targets.items():
        killed_before = steps[k - 1]
        where = f"killed before step {k} ({killed_before})"
        # The second rename had not happened: a swap under way is finished (the new twin
        # was complete before the old one was moved aside), an earlier kill keeps the old.
        renames_done = steps[: k - 1].count("replace")
        if replacing:
            expected_id = "new" if renames_done >= 1 else "old"
        else:
            expected_id = "new" if renames_done >= 1 else None
        # Alternately the next load and the next save find the interrupted swap.
        if k % 2 and expected_id is not None:
            twin = DigitalTwin.load(target)
            assert twin.id == expected_id, where
        elif expected_id is not None:
            DigitalTwin.load(old_twin).save(target)  # recovers, then replaces
            assert DigitalTwin.load(target).id == "old", where
        else:  # a first save killed before its rename: no twin, no debris
            with pytest.raises(DigitwinInputError, match="holds no saved twin"):
                DigitalTwin.load(target)
        assert [p.name for p in target.parent.iterdir()] == (
            ["twin"] if expected_id is not None else []
        ), where
        if expected_id is not None:
            meta = json.loads((target / "twin.json").read_text())
            assert sorted(p.name for p in target.iterdir()) == sorted(
                ["twin.json", *(m["file"] for m in meta["members"])]
            ), where
