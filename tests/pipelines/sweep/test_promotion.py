"""Promotion: the champion rule for `best` moves it only to a better model on the same
validation data, and every winner keeps its sweep's own alias."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from pipelines.sweep.promotion import Champion, alias_for, champion_decision, register_candidate
from postag.registry import BEST_ALIAS, REGISTERED_MODEL, log_tagger

SAME, OTHER = "dev-a", "dev-b"


@pytest.mark.parametrize(
    ("current", "accuracy", "digest", "force", "moves", "says"),
    [
        (None, 0.80, SAME, False, True, "`best` is new: validation accuracy 80.00%"),
        (
            Champion("3", 0.90, SAME),
            0.91,
            SAME,
            False,
            True,
            "`best` moved from version 3 (90.00%) to 91.00%",
        ),
        (
            Champion("3", 0.90, SAME),
            0.90,
            SAME,
            False,
            False,
            "`best` stays at version 3 (90.00%): this sweep's best (90.00%) does not beat it",
        ),
        (Champion("3", 0.90, SAME), 0.80, SAME, False, False, "does not beat it"),
        # Accuracies on other validation data do not compare, however high.
        (Champion("3", 0.90, SAME), 0.99, OTHER, False, False, "validated on other data"),
        (Champion("3", 0.90, None), 0.99, SAME, False, False, "validated on other data"),
        (Champion("3", 0.90, SAME), 0.50, OTHER, True, True, "as forced"),
    ],
)
def test_champion_decision(current, accuracy, digest, force, moves, says):
    moved, reason = champion_decision(current, accuracy, digest, force)
    assert moved is moves
    assert says in reason


@pytest.fixture(scope="module")
def checkpoint(swept_model) -> Path:
    (path,) = (swept_model / "artifacts").glob("*.pt")
    return path


def test_registering_keeps_best_unless_the_newcomer_beats_it_on_the_same_data(checkpoint, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()

    def register(sweep: str, accuracy: float, digest: str, force: bool = False):
        with mlflow.start_run():
            model_uri = log_tagger(checkpoint).model_uri
        return register_candidate(
            model_uri,
            sweep,
            {"sweep": sweep},
            val_accuracy=accuracy,
            validation_digest=digest,
            alias=alias_for(sweep),
            force=force,
        )

    def best() -> str:
        return client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS).version

    first = register("gpu search", 0.94, SAME)
    assert first.moved and best() == first.version
    weaker = register("cpu-study", 0.80, SAME)
    assert not weaker.moved and best() == first.version
    # The weaker winner is still a version of its own, under the sweep's alias.
    assert client.get_model_version_by_alias(REGISTERED_MODEL, "sweep-cpu-study").version == (
        weaker.version
    )
    assert alias_for("gpu search") == "sweep-gpu-search"
    elsewhere = register("other-dev", 0.99, OTHER)
    assert not elsewhere.moved and best() == first.version
    forced = register("other-dev", 0.99, OTHER, force=True)
    assert forced.moved and best() == forced.version
    assert client.get_model_version(REGISTERED_MODEL, forced.version).tags == {
        "sweep": "other-dev",
        "val_accuracy": "0.990000",
        "validation_digest": OTHER,
    }
