"""The ``digitwin`` command: the contract of docs/architecture.md, one clear line per mistake."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import optuna
import pandas as pd
import pytest

from bluesky_digitwin import DigitalTwin
from bluesky_digitwin.cli import ProgressLine, main

FIT_FAST = ["--trials", "2", "--workers", "1", "--seed", "0", "--ensemble", "2"]
FIT_XY = ["fit", "{data}", "--features", "x", "h", "--target", "y", "--out", "{tmp}/o"]
STEP = ["--candidates", "0.25", "0.5", "--sweep-points", "21"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A twin made by the command line, shared by the tests of this module."""
    from digitwin_testing import smooth_table

    root = tmp_path_factory.mktemp("cli")
    data = root / "scans.csv"
    smooth_table().to_csv(data, index=False)
    out = root / "twin"
    code = main(
        ["fit", str(data), "--features", "x", "h", "--target", "y", *FIT_FAST, "--out", str(out)]
    )
    assert code == 0
    return data, out


def test_fit_tells_of_a_jump_inside_one_step_in_one_line(tmp_path, capsys):
    from bluesky_digitwin.sim import FirstOrderMagnet
    from bluesky_digitwin.sim.materials import isofield_scans

    data = tmp_path / "magnet.csv"
    scans = isofield_scans(FirstOrderMagnet(), [100.0, 1e4, 5e4], np.linspace(20, 50, 31), seed=0)
    scans.to_dataframe().to_csv(data, index=False)
    argv = ["fit", str(data), "--features", "T", "H", "--target", "M", "--trials", "1"]
    argv += ["--workers", "1", "--paper-ensemble", "--ensemble", "1", "--paper-search"]
    assert main([*argv, "--out", str(tmp_path / "twin"), "-q"]) == 0
    told = [
        line
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("digitwin: warning: M jumps")
    ]
    assert len(told) == 1
    assert told[0].startswith("digitwin: warning: M jumps within one step of T on 2 line(s) (H = ")
    recorded = json.loads((tmp_path / "twin" / "twin.json").read_text())["unresolved_steps"]
    assert [(s["line"], s["stop"] - s["start"]) for s in recorded] == [(100.0, 1.0), (1e4, 1.0)]


def test_fit_saves_a_twin_and_summarises(fitted, capsys):
    _, out = fitted
    assert (out / "twin.json").is_file()
    meta = json.loads((out / "twin.json").read_text())
    assert meta["features"] == ["x", "h"]


def test_predict_writes_grid_columns_plus_target_and_std(fitted, tmp_path, capsys):
    _, out = fitted
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"h": [0.5, 1.0, 3.0], "x": [0.1, 0.5, 0.5], "note": [1, 2, 3]}).to_csv(
        grid, index=False
    )
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(out), str(grid), "--out", str(pred)]) == 0
    frame = pd.read_csv(pred)
    assert list(frame.columns) == ["h", "x", "note", "y", "y_std"]
    assert len(frame) == 3
    captured = capsys.readouterr()
    assert "1 outside the learned range" in captured.out
    assert "outside the learned range" in captured.err  # the warning, one line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["fit", "{data}", "--features", "x", "T", "--target", "y", "--out", "{tmp}/o"],
            "unknown column(s) 'T'; the data has: x, h, y",
        ),
        (
            ["fit", "{tmp}/none.csv", "--features", "x", "--target", "y", "--out", "{tmp}/o"],
            "file not found",
        ),
        (
            [
                "fit",
                "{data}",
                "--features",
                "x",
                "--target",
                "y",
                "--trials",
                "0",
                "--out",
                "{tmp}/o",
            ],
            "expected a number >= 1",
        ),
        (["fit", "{data}", "--target", "y", "--out", "{tmp}/o"], "--features"),
        (
            [*FIT_XY, "--activations", "relu", "swish2"],
            "--activations: unknown activation 'swish2'; choose from relu, silu",
        ),
        (
            [*FIT_XY, "--monotonic", "T=increasing"],
            "--monotonic: monotonic names 'T', which is not a feature of this twin",
        ),
        (
            [*FIT_XY, "--monotonic", "h=up"],
            "must be 'increasing' or 'decreasing', got 'up'",
        ),
        (
            [*FIT_XY, "--monotonic", "h"],
            "--monotonic takes FEATURE=increasing or FEATURE=decreasing, got 'h'",
        ),
        (
            [*FIT_XY, "--fourier-scale", "0"],
            "--fourier-scale: fourier_scale must be positive (e.g. 10), got 0.0",
        ),
        (
            [*FIT_XY, "--fourier-scale", "10", "--monotonic", "h=increasing"],
            "--fourier-scale: Fourier features (fourier_scale) and a monotonic shape cannot be",
        ),
        ([*FIT_XY, "--epoch-points", "0"], "--epoch-points: expected a number >= 1, got 0"),
        ([*FIT_XY, "--max-epochs", "0"], "--max-epochs: expected a number >= 1, got 0"),
        (
            [*FIT_XY, "--precision", "float16"],
            "--precision: invalid choice: 'float16' (choose from 'auto', 'float32'",
        ),
        (["predict", "{tmp}", "{data}", "--out", "{tmp}/p.csv"], "holds no saved twin"),
        (["predict", "{twin}", "{tmp}/none.csv", "--out", "{tmp}/p.csv"], "file not found"),
    ],
)
def test_usage_errors_exit_2_with_one_line(fitted, tmp_path, capsys, argv, message):
    data, twin = fitted
    argv = [a.format(data=data, tmp=tmp_path, twin=twin) for a in argv]
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def _exit_code(argv):
    """The exit code, whether argparse exits or main returns."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_epoch_points_max_epochs_and_precision_shape_the_training_and_are_recorded(
    fitted, tmp_path
):
    data, _ = fitted
    out = tmp_path / "twin"
    fast = ["--trials", "2", "--workers", "1", "--seed", "0"]
    argv = ["fit", str(data), "--features", "x", "h", "--target", "y", *fast]
    options = ["--epoch-points", "50", "--max-epochs", "30", "--precision", "mixed_bfloat16"]
    assert main([*argv, *options, "--out", str(out)]) == 0
    search = json.loads((out / "twin.json").read_text())["search"]
    assert search["train_config"]["reference_points"] == 50
    assert search["train_config"]["max_epochs"] == 30
    assert search["train_config"]["precision"] == "mixed_bfloat16"
    assert search["precision"] == "mixed_bfloat16"
    # The data's 125 points are more than 50: a large map's regime, the paper's ensemble.
    assert search["ensemble"]["retrain"] is False


def test_the_default_trains_250_epochs_and_max_epochs_outranks_the_papers_search(fitted, tmp_path):
    data, _ = fitted
    argv = ["fit", str(data), "--features", "x", "h", "--target", "y", "--trials", "1"]
    argv += ["--workers", "1", "--seed", "0", "--ensemble", "1", "-q"]
    epochs = {}
    for name, options in {
        "default": [],
        "paper": ["--paper-search", "--max-epochs", "20"],
    }.items():
        out = tmp_path / name
        assert main([*argv, *options, "--out", str(out)]) == 0
        epochs[name] = json.loads((out / "twin.json").read_text())["search"]["train_config"]
    assert epochs["default"]["max_epochs"] == 250
    assert epochs["paper"]["max_epochs"] == 20


def test_the_summary_tells_the_twins_validation_from_each_networks(fitted, tmp_path, capsys):
    """One network that stopped early must not pass for the twin (its mean), nor hide."""
    data, _ = fitted
    argv = ["fit", str(data), "--features", "x", "h", "--target", "y", *FIT_FAST]
    assert main([*argv, "--max-epochs", "30", "--out", str(tmp_path / "twin")]) == 0
    twin = DigitalTwin.load(tmp_path / "twin")
    each = [m["validation_rmse"] for m in twin.metadata["members"]]
    out = capsys.readouterr().out.splitlines()
    (line,) = [s for s in out if s.startswith("  networks:")]
    # The whole command's time, beside the search's part of it.
    (wall,) = [s for s in out if s.startswith("  wall time:")]
    total, searching = map(float, re.findall(r"([\d.]+) s", wall))
    assert wall.endswith(" s searching") and total >= searching
    assert searching == pytest.approx(twin.metadata["search"]["wall_time_s"], abs=0.05)
    assert line == (
        f"  networks: 2, on the held-out points RMSE {min(each):.4g}-{max(each):.4g} each; "
        f"together R^2 {twin.holdout.twin_r2:.5f}"
    )
    assert twin.validation_rmse == twin.holdout.twin_rmse


def test_a_study_refusing_other_training_names_the_flags_that_continue_it(fitted, tmp_path, capsys):
    from bluesky_digitwin.data import prepare_training_data
    from bluesky_digitwin.surrogate.search import SearchSpace, run_search
    from bluesky_digitwin.surrogate.training import TrainConfig

    data, _ = fitted
    journal = tmp_path / "search.journal"
    # Searched from Python, with a setting the command has a flag for and one it has not.
    run_search(
        prepare_training_data(str(data), ["x", "h"], "y"),
        n_trials=1,
        n_workers=1,
        storage=journal,
        study_name="s",
        space=SearchSpace(n_layers=(1, 2), n_units=(4, 16)),
        train_config=TrainConfig(max_epochs=20, patience=3),
    )
    argv = ["fit", str(data), "--features", "x", "h", "--target", "y", *FIT_FAST]
    argv += ["--storage", str(journal), "--study", "s", "--out", str(tmp_path / "twin")]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith("digitwin: error: study 's' was searched with other training settings")
    assert "max_epochs 20, not 250" in line and "patience 3, not 30" in line
    assert line.endswith(
        "continue it with the same settings (digitwin fit --max-epochs 20; "
        "TrainConfig(patience=3) in Python), or give a new study name"
    )


def test_predict_grid_missing_a_feature(fitted, tmp_path, capsys):
    _, out = fitted
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"x": [0.1]}).to_csv(grid, index=False)
    assert main(["predict", str(out), str(grid), "--out", str(tmp_path / "p.csv")]) == 2
    assert "the coordinates lack 'h'; this twin needs x, h" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_fit_refuses_to_overwrite_a_directory_that_is_not_a_twin(fitted, tmp_path, capsys):
    data, _ = fitted
    (tmp_path / "keep.txt").write_text("x")
    code = main(["fit", str(data), "--features", "x", "h", "--target", "y", "--out", str(tmp_path)])
    assert code == 2
    assert "not part of a saved twin (keep.txt)" in capsys.readouterr().err


def test_fit_into_a_project_holding_a_twin_and_its_data_deletes_nothing(fitted, tmp_path, capsys):
    """`--out proj` where proj holds a twin and the scans it learned from: refused before the
    search starts (its journal is never made), and every file stays."""
    data, twin = fitted
    project = tmp_path / "proj"
    shutil.copytree(twin, project)
    shutil.copy(data, project / "scans.csv")
    (project / "figures").mkdir()
    before = sorted(p.name for p in project.iterdir())
    journal = tmp_path / "search.journal"
    argv = ["fit", str(project / "scans.csv"), "--features", "x", "h", "--target", "y"]
    argv += [*FIT_FAST, "--storage", str(journal), "--study", "s", "--out", str(project)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == (
        f"digitwin: error: --out {project} holds files that are not part of a saved twin "
        "(figures, scans.csv); saving there would delete them: choose a new or empty directory\n"
    )
    assert not journal.exists()  # refused before the search
    assert sorted(p.name for p in project.iterdir()) == before
    assert (project / "scans.csv").read_bytes() == data.read_bytes()


@contextlib.contextmanager
def _immutable(path):
    """``chattr +i path`` for the block: unwritable even for root (skips where impossible)."""
    made = shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)], check=False)
    if not made or made.returncode != 0:
        pytest.skip("needs chattr +i (root, on a file system with immutable files)")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("{data}/twin", "--out {data}/twin: {data} is a file, not a directory; choose a"),
        ("/proc/digitwin-twin", "--out /proc/digitwin-twin: cannot write in /proc ("),
        (
            "{locked}/twin",
            "--out {locked}/twin: cannot write in {locked} (Operation not permitted)",
        ),
    ],
    ids=["under-a-file", "proc", "immutable"],
)
def test_fit_refuses_an_unwritable_out_before_the_search(fitted, tmp_path, capsys, out, message):
    """Real unwritable places (root writes through permissions): one line, exit 2, and the
    search never starts (its journal is never made)."""
    data, _ = fitted
    locked = tmp_path / "locked"
    locked.mkdir()
    out, message = (t.format(data=data, locked=locked) for t in (out, message))
    journal = tmp_path / "search.journal"
    argv = ["fit", str(data), "--features", "x", "h", "--target", "y", *FIT_FAST]
    argv += ["--storage", str(journal), "--study", "s", "--out", out]
    with _immutable(locked) if "locked" in out else contextlib.nullcontext():
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"digitwin: error: {message}"), err
    assert err.endswith("choose a directory you can write to\n")
    assert len(err.splitlines()) == 1
    assert not journal.exists()


def test_a_twin_that_cannot_be_saved_at_the_end_is_saved_elsewhere(
    fitted, tmp_path, monkeypatch, capsys
):
    """--out passes the check but cannot be replaced when the search is done (an immutable
    twin directory: renaming it fails even for root): the twin is saved in the current
    directory instead, and the one line says where."""
    data, twin = fitted
    out = tmp_path / "twin"
    shutil.copytree(twin, out)
    monkeypatch.chdir(tmp_path)
    argv = ["fit", str(data), "--features", "x", "h", "--target", "y", *FIT_FAST]
    argv += ["--ensemble", "1"]  # whatever the pruner does: no warning of a small ensemble
    with _immutable(out):
        assert main([*argv, "--out", str(out), "-q"]) == 2
    *warned, error = capsys.readouterr().err.splitlines()
    (fallback,) = tmp_path.glob("digitwin-twin-*")
    assert error == (
        f"digitwin: error: cannot save the twin to --out {out} (Operation not permitted); "
        f"saved it to {fallback} instead: move it where you want it"
    )
    # A twin this tiny may be told that it is no better than interpolation: one line, no more.
    assert all(line.startswith("digitwin: warning: the twin predicts") for line in warned)
    saved = DigitalTwin.load(fallback)
    assert saved.id != DigitalTwin.load(out).id  # the new twin there, the old one untouched
    # Nothing else: no staging debris either.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fallback.name, "twin"])


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("{tmp}", "--out {tmp} is a directory; give the CSV file to write"),
        ("{data}/p.csv", "--out {data}/p.csv: {data} is a file, not a directory; choose a place"),
        ("/proc/p.csv", "--out /proc/p.csv: cannot write in /proc ("),
    ],
    ids=["directory", "under-a-file", "proc"],
)
def test_predict_refuses_an_unwritable_out_in_one_line(fitted, tmp_path, capsys, out, message):
    data, twin = fitted
    out, message = (t.format(data=data, tmp=tmp_path) for t in (out, message))
    assert main(["predict", str(twin), str(data), "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"digitwin: error: {message}"), err
    assert len(err.splitlines()) == 1


def test_predict_that_cannot_write_its_out_at_the_end_says_so_in_one_line(fitted, tmp_path, capsys):
    """An immutable PRED.csv: its directory is writable (the check passes), the file cannot
    be replaced even by root."""
    _, twin = fitted
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"x": [0.5], "h": [1.0]}).to_csv(grid, index=False)
    out = tmp_path / "p.csv"
    out.write_text("old\n")
    with _immutable(out):
        assert main(["predict", str(twin), str(grid), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"digitwin: error: cannot write --out {out} (Operation not permitted)\n")
    assert len([line for line in err.splitlines() if "error" in line]) == 1
    assert "internal error" not in err
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.csv", "p.csv"]


def _tamper_version(twin):
    meta = json.loads((twin / "twin.json").read_text())
    meta["format_version"] = "1.x"
    (twin / "twin.json").write_text(json.dumps(meta))


def _garbage_member(twin):
    import hashlib

    garbage = b"not a zip archive" * 10
    (twin / "member_0.keras").write_bytes(garbage)
    meta = json.loads((twin / "twin.json").read_text())
    meta["members"][0]["sha256"] = hashlib.sha256(garbage).hexdigest()
    (twin / "twin.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_tamper_version, "twin.json is damaged or was edited: 'format_version' must be a whole"),
        (_garbage_member, "member_0.keras is not a Keras model file bluesky-digitwin can read"),
    ],
    ids=["format-version", "garbage-member"],
)
def test_a_tampered_twin_is_one_line_and_exit_2(fitted, tmp_path, capsys, tamper, message):
    _, twin = fitted
    copy = tmp_path / "twin"
    shutil.copytree(twin, copy)
    tamper(copy)
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"x": [0.5], "h": [1.0]}).to_csv(grid, index=False)
    assert main(["predict", str(copy), str(grid), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.splitlines()) == 1
    assert "File not found" not in err and "internal error" not in err


def test_a_one_network_twin_is_said_and_its_spread_left_empty(fitted, tmp_path, capsys):
    """Asked for two networks, one trial: fit says so (one line on stderr, even with -q);
    predict writes an empty y_std and says why; suggest-step still suggests."""
    data, _ = fitted
    out = tmp_path / "twin"
    argv = ["fit", str(data), "--features", "x", "h", "--target", "y", "--trials", "1"]
    argv += ["--workers", "1", "--paper-ensemble", "--ensemble", "2", "--paper-search"]
    assert main([*argv, "--out", str(out), "-q"]) == 0
    # The paper's way throughout: its search (ReLU, no L2, 500 epochs) and the trials' own
    # networks.
    recorded = json.loads((out / "twin.json").read_text())
    assert recorded["search"]["space"]["activations"] == ["relu"]
    assert recorded["search"]["space"]["l2"] is None
    assert recorded["search"]["train_config"]["max_epochs"] == 500
    assert recorded["members"][0]["params"]["activation"] == "relu"
    # A twin this tiny may also be told that it is no better than interpolation.
    err = "".join(
        line
        for line in capsys.readouterr().err.splitlines(keepends=True)
        if not line.startswith("digitwin: warning: the twin predicts")
    )
    assert err.startswith("digitwin: warning: only 1 trial(s) completed"), err
    assert "(with one it has none: y_std is NaN)" in err
    assert len(err.splitlines()) == 1
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"x": [0.5, 0.5], "h": [1.0, 3.0]}).to_csv(grid, index=False)
    assert main(["predict", str(out), str(grid), "--out", str(tmp_path / "p.csv")]) == 0
    err = capsys.readouterr().err
    assert f"digitwin: warning: the twin in {out} has one network" in err
    assert "y_std is left empty (NaN)" in err
    frame = pd.read_csv(tmp_path / "p.csv")
    assert frame["y"].notna().all() and frame["y_std"].isna().all()
    assert main(["suggest-step", str(out), "--axis", "h", *STEP, "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["suggested_step"]["axis"] == "h"


@pytest.mark.slow
def test_the_installed_command_runs_the_live_demo_with_json(tmp_path):
    """The whole story: embedded Tiled, RunEngine, simulated magnetometer, TwinCallback,
    twin_guided_scan and simulate_scan, in fast mode; the last stdout line is the contract."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bluesky_digitwin.cli",
            "demo",
            "--fast",
            "--json",
            "--tiled-dir",
            str(tmp_path / "tiled"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    tiled = summary["tiled"]
    assert tiled["uri"].startswith("http://127.0.0.1:")
    assert len(tiled["measured"]) >= 8  # the coarse lines, then the suggested ones
    # The plan's decision (its candidate table, the twin's lines then) and the simulation.
    assert len(tiled["simulated"]) == 2
    assert len(tiled["decisions"]) == 1 and set(tiled["decisions"]) < set(tiled["simulated"])
    assert not set(tiled["measured"]) & set(tiled["simulated"])
    step = summary["suggested_step"]
    assert step["axis"] == "H" and step["units"] == "T"
    assert step["value"] in (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)
    assert set(summary["twin"]["learned_from"]) <= set(tiled["measured"])
    assert summary["entropy_change"]["peak_true"] > 10
    assert "Traceback" not in done.stderr
    # The runs survive in the embedded server's directory.
    assert (tmp_path / "tiled" / "catalog.db").is_file()
    # The wait for the twin shows the search's progress (on stderr, as stdout carries JSON).
    assert "trials finished" in done.stderr
    # The searches are recorded where `digitwin dashboard` looks by default.
    journal = tmp_path / "digitwin-demo" / "search.journal"
    assert summary["search"]["storage"] == str(journal)
    study = summary["search"]["study"]
    assert f"digitwin dashboard --study {study}" in done.stderr
    dashboard = subprocess.run(
        [sys.executable, "-m", "bluesky_digitwin.cli", "dashboard", "--study", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert dashboard.returncode == 2
    assert "no study 'nope' in journal digitwin-demo/search.journal;" in dashboard.stderr
    assert repr(study) in dashboard.stderr


# -- progress, and -q ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [False, True])
def test_fit_shows_the_search_progress_and_q_silences_everything(fitted, tmp_path, quiet):
    """As a user runs it (a fresh process, TensorFlow starting in it): the search's progress
    on stderr, the summary on stdout; with -q not a line, not even TensorFlow's own."""
    data, _ = fitted
    argv = ["fit", str(data), "--features", "x", "h", "--target", "y", *FIT_FAST]
    argv += ["--trials", "1", "--ensemble", "1", "--out", str(tmp_path / "twin")]
    done = subprocess.run(
        [sys.executable, "-m", "bluesky_digitwin.cli", *argv, *(["-q"] if quiet else [])],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,  # away from the checkout: the installed package (tests/conftest.py)
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "twin" / "twin.json").is_file()
    # A twin this tiny may be told, in one line, that it is no better than interpolation.
    told = [line for line in done.stderr.splitlines() if "twin predicts the held-out" in line]
    assert len(told) <= 1
    stderr = "".join(line for line in done.stderr.splitlines(True) if line.strip() not in told)
    if quiet:
        assert done.stdout == "" and stderr == ""
    else:
        progress = stderr.strip().splitlines()
        assert progress[0].startswith("search [....................] trial 0/1")
        assert progress[-1].startswith("search [####################] trial 1/1")
        assert len(progress) == len(set(progress))  # one line per change, not per poll
        assert "saved twin" in done.stdout


def test_progress_line_writes_one_line_per_change_unless_quiet():
    from bluesky_digitwin.surrogate.search import Progress

    snapshots = [
        Progress(finished=0, total=3, pruned=0, best_value=None, elapsed=0.4),
        Progress(finished=0, total=3, pruned=0, best_value=None, elapsed=0.9),
        Progress(finished=2, total=3, pruned=1, best_value=0.0123, elapsed=75.0),
        Progress(finished=4, total=3, pruned=1, best_value=0.01, elapsed=80.0),
    ]
    stream = io.StringIO()
    line = ProgressLine("search", stream=stream)
    for snapshot in snapshots:
        line(snapshot)
    line.done()
    assert stream.getvalue().splitlines() == [
        "search [....................] trial 0/3 (0 pruned), best validation MSE -, 0:00 elapsed",
        "search [#############.......] trial 2/3 (1 pruned), best validation MSE 0.0123, "
        "1:15 elapsed",
        # A worker may finish a trial more than asked: the bar is full, not overfull.
        "search [####################] trial 4/4 (1 pruned), best validation MSE 0.01, "
        "1:20 elapsed",
    ]
    quiet = io.StringIO()
    for snapshot in snapshots:
        ProgressLine("search", quiet=True, stream=quiet)(snapshot)
    assert quiet.getvalue() == ""


def test_suggest_step_q_leaves_the_table(fitted, capsys):
    _, twin = fitted
    argv = ["suggest-step", str(twin), "--axis", "h", *STEP]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "suggested step of h" in captured.out
    assert captured.err == ""  # what it waits for shows on a terminal only
    # The table is the result asked for: -q keeps it.
    assert main([*argv, "-q"]) == 0
    assert capsys.readouterr() == (captured.out, "")
    # With --json the JSON line is the result; -q leaves nothing else.
    assert main([*argv, "-q", "--json"]) == 0
    quiet = capsys.readouterr()
    assert json.loads(quiet.out)["suggested_step"]["axis"] == "h"
    assert quiet.err == ""


def test_compare_q_leaves_the_table(fitted, capsys):
    data, twin = fitted
    argv = ["compare", str(data), "--features", "x", "h", "--target", "y", "--twin", str(twin)]
    argv += ["--rbf-trials", "2", "--seed", "0", "-q"]
    assert main(argv) == 0
    quiet = capsys.readouterr()
    assert quiet.err == ""
    table = quiet.out.splitlines()
    assert table[0].split() == ["model", "fit"]
    assert [row.split()[0] for row in table[1:]] == ["twin", "linear", "spline", "rbf"]


def _on_a_terminal(argv: list[str], cwd) -> tuple[subprocess.CompletedProcess, str]:
    """Run the command with stderr on a pseudo-terminal: its result, and what the terminal got."""
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bluesky_digitwin.cli", *argv],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            timeout=600,
            check=False,
            cwd=cwd,  # away from the checkout: the installed package (tests/conftest.py)
            env={**os.environ, "COLUMNS": "300"},  # a new terminal has no size
        )
    finally:
        os.close(terminal)
    received = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the other end is closed and everything was read
            break
        if not chunk:
            break
        received += chunk
    os.close(controller)
    return done, received.decode()


@pytest.mark.slow
def test_a_terminal_shows_what_the_command_waits_for_then_only_the_result(fitted, tmp_path):
    _, twin = fitted
    argv = ["suggest-step", str(twin), "--axis", "h", *STEP]
    done, terminal = _on_a_terminal(argv, tmp_path)
    assert done.returncode == 0, terminal
    assert "suggested step of h" in done.stdout
    erase = "\r\x1b[K"
    assert terminal == (
        f"{erase}loading the twin in {twin} ..."
        f"{erase}simulating the measurement at each candidate step of h ..."
        f"{erase}"  # erased before the result: the screen keeps the table only
    )
    # -q: not a character on the terminal; the table all the same.
    quiet, terminal = _on_a_terminal([*argv, "-q"], tmp_path)
    assert quiet.returncode == 0
    assert terminal == ""
    assert quiet.stdout == done.stdout


# -- dashboard ----------------------------------------------------------------------------------


@pytest.fixture
def journal(tmp_path):
    """A journal file holding two (empty) studies, made by Optuna itself."""
    from bluesky_digitwin.surrogate.search import open_storage

    path = tmp_path / "search.journal"
    storage = open_storage(path)
    for name in ("first", "second"):
        optuna.create_study(storage=storage, study_name=name)
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--storage", "{journal}", "--study", "third"],
            "no study 'third' in journal {journal}; it has: 'first', 'second'",
        ),
        (
            ["--storage", "{tmp}/none.journal"],
            "no journal file {tmp}/none.journal; give the --storage of a search",
        ),
        (
            [],
            "no --storage given, and no demo searches here (digitwin-demo/search.journal); give "
            "the --storage of a search",
        ),
        (["--storage", "{tmp}"], "is a directory; give the journal file a search wrote"),
        (
            ["--storage", "{tmp}/not-a-journal.csv"],
            "cannot read journal {tmp}/not-a-journal.csv as an Optuna journal file",
        ),
        (["--storage", "sqlite:///{tmp}/none.db"], "no SQLite database {tmp}/none.db"),
        (["--storage", "{journal}", "--port", "65536"], "expected a port from 0"),
        (
            ["--storage", "{journal}", "--artifacts", "{tmp}/none"],
            "--artifacts {tmp}/none is not a directory",
        ),
    ],
)
def test_dashboard_usage_errors_exit_2_with_one_line(
    journal, tmp_path, monkeypatch, capsys, argv, message
):
    monkeypatch.chdir(tmp_path)  # no digitwin-demo/ here
    (tmp_path / "not-a-journal.csv").write_text("x,y\n1,2\n")
    argv = [a.format(journal=journal, tmp=tmp_path) for a in argv]
    assert _exit_code(["dashboard", *argv, "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert message.format(journal=journal, tmp=tmp_path) in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_dashboard_on_a_port_in_use(journal, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["dashboard", "--storage", str(journal), "--port", str(port), "--no-browser"]
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err
    assert len(err.strip().splitlines()) == 1


def test_dashboard_never_prints_a_database_password(capsys):
    # Nothing listens on port 1: the connection fails, and the error names the URL.
    url = "postgresql://user:s3cret@127.0.0.1:1/db"
    assert _exit_code(["dashboard", "--storage", url, "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "s3cret" not in err
    assert "postgresql://user:***@127.0.0.1:1/db" in err
