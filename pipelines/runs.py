"""A sweep's runs as the pipeline names and reads them: every MLflow tag, param and metric
name a module needs, and each trial run read once into a typed `TrialRun`.

A config value is named by its dotted key everywhere: in the experiment file, in --set,
in a sweep's space and as the MLflow param (`model.hidden_size`), which holds it as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.entities import Run

    from postag.dataset import PreparedDataset
    from postag.objective import Objective

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
# The winning configuration's seeds as one model (pipelines/sweep/ensemble.py).
ENSEMBLE_ROLE = "ensemble"

# An ensemble's run and version: its members' runs (in order), and the tagging time of one
# member beside its own (postag/objective.py's tagging_ms_per_sentence), measured alike.
MEMBERS_TAG = "member_run_ids"
MEMBER_TAGGING_TIME = "member_tagging_ms_per_sentence"
# A version registered for its configuration's seeds: their runs, in the order of its `seeds`.
SEED_RUNS_TAG = "seed_run_ids"

# Tags of a trial run.
TRIAL_TAG = "ray_trial_id"
# On a Pareto front member's run and version: its place, best on the first objective first.
PARETO_RANK_TAG = "pareto_front_rank"
MODEL_URI_TAG = "model_uri"
# On a trial's record in a sweep that took it from an earlier one (pipelines/sweep/reuse.py):
# the run that trained it, and that run's sweep.
REUSED_TAG = "reused_from_run"
REUSED_SWEEP_TAG = "reused_from_sweep"
ERROR_TAG = "error"
# The end of an error trace kept in a tag (MLflow caps tag values); error.txt keeps it all.
ERROR_TAG_CHARS = 5000

# The epoch of a finished trial's best (its score is its objective's `best_metric`).
BEST_EPOCH = "best_epoch"

# Params logged beside the config's own fields.
VALIDATION_DIGEST_PARAM = "validation_digest"


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
    # Its best epoch's figure on the objective it was read for (postag/objective.py).
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
