"""The confirmation stage at CI size: the search's top 2 configurations trained again with
2 new seeds each, on real Ray and a real sqlite MLflow store, and the best mean registered.
The one sweep is stopped in its confirmation and resumed there."""

from __future__ import annotations

import os
import signal
import statistics
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from pipelines.cli import INTERRUPTED_EXIT_CODE
from postag.registry import REGISTERED_MODEL
from tests.helpers import TINY_SWEEP, start_sweep, wait_for, write_experiment

STOP_LIMIT_SECONDS = 240
RAY_STARTED = "Started a local Ray instance"
# The tiny sweep, over three learning rates that all train, with its top 2 confirmed.
SWEEP = {
    **TINY_SWEEP,
    "sweep": {
        **TINY_SWEEP["sweep"],
        "name": "confirm",
        "space": {"train.lr": [0.02, 0.01, 0.005]},
        "confirm": {"top_k": 2, "seeds": 2},
    },
}


def runs_by_role(client, experiment_id: str) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for run in client.search_runs([experiment_id]):
        grouped.setdefault(run.data.tags.get("role"), []).append(run)
    return grouped


def lr_of(run) -> float:
    return float(run.data.params["lr"])


def best_val(run) -> float:
    return run.data.metrics["best_val_accuracy"]


@pytest.fixture(scope="module")
def confirmed_sweep(ewt_slice, tmp_path_factory, sqlite_store):
    """The confirmation sweep, stopped (SIGTERM) in its confirmation and run again to its
    end: (what the rerun's driver printed, its runs by role, the client)."""
    tmp_path = tmp_path_factory.mktemp("confirm")
    uri = sqlite_store(tmp_path)
    env = {"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"}
    config = write_experiment(tmp_path, ewt_slice, SWEEP)
    client = mlflow.MlflowClient(uri)
    log = tmp_path / "driver.log"

    def confirmation_runs() -> list:
        experiment = client.get_experiment_by_name("postag")
        if experiment is None:
            return []
        return runs_by_role(client, experiment.experiment_id).get("confirmation", [])

    drivers = [start_sweep(config, tmp_path, env)]
    try:
        wait_for(lambda: any(r.info.status == "FINISHED" for r in confirmation_runs()), drivers[0])
        drivers[0].send_signal(signal.SIGTERM)
        assert drivers[0].wait(timeout=STOP_LIMIT_SECONDS) == INTERRUPTED_EXIT_CODE
        stopped = log.read_text()
        # The libraries' messages, Ray's among them, go to the sweep's own log.
        ray_starts = (tmp_path / "tune" / "confirm.log").read_text().count(RAY_STARTED)
        experiment = client.get_experiment_by_name("postag").experiment_id
        search_before = {r.info.run_id for r in runs_by_role(client, experiment)["trial"]}
        drivers.append(start_sweep(config, tmp_path, env))
        assert drivers[1].wait(timeout=STOP_LIMIT_SECONDS) == 0, log.read_text()
    finally:
        for driver in drivers:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
    console = log.read_text().removeprefix(stopped)
    roles = runs_by_role(client, experiment)
    return Confirmed(stopped, console, search_before, roles, client, ray_starts)


@dataclass(frozen=True)
class Confirmed:
    stopped: str  # the console of the driver stopped in the confirmation
    console: str  # and of the one that resumed it
    search_before: set[str]  # the search's runs when it stopped
    roles: dict[str, list]
    client: mlflow.MlflowClient
    ray_starts: int  # by the driver that ran the search and began the confirmation

    @property
    def version(self):
        return self.client.get_model_version_by_alias(REGISTERED_MODEL, "sweep-confirm")


def test_the_top_two_configurations_are_trained_again_with_two_new_seeds(confirmed_sweep):
    roles = confirmed_sweep.roles
    search = sorted(roles["trial"], key=best_val, reverse=True)
    top_two = {lr_of(run) for run in search[:2]}
    seeds = roles["confirmation"]
    assert len(seeds) == 4 and {run.info.status for run in seeds} == {"FINISHED"}
    # Seeds other than the search's own (0), two for each of the two best configurations.
    assert sorted((lr_of(r), r.data.params["seed"]) for r in seeds) == sorted(
        (lr, seed) for lr in top_two for seed in ("1", "2")
    )
    assert {r.info.run_name for r in seeds} == {
        f"lr{lr:g}-seed{seed}" for lr in top_two for seed in (1, 2)
    }
    # Every seed run is complete: all its epochs, and a model of its own.
    for run in seeds:
        assert "model_uri" in run.data.tags and int(run.data.metrics["best_epoch"]) >= 1


def test_registration_takes_the_best_mean_and_records_its_seeds(confirmed_sweep):
    roles = confirmed_sweep.roles
    by_lr: dict[float, list] = {}
    for run in roles["confirmation"]:
        by_lr.setdefault(lr_of(run), []).append(run)
    means = {lr: statistics.fmean(best_val(r) for r in runs) for lr, runs in by_lr.items()}
    winner_lr = max(means, key=means.get)
    winner_runs = by_lr[winner_lr]

    version = confirmed_sweep.version
    assert f"registered version {version.version} as" in confirmed_sweep.console
    # The model registered is the best seed run of the configuration with the best mean.
    assert version.tags["run_id"] == max(winner_runs, key=best_val).info.run_id
    assert float(version.tags["val_mean"]) == pytest.approx(means[winner_lr], abs=1e-6)
    sd = statistics.stdev(best_val(r) for r in winner_runs)
    assert float(version.tags["val_sd"]) == pytest.approx(sd, abs=1e-6)
    assert set(version.tags["seed_run_ids"].split(",")) == {r.info.run_id for r in winner_runs}
    assert sorted(version.tags["seeds"].split(",")) == ["1", "2"]
    assert "Best mean of sweep 'confirm'" in version.description and "± " in version.description


def test_each_confirmed_configuration_shows_its_mean_and_spread_in_mlflow(confirmed_sweep):
    roles, client = confirmed_sweep.roles, confirmed_sweep.client
    confirmed_search_runs = [r for r in roles["trial"] if "confirmed_val_mean" in r.data.metrics]
    assert len(confirmed_search_runs) == 2
    for run in confirmed_search_runs:
        seeds = [r for r in roles["confirmation"] if lr_of(r) == lr_of(run)]
        assert run.data.metrics["confirmed_val_mean"] == pytest.approx(
            statistics.fmean(best_val(r) for r in seeds)
        )
        assert set(run.data.tags["confirmation_runs"].split(",")) == {r.info.run_id for r in seeds}
    (parent,) = roles["sweep"]
    version = confirmed_sweep.version
    # The version's tags hold six decimals; the parent's metrics the full values.
    for field in ("mean", "sd"):
        assert parent.data.metrics[f"confirmed_val_{field}"] == pytest.approx(
            float(version.tags[f"val_{field}"]), abs=5e-7
        )
    text = Path(client.download_artifacts(parent.info.run_id, "trials.md")).read_text()
    assert "## Confirmation: best validation accuracy over seeds" in text
    best = client.get_run(version.tags["run_id"])
    assert f"| lr{float(best.data.params['lr']):g} | 2 |" in text


def test_a_sweep_stopped_in_its_confirmation_resumes_there(confirmed_sweep):
    headline = "the confirmation: the best 2 configurations again with 2 new seeds each, 4 trials"
    assert f"starting {headline}" in confirmed_sweep.stopped
    assert "interrupted in its confirmation" in confirmed_sweep.stopped
    roles = confirmed_sweep.roles
    # The search was not run again, and each confirmation trial has one run.
    assert {r.info.run_id for r in roles["trial"]} == confirmed_sweep.search_before
    assert len(roles["confirmation"]) == 4
    assert {r.info.status for r in roles["confirmation"]} == {"FINISHED"}
    assert len({r.data.tags["ray_trial_id"] for r in roles["confirmation"]}) == 4
    console = confirmed_sweep.console
    assert f"resuming {headline}" in console and "Traceback" not in console
    assert "confirmed lr" in console and "registered version 1" in console


def test_the_search_and_its_confirmation_share_one_ray(confirmed_sweep):
    """Ray starts once a driver, not once a stage: some 5 CPU-s and seconds of start-up."""
    assert confirmed_sweep.ray_starts == 1
