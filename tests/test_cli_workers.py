"""`digitwin fit --workers 0` and `digitwin worker`: the command lines of a distributed search.

The PostgreSQL run with a killed worker is tests/surrogate/test_workers_postgres.py; here the
same commands run on a journal file, and their mistakes are one clear line with exit code 2.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from digitwin_testing import smooth_table


def digitwin(*args: str, cwd) -> subprocess.CompletedProcess:
    exe = shutil.which("digitwin")
    command = [exe] if exe else [sys.executable, "-m", "bluesky_digitwin.cli"]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "scans.csv"
    smooth_table().to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_a_worker_command_joins_the_study_of_a_fit_command(table, tmp_path):
    journal = tmp_path / "search.journal"
    fit = digitwin(
        "fit", str(table), "--features", "x", "h", "--target", "y", "--trials", "2",
        "--workers", "1", "--ensemble", "1", "--storage", str(journal), "--study", "scans",
        "--out", str(tmp_path / "twin"), "-q", cwd=tmp_path,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    worker = digitwin(
        "worker", "--storage", str(journal), "--study", "scans", "--trials", "4", cwd=tmp_path
    )
    assert worker.returncode == 0, worker.stderr
    assert "joining study 'scans'" in worker.stdout
    assert "ran 2 trials; study 'scans' holds 4 of 4 finished trials" in worker.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "--workers 0 waits for workers elsewhere"),
        (["--workers", "0", "--storage", "x.journal"], "--study NAME they join"),
        (["--study", "a/b"], "--study 'a/b' is not allowed"),
        (["--workers", "-1"], "expected a number >= 1"),
    ],
)
def test_fit_refuses_bad_search_options_in_one_line(table, tmp_path, args, message):
    done = digitwin(
        "fit", str(table), "--features", "x", "h", "--target", "y", "--out",
        str(tmp_path / "twin"), *args, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "twin").exists()


def test_a_worker_refuses_a_missing_journal_without_creating_it(tmp_path):
    done = digitwin("worker", "--storage", "typo.journal", "--study", "scans", cwd=tmp_path)
    assert done.returncode == 2
    assert "no journal file at typo.journal" in done.stderr
    assert not (tmp_path / "typo.journal").exists()
