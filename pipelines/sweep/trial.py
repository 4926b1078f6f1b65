"""Where a trial trains: the Ray Tune trainable around postag.train.fit, and its contract
with the driver.

Each epoch the trial reports a result (the epoch's metrics, its best so far, where it runs)
and a checkpoint holding `STATE_FILE`, the whole TrainingState. The driver reads nothing
else from a trial: its MLflow run, its model and any epoch MLflow missed all come from
these two (`pipelines.sweep.trial_logger`).
"""

from __future__ import annotations

import json
import pickle
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import ray
import torch
from ray import tune

from pipelines.runs import BEST_EPOCH, BEST_VAL_ACCURACY
from postag import dataset as datasets
from postag.config import RunConfig, build, to_dict
from postag.dataset import PreparedDataset
from postag.resources import ProcessUsage
from postag.train import EpochResult, TrainingState, fit

T = TypeVar("T")

STATE_FILE = "state.pt"
# The RunConfig the trial resolved, as JSON: what the driver logs the model with.
CONFIG_FILE = "config.json"
# Result keys a trial reports beside its epoch metrics.
RESUMED_KEY = "resumed_from_epoch"
# Why the trial's last checkpoint could not be read, when it could not: it trained afresh.
DAMAGED_CHECKPOINT_KEY = "damaged_checkpoint"
NODE_KEY = "ray_node_id"
DEVICE_KEY = "device"  # where the trial trained, as its worker found it
# Tune adds the trial process's pid to every result.
PID_KEY = "pid"
# When the epoch's work ended and its report began (wall clock): where a trial's time went.
REPORTED_AT_KEY = "reported_at"
# The epochs the trial trains in all: the sweep's estimate of its time left.
PLANNED_EPOCHS_KEY = "epochs_planned"


# What a truncated or overwritten checkpoint raises on reading: torch's zip reader a
# RuntimeError, its unpickler EOFError or a pickle error, a state of another shape a
# KeyError or TypeError, a damaged config.json a ValueError.
UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, KeyError, TypeError, pickle.PickleError)


class DamagedCheckpoint(ValueError):
    """A trial checkpoint whose files cannot be read back (truncated, overwritten)."""


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
        state_file, config_file = Path(folder) / STATE_FILE, Path(folder) / CONFIG_FILE
        training_state = read_part(
            state_file,
            lambda: TrainingState.from_dict(
                torch.load(state_file, map_location="cpu", weights_only=True)
            ),
        )
        config = None
        if config_file.is_file():
            config = read_part(
                config_file, lambda: build(RunConfig, json.loads(config_file.read_text()))
            )
    return training_state, config


def read_part(path: Path, read: Callable[[], T]) -> T:
    """One file of a checkpoint, read; a DamagedCheckpoint naming that file if it cannot be."""
    try:
        return read()
    except UNREADABLE as e:
        raise DamagedCheckpoint(f"{path.name}: {e}".splitlines()[0]) from e


def resume_state(checkpoint: tune.Checkpoint | None) -> tuple[TrainingState | None, str]:
    """Where a trial starts: its checkpoint's state, or none (from epoch 1) with the reason
    when there is no checkpoint to resume or it cannot be read. Tune keeps one checkpoint a
    trial, so a damaged one has no earlier one to fall back on."""
    if checkpoint is None:
        return None, ""
    try:
        return load_training_state(checkpoint), ""
    except DamagedCheckpoint as error:
        return None, str(error)


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
    resume, damaged = resume_state(tune.get_checkpoint())
    resumed_from_epoch = resume.epoch if resume is not None else 0
    node_id = ray.get_runtime_context().get_node_id()
    # Read here, in the trial's own process: what the trial costs, not what its driver does.
    usage = ProcessUsage()

    def report(result: EpochResult, state: TrainingState) -> None:
        nonlocal damaged
        reported_at = time.time()
        system = usage.sample()
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state.to_dict(), Path(folder) / STATE_FILE)
            (Path(folder) / CONFIG_FILE).write_text(config_json)
            tune.report(
                {
                    "epoch": result.epoch,
                    PLANNED_EPOCHS_KEY: config.train.epochs,
                    **result.metrics(),
                    **system,
                    BEST_VAL_ACCURACY: state.best_val_accuracy,
                    BEST_EPOCH: state.best_epoch,
                    RESUMED_KEY: resumed_from_epoch,
                    NODE_KEY: node_id,
                    DEVICE_KEY: device,
                    REPORTED_AT_KEY: reported_at,
                    # Said once, with the first epoch trained afresh.
                    **({DAMAGED_CHECKPOINT_KEY: damaged} if damaged else {}),
                },
                checkpoint=tune.Checkpoint.from_directory(folder),
            )
        damaged = ""

    fit(config, dataset, callbacks=[report], resume=resume)
