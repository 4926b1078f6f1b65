"""A search stage planned around the trials its sweep already holds (`SearchPlan`): reused
from an earlier sweep (pipelines/sweep/reuse.py), or trained by the stages before it when
the file added trials. A grid trains only its points that no trial holds; Optuna is told each
held trial's figures (in its study as completed trials from the start) and samples the rest;
the baseline trains only if no run of it is held.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass

import optuna
from ray.tune.search.optuna import OptunaSearch

from pipelines.runs import BASELINE_ROLE, FINISHED, REUSED_TAG, TRIAL_ROLE, TrialRun
from pipelines.sweep.settings import Range, SweepSettings, Value

# Points ----------------------------------------------------------------------------------


def point_of(run: TrialRun, space: dict[str, list[Value] | Range]) -> tuple[dict | None, str]:
    """The run's values on the searched axes, typed as the space has them; or None and why
    it is not a point of `space`."""
    point = {}
    for key, axis in space.items():
        text = run.value(key)
        if text is None:
            return None, f"it logged no {key}"
        if isinstance(axis, Range):
            value = (int if isinstance(axis.low, int) else float)(float(text))
            if not axis.low <= value <= axis.high:
                return None, f"outside this search's space ({key} {text})"
        else:
            matches = [v for v in axis if str(v) == text]
            if not matches:
                return None, f"outside this search's space ({key} {text})"
            value = matches[0]
        point[key] = value
    return point, ""


def point_key(point: dict) -> str:
    return json.dumps(point, sort_keys=True)


def grid_points(sweep: SweepSettings) -> list[dict]:
    """Every point of a grid, each `num_samples` times."""
    keys = list(sweep.space)
    once = [
        dict(zip(keys, values, strict=True)) for values in itertools.product(*sweep.space.values())
    ]
    return once * sweep.num_samples


# Plans -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchPlan:
    """What a search stage trains, given the trials its sweep already holds.

    points: a grid's points to train; None trains Tune's grid whole (nothing is held).
    samples: Tune's samples: of a sampled search, the points it draws; of a whole grid,
        the times it runs the grid (each `per_sample` trials).
    evaluated: held trials' points and figures on the sweep's goals, for Optuna's study.
    """

    points: list[dict] | None
    samples: int
    baseline: bool
    evaluated: list[tuple[dict, list[float]]]
    per_sample: int = 1

    @property
    def trials(self) -> int:
        planned = len(self.points) if self.points is not None else self.samples * self.per_sample
        return planned + self.baseline

    @classmethod
    def whole(cls, sweep: SweepSettings) -> SearchPlan:
        """A search with nothing held: its grid or its samples, and the baseline."""
        per_sample = (sweep.expected_trials() - 1) // sweep.num_samples
        return cls(None, sweep.num_samples, True, [], per_sample)


def plan_search(sweep: SweepSettings, held: list[TrialRun], first: bool) -> SearchPlan:
    """The plan of a search stage of `sweep` whose parent run holds `held`.

    first: the sweep's first stage, where only reused trials are held; a later stage (the
    file added trials) holds every trial of the stages before it, concluded."""
    trials = [run for run in held if run.role == TRIAL_ROLE]
    baseline = not any(run.role == BASELINE_ROLE for run in held)
    if not trials and baseline:
        return SearchPlan.whole(sweep)
    placed = [(run, p) for run in trials if (p := point_of(run, sweep.space)[0]) is not None]
    points = [point for _, point in placed]
    evaluated = [
        (point, figures)
        for run, point in placed
        if run.status == FINISHED and (figures := goal_figures(run, sweep)) is not None
    ]
    if sweep.search == "grid":
        left = Counter(point_key(p) for p in points)
        todo = []
        for point in grid_points(sweep):
            if left[point_key(point)] > 0:
                left[point_key(point)] -= 1
            else:
                todo.append(point)
        return SearchPlan(todo, 0, baseline, [])
    trained_here = 0 if first else sum(REUSED_TAG not in run.tags for run in trials)
    return SearchPlan(None, max(sweep.num_samples - trained_here, 0), baseline, evaluated)


def goal_figures(run: TrialRun, sweep: SweepSettings) -> list[float] | None:
    """The run's figures on each of the sweep's goals, as its searcher is told them; None
    when it lacks one (a cost a run of a single-objective sweep never measured)."""
    figures = [run.metrics.get(goal.best_metric) for goal in sweep.goals]
    return None if None in figures else figures


class HeldOptunaSearch(OptunaSearch):
    """Ray Tune's OptunaSearch, with the trials a sweep already holds in its study as
    completed trials from the start: its sampler learns from them as from its own.

    OptunaSearch takes evaluated points only for all of its `points_to_evaluate` at once,
    and only with a single objective; the baseline is a point to train, and a Pareto search
    has two figures a trial."""

    def __init__(self, *, evaluated: list[tuple[dict, list[float]]], **kwargs):
        self._held = evaluated
        super().__init__(**kwargs)

    def _setup_study(self, mode):
        super()._setup_study(mode)
        for point, figures in self._held:
            self._ot_study.add_trial(
                optuna.trial.create_trial(
                    params=point,
                    distributions=self._space,
                    values=figures,
                    state=optuna.trial.TrialState.COMPLETE,
                )
            )
