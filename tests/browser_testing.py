"""Headless Chromium for the browser checks (Tiled's web UI, optuna-dashboard).

Debian's ``chromium`` and ``chromium-driver`` packages, driven by Selenium. Without them the
checks are skipped, so developer machines without a browser still pass; with
``DIGITWIN_REQUIRE_BROWSER=1`` (CI, after ``.ci/install-browser``) they fail instead. With
``DIGITWIN_UPDATE_SCREENSHOTS=1`` a check's screenshot replaces the documentation's copy in
``docs/screenshots/``.

A test module uses it through its own fixture::

    @pytest.fixture
    def browser(tmp_path):
        with headless_chromium(tmp_path) as driver:
            yield driver
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: The documentation's screenshots (replaced only when asked to).
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
#: Seconds to wait for a page; the UIs are quick, but CI machines can be loaded.
TIMEOUT = 90
#: Chromium on a closed network: no sandbox (root in containers), no GPU, no calls home.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
WINDOW_SIZE = (1280, 1000)


def missing() -> list[str]:
    """What the browser checks need and this machine lacks."""
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if importlib.util.find_spec("selenium") is None:
        absent.append("the Python package selenium")
    return absent


@contextlib.contextmanager
def headless_chromium(tmp_path: Path, window_size: tuple[int, int] = WINDOW_SIZE) -> Iterator[Any]:
    """A headless Chromium (a Selenium driver) with its profile in ``tmp_path``.

    Skips the test when Chromium, chromedriver or Selenium is missing, or fails it when
    ``DIGITWIN_REQUIRE_BROWSER=1``.
    """
    absent = missing()
    if absent:
        reason = (
            f"the browser check needs {', '.join(absent)} (apt-get install chromium "
            "chromium-driver, e.g. by .ci/install-browser; pip install selenium)"
        )
        if os.environ.get("DIGITWIN_REQUIRE_BROWSER") == "1":
            pytest.fail(f"DIGITWIN_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={window_size[0]},{window_size[1]}")
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def keep_screenshot(screenshot: Path, name: str) -> None:
    """Copy ``screenshot`` to ``docs/screenshots/<name>`` if ``DIGITWIN_UPDATE_SCREENSHOTS=1``."""
    if os.environ.get("DIGITWIN_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOTS / name)
