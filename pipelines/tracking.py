"""MLflow for sweeps: where runs go, and a Ray Tune callback that records every trial.

All MLflow writes of a sweep happen on the driver, in this callback: one writer, so a sqlite
store never sees racing processes, and a trial's run never outlives the driver's view of it.
Ray's MLflowLoggerCallback is close but cannot find a trial's run again after a restore (it
would duplicate runs), log the trial's model, or mark the deep baseline, hence this one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import mlflow
import torch
from mlflow.entities import Metric, Param, Run, RunStatus
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from ray.tune import Callback
from ray.tune.experiment import Trial

from postag.checkpoint import save_checkpoint
from postag.config import RunConfig, to_dict
from postag.dataset import PreparedDataset, load_prepared
from postag.registry import log_tagger
from postag.train import EPOCH_METRICS

SQLITE_PREFIX = "sqlite:///"
TRIAL_TAG = "ray_trial_id"
ROLE_TAG = "role"
BASELINE_ROLE = "deep-baseline"
TRIAL_ROLE = "trial"
MODEL_URI_TAG = "model_uri"
STATE_FILE = "state.pt"
# Result keys a trial reports beside its epoch metrics, recorded as run tags.
RESUMED_KEY = "resumed_from_epoch"
NODE_KEY = "ray_node_id"
# Tune adds the trial process's pid to every result; a tag lets an operator find the process.
PID_KEY = "pid"
PID_TAG = "ray_pid"
# The end of an error trace kept in a tag (MLflow caps tag values); error.txt keeps it all.
ERROR_TAG_CHARS = 5000
# The status a concluded trial's run ends in.
CLOSED_STATUS = {
    Trial.TERMINATED: RunStatus.to_string(RunStatus.FINISHED),
    Trial.ERROR: RunStatus.to_string(RunStatus.FAILED),
}
# Far above any sweep here (the full seed study holds 37 trials).
MAX_CHILD_RUNS = 1000


def tracking_uri(project_dir: Path) -> str:
    """$MLFLOW_TRACKING_URI, or the project's sqlite store as an absolute URI.

    Absolute, because Ray runs each trial in a directory of its own: a relative sqlite path
    would make a store per trial.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return move_credentials_to_environment(uri)
    database = (project_dir / "mlruns" / "mlflow.db").resolve()
    database.parent.mkdir(parents=True, exist_ok=True)
    return f"{SQLITE_PREFIX}{database}"


def move_credentials_to_environment(uri: str) -> str:
    """`uri` without its user:password@ part, which goes where MLflow reads credentials.

    MLflow prints run links built from the tracking URI and Ray passes the environment on:
    a password inside the URI would end up in logs. MLflow's own variables (which a user may
    also set directly) keep it out of every URI.
    """
    parts = urlsplit(uri)
    if parts.username is None:
        return uri
    os.environ.setdefault("MLFLOW_TRACKING_USERNAME", unquote(parts.username))
    if parts.password is not None:
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", unquote(parts.password))
    clean = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    os.environ["MLFLOW_TRACKING_URI"] = clean
    return clean


def ensure_experiment(name: str) -> str:
    """The id of MLflow experiment `name`, created if new.

    With a sqlite store, artifacts go to `artifacts/` beside the database file, so that the
    store is one self-contained folder (`mlruns/` by default).
    """
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = None
    uri = mlflow.get_tracking_uri()
    if uri.startswith(SQLITE_PREFIX):
        database = Path(uri.removeprefix(SQLITE_PREFIX))
        location = (database.parent / "artifacts").resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def child_runs(experiment_id: str, parent_run_id: str) -> list[Run]:
    """The runs nested under `parent_run_id`: a sweep's trials."""
    return mlflow.MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_run_id}'",
        max_results=MAX_CHILD_RUNS,
    )


def run_params(config: RunConfig, dataset: PreparedDataset) -> dict[str, str]:
    """Every config field, model and train fields by their own name, plus the dataset's."""
    values = to_dict(config)
    params = {f"data.{k}": v for k, v in values["data"].items()}
    params.update(values["model"])
    params.update(values["train"])
    params.update(
        dataset_fingerprint=dataset.fingerprint,
        validation_digest=dataset.validation_digest,
        vocabulary_size=len(dataset.words),
        num_classes=dataset.num_classes,
    )
    return {k: str(v) for k, v in params.items()}


def error_text(trial: Trial) -> str:
    """The trial's error trace, read from the driver's copy.

    Tune writes it beside the trial's local results and copies it to storage later;
    trial.get_error() reads storage, so on a busy machine it can come back empty.
    """
    local = trial.error_file
    if local is not None and Path(local).is_file():
        return Path(local).read_text()
    return str(trial.get_error() or "trial failed (no error text recorded)")


class MlflowTrials(Callback):
    """One nested MLflow run per Tune trial under the sweep's parent run."""

    # Ray pickles callbacks into the experiment state and restores them with it: keep only
    # plain values here and open the MLflow client and the dataset lazily. The client uses
    # the process's tracking URI, so the URI (which may carry credentials) is never pickled.
    def __init__(
        self,
        experiment_id: str,
        parent_run_id: str,
        dataset_dir: Path,
        trial_run_config: Callable[[dict], RunConfig],
        is_baseline: Callable[[dict], bool],
    ):
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.dataset_dir = dataset_dir
        self.trial_run_config = trial_run_config
        self.is_baseline = is_baseline
        self.run_ids: dict[str, str] = {}
        self.logged_epochs: dict[str, set[int]] = {}
        self.tags: dict[str, dict[str, str]] = {}

    @cached_property
    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient()

    @cached_property
    def dataset(self) -> PreparedDataset:
        return load_prepared(self.dataset_dir)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("client", None)
        state.pop("dataset", None)
        # A snapshot can lag what was logged before a hard kill: after a restore, runs and
        # their logged epochs are read again from MLflow, the record that cannot lag.
        state["run_ids"] = {}
        state["logged_epochs"] = {}
        state["tags"] = {}
        return state

    # Tune hooks ------------------------------------------------------------------------

    def on_trial_start(self, iteration, trials, trial: Trial, **info):
        self.run_id(trial)

    def on_trial_result(self, iteration, trials, trial: Trial, result: dict, **info):
        run_id = self.run_id(trial)
        epoch = int(result["epoch"])
        # A trial resumed from a checkpoint repeats epochs the run already holds.
        if epoch not in self.logged_epochs[run_id]:
            self._log_epochs(run_id, [result], int(result["timestamp"] * 1000))
        self._tag_once(run_id, NODE_KEY, str(result.get(NODE_KEY, "")))
        self._tag_once(run_id, PID_TAG, str(result.get(PID_KEY, "")))
        if result.get(RESUMED_KEY):
            self._tag_once(run_id, RESUMED_KEY, str(result[RESUMED_KEY]))

    def _log_epochs(self, run_id: str, epochs: list[dict], timestamp: int) -> None:
        metrics = [
            Metric(key, float(epoch[key]), timestamp, int(epoch["epoch"]))
            for epoch in epochs
            for key in EPOCH_METRICS
        ]
        self.client.log_batch(run_id, metrics=metrics)
        self.logged_epochs[run_id].update(int(epoch["epoch"]) for epoch in epochs)

    def _tag_once(self, run_id: str, key: str, value: str) -> None:
        """Set a tag when its value changes, not on every epoch."""
        tags = self.tags.setdefault(run_id, {})
        if value and tags.get(key) != value:
            self.client.set_tag(run_id, key, value)
            tags[key] = value

    def on_trial_complete(self, iteration, trials, trial: Trial, **info):
        self.finish(trial)

    def finish(self, trial: Trial) -> None:
        """Close a completed trial's run: any epoch MLflow missed, best figures, the model.

        Also called by the driver for trials that completed while MLflow could not be
        reached: the trial's last checkpoint holds its whole history.
        """
        run_id = self.run_id(trial)
        result = trial.last_result or {}
        if trial.checkpoint is not None:
            state = self._checkpoint_state(trial)
            missing = [e for e in state["history"] if e["epoch"] not in self.logged_epochs[run_id]]
            if missing:
                self._log_epochs(run_id, missing, int(result.get("timestamp", 0) * 1000))
            self._log_model(run_id, trial, state)
        if "best_val_accuracy" in result:
            self.client.log_metric(run_id, "best_val_accuracy", float(result["best_val_accuracy"]))
            self.client.log_metric(run_id, "best_epoch", float(result["best_epoch"]))
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))

    def on_trial_recover(self, iteration, trials, trial: Trial, **info):
        error = error_text(trial)[-ERROR_TAG_CHARS:]
        self.client.set_tag(self.run_id(trial), "retried_after_error", error)

    def on_trial_error(self, iteration, trials, trial: Trial, **info):
        self.fail(trial)

    def fail(self, trial: Trial) -> None:
        run_id = self.run_id(trial)
        error = error_text(trial)
        self.client.set_tag(run_id, "error", error[-ERROR_TAG_CHARS:])
        self.client.log_text(run_id, error, "error.txt")
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))

    def settle(self, trials: list[Trial]) -> int:
        """Close the run of every concluded trial whose run is still open; how many.

        A trial that concluded while MLflow could not be reached, or just before the driver
        died, is not run again on resume, so no Tune hook would ever close its run.
        """
        settled = 0
        for trial in trials:
            closed = CLOSED_STATUS.get(trial.status)
            found = self._find_run(trial)
            if closed is None or (found is not None and found.info.status == closed):
                continue
            if trial.status == Trial.TERMINATED:
                self.finish(trial)
            else:
                self.fail(trial)
            settled += 1
        return settled

    # Runs ------------------------------------------------------------------------------

    def run_id(self, trial: Trial) -> str:
        """The trial's run: found again by its trial-id tag after a restore, else created."""
        if trial.trial_id in self.run_ids:
            return self.run_ids[trial.trial_id]
        if (found := self._find_run(trial)) is not None:
            run_id = found.info.run_id
            # An interruption left it KILLED; the resumed trial makes it RUNNING again.
            self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            history = self.client.get_metric_history(run_id, "val_accuracy")
            self.logged_epochs[run_id] = {m.step for m in history}
        else:
            run_id = self._create_run(trial)
            self.logged_epochs[run_id] = set()
        self.run_ids[trial.trial_id] = run_id
        return run_id

    def _find_run(self, trial: Trial) -> Run | None:
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.{TRIAL_TAG} = '{trial.trial_id}' "
                f"and tags.{MLFLOW_PARENT_RUN_ID} = '{self.parent_run_id}'"
            ),
            max_results=1,
        )
        return found[0] if found else None

    def _create_run(self, trial: Trial) -> str:
        baseline = self.is_baseline(trial.config)
        config = self.trial_run_config(trial.config)
        run = self.client.create_run(
            self.experiment_id,
            tags={
                MLFLOW_PARENT_RUN_ID: self.parent_run_id,
                MLFLOW_RUN_NAME: f"{'baseline-' if baseline else ''}{trial.trial_id}",
                TRIAL_TAG: trial.trial_id,
                ROLE_TAG: BASELINE_ROLE if baseline else TRIAL_ROLE,
            },
        )
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in run_params(config, self.dataset).items()]
        self.client.log_batch(run_id, params=params)
        self.client.log_dict(run_id, to_dict(config), "config.json")
        return run_id

    @staticmethod
    def _checkpoint_state(trial: Trial) -> dict:
        """The TrainingState dict of the trial's last checkpoint, wherever Tune keeps it."""
        # as_directory() fetches it from wherever Tune keeps checkpoints (a bucket, say).
        with trial.checkpoint.as_directory() as checkpoint_dir:
            return torch.load(
                Path(checkpoint_dir) / STATE_FILE, map_location="cpu", weights_only=True
            )

    def _log_model(self, run_id: str, trial: Trial, state: dict) -> None:
        """Log the trial's best weights (from its last checkpoint) as the run's model."""
        config = self.trial_run_config(trial.config)
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = save_checkpoint(
                Path(folder) / "tagger.pt", state["best_state"], config, self.dataset
            )
            with mlflow.start_run(run_id=run_id, nested=True):
                info = log_tagger(checkpoint)
        self.client.set_tag(run_id, MODEL_URI_TAG, info.model_uri)
