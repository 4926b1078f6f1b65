"""The champion rule: which registered version the `best` alias points at. A newcomer takes
it only by a gain on the same validation data, as the versions' tags record it; after every
promotion, `best` is compared and repaired, so two sweeps promoting at once cannot leave it
on the weaker version. pipelines/sweep/promotion.py registers; this module decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from pipelines import objective
from postag.registry import BEST_ALIAS, REGISTERED_MODEL, set_alias

# Version tags the champion rule reads: what a version scored (objective.VERSION_TAG), and on
# which validation data.
VALIDATION_DIGEST_TAG = "validation_digest"
# On a version that took `best` by --force-best: no other sweep's repair moves it back.
FORCED_TAG = "forced_best"


@dataclass(frozen=True)
class Champion:
    """The version `best` points at, as the champion rule sees it."""

    version: str
    val_accuracy: float | None
    validation_digest: str | None


def recorded(val_accuracy: float) -> str:
    """A validation accuracy as a version's tag holds it."""
    return f"{val_accuracy:.6f}"


def champion_decision(
    current: Champion | None,
    val_accuracy: float,
    validation_digest: str,
    force: bool,
    version: str | None = None,
) -> tuple[bool, str]:
    """(does `best` move to the newcomer, `version`, why): only a gain on the same
    validation data.

    Accuracies measured on different dev files or tag sets do not compare, so the newcomer
    then never takes `best` unless forced. The newcomer is compared as its tag will record
    it: a tie, unrounded on one side only, moved `best` when the same figures came again.
    """
    new = f"{100 * val_accuracy:.2f}%"
    if current is None:
        return True, f"`{BEST_ALIAS}` is new: validation accuracy {new}"
    if version is not None and str(current.version) == str(version):
        return False, f"`{BEST_ALIAS}` is this version already ({new})"
    old = f"version {current.version}"
    if current.val_accuracy is not None:
        old += f" ({100 * current.val_accuracy:.2f}%)"
    if force:
        return True, f"`{BEST_ALIAS}` moved from {old} to {new}, as forced"
    if current.validation_digest != validation_digest or current.val_accuracy is None:
        return False, (
            f"`{BEST_ALIAS}` stays at {old}: it was validated on other data (another dev "
            f"file or tag set, or none recorded), so {new} does not compare"
        )
    if objective.better(float(recorded(val_accuracy)), current.val_accuracy):
        return True, f"`{BEST_ALIAS}` moved from {old} to {new}"
    return False, f"`{BEST_ALIAS}` stays at {old}: this sweep's best ({new}) does not beat it"


def current_champion() -> Champion | None:
    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS)
    except MlflowException:
        return None
    accuracy = version.tags.get(objective.VERSION_TAG)
    return Champion(
        version=version.version,
        val_accuracy=float(accuracy) if accuracy is not None else None,
        validation_digest=version.tags.get(VALIDATION_DIGEST_TAG),
    )


def scored(version: ModelVersion) -> float:
    """What a version scored on the objective, as its tag records it."""
    return float(version.tags[objective.VERSION_TAG])


def repair_best(client: mlflow.MlflowClient, validation_digest: str) -> ModelVersion | None:
    """Compare and repair, after every promotion: two sweeps promoting at once may both read
    the old champion, and the last alias write wins even where it is the weaker. `best` is
    put on the version with the highest validation accuracy on the same data, unless it
    points at other data or was forced there. The version it was moved to, if any.

    Every promotion ends with this step after its own write, so the last one to run sees
    every version registered before it, and the outcome does not depend on write order.
    """
    try:
        current = client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS)
    except MlflowException:
        return None
    if current.tags.get(VALIDATION_DIGEST_TAG) != validation_digest or FORCED_TAG in current.tags:
        return None
    same_data = [
        version
        for version in client.search_model_versions(f"name = '{REGISTERED_MODEL}'")
        if version.tags.get(VALIDATION_DIGEST_TAG) == validation_digest
        and objective.VERSION_TAG in version.tags
    ]
    top = min(same_data, key=lambda v: (objective.sort_key(scored(v)), int(v.version)))
    if objective.VERSION_TAG in current.tags and not objective.better(scored(top), scored(current)):
        return None
    set_alias(client, BEST_ALIAS, top.version)
    return top
