"""What a sweep optimises: the validation metric its trials are ranked by, and which way is
better. The searcher and scheduler, the confirmation's means, the winner, the champion rule,
the console and fANOVA all ask this module; none names the metric itself.

The metric's per-epoch value is logged by postag.train (EPOCH_METRICS), which also keeps
each trial's best epoch on it (TrainingState.best_score): promoting on another
metric changes this module, and the trainer if it must choose epochs by that metric too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

# The per-epoch validation metric that Tune's searcher and scheduler follow.
METRIC = "val_accuracy"
MODE: Literal["max", "min"] = "max"
# A trial's best epoch on it, as the trial reports it and its run records it.
BEST_METRIC = f"best_{METRIC}"
# What a registered version records it scored, for the champion rule.
VERSION_TAG = METRIC
# How the console and the trial table name a trial's best.
LABEL = "best val"


def better(new: float, old: float) -> bool:
    """Whether `new` beats `old` on the objective (a tie does not)."""
    return new > old if MODE == "max" else new < old


def best(scores: Iterable[float]) -> float:
    """The best of `scores` on the objective."""
    return min(scores, key=sort_key)


def sort_key(score: float) -> float:
    """A key that sorts scores best first."""
    return -score if MODE == "max" else score


def shown(score: float) -> str:
    """A score as a person reads it: accuracies in percent."""
    return f"{100 * score:.2f}%"
