"""A sweep's MLflow records: `SweepRecord`, its parent run through its life (driven by
pipelines/sweep/life.py's SweepLife alone), and `TrialRecords`, its trial runs, which the
Tune callback (pipelines/sweep/trial_logger.py) feeds per epoch.

A sweep's writes all happen in its driver process: one writer, so a sqlite store never sees
racing processes.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from pipelines.runs import (
    BEST_EPOCH,
    BEST_VAL_ACCURACY,
    ERROR_TAG,
    FAILED,
    FINISHED,
    KILLED,
    MODEL_URI_TAG,
    ROLE_TAG,
    RUNNING,
    SWEEP_ROLE,
    TRIAL_TAG,
    TrialRun,
    read_trial_runs,
    run_params,
)
from pipelines.tracking import DataInput, child_runs
from postag.checkpoint import save_checkpoint
from postag.config import RunConfig
from postag.dataset import PreparedDataset
from postag.registry import log_tagger
from postag.resources import SYSTEM_PREFIX
from postag.train import EPOCH_METRICS

# The end of an error trace kept in a tag (MLflow caps tag values); error.txt keeps it all.
ERROR_TAG_CHARS = 5000


# A sweep's parent run --------------------------------------------------------------------


@dataclass
class SweepRecord:
    """A sweep's parent run from start to end: started, resumed, stopped, abandoned, finished.

    Stopping never leaves a run RUNNING: open trial runs become KILLED (a resume reopens
    them) and the parent takes the stop's status.
    """

    experiment_id: str
    parent_run_id: str
    client: mlflow.MlflowClient = field(default_factory=mlflow.MlflowClient, repr=False)

    @classmethod
    def start(cls, experiment_id: str, name: str, experiment: dict, settings: dict) -> SweepRecord:
        """A new parent run holding the experiment file's values and the sweep settings."""
        client = mlflow.MlflowClient()
        parent = client.create_run(
            experiment_id,
            tags={MLFLOW_RUN_NAME: f"sweep-{name}", "sweep": name, ROLE_TAG: SWEEP_ROLE},
        )
        record = cls(experiment_id, parent.info.run_id, client)
        client.log_dict(record.parent_run_id, experiment, "experiment.json")
        params = [Param(f"sweep.{k}", json.dumps(v)) for k, v in settings.items()]
        client.log_batch(record.parent_run_id, params=params)
        return record

    def trial_runs(self) -> list[TrialRun]:
        """The sweep's trial and baseline runs, read once each."""
        return read_trial_runs(child_runs(self.experiment_id, self.parent_run_id))

    def log_data(self, inputs: Iterable[DataInput]) -> None:
        """The data every trial of the sweep trains and validates on."""
        self.client.log_inputs(self.parent_run_id, datasets=[data.entity() for data in inputs])

    def resume(self) -> None:
        self.client.update_run(self.parent_run_id, status=RUNNING)

    def stop(self, status: str, error: str | None = None) -> None:
        """Close every open run: trials KILLED, the parent `status` (unless already closed)."""
        for run in self.trial_runs():
            if run.status == RUNNING:
                self.client.set_terminated(run.run_id, KILLED)
        if error is not None:
            self.client.set_tag(self.parent_run_id, ERROR_TAG, error[:ERROR_TAG_CHARS])
        if self.client.get_run(self.parent_run_id).info.status == RUNNING:
            self.client.set_terminated(self.parent_run_id, status)

    def abandon(self, why: str) -> None:
        """A sweep that will never resume: its runs closed KILLED, the reason tagged."""
        self.stop(KILLED)
        self.client.set_tag(self.parent_run_id, "abandoned", why)

    def log_confirmation(self, run_id: str, mean: float, sd: float, seeds: list[TrialRun]) -> None:
        """On a search trial's run: what its configuration scored again over `seeds` runs."""
        self.client.log_metric(run_id, "confirmed_val_mean", mean)
        self.client.log_metric(run_id, "confirmed_val_sd", sd)
        self.client.set_tag(run_id, "confirmation_runs", ",".join(r.run_id for r in seeds))

    def finish(
        self,
        summary: str,
        winner: TrialRun,
        version: str,
        promotion: str,
        metrics: dict[str, float],
        figures: list[Path],
    ) -> None:
        """Close the parent with `trials.md` (`summary`), its figures, metrics and winner."""
        self.client.log_text(self.parent_run_id, summary, "trials.md")
        for path in figures:
            self.client.log_artifact(self.parent_run_id, str(path))
        metrics = {BEST_VAL_ACCURACY: winner.best_val_accuracy, **metrics}
        for key, value in metrics.items():
            self.client.log_metric(self.parent_run_id, key, value)
        for key, value in (
            ("best_run_id", winner.run_id),
            ("registered_version", version),
            ("best_alias", promotion),
        ):
            self.client.set_tag(self.parent_run_id, key, value)
        self.client.set_terminated(self.parent_run_id, FINISHED)


# A sweep's trial runs --------------------------------------------------------------------


# Written last when a trial's run is created: a run without it was cut off mid-creation.
CREATED_TAG = "postag.created"


class TrialRecords:
    """The trial runs nested under one sweep's parent run, found again after a restore.

    Knows which epochs each run holds, so that an epoch is logged once however often a
    resumed trial reports it, and missing ones can be back-filled from a trial's history.
    """

    def __init__(self, experiment_id: str, parent_run_id: str):
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.client = mlflow.MlflowClient()
        self.logged_epochs: dict[str, set[int]] = {}
        self.tags: dict[str, dict[str, str]] = {}
        # Runs this driver closed: settling them again needs no look at MLflow.
        self.closed: set[str] = set()

    def find(self, trial_id: str) -> Run | None:
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.{TRIAL_TAG} = '{trial_id}' "
                f"and tags.{MLFLOW_PARENT_RUN_ID} = '{self.parent_run_id}'"
            ),
            max_results=1,
        )
        return found[0] if found else None

    def reopen(self, run: Run) -> str:
        """A run an interruption left KILLED is RUNNING again; its logged epochs are read."""
        run_id = run.info.run_id
        self.client.update_run(run_id, status=RUNNING)
        history = self.client.get_metric_history(run_id, "val_accuracy")
        self.logged_epochs[run_id] = {m.step for m in history}
        return run_id

    @staticmethod
    def complete(run: Run) -> bool:
        """Whether the run's creation got to its end (see `fill`)."""
        return CREATED_TAG in run.data.tags

    def create(
        self,
        trial_id: str,
        name: str,
        role: str,
        params: dict,
        config: dict,
        inputs: Iterable[DataInput] = (),
    ) -> str:
        run = self.client.create_run(
            self.experiment_id,
            tags={
                MLFLOW_PARENT_RUN_ID: self.parent_run_id,
                MLFLOW_RUN_NAME: name,
                TRIAL_TAG: trial_id,
                ROLE_TAG: role,
            },
        )
        run_id = run.info.run_id
        self.logged_epochs[run_id] = set()
        self.fill(run_id, params, config, inputs)
        return run_id

    def fill(self, run_id: str, params: dict, config: dict, inputs: Iterable[DataInput]) -> None:
        """A new run's config, inputs and params, the params in one request with the tag that
        says the run has them all: a creation cut off (a full disk, the tracking server gone)
        is filled in on resume, where the trial finds its run again by its trial tag. Each
        write may be repeated."""
        self.client.log_dict(run_id, config, "config.json")
        self.client.log_inputs(run_id, datasets=[data.entity() for data in inputs])
        self.client.log_batch(
            run_id,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(CREATED_TAG, "true")],
        )

    def log_epochs(
        self, run_id: str, epochs: Iterable[dict], timestamp_ms: int, tags: dict | None = None
    ) -> None:
        """Log, in one request, the epochs (dicts with `epoch`, the EPOCH_METRICS and any
        `system/` figures the trial read of its process) the run does not hold, and the
        `tags` whose values changed: a reader who sees an epoch also sees its tags (where it
        ran). One request an epoch is what the driver spends on a trial's report."""
        new = [e for e in epochs if int(e["epoch"]) not in self.logged_epochs[run_id]]
        metrics = [
            Metric(key, float(epoch[key]), timestamp_ms, int(epoch["epoch"]))
            for epoch in new
            for key in [*EPOCH_METRICS, *sorted(k for k in epoch if k.startswith(SYSTEM_PREFIX))]
        ]
        known = self.tags.setdefault(run_id, {})
        changed = {k: v for k, v in (tags or {}).items() if known.get(k) != v}
        if not metrics and not changed:
            return
        self.client.log_batch(
            run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in changed.items()]
        )
        self.logged_epochs[run_id].update(int(epoch["epoch"]) for epoch in new)
        known.update(changed)

    def finish(
        self, run_id: str, best: dict | None, model: ModelFiles | None, dev: DataInput
    ) -> None:
        """Close a completed trial's run with its model and best figures, linked together.

        The best figures are logged against the model and the validation data, so the
        model's page in the UI shows what it scored, and on what.
        """
        link = {}
        if model is not None:
            info = model.log(run_id)
            self.client.set_tag(run_id, MODEL_URI_TAG, info.model_uri)
            link = dict(model_id=info.model_id, dataset_name=dev.name, dataset_digest=dev.digest)
        if best is not None:
            now = int(time.time() * 1000)
            metrics = [
                Metric(key, float(best[key]), now, 0, **link)
                for key in (BEST_VAL_ACCURACY, BEST_EPOCH)
            ]
            self.client.log_batch(run_id, metrics=metrics)
        self.client.set_terminated(run_id, FINISHED)
        self.closed.add(run_id)

    def fail(self, run_id: str, error: str) -> None:
        self.client.set_tag(run_id, ERROR_TAG, error[-ERROR_TAG_CHARS:])
        self.client.log_text(run_id, error, "error.txt")
        self.client.set_terminated(run_id, FAILED)
        self.closed.add(run_id)

    def note_retry(self, run_id: str, error: str) -> None:
        self.client.set_tag(run_id, "retried_after_error", error[-ERROR_TAG_CHARS:])


@dataclass(frozen=True)
class ModelFiles:
    """What a trial's model is made of: its best weights, config and dataset."""

    weights: dict
    config: RunConfig
    dataset: PreparedDataset

    def log(self, run_id: str) -> mlflow.models.model.ModelInfo:
        """Log it as the run's MLflow model, carrying the run's parameters."""
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = save_checkpoint(
                Path(folder) / "tagger.pt", self.weights, self.config, self.dataset
            )
            with mlflow.start_run(run_id=run_id, nested=True):
                return log_tagger(checkpoint, params=run_params(self.config, self.dataset))
