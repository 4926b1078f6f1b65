"""The confirmation stage: the search's best configurations trained again with new seeds,
so that the winner is the configuration with the best mean, not the luckiest single run.

The stage is a second Ray Tune experiment whose trials are fixed points (a configuration
and a seed); this file makes it, choosing the points, and reads the outcome. The driver
runs it after the search, and pipelines/sweep/end/winner.py decides its winner.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from pipelines.names import CONFIRMATION_ROLE, TRIAL_ROLE
from pipelines.runs import TrialRun, best_first, best_of, candidates, score
from pipelines.sweep.lifecycle.life import SweepLife
from pipelines.sweep.lifecycle.state import SweepFailed, SweepPhase, SweepState, nothing_to_register
from pipelines.sweep.setup.job import SweepJob
from pipelines.sweep.setup.settings import (
    SEED_KEY,
    ConfirmConfig,
    SweepSettings,
    fixed_point,
    plain_values,
)
from pipelines.sweep.stages.stage import Stage, stage_trials
from pipelines.sweep.trial.trainable import trial_name
from postag.training.objective import Objective


def configuration_key(point: dict) -> str:
    """A configuration's identity: its searched values without the seed."""
    values = plain_values(point)
    return json.dumps({k: v for k, v in values.items() if k != SEED_KEY}, sort_keys=True)


@dataclass(frozen=True)
class Candidate:
    """A search trial the confirmation stage trains again."""

    run: TrialRun
    point: dict  # its searched values, as Tune gave them to the trial


def top_candidates(
    runs: list[TrialRun], trials: list[Trial], top_k: int, objective: Objective
) -> list[Candidate]:
    """The `top_k` best distinct configurations of the search, best first.

    Ranked on `objective` among finished non-baseline trials; a configuration that came up
    twice (Optuna may sample it again) counts once.
    """
    points = {trial.trial_id: trial.config for trial in trials}
    chosen: dict[str, Candidate] = {}
    for run in best_first(candidates(runs, TRIAL_ROLE), objective):
        point = points.get(run.trial_id or "")
        if point is not None and configuration_key(point) not in chosen:
            chosen[configuration_key(point)] = Candidate(run, point)
    return list(chosen.values())[:top_k]


def best_of_the_search(life: SweepLife) -> list[Candidate]:
    """The configurations the confirmation stage trains again; none is a failed sweep."""
    assert life.job.sweep.confirm is not None
    runs = life.trial_runs()
    trials = stage_trials(life.state.tune_dir)
    chosen = top_candidates(runs, trials, life.job.sweep.confirm.top_k, life.job.sweep.primary)
    if not chosen:
        life.gave_up()
        raise SweepFailed(nothing_to_register(runs, life.job.sweep))
    return chosen


def confirmation_stage(job: SweepJob, state: SweepState, chosen: list[Candidate]) -> Stage:
    confirm = job.sweep.confirm
    assert confirm is not None
    seeds = confirmation_seeds(confirm, job.run.train.seed)
    points = seed_points(chosen, seeds)
    return Stage(
        "confirmation",
        SweepPhase.CONFIRMING,
        state.stage_dir("confirm"),
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


def confirmation_seeds(confirm: ConfirmConfig, search_seed: int) -> list[int]:
    """Seeds other than the search's own: its run of each configuration was chosen for
    scoring high, so repeating that seed would count its luck again."""
    return [search_seed + i for i in range(1, confirm.seeds + 1)]


def seed_points(chosen: list[Candidate], seeds: list[int]) -> list[dict]:
    """Every configuration with every seed: the stage's trials, as Tune takes fixed points."""
    return [
        fixed_point({**candidate.point, SEED_KEY: seed}) for candidate in chosen for seed in seeds
    ]


def confirmation_param_space(points: list[dict]) -> dict:
    """Tune fills fixed points only into keys its param space has. Every point sets all of
    them: None holds each place (a value there would be compared with every point's)."""
    return dict.fromkeys(points[0])


def confirmation_tune_config(sweep: SweepSettings, points: list[dict]) -> tune.TuneConfig:
    """Exactly `points`, each run to its end: stopping a seed early would bias its mean."""
    return tune.TuneConfig(
        metric=sweep.primary.metric,
        mode=sweep.primary.mode,
        search_alg=BasicVariantGenerator(
            points_to_evaluate=points, max_concurrent=sweep.max_concurrent_trials
        ),
        scheduler=FIFOScheduler(),
        num_samples=len(points),
        reuse_actors=sweep.reuse_actors,
    )


def never_baseline(point: dict) -> bool:
    """The stage repeats searched configurations only (a named function: Tune pickles it)."""
    return False


@dataclass(frozen=True)
class Confirmed:
    """One configuration's seed runs and what they agree on."""

    candidate: Candidate
    runs: list[TrialRun]  # its finished seed runs
    objective: Objective  # what their scores are on

    @property
    def scores(self) -> list[float]:
        return [score(run) for run in self.runs]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def sd(self) -> float:
        """Sample standard deviation (n - 1); 0 for a single run."""
        return statistics.stdev(self.scores) if len(self.runs) > 1 else 0.0

    @property
    def best_run(self) -> TrialRun:
        """The seed run whose model is registered if this configuration wins."""
        return best_of(self.runs, self.objective)

    @property
    def name(self) -> str:
        point = {k: v for k, v in self.candidate.point.items() if k != SEED_KEY}
        # A sweep of one configuration over seeds (experiments/best.yaml) names nothing else.
        return trial_name(point, baseline=False) or "its configuration"

    def line(self) -> str:
        shown, spread = self.objective.shown(self.mean), self.objective.spread(self.sd)
        return f"{self.name}: {shown} ± {spread} over {len(self.runs)} seeds"


def seed_runs_by_configuration(
    runs: list[TrialRun], trials: list[Trial], role: str
) -> dict[str, list[TrialRun]]:
    """The finished runs of `role`, grouped by configuration (configuration_key)."""
    points = {trial.trial_id: trial.config for trial in trials}
    groups: dict[str, list[TrialRun]] = {}
    for run in candidates(runs, role):
        point = points.get(run.trial_id or "")
        if point is not None:
            groups.setdefault(configuration_key(point), []).append(run)
    return groups


def confirmed(
    chosen: list[Candidate], runs: list[TrialRun], trials: list[Trial], objective: Objective
) -> list[Confirmed]:
    """Each chosen configuration with its finished seed runs, best mean first; one whose
    seeds all failed is left out (the trial table shows its runs as FAILED)."""
    groups = seed_runs_by_configuration(runs, trials, CONFIRMATION_ROLE)
    outcome = [
        Confirmed(candidate, groups[configuration_key(candidate.point)], objective)
        for candidate in chosen
        if configuration_key(candidate.point) in groups
    ]
    return best_mean_first(outcome, objective)


def seeds_of_the_search(
    runs: list[TrialRun], trials: list[Trial], objective: Objective
) -> list[Confirmed]:
    """With train.seed an axis of the search, each configuration with its finished seed
    runs, best mean first: the search is its own confirmation, and its trials run side by
    side. The candidate of each is its best seed run."""
    points = {trial.trial_id: trial.config for trial in trials}
    outcome = []
    for seeds in seed_runs_by_configuration(runs, trials, TRIAL_ROLE).values():
        best = best_of(seeds, objective)
        in_seed_order = sorted(seeds, key=lambda run: int(run.seed))
        candidate = Candidate(best, points[best.trial_id or ""])
        outcome.append(Confirmed(candidate, in_seed_order, objective))
    return best_mean_first(outcome, objective)


def best_mean_first(outcome: list[Confirmed], objective: Objective) -> list[Confirmed]:
    return objective.best_first(outcome, lambda confirmed: confirmed.mean)


def confirmation_markdown(outcome: list[Confirmed]) -> str:
    """A table of the confirmed configurations (one at least) for the parent run's
    trials.md."""
    lines = [
        f"## Confirmation: best {outcome[0].objective.phrase} over seeds",
        "",
        "| configuration | seeds | mean | sd | seed runs |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for item in outcome:
        names = ", ".join(run.name for run in item.runs)
        lines.append(
            f"| {item.name} | {len(item.runs)} | {item.objective.shown(item.mean)} "
            f"| {item.objective.spread(item.sd)} | {names} |"
        )
    return "\n".join(lines)
