"""A team's tracking server: `mlflow server` on a real PostgreSQL, eight trials writing at
once, the database stopped mid-sweep until a write meets the outage, then started again.

PostgreSQL is Debian's (`.ci/run` installs it), run in a data folder the test owns on a
port of its own; MLflow reaches it with the driver pinned in requirements.lock.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

import mlflow
import pytest

from tests.helpers import (
    SCENARIO_LIMIT_SECONDS,
    MlflowServer,
    most_at_once,
    postgres_server,
    trial_runs,
    wait_for,
    write_experiment,
)

# Several sweeps in one scenario (tests/helpers.py).
pytestmark = pytest.mark.timeout(SCENARIO_LIMIT_SECONDS)

EPOCHS = 4
AT_ONCE = 8
# Nine grid trials and the baseline, eight at a time: more than the limit, and a fifth of a
# CPU each, so that on 2 cores only the sweep's limit keeps them to eight.
TRIALS = 10
SWEEP = {
    "model": {"embedding_dim": 16, "hidden_size": 16, "num_layers": 1, "ff_dims": [16]},
    "train": {"epochs": EPOCHS, "batch_size": 32},
    "sweep": {
        "name": "postgres",
        "space": {"train.lr": [0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008]},
        # As long as the others, so that eight are open at once.
        "baseline": {"train.lr": 0.01, "model.num_layers": 3},
        "max_concurrent_trials": AT_ONCE,
        "cpus_per_trial": 0.2,
        "max_failures": 1,
    },
}


@pytest.fixture
def postgres():
    # Not under pytest's tmp_path: that is root's alone, and PostgreSQL runs as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="postag-postgres-"))
    server = postgres_server(folder)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_tracking(postgres, tmp_path):
    server = MlflowServer(tmp_path / "server", backend_store=postgres.uri)
    server.start()
    yield server
    server.stop()


def test_eight_trials_at_once_lose_nothing_when_postgresql_restarts_mid_sweep(
    ewt_slice, tmp_path, postgres, postgres_tracking, sweep_driver
):

    config = write_experiment(tmp_path, ewt_slice, SWEEP)
    env = {"MLFLOW_TRACKING_URI": postgres_tracking.uri, "RAY_ADDRESS": "local"}
    client = mlflow.MlflowClient(postgres_tracking.uri)
    # Each trial waits until eight have begun (tests/e2e/gated_driver.py).
    driver = sweep_driver(config, tmp_path, env, gate=AT_ONCE)

    def eight_running_and_one_epoch_in() -> bool:
        runs = trial_runs(client)
        return len(runs) >= AT_ONCE and any(
            client.get_metric_history(run.info.run_id, "val_accuracy") for run in runs
        )

    wait_for(eight_running_and_one_epoch_in, driver)
    # PostgreSQL down until a trial's logging call has met the outage (the tracking server
    # answers it with a 5xx, which the client retries), then up again.
    before = postgres_tracking.log.read_text()
    stopped_at = time.time()
    postgres.pg_ctl("stop", "-m", "fast")
    wait_for(lambda: failed_writes(postgres_tracking.log.read_text().removeprefix(before)), driver)
    postgres.start()
    assert driver.wait(timeout=420) == 0, (tmp_path / "driver.log").read_text()
    met = failed_writes(postgres_tracking.log.read_text().removeprefix(before))
    print(f"calls that met the outage: {len(met)}, e.g. {met[0]}")

    runs = trial_runs(client)
    assert len(runs) == TRIALS
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert most_at_once(runs) == AT_ONCE  # eight side by side, never more
    assert any(run.info.end_time / 1000 > stopped_at for run in runs), "the outage was mid-sweep"
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == list(range(1, EPOCHS + 1)), run.info.run_name
    best = client.get_model_version_by_alias("postag-tagger", "best")
    assert best.run_id in {run.info.run_id for run in runs}


def failed_writes(server_log: str) -> list[str]:
    """The tracking server's log lines of the driver's calls it answered with a 5xx. A read
    counts too: logging a trial's config.json first asks for the run (a GET), and the client
    retries that read through the outage before any write is sent."""
    return [
        line
        for line in server_log.splitlines()
        if re.search(r'"(GET|POST) /api/', line) and re.search(r'HTTP/1\.1" 5\d\d', line)
    ]
