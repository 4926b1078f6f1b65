"""Ctrl-C in the middle of a sweep, then the same command again: it resumes, no duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import mlflow
import yaml

from pipelines.sweep import INTERRUPTED_EXIT_CODE

POLL_SECONDS = 0.5
WAIT_LIMIT_SECONDS = 240

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


def start(config, tmp_path, env, *extra):
    command = [sys.executable, "-m", "pipelines.sweep", "--config", str(config),
               "--storage", str(tmp_path / "tune"), *extra]  # fmt: skip
    with (tmp_path / "driver.log").open("a") as log:
        # The child keeps its own copy of the file descriptor.
        return subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
        )


def children(client):
    experiment = client.get_experiment_by_name("postag")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], "tags.role != 'sweep'")


def wait_for(condition, process):
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.poll() is None, "the sweep ended before it could be interrupted"
        time.sleep(POLL_SECONDS)
    raise AssertionError("timed out waiting for the sweep")


def test_interrupted_sweep_resumes_without_duplicate_runs(ewt_slice, tmp_path):
    values = {**SWEEP, "data": {"train": str(ewt_slice["train"]), "dev": str(ewt_slice["dev"]),
                                "cache_dir": str(tmp_path / "cache")}}  # fmt: skip
    config = tmp_path / "resume.yaml"
    config.write_text(yaml.safe_dump(values))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # "local": each driver starts a Ray of its own, whatever else runs on this machine.
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"}
    client = mlflow.MlflowClient(uri)

    first = start(config, tmp_path, env)
    wait_for(lambda: sum(r.info.status == "FINISHED" for r in children(client)) >= 2, first)
    first.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert first.wait(timeout=WAIT_LIMIT_SECONDS) == INTERRUPTED_EXIT_CODE
    before = {r.info.run_id: r.info.status for r in children(client)}
    assert len(before) < EXPECTED_TRIALS
    assert "RUNNING" not in before.values()

    # A changed configuration is not silently resumed as the old one.
    changed = start(config, tmp_path, env, "--set", "train.epochs=4")
    assert changed.wait(timeout=WAIT_LIMIT_SECONDS) == 2
    assert "its configuration has changed since" in (tmp_path / "driver.log").read_text()

    second = start(config, tmp_path, env)
    assert second.wait(timeout=WAIT_LIMIT_SECONDS) == 0, (tmp_path / "driver.log").read_text()
    after = children(client)
    trial_ids = Counter(r.data.tags["ray_trial_id"] for r in after)
    assert len(after) == EXPECTED_TRIALS and set(trial_ids.values()) == {1}
    assert {r.info.status for r in after} == {"FINISHED"}
    # Runs finished before the interruption were kept, not made again.
    assert {k for k, v in before.items() if v == "FINISHED"} <= {r.info.run_id for r in after}
    for run in after:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == sorted(set(steps)) and steps[0] == 1
    parent = client.search_runs([after[0].info.experiment_id], "tags.role = 'sweep'")
    assert [p.info.status for p in parent] == ["FINISHED"]
    assert client.get_model_version_by_alias("postag-tagger", "best").tags["sweep"] == "resume"
