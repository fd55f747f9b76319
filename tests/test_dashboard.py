"""optuna-dashboard on a real search: its API, the command, and a real browser on the study page.

A small real search (the package's own ``run_search``, on one worker, into a journal file) makes
a study with learning curves, pruned trials and trial models in ``<journal>.artifacts``. The
dashboard is then started on loopback and asked through its HTTP API; ``digitwin dashboard`` is
run as a command and stopped with Ctrl-C (SIGINT); and headless Chromium opens the study's page
and waits for the learning curves to be drawn (browser_testing: skipped without Chromium, failed
with ``DIGITWIN_REQUIRE_BROWSER=1``). The screenshot of the whole page replaces
``docs/screenshots/dashboard.png`` with ``DIGITWIN_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from browser_testing import TIMEOUT, headless_chromium, keep_screenshot
from digitwin_testing import smooth_table
from optuna.trial import TrialState

from bluesky_digitwin.dashboard import start_dashboard
from bluesky_digitwin.data import DigitwinInputError, prepare_training_data
from bluesky_digitwin.surrogate.search import SearchSpace, open_storage, run_search
from bluesky_digitwin.surrogate.training import TrainConfig

STUDY = "dashboard-check"
N_TRIALS = 10


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal holding one small real search: 10 trials of up to 80 epochs, reported every 5
    epochs (the learning curves), pruned by ASHA from epoch 20 on."""
    path = tmp_path_factory.mktemp("dashboard") / "search.journal"
    data = prepare_training_data(smooth_table(), ["x", "h"], "y")
    result = run_search(
        data,
        n_trials=N_TRIALS,
        n_workers=1,
        seed=0,
        storage=path,
        study_name=STUDY,
        space=SearchSpace(n_layers=(1, 3), n_units=(4, 32)),
        train_config=TrainConfig(max_epochs=80, chunk_epochs=5),
    )
    result.cleanup()
    return path


@pytest.fixture(scope="module")
def trials(journal: Path) -> list[optuna.trial.FrozenTrial]:
    """The search's trials, read back from the journal."""
    study = optuna.load_study(study_name=STUDY, storage=open_storage(journal))
    found = study.get_trials()
    # What the dashboard is for must be there to be shown: curves, pruned and complete trials.
    states = {t.state for t in found}
    assert {TrialState.COMPLETE, TrialState.PRUNED} <= states, states
    assert all(len(t.intermediate_values) >= 2 for t in found)
    return found


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        body = response.read()
        return (
            json.loads(body) if response.headers.get_content_type() == "application/json" else body
        )


def test_dashboard_serves_the_study_its_curves_and_trial_models(journal, trials):
    with start_dashboard(journal, study=STUDY) as dashboard:
        assert dashboard.url.startswith("http://127.0.0.1:")  # loopback by default
        base = dashboard.url.removesuffix("/dashboard")
        listed = _get(f"{base}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in listed] == [STUDY]
        study_id = listed[0]["study_id"]
        # The page printed for --study is the one optuna-dashboard routes to that study.
        assert dashboard.study_url == f"{base}/dashboard/studies/{study_id}"
        assert b"Optuna Dashboard" in _get(dashboard.study_url)

        detail = _get(f"{base}/api/studies/{study_id}")
        assert detail["has_intermediate_values"]
        served = {t["number"]: t for t in detail["trials"]}
        assert len(served) == N_TRIALS
        for trial in trials:
            curve = [(v["step"], v["value"]) for v in served[trial.number]["intermediate_values"]]
            assert sorted(curve) == sorted(trial.intermediate_values.items())
            assert served[trial.number]["state"] == trial.state.name.capitalize()

        # The trial models are browsable: the artifact store beside the journal was found.
        assert dashboard.artifact_dir == Path(f"{journal}.artifacts")
        assert _get(f"{base}/api/meta")["artifact_is_available"]
        complete = next(t for t in trials if t.state == TrialState.COMPLETE)
        (artifact,) = served[complete.number]["artifacts"]
        assert artifact["filename"] == f"trial-{complete.number}.keras"
        model = _get(
            f"{base}/artifacts/{study_id}/{served[complete.number]['trial_id']}/"
            f"{artifact['artifact_id']}"
        )
        assert model == (dashboard.artifact_dir / artifact["artifact_id"]).read_bytes()
        assert model[:2] == b"PK"  # a .keras file is a zip archive
    with pytest.raises(urllib.error.URLError):  # closed: the port is released
        _get(f"{base}/api/studies")


def test_dashboard_finds_the_trial_models_where_the_study_says(journal, trials, tmp_path):
    # The journal alone, elsewhere: nothing beside it, but the study records its models' place.
    moved = tmp_path / "copy.journal"
    shutil.copyfile(journal, moved)
    with start_dashboard(moved, study=STUDY) as dashboard:
        assert dashboard.artifact_dir == Path(f"{journal}.artifacts")
    with start_dashboard(moved) as dashboard:  # which study's? none asked for: none shown
        assert dashboard.artifact_dir is None and dashboard.artifact_store is None


def test_dashboard_names_the_studies_there_are(journal, trials):
    with pytest.raises(DigitwinInputError, match=f"no study 'other' in journal .*'{STUDY}'"):
        start_dashboard(journal, study="other")


def test_the_command_serves_until_ctrl_c_and_exits_0(journal, trials, tmp_path):
    command = [sys.executable, "-m", "bluesky_digitwin.cli", "dashboard", "--storage"]
    command += [str(journal), "--study", STUDY, "--port", "0", "--no-browser"]
    # Away from the checkout, so the installed package runs (tests/conftest.py).
    with subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            first = process.stdout.readline()
            assert f"optuna-dashboard on journal {journal}" in first
            assert "1 study" in first and f"{journal}.artifacts" in first
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:") and "/dashboard/studies/" in url
            base = url.split("/dashboard/")[0]
            assert [s["study_name"] for s in _get(f"{base}/api/studies")["study_summaries"]] == [
                STUDY
            ]
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert not out.strip()  # nothing after the address


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium; skipped (or failed, if required) without it (browser_testing)."""
    with headless_chromium(tmp_path) as driver:
        yield driver


# Optuna doubts its importance estimates on a study this small; the page shows them anyway.
@pytest.mark.filterwarnings("ignore:Some regimes for parameter:UserWarning")
def test_the_study_page_draws_the_learning_curves(journal, trials, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def traces(plot: str) -> int:
        return len(browser.find_elements(By.CSS_SELECTOR, f"#{plot} .scatterlayer .trace"))

    def page_text() -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    wait = WebDriverWait(browser, TIMEOUT)
    with start_dashboard(journal, study=STUDY) as dashboard:
        browser.get(dashboard.study_url)
        # One learning curve per trial, pruned ones included, and the search's history.
        wait.until(lambda _: traces("graph-intermediate-values") == len(trials))
        wait.until(lambda _: traces("plot-history") >= 1)
        text = wait.until(lambda _: "Pruned" in page_text() and page_text())
        for shown in (STUDY, "Intermediate values", "Hyperparameter Importance", "Complete"):
            assert shown in text
        # Validation losses span decades: a log scale shows the curves apart.
        log_scale = "//label[contains(normalize-space(), 'Log y scale')]//input"
        wait.until(lambda d: d.find_elements(By.XPATH, log_scale))
        browser.find_element(By.XPATH, log_scale).click()
        wait.until(lambda d: d.find_element(By.XPATH, log_scale).is_selected())
        wait.until(lambda _: traces("graph-intermediate-values") == len(trials))

        # The whole page in one picture: history, importances, timeline, the curves.
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, height + 200)
        wait.until(
            lambda d: d.execute_script(
                "return window.innerHeight >= document.documentElement.scrollHeight"
            )
        )
        screenshot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 50_000
    keep_screenshot(screenshot, "dashboard.png")
