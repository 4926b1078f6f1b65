"""Trials a search stage holds without training them, and the plan around them.

Held trials are an earlier sweep's (a warm start, `sweep.warm_start` or `--from NAME`) and
the sweep's own (a file that only added trials: the stages before the extension's).

An earlier sweep's FINISHED trial is taken where it fits: trained on the same validation and
training data, with the same fixed settings (every config field outside the searched axes,
the objective included; where it ran and on how many threads aside), at a point of this
sweep's space. It is copied under the new parent run as a record of its own (role, params,
per-epoch metrics, its model's URI; tagged `reused_from_run`, with a note linking the run
that trained it), so the trial table, fANOVA, the winner and the UI's comparison see it as
one of the sweep's trials.

A search stage is then planned around the trials its sweep holds (`SearchPlan`): a grid
trains only its points that no trial holds; Optuna is told each held trial's figures (in
its study as completed trials from the start) and samples the rest; the baseline trains
only if no run of it is held.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass

import mlflow
import optuna
from mlflow.entities import Metric, Param
from mlflow.utils.mlflow_tags import (
    MLFLOW_GIT_COMMIT,
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_RUN_NAME,
    MLFLOW_RUN_NOTE,
)
from ray.tune.search.optuna import OptunaSearch

from pipelines.console import say
from pipelines.names import (
    BASELINE_ROLE,
    FINISHED,
    REUSED_SWEEP_TAG,
    REUSED_TAG,
    TRIAL_ROLE,
    TRIAL_TAG,
)
from pipelines.runs import TrialRun, run_params
from pipelines.sweep.lifecycle.life import SweepLife
from pipelines.sweep.lifecycle.parent_run import sweeps_named
from pipelines.sweep.setup.settings import Range, SweepSettings, Value
from pipelines.sweep.trial.trainable import TrialConfigs
from pipelines.tracking import child_runs, run_url
from postag.config import RunConfig, build, to_dict
from postag.data.dataset import PreparedDataset
from postag.training.objective import Objective

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


# Earlier sweeps' trials -----------------------------------------------------------------

# Where a trial ran, and where files lay, are not settings of what it trained: a trial of
# the same config on another machine, thread count or checkout is the same trial. The
# data's content is compared instead (dataset_fingerprint, validation_digest).
NOT_SETTINGS = frozenset(
    {
        "train.device",
        "train.num_threads",
        "train.output_dir",
        "data.cache_dir",
        "data.train",
        "data.dev",
        "data.test",
    }
)
# MLflow takes at most this many metrics, and params, in one log_batch request.
METRICS_PER_REQUEST, PARAMS_PER_REQUEST = 1000, 100


# Which earlier trials fit ----------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """Earlier trials that fit this sweep, with their points; why the others do not."""

    fitting: list[tuple[TrialRun, str]]  # each with the name of the sweep that trained it
    left_out: Counter[str]

    def line(self, names: tuple[str, ...]) -> str:
        reused = len(self.fitting)
        baselines = sum(run.role == BASELINE_ROLE for run, _ in self.fitting)
        text = f"warm start from {', '.join(names)}: {reused} trial{'s'[: reused != 1]} reused"
        text += " (the baseline among them)" if baselines else ""
        if not self.left_out:
            return text + ", none left out"
        why = "; ".join(f"{count} {reason}" for reason, count in self.left_out.most_common())
        return f"{text}; left out: {why}"


def earlier_trials(
    experiment_id: str, names: tuple[str, ...], objective: Objective
) -> list[tuple[TrialRun, str]]:
    """The trial and baseline runs of every run of the sweeps `names`, oldest first, each
    with the name of the sweep that trained it."""
    found = []
    for name, parents in sweeps_named(experiment_id, names).items():
        for parent in parents:
            runs = child_runs(experiment_id, parent.info.run_id)
            found += [(run, name) for run in runs]
    found.sort(key=lambda pair: pair[0].info.start_time)
    return [(TrialRun.of(run, objective), name) for run, name in found]


def choose(
    runs: list[tuple[TrialRun, str]],
    sweep: SweepSettings,
    configs: TrialConfigs,
    prepared: PreparedDataset,
) -> Choice:
    """The runs that fit, one a point (the latest), and the others counted by reason."""
    defaults = run_params(to_dict(build(RunConfig, {})), prepared)
    fitting: dict[str, tuple[TrialRun, str]] = {}
    left_out: Counter[str] = Counter()
    for run, name in runs:
        point, why = fit_of(run, sweep, configs, prepared, defaults)
        if point is None:
            left_out[why] += 1
            continue
        key = point_key({"role": run.role, **point})
        if key in fitting:
            left_out["trained again at the same point (the latest is taken)"] += 1
        fitting[key] = (run, name)
    return Choice(list(fitting.values()), left_out)


def fit_of(
    run: TrialRun,
    sweep: SweepSettings,
    configs: TrialConfigs,
    prepared: PreparedDataset,
    defaults: dict[str, str],
) -> tuple[dict | None, str]:
    """The run's point in this sweep, or None and why it does not fit."""
    if run.role not in (TRIAL_ROLE, BASELINE_ROLE):
        return None, f"{run.role} runs (only a search's trials and baselines are taken)"
    if run.status != FINISHED or run.model_uri is None:
        return None, "not finished with a model"
    if run.validation_digest != prepared.validation_digest:
        return None, "validated on other data"
    baseline = run.role == BASELINE_ROLE
    space = {k: [v] for k, v in sweep.baseline_point().items()} if baseline else sweep.space
    point, why = point_of(run, space)
    if point is None:
        return None, "baselines of another shape" if baseline else why
    expected = run_params(to_dict(configs.resolve(point, "cpu")), prepared)
    for key, value in expected.items():
        if key in NOT_SETTINGS or key in sweep.space:
            continue
        # A field added since the run was trained had its default value then.
        if run.params.get(key, defaults.get(key)) != value:
            return None, f"trained with other fixed settings ({key})"
    return point, ""


# Copies under the new parent -------------------------------------------------------------


def copy_as_reused(run: TrialRun, sweep_name: str, life: SweepLife) -> None:
    """`run` as a FINISHED run of this sweep that trained nothing: its params, every metric
    with its history, its data inputs and model URI, and a link to the run that trained it
    (the first one, when `run` is itself a copy)."""
    client = mlflow.MlflowClient()
    origin = run.tags.get(REUSED_TAG, run.run_id)
    trained_by = run.tags.get(REUSED_SWEEP_TAG, sweep_name)
    original = client.get_run(origin)
    url = run_url(mlflow.get_tracking_uri(), original.info.experiment_id, origin)
    # Its own tags (role, model URI, code), not Tune's or MLflow's bookkeeping.
    kept = {
        k: v
        for k, v in run.tags.items()
        if k != TRIAL_TAG and (not k.startswith("mlflow.") or k == MLFLOW_GIT_COMMIT)
    }
    tags = {
        **kept,
        MLFLOW_PARENT_RUN_ID: life.state.parent_run_id,
        MLFLOW_RUN_NAME: run.name,
        REUSED_TAG: origin,
        REUSED_SWEEP_TAG: trained_by,
        MLFLOW_RUN_NOTE: f"Reused, not trained again: trial [{run.name}]({url}) of sweep "
        f"'{trained_by}'.",
    }
    record = client.create_run(
        life.state.experiment_id, start_time=original.info.start_time, tags=tags
    )
    new_id = record.info.run_id
    params = [Param(k, v) for k, v in run.params.items()]
    for start in range(0, len(params), PARAMS_PER_REQUEST):
        client.log_batch(new_id, params=params[start : start + PARAMS_PER_REQUEST])
    # Plain figures: the originals' links to their model and data stay with the original.
    metrics = [
        Metric(m.key, m.value, m.timestamp, m.step)
        for key in run.metrics
        for m in client.get_metric_history(origin, key)
    ]
    for start in range(0, len(metrics), METRICS_PER_REQUEST):
        client.log_batch(new_id, metrics=metrics[start : start + METRICS_PER_REQUEST])
    client.log_inputs(new_id, datasets=list(original.inputs.dataset_inputs))
    client.set_terminated(new_id, FINISHED, end_time=original.info.end_time)


def take_warm_start(life: SweepLife, configs: TrialConfigs, prepared: PreparedDataset) -> None:
    """Copy the earlier sweeps' fitting trials under this sweep's parent run, once each (a
    driver stopped while copying copies the rest when the sweep resumes)."""
    sweep = life.job.sweep
    if not sweep.warm_start:
        return
    copied = {run.tags[REUSED_TAG] for run in life.trial_runs() if REUSED_TAG in run.tags}
    runs = earlier_trials(life.state.experiment_id, sweep.warm_start, sweep.primary)
    choice = choose(runs, sweep, configs, prepared)
    for run, name in choice.fitting:
        if run.tags.get(REUSED_TAG, run.run_id) not in copied:
            copy_as_reused(run, name, life)
    say(f"sweep '{sweep.name}': {choice.line(sweep.warm_start)}")
