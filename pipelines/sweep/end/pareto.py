"""The end of a Pareto search (`sweep.objectives`): the trials that no other beats on both
objectives, as a table, a plot on the parent run, a tag on each member's run, and each
member registered, so that `make evaluate MODEL=models:/postag-tagger/N` reaches it.

The winner, the best on the first objective, is registered as every sweep's is, and `best`
follows it by the champion rule (pipelines/sweep/end/winner.py); the other members get a
version each and no alias.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna

from pipelines.names import PARETO_RANK_TAG
from pipelines.plots import pyplot, save_figure
from pipelines.runs import TrialRun, best_first, candidates
from pipelines.sweep.end.registration import Registered, member_tags, register_member, tag_version
from pipelines.sweep.setup.settings import SweepSettings
from pipelines.sweep.trial.trainable import trial_name

FRONT_PNG = "pareto_front.png"
BETTER = {"max": "higher is better", "min": "lower is better"}


@dataclass(frozen=True)
class Member:
    run: TrialRun
    figures: tuple[float, ...]  # on each of the sweep's objectives
    name: str  # the registered model's
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def figures_of(run: TrialRun, sweep: SweepSettings) -> tuple[float, ...] | None:
    """A run's figure on each objective; None if it lacks one (it failed before its end)."""
    keys = [goal.best_metric for goal in sweep.goals]
    if not all(key in run.metrics for key in keys):
        return None
    return tuple(run.metrics[key] for key in keys)


def pareto_front(runs: list[TrialRun], sweep: SweepSettings) -> list[TrialRun]:
    """The candidates that no other beats on both objectives, best on the first first.

    Optuna decides dominance (a study told every candidate's figures, its `best_trials`),
    as it does for the sampler that chose the points.
    """
    measured = [run for run in candidates(runs) if figures_of(run, sweep) is not None]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=[goal.direction for goal in sweep.goals])
    for index, run in enumerate(measured):
        study.add_trial(
            optuna.trial.create_trial(values=figures_of(run, sweep), user_attrs={"at": index})
        )
    members = [measured[trial.user_attrs["at"]] for trial in study.best_trials]
    return best_first(members, sweep.primary)


def settle_front(
    runs: list[TrialRun], sweep: SweepSettings, registered: Registered
) -> list[Member]:
    """Tag and register every member of the front (the winner has its version already)."""
    client = mlflow.MlflowClient()
    members = []
    for rank, run in enumerate(pareto_front(runs, sweep), start=1):
        client.set_tag(run.run_id, PARETO_RANK_TAG, str(rank))
        if run.run_id == registered.winner.run_id:
            version = registered.version
            tag_version(client, registered.name, version, member_tags(run, sweep, rank))
        else:
            version = register_member(run, sweep, rank)
        members.append(Member(run, figures_of(run, sweep) or (), registered.name, version))
    return members


def front_table(members: list[Member], sweep: SweepSettings) -> str:
    """The front as a Markdown table: each member's figures, values and version."""
    axes = list(sweep.space)
    headings = ["rank", "run", "version", *(goal.heading for goal in sweep.goals), *axes]
    aligns = ["---:", "---", "---:", *["---:"] * (len(sweep.goals) + len(axes))]
    lines = [f"| {' | '.join(headings)} |", f"| {' | '.join(aligns)} |"]
    for rank, member in enumerate(members, start=1):
        figures = [goal.shown(f) for goal, f in zip(sweep.goals, member.figures, strict=True)]
        values = [member.run.value(axis) or "-" for axis in axes]
        lines.append(
            f"| {rank} | {member.run.name} | {member.version} | "
            + " | ".join(figures + values)
            + " |"
        )
    return "\n".join(lines)


def front_png(runs: list[TrialRun], members: list[Member], sweep: SweepSettings, path: Path):
    """Every measured trial on the two objectives, the front joined and named."""
    first, second = sweep.goals
    measured = [
        (run, figures_of(run, sweep))
        for run in candidates(runs)
        if figures_of(run, sweep) is not None
    ]
    fig, ax = pyplot().subplots(figsize=(9, 6))
    ax.scatter(
        [f[1] for _, f in measured],
        [f[0] for _, f in measured],
        color="grey",
        label="trials",
    )
    front = sorted(members, key=lambda m: m.figures[1])
    ax.plot(
        [m.figures[1] for m in front],
        [m.figures[0] for m in front],
        color="red",
        marker="o",
        label="Pareto front",
    )
    for member in front:
        name = trial_name({axis: member.run.value(axis) for axis in sweep.space}, baseline=False)
        ax.annotate(
            f"v{member.version} {name}",
            (member.figures[1], member.figures[0]),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=8,
        )
    ax.set_xlabel(f"{second.phrase} ({BETTER[second.mode]})")
    ax.set_ylabel(f"{first.phrase} ({BETTER[first.mode]})")
    ax.set_title(f"Sweep '{sweep.name}': the trials no other beats on both objectives")
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
