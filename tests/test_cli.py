"""The ``digitwin`` command: the contract of design.md, and one clear line for every mistake."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from bluesky_digitwin.cli import main

FIT_FAST = ["--trials", "2", "--workers", "1", "--seed", "0", "--ensemble", "2"]


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
    assert "not a saved twin" in capsys.readouterr().err


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
    assert len(tiled["simulated"]) == 1
    assert not set(tiled["measured"]) & set(tiled["simulated"])
    step = summary["suggested_step"]
    assert step["axis"] == "H" and step["units"] == "T"
    assert step["value"] in (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)
    assert set(summary["twin"]["learned_from"]) <= set(tiled["measured"])
    assert summary["entropy_change"]["peak_true"] > 10
    assert "Traceback" not in done.stderr
    # The runs survive in the embedded server's directory.
    assert (tmp_path / "tiled" / "catalog.db").is_file()
