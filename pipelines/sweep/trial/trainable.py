"""Where a trial trains: the Ray Tune trainable around postag.training.trainer.fit, and its contract
with the driver.

Each epoch the trial reports a result (the epoch's metrics, its best so far, where it runs)
and a checkpoint holding `STATE_FILE`, the whole TrainingState. The driver reads nothing
else from a trial: its MLflow run, its model and any epoch MLflow missed all come from
these two (`pipelines.sweep.trial.callback`).
"""

from __future__ import annotations

import json
import math
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import ray
import torch
from ray import tune

from pipelines.names import (
    BEST_EPOCH,
    DEVICE_TAG,
    NODE_TAG,
    RESUMED_TAG,
)
from pipelines.sweep.setup.settings import OBJECTIVE_KEY, SweepSettings, plain_values
from postag.config import RunConfig, build, to_dict, with_values
from postag.data import dataset as datasets
from postag.data.dataset import PreparedDataset
from postag.evaluation.cost import measure_costs
from postag.training.resources import ProcessUsage
from postag.training.trainer import EpochResult, TrainingState, fit, make_tagger

T = TypeVar("T")

STATE_FILE = "state.pt"
# The RunConfig the trial resolved, as JSON: what the driver logs the model with.
CONFIG_FILE = "config.json"
# The same, plain, in the first result each trial process reports: the run's params.
RUN_CONFIG_KEY = "run_config"
# Result keys a trial reports beside its epoch metrics.
RESUMED_KEY = RESUMED_TAG
# Why the trial's last checkpoint could not be read, when it could not: it trained afresh.
DAMAGED_CHECKPOINT_KEY = "damaged_checkpoint"
NODE_KEY = NODE_TAG
DEVICE_KEY = DEVICE_TAG
# Tune adds the trial process's pid to every result.
PID_KEY = "pid"
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


@dataclass(frozen=True)
class TrialConfigs:
    """The one place a trial's RunConfig is resolved: the sweep's base run, the trial's
    point, the baseline's extras, and the device its worker found.

    Plain values only, so that it travels to every trial with the trainable.
    """

    base: dict
    settings: SweepSettings

    def resolve(self, point: dict, device: str) -> RunConfig:
        values = plain_values(point)
        if self.settings.is_baseline(point):
            values.update(self.settings.baseline_overrides())
        values[OBJECTIVE_KEY] = to_dict(self.settings.primary)
        values["train.device"] = device
        if device == "cpu":
            # Trials side by side must share the cores, not each spin up all of them.
            values["train.num_threads"] = max(1, int(self.settings.cpus_per_trial))
        return build(RunConfig, with_values(self.base, values))


# A trial's name abbreviates the axes every study searches; others go by their field name.
SHORT_NAMES = {"model.hidden_size": "h", "model.num_layers": "l", "train.epochs": "e"}


def trial_name(point: dict, baseline: bool) -> str:
    """A run name a reader can tell apart: the searched values, the baseline marked."""
    parts = [
        f"{SHORT_NAMES.get(key, key.rpartition('.')[2])}{short_value(value)}"
        for key, value in plain_values(point).items()
    ]
    return ("baseline-" if baseline else "") + "-".join(parts)


def short_value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "x".join(map(str, value))  # char_kernels [2, 3, 4] -> 2x3x4
    return str(value)


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


def load_trial_checkpoint(checkpoint: tune.Checkpoint) -> tuple[TrainingState, dict]:
    """A trial's checkpoint, fetched once from wherever Tune keeps it: its TrainingState and
    the RunConfig the trial resolved, plain."""
    with checkpoint.as_directory() as folder:
        state_file, config_file = Path(folder) / STATE_FILE, Path(folder) / CONFIG_FILE
        training_state = read_part(
            state_file,
            lambda: TrainingState.from_dict(
                torch.load(state_file, map_location="cpu", weights_only=True)
            ),
        )
        config = read_part(config_file, lambda: json.loads(config_file.read_text()))
    return training_state, config


def read_part(path: Path, read: Callable[[], T]) -> T:
    """One file of a checkpoint, read; a DamagedCheckpoint naming that file if it cannot be."""
    try:
        return read()
    except UNREADABLE as e:
        raise DamagedCheckpoint(f"{path.name}: {e}".splitlines()[0]) from e


def resume_state(
    checkpoint: tune.Checkpoint | None,
) -> tuple[TrainingState | None, RunConfig | None, str]:
    """Where a trial starts: its checkpoint's state and the RunConfig it carries, or none
    (from epoch 1) with the reason when there is no checkpoint to resume or it cannot be
    read. Tune keeps one checkpoint a trial, so a damaged one has no earlier one to fall
    back on."""
    if checkpoint is None:
        return None, None, ""
    try:
        state, config = load_trial_checkpoint(checkpoint)
        return state, read_part(Path(CONFIG_FILE), lambda: build(RunConfig, config)), ""
    except DamagedCheckpoint as error:
        return None, None, str(error)


def trial_checkpoint(folder: Path, state: TrainingState, config_json: str) -> tune.Checkpoint:
    """A checkpoint of the trial in `folder`: its whole TrainingState and its RunConfig."""
    torch.save(state.to_dict(), folder / STATE_FILE)
    (folder / CONFIG_FILE).write_text(config_json)
    return tune.Checkpoint.from_directory(folder)


def reported_costs(
    names: tuple[str, ...], config: RunConfig, dataset: PreparedDataset, final: TrainingState | None
) -> dict[str, float]:
    """The sweep's cost objectives `names` in an epoch's result: with the `final` state,
    what the trial's final model (its best epoch's weights) costs, measured here, in the
    trial's own process, on the CPU (its tagging time over the dev set, its size).

    Tune wants every metric its searcher names in every result: a cost not measured (yet,
    or at all: the baseline's) is NaN.
    """
    if final is None or not names:
        return dict.fromkeys(names, math.nan)
    model = make_tagger(config, dataset)
    model.load_state_dict(final.best_state)
    return measure_costs(model, dataset.splits["dev"], names)


def final_figure_keys(settings: SweepSettings) -> list[str]:
    """The figures a trial's run closes with, from its last result: its best epoch and its
    figure on each objective (a cost measured on its final model, NaN where it was not)."""
    return [BEST_EPOCH, *(goal.best_metric for goal in settings.goals)]


def whereabouts(resume: TrainingState | None, device: str) -> dict:
    """Where the trial runs, and from which epoch on, said with every epoch."""
    return {
        RESUMED_KEY: resume.epoch if resume is not None else 0,
        NODE_KEY: ray.get_runtime_context().get_node_id(),
        DEVICE_KEY: device,
    }


def train_trial(
    point: dict,
    *,
    dataset: PreparedDataset,
    dataset_digest: str,
    configs: TrialConfigs,
    logical_gpus: bool,
) -> None:
    """Ray Tune function trainable: fit() with a report and a checkpoint per epoch."""
    # The dataset came through Ray's object store, maybe to another machine: check it first.
    datasets.check_arrival(dataset, dataset_digest)
    device = worker_device(logical_gpus)
    resume, carried, damaged = resume_state(tune.get_checkpoint())
    config = carried or configs.resolve(point, device)
    config_json = json.dumps(to_dict(config))
    where = whereabouts(resume, device)
    # Read here, in the trial's own process: what the trial costs, not what its driver does.
    usage = ProcessUsage()
    # The run's params come from the first report; the driver may have missed an earlier
    # process's, so each process sends it once.
    first = {RUN_CONFIG_KEY: to_dict(config)}
    # The baseline is never a candidate: what its model would cost is not measured.
    measures_costs = not configs.settings.is_baseline(point)

    def report(result: EpochResult, state: TrainingState) -> None:
        nonlocal damaged, first
        final = measures_costs and result.epoch == config.train.epochs
        costs = reported_costs(configs.settings.costs, config, dataset, state if final else None)
        stamp = usage.sample()
        with tempfile.TemporaryDirectory() as folder:
            tune.report(
                {
                    "epoch": result.epoch,
                    PLANNED_EPOCHS_KEY: config.train.epochs,
                    **result.metrics(),
                    config.train.objective.best_metric: state.best_score,
                    BEST_EPOCH: state.best_epoch,
                    **costs,
                    **where,
                    **stamp,
                    **first,
                    # Said once, with the first epoch trained afresh.
                    **({DAMAGED_CHECKPOINT_KEY: damaged} if damaged else {}),
                },
                checkpoint=trial_checkpoint(Path(folder), state, config_json),
            )
        damaged, first = "", {}

    fit(config, dataset, callbacks=[report], resume=resume)
