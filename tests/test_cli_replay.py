"""``digitwin replay PATH``: runs kept in backups go into Tiled, once; what cannot go is said.

The backups are made for real: a RunEngine writes to an embedded Tiled server that was stopped
before the run (TwinCatalog.subscribe keeps every run Tiled did not take).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina
from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import det

from bluesky_digitwin.cli import main
from bluesky_digitwin.data import DataWarning
from bluesky_digitwin.tiled import TwinCatalog


@pytest.fixture
def backup(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An embedded catalog's directory (server stopped) and the uid of a run kept in backup."""
    directory = tmp_path / "tiled"
    catalog = TwinCatalog.embedded(directory)
    RE = RunEngine({})
    catalog.subscribe(RE)
    catalog.close()
    with stamina.set_testing(True, attempts=1), pytest.warns(DataWarning, match="kept in"):
        (uid,) = RE(count([det], 3, md={"data_origin": "Measured"}))
    assert (directory / "backup" / f"{uid}.jsonl").exists()
    yield directory, uid


def errors(err: str) -> list[str]:
    """The error lines of a command's stderr (not warnings, e.g. Python's ResourceWarnings)."""
    return [line for line in err.splitlines() if not line.startswith("digitwin: warning: ")]


def err_line(err: str) -> str:
    (line,) = [line for line in err.splitlines() if line.startswith("digitwin: error: ")]
    return line


@pytest.mark.slow
def test_replay_into_an_embedded_catalog(backup, capsys):
    directory, uid = backup
    assert main(["replay", str(directory / "backup"), "--tiled-dir", str(directory)]) == 0
    assert f"stored: run {uid} in measured" in capsys.readouterr().out
    with TwinCatalog.embedded(directory) as catalog:
        assert list(catalog.measured) == [uid]
        assert catalog.measured[uid].start["data_origin"] == "measured"
        assert len(catalog.measured[uid]["primary"].read()["det"]) == 3
    # Nothing left to replay, and nothing stored twice.
    assert main(["replay", str(directory / "backup"), "--tiled-dir", str(directory)]) == 0
    assert "no backup in" in capsys.readouterr().out


def test_replay_to_a_server_by_uri(backup, tmp_path, capsys, monkeypatch):
    directory, uid = backup
    kept = directory / "backup" / f"{uid}.jsonl"
    with TwinCatalog.embedded(tmp_path / "elsewhere") as server:
        monkeypatch.setenv("TILED_API_KEY", server.api_key)
        assert main(["replay", str(kept), "--tiled-uri", server.uri]) == 0
        assert list(server.measured) == [uid]
    assert not kept.exists()


@pytest.mark.slow
def test_replay_says_in_one_line_what_it_cannot_do(backup, tmp_path, capsys):
    directory, uid = backup
    kept = directory / "backup" / f"{uid}.jsonl"
    text = kept.read_text().replace('"measured"', '"interpolated"', 1)
    kept.write_text(text)
    assert main(["replay", str(kept), "--tiled-dir", str(directory)]) == 2
    err = capsys.readouterr().err
    assert errors(err) == [err_line(err)] and f"run {uid} refused: " in err
    assert "data_origin 'interpolated'" in err and f"correct it in {kept}" in err
    assert kept.exists()  # kept until it can be stored

    assert main(["replay", str(tmp_path / "nothing"), "--tiled-dir", str(directory)]) == 2
    err = capsys.readouterr().err
    assert len(errors(err)) == 1 and "Traceback" not in err
    (tmp_path / "junk.jsonl").write_text("not json\n")
    assert main(["replay", str(tmp_path / "junk.jsonl"), "--tiled-dir", str(directory)]) == 2
    assert "line 1 is not a bluesky document" in capsys.readouterr().err
