"""A sweep stopped mid-way (SIGTERM, Ctrl-C, or its driver killed outright), then the same
command again: it resumes, with no run made twice and no epoch logged twice."""

from __future__ import annotations

import os
import signal
from collections import Counter

import mlflow
import pytest

from pipelines.cli import INTERRUPTED_EXIT_CODE
from tests.servers import trial_runs, wait_for, write_experiment

STOP_LIMIT_SECONDS = 240
SWEEP = {
    "model": {"embedding_dim": 16, "num_layers": 1, "ff_dims": [16]},
    "train": {"epochs": 3, "batch_size": 16},
    "sweep": {
        "name": "resume",
        "space": {"model.hidden_size": [8, 12, 16, 20, 24]},
        "baseline": {"model.hidden_size": 4, "model.num_layers": 3, "train.epochs": 1},
        "max_concurrent_trials": 1,
        "cpus_per_trial": 1,
    },
}
EXPECTED_TRIALS = 6


@pytest.fixture
def sweep_setup(ewt_slice, tmp_path):
    config = write_experiment(tmp_path, ewt_slice, SWEEP)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # "local": each driver starts a Ray of its own, whatever else runs on this machine.
    env = {"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"}
    return config, env, mlflow.MlflowClient(uri)


def finished(client) -> int:
    return sum(run.info.status == "FINISHED" for run in trial_runs(client))


def assert_resumed_completely(client, before: dict[str, str]) -> None:
    after = trial_runs(client)
    trial_ids = Counter(r.data.tags["ray_trial_id"] for r in after)
    assert len(after) == EXPECTED_TRIALS and set(trial_ids.values()) == {1}
    assert {r.info.status for r in after} == {"FINISHED"}
    # Runs finished before the interruption were kept, not made again.
    assert {k for k, v in before.items() if v == "FINISHED"} <= {r.info.run_id for r in after}
    for run in after:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == list(range(1, int(run.data.params["epochs"]) + 1))
    parent = client.search_runs([after[0].info.experiment_id], "tags.role = 'sweep'")
    assert [p.info.status for p in parent] == ["FINISHED"]
    assert client.get_model_version_by_alias("postag-tagger", "best").tags["sweep"] == "resume"


def stop(driver, how: signal.Signals) -> None:
    driver.send_signal(how)
    assert driver.wait(timeout=STOP_LIMIT_SECONDS) == INTERRUPTED_EXIT_CODE


def assert_nothing_left_running(client) -> dict[str, str]:
    runs = {r.info.run_id: r.info.status for r in trial_runs(client)}
    assert len(runs) < EXPECTED_TRIALS
    assert "RUNNING" not in runs.values()
    experiment = trial_runs(client)[0].info.experiment_id
    assert [p.info.status for p in client.search_runs([experiment], "tags.role = 'sweep'")] == [
        "KILLED"
    ]
    return runs


def test_stopped_sweep_resumes_without_duplicate_runs_and_one_driver_at_a_time(
    sweep_setup, sweep_driver, tmp_path
):
    config, env, client = sweep_setup
    log = tmp_path / "driver.log"
    first = sweep_driver(config, tmp_path, env)
    wait_for(lambda: finished(client) >= 1, first)

    # A second driver of the same sweep stops at once, before touching its runs.
    second = sweep_driver(config, tmp_path, env)
    assert second.wait(timeout=STOP_LIMIT_SECONDS) == 2
    assert "sweep 'resume' is already running in another driver" in log.read_text()
    assert first.poll() is None

    # SIGTERM (`timeout`, `kill`, a job scheduler) stops it as Ctrl-C does.
    stop(first, signal.SIGTERM)
    before = assert_nothing_left_running(client)

    # A changed configuration is not silently resumed as the old one.
    changed = sweep_driver(config, tmp_path, env, "--set", "train.epochs=4")
    assert changed.wait(timeout=STOP_LIMIT_SECONDS) == 2
    assert "its configuration has changed since" in log.read_text()

    third = sweep_driver(config, tmp_path, env)
    wait_for(lambda: finished(client) > list(before.values()).count("FINISHED"), third)
    stop(third, signal.SIGINT)  # what Ctrl-C sends
    before = assert_nothing_left_running(client)

    last = sweep_driver(config, tmp_path, env)
    assert last.wait(timeout=STOP_LIMIT_SECONDS) == 0, log.read_text()
    assert_resumed_completely(client, before)

    # What the person at the console read: our lines only, ending with the answer.
    console = log.read_text()
    assert "WARNING" not in console and "Traceback" not in console
    assert "trial 6/6" in console and "sweep 'resume' done: registered version 1" in console
    assert "compare its runs: http://127.0.0.1:5000/#/compare-runs?runs=" in console


def test_killed_driver_resumes_on_rerun(sweep_setup, sweep_driver, tmp_path):
    config, env, client = sweep_setup
    # Storage as a URI, the way a cluster names a bucket (s3://...) all nodes reach.
    storage = ("--storage", f"file://{tmp_path}/bucket")
    first = sweep_driver(config, tmp_path, env, *storage)
    # Mid-trial: a run has epochs logged that Tune's last snapshot may not know of.
    wait_for(
        lambda: (
            finished(client) >= 2
            and any(r.info.status == "RUNNING" and r.data.metrics for r in trial_runs(client))
        ),
        first,
    )
    os.killpg(first.pid, signal.SIGKILL)  # no handler runs: the driver and its Ray just vanish
    first.wait()
    before = {r.info.run_id: r.info.status for r in trial_runs(client)}
    assert len(before) < EXPECTED_TRIALS

    second = sweep_driver(config, tmp_path, env, *storage)
    assert second.wait(timeout=STOP_LIMIT_SECONDS) == 0, (tmp_path / "driver.log").read_text()
    assert "resuming" in (tmp_path / "driver.log").read_text()
    assert_resumed_completely(client, before)
    assert any((tmp_path / "bucket").rglob("state.pt")), "checkpoints went to the URI"
