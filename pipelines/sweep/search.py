"""The sweep config in Ray Tune's terms: search space, searcher, scheduler."""

from __future__ import annotations

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from pipelines.sweep.config import Range, SweepConfig, fixed_point
from postag.config import RunConfig

METRIC = "val_accuracy"


def param_space(sweep: SweepConfig) -> dict:
    space = {}
    for key, axis in sweep.space.items():
        if isinstance(axis, Range):
            space[key] = _range_domain(axis)
        elif sweep.search == "grid":
            space[key] = tune.grid_search(axis)
        else:
            space[key] = tune.choice(axis)
    return space


def _range_domain(axis: Range):
    if isinstance(axis.low, int) and isinstance(axis.high, int):
        # Integer ranges (not choices) so the deep baseline may lie outside them: Optuna
        # accepts an out-of-range fixed point for integers, but not for a categorical.
        sampler = tune.lograndint if axis.log else tune.randint
        return sampler(axis.low, axis.high + 1)
    return (tune.loguniform if axis.log else tune.uniform)(axis.low, axis.high)


def tune_config(sweep: SweepConfig, run: RunConfig) -> tune.TuneConfig:
    point = sweep.baseline_point()
    limit = sweep.max_concurrent_trials
    # The limit goes to the search algorithm itself: Tune ignores TuneConfig's
    # max_concurrent_trials (with a warning) once a BasicVariantGenerator is passed.
    if sweep.search == "optuna":
        searcher = ConcurrencyLimiter(
            OptunaSearch(points_to_evaluate=[point], seed=sweep.optuna_seed), max_concurrent=limit
        )
    else:
        searcher = BasicVariantGenerator(
            points_to_evaluate=[fixed_point(point)], max_concurrent=limit
        )
    if sweep.scheduler == "asha":
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=sweep.max_epochs(run),
            grace_period=sweep.asha.grace_period,
            reduction_factor=sweep.asha.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    return tune.TuneConfig(
        metric=METRIC,
        mode="max",
        search_alg=searcher,
        scheduler=scheduler,
        # The baseline point takes the place of one sample.
        num_samples=sweep.num_samples + 1,
        reuse_actors=sweep.reuse_actors,
    )
