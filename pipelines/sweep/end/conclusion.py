"""The end of a sweep: the winner registered, tested from the registry, what mattered, the
parent run closed with the trial table, and the console's last word."""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow

from pipelines.console import say
from pipelines.evaluation import Evaluated, evaluate_model
from pipelines.names import (
    CONFIRMED_MEAN,
    CONFIRMED_SD,
    REGISTERED_VERSION_TAG,
    REUSED_SWEEP_TAG,
    SWEEP_TAG,
    TEST_ACCURACY,
    TRIAL_ROLE,
    TRIALS_MD,
)
from pipelines.runs import TrialRun, best_first, score
from pipelines.sweep.end.importance import (
    PARALLEL_PNG,
    Importance,
    importance_figures,
    importance_markdown,
    parameter_importance,
)
from pipelines.sweep.end.pareto import FRONT_PNG, Member, front_png, front_table, settle_front
from pipelines.sweep.end.registration import Registered, alias_for
from pipelines.sweep.end.seed_ensemble import Ensemble, ensemble_of_seeds
from pipelines.sweep.end.winner import current_champion, register, seeds_to_join
from pipelines.sweep.lifecycle.life import SweepLife
from pipelines.sweep.lifecycle.state import SweepFailed, SweepState
from pipelines.sweep.setup.job import SweepJob
from pipelines.sweep.setup.settings import SweepSettings
from pipelines.sweep.stages.confirmation import Confirmed, confirmation_markdown
from pipelines.tracking import artifact_url, compare_runs_url, run_url
from postag.data import dataset as datasets
from postag.data.dataset import PreparedDataset
from postag.serving.names import REGISTERED_MODEL
from postag.serving.registry import BEST_ALIAS


@dataclass(frozen=True)
class Outcome:
    """What the sweep's end found: its runs, the version registered and its test, what
    mattered, and the confirmation or the Pareto front where the sweep has one."""

    runs: list[TrialRun]
    registered: Registered
    tested: Evaluated | None
    importance: Importance | None
    why: str  # why importance was not measured, when it was not
    confirmation: list[Confirmed] | None
    front: list[Member]
    # The winner's seeds as one model, where the sweep registers one (sweep.register).
    ensemble: Ensemble | None = None

    @property
    def registered_ensemble(self) -> bool:
        """Whether the version registered is the ensemble (it beat its best seed)."""
        return (
            self.ensemble is not None and self.registered.winner.run_id == self.ensemble.run.run_id
        )


def conclude(
    life: SweepLife,
    confirmation: list[Confirmed] | None,
    force_best: bool,
    data: PreparedDataset,
) -> dict:
    """Register the winner (or its seeds as one model), test it, say what mattered, and
    close the parent run; `data` is what the trials trained and validated on."""
    job = life.job
    runs = life.trial_runs()
    try:
        ensemble = seeds_as_one(life, confirmation, data)
        life.now("while registering its winner")
        registered = register(job, runs, confirmation, force_best, ensemble)
    except SweepFailed:
        life.gave_up()
        raise
    for item in confirmation or []:
        life.log_confirmation(item.candidate.run.run_id, item.mean, item.sd, item.runs)
    life.now(f"while testing version {registered.version}")
    tested = evaluate_version(job, registered)
    life.now("while weighing what mattered")
    importance, why = parameter_importance(runs, job.sweep)
    front = []
    if job.sweep.pareto:
        life.now("while registering its Pareto front")
        front = settle_front(runs, job.sweep, registered)
    outcome = Outcome(runs, registered, tested, importance, why, confirmation, front, ensemble)
    life.now("while writing its trial table")
    finish_record(life, outcome)
    say_end(job, life.state, outcome)
    return {
        "state": asdict(life.state),
        "version": registered.version,
        "registered": registered,
        "confirmation": confirmation,
        "front": front,
        "interrupted": False,
    }


def seeds_as_one(
    life: SweepLife, confirmation: list[Confirmed] | None, data: PreparedDataset
) -> Ensemble | None:
    """The ensemble of the winning configuration's seeds, where the winner's rule makes one
    (pipelines/sweep/end/winner.py)."""
    seeds = seeds_to_join(life.job.sweep, confirmation)
    if not seeds:
        return None
    life.now("while making its seeds one model")
    return ensemble_of_seeds(life, seeds, data)


def evaluate_version(job: SweepJob, registered: Registered) -> Evaluated | None:
    """The new version on the data's test file, logged as an evaluation run nested under its
    trial, so that its registry page shows test accuracy beside validation accuracy."""
    test = datasets.source_files(job.run.data).get("test")
    if test is None:
        return None
    data = job.run.data
    return evaluate_model(registered.version_uri, test, data.format, data.tag_column, None)


def finish_record(life: SweepLife, outcome: Outcome) -> None:
    """Close the parent run with the trial table, what mattered and the winner's figures."""
    sweep, runs, confirmation = life.job.sweep, outcome.runs, outcome.confirmation
    parts = [trial_table(runs, sweep), importance_markdown(outcome.importance, outcome.why)]
    metrics = {sweep.primary.best_metric: outcome.registered.winner.score}
    metrics.update(outcome.importance.metrics() if outcome.importance else {})
    if outcome.ensemble is not None:
        parts.insert(1, f"## Ensemble\n\n{outcome.ensemble.line(sweep.primary)}")
    if confirmation:
        parts.insert(1, confirmation_markdown(confirmation))
        metrics.update({CONFIRMED_MEAN: confirmation[0].mean, CONFIRMED_SD: confirmation[0].sd})
    if outcome.front:
        parts.insert(1, f"## Pareto front\n\n{front_table(outcome.front, sweep)}")
    summary = "\n\n".join(parts) + "\n"
    if outcome.tested is not None:
        metrics[TEST_ACCURACY] = outcome.tested.report.token_accuracy
    registered = outcome.registered
    with tempfile.TemporaryDirectory() as folder:
        figures = importance_figures(runs, sweep, Path(folder)) if outcome.importance else []
        if outcome.front:
            figures.append(front_png(runs, outcome.front, sweep, Path(folder) / FRONT_PNG))
        life.finished(
            summary, registered.winner, registered.version, registered.reason, metrics, figures
        )


def say_end(job: SweepJob, state: SweepState, outcome: Outcome) -> None:
    uri = mlflow.get_tracking_uri()
    registered = outcome.registered
    # The searched trials only, best first: the baseline's own overrides would otherwise be
    # among the parameters that differ, which the compare view plots first.
    searched = [run for run in outcome.runs if run.role == TRIAL_ROLE]
    scored = best_first([run for run in searched if run.score is not None], job.sweep.primary)
    run_ids = [run.run_id for run in scored + [run for run in searched if run.score is None]]
    what = ""
    if outcome.ensemble is not None:
        run_ids.insert(0, outcome.ensemble.run.run_id)  # beside its members
        if outcome.registered_ensemble:
            what = f" (its {len(outcome.ensemble.members)} seeds as one model)"
    front = ""
    if outcome.front:
        front = (
            f"Pareto front, {len(outcome.front)} of {len(scored)} trials (each registered; "
            f"make evaluate MODEL=models:/{job.sweep.registered_model}/VERSION):\n"
            f"{front_table(outcome.front, job.sweep)}\n\n"
        )
    say(
        f"\n{trial_table(outcome.runs, job.sweep)}\n\n{front}"
        f"sweep '{job.sweep.name}' done: registered version {registered.version}{what} as "
        f"{registered.uri}; {registered.reason}\n"
        + "".join(f"  {line}\n" for line in findings(outcome, job.sweep))
        + f"  compare its runs: {compare_runs_url(uri, state.experiment_id, run_ids)}\n"
        + plot_line(uri, state, outcome, job.sweep)
        + f"  then: {next_commands(job.sweep)}"
    )


def next_commands(sweep: SweepSettings) -> str:
    """What to run next on the registered model, as `make` reaches it: BEST where the name
    is the default, the model's own `best` otherwise."""
    if sweep.registered_model == REGISTERED_MODEL:
        return "make evaluate BEST, or make serve to tag over HTTP"
    model = f"MODEL=models:/{sweep.registered_model}@{BEST_ALIAS}"
    return f"make evaluate {model}, or make serve {model} to tag over HTTP"


def plot_line(uri: str, state: SweepState, outcome: Outcome, sweep: SweepSettings) -> str:
    """Where the trials are drawn against the objective. MLflow's compare view plots the
    first metric the runs share, and no link can choose another (MLflow 3.17's
    ParallelCoordinatesPlotPanel takes `sharedMetricKeys.slice(0, 1)`): the parent run's
    own plot, logged with the importance, is drawn on the objective."""
    if outcome.importance is None:
        return ""
    url = artifact_url(uri, state.experiment_id, state.parent_run_id, PARALLEL_PNG)
    return f"  {sweep.primary.phrase} against what varied: {url}\n"


def findings(outcome: Outcome, sweep: SweepSettings) -> list[str]:
    """What the seeds confirmed, their ensemble, the winner's test accuracy and what
    mattered, a line each."""
    lines = []
    for rank, item in enumerate(outcome.confirmation or []):
        lines.append(f"{'confirmed' if rank == 0 else '         '} {item.line()}")
    ensemble = outcome.ensemble
    if ensemble is not None:
        lines.append(ensemble.line(sweep.primary))
        if not outcome.registered_ensemble:
            winner = outcome.registered.winner
            lines.append(
                f"ensemble: not registered, as its {sweep.primary.phrase} is no better than its "
                f"best member's ({sweep.primary.shown(score(winner))}); {winner.name}'s run is "
                "registered instead"
            )
    elif sweep.ensembles and outcome.confirmation is not None:
        lines.append(
            "ensemble: not made, as fewer than 2 seeds of the winning configuration finished "
            "with a model; its best run is registered instead"
        )
    tested = outcome.tested
    if tested is not None:
        lines.append(
            f"test accuracy of version {tested.version.version}: "
            f"{100 * tested.report.token_accuracy:.2f}% on {tested.data.name}"
        )
    importance = outcome.importance
    lines.append(f"what mattered (fANOVA): {importance.line() if importance else outcome.why}")
    return lines


# The trial table's columns of a run's shape: hidden size, layers, epochs.
TABLE_AXES = ("model.hidden_size", "model.num_layers", "train.epochs")


def name_of(run: TrialRun) -> str:
    """A run's name in the trial table; a trial taken from an earlier sweep says which, and
    which run trained it."""
    if run.reused_from is None:
        return run.name
    return f"{run.name} (reused: {run.tags.get(REUSED_SWEEP_TAG)} run {run.reused_from[:8]})"


def trial_table(runs: list[TrialRun], sweep: SweepSettings) -> str:
    """A Markdown table of the sweep's runs, best first on its objective (the first of two),
    the baseline marked; a Pareto search's second objective in a column of its own."""
    objective, others = sweep.primary, sweep.goals[1:]
    # Best first; runs without a score last, in the order they came.
    rows = sorted(runs, key=lambda run: (run.score is None, objective.sort_key(run.score or 0)))
    lines = [
        f"| run | hidden | layers | epochs | status | {objective.heading} "
        + "".join(f"| {other.heading} " for other in others)
        + "| grad norm first / last LSTM layer |",
        "| --- | ---: | ---: | ---: | --- | ---: " + "| ---: " * len(others) + "| --- |",
    ]
    for run in rows:
        m = run.metrics
        figures = [objective.shown(run.score) if run.score is not None else "-"]
        figures += [
            other.shown(m[other.best_metric]) if other.best_metric in m else "-" for other in others
        ]
        grads = (
            f"{m['grad_norm_first_lstm']:.2e} / {m['grad_norm_last_lstm']:.2e}"
            if "grad_norm_first_lstm" in m
            else "-"
        )
        shape = " | ".join(run.value(key) or "-" for key in TABLE_AXES)
        lines.append(
            f"| {name_of(run)} | {shape} | {run.status} | {' | '.join(figures)} | {grads} |"
        )
    return "\n".join(lines)


def say_again(state: SweepState, sweep: SweepSettings) -> None:
    """A finished sweep's answer, read back from its parent run's record (its trial table,
    version and test figure); nothing is written."""
    client = mlflow.MlflowClient()
    parent = client.get_run(state.parent_run_id)
    tags, metrics = parent.data.tags, parent.data.metrics
    name, version = tags[SWEEP_TAG], tags[REGISTERED_VERSION_TAG]
    summary = mlflow.artifacts.load_text(f"runs:/{state.parent_run_id}/{TRIALS_MD}")
    ended = time.strftime("%Y-%m-%d %H:%M", time.localtime(parent.info.end_time / 1000))
    champion = current_champion(sweep.registered_model)
    best = f"`{BEST_ALIAS}` is version {champion.version}" if champion else f"no `{BEST_ALIAS}`"
    lines = [
        f"sweep '{name}' is up to date: it finished on {ended} with this very file (parent "
        f"run {state.parent_run_id}), so nothing was trained or written",
        f"  registered version {version} as models:/{sweep.registered_model}@{alias_for(name)}"
        f"; {best}",
    ]
    if TEST_ACCURACY in metrics:
        lines.append(f"  test accuracy of version {version}: {100 * metrics[TEST_ACCURACY]:.2f}%")
    uri = mlflow.get_tracking_uri()
    lines += [
        f"  its runs: {run_url(uri, state.experiment_id, state.parent_run_id)}",
        f"  then: {next_commands(sweep)}; to train it anew: make sweep SWEEP_ARGS=--fresh",
    ]
    say(f"\n{summary.rstrip()}\n\n" + "\n".join(lines))
