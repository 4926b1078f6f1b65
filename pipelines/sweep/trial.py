"""Where a trial trains: the Ray Tune trainable around postag.train.fit, and its contract
with the driver.

Each epoch the trial reports a result (the epoch's metrics, its best so far, where it runs)
and a checkpoint holding `STATE_FILE`, the whole TrainingState. The driver reads nothing
else from a trial: its MLflow run, its model and any epoch MLflow missed all come from
these two (`pipelines.sweep.trial_logger`).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ray
import torch
from ray import tune

from pipelines.runs import BEST_EPOCH, BEST_VAL_ACCURACY
from postag import dataset as datasets
from postag.config import RunConfig, build, to_dict
from postag.dataset import PreparedDataset
from postag.resources import ProcessUsage
from postag.train import EpochResult, TrainingState, fit

STATE_FILE = "state.pt"
# The RunConfig the trial resolved, as JSON: what the driver logs the model with.
CONFIG_FILE = "config.json"
# Result keys a trial reports beside its epoch metrics.
RESUMED_KEY = "resumed_from_epoch"
NODE_KEY = "ray_node_id"
DEVICE_KEY = "device"  # where the trial trained, as its worker found it
# Tune adds the trial process's pid to every result.
PID_KEY = "pid"
# When the epoch's work ended and its report began (wall clock): where a trial's time went.
REPORTED_AT_KEY = "reported_at"


class NoCudaForGpu(RuntimeError):
    """Ray gave a trial a GPU share on a worker where torch finds no CUDA device."""


def worker_device(logical_gpus: bool) -> str:
    """Where this trial trains: what Ray gave its own worker, whatever the driver has.

    A GPU share on a worker without CUDA is an error, never a quiet fall back to the CPU,
    unless the sweep says its GPUs are logical (`sweep.logical_gpus`, for testing packing).
    """
    gpus = ray.get_gpu_ids()
    if not gpus:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if logical_gpus:
        return "cpu"
    node = ray.get_runtime_context().get_node_id()
    raise NoCudaForGpu(
        f"Ray gave this trial GPU {gpus} on node {node}, but torch sees no CUDA device there "
        "(a node declared with --num-gpus but without a working CUDA driver?); set "
        "sweep.logical_gpus: true only to test GPU packing on the CPU"
    )


def load_training_state(checkpoint: tune.Checkpoint) -> TrainingState:
    """The TrainingState in a trial's checkpoint, fetched from wherever Tune keeps it."""
    return load_trial_checkpoint(checkpoint)[0]


def load_trial_checkpoint(checkpoint: tune.Checkpoint) -> tuple[TrainingState, RunConfig | None]:
    """A trial's checkpoint, fetched once from wherever Tune keeps it: its TrainingState and
    the RunConfig the trial trained with (None in one saved before checkpoints carried it)."""
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
        path = Path(folder) / CONFIG_FILE
        config = build(RunConfig, json.loads(path.read_text())) if path.is_file() else None
    return TrainingState.from_dict(state), config


def train_trial(
    trial_config: dict,
    *,
    dataset: PreparedDataset,
    dataset_digest: str,
    make_config: Callable[[dict, str], RunConfig],
    logical_gpus: bool,
) -> None:
    """Ray Tune function trainable: fit() with a report and a checkpoint per epoch."""
    # The dataset came through Ray's object store, maybe to another machine: check it first.
    datasets.check_arrival(dataset, dataset_digest)
    device = worker_device(logical_gpus)
    config = make_config(trial_config, device)
    config_json = json.dumps(to_dict(config))
    checkpoint = tune.get_checkpoint()
    resume = load_training_state(checkpoint) if checkpoint else None
    resumed_from_epoch = resume.epoch if resume is not None else 0
    node_id = ray.get_runtime_context().get_node_id()
    # Read here, in the trial's own process: what the trial costs, not what its driver does.
    usage = ProcessUsage()

    def report(result: EpochResult, state: TrainingState) -> None:
        reported_at = time.time()
        system = usage.sample()
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state.to_dict(), Path(folder) / STATE_FILE)
            (Path(folder) / CONFIG_FILE).write_text(config_json)
            tune.report(
                {
                    "epoch": result.epoch,
                    **result.metrics(),
                    **system,
                    BEST_VAL_ACCURACY: state.best_val_accuracy,
                    BEST_EPOCH: state.best_epoch,
                    RESUMED_KEY: resumed_from_epoch,
                    NODE_KEY: node_id,
                    DEVICE_KEY: device,
                    REPORTED_AT_KEY: reported_at,
                },
                checkpoint=tune.Checkpoint.from_directory(folder),
            )

    fit(config, dataset, callbacks=[report], resume=resume)
