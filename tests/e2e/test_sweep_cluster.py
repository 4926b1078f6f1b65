"""A sweep on a Ray cluster of raylets on loopback, logging to a real `mlflow server`: a
trial's worker killed mid-trial, then a whole worker node lost, in one sweep.

The nodes and the server run on loopback. The trials share no disk with the tracking
server (MLflow artifacts travel over HTTP, proxied by the server) and get the dataset through
Ray's object store.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import mlflow
import pytest
from ray.cluster_utils import Cluster

from tests.helpers import (
    SCENARIO_LIMIT_SECONDS,
    SWEEP_LIMIT_SECONDS,
    MlflowServer,
    command_line,
    trial_runs,
    wait_for,
    write_experiment,
)

# Several sweeps in one scenario (tests/helpers.py).
pytestmark = pytest.mark.timeout(SCENARIO_LIMIT_SECONDS)

EPOCHS = 8
# A trial is killed early enough that, retried, it still has epochs to run: the node it is
# retried on is then a target for the node loss, whatever the other trials' timing.
LATEST_KILL_EPOCH = EPOCHS - 4
SWEEP = {
    "model": {"embedding_dim": 16, "num_layers": 1, "ff_dims": [16]},
    "train": {"epochs": EPOCHS, "batch_size": 8},
    "sweep": {
        "name": "cluster",
        "space": {"model.hidden_size": [8, 16, 24]},
        "baseline": {"model.hidden_size": 4, "model.num_layers": 3, "train.epochs": 1},
        "max_concurrent_trials": 3,
        "cpus_per_trial": 1,
        # The killed trial may be hit again by the node loss, and Tune counts a lost actor's
        # pending calls as separate failures: 1 + 2, with one to spare.
        "max_failures": 4,
    },
}
EXPECTED_RUNS = 4  # three grid trials and the baseline
SECRET = "s3cret-token-not-for-logs"
# Ray names a function trainable's worker process after the class Tune wraps it in.
TRIAL_PROCESS = "ray::ImplicitFunc"


@pytest.fixture
def three_node_cluster():
    """A head and two worker nodes, one CPU each, as separate raylet processes. A node is
    taken for lost after 15 s without an answer, as by Ray's default (5 checks 3 s apart), but
    checked every second. A shorter wait took live nodes, slowed while make test ran two test
    files at once on 2 cores, for lost."""
    fast_health_checks = {"health_check_period_ms": 1000, "health_check_failure_threshold": 15}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "_system_config": fast_health_checks},
    )
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    cluster.shutdown()


@pytest.fixture
def mlflow_server(tmp_path, sqlite_store):
    sqlite_store(tmp_path / "server")  # where the server keeps its runs
    server = MlflowServer(tmp_path / "server")
    server.start()
    yield server
    server.stop()


def mid_trial(client, run) -> int | None:
    """Epochs a RUNNING trial has logged, if it has logged one and has more to go."""
    epochs_done = len(client.get_metric_history(run.info.run_id, "val_accuracy"))
    if run.info.status != "RUNNING" or not 1 <= epochs_done < EPOCHS - 1:
        return None
    return epochs_done


def worker_node_of(run, workers):
    """The worker node a trial's run reports, or None for the head node, which a cluster
    cannot lose."""
    return next((w for w in workers if w.node_id == run.data.tags.get("ray_node_id")), None)


def kill_the_worker_of_a_trial_mid_way(client, workers) -> dict | None:
    """SIGKILL the process of a trial on a worker node that has logged an epoch and has
    several more to go; its run and the pid killed."""
    for run in trial_runs(client):
        pid = run.data.tags.get("ray_pid")
        epochs_done = mid_trial(client, run)
        # After epoch 2 at the earliest: killed just after its first report, a trial was
        # once retried from the start on CI, Tune not yet holding that first checkpoint.
        if pid is None or epochs_done is None or not 2 <= epochs_done <= LATEST_KILL_EPOCH:
            continue
        if worker_node_of(run, workers) is None:
            continue
        try:
            assert TRIAL_PROCESS in command_line(int(pid))
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            continue  # it ended while we looked
        return {"run_id": run.info.run_id, "pid": pid}
    return None


def retried(client, killed: dict) -> bool:
    """Whether the killed trial's new process has reported."""
    return client.get_run(killed["run_id"]).data.tags.get("ray_pid") != killed["pid"]


def lose_the_node_of_a_trial_mid_way(client, cluster, workers, killed: dict) -> dict | None:
    """Kill a worker node whole (raylet, object store, trial processes) while a trial on it
    has logged an epoch and has more to go; what was lost, and when.

    Waits for the killed trial's retry to report first, so the loss never meets a trial
    between two processes. A node without the retried trial is preferred (one trial hit twice
    proves less), but the retried trial's node is taken when it is the only one with a trial
    mid-way: on a fast machine the other trials may all be done by then."""
    if not retried(client, killed):
        return None
    candidates = [
        (run, node, epochs_done)
        for run in trial_runs(client)
        if (epochs_done := mid_trial(client, run)) is not None
        and (node := worker_node_of(run, workers)) is not None
    ]
    candidates.sort(key=lambda candidate: candidate[0].info.run_id == killed["run_id"])
    for run, node, epochs_done in candidates[:1]:
        cluster.remove_node(node, allow_graceful=False)
        with contextlib.suppress(ProcessLookupError):
            # The raylet's death ends the trial's process too; make it certain.
            os.kill(int(run.data.tags["ray_pid"]), signal.SIGKILL)
        return {
            "run_id": run.info.run_id,
            "node_id": node.node_id,
            "epochs_done": epochs_done,
            "killed_at": time.time(),
        }
    return None


def test_a_sweep_on_three_nodes_rides_out_a_killed_worker_and_a_lost_node(
    ewt_slice, tmp_path, three_node_cluster, mlflow_server, sweep_driver
):
    """One sweep: first a trial's worker process is killed, then a whole node is lost; every
    epoch still reaches the server once, over HTTP, with the password in no record."""
    cluster, workers = three_node_cluster
    config = write_experiment(tmp_path, ewt_slice, SWEEP)
    secret_uri = mlflow_server.uri.replace("http://", f"http://postag:{SECRET}@")
    env = {"RAY_ADDRESS": cluster.address, "MLFLOW_TRACKING_URI": secret_uri}
    client = mlflow.MlflowClient(mlflow_server.uri)
    driver = sweep_driver(config, tmp_path, env)
    killed: list[dict] = []
    lost: list[dict] = []

    def kill_one_trial_worker() -> bool:
        if (kill := kill_the_worker_of_a_trial_mid_way(client, workers)) is not None:
            killed.append(kill)
        return bool(killed)

    def lose_a_node() -> bool:
        loss = lose_the_node_of_a_trial_mid_way(client, cluster, workers, killed[0])
        if loss is not None:
            lost.append(loss)
        return bool(lost)

    wait_for(kill_one_trial_worker, driver)
    wait_for(lose_a_node, driver)
    assert driver.wait(timeout=SWEEP_LIMIT_SECONDS) == 0, (tmp_path / "driver.log").read_text()

    runs = trial_runs(client)
    assert len(runs) == EXPECTED_RUNS
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert len({run.data.tags["ray_node_id"] for run in runs}) >= 2, "trials ran on two nodes"
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == list(range(1, int(run.data.params["train.epochs"]) + 1)), run.info.run_name
        model_id = run.data.tags["model_uri"].removeprefix("models:/")
        assert client.get_logged_model(model_id).source_run_id == run.info.run_id

    # The killed trial came back from its checkpoint, not from epoch 1.
    (kill,) = killed
    assert "retried_after_error" in client.get_run(kill["run_id"]).data.tags
    assert int(client.get_run(kill["run_id"]).data.tags["resumed_from_epoch"]) >= 1
    # The lost node's trial resumed on a surviving node, from its last checkpoint.
    (loss,) = lost
    moved = client.get_run(loss["run_id"])
    assert moved.data.tags["ray_node_id"] != loss["node_id"]
    assert int(moved.data.tags["resumed_from_epoch"]) >= loss["epochs_done"] >= 1
    history = client.get_metric_history(loss["run_id"], "val_accuracy")
    resumed = min(m.timestamp for m in history if m.step > loss["epochs_done"]) / 1000
    print(
        f"node loss timeline: killed at 0.0 s (after epoch {loss['epochs_done']}), next epoch "
        f"logged at {resumed - loss['killed_at']:+.1f} s on another node (resumed from epoch "
        f"{moved.data.tags['resumed_from_epoch']}), run finished at "
        f"{moved.info.end_time / 1000 - loss['killed_at']:+.1f} s"
    )

    # Models are in the server's artifact store and load from the registry through it.
    assert any((mlflow_server.folder / "artifacts").rglob("MLmodel"))
    assert not (tmp_path / "mlruns").exists()
    mlflow.set_tracking_uri(mlflow_server.uri)
    try:
        model = mlflow.pyfunc.load_model("models:/postag-tagger@best")
    finally:
        mlflow.set_tracking_uri(None)
    assert model.metadata.run_id in {run.info.run_id for run in runs}

    # The password in the tracking URI reached no log, param, tag, artifact or Tune state.
    assert SECRET not in (tmp_path / "driver.log").read_text()
    for run in [*runs, *client.search_runs([runs[0].info.experiment_id], "tags.role = 'sweep'")]:
        assert SECRET not in repr(run.data.params) + repr(run.data.tags)
    for folder in (mlflow_server.folder / "artifacts", tmp_path / "tune"):
        for path in Path(folder).rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path
