"""Sweeps on Ray clusters of raylets on loopback, logging to a real `mlflow server`: a trial's
worker killed mid-trial, and a whole worker node lost mid-sweep.

Both nodes and the server run on loopback. The trials share no disk with the tracking
server (MLflow artifacts travel over HTTP, proxied by the server) and get the dataset through
Ray's object store.
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import mlflow
import psutil
import pytest
from ray.cluster_utils import Cluster

from tests.servers import MlflowServer, trial_runs, wait_for, write_experiment

EPOCHS = 6
SWEEP = {
    "model": {"embedding_dim": 16, "num_layers": 1, "ff_dims": [16]},
    "train": {"epochs": EPOCHS, "batch_size": 8},
    "sweep": {
        "name": "cluster",
        "space": {"model.hidden_size": [8, 16, 24]},
        "baseline": {"model.hidden_size": 4, "model.num_layers": 3, "train.epochs": 1},
        "max_concurrent_trials": 2,
        "cpus_per_trial": 1,
        "max_failures": 2,
    },
}
EXPECTED_RUNS = 4  # three grid trials and the baseline
SECRET = "s3cret-token-not-for-logs"
# Ray names a function trainable's worker process after the class Tune wraps it in.
TRIAL_PROCESS = "ray::ImplicitFunc"


@pytest.fixture
def two_node_cluster():
    """A head node and one worker node, one CPU each, as separate raylet processes."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path / "server")
    server.start()
    yield server
    server.stop()


def kill_the_worker_of_a_trial_mid_way(client) -> str | None:
    """SIGKILL the process of a trial that has logged an epoch and has more to go; its run."""
    for run in trial_runs(client):
        pid = run.data.tags.get("ray_pid")
        epochs_done = len(client.get_metric_history(run.info.run_id, "val_accuracy"))
        if run.info.status != "RUNNING" or pid is None or not 1 <= epochs_done < EPOCHS - 1:
            continue
        try:
            process = psutil.Process(int(pid))
            assert TRIAL_PROCESS in " ".join(process.cmdline())
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
        return run.info.run_id
    return None


def test_sweep_on_two_nodes_survives_a_killed_worker_and_logs_everything_to_the_server(
    ewt_slice, tmp_path, two_node_cluster, mlflow_server, sweep_driver
):
    config = write_experiment(tmp_path, ewt_slice, SWEEP)
    secret_uri = mlflow_server.uri.replace("http://", f"http://postag:{SECRET}@")
    env = {"RAY_ADDRESS": two_node_cluster.address, "MLFLOW_TRACKING_URI": secret_uri}
    client = mlflow.MlflowClient(mlflow_server.uri)

    driver = sweep_driver(config, tmp_path, env)
    killed_runs: list[str] = []

    def kill_one_trial_worker() -> bool:
        if (run_id := kill_the_worker_of_a_trial_mid_way(client)) is not None:
            killed_runs.append(run_id)
        return bool(killed_runs)

    wait_for(kill_one_trial_worker, driver)
    assert driver.wait(timeout=420) == 0, (tmp_path / "driver.log").read_text()

    runs = trial_runs(client)
    assert len(runs) == EXPECTED_RUNS
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert len({run.data.tags["ray_node_id"] for run in runs}) == 2, "trials ran on both nodes"
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == list(range(1, int(run.data.params["epochs"]) + 1)), run.info.run_name
        model_id = run.data.tags["model_uri"].removeprefix("models:/")
        assert client.get_logged_model(model_id).source_run_id == run.info.run_id

    # The killed trial came back from its checkpoint, not from epoch 1.
    (killed_run,) = killed_runs
    killed = client.get_run(killed_run)
    assert "retried_after_error" in killed.data.tags
    assert int(killed.data.tags["resumed_from_epoch"]) >= 1

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


@pytest.fixture
def three_node_cluster():
    """A head and two worker nodes, one CPU each. Node loss is noticed within seconds."""
    fast_health_checks = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "_system_config": fast_health_checks},
    )
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    cluster.shutdown()


def lose_the_node_of_a_trial_mid_way(client, cluster, workers) -> dict | None:
    """Kill a worker node whole (raylet, object store, trial processes) while a trial on it
    has logged an epoch and has more to go; what was lost, and when."""
    for run in trial_runs(client):
        node_id = run.data.tags.get("ray_node_id")
        epochs_done = len(client.get_metric_history(run.info.run_id, "val_accuracy"))
        if run.info.status != "RUNNING" or not 1 <= epochs_done < EPOCHS - 1:
            continue
        node = next((w for w in workers if w.node_id == node_id), None)
        if node is None:
            continue  # on the head node, which a cluster cannot lose
        trial_process = psutil.Process(int(run.data.tags["ray_pid"]))
        cluster.remove_node(node, allow_graceful=False)
        with contextlib.suppress(psutil.NoSuchProcess):
            trial_process.kill()  # the raylet's death ends it too; make it certain
        return {"run_id": run.info.run_id, "node_id": node_id, "epochs_done": epochs_done,
                "killed_at": time.time()}  # fmt: skip
    return None


def test_a_sweep_rides_out_the_loss_of_a_whole_worker_node(
    ewt_slice, tmp_path, three_node_cluster, mlflow_server, sweep_driver
):
    cluster, workers = three_node_cluster
    config = write_experiment(tmp_path, ewt_slice, {**SWEEP, "sweep": {**SWEEP["sweep"],
                              "name": "node-loss", "max_concurrent_trials": 3}})  # fmt: skip
    env = {"RAY_ADDRESS": cluster.address, "MLFLOW_TRACKING_URI": mlflow_server.uri}
    client = mlflow.MlflowClient(mlflow_server.uri)
    # Tune's storage is a folder every node reaches (here they share this machine's disk).
    driver = sweep_driver(config, tmp_path, env)
    lost: list[dict] = []

    def lose_a_node() -> bool:
        if (loss := lose_the_node_of_a_trial_mid_way(client, cluster, workers)) is not None:
            lost.append(loss)
        return bool(lost)

    wait_for(lose_a_node, driver)
    assert driver.wait(timeout=420) == 0, (tmp_path / "driver.log").read_text()

    runs = trial_runs(client)
    assert len(runs) == EXPECTED_RUNS
    assert {run.info.status for run in runs} == {"FINISHED"}
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == list(range(1, int(run.data.params["epochs"]) + 1)), run.info.run_name
    (loss,) = lost
    moved = client.get_run(loss["run_id"])
    # It resumed on a surviving node, from its last checkpoint, not from epoch 1.
    assert moved.data.tags["ray_node_id"] != loss["node_id"]
    assert int(moved.data.tags["resumed_from_epoch"]) >= loss["epochs_done"] >= 1
    history = client.get_metric_history(loss["run_id"], "val_accuracy")
    resumed = min(m.timestamp for m in history if m.step > loss["epochs_done"]) / 1000
    print(f"node loss timeline: killed at 0.0 s (after epoch {loss['epochs_done']}), next epoch "
          f"logged at {resumed - loss['killed_at']:+.1f} s on another node (resumed from epoch "
          f"{moved.data.tags['resumed_from_epoch']}), run finished at "
          f"{moved.info.end_time / 1000 - loss['killed_at']:+.1f} s")  # fmt: skip
    assert client.get_model_version_by_alias("postag-tagger", "best").run_id in {
        run.info.run_id for run in runs
    }
