"""What a run is judged by: one metric and which way is better. The one owner of the
objective's names: the trainer picks each run's best epoch by it, and a sweep's searcher,
scheduler, confirmation, winner, champion rule, console and fANOVA all ask an `Objective`
for what to read and how to rank it; none names a metric itself.

A sweep states it in its experiment file (`sweep.objective: {metric, mode}`, or two under
`sweep.objectives` for a Pareto search); a single run in `train.objective`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, TypeVar

T = TypeVar("T")
Mode = Literal["max", "min"]

# The per-epoch validation figures postag.training.trainer computes and logs (EpochResult's
# fields of these names; tests/postag/training/test_objective.py checks they agree). A new
# one is computed there and named here.
VALIDATION_METRICS = ("val_accuracy", "val_macro_f1", "val_loss")
# What a trial's final model costs, measured in the trial's own process (postag.evaluation.cost):
# objectives a Pareto search may trade a validation metric against.
TAGGING_TIME = "tagging_ms_per_sentence"
NUM_PARAMETERS = "num_parameters"
COST_METRICS = (TAGGING_TIME, NUM_PARAMETERS)
# Shown in percent on the console; the others as they are.
FRACTIONS = ("val_accuracy", "val_macro_f1")
# How a person reads each name: beside a figure, as a table's column, and in a sentence.
READABLE = {
    "val_accuracy": ("val", "val acc", "validation accuracy"),
    "val_macro_f1": ("val macro F1", "val macro F1", "validation macro F1"),
    "val_loss": ("val loss", "val loss", "validation loss"),
    "tagging_ms_per_sentence": ("ms per sentence", "ms / sentence", "ms tagging a sentence"),
    "num_parameters": ("parameters", "parameters", "parameter count"),
}
# A run's best epoch on the objective is logged as this prefix and the metric's name.
BEST_PREFIX = "best_"


class ObjectiveError(ValueError):
    """An objective naming a metric nothing measures, or a mode other than max or min;
    `key` is the field at fault."""

    def __init__(self, key: str, problem: str):
        super().__init__(problem)
        self.key = key


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: Mode

    def __post_init__(self) -> None:
        if self.metric not in (*VALIDATION_METRICS, *COST_METRICS):
            raise ObjectiveError(
                "metric",
                f"unknown metric {self.metric!r}; the validation metrics a run logs each epoch "
                f"are {', '.join(VALIDATION_METRICS)}, and the costs a Pareto search may trade "
                f"them against are {', '.join(COST_METRICS)}",
            )
        if self.mode not in ("max", "min"):
            raise ObjectiveError("mode", f"must be 'max' or 'min', got {self.mode!r}")

    @property
    def validates(self) -> bool:
        """A per-epoch validation metric, which can choose a run's best epoch (a cost
        cannot: it is measured once, on the final model)."""
        return self.metric in VALIDATION_METRICS

    @property
    def best_metric(self) -> str:
        """A run's best epoch on it, as a trial reports it and its run records it; a cost is
        measured once, and logged under its own name."""
        return BEST_PREFIX + self.metric if self.validates else self.metric

    @property
    def label(self) -> str:
        """How a console line names a run's figure on it (`best val 80.82%`)."""
        return ("best " if self.validates else "") + READABLE[self.metric][0]

    @property
    def heading(self) -> str:
        """The trial table's column of it (`best val acc`)."""
        return ("best " if self.validates else "") + READABLE[self.metric][1]

    @property
    def phrase(self) -> str:
        """The metric in a sentence (`validation accuracy`)."""
        return READABLE[self.metric][2]

    @property
    def direction(self) -> str:
        """Optuna's word for the mode."""
        return "maximize" if self.mode == "max" else "minimize"

    def better(self, new: float, old: float) -> bool:
        """Whether `new` beats `old` (a tie does not)."""
        return new > old if self.mode == "max" else new < old

    def sort_key(self, score: float) -> float:
        """A key that sorts scores best first."""
        return -score if self.mode == "max" else score

    def best(self, scores: Iterable[float]) -> float:
        return min(scores, key=self.sort_key)

    def best_of(self, items: Iterable[T], score: Callable[[T], float]) -> T:
        """The item with the best score; the first of equals."""
        return min(items, key=lambda item: self.sort_key(score(item)))

    def best_first(self, items: Iterable[T], score: Callable[[T], float]) -> list[T]:
        return sorted(items, key=lambda item: self.sort_key(score(item)))

    @property
    def in_percent(self) -> bool:
        """Whether a person reads it in percent (accuracies, F1)."""
        return self.metric in FRACTIONS

    def shown(self, score: float) -> str:
        """A score as a person reads it: accuracies and F1 in percent."""
        if self.in_percent:
            return f"{100 * score:.2f}%"
        if self.metric == NUM_PARAMETERS:
            return f"{score:,.0f}"
        return f"{score:.4g}"

    def spread(self, sd: float) -> str:
        """A standard deviation in the units `shown` gives (points, for a percentage)."""
        return f"{100 * sd:.2f}" if self.in_percent else f"{sd:.4g}"

    def __str__(self) -> str:
        return f"{self.metric} ({self.mode})"


# With none given: the seed's, the best validation accuracy.
DEFAULT = Objective("val_accuracy", "max")
