"""Where a trial starts: its checkpoint read back, or a damaged one set aside with a reason."""

from __future__ import annotations

import json

import pytest
import torch
from ray import tune

from pipelines.sweep.trial import (
    CONFIG_FILE,
    STATE_FILE,
    DamagedCheckpoint,
    load_trial_checkpoint,
    resume_state,
)
from postag.config import RunConfig, to_dict
from postag.train import TrainingState


@pytest.fixture
def checkpoint(tmp_path) -> tune.Checkpoint:
    state = TrainingState(
        epoch=3,
        model_state={"w": torch.ones(64, 64)},
        best_epoch=2,
        best_val_accuracy=0.5,
    )
    torch.save(state.to_dict(), tmp_path / STATE_FILE)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(to_dict(RunConfig())))
    return tune.Checkpoint.from_directory(tmp_path)


def test_a_whole_checkpoint_resumes_where_it_left_off(checkpoint):
    state, reason = resume_state(checkpoint)
    assert (state.epoch, state.best_epoch, reason) == (3, 2, "")
    assert torch.equal(state.model_state["w"], torch.ones(64, 64))
    assert load_trial_checkpoint(checkpoint)[1] == RunConfig()


def test_no_checkpoint_starts_from_epoch_one_with_nothing_to_say():
    assert resume_state(None) == (None, "")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_checkpoint_starts_afresh_and_says_why(checkpoint, tmp_path, damage):
    state_file = tmp_path / STATE_FILE
    data = state_file.read_bytes()
    state_file.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint", "empty": b""}[damage]
    )
    state, reason = resume_state(checkpoint)
    assert state is None
    assert reason.startswith("state.pt: ") and "\n" not in reason
    with pytest.raises(DamagedCheckpoint):
        load_trial_checkpoint(checkpoint)


def test_a_damaged_config_file_is_a_damaged_checkpoint(checkpoint, tmp_path):
    (tmp_path / CONFIG_FILE).write_text('{"model": {"hidden_si')
    state, reason = resume_state(checkpoint)
    # The file named is the one that is damaged, not the state beside it.
    assert state is None and reason.startswith("config.json: ")
