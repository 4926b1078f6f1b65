"""Promotion of a sweep's winner, owned here from choice to alias.

Which run wins: the search's best trial, or with a confirmation stage (or a search over
seeds) the best seed of the configuration with the best mean, or with `sweep.register:
ensemble` that configuration's seeds as one model (pipelines/sweep/ensemble.py), scored by
its own validation figure. It is registered as a new
version under the sweep's own alias (or the version it already has), and `best` follows it
only by the champion rule (pipelines/sweep/champion.py): a gain on the same validation data.
The library (postag/registry.py) knows the model format and the registered model's name;
it knows nothing of sweeps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import mlflow
from mlflow.entities.model_registry import ModelVersion

from pipelines.runs import (
    MEMBER_TAGGING_TIME,
    MEMBERS_TAG,
    PARETO_RANK_TAG,
    SEED_RUNS_TAG,
    TrialRun,
    best_of,
    candidates,
    score,
)
from pipelines.sweep.champion import (
    FORCED_TAG,
    VALIDATION_DIGEST_TAG,
    champion_decision,
    current_champion,
    objective_tags,
    repair_best,
    scored,
)
from pipelines.sweep.job import SweepJob
from pipelines.sweep.settings import SweepSettings
from pipelines.sweep.state import SweepFailed, nothing_to_register
from postag.objective import TAGGING_TIME, Objective
from postag.registry import BEST_ALIAS, REGISTERED_MODEL, set_alias

if TYPE_CHECKING:
    from pipelines.sweep.confirmation import Confirmed
    from pipelines.sweep.ensemble import Ensemble


@dataclass(frozen=True)
class Promotion:
    """What registering a new version did to `best`, and why, in one line."""

    version: str
    moved: bool
    reason: str


def register_candidate(
    model_uri: str,
    description: str,
    tags: dict[str, str],
    *,
    objective: Objective,
    score: float,
    validation_digest: str,
    alias: str,
    force: bool = False,
) -> Promotion:
    """Register `model_uri` under `alias`: as a new version, or the version it already has
    (a sweep stopped after registering it, then run again); it also takes `best` only by the
    champion rule (`champion_decision`)."""
    client = mlflow.MlflowClient()
    champion = current_champion()
    tags = {
        **tags,
        **objective_tags(objective, score),
        VALIDATION_DIGEST_TAG: validation_digest,
        **({FORCED_TAG: "true"} if force else {}),
    }
    version = version_holding(client, model_uri, description, tags)
    set_alias(client, alias, version)
    moved, reason = champion_decision(champion, objective, score, validation_digest, force, version)
    if moved:
        set_alias(client, BEST_ALIAS, version)
    repaired = repair_best(client, objective, validation_digest)
    if repaired is not None and repaired.version != version:
        moved = False
        reason += (
            f"; then `{BEST_ALIAS}` went to version {repaired.version} "
            f"({objective.shown(scored(repaired))}), registered at the same time"
        )
    return Promotion(version=version, moved=moved, reason=reason)


def version_holding(
    client: mlflow.MlflowClient, model_uri: str, description: str, tags: dict[str, str]
) -> str:
    """The version of `model_uri`, with `tags` and `description`: new, or the one it already
    has (a sweep stopped after registering it, then run again)."""
    existing = registered_version_of(client, model_uri)
    if existing is None:
        version = mlflow.register_model(model_uri, REGISTERED_MODEL, tags=tags).version
    else:
        version = existing.version
        tag_version(client, version, tags)
    client.update_model_version(REGISTERED_MODEL, version, description=description)
    return version


def register_member(run: TrialRun, sweep: SweepSettings, rank: int) -> str:
    """A member of a Pareto search's front as a version of its own, its figures on both
    objectives tagged; no alias, and never `best`, which the winner's registration decides."""
    assert run.model_uri is not None, run.run_id
    tags = {
        "sweep": sweep.name,
        "run_id": run.run_id,
        **objective_tags(sweep.primary, score(run)),
        VALIDATION_DIGEST_TAG: run.validation_digest,
        **member_tags(run, sweep, rank),
    }
    description = (
        f"Member {rank} of the Pareto front of sweep '{sweep.name}', {run_summary(run, sweep)}."
    )
    return version_holding(mlflow.MlflowClient(), run.model_uri, description, tags)


def member_tags(run: TrialRun, sweep: SweepSettings, rank: int) -> dict[str, str]:
    """A front member's place, and its figure on the objectives after the first."""
    others = {goal.metric: f"{run.metrics[goal.best_metric]:.6g}" for goal in sweep.goals[1:]}
    return {PARETO_RANK_TAG: str(rank), **others}


def tag_version(client: mlflow.MlflowClient, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(REGISTERED_MODEL, version, key, value)


def registered_version_of(client: mlflow.MlflowClient, model_uri: str) -> ModelVersion | None:
    """The version that already holds the model at `model_uri`, if any: registration is
    made once a model, and found again after that."""
    found = f"name = '{REGISTERED_MODEL}' and source_path = '{model_uri}'"
    return next(iter(client.search_model_versions(found)), None)


def alias_for(name: str) -> str:
    """A registry alias for a sweep name (aliases take letters, digits, _ and - only)."""
    return "sweep-" + re.sub(r"[^\w-]", "-", name)


@dataclass(frozen=True)
class Registered:
    winner: TrialRun
    version: str
    alias: str
    # One line: did `best` move, and why.
    reason: str

    @property
    def uri(self) -> str:
        return f"models:/{REGISTERED_MODEL}@{self.alias}"

    @property
    def version_uri(self) -> str:
        return f"models:/{REGISTERED_MODEL}/{self.version}"


def register_winner(
    runs: list[TrialRun], sweep: SweepSettings, source: str, force: bool
) -> Registered:
    """Register the candidate with the best score on the objective as a new version.

    It always gets the sweep's own alias; `best` follows the champion rule
    (champion_decision) unless `force`.
    """
    found = candidates(runs)
    if not found:
        raise SweepFailed(nothing_to_register(runs, sweep))
    winner = best_of(found, sweep.primary)
    description = f"Best trial of sweep '{sweep.name}' ({source}), {run_summary(winner, sweep)}."
    return register_run(winner, description, {}, score(winner), sweep, force)


def register_confirmed(
    winner: TrialRun,
    seeds: list[TrialRun],
    mean: float,
    sd: float,
    sweep: SweepSettings,
    source: str,
    force: bool,
) -> Registered:
    """Register the configuration with the best mean over its seed runs (`seeds`, whose
    scores on the objective have this `mean` and `sd`): the model of `winner`, its best
    seed run. The mean is what the champion rule compares."""
    objective = sweep.primary
    description = (
        f"Best mean of sweep '{sweep.name}' ({source}) over {len(seeds)} seeds: "
        f"{objective.phrase} {objective.shown(mean)} ± {objective.spread(sd)} (runs "
        f"{', '.join(run.run_id for run in seeds)}). This version is the best of them, "
        f"{run_summary(winner, sweep)}."
    )
    tags = {
        "val_mean": f"{mean:.6f}",
        "val_sd": f"{sd:.6f}",
        "seeds": ",".join(run.seed for run in seeds),
        SEED_RUNS_TAG: ",".join(run.run_id for run in seeds),
    }
    return register_run(winner, description, tags, mean, sweep, force)


def register_ensemble(
    ensemble: Ensemble, best: Confirmed, sweep: SweepSettings, source: str, force: bool
) -> Registered:
    """Register the ensemble of the best configuration's seeds (`best`'s runs), scored by
    its own figure on the validation data: what the champion rule compares."""
    objective = sweep.primary
    description = (
        f"The seeds of the best mean of sweep '{sweep.name}' ({source}) as one model, the mean "
        f"of their tag probabilities: {objective.phrase} {objective.shown(score(ensemble.run))}"
        f"; its {len(ensemble.members)} members {objective.shown(best.mean)} ± "
        f"{objective.spread(best.sd)} (runs {ensemble.member_ids.replace(',', ', ')}). Tagging "
        f"{ensemble.cost()}."
    )
    tags = {
        "members": str(len(ensemble.members)),
        "seeds": ensemble.seeds,
        MEMBERS_TAG: ensemble.member_ids,
        "val_mean": f"{best.mean:.6f}",
        "val_sd": f"{best.sd:.6f}",
        **{key: f"{ensemble.run.metrics[key]:.6g}" for key in (TAGGING_TIME, MEMBER_TAGGING_TIME)},
    }
    return register_run(ensemble.run, description, tags, score(ensemble.run), sweep, force)


def run_summary(run: TrialRun, sweep: SweepSettings) -> str:
    objective = sweep.primary
    return (
        f"run {run.run_id}: hidden_size {run.value('model.hidden_size')}, num_layers "
        f"{run.value('model.num_layers')}, epochs {run.value('train.epochs')}, seed "
        f"{run.seed}; best {objective.phrase} {objective.shown(score(run))} at epoch "
        f"{run.best_epoch}"
    )


def register_run(
    run: TrialRun,
    description: str,
    tags: dict[str, str],
    score: float,
    sweep: SweepSettings,
    force: bool,
) -> Registered:
    """Register `run`'s model under the sweep's alias; `best` follows the champion rule
    (champion_decision) on its `score` on the sweep's objective unless `force`."""
    alias = alias_for(sweep.name)
    promotion = register_candidate(
        run.model_uri,
        description,
        tags={"sweep": sweep.name, "run_id": run.run_id, **tags},
        objective=sweep.primary,
        score=score,
        validation_digest=run.validation_digest,
        alias=alias,
        force=force,
    )
    return Registered(run, promotion.version, alias, promotion.reason)


def register(
    job: SweepJob,
    runs: list[TrialRun],
    confirmation: list[Confirmed] | None,
    force_best: bool,
    ensemble: Ensemble | None = None,
) -> Registered:
    """The search's best run, or with a confirmation stage (or a search over seeds) the best
    of the configuration with the best mean over seeds, or the `ensemble` of its seeds where
    it beats that run on the validation data."""
    source = f"{job.config_path}"
    if confirmation is None:
        return register_winner(runs, job.sweep, source, force_best)
    if not confirmation:
        raise SweepFailed(nothing_to_register(runs, job.sweep))
    best = confirmation[0]
    if ensemble is not None and ensemble.beats(best.best_run, job.sweep.primary):
        return register_ensemble(ensemble, best, job.sweep, source, force_best)
    return register_confirmed(
        best.best_run, best.runs, best.mean, best.sd, job.sweep, source, force_best
    )
