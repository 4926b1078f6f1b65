"""The MLflow UI on a swept store, as a user sees it: headless Chromium drives the real pages.

Selenium drives Debian's `chromium` through its `chromedriver`; `.ci/run` installs both.
Without them the tests skip, saying so, and fail under CI.
The compare view's screenshot goes to the test's own folder; `make ui-screenshot` sends it
to reports/, where the README shows it (POSTAG_UI_SCREENSHOT names the file).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from pipelines.tracking import LOCAL_UI, ML_VIEW, artifact_url, compare_runs_url
from postag.serving.names import REGISTERED_MODEL
from tests.helpers import MlflowServer, free_port, missing, stop_group, wait_until_answers

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


# A link into the UI, as postag prints it: on its own, or in Markdown's (text)(link).
LINK = re.compile(r"http://127\.0\.0\.1:\d+/#/[^\s)]+")
# What MLflow 3's GenAI overview shows, and the model-training pages never do.
GENAI_OVERVIEW = ("token usage", "detect issues")


def first_link(text: str) -> str:
    found = LINK.search(text)
    assert found, f"no link in {text!r}"
    return found.group()


def opens_on_training_runs(driver, url: str, *texts: str) -> str:
    """Open `url`: it must show `texts` and nothing of the GenAI overview; what it read."""
    driver.get(url)
    shows(driver, *texts)
    close_assistant(driver)
    read = page_text(driver)
    assert not [word for word in GENAI_OVERVIEW if word in read.lower()], (url, read[:500])
    return read


@pytest.fixture(scope="module")
def make_ui(swept, tmp_path_factory):
    """`postag ui` (what `make ui` runs) on the tiny sweep's store; its first line."""
    port = free_port()
    log = tmp_path_factory.mktemp("make-ui") / "ui.log"
    command = [sys.executable, "-m", "pipelines.commands.ui", "--port", str(port)]
    command += ["--backend-store-uri", swept[3], "--default-artifact-root", str(log.parent)]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until_answers(process, f"http://127.0.0.1:{port}/health", log)
        yield log.read_text().splitlines()[0]
    finally:
        stop_group(process)


def test_every_link_postag_prints_lands_on_the_training_runs(swept, ui, make_ui, browser, capsys):
    """The sweep's start line, `make ui`, `make mlflow-server`, the version's evaluation
    link and the compare link each open the experiment's own pages in the UI's
    model-training mode, never the GenAI overview it opens on otherwise."""
    outcome, runs, client, _ = swept
    console = outcome["console"]
    start = next(line for line in console.splitlines() if " UI http" in line)
    compare = next(line for line in console.splitlines() if "compare its runs:" in line)
    version = client.get_model_version(REGISTERED_MODEL, outcome["version"])
    evaluation = next(line for line in version.description.splitlines() if "evaluation run" in line)
    server_line = ui.log.read_text().splitlines()[0]
    # A sqlite store's links name `make ui`'s address; here the UI listens elsewhere.
    links = {
        "sweep start": first_link(start).replace(LOCAL_UI, ui.uri),
        "make ui": first_link(make_ui),
        "make mlflow-server": first_link(server_line),
        "version's evaluation run": first_link(evaluation).replace(LOCAL_UI, ui.uri),
        "compare": first_link(compare).replace(LOCAL_UI, ui.uri),
    }
    # The compare link holds the searched trials (tests/e2e/test_sweep.py), not the baseline.
    searched = [run for run in runs if run.data.tags.get("role") == "trial"]
    evaluated = client.get_run(version.tags["evaluation_run_id"])
    assert evaluated.info.run_id in links["version's evaluation run"]
    experiment = outcome["state"]["experiment_id"]
    for name in ("sweep start", "make ui", "make mlflow-server"):
        assert f"/#/experiments/{experiment}/runs?{ML_VIEW}" in links[name], name
    assert all(ML_VIEW in link for link in links.values()), links
    read = {
        "sweep start": opens_on_training_runs(browser, links["sweep start"], "sweep-tiny"),
        "make ui": opens_on_training_runs(browser, links["make ui"], "sweep-tiny"),
        "make mlflow-server": opens_on_training_runs(
            browser, links["make mlflow-server"], "sweep-tiny"
        ),
        "version's evaluation run": opens_on_training_runs(
            browser, links["version's evaluation run"], evaluated.info.run_name
        ),
        "compare": opens_on_training_runs(
            browser, links["compare"], "Parallel Coordinates Plot", *trial_names(searched)
        ),
        # The route of the link to the parent run's parallel-coordinates plot, which a sweep
        # of two or more axes prints (this one varies one): the run opened on an artifact.
        "a parent run's artifact": opens_on_training_runs(
            browser,
            artifact_url(ui.uri, experiment, outcome["state"]["parent_run_id"], "trials.md"),
            "sweep-tiny",
            "trials.md",
        ),
    }
    links["a parent run's artifact"] = browser.current_url
    with capsys.disabled():
        for name, text in read.items():
            print(f"\n{name}: {links[name]}\n  reads: {' | '.join(text.splitlines()[:12])}")
