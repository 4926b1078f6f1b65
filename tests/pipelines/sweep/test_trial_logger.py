"""How a trial's run is named: its searched values, short enough to tell runs apart."""

from __future__ import annotations

from pipelines.sweep.config import ListValue
from pipelines.sweep.trial_logger import trial_name


def test_a_trial_is_named_by_its_searched_values():
    config = {"model.hidden_size": 128, "model.num_layers": 2, "train.lr": 0.001}
    assert trial_name(config, baseline=False) == "h128-l2-lr0.001"


def test_the_baseline_is_marked_and_a_list_value_reads_as_one():
    config = {"model.char_kernels": ListValue.of([2, 3, 4]), "train.epochs": 40}
    assert trial_name(config, baseline=True) == "baseline-char_kernels2x3x4-e40"
