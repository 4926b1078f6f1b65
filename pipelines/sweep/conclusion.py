"""The end of a sweep: the winner registered, tested from the registry, what mattered, the
parent run closed with the trial table, and the console's last word."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path

import mlflow

from pipelines import objective
from pipelines.console import say
from pipelines.evaluation import Evaluated, evaluate_model
from pipelines.runs import TRIAL_ROLE, TrialRun
from pipelines.sweep.confirmation import Confirmed, confirmation_markdown
from pipelines.sweep.importance import (
    Importance,
    importance_figures,
    importance_markdown,
    parameter_importance,
)
from pipelines.sweep.job import SweepJob
from pipelines.sweep.promotion import Registered, register
from pipelines.sweep.state import SweepFailed, SweepLife, SweepState
from pipelines.tracking import compare_runs_url
from postag import dataset as datasets


def conclude(life: SweepLife, confirmation: list[Confirmed] | None, force_best: bool) -> dict:
    """Register the winner, test it, say what mattered, and close the parent run."""
    job = life.job
    runs = life.trial_runs()
    life.now("while registering its winner")
    try:
        registered = register(job, runs, confirmation, force_best)
    except SweepFailed:
        life.gave_up()
        raise
    for item in confirmation or []:
        life.log_confirmation(item.candidate.run.run_id, item.mean, item.sd, item.runs)
    life.now(f"while testing version {registered.version}")
    tested = evaluate_version(job, registered)
    life.now("while weighing what mattered")
    importance, why = parameter_importance(runs, job.sweep)
    life.now("while writing its trial table")
    finish_record(life, runs, registered, tested, importance, why, confirmation)
    say_end(job, life.state, runs, registered, findings(tested, importance, why, confirmation))
    return {
        "state": asdict(life.state),
        "version": registered.version,
        "registered": registered,
        "confirmation": confirmation,
        "interrupted": False,
    }


def evaluate_version(job: SweepJob, registered: Registered) -> Evaluated | None:
    """The new version on the data's test file, logged as an evaluation run nested under its
    trial, so that its registry page shows test accuracy beside validation accuracy."""
    test = datasets.source_files(job.run.data).get("test")
    if test is None:
        return None
    data = job.run.data
    return evaluate_model(registered.version_uri, test, data.format, data.tag_column, None)


def finish_record(
    life: SweepLife,
    runs: list[TrialRun],
    registered: Registered,
    tested: Evaluated | None,
    importance: Importance | None,
    why: str,
    confirmation: list[Confirmed] | None,
) -> None:
    """Close the parent run with the trial table, what mattered and the winner's figures."""
    parts = [trial_table(runs), importance_markdown(importance, why)]
    metrics = importance.metrics() if importance else {}
    if confirmation:
        parts.insert(1, confirmation_markdown(confirmation))
        metrics.update(confirmed_val_mean=confirmation[0].mean, confirmed_val_sd=confirmation[0].sd)
    summary = "\n\n".join(parts) + "\n"
    if tested is not None:
        metrics["test_token_accuracy"] = tested.report.token_accuracy
    with tempfile.TemporaryDirectory() as folder:
        figures = importance_figures(runs, life.job.sweep, Path(folder)) if importance else []
        life.finished(
            summary, registered.winner, registered.version, registered.reason, metrics, figures
        )


def say_end(
    job: SweepJob,
    state: SweepState,
    runs: list[TrialRun],
    registered: Registered,
    findings: list[str],
) -> None:
    uri = mlflow.get_tracking_uri()
    # The searched trials only: the baseline's own overrides would otherwise be among the
    # parameters that differ, which the compare view plots first.
    run_ids = [run.run_id for run in runs if run.role == TRIAL_ROLE]
    say(
        f"\n{trial_table(runs)}\n\n"
        f"sweep '{job.sweep.name}' done: registered version {registered.version} as "
        f"{registered.uri}; {registered.reason}\n"
        + "".join(f"  {line}\n" for line in findings)
        + f"  compare its runs: {compare_runs_url(uri, state.experiment_id, run_ids)}\n"
        f"  then: make evaluate BEST, or make serve to tag over HTTP"
    )


def findings(
    tested: Evaluated | None,
    importance: Importance | None,
    why: str,
    confirmation: list[Confirmed] | None,
) -> list[str]:
    """What the seeds confirmed, the winner's test accuracy and what mattered, a line each."""
    lines = []
    for rank, item in enumerate(confirmation or []):
        lines.append(f"{'confirmed' if rank == 0 else '         '} {item.line()}")
    if tested is not None:
        lines.append(
            f"test accuracy of version {tested.version.version}: "
            f"{100 * tested.report.token_accuracy:.2f}% on {tested.data.name}"
        )
    lines.append(f"what mattered (fANOVA): {importance.line() if importance else why}")
    return lines


def trial_table(runs: list[TrialRun]) -> str:
    """A Markdown table of the sweep's runs, best first, the baseline marked."""

    # Best first; runs without a score last, in the order they came.
    rows = sorted(runs, key=lambda run: (run.score is None, objective.sort_key(run.score or 0)))
    lines = [
        "| run | hidden | layers | epochs | status | best val acc "
        "| grad norm first / last LSTM layer |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for run in rows:
        m = run.metrics
        accuracy = objective.shown(run.score) if run.score is not None else "-"
        grads = (
            f"{m['grad_norm_first_lstm']:.2e} / {m['grad_norm_last_lstm']:.2e}"
            if "grad_norm_first_lstm" in m
            else "-"
        )
        lines.append(
            f"| {run.name} | {run.value('model.hidden_size')} | {run.value('model.num_layers')} "
            f"| {run.value('train.epochs')} | {run.status} | {accuracy} | {grads} |"
        )
    return "\n".join(lines)
