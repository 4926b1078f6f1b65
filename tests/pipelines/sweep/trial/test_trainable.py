"""A trial: its one RunConfig, resolved from the sweep's values and its point; its name; and
where it starts: its checkpoint read back (with the config it carries), or a damaged one
set aside with a reason."""

from __future__ import annotations

import json

import pytest
import torch
from ray import tune

from pipelines.sweep.setup.job import load_sweep
from pipelines.sweep.setup.settings import ListValue
from pipelines.sweep.trial.trainable import (
    CONFIG_FILE,
    STATE_FILE,
    DamagedCheckpoint,
    TrialConfigs,
    load_trial_checkpoint,
    resume_state,
    trial_name,
)
from postag.config import RunConfig, to_dict
from postag.training.trainer import TrainingState


@pytest.fixture
def checkpoint(tmp_path) -> tune.Checkpoint:
    state = TrainingState(
        epoch=3,
        model_state={"w": torch.ones(64, 64)},
        best_epoch=2,
        best_score=0.5,
    )
    torch.save(state.to_dict(), tmp_path / STATE_FILE)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(to_dict(RunConfig())))
    return tune.Checkpoint.from_directory(tmp_path)


def test_a_whole_checkpoint_resumes_where_it_left_off_with_the_config_it_carries(checkpoint):
    state, config, reason = resume_state(checkpoint)
    assert (state.epoch, state.best_epoch, reason) == (3, 2, "")
    assert torch.equal(state.model_state["w"], torch.ones(64, 64))
    assert config == RunConfig()
    assert load_trial_checkpoint(checkpoint)[1] == to_dict(RunConfig())


def test_no_checkpoint_starts_from_epoch_one_with_nothing_to_say():
    assert resume_state(None) == (None, None, "")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_checkpoint_starts_afresh_and_says_why(checkpoint, tmp_path, damage):
    state_file = tmp_path / STATE_FILE
    data = state_file.read_bytes()
    state_file.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint", "empty": b""}[damage]
    )
    state, _, reason = resume_state(checkpoint)
    assert state is None
    assert reason.startswith("state.pt: ") and "\n" not in reason
    with pytest.raises(DamagedCheckpoint):
        load_trial_checkpoint(checkpoint)


def test_a_damaged_config_file_is_a_damaged_checkpoint(checkpoint, tmp_path):
    (tmp_path / CONFIG_FILE).write_text('{"model": {"hidden_si')
    state, _, reason = resume_state(checkpoint)
    # The file named is the one that is damaged, not the state beside it.
    assert state is None and reason.startswith("config.json: ")


def test_a_trials_config_is_the_sweeps_base_with_its_point_and_its_worker_device(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(
        "model: {hidden_size: 16}\ntrain: {epochs: 9, batch_size: 8}\n"
        "sweep: {name: t, cpus_per_trial: 2, space: {model.char_kernels: [[2, 3]], "
        "train.epochs: [2]}, baseline: {model.char_kernels: [5], train.epochs: 3, "
        "train.max_batches_per_epoch: 4}}\n"
    )
    values, _, settings = load_sweep(config, [])
    configs = TrialConfigs({k: v for k, v in values.items() if k != "sweep"}, settings)
    trial = configs.resolve({"model.char_kernels": ListValue.of([2, 3]), "train.epochs": 2}, "cpu")
    assert (trial.model.hidden_size, trial.model.char_kernels, trial.train.epochs) == (
        16,
        (2, 3),
        2,
    )
    assert (trial.train.device, trial.train.num_threads, trial.train.batch_size) == ("cpu", 2, 8)
    baseline = configs.resolve({"model.char_kernels": ListValue.of([5]), "train.epochs": 3}, "cuda")
    assert baseline.train.max_batches_per_epoch == 4 and baseline.train.device == "cuda"
    # The GPU's trial keeps torch's own threads; a CPU trial shares the cores.
    assert baseline.train.num_threads is None


def test_a_trial_is_named_by_its_searched_values():
    point = {"model.hidden_size": 128, "model.num_layers": 2, "train.lr": 0.001}
    assert trial_name(point, baseline=False) == "h128-l2-lr0.001"


def test_the_baseline_is_marked_and_a_list_value_reads_as_one():
    point = {"model.char_kernels": ListValue.of([2, 3, 4]), "train.epochs": 40}
    assert trial_name(point, baseline=True) == "baseline-char_kernels2x3x4-e40"
