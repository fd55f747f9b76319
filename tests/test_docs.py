"""The tutorial runs as written: every ```python block of docs/tutorial.md, in order.

The blocks are executed in one namespace, as a reader typing them into one IPython session
would, in a fresh Python process whose working directory is a temporary directory (not the
checkout: there, the source tree would shadow the installed package, see conftest.py). A failing
block fails the test with its number, its line in the page and its traceback.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"

#: Seconds the whole tutorial may take here before the test gives up (it waits up to 600 s for
#: the twin itself; it normally takes about a minute and a half).
TIMEOUT = 900

_FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")

#: Executed in the child process: run each block, report the first failure and stop.
_RUNNER = r"""
import json, sys, time, traceback

blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
start = time.perf_counter()
for number, (line, source) in enumerate(blocks, start=1):
    began = time.perf_counter()
    try:
        code = compile(source, f"<docs/tutorial.md, block {number}, line {line}>", "exec")
        exec(code, namespace)
    except BaseException:
        sys.stdout.flush()
        sys.stderr.write(
            f"\nblock {number} of {len(blocks)} (docs/tutorial.md line {line}) failed:\n"
            + traceback.format_exc()
        )
        sys.exit(1)
    print(f"[block {number} ran in {time.perf_counter() - began:.1f} s]", flush=True)
print(f"[tutorial ran in {time.perf_counter() - start:.1f} s]", flush=True)
"""


def python_blocks(text: str) -> list[tuple[int, str]]:
    """The ```python fenced blocks of a Markdown text: (line of the fence, source), in order."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, info = match.group(1), match.group(2).strip()
        end = i + 1
        while end < len(lines) and not (
            lines[end].startswith(fence) and not lines[end].strip(fence[0]).strip()
        ):
            end += 1
        if info == "python":
            blocks.append((i + 1, "\n".join(lines[i + 1 : end]) + "\n"))
        i = end + 1
    return blocks


def other_python_fences(text: str) -> list[str]:
    """Fences that would show Python code without being run here (```py, {code-block} python)."""
    found = []
    for line in text.splitlines():
        match = _FENCE.match(line)
        if not match:
            continue
        words = match.group(2).replace("{", " ").replace("}", " ").split()
        if match.group(2).strip() != "python" and any(
            w in ("py", "python", "python3", "ipython", "ipython3", "pycon") for w in words
        ):
            found.append(line)
    return found


def test_the_tutorial_has_only_runnable_python_blocks():
    text = TUTORIAL.read_text(encoding="utf-8")
    assert len(python_blocks(text)) >= 5
    assert other_python_fences(text) == [], "every Python block must be a ```python block"


@pytest.mark.slow
def test_the_tutorial_runs(tmp_path):
    blocks = python_blocks(TUTORIAL.read_text(encoding="utf-8"))
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    runner = tmp_path / "run_tutorial.py"
    runner.write_text(_RUNNER)
    session = tmp_path / "session"
    session.mkdir()
    env = dict(os.environ)
    # As a headless IPython session: figures are drawn for savefig, no window is opened.
    env["MPLBACKEND"] = "Agg"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        result = subprocess.run(
            [sys.executable, str(runner), str(tmp_path / "blocks.json")],
            cwd=session,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the tutorial did not finish within {TIMEOUT} s:\n{exc.stdout or ''}")
    if result.returncode != 0:
        pytest.fail(
            f"the tutorial failed (exit code {result.returncode})\n"
            f"--- output ---\n{result.stdout[-4000:]}\n--- error ---\n{result.stderr[-8000:]}",
            pytrace=False,
        )
    print(result.stdout)
    assert (session / "step-table.png").stat().st_size > 10_000
    assert (session / "live-twin.png").stat().st_size > 10_000


# -- every import path the README and the docs show ---------------------------------------------

_ROOT = Path(__file__).resolve().parents[1]
_PAGES = [
    _ROOT / "README.md",
    *sorted(p for p in (_ROOT / "docs").rglob("*.md") if "_build" not in p.parts),
]
_DOTTED = re.compile(r"\bbluesky_digitwin(?:\.[A-Za-z_]\w*)+")
_FROM_IMPORT = re.compile(r"\bfrom (bluesky_digitwin[\w.]*) import (\([^)]*\)|[^\n`]+)")
#: Imported, it starts a RunEngine and a Tiled server (RE Manager's startup module): found only.
_STARTUP_MODULES = {"bluesky_digitwin.queue_startup"}


def _shown_paths() -> set[str]:
    """Every ``bluesky_digitwin....`` path and every ``from bluesky_digitwin... import`` name."""
    paths: set[str] = set()
    for page in _PAGES:
        text = page.read_text()
        paths.update(_DOTTED.findall(text))
        for module, names in _FROM_IMPORT.findall(text):
            for name in re.sub(r"#[^\n]*", "", names).strip("()").split(","):
                name = name.split(" as ")[0].strip()
                if name.isidentifier():
                    paths.add(f"{module}.{name}")
    return paths


def _resolve(path: str) -> object:
    """The object ``path`` names: its longest importable module, then attributes."""
    import importlib
    import importlib.util

    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        if module_name in _STARTUP_MODULES:
            assert importlib.util.find_spec(module_name) is not None
            return module_name
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and not module_name.startswith(exc.name):
                raise  # the module exists but imports something missing: a real failure
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(path)


def test_every_import_path_the_readme_and_the_docs_show_works():
    paths = _shown_paths()
    assert len(paths) > 50  # the pages were read
    broken = {}
    for path in sorted(paths):
        try:
            _resolve(path)
        except Exception as exc:
            broken[path] = f"{type(exc).__name__}: {exc}"
    assert not broken, broken
