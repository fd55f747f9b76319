"""No credential in any output or saved file: the one redaction, and the commands that use it.

The secrets are drawn at run time; the commands run for real in subprocesses (``digitwin fit``,
``worker``, ``dashboard``) on an unreachable PostgreSQL server and on a SQLite file, and every
line they print and every file they write is searched for the secret.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from digitwin_testing import smooth_table, subprocess_env
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from bluesky_digitwin.redaction import MASK, redact, redact_url

# -- the function ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("postgresql://me:{s}@db:5432/x", "postgresql://me:***@db:5432/x"),
        ("postgresql+psycopg2://me:{s}@db/x", "postgresql+psycopg2://me:***@db/x"),
        ("postgresql://me@db/x?password={s}", "postgresql://me@db/x?password=***"),
        ("postgresql://db/x?sslmode=require&PASSWD={s}", "postgresql://db/x?sslmode=require&PASSWD=***"),
        ("postgresql://db/x?pwd={s}&user=me", "postgresql://db/x?pwd=***&user=me"),
        ("postgresql://db/x?sslpassword={s}", "postgresql://db/x?sslpassword=***"),
        ("mysql://db/x?Secret={s}", "mysql://db/x?Secret=***"),
        ("mysql://db/x?token={s}", "mysql://db/x?token=***"),
        ("mysql://db/x?access_token={s}", "mysql://db/x?access_token=***"),
        ("snowflake://db/x?aws_secret_access_key={s}", "snowflake://db/x?aws_secret_access_key=***"),
        ("snowflake://db/x?aws_access_key_id={s}", "snowflake://db/x?aws_access_key_id=***"),
        ("http://tiled:8000/api?api_key={s}&x=1", "http://tiled:8000/api?api_key=***&x=1"),
        ("sqlite:////tmp/x.db?password={s}", "sqlite:////tmp/x.db?password=***"),
        ("redis://:{s}@cache:6379/0", "redis://:***@cache:6379/0"),
        # A password with an unescaped "@" or "/" is still masked whole.
        ("postgresql://me:{s}@x/y@db/x", "postgresql://me:***@db/x"),
        # Prose around it, as drivers and SQLAlchemy write it.
        ("cannot parse 'postgresql://me:{s}@db/x'!", "cannot parse 'postgresql://me:***@db/x'!"),
        ("host=db password={s} user=me", "host=db password=*** user=me"),
        ("host=db password = '{s} x' user=me", "host=db password = '***' user=me"),
    ],
)  # fmt: skip
def test_every_credential_form_is_masked(template, expected):
    secret = secrets.token_hex(8)
    assert redact(template.format(s=secret)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://me@db:5432/x?sslmode=require",
        "sqlite:///tmp/x.db",
        "search.journal",
        "(Background on this error at: https://sqlalche.me/e/20/e3q8)",
        "design=1 signal=2 keyword=3",
    ],
)
def test_what_holds_no_secret_is_left_alone(text):
    assert redact(text) == text


@given(
    password=st.text(
        alphabet=st.characters(codec="ascii", exclude_characters="\0\n\r\t \"'"), min_size=1
    ),
    user=st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
)
def test_what_sqlalchemy_reads_as_the_password_never_shows(password, user):
    url = f"postgresql://{user}:{password}@db.example:5432/x"
    shown = redact_url(url)
    assert shown == f"postgresql://{user}:{MASK}@db.example:5432/x"
    parsed = make_url(shown)  # SQLAlchemy's own reading: the user and host, no password
    assert (parsed.username, parsed.password, parsed.host) == (user, MASK, "db.example")


def test_search_keeps_redact_url_and_uses_the_one_function():
    from bluesky_digitwin.surrogate import search

    assert search.redact_url is redact_url


# -- the commands ---------------------------------------------------------------------------------


def command_env(cwd: Path) -> dict[str, str]:
    # A database search keeps its trial models in the user cache: here, so they are searched.
    return {**subprocess_env(), "XDG_CACHE_HOME": str(cwd / "cache")}


def digitwin(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    exe = shutil.which("digitwin")
    assert exe, "the package is not installed (pip install -e .)"
    return subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env=command_env(cwd),
    )  # fmt: skip


def dashboard_output(*args: str, cwd: Path) -> tuple[int | None, str, str]:
    """Run ``digitwin dashboard`` until it has printed its address (or ended); Ctrl-C it."""
    exe = shutil.which("digitwin")
    assert exe
    process = subprocess.Popen(
        [exe, "dashboard", *args, "--port", "0", "--no-browser"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=command_env(cwd),
    )  # fmt: skip
    try:
        first = process.stdout.readline()  # the banner or the address; "" when it ended
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, first + out, err


def files_holding(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.slow
def test_no_command_shows_a_database_password_of_an_unreachable_server(tmp_path):
    secret = secrets.token_hex(12)
    smooth_table().to_csv(tmp_path / "scans.csv", index=False)
    fit = ["fit", "scans.csv", "--features", "x", "h", "--target", "y", "--out", "twin"]
    # Port 1 on loopback: nothing listens there, the driver fails at once.
    for url in [
        f"postgresql://digitwin:{secret}@127.0.0.1:1/twins?connect_timeout=2",
        f"postgresql://digitwin@127.0.0.1:1/twins?password={secret}&sslmode=disable"
        f"&sslpassword={secret}&PassWord={secret}",
    ]:
        runs = [
            # --workers 0 first prints the command the workers elsewhere are to run.
            digitwin(*fit, "--workers", "0", "--storage", url, "--study", "s", cwd=tmp_path),
            digitwin("worker", "--storage", url, "--study", "s", cwd=tmp_path),
        ]
        for done in runs:
            assert done.returncode == 2, done.stderr
            assert done.stderr.startswith("digitwin: error: cannot open the storage postgresql")
            assert secret not in done.stdout + done.stderr, done.stderr
        code, out, err = dashboard_output("--storage", url, cwd=tmp_path)
        assert code == 2, err
        assert secret not in out + err, err
    done = digitwin(*fit, "--trials", "1", "--storage", url, "--study", "s", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert secret not in done.stdout + done.stderr, done.stderr
    assert files_holding(tmp_path, secret) == []


@pytest.mark.slow
def test_a_sqlite_search_with_a_password_query_keeps_it_out_of_output_and_files(tmp_path):
    secret = secrets.token_hex(12)
    smooth_table().to_csv(tmp_path / "scans.csv", index=False)
    url = f"sqlite:///{tmp_path / 'search.db'}?password={secret}"
    fit = digitwin(
        "fit", "scans.csv", "--features", "x", "h", "--target", "y", "--trials", "1",
        "--workers", "1", "--ensemble", "1", "--storage", url, "--study", "s", "--out", "twin",
        cwd=tmp_path,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    assert (tmp_path / "twin" / "twin.json").is_file()
    assert "password=***" in (tmp_path / "twin" / "twin.json").read_text()
    worker = digitwin("worker", "--storage", url, "--study", "s", "--trials", "2", cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr
    assert "password=***" in worker.stdout
    _, out, err = dashboard_output("--storage", url, "--study", "s", cwd=tmp_path)
    assert "password=***" in out, (out, err)
    missing = dashboard_output("--storage", url.replace("search.db", "typo.db"), cwd=tmp_path)
    assert missing[0] == 2
    for text in [fit.stdout, fit.stderr, worker.stdout, worker.stderr, out, err, *missing[1:]]:
        assert secret not in text, text
    assert files_holding(tmp_path, secret) == []
