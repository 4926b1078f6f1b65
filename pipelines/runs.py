"""A sweep's runs as the pipeline reads them: each trial run read once into a typed
`TrialRun`, and the params a trial's run holds. The names they are stored under are
pipelines/names.py's.

A config value is named by its dotted key everywhere: in the experiment file, in --set,
in a sweep's space and as the MLflow param (`model.hidden_size`), which holds it as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipelines.names import (
    BEST_EPOCH,
    DATASET_FINGERPRINT_PARAM,
    ERROR_TAG,
    FINISHED,
    MLFLOW_RUN_NAME,
    MODEL_URI_TAG,
    NUM_CLASSES_PARAM,
    REUSED_TAG,
    ROLE_TAG,
    TRIAL_ROLE,
    TRIAL_TAG,
    VALIDATION_DIGEST_PARAM,
    VOCABULARY_SIZE_PARAM,
)

if TYPE_CHECKING:
    from mlflow.entities import Run

    from postag.data.dataset import PreparedDataset
    from postag.training.objective import Objective


def run_params(config: dict, dataset: PreparedDataset) -> dict[str, str]:
    """Every field of a plain config (`to_dict` of a RunConfig) under its dotted key, as in
    the experiment file and --set (`model.hidden_size`), plus the dataset's own."""
    params = {
        f"{section}.{name}": value
        for section in ("data", "model", "train")
        for name, value in config[section].items()
    }
    params.update(
        {
            DATASET_FINGERPRINT_PARAM: dataset.fingerprint,
            VALIDATION_DIGEST_PARAM: dataset.validation_digest,
            VOCABULARY_SIZE_PARAM: len(dataset.words),
            NUM_CLASSES_PARAM: dataset.num_classes,
        }
    )
    return {k: str(v) for k, v in params.items()}


@dataclass(frozen=True)
class TrialRun:
    """One trial's MLflow run as the sweep reads it back, once."""

    run_id: str
    name: str
    status: str
    role: str | None
    trial_id: str | None
    model_uri: str | None
    # Its best epoch's figure on the objective it was read for (postag/training/objective.py).
    score: float | None
    best_epoch: int | None
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]

    @classmethod
    def of(cls, run: Run, objective: Objective) -> TrialRun:
        tags, metrics = run.data.tags, run.data.metrics
        best_epoch = metrics.get(BEST_EPOCH)
        return cls(
            run_id=run.info.run_id,
            name=run.info.run_name or tags.get(MLFLOW_RUN_NAME, ""),
            status=run.info.status,
            role=tags.get(ROLE_TAG),
            trial_id=tags.get(TRIAL_TAG),
            model_uri=tags.get(MODEL_URI_TAG),
            score=metrics.get(objective.best_metric),
            best_epoch=int(best_epoch) if best_epoch is not None else None,
            params=dict(run.data.params),
            metrics=dict(metrics),
            tags=dict(tags),
        )

    def value(self, key: str) -> str | None:
        """The text MLflow holds for dotted config key `key` (`model.hidden_size`)."""
        return self.params.get(key)

    @property
    def seed(self) -> str:
        return self.params["train.seed"]

    @property
    def validation_digest(self) -> str:
        return self.params[VALIDATION_DIGEST_PARAM]

    @property
    def error(self) -> str | None:
        return self.tags.get(ERROR_TAG)

    @property
    def reused_from(self) -> str | None:
        """The run that trained this trial, when the sweep took it from an earlier one."""
        return self.tags.get(REUSED_TAG)

    def is_candidate(self, role: str = TRIAL_ROLE) -> bool:
        """A finished run of `role` that logged a model and its best score."""
        return (
            self.role == role
            and self.status == FINISHED
            and self.model_uri is not None
            and self.score is not None
        )


def read_trial_runs(runs: list[Run], objective: Objective) -> list[TrialRun]:
    """Each run read once, scored on `objective`."""
    return [TrialRun.of(run, objective) for run in runs]


def score(run: TrialRun) -> float:
    """A candidate's score on the objective."""
    assert run.score is not None, run.run_id
    return run.score


def best_of(runs: list[TrialRun], objective: Objective) -> TrialRun:
    """The candidate with the best score on `objective`."""
    return objective.best_of(runs, score)


def best_first(runs: list[TrialRun], objective: Objective) -> list[TrialRun]:
    """Candidates by score on `objective`, best first."""
    return objective.best_first(runs, score)


def candidates(runs: list[TrialRun], role: str = TRIAL_ROLE) -> list[TrialRun]:
    """Finished runs of `role` (search trials by default, never the baseline) that logged
    a model and its best score."""
    return [run for run in runs if run.is_candidate(role)]
