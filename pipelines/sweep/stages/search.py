"""The search stages: the sweep's settings in Ray Tune's terms (search space, searcher,
scheduler), as the stage that the driver runs first, then one for each extension of the
sweep's file (trials added), each planned around the trials the sweep holds already
(pipelines/sweep/stages/held.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from pipelines.console import say
from pipelines.experiment import run_config_from
from pipelines.names import TRIAL_ROLE
from pipelines.sweep.lifecycle.life import SweepLife
from pipelines.sweep.lifecycle.state import search_phase
from pipelines.sweep.setup.job import SweepJob
from pipelines.sweep.setup.settings import Range, SweepSettings, build_sweep, fixed_point
from pipelines.sweep.stages.held import HeldOptunaSearch, SearchPlan, plan_search, take_warm_start
from pipelines.sweep.stages.stage import Stage
from pipelines.sweep.trial.trainable import TrialConfigs
from postag.config import RunConfig
from postag.data.dataset import PreparedDataset


def param_space(sweep: SweepSettings, plan: SearchPlan) -> dict:
    """Tune's space; a grid whose points are planned one by one (some are held already)
    takes them as fixed points over a space of choices, which they fill in whole."""
    space = {}
    for key, axis in sweep.space.items():
        if isinstance(axis, Range):
            space[key] = _range_domain(axis)
        elif sweep.search == "grid" and plan.points is None:
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


def tune_config(sweep: SweepSettings, run: RunConfig, plan: SearchPlan) -> tune.TuneConfig:
    baseline = [sweep.baseline_point()] if plan.baseline else []
    limit = sweep.max_concurrent_trials
    # The limit goes to the search algorithm itself: Tune ignores TuneConfig's
    # max_concurrent_trials (with a warning) once a BasicVariantGenerator is passed.
    if sweep.search == "optuna":
        searcher = ConcurrencyLimiter(optuna_search(sweep, baseline, plan), max_concurrent=limit)
    else:
        points = baseline + (plan.points or [])
        searcher = BasicVariantGenerator(
            points_to_evaluate=[fixed_point(point) for point in points], max_concurrent=limit
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
        # Each fixed point (the baseline, a grid's planned points) takes one sample's place.
        num_samples=plan.trials if plan.points is not None else plan.samples + plan.baseline,
        reuse_actors=sweep.reuse_actors,
    )


def optuna_search(sweep: SweepSettings, baseline: list[dict], plan: SearchPlan) -> OptunaSearch:
    """Optuna's sampler (TPE), on the objective, or on two: multi-objective TPE, told each
    trial's figures on both when it ends; the trials the sweep holds already (a warm start,
    or the stages before an extension's) are in its study from the start.

    The baseline measures no cost (it is never a candidate), so Optuna is not told of it:
    Ray Tune logs a warning to the sweep's log, and the sampler learns from the others.
    """
    goals = {}
    if sweep.pareto:
        goals = dict(
            metric=[goal.best_metric for goal in sweep.goals],
            mode=[goal.mode for goal in sweep.goals],
        )
    if not plan.evaluated:
        return OptunaSearch(points_to_evaluate=baseline, seed=sweep.optuna_seed, **goals)
    return HeldOptunaSearch(
        evaluated=plan.evaluated, points_to_evaluate=baseline, seed=sweep.optuna_seed, **goals
    )


def search_stages(
    life: SweepLife, prepared: PreparedDataset, after: str
) -> Iterator[tuple[Stage, str]]:
    """The search, then each extension (a file that only added trials), with the phase the
    sweep moves to after it (`after`, after the last). Each is planned as the sweep reaches
    it, around the trials its parent run holds then."""
    stages = list(life.state.searched) or [life.job.values]
    for index, values in enumerate(stages):
        last = index == len(stages) - 1
        job = life.job if last else replace(life.job, values=values, sweep=settings_of(values))
        then = search_phase(index + 1) if not last else after
        stage = search_stage(job, life, index, prepared)
        if stage is None:
            life.enter(then)  # every trial it would train is held already
            continue
        yield stage, then


def settings_of(values: dict) -> SweepSettings:
    """The sweep settings of an earlier stage's experiment values (they differ from today's
    only by the trials added since)."""
    return build_sweep(values["sweep"], run_config_from(values))


def search_stage(
    job: SweepJob, life: SweepLife, index: int, prepared: PreparedDataset
) -> Stage | None:
    """Search stage `index`, planned if it starts now (a warm start's trials taken first);
    None if it starts now with nothing to train."""
    tune_dir, phase = life.state.search_dir(index), search_phase(index)
    plan = SearchPlan.whole(job.sweep)
    trials = life.state.planned.get(tune_dir.rpartition("/")[2], plan.trials)
    if life.phase == phase and not tune.Tuner.can_restore(tune_dir):
        if index == 0:
            take_warm_start(life, TrialConfigs(job.base, job.sweep), prepared)
        plan = plan_search(job.sweep, life.trial_runs(), first=index == 0)
        if plan.trials == 0:
            name = STAGE_NAMES[index > 0]
            say(f"sweep '{job.sweep.name}': every trial of its {name} is held already")
            return None
        life.plan(tune_dir, trials := plan.trials)
    return Stage(
        STAGE_NAMES[index > 0],
        phase,
        tune_dir,
        trials,
        TRIAL_ROLE,
        job.sweep.is_baseline,
        param_space(job.sweep, plan),
        tune_config(job.sweep, job.run, plan),
    )


STAGE_NAMES = ("search", "added trials")
