"""Faults the tracking side must ride out: its server restarting mid-sweep, and down for
longer than the client retries. (Many trials logging at once to the default sqlite store is
test_sweep_sqlite.py.)"""

from __future__ import annotations

import mlflow
import pytest

from tests.helpers import (
    SCENARIO_LIMIT_SECONDS,
    SWEEP_LIMIT_SECONDS,
    MlflowServer,
    assert_every_epoch_logged_once,
    small_sweep,
    trial_runs,
    wait_for,
    write_experiment,
)

# Several sweeps in one scenario (tests/helpers.py).
pytestmark = pytest.mark.timeout(SCENARIO_LIMIT_SECONDS)


def logging_mid_trial(client) -> bool:
    return any(r.info.status == "RUNNING" and r.data.metrics for r in trial_runs(client))


# MLflow's HTTP client retries a failed call this often, sleeping 0, 2, 4, 8 and 16 s (and
# up to 1 s more each) between: about 30 s, time enough for a server to restart and far
# less than the default budget of about 4 minutes that an outage would have to outlast.
RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


@pytest.fixture
def served(ewt_slice, tmp_path, sqlite_store):
    """A real `mlflow server` on a sqlite store."""
    sqlite_store(tmp_path / "server")
    server = MlflowServer(tmp_path / "server")
    server.start()
    yield server, mlflow.MlflowClient(server.uri)
    server.stop()


def epochs_logged(client) -> int:
    return sum(
        len(client.get_metric_history(run.info.run_id, "val_accuracy"))
        for run in trial_runs(client)
    )


def test_the_tracking_server_restarting_then_down_for_good_loses_no_epoch(
    served, ewt_slice, tmp_path, sweep_driver
):
    """One sweep: the server restarts while a call is on its way, and the sweep rides it out;
    later it stays down past the retries, the sweep stops, and the rerun fills every gap."""
    server, client = served
    config = write_experiment(tmp_path, ewt_slice, small_sweep("faults", [8, 16], 1, 1, 8))
    env = {"MLFLOW_TRACKING_URI": server.uri, "RAY_ADDRESS": "local", **RETRIES}
    # The libraries' messages, the HTTP client's retries among them, go to the sweep's log.
    library_log = tmp_path / "tune" / "faults.log"
    driver = sweep_driver(config, tmp_path, env)
    wait_for(lambda: logging_mid_trial(client), driver)

    # A restart: down until a logging call has met the outage and is retrying, then back.
    server.stop()
    wait_for(lambda: "Retrying" in library_log.read_text(), driver)
    server.start()
    logged = epochs_logged(client)
    # The call went through after all: the sweep goes on logging epochs.
    wait_for(lambda: epochs_logged(client) > logged and logging_mid_trial(client), driver)

    # Down for good: the retries run out, the sweep stops and says how to resume.
    server.stop()
    assert driver.wait(timeout=SWEEP_LIMIT_SECONDS) == 1
    console = (tmp_path / "driver.log").read_text()
    assert "postag sweep: failed:" in console and "the same command resumes the sweep" in console
    assert "could not close the sweep's MLflow runs" in console
    assert "Traceback" not in console and "Retrying" not in console

    # Trials trained on while nothing was logged; the rerun resumes them from their
    # checkpoints and back-fills every epoch MLflow missed from their histories.
    server.start()
    rerun = sweep_driver(config, tmp_path, env)
    assert rerun.wait(timeout=SWEEP_LIMIT_SECONDS) == 0, (tmp_path / "driver.log").read_text()
    runs = trial_runs(client)
    assert len(runs) == 3
    assert_every_epoch_logged_once(client, runs)
    assert client.get_model_version_by_alias("postag-tagger", "best").tags["sweep"] == "faults"
