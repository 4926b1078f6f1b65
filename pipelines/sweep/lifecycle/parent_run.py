"""A sweep's parent run in MLflow, from start to end: started, resumed, stopped, abandoned,
closed with the sweep's summary; and a sweep's parent runs found by its name. Only the
sweep's life (pipelines/sweep/lifecycle/life.py) drives it; its trial runs are
pipelines/sweep/trial/records.py's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow.entities import Param, Run
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from pipelines.names import (
    ABANDONED_TAG,
    BEST_ALIAS_TAG,
    BEST_RUN_TAG,
    CONFIRMATION_RUNS_TAG,
    CONFIRMED_MEAN,
    CONFIRMED_SD,
    ENSEMBLE_ROLE,
    ERROR_TAG,
    ERROR_TAG_CHARS,
    FINISHED,
    KILLED,
    REGISTERED_VERSION_TAG,
    ROLE_TAG,
    RUNNING,
    SWEEP_ROLE,
    SWEEP_SETTING_PREFIX,
    SWEEP_TAG,
    TRIALS_MD,
)
from pipelines.provenance import code_tags
from pipelines.runs import TrialRun, read_trial_runs
from pipelines.tracking import DataInput, child_runs
from postag.config import ConfigError
from postag.training.objective import Objective


@dataclass
class ParentRun:
    """A sweep's parent run from start to end: started, resumed, stopped, abandoned, finished.

    Stopping never leaves a run RUNNING: open trial runs become KILLED (a resume reopens
    them) and the parent takes the stop's status.
    """

    experiment_id: str
    parent_run_id: str
    client: mlflow.MlflowClient = field(default_factory=mlflow.MlflowClient, repr=False)

    @classmethod
    def start(cls, experiment_id: str, name: str, experiment: dict, settings: dict) -> ParentRun:
        """A new parent run holding the experiment file's values and the sweep settings."""
        client = mlflow.MlflowClient()
        parent = client.create_run(
            experiment_id,
            tags={
                MLFLOW_RUN_NAME: f"sweep-{name}",
                SWEEP_TAG: name,
                ROLE_TAG: SWEEP_ROLE,
                **code_tags(),
            },
        )
        record = cls(experiment_id, parent.info.run_id, client)
        client.log_dict(record.parent_run_id, experiment, "experiment.json")
        params = [Param(SWEEP_SETTING_PREFIX + k, json.dumps(v)) for k, v in settings.items()]
        client.log_batch(record.parent_run_id, params=params)
        return record

    def trial_runs(self, objective: Objective) -> list[TrialRun]:
        """The sweep's trial and baseline runs, read once each, scored on `objective`."""
        return [run for run in self._children(objective) if run.role != ENSEMBLE_ROLE]

    def ensemble_runs(self, objective: Objective) -> list[TrialRun]:
        """The ensembles the sweep made of its seeds (pipelines/sweep/end/seed_ensemble.py)."""
        return [run for run in self._children(objective) if run.role == ENSEMBLE_ROLE]

    def _children(self, objective: Objective) -> list[TrialRun]:
        return read_trial_runs(child_runs(self.experiment_id, self.parent_run_id), objective)

    def registered_version(self) -> str | None:
        """The version the sweep registered as it finished; None before it has (or where it
        registered nothing, every trial having failed)."""
        run = self.client.get_run(self.parent_run_id)
        if run.info.status != FINISHED:
            return None
        return run.data.tags.get(REGISTERED_VERSION_TAG)

    def log_data(self, inputs: Iterable[DataInput]) -> None:
        """The data every trial of the sweep trains and validates on."""
        self.client.log_inputs(self.parent_run_id, datasets=[data.entity() for data in inputs])

    def resume(self) -> None:
        self.client.update_run(self.parent_run_id, status=RUNNING)

    def stop(self, status: str, error: str | None = None) -> None:
        """Close every open run: trials KILLED, the parent `status` (unless already closed)."""
        for run in child_runs(self.experiment_id, self.parent_run_id):
            if run.info.status == RUNNING:
                self.client.set_terminated(run.info.run_id, KILLED)
        if error is not None:
            self.client.set_tag(self.parent_run_id, ERROR_TAG, error[:ERROR_TAG_CHARS])
        if self.client.get_run(self.parent_run_id).info.status == RUNNING:
            self.client.set_terminated(self.parent_run_id, status)

    def abandon(self, why: str) -> None:
        """A sweep that will never resume: its runs closed KILLED, the reason tagged."""
        self.stop(KILLED)
        self.client.set_tag(self.parent_run_id, ABANDONED_TAG, why)

    def log_confirmation(self, run_id: str, mean: float, sd: float, seeds: list[TrialRun]) -> None:
        """On a search trial's run: what its configuration scored again over `seeds` runs."""
        self.client.log_metric(run_id, CONFIRMED_MEAN, mean)
        self.client.log_metric(run_id, CONFIRMED_SD, sd)
        self.client.set_tag(run_id, CONFIRMATION_RUNS_TAG, ",".join(r.run_id for r in seeds))

    def close_with_summary(
        self,
        summary: str,
        winner: TrialRun,
        version: str,
        promotion: str,
        metrics: dict[str, float],
        figures: list[Path],
    ) -> None:
        """Close the parent with `trials.md` (`summary`), its figures, metrics and winner
        (its score is among `metrics`)."""
        self.client.log_text(self.parent_run_id, summary, TRIALS_MD)
        for path in figures:
            self.client.log_artifact(self.parent_run_id, str(path))
        for key, value in metrics.items():
            self.client.log_metric(self.parent_run_id, key, value)
        for key, value in (
            (BEST_RUN_TAG, winner.run_id),
            (REGISTERED_VERSION_TAG, version),
            (BEST_ALIAS_TAG, promotion),
        ):
            self.client.set_tag(self.parent_run_id, key, value)
        self.client.set_terminated(self.parent_run_id, FINISHED)


def sweeps_named(experiment_id: str, names: Iterable[str]) -> dict[str, list[Run]]:
    """Each named sweep's parent runs in this store (one a `--fresh` start); a ConfigError
    names the first sweep with none (`sweep.warm_start`, `--from`)."""
    client = mlflow.MlflowClient()
    found = {}
    for name in names:
        found[name] = client.search_runs(
            [experiment_id],
            filter_string=f"tags.{ROLE_TAG} = '{SWEEP_ROLE}' and tags.{SWEEP_TAG} = '{name}'",
        )
        if not found[name]:
            raise ConfigError(
                f"sweep.warm_start: no sweep named '{name}' in this MLflow store "
                f"({mlflow.get_tracking_uri()})"
            )
    return found
