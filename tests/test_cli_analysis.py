"""``digitwin suggest-step`` and ``digitwin compare``: results, JSON, and one line per mistake."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import optuna
import pandas as pd
import pytest

from bluesky_digitwin import EnsembleRecipe, SearchStrategy
from bluesky_digitwin.cli import main
from bluesky_digitwin.sim import FirstOrderMagnet, coarse_magnetization, isofield_scans
from bluesky_digitwin.surrogate.search import SearchSpace
from bluesky_digitwin.surrogate.training import TrainConfig
from bluesky_digitwin.twin import DigitalTwin

MASS_MG = str(FirstOrderMagnet().mass_g * 1e3)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny twin of the simulated ErCo2-like magnet (K, Oe, emu), a copy that records no
    units, the coarse data and a fine-step reference with other column names."""
    root = tmp_path_factory.mktemp("cli-analysis")
    coarse = coarse_magnetization(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin = DigitalTwin.fit(
            coarse,
            ["T", "H"],
            "M",
            n_trials=2,
            n_workers=1,
            ensemble=EnsembleRecipe(size=2),
            seed=0,
            train_config=TrainConfig(max_epochs=30),
            space=SearchSpace(n_layers=(2, 2), n_units=(16, 16), l2=None),
            strategy=SearchStrategy(pruner=optuna.pruners.NopPruner()),
        )
    twin.save(root / "twin")
    # The same networks, as if learned from a CSV without units.
    shutil.copytree(root / "twin", root / "bare")
    meta = json.loads((root / "bare" / "twin.json").read_text())
    meta["units"] = {k: "" for k in meta["units"]}
    (root / "bare" / "twin.json").write_text(json.dumps(meta))

    data = root / "coarse.csv"
    coarse.to_dataframe().to_csv(data, index=False)
    fine = isofield_scans(
        FirstOrderMagnet(), [100.0, *np.arange(5000.0, 50001.0, 5000.0)], np.linspace(10, 60, 51)
    )
    reference = root / "fine.csv"
    pd.DataFrame({"t": fine["T"].values, "m": fine["M"].values, "h": fine["H"].values}).to_csv(
        reference, index=False
    )
    return {"twin": root / "twin", "bare": root / "bare", "data": data, "reference": reference}


def _exit_code(argv):
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


STEP = ["--candidates", "0.5", "0.2", "1", "--sweep-points", "51"]


def test_suggest_step_json(saved, capsys):
    argv = ["suggest-step", str(saved["twin"]), "--axis", "H", *STEP, "--json"]
    argv += ["--quantity", "magnetocaloric", "--mass", MASS_MG, "--mass-units", "mg"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert set(result["suggested_step"]) == {"axis", "value", "units"}
    # A field recorded in Oe is stepped in tesla on the command line.
    assert result["suggested_step"]["units"] == "T"
    assert result["units"] == "T"
    assert [row["step"] for row in result["table"]] == [0.2, 0.5, 1.0]
    assert result["tol"] == 0.025
    assert result["time_model"] == {
        "seconds_per_point": 45.0,
        "seconds_per_step_change": 2400.0,
        "sweep_rate": None,
        "points_per_line": None,
    }
    assert "step [T]" in captured.err  # the table goes to stderr with --json


def test_suggest_step_prints_a_table(saved, capsys):
    argv = ["suggest-step", str(saved["twin"]), "--axis", "H", *STEP, "--tol", "0.9"]
    argv += ["--seconds-per-point", "1", "--seconds-per-change", "60", "--points-per-line", "10"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "step [T]" in out and "lines" in out and "spread" in out
    # The map at 1 T steps: 6 lines of 10 points at 1 s, 5 changes of a minute = 6 min.
    assert "suggested step of H: 1 T" in out
    assert "6 min" in out


def test_suggest_step_on_a_twin_without_units(saved, capsys):
    base = ["suggest-step", str(saved["bare"]), "--axis", "H", *STEP]
    mce = ["--quantity", "magnetocaloric", "--mass", MASS_MG, "--mass-units", "mg"]
    assert _exit_code([*base, *mce]) == 2
    assert "--axis-units" in capsys.readouterr().err
    assert main([*base, *mce, "--axis-units", "Oe", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["units"] == "T"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--axis", "B"], "unknown axis 'B'; the twin's features are: T, H"),
        (["--axis", "H", "--candidates", "0.2", "0.2"], "candidate step 0.2 is given more than"),
        (
            ["--axis", "H", "--candidates", "0.5", "7"],
            "candidate step 7 T is larger than the learned range of H, 100 to 50000 Oe",
        ),
        (["--axis", "H", "--quantity", "magnetocaloric"], "--mass"),
        (["--axis", "H", "--tol", "0"], "expected a number > 0"),
        (["--axis", "H", "--candidates", "-1"], "expected a number > 0"),
        (["--axis", "H", "--quantity", "entropy"], "invalid choice"),
        (["--candidates", "0.2"], "--axis"),
    ],
)
def test_suggest_step_usage_errors(saved, capsys, extra, message):
    assert _exit_code(["suggest-step", str(saved["twin"]), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_suggest_step_needs_a_saved_twin(tmp_path, capsys):
    assert _exit_code(["suggest-step", str(tmp_path), "--axis", "H"]) == 2
    assert "holds no saved twin" in capsys.readouterr().err


COMPARE = ["--features", "T", "H", "--target", "M", "--rbf-trials", "2", "--seed", "0"]


def test_compare_with_a_reference_and_the_entropy_change(saved, capsys):
    argv = ["compare", str(saved["data"]), *COMPARE, "--twin", str(saved["twin"])]
    argv += ["--reference", str(saved["reference"]), "--reference-columns", "t", "h", "m"]
    argv += ["--quantity", "magnetocaloric", "--mass", MASS_MG, "--mass-units", "mg"]
    argv += ["--field-units", "Oe", "--at", "2", "5", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert [m["model"] for m in summary["models"]] == ["twin", "linear", "spline", "rbf"]
    for model in summary["models"]:
        assert model["target_rmse"] >= 0
        assert set(model["entropy_change"]) == {"2", "5"}
        assert model["entropy_change"]["5"]["rmse"] >= 0
    assert summary["reference_entropy_change"]["5"]["peak"] > 10
    assert "|ΔS_M| RMSE @5 T" in captured.err
    # The magnet's jump falls inside one 0.5 K step at its low fields: said under the table.
    assert [s["line"] for s in summary["unresolved_steps"]] == [100.0, 1000.0, 5000.0, 10000.0]
    assert summary["resolution_note"].startswith(
        "note: 4 measured line(s) jump within one step of T (T = 34.5-38.5 K): near there every "
        "model's |ΔS_M| is limited by that step and the twin's spread does not show;"
    )
    assert summary["resolution_note"] in captured.err


@pytest.mark.slow
def test_compare_fits_a_twin_without_reference(tmp_path, capsys):
    from digitwin_testing import smooth_table

    data = tmp_path / "scans.csv"
    smooth_table().to_csv(data, index=False)
    argv = ["compare", str(data), "--features", "x", "h", "--target", "y", "--trials", "1"]
    argv += ["--workers", "1", "--rbf-trials", "1", "--seed", "0", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [m["model"] for m in summary["models"]] == ["twin", "linear", "spline", "rbf"]
    assert summary["reference"] is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--reference-columns", "t", "h"], "--reference-columns needs 3 names"),
        (["--reference-columns", "t", "h", "M"], "has no column(s) 'M'"),
        (["--at", "3"], "--at apply to --quantity magnetocaloric"),
        (["--quantity", "magnetocaloric", "--field-units", "Oe"], "--mass 0.61 --mass-units mg"),
        (["--quantity", "magnetocaloric", "--mass", "1"], "--field-units Oe"),
        (
            [
                "--quantity",
                "magnetocaloric",
                "--mass",
                MASS_MG,
                "--mass-units",
                "mg",
                "--field-units",
                "Oe",
                "--reference-columns",
                "t",
                "h",
                "m",
                "--at",
                "0.03",
            ],
            "no field change of 0.03 T",
        ),
    ],
)
def test_compare_usage_errors(saved, capsys, extra, message):
    argv = ["compare", str(saved["data"]), *COMPARE, "--twin", str(saved["twin"])]
    argv += ["--reference", str(saved["reference"]), *extra]
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_compare_refuses_a_twin_of_other_columns(saved, tmp_path, capsys):
    data = tmp_path / "renamed.csv"
    pd.read_csv(saved["data"]).rename(columns={"T": "temp"}).to_csv(data, index=False)
    argv = ["compare", str(data), "--features", "temp", "H", "--target", "M"]
    argv += ["--twin", str(saved["twin"])]
    assert _exit_code(argv) == 2
    assert "learned M(T, H), not M(temp, H)" in capsys.readouterr().err
