"""A real browser on Tiled's web UI: simulated runs are shown apart, and say so.

An embedded Tiled server (TwinCatalog.embedded) gets one measured and one simulated run. Headless
Chromium (Debian's ``chromium`` and ``chromium-driver`` packages, driven by Selenium) opens
Tiled's own web UI at ``/ui/``, goes to ``simulated`` the way a person would (clicking the
container, then the run), and checks that the simulated run is listed there, that the measured
one is not, that the run's metadata shows ``data_origin: simulated`` and that its specs name
``SimulatedRun``. A screenshot of the metadata view is kept in the test's tmp directory. A
second check opens a decision of ``twin_guided_scan``: a simulated run whose ``decision`` stream
holds the candidate table.

Without Chromium, chromedriver or Selenium the test is skipped, so developer machines without
them still pass; with ``DIGITWIN_REQUIRE_BROWSER=1`` (CI, after ``.ci/install-browser``) it fails
instead. With ``DIGITWIN_UPDATE_SCREENSHOTS=1`` the screenshot also replaces
``docs/screenshots/tiled-simulated.png``, the one the documentation shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bluesky.plan_stubs as bps
import httpx
import pytest
from bluesky import RunEngine
from bluesky.plans import scan
from browser_testing import TIMEOUT, headless_chromium, keep_screenshot
from digitwin_testing import SyncTwinSource
from tiled.queries import Key

from bluesky_digitwin.buffer import ScanBuffer
from bluesky_digitwin.plans import twin_guided_scan
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


class Page:
    """Tiled's web UI in the browser, used the way a person does: read, click, look."""

    def __init__(self, browser: Any) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.browser, self.by, self.wait = browser, By, WebDriverWait(browser, TIMEOUT)

    def text(self) -> str:
        return self.browser.find_element(self.by.TAG_NAME, "body").text

    def wait_for_text(self, *texts: str) -> str:
        """The page's text once all of ``texts`` are in it."""
        self.wait.until(lambda _: all(t in self.text() for t in texts))
        return self.text()

    def click(self, xpath: str) -> None:
        self.wait.until(lambda d: d.find_elements(self.by.XPATH, xpath))
        self.browser.find_element(self.by.XPATH, xpath).click()

    def open(self, catalog: TwinCatalog) -> None:
        server = urlsplit(catalog.uri)
        # Tiled moves an ``api_key`` query parameter into a cookie for the rest of the session.
        self.browser.get(f"{server.scheme}://{server.netloc}/ui/?api_key={catalog.api_key}")
        self.wait_for_text("measured", "simulated")

    @staticmethod
    def cell(text: str) -> str:
        return f"//*[@role='gridcell' and normalize-space()='{text}']"

    @staticmethod
    def tab(label: str) -> str:
        return f"//*[@role='tab' and normalize-space()='{label}']"


def test_tiled_web_ui_shows_the_simulated_run_and_its_origin(browser, tmp_path):
    page = Page(browser)
    wait_for_text, click, cell, tab = page.wait_for_text, page.click, page.cell, page.tab

    with TwinCatalog.embedded(tmp_path / "tiled") as catalog:
        measured, simulated = _write_runs(catalog)
        page.open(catalog)

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


def test_a_guided_plans_decision_is_a_stream_a_tiled_browser_opens(browser, tmp_path):
    """twin_guided_scan's decision: a simulated run whose `decision` stream is the table."""
    page = Page(browser)
    keys = {"T": "mag_temperature", "H": "mag_field", "M": "mag_moment"}
    with TwinCatalog.embedded(tmp_path / "tiled") as catalog:
        RE = RunEngine({})
        catalog.subscribe(RE)
        mag = Magnetometer(FirstOrderMagnet(), noise=0.0, seconds_per_point=0, name="mag")
        source = SyncTwinSource(ScanBuffer(("T", "H"), "M", keys=keys))
        RE.subscribe(source)
        RE(
            twin_guided_scan(
                [mag.moment], mag.temperature, 10, 60, 6, mag.field, [100.0, 50000.0],
                twin_source=source, slow_feature="H", quantity="map",
                candidates=[12475.0, 24950.0], suggest_kwargs={"tol": 10.0, "sweep_points": 11},
                poll=0.05, md={"sample": "ErCo2"},
            )
        )  # fmt: skip
        (decision,) = catalog.simulated.search(Key("phase") == "decision")
        # The rows, as any Tiled client reads them back.
        table = catalog.simulated[decision]["decision"].read()
        assert list(table["step"].values) == [12475.0, 24950.0]
        assert list(table["n_lines"].values) == [5.0, 3.0]

        page.open(catalog)
        page.click(page.cell("simulated"))
        page.wait_for_text(decision)
        page.click(page.cell(decision))  # the run: its simulation and its decision
        page.wait_for_text("primary", "decision")
        page.click(page.tab("Metadata"))
        metadata = page.wait_for_text("decided_by", "suggested_step")
        assert "decided_by: twin_guided_scan" in metadata
        assert "phase: decision" in metadata
        page.click(page.tab("View"))
        page.click(page.cell("decision"))  # the stream
        page.click(page.cell("internal"))  # its table: one row per candidate step
        # The grid draws the columns in view (the others scroll in): the first ones.
        page.wait_for_text("seq_num", "step", "n_lines", "error")
        assert urlsplit(browser.current_url).path.endswith(f"{decision}/decision/internal")
        assert set(table.data_vars) >= {"max_error", "spread", "time_s"}
        # The rows as the page asks for them: the table's partition as application/json-seq.
        # Tiled 0.2.20's server frames each record RFC 7464's way (a 0x1E record separator
        # first: bluesky/tiled#1520), but its UI splits the text at newlines and JSON.parse()s
        # each line without stripping it, so the grid draws the columns and "No rows" for
        # every table, ours and any other (bluesky/tiled#1378). The rows are there:
        answer = httpx.get(
            f"{catalog.uri}/table/partition/simulated/{decision}/decision/internal",
            params={"partition": 0, "format": "application/json-seq"},
            headers={"Authorization": f"Apikey {catalog.api_key}"},
        )
        records = [json.loads(r) for r in answer.text.split("\x1e") if r.strip()]
        assert [r["step"] for r in records] == [12475.0, 24950.0]
        # Kept in the test's tmp directory, not in the docs, until Tiled's UI reads them.
        assert browser.save_screenshot(str(tmp_path / "tiled-decision.png"))
