"""The champion rule: which registered version the `best` alias points at. A newcomer takes
it only by a gain on the same objective (metric and mode) and the same validation data, as
the versions' tags record them; after every promotion, `best` is compared and repaired, so
two sweeps promoting at once cannot leave it on the weaker version.
pipelines/sweep/promotion.py registers; this module decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from postag.objective import DEFAULT, Objective
from postag.registry import BEST_ALIAS, REGISTERED_MODEL, set_alias

# Version tags the champion rule reads: the objective a version was chosen by, what it
# scored on it (under the metric's own name), and on which validation data.
OBJECTIVE_METRIC_TAG = "objective_metric"
OBJECTIVE_MODE_TAG = "objective_mode"
VALIDATION_DIGEST_TAG = "validation_digest"
# On a version that took `best` by --force-best: no other sweep's repair moves it back.
FORCED_TAG = "forced_best"


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
    if current.validation_digest != validation_digest or current.score is None:
        return False, (
            f"`{BEST_ALIAS}` stays at {old}: it was validated on other data (another dev "
            f"file or tag set, or none recorded), so {new} does not compare"
        )
    if objective.better(float(recorded(score)), current.score):
        return True, f"`{BEST_ALIAS}` moved from {old} to {new}"
    return False, f"`{BEST_ALIAS}` stays at {old}: this sweep's best ({new}) does not beat it"


def current_champion() -> Champion | None:
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS)
    except MlflowException:
        return None
    return Champion(
        version=version.version,
        objective=objective_of(version),
        score=scored(version),
        validation_digest=version.tags.get(VALIDATION_DIGEST_TAG),
    )


def repair_best(
    client: mlflow.MlflowClient, objective: Objective, validation_digest: str
) -> ModelVersion | None:
    """Compare and repair, after every promotion: two sweeps promoting at once may both read
    the old champion, and the last alias write wins even where it is the weaker. `best` is
    put on the best version on the same objective and data, unless it points at another
    objective or other data, or was forced there. The version it was moved to, if any.

    Every promotion ends with this step after its own write, so the last one to run sees
    every version registered before it, and the outcome does not depend on write order.
    """
    try:
        current = client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS)
    except MlflowException:
        return None
    if (
        current.tags.get(VALIDATION_DIGEST_TAG) != validation_digest
        or objective_of(current) != objective
        or FORCED_TAG in current.tags
    ):
        return None
    comparable = [
        version
        for version in client.search_model_versions(f"name = '{REGISTERED_MODEL}'")
        if version.tags.get(VALIDATION_DIGEST_TAG) == validation_digest
        and objective_of(version) == objective
        and scored(version) is not None
    ]
    top = min(comparable, key=lambda v: (objective.sort_key(scored(v)), int(v.version)))
    held = scored(current)
    if held is not None and not objective.better(scored(top), held):
        return None
    set_alias(client, BEST_ALIAS, top.version)
    return top
