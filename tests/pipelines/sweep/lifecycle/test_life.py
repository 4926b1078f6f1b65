"""Which changes of an experiment file only add trials to its sweep."""

from __future__ import annotations

from pipelines.sweep.lifecycle.life import added_trials, concluded_otherwise

GRID = {
    "train": {"lr": 0.01},
    "sweep": {"name": "s", "space": {"model.hidden_size": [8, 16], "train.epochs": [1]}},
}


def changed(**sweep) -> dict:
    return {**GRID, "sweep": {**GRID["sweep"], **sweep}}


def test_more_grid_values_or_more_samples_add_trials():
    space = {"model.hidden_size": [32, 8, 16], "train.epochs": [1, 2]}
    assert added_trials(GRID, changed(space=space)) == (
        "sweep.space.model.hidden_size + [32], sweep.space.train.epochs + [2]"
    )
    assert added_trials(GRID, changed(num_samples=3)) == "sweep.num_samples 1 -> 3"
    optuna = changed(search="optuna", num_samples=4)
    assert added_trials(optuna, {**optuna, "sweep": {**optuna["sweep"], "num_samples": 6}}) == (
        "sweep.num_samples 4 -> 6"
    )


def test_anything_else_is_not_an_addition():
    assert added_trials(GRID, GRID) is None  # no change
    assert (
        added_trials(GRID, changed(space={"model.hidden_size": [8], "train.epochs": [1]})) is None
    )
    assert added_trials(GRID, {**changed(num_samples=2), "train": {"lr": 0.02}}) is None
    assert added_trials(GRID, changed(num_samples=2, max_concurrent_trials=4)) is None
    # A choice of a sampled search is its distribution, not a count of trials.
    optuna = changed(search="optuna")
    more = {**optuna, "sweep": {**optuna["sweep"], "space": {"model.hidden_size": [8, 16, 32]}}}
    assert added_trials(optuna, more) is None
    # Seeds a sweep confirms itself, or searches, are read from its own first experiment.
    confirmed = changed(confirm={"top_k": 1, "seeds": 2})
    assert (
        added_trials(confirmed, {**confirmed, "sweep": {**confirmed["sweep"], "num_samples": 2}})
        is None
    )


def test_a_change_to_what_is_registered_alone_concludes_the_sweep_again():
    ensemble = changed(register="ensemble")
    assert concluded_otherwise(GRID, ensemble) == "sweep.register run -> ensemble"
    assert concluded_otherwise(ensemble, changed(register="run")) == (
        "sweep.register ensemble -> run"
    )
    assert concluded_otherwise(ensemble, GRID) == "sweep.register ensemble -> run"  # default
    assert added_trials(GRID, ensemble) is None
    # With any other change, or none, it is not a new conclusion.
    assert concluded_otherwise(GRID, GRID) is None
    assert concluded_otherwise(GRID, changed(register="ensemble", num_samples=2)) is None
    assert concluded_otherwise(GRID, {**ensemble, "train": {"lr": 0.02}}) is None
