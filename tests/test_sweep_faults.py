"""Faults the tracking side must ride out: its server restarting mid-sweep, down for longer
than the client retries, and many trials logging at once to the default sqlite store."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest

from tests.servers import MlflowServer, trial_runs, wait_for, write_experiment

SWEEP_LIMIT_SECONDS = 420
SERVER_DOWN_SECONDS = 3


def small_sweep(name: str, hidden_sizes: list[int], concurrent: int, cpus: float, epochs: int):
    """Trials of `epochs` epochs over `hidden_sizes`, and a 3-layer baseline as long as them."""
    return {
        "model": {"embedding_dim": 16, "num_layers": 1, "ff_dims": [16]},
        "train": {"epochs": epochs, "batch_size": 16},
        "sweep": {
            "name": name,
            "space": {"model.hidden_size": hidden_sizes},
            "baseline": {"model.hidden_size": 4, "model.num_layers": 3, "train.epochs": epochs},
            "max_concurrent_trials": concurrent,
            "cpus_per_trial": cpus,
        },
    }


def assert_every_epoch_logged_once(client, runs) -> None:
    for run in runs:
        assert run.info.status == "FINISHED", run.info.run_name
        for metric in ("val_accuracy", "train_loss", "tokens_per_second"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert steps == list(range(1, int(run.data.params["epochs"]) + 1)), metric


def logging_mid_trial(client) -> bool:
    return any(r.info.status == "RUNNING" and r.data.metrics for r in trial_runs(client))


@pytest.fixture
def served(ewt_slice, tmp_path):
    """A real `mlflow server`, and a small sweep (two trials, the baseline) logging to it."""
    server = MlflowServer(tmp_path / "server")
    server.start()

    def sweep(name: str) -> tuple[Path, dict]:
        config = write_experiment(tmp_path, ewt_slice, small_sweep(name, [8, 16], 2, 1, 5))
        return config, {"MLFLOW_TRACKING_URI": server.uri, "RAY_ADDRESS": "local"}

    yield server, sweep, mlflow.MlflowClient(server.uri)
    server.stop()


def assert_recorded_whole(client, sweep_name: str) -> None:
    runs = trial_runs(client)
    assert len(runs) == 3
    assert_every_epoch_logged_once(client, runs)
    assert client.get_model_version_by_alias("postag-tagger", "best").tags["sweep"] == sweep_name


def test_tracking_server_restart_mid_sweep_loses_no_metric(served, tmp_path, sweep_driver):
    server, sweep, client = served
    config, env = sweep("restart")
    driver = sweep_driver(config, tmp_path, env)
    wait_for(lambda: logging_mid_trial(client), driver)
    server.stop()
    # Trials go on training and reporting while nothing answers; the driver's MLflow
    # client retries with backoff until the server is back.
    time.sleep(SERVER_DOWN_SECONDS)
    server.start()
    assert driver.wait(timeout=SWEEP_LIMIT_SECONDS) == 0, (tmp_path / "driver.log").read_text()
    assert_recorded_whole(client, "restart")


def test_server_down_past_the_retry_budget_stops_the_sweep_and_the_rerun_fills_every_gap(
    served, tmp_path, sweep_driver
):
    server, sweep, client = served
    config, env = sweep("outage")
    # No retries: the budget (about 4 minutes by default) runs out at the first miss.
    driver = sweep_driver(config, tmp_path, {**env, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    wait_for(lambda: logging_mid_trial(client), driver)
    server.stop()
    assert driver.wait(timeout=SWEEP_LIMIT_SECONDS) == 1
    log = (tmp_path / "driver.log").read_text()
    assert "postag sweep: failed:" in log and "the same command resumes the sweep" in log
    assert "could not close the sweep's MLflow runs" in log

    # Trials trained on while nothing was logged; the rerun resumes them from their
    # checkpoints and back-fills every epoch MLflow missed from their histories.
    server.start()
    rerun = sweep_driver(config, tmp_path, env)
    assert rerun.wait(timeout=SWEEP_LIMIT_SECONDS) == 0, (tmp_path / "driver.log").read_text()
    assert_recorded_whole(client, "outage")


def test_eight_trials_at_once_on_the_default_sqlite_store(ewt_slice, tmp_path, sweep_driver):
    # Seven grid trials and the baseline, a quarter CPU each: eight side by side on 2 cores.
    values = small_sweep("eight", [6, 8, 10, 12, 14, 16, 20], 8, 0.25, 5)
    config = write_experiment(tmp_path, ewt_slice, values)
    env = {"MLFLOW_TRACKING_URI": "", "RAY_ADDRESS": "local"}  # empty: the project's sqlite
    driver = sweep_driver(config, tmp_path, env)
    assert driver.wait(timeout=SWEEP_LIMIT_SECONDS) == 0, (tmp_path / "driver.log").read_text()
    assert "database is locked" not in (tmp_path / "driver.log").read_text()

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    trials = trial_runs(client)
    assert len(trials) == 8
    assert_every_epoch_logged_once(client, trials)
    # All eight were running at the same time: each started before any of them ended.
    assert max(r.info.start_time for r in trials) < min(r.info.end_time for r in trials)
