"""A sweep's versions in the registry, written: each made once a model (found again after a
stop), with the record that says what it is (its description and tags), under its sweep's
own alias. What wins, with which score, and whether `best` moves is decided in
pipelines/sweep/end/winner.py; this module writes what that decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import mlflow
from mlflow.entities.model_registry import ModelVersion

from pipelines.names import (
    MEMBER_TAGGING_TIME,
    MEMBERS_COUNT_TAG,
    MEMBERS_TAG,
    OBJECTIVE_METRIC_TAG,
    OBJECTIVE_MODE_TAG,
    PARETO_RANK_TAG,
    RUN_ID_TAG,
    SEED_RUNS_TAG,
    SEEDS_MEAN_TAG,
    SEEDS_SD_TAG,
    SEEDS_TAG,
    SWEEP_TAG,
    VALIDATION_DIGEST_TAG,
)
from pipelines.runs import TrialRun, score
from pipelines.sweep.setup.settings import SweepSettings
from postag.training.objective import TAGGING_TIME, Objective

if TYPE_CHECKING:
    from pipelines.sweep.end.seed_ensemble import Ensemble
    from pipelines.sweep.stages.confirmation import Confirmed


@dataclass(frozen=True)
class Registered:
    winner: TrialRun
    # The registered model's name (sweep.registered_model).
    name: str
    version: str
    alias: str
    # One line: did `best` move, and why.
    reason: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"

    @property
    def version_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def recorded(score: float) -> str:
    """A score as a version's tag holds it."""
    return f"{score:.6f}"


def objective_tags(objective: Objective, score: float) -> dict[str, str]:
    """What a new version records of the objective it was chosen by."""
    return {
        objective.metric: recorded(score),
        OBJECTIVE_METRIC_TAG: objective.metric,
        OBJECTIVE_MODE_TAG: objective.mode,
    }


# Records: a version's description and tags, by what it holds ------------------------------


def run_tags(run: TrialRun, sweep: SweepSettings) -> dict[str, str]:
    return {SWEEP_TAG: sweep.name, RUN_ID_TAG: run.run_id}


def trial_record(run: TrialRun, sweep: SweepSettings, source: str) -> tuple[str, dict[str, str]]:
    """A search's best trial, registered by its model."""
    description = f"Best trial of sweep '{sweep.name}' ({source}), {run_summary(run, sweep)}."
    return description, run_tags(run, sweep)


def confirmed_record(
    best: Confirmed, sweep: SweepSettings, source: str
) -> tuple[str, dict[str, str]]:
    """The configuration with the best mean over its seed runs, registered by the model of
    its best seed run."""
    objective, seeds, winner = sweep.primary, best.runs, best.best_run
    description = (
        f"Best mean of sweep '{sweep.name}' ({source}) over {len(seeds)} seeds: "
        f"{objective.phrase} {objective.shown(best.mean)} ± {objective.spread(best.sd)} (runs "
        f"{', '.join(run.run_id for run in seeds)}). This version is the best of them, "
        f"{run_summary(winner, sweep)}."
    )
    tags = {
        **run_tags(winner, sweep),
        SEEDS_MEAN_TAG: f"{best.mean:.6f}",
        SEEDS_SD_TAG: f"{best.sd:.6f}",
        SEEDS_TAG: ",".join(run.seed for run in seeds),
        SEED_RUNS_TAG: ",".join(run.run_id for run in seeds),
    }
    return description, tags


def ensemble_record(
    ensemble: Ensemble, best: Confirmed, sweep: SweepSettings, source: str
) -> tuple[str, dict[str, str]]:
    """The best configuration's seeds (`best`'s runs) as one model."""
    objective = sweep.primary
    description = (
        f"The seeds of the best mean of sweep '{sweep.name}' ({source}) as one model, the mean "
        f"of their tag probabilities: {objective.phrase} {objective.shown(score(ensemble.run))}"
        f"; its {len(ensemble.members)} members {objective.shown(best.mean)} ± "
        f"{objective.spread(best.sd)} (runs {ensemble.member_ids.replace(',', ', ')}). Tagging "
        f"{ensemble.cost()}."
    )
    tags = {
        **run_tags(ensemble.run, sweep),
        MEMBERS_COUNT_TAG: str(len(ensemble.members)),
        SEEDS_TAG: ensemble.seeds,
        MEMBERS_TAG: ensemble.member_ids,
        SEEDS_MEAN_TAG: f"{best.mean:.6f}",
        SEEDS_SD_TAG: f"{best.sd:.6f}",
        **{key: f"{ensemble.run.metrics[key]:.6g}" for key in (TAGGING_TIME, MEMBER_TAGGING_TIME)},
    }
    return description, tags


def run_summary(run: TrialRun, sweep: SweepSettings) -> str:
    objective = sweep.primary
    return (
        f"run {run.run_id}: hidden_size {run.value('model.hidden_size')}, num_layers "
        f"{run.value('model.num_layers')}, epochs {run.value('train.epochs')}, seed "
        f"{run.seed}; best {objective.phrase} {objective.shown(score(run))} at epoch "
        f"{run.best_epoch}"
    )


# Versions ---------------------------------------------------------------------------------


def version_holding(
    client: mlflow.MlflowClient,
    name: str,
    model_uri: str,
    description: str,
    tags: dict[str, str],
) -> str:
    """The version of registered model `name` that holds `model_uri`, with `tags` and
    `description`: new, or the one it already has (a sweep stopped after registering it,
    then run again)."""
    existing = registered_version_of(client, name, model_uri)
    if existing is None:
        version = mlflow.register_model(model_uri, name, tags=tags).version
    else:
        version = existing.version
        tag_version(client, name, version, tags)
    client.update_model_version(name, version, description=description)
    return version


def register_member(run: TrialRun, sweep: SweepSettings, rank: int) -> str:
    """A member of a Pareto search's front as a version of its own, its figures on both
    objectives tagged; no alias, and never `best`, which the winner's registration decides."""
    assert run.model_uri is not None, run.run_id
    tags = {
        **run_tags(run, sweep),
        **objective_tags(sweep.primary, score(run)),
        VALIDATION_DIGEST_TAG: run.validation_digest,
        **member_tags(run, sweep, rank),
    }
    description = (
        f"Member {rank} of the Pareto front of sweep '{sweep.name}', {run_summary(run, sweep)}."
    )
    return version_holding(
        mlflow.MlflowClient(), sweep.registered_model, run.model_uri, description, tags
    )


def member_tags(run: TrialRun, sweep: SweepSettings, rank: int) -> dict[str, str]:
    """A front member's place, and its figure on the objectives after the first."""
    others = {goal.metric: f"{run.metrics[goal.best_metric]:.6g}" for goal in sweep.goals[1:]}
    return {PARETO_RANK_TAG: str(rank), **others}


def tag_version(client: mlflow.MlflowClient, name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def registered_version_of(
    client: mlflow.MlflowClient, name: str, model_uri: str
) -> ModelVersion | None:
    """The version of `name` that already holds the model at `model_uri`, if any:
    registration is made once a model, and found again after that."""
    found = f"name = '{name}' and source_path = '{model_uri}'"
    return next(iter(client.search_model_versions(found)), None)


def alias_for(name: str) -> str:
    """A registry alias for a sweep name (aliases take letters, digits, _ and - only)."""
    return "sweep-" + re.sub(r"[^\w-]", "-", name)
