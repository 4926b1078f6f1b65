"""What a search stage trains around the trials its sweep holds, and which earlier trials
a warm start takes: on typed runs as MLflow gives them back, and the tiny EWT slice."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ray import tune

from pipelines.names import REUSED_TAG
from pipelines.runs import TrialRun, run_params
from pipelines.sweep.setup.settings import build_sweep
from pipelines.sweep.stages.held import HeldOptunaSearch, SearchPlan, choose, plan_search
from pipelines.sweep.stages.search import param_space
from pipelines.sweep.trial.trainable import TrialConfigs
from postag.config import RunConfig, to_dict
from postag.data import dataset as datasets

GRID = {
    "name": "grid",
    "space": {"model.hidden_size": [8, 16], "train.epochs": [1, 2]},
    "baseline": {"model.hidden_size": 4, "model.num_layers": 3, "train.epochs": 1},
}


def trial(hidden, epochs, *, role="trial", status="FINISHED", score=0.5, reused=False):
    return TrialRun(
        run_id=f"r{hidden}-{epochs}",
        name=f"h{hidden}-e{epochs}",
        status=status,
        role=role,
        trial_id=None,
        model_uri="models:/m-1",
        score=score,
        best_epoch=1,
        params={"model.hidden_size": str(hidden), "train.epochs": str(epochs)},
        metrics={"best_val_accuracy": score},
        tags={REUSED_TAG: "origin"} if reused else {},
    )


def shapes(points) -> list[tuple]:
    return sorted((p["model.hidden_size"], p["train.epochs"]) for p in points)


def test_a_grid_trains_only_the_points_no_trial_holds():
    sweep = build_sweep(GRID, RunConfig())
    assert plan_search(sweep, [], first=True) == SearchPlan.whole(sweep)
    assert SearchPlan.whole(sweep).trials == 5
    held = [trial(8, 1, reused=True), trial(4, 1, role="deep-baseline", reused=True)]
    plan = plan_search(sweep, held, first=True)
    assert shapes(plan.points) == [(8, 2), (16, 1), (16, 2)] and not plan.baseline
    assert plan.trials == 3
    # The grid given a value: every earlier point is held, finished or failed.
    wider = build_sweep(
        {**GRID, "space": {**GRID["space"], "model.hidden_size": [8, 16, 32]}}, RunConfig()
    )
    earlier = [trial(h, e) for h in (8, 16) for e in (1, 2)]
    earlier[0] = replace(earlier[0], status="FAILED")
    plan = plan_search(wider, [*earlier, trial(4, 1, role="deep-baseline")], first=False)
    assert shapes(plan.points) == [(32, 1), (32, 2)] and plan.trials == 2


def test_a_sampled_search_is_told_what_its_sweep_holds_and_samples_the_rest():
    space = {"model.hidden_size": {"low": 8, "high": 32}, "train.epochs": [1, 2]}
    sweep = build_sweep({**GRID, "search": "optuna", "num_samples": 3, "space": space}, RunConfig())
    held = [trial(8, 1, score=0.4, reused=True), trial(16, 2, score=0.6, reused=True)]
    plan = plan_search(sweep, held, first=True)
    assert (plan.samples, plan.baseline, plan.trials) == (3, True, 4)
    assert plan.evaluated == [
        ({"model.hidden_size": 8, "train.epochs": 1}, [0.4]),
        ({"model.hidden_size": 16, "train.epochs": 2}, [0.6]),
    ]
    # Five samples now, three trained by the stage before: two more.
    more = replace(sweep, num_samples=5)
    trained = [trial(20, 1), trial(24, 2), trial(12, 1), trial(4, 1, role="deep-baseline")]
    assert plan_search(more, [*held, *trained], first=False).samples == 2

    searcher = HeldOptunaSearch(evaluated=plan.evaluated, seed=0)
    searcher.set_search_properties("best_val_accuracy", "max", param_space(sweep, plan))
    told = searcher._ot_study.trials
    assert [(t.params, t.values) for t in told] == [(p, v) for p, v in plan.evaluated]
    assert tune.search.optuna.OptunaSearch in type(searcher).__mro__


@pytest.fixture(scope="module")
def reusing(tiny_config):
    prepared = datasets.load(tiny_config.data)
    space = {"model.hidden_size": [8, 16], "train.epochs": [1, 2]}
    sweep = build_sweep({**GRID, "space": space, "warm_start": ["earlier"]}, tiny_config)
    configs = TrialConfigs(to_dict(tiny_config), sweep)
    return sweep, configs, prepared


def logged(reusing, hidden, epochs, role="trial", **changes) -> TrialRun:
    """A run as a sweep of the same settings would have logged it, with `changes`."""
    sweep, configs, prepared = reusing
    config = configs.resolve({"model.hidden_size": hidden, "train.epochs": epochs}, "cpu")
    params = {**run_params(to_dict(config), prepared), **changes}
    return replace(trial(hidden, epochs, role=role), params=params)


def test_a_warm_start_takes_the_trials_that_fit_and_says_why_the_others_do_not(reusing):
    sweep, configs, prepared = reusing
    fits = logged(reusing, 8, 1)
    older = logged(reusing, 16, 2)
    # A field added since it was trained: absent, and today's default then.
    older = replace(
        older, params={k: v for k, v in older.params.items() if k != "train.label_smoothing"}
    )
    runs = [
        fits,
        older,
        logged(reusing, 16, 1, **{"train.lr": "0.5"}),
        logged(reusing, 16, 1, validation_digest="other"),
        logged(reusing, 32, 1),
        replace(logged(reusing, 8, 2), status="FAILED"),
        logged(reusing, 8, 2, role="confirmation"),
        replace(logged(reusing, 8, 1), run_id="again"),
    ]
    choice = choose([(run, "earlier") for run in runs], sweep, configs, prepared)
    assert [run.run_id for run, _ in choice.fitting] == ["again", "r16-2"]
    assert choice.left_out == {
        "trained with other fixed settings (train.lr)": 1,
        "validated on other data": 1,
        "outside this search's space (model.hidden_size 32)": 1,
        "not finished with a model": 1,
        "confirmation runs (only a search's trials and baselines are taken)": 1,
        "trained again at the same point (the latest is taken)": 1,
    }
    assert choice.line(("earlier",)).startswith(
        "warm start from earlier: 2 trials reused; left out: "
    )
