"""The champion rule: `best` moves only to a better model on the same validation data, as
the versions' tags record it; a tie, another dev file or another objective never moves it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipelines.sweep.end.winner import Champion, champion_decision, objective_of
from postag.training.objective import DEFAULT, Objective

SAME, OTHER = "dev-a", "dev-b"


@pytest.mark.parametrize(
    ("current", "accuracy", "digest", "force", "moves", "says"),
    [
        (None, 0.80, SAME, False, True, "`best` is new: validation accuracy 80.00%"),
        (
            Champion("3", DEFAULT, 0.90, SAME),
            0.91,
            SAME,
            False,
            True,
            "`best` moved from version 3 (90.00%) to 91.00%",
        ),
        (
            Champion("3", DEFAULT, 0.90, SAME),
            0.90,
            SAME,
            False,
            False,
            "`best` stays at version 3 (90.00%): this sweep's best (90.00%) does not beat it",
        ),
        (Champion("3", DEFAULT, 0.90, SAME), 0.80, SAME, False, False, "does not beat it"),
        # A tie as the tag records it (six decimals) is no gain, unrounded or not.
        (
            Champion("3", DEFAULT, 0.750512, SAME),
            0.75051234,
            SAME,
            False,
            False,
            "does not beat it",
        ),
        (
            Champion("3", DEFAULT, 0.750512, SAME),
            0.7505134,
            SAME,
            False,
            True,
            "moved from version 3",
        ),
        # Accuracies on other validation data do not compare, however high.
        (Champion("3", DEFAULT, 0.90, SAME), 0.99, OTHER, False, False, "validated on other data"),
        (Champion("3", DEFAULT, 0.90, None), 0.99, SAME, False, False, "validated on other data"),
        (Champion("3", DEFAULT, 0.90, SAME), 0.50, OTHER, True, True, "as forced"),
    ],
)
def test_champion_decision(current, accuracy, digest, force, moves, says):
    moved, reason = champion_decision(current, DEFAULT, accuracy, digest, force)
    assert moved is moves
    assert says in reason


def test_the_version_best_points_at_already_stays_there():
    current = Champion("4", DEFAULT, 0.5, SAME)
    moved, reason = champion_decision(current, DEFAULT, 0.9, SAME, False, version="4")
    assert not moved and reason == "`best` is this version already (90.00%)"


F1 = Objective("val_macro_f1", "max")
LOSS = Objective("val_loss", "min")


def test_scores_on_another_objective_never_compare_unless_forced():
    current = Champion("3", DEFAULT, 0.90, SAME)
    moved, reason = champion_decision(current, F1, 0.95, SAME, False)
    assert not moved
    assert reason == (
        "`best` stays at version 3 (90.00%): it was chosen by val_accuracy (max), this "
        "sweep's best by val_macro_f1 (max), which do not compare; --force-best moves it"
    )
    assert champion_decision(current, F1, 0.10, SAME, True)[0]
    # The same metric the other way round is another objective too.
    assert not champion_decision(current, Objective("val_accuracy", "min"), 0.1, SAME, False)[0]


def test_a_lower_loss_is_the_gain_on_a_loss_objective():
    current = Champion("3", LOSS, 0.40, SAME)
    assert champion_decision(current, LOSS, 0.35, SAME, False) == (
        True,
        "`best` moved from version 3 (0.4) to 0.35",
    )
    assert not champion_decision(current, LOSS, 0.45, SAME, False)[0]


def test_a_version_tells_the_objective_it_was_chosen_by():
    def version(tags):
        return SimpleNamespace(tags=tags)

    assert objective_of(version({"objective_metric": "val_loss", "objective_mode": "min"})) == LOSS
    # Versions registered before the objective was recorded were all chosen by accuracy.
    assert objective_of(version({"val_accuracy": "0.9"})) == DEFAULT
    assert objective_of(version({})) is None
