"""The objective's one owner: the names it allows are what the trainer logs and the costs
measure, and it ranks either way."""

from __future__ import annotations

import dataclasses

import pytest

from postag.evaluation import cost
from postag.training.objective import (
    COST_METRICS,
    DEFAULT,
    VALIDATION_METRICS,
    Objective,
    ObjectiveError,
)
from postag.training.trainer import EpochResult


def test_the_validation_metrics_are_the_ones_the_trainer_logs():
    logged = {f.name for f in dataclasses.fields(EpochResult)}
    assert set(VALIDATION_METRICS) <= logged
    # Every selected-weights validation figure the trainer logs may be named.
    assert {name for name in logged if name.startswith("val_")} == set(VALIDATION_METRICS)


def test_the_costs_are_the_ones_postag_cost_measures():
    assert set(cost.MEASURES) == set(COST_METRICS)


def test_an_unknown_metric_or_mode_is_refused_listing_what_is_allowed():
    with pytest.raises(ObjectiveError, match="val_accuracy, val_macro_f1, val_loss") as error:
        Objective("val_f1", "max")
    assert error.value.key == "metric"
    with pytest.raises(ObjectiveError, match="must be 'max' or 'min'"):
        Objective("val_loss", "lowest")


@pytest.mark.parametrize(
    ("objective", "scores", "best", "shown"),
    [
        (DEFAULT, [0.8, 0.9, 0.85], 0.9, "90.00%"),
        (Objective("val_macro_f1", "max"), [0.7, 0.6], 0.7, "70.00%"),
        (Objective("val_loss", "min"), [0.45, 0.38, 0.41], 0.38, "0.38"),
        (Objective("num_parameters", "min"), [2e6, 1.5e6], 1.5e6, "1,500,000"),
    ],
)
def test_an_objective_ranks_and_shows_its_scores(objective, scores, best, shown):
    assert objective.best(scores) == best
    assert objective.best_first(scores, float)[0] == best
    assert objective.shown(best) == shown
    assert not objective.better(best, best)  # a tie is no gain


def test_names_as_the_console_and_the_runs_give_them():
    assert (DEFAULT.best_metric, DEFAULT.label, DEFAULT.heading) == (
        "best_val_accuracy",
        "best val",
        "best val acc",
    )
    # A cost is measured once: its figure is logged under its own name.
    timing = Objective("tagging_ms_per_sentence", "min")
    assert (timing.best_metric, timing.validates) == ("tagging_ms_per_sentence", False)
