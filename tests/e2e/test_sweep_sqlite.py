"""Eight trials logging at once to the default sqlite store: no write lost, none locked out."""

from __future__ import annotations

import mlflow

from tests.helpers import (
    SWEEP_LIMIT_SECONDS,
    assert_every_epoch_logged_once,
    most_at_once,
    small_sweep,
    trial_runs,
    write_experiment,
)

AT_ONCE = 8


def test_eight_trials_at_once_on_the_default_sqlite_store(ewt_slice, tmp_path, sweep_driver):
    # Nine grid trials and the baseline, a fifth of a CPU each, eight at a time on 2 cores:
    # the CPUs would hold all ten, so only the sweep's limit keeps it to eight.
    values = small_sweep("eight", [6, 8, 10, 12, 14, 16, 18, 20, 22], AT_ONCE, 0.2, 5)
    # Short epochs: what is tested is eight trials writing to one sqlite file, not training.
    values["train"]["max_batches_per_epoch"] = 6
    config = write_experiment(tmp_path, ewt_slice, values)
    env = {"MLFLOW_TRACKING_URI": "", "RAY_ADDRESS": "local"}  # empty: the project's sqlite
    # Each trial waits until eight have begun: the limit reached, however slowly a busy
    # machine starts eight trial processes.
    driver = sweep_driver(config, tmp_path, env, gate=AT_ONCE)
    assert driver.wait(timeout=SWEEP_LIMIT_SECONDS) == 0, (tmp_path / "driver.log").read_text()
    assert "database is locked" not in (tmp_path / "driver.log").read_text()

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    trials = trial_runs(client)
    assert len(trials) == 10
    assert_every_epoch_logged_once(client, trials)
    # They wrote side by side, eight at once and never more, as the sweep allows.
    assert most_at_once(trials) == AT_ONCE
