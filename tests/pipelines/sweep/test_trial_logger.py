"""How a trial's run is named (its searched values, short enough to tell runs apart), and
when the callback must look for a trial's run before making one."""

from __future__ import annotations

import pickle
from pathlib import Path

from pipelines.sweep.config import ListValue
from pipelines.sweep.trial_logger import MlflowTrials, trial_name


def test_a_trial_is_named_by_its_searched_values():
    config = {"model.hidden_size": 128, "model.num_layers": 2, "train.lr": 0.001}
    assert trial_name(config, baseline=False) == "h128-l2-lr0.001"


def test_the_baseline_is_marked_and_a_list_value_reads_as_one():
    config = {"model.char_kernels": ListValue.of([2, 3, 4]), "train.epochs": 40}
    assert trial_name(config, baseline=True) == "baseline-char_kernels2x3x4-e40"


def test_only_a_restored_callback_looks_for_runs_of_trials_it_has_not_seen():
    callback = MlflowTrials("1", "parent", Path("data"), dict, bool, new_experiment=True)
    # A Tune experiment it starts: a trial new to it is new, and needs no search in MLflow.
    assert not callback.runs_may_exist
    # Tune restores callbacks from their pickled state: the driver before may have made
    # runs for trials this one never saw, so it finds them again rather than make them twice.
    restored = pickle.loads(pickle.dumps(callback))
    assert restored.runs_may_exist and restored.run_ids == {}
    assert MlflowTrials("1", "parent", Path("data"), dict, bool).runs_may_exist
