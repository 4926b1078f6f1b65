"""Every MLflow write of the pipelines: where runs go, the runs of a sweep, evaluation runs.

Ray-free, so that `postag tag` and `postag evaluate` do not load Ray to find a tracking URI.
A sweep's writes all happen in its driver process: one writer, so a sqlite store never sees
racing processes. `SweepRecord` is the sweep's parent run through its life; `TrialRecords`
are its trial runs, which the Tune callback (`pipelines.trial_logger`) feeds per epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import mlflow
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, Run, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from pipelines.runs import (
    BEST_EPOCH,
    BEST_VAL_ACCURACY,
    ERROR_TAG,
    EVALUATION_ROLE,
    FAILED,
    FINISHED,
    KILLED,
    MODEL_URI_TAG,
    ROLE_TAG,
    RUNNING,
    SWEEP_ROLE,
    TRIAL_TAG,
    VALIDATION_DIGEST_PARAM,
    TrialRun,
    param_name,
    read_trial_runs,
)
from postag.checkpoint import save_checkpoint
from postag.config import RunConfig, to_dict
from postag.dataset import PreparedDataset, SourceFile
from postag.registry import log_tagger
from postag.resources import SYSTEM_PREFIX
from postag.sources import sha256_of
from postag.train import EPOCH_METRICS

EXPERIMENT_NAME = "postag"
# Tells the MLflow UI that this experiment trains models (its runs pages, not GenAI traces).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
SQLITE_PREFIX = "sqlite:///"
# The end of an error trace kept in a tag (MLflow caps tag values); error.txt keeps it all.
ERROR_TAG_CHARS = 5000
# Far above any sweep here (the full seed study holds 37 trials).
MAX_CHILD_RUNS = 1000


# Where runs go ---------------------------------------------------------------------------


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
    clean = without_credentials(uri, mask="")
    os.environ["MLFLOW_TRACKING_URI"] = clean
    return clean


def without_credentials(uri: str, mask: str = "***@") -> str:
    """`uri` fit to print: a user:password@ part is replaced by `mask`."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{mask}{host}"))


def ensure_experiment(name: str = EXPERIMENT_NAME) -> str:
    """The id of MLflow experiment `name`, created if new.

    With a sqlite store, artifacts go to `artifacts/` beside the database file, so that the
    store is one self-contained folder (`mlruns/` by default).
    """
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        if EXPERIMENT_KIND_TAG not in existing.tags:
            mlflow.MlflowClient().set_experiment_tag(
                existing.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING
            )
        return existing.experiment_id
    location = None
    uri = mlflow.get_tracking_uri()
    if uri.startswith(SQLITE_PREFIX):
        database = Path(uri.removeprefix(SQLITE_PREFIX))
        location = (database.parent / "artifacts").resolve().as_uri()
    return mlflow.create_experiment(
        name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING}
    )


def child_runs(experiment_id: str, parent_run_id: str) -> list[Run]:
    """The runs nested under `parent_run_id`: a sweep's trials."""
    return mlflow.MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_run_id}'",
        max_results=MAX_CHILD_RUNS,
    )


# Datasets as MLflow inputs ---------------------------------------------------------------

# The MLflow context of each split: what fills the UI's Dataset column and filter.
CONTEXTS = {"train": "training", "dev": "validation", "test": "test"}
# MLflow stores a dataset digest in 36 characters; the full sha256 goes into the profile.
DIGEST_CHARS = 16


@dataclass(frozen=True)
class DataInput:
    """One data file as an MLflow dataset input: what it is, how big, in which role."""

    name: str
    digest: str
    path: Path
    sha256: str
    sentences: int
    tokens: int
    context: str

    @classmethod
    def of(cls, source: SourceFile, first: int | None = None) -> DataInput:
        """`source` in the role its split plays; `first` marks a training set cut short."""
        name, digest = source.path.name, source.sha256[:DIGEST_CHARS]
        if first is not None:
            # A prefix of a file is other data than the whole file: it says so in both.
            name = f"{name}[:{first}]"
            digest = hashlib.sha256(f"{source.sha256}:{first}".encode()).hexdigest()
            digest = digest[:DIGEST_CHARS]
        return cls(
            name=name,
            digest=digest,
            path=source.path,
            sha256=source.sha256,
            sentences=source.sentences,
            tokens=source.tokens,
            context=CONTEXTS[source.split],
        )

    @classmethod
    def test_file(cls, path: Path, sentences: int, tokens: int) -> DataInput:
        sha256 = sha256_of(path)
        digest = sha256[:DIGEST_CHARS]
        return cls(path.name, digest, path, sha256, sentences, tokens, CONTEXTS["test"])

    def entity(self) -> DatasetInput:
        profile = {"num_rows": self.sentences, "num_tokens": self.tokens, "sha256": self.sha256}
        dataset = Dataset(
            name=self.name,
            digest=self.digest,
            source_type="local",
            source=json.dumps({"uri": self.path.resolve().as_uri()}),
            profile=json.dumps(profile),
        )
        return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, self.context)])


def training_inputs(dataset: PreparedDataset) -> dict[str, DataInput]:
    """A prepared dataset's train and dev files as MLflow inputs, by split."""
    first = dataset.meta["data_config"].get("max_train_sentences")
    return {
        "train": DataInput.of(dataset.source("train"), first),
        "dev": DataInput.of(dataset.source("dev")),
    }


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
        self.client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        self.client.log_dict(run_id, config, "config.json")
        self.client.log_inputs(run_id, datasets=[data.entity() for data in inputs])
        self.logged_epochs[run_id] = set()
        return run_id

    def log_epochs(self, run_id: str, epochs: Iterable[dict], timestamp_ms: int) -> None:
        """Log the epochs (dicts with `epoch`, the EPOCH_METRICS and any `system/` figures
        the trial read of its process) the run does not hold."""
        new = [e for e in epochs if int(e["epoch"]) not in self.logged_epochs[run_id]]
        if not new:
            return
        metrics = [
            Metric(key, float(epoch[key]), timestamp_ms, int(epoch["epoch"]))
            for epoch in new
            for key in [*EPOCH_METRICS, *sorted(k for k in epoch if k.startswith(SYSTEM_PREFIX))]
        ]
        self.client.log_batch(run_id, metrics=metrics)
        self.logged_epochs[run_id].update(int(epoch["epoch"]) for epoch in new)

    def tag_changes(self, run_id: str, tags: dict[str, str]) -> None:
        """Set the tags whose values changed, in one request, not on every epoch: a reader
        never sees some of a report's tags without the others."""
        known = self.tags.setdefault(run_id, {})
        changed = {key: value for key, value in tags.items() if known.get(key) != value}
        if changed:
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in changed.items()])
            known.update(changed)

    def finish(self, run_id: str, best: dict | None, model: ModelFiles | None) -> None:
        """Close a completed trial's run with its model and best figures, linked together.

        The best figures are logged against the model and the validation data, so the
        model's page in the UI shows what it scored, and on what.
        """
        link = {}
        if model is not None:
            info = model.log(run_id)
            self.client.set_tag(run_id, MODEL_URI_TAG, info.model_uri)
            dev = training_inputs(model.dataset)["dev"]
            link = dict(model_id=info.model_id, dataset_name=dev.name, dataset_digest=dev.digest)
        if best is not None:
            for key in (BEST_VAL_ACCURACY, BEST_EPOCH):
                self.client.log_metric(run_id, key, float(best[key]), **link)
        self.client.set_terminated(run_id, FINISHED)

    def fail(self, run_id: str, error: str) -> None:
        self.client.set_tag(run_id, ERROR_TAG, error[-ERROR_TAG_CHARS:])
        self.client.log_text(run_id, error, "error.txt")
        self.client.set_terminated(run_id, FAILED)

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


# Evaluation runs -------------------------------------------------------------------------


def log_evaluation(
    model_uri: str, version, test: DataInput, headline: dict, files: list[Path]
) -> str:
    """An MLflow run holding an evaluation; its id.

    A registered version's evaluation is nested under the run that trained it, its figures
    linked to the logged model and the test data, and the version links back to it.
    """
    tags = {ROLE_TAG: EVALUATION_ROLE, MODEL_URI_TAG: model_uri, "data": str(test.path)}
    experiment_id, parent, model_id = ensure_experiment(), None, None
    if version is not None:
        tags.update(registered_model=version.name, registered_model_version=version.version)
        if version.run_id:
            parent = version.run_id
            experiment_id = mlflow.MlflowClient().get_run(parent).info.experiment_id
        model_id = getattr(version, "model_id", None)
    name = f"evaluate-{version.name}-v{version.version}" if version else "evaluate"
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=name, tags=tags, parent_run_id=parent
    ) as run:
        client = mlflow.MlflowClient()
        client.log_inputs(run.info.run_id, datasets=[test.entity()])
        link = dict(model_id=model_id, dataset_name=test.name, dataset_digest=test.digest)
        for key, value in headline.items():
            if key != "unknown_tags":
                client.log_metric(run.info.run_id, key, float(value), **link)
        mlflow.log_dict(headline, "evaluation.json")
        for path in files:
            mlflow.log_artifact(str(path), artifact_path="reports")
    if version is not None:
        link_evaluation(version, run.info, test, headline["token_accuracy"])
    return run.info.run_id


# The version description's last paragraph: the latest evaluation, replaced by the next one.
EVALUATION_HEADING = "**Latest evaluation**"


def link_evaluation(version, run, test: DataInput, accuracy: float) -> None:
    """Tag the model version with an evaluation's figures and link the run from its page."""
    client = mlflow.MlflowClient()
    url = run_url(mlflow.get_tracking_uri(), run.experiment_id, run.run_id)
    for key, value in (
        ("evaluation_run_id", run.run_id),
        ("test_token_accuracy", f"{accuracy:.6f}"),
        ("test_data", test.name),
    ):
        client.set_model_version_tag(version.name, version.version, key, value)
    before = client.get_model_version(version.name, version.version).description or ""
    kept = before.split(EVALUATION_HEADING)[0].rstrip()
    paragraph = (
        f"{EVALUATION_HEADING}: {100 * accuracy:.2f}% token accuracy on {test.name} "
        f"({test.tokens:,} tokens), [evaluation run]({url})."
    )
    client.update_model_version(
        version.name, version.version, description=f"{kept}\n\n{paragraph}".lstrip()
    )


# Links into the MLflow UI ----------------------------------------------------------------

# `make ui` serves a local store here.
LOCAL_UI = "http://127.0.0.1:5000"
# Opens MLflow 3's UI on its model-training pages (it starts on its GenAI view otherwise).
ML_VIEW = "workflowType=machine_learning"


def ui_base(uri: str) -> str:
    """Where the UI for tracking URI `uri` is: a tracking server serves its own."""
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_base(uri)}/#/experiments/{experiment_id}/runs/{run_id}?{ML_VIEW}"


def compare_runs_url(uri: str, experiment_id: str, run_ids: list[str]) -> str:
    """The UI's comparison of `run_ids` (parallel coordinates, the metrics side by side)."""
    runs = quote(json.dumps(run_ids, separators=(",", ":")), safe="")
    experiments = quote(json.dumps([experiment_id]), safe="")
    return f"{ui_base(uri)}/#/compare-runs?runs={runs}&experiments={experiments}&{ML_VIEW}"
