"""The champion rule: `best` moves only to a better model on the same validation data, as
the versions' tags record it; a tie or another dev file never moves it."""

from __future__ import annotations

import pytest

from pipelines.sweep.champion import Champion, champion_decision

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
        # A tie as the tag records it (six decimals) is no gain, unrounded or not.
        (Champion("3", 0.750512, SAME), 0.75051234, SAME, False, False, "does not beat it"),
        (Champion("3", 0.750512, SAME), 0.7505134, SAME, False, True, "moved from version 3"),
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


def test_the_version_best_points_at_already_stays_there():
    moved, reason = champion_decision(Champion("4", 0.5, SAME), 0.9, SAME, False, version="4")
    assert not moved and reason == "`best` is this version already (90.00%)"
