"""A sweep's stages, in their order: the search, then the confirmation of its best with new
seeds if the sweep asks, then the conclusion (register, test, report). Each Tune stage is
made here and run by pipelines/sweep/stage_runner.py; the sweep's life records which stage it
is in (pipelines/sweep/life.py), so a rerun resumes there.

A new stage is made here and given its place in `run_stages`; its name and its transition go
to life.py.
"""

from __future__ import annotations

from dataclasses import asdict

from ray import tune
from ray.tune.experiment import Trial

from pipelines.console import say
from pipelines.runs import CONFIRMATION_ROLE, TRIAL_ROLE
from pipelines.sweep.conclusion import conclude
from pipelines.sweep.confirm import (
    Candidate,
    confirmation_param_space,
    confirmation_seeds,
    confirmation_tune_config,
    confirmed,
    never_baseline,
    seed_points,
    seeds_of_the_search,
    top_candidates,
)
from pipelines.sweep.job import Sweep
from pipelines.sweep.life import SweepLife
from pipelines.sweep.promotion import SweepFailed, nothing_to_register
from pipelines.sweep.search import param_space, tune_config
from pipelines.sweep.stage_runner import Stage, run_stage, stage_trials
from pipelines.sweep.state import SweepStage, SweepState
from postag.dataset import PreparedDataset

RESUME_HINT = "run the same command again to resume"


def run_stages(life: SweepLife, prepared: PreparedDataset, force_best: bool, verbose: bool) -> dict:
    """The search, then its confirmation if the sweep asks, then the conclusion, each from
    the stage the sweep is in; a Tune stage interrupted ends the sweep there, and the same
    command resumes it. A search over seeds is its own confirmation."""
    job = life.job
    if life.stage == SweepStage.REGISTERING and life.resuming:
        say(f"sweep '{job.sweep.name}': every trial concluded; resuming at registration")
    if life.stage == SweepStage.SEARCHING:
        stage = search_stage(job, life.state)
        if not run_stage(life, stage, life.resuming, prepared, verbose):
            return interrupted(life, stage)
        life.searched()
    confirmation = None
    if job.sweep.confirm is not None:
        chosen = best_of_the_search(life)
        stage = confirmation_stage(job, life.state, chosen)
        if life.stage == SweepStage.CONFIRMING:
            restoring = tune.Tuner.can_restore(stage.tune_dir)
            if not run_stage(life, stage, restoring, prepared, verbose):
                return interrupted(life, stage)
            life.confirmed()
        confirmation = confirmed(chosen, life.trial_runs(), stage_trials(stage.tune_dir))
    elif job.sweep.searches_seeds():
        confirmation = seeds_of_the_search(life.trial_runs(), stage_trials(life.state.tune_dir))
    return conclude(life, confirmation, force_best)


def search_stage(job: Sweep, state: SweepState) -> Stage:
    return Stage(
        "search",
        state.tune_dir,
        job.sweep.expected_trials(),
        TRIAL_ROLE,
        job.sweep.is_baseline,
        param_space(job.sweep),
        tune_config(job.sweep, job.run),
    )


def confirmation_stage(job: Sweep, state: SweepState, chosen: list[Candidate]) -> Stage:
    confirm = job.sweep.confirm
    assert confirm is not None and state.confirm_dir is not None
    seeds = confirmation_seeds(confirm, job.run.train.seed)
    points = seed_points(chosen, seeds)
    return Stage(
        "confirmation",
        state.confirm_dir,
        len(points),
        CONFIRMATION_ROLE,
        never_baseline,
        confirmation_param_space(points),
        confirmation_tune_config(job.sweep, points),
        headline=(
            f"the confirmation: the best {len(points) // confirm.seeds} configurations again with "
            f"{confirm.seeds} new seeds each"
        ),
    )


def best_of_the_search(life: SweepLife) -> list[Candidate]:
    """The configurations the confirmation stage trains again; none is a failed sweep."""
    assert life.job.sweep.confirm is not None
    runs = life.trial_runs()
    chosen = top_candidates(runs, stage_trials(life.state.tune_dir), life.job.sweep.confirm.top_k)
    if not chosen:
        life.gave_up()
        raise SweepFailed(nothing_to_register(runs, life.job.sweep))
    return chosen


def interrupted(life: SweepLife, stage: Stage) -> dict:
    life.interrupted()
    done = sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in stage_trials(stage.tune_dir))
    say(
        f"sweep '{life.job.sweep.name}' interrupted in its {stage.name} with {done} of "
        f"{stage.trials} trials concluded; {RESUME_HINT}"
    )
    return {"state": asdict(life.state), "interrupted": True}
