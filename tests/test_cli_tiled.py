"""``digitwin fit --tiled-uri URI --runs UID ...``: learning from runs stored in Tiled.

A real Tiled server on loopback (TwinCatalog.embedded) holds three measured runs and one
simulated run; the API key reaches the command through TILED_API_KEY, as it would in use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.plans import scan

from bluesky_digitwin.cli import main
from bluesky_digitwin.sim import FirstOrderMagnet, Magnetometer
from bluesky_digitwin.tiled import SIMULATED_SPEC, TwinCatalog

FIT_FAST = ["--trials", "2", "--workers", "1", "--seed", "0", "--ensemble", "1"]
NAMES = ["--features", "T", "H", "--target", "M"]
KEYS = ["--keys", "T=mag_temperature", "H=mag_field", "M=mag_moment"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Iterator[tuple[TwinCatalog, list[str], str]]:
    """The catalog, the uids of its three measured runs, and the uid of a simulated run."""
    with TwinCatalog.embedded(tmp_path_factory.mktemp("tiled")) as catalog:
        RE = RunEngine({})
        catalog.subscribe(RE)
        mag = Magnetometer(FirstOrderMagnet(), noise=0.0, name="mag")
        measured = []
        for field in (1000.0, 5000.0, 20000.0):
            RE(bps.mv(mag.field, field))
            measured += RE(scan([mag], mag.temperature, 10, 60, 11))
        md = {
            "data_origin": "simulated",
            "tiled_specs": [SIMULATED_SPEC],
            "digital_twin": {"id": "twin", "learned_from": measured},
        }
        (simulated,) = RE(scan([mag], mag.temperature, 10, 60, 11, md=md))
        yield catalog, measured, simulated


@pytest.fixture
def key_in_env(stored, monkeypatch) -> None:
    monkeypatch.setenv("TILED_API_KEY", stored[0].api_key)


@pytest.mark.slow
def test_fit_learns_from_the_runs_named(stored, key_in_env, tmp_path, capsys):
    catalog, measured, _ = stored
    out = tmp_path / "twin"
    partial = [uid[:8] for uid in measured]  # partial uids are looked up, full ones recorded
    argv = ["fit", "--tiled-uri", catalog.uri, "--runs", *partial, *NAMES, *KEYS, *FIT_FAST]
    assert main([*argv, "--out", str(out)]) == 0
    meta = json.loads((out / "twin.json").read_text())
    assert meta["provenance"]["run_uids"] == measured
    assert meta["provenance"]["tiled_uri"] == catalog.uri
    assert meta["provenance"]["data_origin"] == "measured"
    assert meta["data"]["n_points"] == 33
    assert meta["units"] == {"T": "K", "H": "Oe", "M": "emu"}
    captured = capsys.readouterr()
    assert f"learning M(T, H) from 3 run(s) at {catalog.uri}" in captured.out
    assert catalog.api_key not in captured.out + captured.err


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_fit_refuses_a_simulated_run(stored, key_in_env, tmp_path, capsys):
    catalog, measured, simulated = stored
    argv = ["fit", "--tiled-uri", catalog.uri, "--runs", measured[0], simulated, *NAMES, *KEYS]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = error_line(capsys)
    assert f"run(s) {simulated} are simulated" in err and "--include-simulated" in err
    assert not (tmp_path / "o").exists()


def test_fit_with_a_wrong_key_says_so(stored, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    catalog, measured, _ = stored
    argv = ["fit", "--tiled-uri", catalog.uri, "--api-key", "wrong0key", "--runs", measured[0]]
    assert main([*argv, *NAMES, *KEYS, "--out", str(tmp_path / "o")]) == 2
    err = error_line(capsys)
    assert "refused the API key; set TILED_API_KEY" in err
    assert "wrong0key" not in err


def test_fit_without_a_key_says_where_to_put_it(stored, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    catalog, measured, _ = stored
    argv = ["fit", "--tiled-uri", catalog.uri, "--runs", measured[0], *NAMES, *KEYS]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert "needs an API key; set the environment variable TILED_API_KEY" in error_line(capsys)


def test_fit_names_runs_that_are_not_there(stored, key_in_env, tmp_path, capsys):
    catalog, _, _ = stored
    argv = ["fit", "--tiled-uri", catalog.uri, "--runs", "0123456789", *NAMES, *KEYS]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert f"no run 0123456789 at {catalog.uri}" in error_line(capsys)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give DATA (a CSV or netCDF file), or --tiled-uri URI --runs UID"),
        (["{data}", "--tiled-uri", "{uri}", "--runs", "abc"], "either DATA or --tiled-uri"),
        (["--runs", "abc"], "--runs needs the server: --tiled-uri URI"),
        (["--tiled-uri", "{uri}"], "--tiled-uri needs the runs to learn from: --runs UID"),
        (
            ["--tiled-uri", "{uri}", "--tiled-profile", "p", "--runs", "abc"],
            "either --tiled-uri or --tiled-profile",
        ),
        (["{data}", "--api-key", "k"], "go with --tiled-uri and --runs"),
        (["--tiled-uri", "{uri}", "--runs", "abc", "--keys", "T"], "NAME=DATA_KEY pairs"),
    ],
)
def test_usage_errors_exit_2_with_one_line(stored, tmp_path, capsys, extra, message):
    data = tmp_path / "scans.csv"
    data.write_text("T,H,M\n1,2,3\n")
    fill = {"{data}": str(data), "{uri}": stored[0].uri}
    argv = ["fit", *[fill.get(a, a) for a in extra], *NAMES, "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert message in error_line(capsys)
