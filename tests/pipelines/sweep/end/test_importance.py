"""What mattered: fANOVA importance is told only where the trials give it something to
split, on the tiny sweep's real runs."""

from __future__ import annotations

import dataclasses

from pipelines.runs import read_trial_runs
from pipelines.sweep.end.importance import parameter_importance
from pipelines.sweep.setup.settings import SweepSettings
from postag.training.objective import DEFAULT


def test_importance_is_not_told_from_trials_that_all_scored_the_same(swept):
    _, runs, _, _ = swept
    finished = [
        dataclasses.replace(run, score=0.5)
        for run in read_trial_runs(runs, DEFAULT)
        if run.is_candidate()
    ]
    space = {"train.lr": [0.005, 0.002], "model.hidden_size": [24, 32]}
    sweep = SweepSettings(name="same", space=space, baseline={})
    importance, why = parameter_importance(finished, sweep)
    assert importance is None and why == "every finished trial scored the same"


def test_importance_needs_an_axis_that_varied(swept):
    _, runs, _, _ = swept
    sweep = SweepSettings(name="one", space={"train.lr": [0.005]}, baseline={})
    importance, why = parameter_importance(read_trial_runs(runs, DEFAULT), sweep)
    assert importance is None and why == "no axis took more than one value"


def test_one_swept_axis_is_said_to_hold_all_the_variance_not_measured(swept):
    """fANOVA would give the learning rate a share of 1 whatever the two trials scored."""
    _, runs, _, _ = swept
    sweep = SweepSettings(name="lr", space={"train.lr": [0.005, 0.002]}, baseline={})
    importance, why = parameter_importance(read_trial_runs(runs, DEFAULT), sweep)
    assert importance is None and why.startswith("only lr varied, so it holds all the variance")


def test_a_sweep_over_seeds_alone_tells_no_importance(swept):
    """best.yaml's search is its seeds: a seed's share of the variance is noise."""
    _, runs, _, _ = swept
    sweep = SweepSettings(name="seeds", space={"train.seed": [1, 2, 3]}, baseline={})
    importance, why = parameter_importance(read_trial_runs(runs, DEFAULT), sweep)
    assert importance is None and why.startswith("only the seed varied")


def test_the_seed_beside_a_real_axis_is_not_counted_as_an_axis(swept):
    _, runs, _, _ = swept
    sweep = SweepSettings(
        name="lr", space={"train.lr": [0.005, 0.002], "train.seed": [1, 2]}, baseline={}
    )
    importance, why = parameter_importance(read_trial_runs(runs, DEFAULT), sweep)
    assert importance is None and why.startswith("only lr varied")


def test_a_seed_axis_of_one_value_is_no_axis_at_all(swept):
    _, runs, _, _ = swept
    sweep = SweepSettings(name="one", space={"train.seed": [1], "train.lr": [0.005]}, baseline={})
    importance, why = parameter_importance(read_trial_runs(runs, DEFAULT), sweep)
    assert importance is None and why == "no axis took more than one value"
