"""A sweep's runs as the pipeline names and reads them: every MLflow tag, param and metric
name a module needs, and each trial run read once into a typed `TrialRun`.

MLflow holds params as text under flat names: a trial's `model.hidden_size` is logged as
`hidden_size`, its `data.train` as `data.train`. `param_name` and `config_key` map between
the two both ways; no other module undoes the flattening.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from postag.config import ModelConfig, RunConfig, TrainConfig, to_dict

if TYPE_CHECKING:
    from mlflow.entities import Run

    from postag.dataset import PreparedDataset

# MLflow's names, spelled out rather than imported: a trial's worker reads this module for
# its metric names, and importing any part of mlflow costs it a second at start.
# tests/pipelines/test_runs.py checks them against MLflow's own.
FINISHED = "FINISHED"
FAILED = "FAILED"
KILLED = "KILLED"
RUNNING = "RUNNING"
MLFLOW_RUN_NAME = "mlflow.runName"

# What a run is, in the tag ROLE_TAG.
ROLE_TAG = "role"
SWEEP_ROLE = "sweep"
TRIAL_ROLE = "trial"
BASELINE_ROLE = "deep-baseline"
# A search configuration trained again with another seed (the sweep's confirmation stage).
CONFIRMATION_ROLE = "confirmation"
EVALUATION_ROLE = "evaluation"

# Tags of a trial run.
TRIAL_TAG = "ray_trial_id"
MODEL_URI_TAG = "model_uri"
ERROR_TAG = "error"

# What a finished trial scored: the metrics the sweep ranks, registers and plots by.
BEST_VAL_ACCURACY = "best_val_accuracy"
BEST_EPOCH = "best_epoch"

# Params logged beside the config's own fields.
VALIDATION_DIGEST_PARAM = "validation_digest"

# Config sections whose fields are logged under their own names; others keep the section.
FLAT_SECTIONS = {"model": ModelConfig, "train": TrainConfig}
SECTION_OF_FIELD = {
    f.name: section for section, kind in FLAT_SECTIONS.items() for f in fields(kind)
}


def param_name(config_key: str) -> str:
    """The MLflow param of a dotted config key: `model.hidden_size` -> `hidden_size`."""
    section, _, name = config_key.partition(".")
    return name if section in FLAT_SECTIONS else config_key


def config_key(param: str) -> str:
    """The dotted config key of an MLflow param: `hidden_size` -> `model.hidden_size`; a
    param that is no config field (`validation_digest`) is returned as it is."""
    section = SECTION_OF_FIELD.get(param)
    return f"{section}.{param}" if section is not None else param


def run_params(config: RunConfig, dataset: PreparedDataset) -> dict[str, str]:
    """Every config field, model and train fields by their own name, plus the dataset's."""
    values = to_dict(config)
    params = {
        param_name(f"{section}.{name}"): value
        for section in ("data", "model", "train")
        for name, value in values[section].items()
    }
    params.update(
        {
            "dataset_fingerprint": dataset.fingerprint,
            VALIDATION_DIGEST_PARAM: dataset.validation_digest,
            "vocabulary_size": len(dataset.words),
            "num_classes": dataset.num_classes,
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
    best_val_accuracy: float | None
    best_epoch: int | None
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]

    @classmethod
    def of(cls, run: Run) -> TrialRun:
        tags, metrics = run.data.tags, run.data.metrics
        best_epoch = metrics.get(BEST_EPOCH)
        return cls(
            run_id=run.info.run_id,
            name=run.info.run_name or tags.get(MLFLOW_RUN_NAME, ""),
            status=run.info.status,
            role=tags.get(ROLE_TAG),
            trial_id=tags.get(TRIAL_TAG),
            model_uri=tags.get(MODEL_URI_TAG),
            best_val_accuracy=metrics.get(BEST_VAL_ACCURACY),
            best_epoch=int(best_epoch) if best_epoch is not None else None,
            params=dict(run.data.params),
            metrics=dict(metrics),
            tags=dict(tags),
        )

    def value(self, key: str) -> str | None:
        """The text MLflow holds for dotted config key `key` (`model.hidden_size`)."""
        return self.params.get(param_name(key))

    @property
    def seed(self) -> str:
        return self.params[param_name("train.seed")]

    @property
    def validation_digest(self) -> str:
        return self.params[VALIDATION_DIGEST_PARAM]

    @property
    def error(self) -> str | None:
        return self.tags.get(ERROR_TAG)

    def is_candidate(self, role: str = TRIAL_ROLE) -> bool:
        """A finished run of `role` that logged a model and a best validation accuracy."""
        return (
            self.role == role
            and self.status == FINISHED
            and self.model_uri is not None
            and self.best_val_accuracy is not None
        )


def read_trial_runs(runs: list[Run]) -> list[TrialRun]:
    return [TrialRun.of(run) for run in runs]


def best_val_accuracy(run: TrialRun) -> float:
    assert run.best_val_accuracy is not None, run.run_id
    return run.best_val_accuracy


def candidates(runs: list[TrialRun], role: str = TRIAL_ROLE) -> list[TrialRun]:
    """Finished runs of `role` (search trials by default, never the baseline) that logged
    a model and a best validation accuracy."""
    return [run for run in runs if run.is_candidate(role)]
