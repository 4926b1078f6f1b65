"""What mattered: fANOVA importance is told only where the trials give it something to
split, on the tiny sweep's real runs."""

from __future__ import annotations

import dataclasses

import pytest

from pipelines.runs import read_trial_runs
from pipelines.sweep.config import SweepConfig
from pipelines.sweep.importance import parameter_importance


def test_importance_is_not_told_from_trials_that_all_scored_the_same(swept):
    _, runs, _, _ = swept
    finished = [
        dataclasses.replace(run, best_val_accuracy=0.5)
        for run in read_trial_runs(runs)
        if run.is_candidate()
    ]
    sweep = SweepConfig(name="same", space={"train.lr": [0.005, 0.002]}, baseline={})
    importance, why = parameter_importance(finished, sweep)
    assert importance is None and why == "every finished trial scored the same"


def test_importance_needs_an_axis_that_varied(swept):
    _, runs, _, _ = swept
    sweep = SweepConfig(name="one", space={"train.lr": [0.005]}, baseline={})
    importance, why = parameter_importance(read_trial_runs(runs), sweep)
    assert importance is None and why == "no axis took more than one value"


def test_importance_of_the_swept_learning_rate_is_all_there_is(swept):
    _, runs, _, _ = swept
    sweep = SweepConfig(name="lr", space={"train.lr": [0.005, 0.002]}, baseline={})
    importance, why = parameter_importance(read_trial_runs(runs), sweep)
    assert why == "" and importance.trials == 2
    assert importance.shares == {"lr": pytest.approx(1.0)}


def test_a_sweep_over_seeds_alone_tells_no_importance(swept):
    """best.yaml's search is its seeds: a seed's share of the variance is noise."""
    _, runs, _, _ = swept
    sweep = SweepConfig(name="seeds", space={"train.seed": [1, 2, 3]}, baseline={})
    importance, why = parameter_importance(read_trial_runs(runs), sweep)
    assert importance is None and why.startswith("only the seed varied")


def test_the_seed_beside_a_real_axis_is_left_out_of_the_shares(swept):
    _, runs, _, _ = swept
    sweep = SweepConfig(
        name="lr", space={"train.lr": [0.005, 0.002], "train.seed": [1, 2]}, baseline={}
    )
    importance, _ = parameter_importance(read_trial_runs(runs), sweep)
    assert set(importance.shares) == {"lr"}


def test_a_seed_axis_of_one_value_is_no_axis_at_all(swept):
    _, runs, _, _ = swept
    sweep = SweepConfig(name="one", space={"train.seed": [1], "train.lr": [0.005]}, baseline={})
    importance, why = parameter_importance(read_trial_runs(runs), sweep)
    assert importance is None and why == "no axis took more than one value"
