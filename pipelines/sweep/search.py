"""The search stage: the sweep's settings in Ray Tune's terms (search space, searcher,
scheduler), as the stage that the driver runs first."""

from __future__ import annotations

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from pipelines.runs import TRIAL_ROLE
from pipelines.sweep.job import SweepJob
from pipelines.sweep.settings import Range, SweepSettings, fixed_point
from pipelines.sweep.stage import Stage
from pipelines.sweep.state import SweepPhase, SweepState
from postag.config import RunConfig


def param_space(sweep: SweepSettings) -> dict:
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


def tune_config(sweep: SweepSettings, run: RunConfig) -> tune.TuneConfig:
    point = sweep.baseline_point()
    limit = sweep.max_concurrent_trials
    # The limit goes to the search algorithm itself: Tune ignores TuneConfig's
    # max_concurrent_trials (with a warning) once a BasicVariantGenerator is passed.
    if sweep.search == "optuna":
        searcher = ConcurrencyLimiter(optuna_search(sweep, point), max_concurrent=limit)
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
    # Two objectives are the searcher's own (Tune's TuneConfig takes one metric); a trial is
    # then judged at its end, on its best epoch and its final model's cost.
    single = None if sweep.pareto else sweep.primary
    return tune.TuneConfig(
        metric=single.metric if single else None,
        mode=single.mode if single else None,
        search_alg=searcher,
        scheduler=scheduler,
        # The baseline point takes the place of one sample.
        num_samples=sweep.num_samples + 1,
        reuse_actors=sweep.reuse_actors,
    )


def optuna_search(sweep: SweepSettings, baseline: dict) -> OptunaSearch:
    """Optuna's sampler (TPE), on the objective, or on two: multi-objective TPE, told each
    trial's figures on both when it ends.

    The baseline measures no cost (it is never a candidate), so Optuna is not told of it:
    Ray Tune logs a warning to the sweep's log, and the sampler learns from the others.
    """
    if not sweep.pareto:
        return OptunaSearch(points_to_evaluate=[baseline], seed=sweep.optuna_seed)
    return OptunaSearch(
        metric=[goal.best_metric for goal in sweep.goals],
        mode=[goal.mode for goal in sweep.goals],
        points_to_evaluate=[baseline],
        seed=sweep.optuna_seed,
    )


def search_stage(job: SweepJob, state: SweepState) -> Stage:
    return Stage(
        "search",
        SweepPhase.SEARCHING,
        state.tune_dir,
        job.sweep.expected_trials(),
        TRIAL_ROLE,
        job.sweep.is_baseline,
        param_space(job.sweep),
        tune_config(job.sweep, job.run),
    )
