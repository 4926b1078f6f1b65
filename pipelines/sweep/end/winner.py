"""Who wins a sweep, with which score, and whether `best` moves to it: the one place that
decides.

- Which candidate: the search's best trial; with a confirmation stage (or a search over
  seeds) the configuration with the best mean, by its best seed's model; with
  `sweep.register: ensemble` that configuration's seeds as one model, where it beats its
  best seed on the validation data (`seeds_to_join`, `ensemble_wins`).
- Which score competes: a trial's best epoch's; a confirmed configuration's mean over its
  seeds; an ensemble's own figure on the validation data.
- The champion rule: `best` moves to a new version only by a gain (`gains`) on the same
  objective and validation data (`comparable`), as the versions' tags record them; after
  every promotion `best` is compared and repaired, so two sweeps promoting at once cannot
  leave it on the weaker version.

pipelines/sweep/end/registration.py writes the versions and their records; it decides
nothing. The library (postag/serving/registry.py) knows the model format and the registered
model's name; it knows nothing of sweeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from pipelines.names import (
    FORCED_TAG,
    OBJECTIVE_METRIC_TAG,
    OBJECTIVE_MODE_TAG,
    VALIDATION_DIGEST_TAG,
)
from pipelines.runs import TrialRun, best_of, candidates, score
from pipelines.sweep.end.registration import (
    Registered,
    alias_for,
    confirmed_record,
    ensemble_record,
    objective_tags,
    recorded,
    trial_record,
    version_holding,
)
from pipelines.sweep.lifecycle.state import SweepFailed, nothing_to_register
from pipelines.sweep.setup.job import SweepJob
from pipelines.sweep.setup.settings import SweepSettings
from postag.serving.registry import BEST_ALIAS, set_alias
from postag.training.objective import DEFAULT, Objective

if TYPE_CHECKING:
    from pipelines.sweep.end.seed_ensemble import Ensemble
    from pipelines.sweep.stages.confirmation import Confirmed


# Which candidate, and which score --------------------------------------------------------


def seeds_to_join(sweep: SweepSettings, confirmation: list[Confirmed] | None) -> list[TrialRun]:
    """The winning configuration's seed runs to make one model of: where the sweep asks for
    an ensemble and two of them at least finished with a model (else none, and its best run
    is registered, as the conclusion says)."""
    if not sweep.ensembles or not confirmation or len(confirmation[0].runs) < 2:
        return []
    return confirmation[0].runs


def ensemble_wins(ensemble: Ensemble, best_seed: TrialRun, objective: Objective) -> bool:
    """Whether the ensemble scores better than its best seed on the validation data: one
    that does not costs its members' tagging time for nothing."""
    return objective.better(score(ensemble.run), score(best_seed))


def register(
    job: SweepJob,
    runs: list[TrialRun],
    confirmation: list[Confirmed] | None,
    force_best: bool,
    ensemble: Ensemble | None = None,
) -> Registered:
    """The search's best run, scored by its best epoch; or with a confirmation stage (or a
    search over seeds) the best seed of the configuration with the best mean, scored by that
    mean; or the `ensemble` of its seeds where it wins, scored by its own figure."""
    sweep, source = job.sweep, f"{job.config_path}"
    if confirmation is None:
        found = candidates(runs)
        if not found:
            raise SweepFailed(nothing_to_register(runs, sweep))
        winner = best_of(found, sweep.primary)
        return register_run(
            winner, *trial_record(winner, sweep, source), score(winner), sweep, force_best
        )
    if not confirmation:
        raise SweepFailed(nothing_to_register(runs, sweep))
    best = confirmation[0]
    if ensemble is not None and ensemble_wins(ensemble, best.best_run, sweep.primary):
        record = ensemble_record(ensemble, best, sweep, source)
        return register_run(ensemble.run, *record, score(ensemble.run), sweep, force_best)
    record = confirmed_record(best, sweep, source)
    return register_run(best.best_run, *record, best.mean, sweep, force_best)


def register_run(
    run: TrialRun,
    description: str,
    tags: dict[str, str],
    score: float,
    sweep: SweepSettings,
    force: bool,
) -> Registered:
    """Register `run`'s model under the sweep's alias; `best` follows the champion rule on
    its `score` on the sweep's objective unless `force`."""
    alias = alias_for(sweep.name)
    assert run.model_uri is not None, run.run_id
    promotion = register_candidate(
        run.model_uri,
        description,
        tags,
        name=sweep.registered_model,
        objective=sweep.primary,
        score=score,
        validation_digest=run.validation_digest,
        alias=alias,
        force=force,
    )
    return Registered(run, sweep.registered_model, promotion.version, alias, promotion.reason)


# Promotion -------------------------------------------------------------------------------


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
    name: str,
    objective: Objective,
    score: float,
    validation_digest: str,
    alias: str,
    force: bool = False,
) -> Promotion:
    """Register `model_uri` as a version of registered model `name` under `alias`: as a new
    version, or the version it already has (a sweep stopped after registering it, then run
    again); it also takes `best` only by the champion rule (`champion_decision`)."""
    client = mlflow.MlflowClient()
    champion = current_champion(name)
    tags = {
        **tags,
        **objective_tags(objective, score),
        VALIDATION_DIGEST_TAG: validation_digest,
        **({FORCED_TAG: "true"} if force else {}),
    }
    version = version_holding(client, name, model_uri, description, tags)
    set_alias(client, name, alias, version)
    moved, reason = champion_decision(champion, objective, score, validation_digest, force, version)
    if moved:
        set_alias(client, name, BEST_ALIAS, version)
    repaired = repair_best(client, name, objective, validation_digest)
    if repaired is not None and repaired.version != version:
        moved = False
        reason += (
            f"; then `{BEST_ALIAS}` went to version {repaired.version} "
            f"({objective.shown(scored(repaired))}), registered at the same time"
        )
    return Promotion(version=version, moved=moved, reason=reason)


# The champion rule -----------------------------------------------------------------------


def gains(objective: Objective, score: float, held: float) -> bool:
    """The rule's one comparison: a newcomer's `score` beats the `held` one, compared as
    the newcomer's tag will record it (a tie, unrounded on one side only, moved `best` when
    the same figures came again)."""
    return objective.better(float(recorded(score)), held)


def comparable(
    objective: Objective, digest: str | None, other: Objective | None, other_digest: str | None
) -> bool:
    """Scores compare only on the same objective (metric and mode) and validation data."""
    return objective == other and digest is not None and digest == other_digest


@dataclass(frozen=True)
class Champion:
    """The version `best` points at, as the champion rule sees it."""

    version: str
    objective: Objective | None
    score: float | None
    validation_digest: str | None

    def named(self) -> str:
        if self.objective is None or self.score is None:
            return f"version {self.version}"
        return f"version {self.version} ({self.objective.shown(self.score)})"


def objective_of(version: ModelVersion) -> Objective | None:
    """The objective a version was chosen by; versions registered before the objective was
    recorded were all chosen by the default (validation accuracy, max)."""
    tags = version.tags
    if OBJECTIVE_METRIC_TAG in tags:
        return Objective(tags[OBJECTIVE_METRIC_TAG], tags.get(OBJECTIVE_MODE_TAG, DEFAULT.mode))
    return DEFAULT if DEFAULT.metric in tags else None


def scored(version: ModelVersion) -> float | None:
    """What a version scored on the objective it was chosen by, as its tag records it."""
    objective = objective_of(version)
    text = version.tags.get(objective.metric) if objective is not None else None
    return float(text) if text is not None else None


def champion_decision(
    current: Champion | None,
    objective: Objective,
    score: float,
    validation_digest: str,
    force: bool,
    version: str | None = None,
) -> tuple[bool, str]:
    """(does `best` move to the newcomer, `version`, why): only a gain on the same
    objective and validation data.

    Scores on other objectives, or measured on different dev files or tag sets, do not
    compare, so the newcomer then never takes `best` unless forced. The newcomer is compared
    as its tag will record it: a tie, unrounded on one side only, moved `best` when the same
    figures came again.
    """
    new = objective.shown(score)
    if current is None:
        return True, f"`{BEST_ALIAS}` is new: {objective.phrase} {new}"
    if version is not None and str(current.version) == str(version):
        return False, f"`{BEST_ALIAS}` is this version already ({new})"
    old = current.named()
    if force:
        return True, f"`{BEST_ALIAS}` moved from {old} to {new}, as forced"
    if current.objective != objective:
        chosen_by = str(current.objective) if current.objective else "nothing recorded"
        return False, (
            f"`{BEST_ALIAS}` stays at {old}: it was chosen by {chosen_by}, this sweep's best "
            f"by {objective}, which do not compare; --force-best moves it"
        )
    if current.score is None or not comparable(
        objective, validation_digest, current.objective, current.validation_digest
    ):
        return False, (
            f"`{BEST_ALIAS}` stays at {old}: it was validated on other data (another dev "
            f"file or tag set, or none recorded), so {new} does not compare"
        )
    if gains(objective, score, current.score):
        return True, f"`{BEST_ALIAS}` moved from {old} to {new}"
    return False, f"`{BEST_ALIAS}` stays at {old}: this sweep's best ({new}) does not beat it"


def current_champion(name: str) -> Champion | None:
    """Where registered model `name`'s `best` points, if anywhere."""
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, BEST_ALIAS)
    except MlflowException:
        return None
    return Champion(
        version=version.version,
        objective=objective_of(version),
        score=scored(version),
        validation_digest=version.tags.get(VALIDATION_DIGEST_TAG),
    )


def repair_best(
    client: mlflow.MlflowClient, name: str, objective: Objective, validation_digest: str
) -> ModelVersion | None:
    """Compare and repair, after every promotion: two sweeps promoting at once may both read
    the old champion, and the last alias write wins even where it is the weaker. `best` is
    put on the best version on the same objective and data, unless it points at another
    objective or other data, or was forced there. The version it was moved to, if any.

    Every promotion ends with this step after its own write, so the last one to run sees
    every version registered before it, and the outcome does not depend on write order.
    """
    try:
        current = client.get_model_version_by_alias(name, BEST_ALIAS)
    except MlflowException:
        return None
    if not on_same_terms(current, objective, validation_digest) or FORCED_TAG in current.tags:
        return None
    rivals = [
        version
        for version in client.search_model_versions(f"name = '{name}'")
        if on_same_terms(version, objective, validation_digest) and scored(version) is not None
    ]
    top = min(rivals, key=lambda v: (objective.sort_key(scored(v)), int(v.version)))
    held = scored(current)
    if held is not None and not gains(objective, scored(top), held):
        return None
    set_alias(client, name, BEST_ALIAS, top.version)
    return top


def on_same_terms(version: ModelVersion, objective: Objective, validation_digest: str) -> bool:
    """Whether a registered version's score compares with one on `objective` and the
    validation data `validation_digest`, as its tags record them."""
    return comparable(
        objective, validation_digest, objective_of(version), version.tags.get(VALIDATION_DIGEST_TAG)
    )
