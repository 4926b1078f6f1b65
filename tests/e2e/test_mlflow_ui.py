"""The MLflow UI on a swept store, as a user sees it: headless Chromium drives the real pages.

Selenium drives Debian's `chromium` through its `chromedriver`; `.ci/run` installs both.
Without them the tests skip, saying so, and fail under CI.
The compare view's screenshot goes to the test's own folder; `make ui-screenshot` sends it
to reports/, where the README shows it (POSTAG_UI_SCREENSHOT names the file).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from pipelines.tracking import ML_VIEW, compare_runs_url
from tests.helpers import MlflowServer, missing

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Headless on a machine with no network beyond loopback: no background calls home.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1700",
)
PAGE_LIMIT_SECONDS = 60
SCREENSHOT_VARIABLE = "POSTAG_UI_SCREENSHOT"


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        missing(f"{CHROMIUM} and {CHROMEDRIVER}", "chromium", "chromium-driver")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def ui(swept, tmp_path_factory):
    """`mlflow server` (what `make ui` starts) on the tiny sweep's store."""
    server = MlflowServer(tmp_path_factory.mktemp("ui"), backend_store=swept[3])
    server.start()
    yield server
    server.stop()


def page_text(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def shows(driver, *texts: str) -> None:
    """Wait until the page shows every one of `texts`; fail naming those it never showed."""
    try:
        WebDriverWait(driver, PAGE_LIMIT_SECONDS).until(
            lambda d: all(text in page_text(d) for text in texts)
        )
    except Exception:
        missing = [text for text in texts if text not in page_text(driver)]
        raise AssertionError(f"the page never showed {missing}") from None


def close_assistant(driver) -> None:
    """The assistant panel opens beside every page on a first visit; it hides the runs."""
    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        button.click()


def trial_names(runs) -> list[str]:
    return [run.info.run_name for run in runs]


def test_training_runs_show_each_trial_by_name_with_its_data(swept, ui, browser, ewt_slice):
    outcome, runs, _, _ = swept
    experiment = outcome["state"]["experiment_id"]
    browser.get(f"{ui.uri}/#/experiments/{experiment}/runs?{ML_VIEW}")
    shows(browser, "sweep-tiny")
    close_assistant(browser)
    # Trials sit under their sweep's run: open that run's row, whichever row it is.
    row = browser.find_element(By.XPATH, "//*[@role='row'][.//*[text()='sweep-tiny']]")
    row.find_element(By.CSS_SELECTOR, "[data-component-id*=runnamecellrenderer]").click()
    shows(browser, *trial_names(runs), ewt_slice["train"].name)


def test_compare_view_plots_what_varied_against_best_val_accuracy(swept, ui, browser, tmp_path):
    outcome, runs, _, _ = swept
    # The link a sweep prints, here over all its runs, the baseline included.
    ids = [run.info.run_id for run in runs]
    browser.get(compare_runs_url(ui.uri, outcome["state"]["experiment_id"], ids))
    shows(browser, "Parallel Coordinates Plot", *trial_names(runs))
    close_assistant(browser)
    plot_metric(browser, "best_val_accuracy")
    # The plot's axes: the parameters that differ (MLflow draws the first three by name:
    # here the baseline's, with every run in), then the metric picked.
    axes = {"model.hidden_size", "model.num_layers", "train.epochs", "best_val_accuracy"}
    try:
        WebDriverWait(browser, PAGE_LIMIT_SECONDS).until(lambda d: axes <= plot_axes(d))
    except TimeoutException:
        raise AssertionError(f"the plot drew {sorted(plot_axes(browser))}, not {axes}") from None
    # What a reader compares: only the parameters that differ between the runs. Every run
    # has the same model.embedding_dim, so it is listed before and gone after.
    shows(browser, "model.embedding_dim")
    switches = browser.find_elements(By.XPATH, "//*[text()='Show diff only']")
    assert switches, "the compare view has no 'Show diff only' switch"
    for switch in switches:
        switch.click()
    WebDriverWait(browser, PAGE_LIMIT_SECONDS).until(
        lambda d: "model.embedding_dim" not in page_text(d)
    )
    shows(
        browser,
        "model.hidden_size",
        "model.num_layers",
        "train.epochs",
        "train.lr",
        "best_val_accuracy",
    )
    heading = browser.find_element(By.XPATH, "//*[starts-with(text(),'Comparing')]")
    browser.execute_script("arguments[0].scrollIntoView();", heading)
    screenshot = Path(os.environ.get(SCREENSHOT_VARIABLE) or tmp_path / "compare-runs.png")
    assert browser.save_screenshot(str(screenshot))


def plot_axes(driver) -> set[str]:
    """The texts drawn in the page's plots: axis titles and ticks."""
    return {text.text for text in driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot text")}


def plot_metric(driver, metric: str) -> None:
    """Pick `metric` in the parallel-coordinates plot's Metrics box, as a user types it."""
    box = driver.find_element(
        By.XPATH,
        "//*[contains(text(),'Please select metrics')]"
        "/ancestor::div[contains(@class,'select-selector')]//input",
    )
    driver.execute_script("arguments[0].focus();", box)
    box.send_keys(metric)
    box.send_keys(Keys.ENTER)
    box.send_keys(Keys.ESCAPE)
