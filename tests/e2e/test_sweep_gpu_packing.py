"""GPU trials packed on one GPU, checked without one: a Ray node that declares a logical GPU.

The driver runs here, where torch sees no CUDA; the worker node says it has one GPU. The
sweep must still plan GPU trials (the cluster has a GPU), pack four quarter-GPU trials at
once and never five, and each trial must take its device from its own worker.
"""

from __future__ import annotations

import mlflow
import pytest
import ray
import torch
from ray.cluster_utils import Cluster

from pipelines.sweep.driver import run_sweep
from pipelines.sweep.setup.job import GPU_EXPERIMENT, sweep_experiment
from pipelines.sweep.trial.trainable import NoCudaForGpu, worker_device
from tests.helpers import SWEEP_LIMIT_SECONDS, most_at_once, trial_runs, write_sweep

GPU_SHARE = 0.25
SWEEP = {
    "model": {"embedding_dim": 16, "hidden_size": 16, "num_layers": 1, "ff_dims": [16]},
    "train": {"epochs": 2, "batch_size": 32},
    "sweep": {
        "name": "packed",
        # Five trials with the baseline: one more than a GPU holds at a quarter each.
        "space": {"train.lr": [0.001, 0.002, 0.004, 0.006]},
        "baseline": {"train.lr": 0.01, "model.num_layers": 3, "train.epochs": 1},
        # Room for every trial at once: only the GPU share may hold them back.
        "max_concurrent_trials": 5,
        "gpus_per_trial": GPU_SHARE,
        "logical_gpus": True,
        "max_failures": 0,
    },
}


@pytest.fixture(scope="module")
def gpu_worker_cluster():
    """A head node with no GPU (as the driver's machine) and a worker that declares one."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    cluster.add_node(num_cpus=5, num_gpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_a_cluster_whose_workers_have_gpus_gets_the_gpu_study(gpu_worker_cluster):
    path, why = sweep_experiment(gpu_worker_cluster.address)
    assert path == GPU_EXPERIMENT
    assert "has 1 GPU" in why


def test_a_gpu_share_on_a_worker_without_cuda_is_an_error_not_the_cpu(gpu_worker_cluster):
    ray.init(address=gpu_worker_cluster.address)
    try:
        strict = ray.remote(num_gpus=GPU_SHARE)(worker_device)
        with pytest.raises(NoCudaForGpu, match="torch sees no CUDA device"):
            ray.get(strict.remote(False))
        assert ray.get(strict.remote(True)) == "cpu"  # logical GPUs, opted in
        assert ray.get(ray.remote(num_gpus=0)(worker_device).remote(False)) == "cpu"
    finally:
        ray.shutdown()


def test_quarter_gpu_trials_share_one_gpu_never_more_than_four_at_once(
    gpu_worker_cluster, ewt_slice, tmp_path, sweep_driver, sqlite_store
):
    # A driver process of its own, as a user runs it: a sweep run in this process after
    # another test's Ray session could fail every trial at start ("the actor never ran").
    env = {
        "RAY_ADDRESS": gpu_worker_cluster.address,
        "MLFLOW_TRACKING_URI": sqlite_store(tmp_path),
    }
    # Each trial waits until four have begun (tests/e2e/gated_driver.py): the limit reached.
    at_once = int(1 / GPU_SHARE)
    driver = sweep_driver(write_sweep(tmp_path, ewt_slice, SWEEP), tmp_path, env, gate=at_once)
    assert driver.wait(timeout=SWEEP_LIMIT_SECONDS) == 0, (tmp_path / "driver.log").read_text()
    runs = trial_runs(mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert len(runs) == 5
    assert {run.info.status for run in runs} == {"FINISHED"}
    # Four quarter-GPU trials on the one GPU at once, never more.
    assert most_at_once(runs) == at_once
    # Given GPU shares; each trained where its worker could, here its CPU, and its run's
    # params, its model's and where it trained all say so.
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for run in runs:
        model = client.get_logged_model(run.data.tags["model_uri"].removeprefix("models:/"))
        assert run.data.params["train.device"] == model.params["train.device"] == "cpu"
        assert run.data.tags["device"] == "cpu"


@pytest.mark.gpu
def test_quarter_gpu_trials_share_a_real_gpu(ewt_slice, tmp_path, monkeypatch):
    """The same packing on this machine's own CUDA GPUs: every trial trains on CUDA."""
    monkeypatch.setenv("RAY_ADDRESS", "local")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    strict = {**SWEEP, "sweep": {**SWEEP["sweep"], "logical_gpus": False}}
    run_sweep(write_sweep(tmp_path, ewt_slice, strict), [], tmp_path / "tune", False)
    runs = trial_runs(mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert {run.data.tags["device"] for run in runs} == {"cuda"}
    assert most_at_once(runs) <= int(torch.cuda.device_count() / GPU_SHARE)
