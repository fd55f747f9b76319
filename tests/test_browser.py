"""A real browser on Tiled's web UI: simulated runs are shown apart, and say so.

An embedded Tiled server (TwinCatalog.embedded) gets one measured and one simulated run. Headless
Chromium (Debian's ``chromium`` and ``chromium-driver`` packages, driven by Selenium) opens
Tiled's own web UI at ``/ui/``, goes to ``simulated`` the way a person would (clicking the
container, then the run), and checks that the simulated run is listed there, that the measured
one is not, that the run's metadata shows ``data_origin: simulated`` and that its specs name
``SimulatedRun``. A screenshot of the metadata view is kept in the test's tmp directory.

Without Chromium, chromedriver or Selenium the test is skipped, so developer machines without
them still pass; with ``DIGITWIN_REQUIRE_BROWSER=1`` (CI, after ``.ci/install-browser``) it fails
instead. With ``DIGITWIN_UPDATE_SCREENSHOTS=1`` the screenshot also replaces
``docs/screenshots/tiled-simulated.png``, the one the documentation shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.plans import scan
from browser_testing import TIMEOUT, headless_chromium, keep_screenshot

from bluesky_digitwin.sim import FirstOrderMagnet, Magnetometer
from bluesky_digitwin.tiled import SIMULATED_SPEC, TwinCatalog


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium; skipped (or failed, if required) without it (browser_testing)."""
    with headless_chromium(tmp_path) as driver:
        yield driver


def _write_runs(catalog: TwinCatalog) -> tuple[str, str]:
    """One measured temperature scan and one simulated run learned from it; their uids."""
    RE = RunEngine({})
    catalog.subscribe(RE)
    mag = Magnetometer(FirstOrderMagnet(), noise=0.0, seconds_per_point=0, name="mag")
    RE(bps.mv(mag.field, 5000.0))
    (measured,) = RE(scan([mag], mag.temperature, 10, 60, 4, md={"sample": "ErCo2"}))

    md = {
        "sample": "ErCo2",
        "data_origin": "simulated",
        "tiled_specs": [SIMULATED_SPEC],
        "digital_twin": {"id": "twin-browser-check", "learned_from": [measured]},
    }

    def simulated_sweep():
        """What simulate_scan writes, in small: a run under the simulated metadata."""
        yield from bps.open_run(md)
        for temperature in (12.0, 30.0, 45.0):
            yield from bps.mv(mag.temperature, temperature)
            yield from bps.trigger_and_read([mag])
        yield from bps.close_run()

    (simulated,) = RE(simulated_sweep())
    return measured, simulated


def test_tiled_web_ui_shows_the_simulated_run_and_its_origin(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def page_text() -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    def wait_for_text(*texts: str) -> str:
        """The page's text once all of ``texts`` are in it."""
        WebDriverWait(browser, TIMEOUT).until(lambda _: all(t in page_text() for t in texts))
        return page_text()

    def click(xpath: str) -> None:
        WebDriverWait(browser, TIMEOUT).until(lambda d: d.find_elements(By.XPATH, xpath))
        browser.find_element(By.XPATH, xpath).click()

    def cell(text: str) -> str:
        return f"//*[@role='gridcell' and normalize-space()='{text}']"

    def tab(label: str) -> str:
        return f"//*[@role='tab' and normalize-space()='{label}']"

    with TwinCatalog.embedded(tmp_path / "tiled") as catalog:
        measured, simulated = _write_runs(catalog)
        server = urlsplit(catalog.uri)
        # Tiled moves an ``api_key`` query parameter into a cookie for the rest of the session.
        browser.get(f"{server.scheme}://{server.netloc}/ui/?api_key={catalog.api_key}")
        wait_for_text("measured", "simulated")

        click(cell("simulated"))  # the container of simulated runs
        listing = wait_for_text(simulated)
        assert urlsplit(browser.current_url).path == "/ui/browse/simulated"
        assert measured not in listing  # measured runs are kept apart
        browser.save_screenshot(str(tmp_path / "tiled-simulated-listing.png"))

        click(cell(simulated))  # the run: its contents are its streams
        wait_for_text("primary")
        assert urlsplit(browser.current_url).path == f"/ui/browse/simulated/{simulated}"
        click(tab("Detail"))  # its node as JSON: the specs
        detail = wait_for_text('"specs"', SIMULATED_SPEC)
        assert f'"name": "{SIMULATED_SPEC}"' in detail

        click(tab("Metadata"))  # its metadata as YAML: start and stop documents
        metadata = wait_for_text("data_origin", "digital_twin")
        assert f"uid: {simulated}" in metadata
        assert "data_origin: simulated" in metadata
        assert "id: twin-browser-check" in metadata
        assert measured in metadata  # digital_twin.learned_from
        screenshot = tmp_path / "tiled-simulated.png"
        assert browser.save_screenshot(str(screenshot))

    assert screenshot.stat().st_size > 10_000
    keep_screenshot(screenshot, "tiled-simulated.png")
