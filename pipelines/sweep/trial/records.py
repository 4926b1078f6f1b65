"""A sweep's trial runs in MLflow: each created, filled with the config its trial resolved,
logged epoch by epoch, and closed with its model, as the Tune callback
(pipelines/sweep/trial/callback.py) asks. Its parent run is
pipelines/sweep/lifecycle/parent_run.py's.

A sweep's writes all happen in its driver process: one writer, so a sqlite store never sees
racing processes.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from pipelines.names import (
    CONFIG_TAG,
    ERROR_TAG,
    ERROR_TAG_CHARS,
    FAILED,
    FINISHED,
    MODEL_URI_TAG,
    RETRIED_TAG,
    ROLE_TAG,
    RUNNING,
    TRIAL_TAG,
)
from pipelines.provenance import code_tags
from pipelines.runs import run_params
from pipelines.tracking import DataInput
from postag.data.dataset import PreparedDataset
from postag.models.checkpoint import save_checkpoint
from postag.serving.registry import log_tagger
from postag.training.resources import SYSTEM_PREFIX
from postag.training.trainer import EPOCH_METRICS


class TrialRuns:
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
        # Runs that hold their trial's config, and runs this driver closed: neither needs
        # another look at MLflow.
        self.configured: set[str] = set()
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
        # Each epoch logs every one of EPOCH_METRICS: any one's steps are the epochs logged.
        history = self.client.get_metric_history(run_id, EPOCH_METRICS[0])
        self.logged_epochs[run_id] = {m.step for m in history}
        if CONFIG_TAG in run.data.tags:
            self.configured.add(run_id)
        return run_id

    def create(self, trial_id: str, name: str, role: str) -> str:
        """A trial's run as its trial starts; its config comes with the trial's first report
        (`fill`), from the one place it is resolved, the trial's own process."""
        run = self.client.create_run(
            self.experiment_id,
            tags={
                MLFLOW_PARENT_RUN_ID: self.parent_run_id,
                MLFLOW_RUN_NAME: name,
                TRIAL_TAG: trial_id,
                ROLE_TAG: role,
                **code_tags(),
            },
        )
        self.logged_epochs[run.info.run_id] = set()
        return run.info.run_id

    def fill(
        self, run_id: str, config: dict, dataset: PreparedDataset, inputs: Iterable[DataInput]
    ) -> None:
        """The config the trial resolved (plain, `to_dict` of its RunConfig), as config.json
        and params, with the data inputs; the params in one request with the tag that says
        the run has them all, so a fill cut off (a full disk, the tracking server gone) is
        done again on resume. Once per run; each write may be repeated."""
        if run_id in self.configured:
            return
        self.client.log_dict(run_id, config, "config.json")
        self.client.log_inputs(run_id, datasets=[data.entity() for data in inputs])
        self.client.log_batch(
            run_id,
            params=[Param(k, v) for k, v in run_params(config, dataset).items()],
            tags=[RunTag(CONFIG_TAG, "true")],
        )
        self.configured.add(run_id)

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

    def close_with_model(
        self, run_id: str, best: dict[str, float], model: ModelFiles | None, dev: DataInput
    ) -> None:
        """Close a completed trial's run with its model and best figures (its best epoch,
        its score on each objective), linked together.

        The best figures are logged against the model and the validation data, so the
        model's page in the UI shows what it scored, and on what.
        """
        link = {}
        if model is not None:
            info = model.log(run_id)
            self.client.set_tag(run_id, MODEL_URI_TAG, info.model_uri)
            link = dict(model_id=info.model_id, dataset_name=dev.name, dataset_digest=dev.digest)
        if best:
            now = int(time.time() * 1000)
            metrics = [Metric(key, float(value), now, 0, **link) for key, value in best.items()]
            self.client.log_batch(run_id, metrics=metrics)
        self.client.set_terminated(run_id, FINISHED)
        self.closed.add(run_id)

    def fail(self, run_id: str, error: str) -> None:
        self.client.set_tag(run_id, ERROR_TAG, error[-ERROR_TAG_CHARS:])
        self.client.log_text(run_id, error, "error.txt")
        self.client.set_terminated(run_id, FAILED)
        self.closed.add(run_id)

    def note_retry(self, run_id: str, error: str) -> None:
        self.client.set_tag(run_id, RETRIED_TAG, error[-ERROR_TAG_CHARS:])


@dataclass(frozen=True)
class ModelFiles:
    """What a trial's model is made of: its best weights, the config its trial resolved
    (plain, as its checkpoint carries it) and the dataset."""

    weights: dict
    config: dict
    dataset: PreparedDataset

    def log(self, run_id: str) -> mlflow.models.model.ModelInfo:
        """Log it as the run's MLflow model, carrying the run's parameters."""
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = save_checkpoint(
                Path(folder) / "tagger.pt", self.weights, self.config, self.dataset
            )
            with mlflow.start_run(run_id=run_id, nested=True):
                return log_tagger(checkpoint, params=run_params(self.config, self.dataset))
