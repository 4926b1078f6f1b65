"""Where MLflow runs go: the tracking URI and its credentials, the experiment, datasets as
MLflow inputs, evaluation runs and links into the UI. A sweep's own runs are written by
pipelines/sweep/trial/records.py.

Ray-free, so that `postag tag` and `postag evaluate` do not load Ray to find a tracking URI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import mlflow
from mlflow.entities import Dataset, DatasetInput, InputTag, Run
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID

from pipelines.experiment import experiment_name
from pipelines.names import (
    DATA_TAG,
    EVALUATION_INPUT_TAG,
    EVALUATION_ROLE,
    EVALUATION_RUN_TAG,
    EXPERIMENT_KIND_TAG,
    KILLED,
    MODEL_TRAINING,
    MODEL_URI_TAG,
    REGISTERED_MODEL_TAG,
    REGISTERED_MODEL_VERSION_TAG,
    ROLE_TAG,
    TEST_ACCURACY,
    TEST_DATA_TAG,
)
from pipelines.provenance import code_tags
from postag.data.dataset import PreparedDataset, SourceFile
from postag.data.sources import sha256_of

SQLITE_PREFIX = "sqlite:///"
# Runs read a request: MLflow's own default page (a search returns at most 50,000).
RUNS_PER_PAGE = 1000


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


def sqlite_database(uri: str) -> Path | None:
    """The database file of a sqlite tracking URI; None for any other store."""
    return Path(uri.removeprefix(SQLITE_PREFIX)) if uri.startswith(SQLITE_PREFIX) else None


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


def ensure_experiment(name: str | None = None) -> str:
    """The id of MLflow experiment `name` (experiment_name()'s by default), created if new.

    With a sqlite store, artifacts go to `artifacts/` beside the database file, so that the
    store is one self-contained folder (`mlruns/` by default).
    """
    name = experiment_name(name)
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        if EXPERIMENT_KIND_TAG not in existing.tags:
            mlflow.MlflowClient().set_experiment_tag(
                existing.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING
            )
        return existing.experiment_id
    location = None
    database = sqlite_database(mlflow.get_tracking_uri())
    if database is not None:
        location = (database.parent / "artifacts").resolve().as_uri()
    return mlflow.create_experiment(
        name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING}
    )


def child_runs(experiment_id: str, parent_run_id: str) -> list[Run]:
    """The runs nested under `parent_run_id`: a sweep's trials, every one of them, however
    many pages MLflow returns them in (`make bench-tracking` sweeps 1,000 trials)."""
    client = mlflow.MlflowClient()
    runs: list[Run] = []
    page_token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_run_id}'",
            max_results=RUNS_PER_PAGE,
            page_token=page_token,
        )
        runs.extend(page)
        page_token = page.token
        if not page_token:
            return runs


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


# Evaluation runs -------------------------------------------------------------------------


def log_evaluation(
    model_uri: str,
    version,
    test: DataInput,
    headline: dict,
    files: list[Path],
    raw_text: bool = False,
    own_test: bool = False,
) -> str:
    """An MLflow run holding an evaluation; its id.

    A registered version's evaluation is nested under the run that trained it, its figures
    linked to the logged model and the test data, and the version records it by dataset
    (`record_evaluation`); `own_test` says the data is the model's own test set. An
    evaluation from raw text (`raw_text`) is tagged so and leaves the version's records,
    which are the gold-token evaluations', as they are.
    """
    tags = {ROLE_TAG: EVALUATION_ROLE, MODEL_URI_TAG: model_uri, DATA_TAG: str(test.path)}
    tags.update(code_tags())
    tags[EVALUATION_INPUT_TAG] = "raw text" if raw_text else "gold tokens"
    experiment_id, parent, model_id = evaluation_home(version)
    if version is not None:
        tags.update(
            {REGISTERED_MODEL_TAG: version.name, REGISTERED_MODEL_VERSION_TAG: version.version}
        )
    name = f"evaluate-{version.name}-v{version.version}" if version else "evaluate"
    name += "-raw-text" if raw_text else ""
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=name, tags=tags, parent_run_id=parent
    ) as run:
        try:
            client = mlflow.MlflowClient()
            client.log_inputs(run.info.run_id, datasets=[test.entity()])
            link = dict(model_id=model_id, dataset_name=test.name, dataset_digest=test.digest)
            for key, value in headline.items():
                if key != "unknown_tags":
                    client.log_metric(run.info.run_id, key, float(value), **link)
            mlflow.log_dict(headline, "evaluation.json")
            for path in files:
                mlflow.log_artifact(str(path), artifact_path="reports")
        except KeyboardInterrupt:
            mlflow.end_run(KILLED)  # a stop, where MLflow's own exit would say FAILED
            raise
    if version is not None and not raw_text:
        record_evaluation(version, run.info, test, headline["token_accuracy"], own_test)
    return run.info.run_id


def evaluation_home(version) -> tuple[str, str | None, str | None]:
    """(experiment id, parent run id, logged model id) of an evaluation of `version`:
    beside the run that trained it; a model with none (a runs:/ URI, a file) goes to the
    configured experiment, made only then."""
    if version is None:
        return ensure_experiment(), None, None
    model_id = getattr(version, "model_id", None)
    if not version.run_id:
        return ensure_experiment(), None, model_id
    experiment_id = mlflow.MlflowClient().get_run(version.run_id).info.experiment_id
    return experiment_id, version.run_id, model_id


# The version description's last part: a line a dataset, its latest evaluation.
EVALUATIONS_HEADING = "**Evaluations** (the latest on each dataset):"
# Characters an MLflow tag key cannot hold.
TAG_UNSAFE = re.compile(r"[^\w\-. ]")
# What descriptions written before evaluations were kept by dataset end with.
OLD_EVALUATION_HEADING = "**Latest evaluation**"


def record_evaluation(version, run, test: DataInput, accuracy: float, own_test: bool) -> None:
    """The version's records of an evaluation, by dataset: its figure and run as tags
    (`evaluation/<dataset>/...`) and a line of its description, each replacing only the
    same dataset's. Only the model's own test set (`own_test`) sets the version's test
    figure (test_token_accuracy, test_data, evaluation_run_id): evaluating on GUM adds GUM's
    beside EWT test's and replaces neither."""
    client = mlflow.MlflowClient()
    url = run_url(mlflow.get_tracking_uri(), run.experiment_id, run.run_id)
    figures = {
        evaluation_tag(test.name, TEST_ACCURACY): f"{accuracy:.6f}",
        evaluation_tag(test.name, EVALUATION_RUN_TAG): run.run_id,
    }
    if own_test:
        figures.update(
            {
                EVALUATION_RUN_TAG: run.run_id,
                TEST_ACCURACY: f"{accuracy:.6f}",
                TEST_DATA_TAG: test.name,
            }
        )
    for key, value in figures.items():
        client.set_model_version_tag(version.name, version.version, key, value)
    before = client.get_model_version(version.name, version.version).description or ""
    line = (
        f"- {test.name}: {100 * accuracy:.2f}% token accuracy ({test.tokens:,} tokens), "
        f"[evaluation run]({url})"
    )
    client.update_model_version(
        version.name, version.version, description=with_evaluation(before, test.name, line)
    )


def evaluation_tag(dataset: str, key: str) -> str:
    """A version tag of one dataset's evaluation; MLflow's tag keys take letters, digits,
    `_-. /` only, so other characters of a file name become `_`."""
    return f"evaluation/{TAG_UNSAFE.sub('_', dataset)}/{key}"


def with_evaluation(description: str, dataset: str, line: str) -> str:
    """`description` whose evaluations part has `line` for `dataset`, in place of that
    dataset's earlier line, the others kept in their order."""
    text, _, listed = description.partition(EVALUATIONS_HEADING)
    text = text.split(OLD_EVALUATION_HEADING)[0].rstrip()
    lines = [kept for kept in listed.strip().splitlines() if kept.startswith("- ")]
    mine = f"- {dataset}: "
    if any(kept.startswith(mine) for kept in lines):
        lines = [line if kept.startswith(mine) else kept for kept in lines]
    else:
        lines.append(line)
    body = "\n".join([EVALUATIONS_HEADING, *lines])
    return f"{text}\n\n{body}" if text else body


# Links into the MLflow UI ----------------------------------------------------------------

# Database servers a store URI may name, by scheme, and their default ports.
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
DATABASE_PROBE_S = 3.0
# `make ui` serves a local store here.
LOCAL_UI = "http://127.0.0.1:5000"
# Opens MLflow 3's UI on its model-training pages (it starts on its GenAI view otherwise).
ML_VIEW = "workflowType=machine_learning"


def ui_base(uri: str) -> str:
    """Where the UI for tracking URI `uri` is: a tracking server serves its own."""
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI


def experiment_url(uri: str, experiment_id: str) -> str:
    """The experiment's own page: its table of runs, in the UI's model-training mode."""
    return f"{ui_base(uri)}/#/experiments/{experiment_id}/runs?{ML_VIEW}"


def experiment_page(store_uri: str, host: str, port: int, name: str | None = None) -> str:
    """What `make ui` and `make mlflow-server` say first: the link to experiment `name`'s
    runs (experiment_name()'s by default) on the UI they serve at `host`:`port`, or, before
    any sweep has made the experiment, where it will be. A server bound to every address
    answers a browser on loopback."""
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    name = experiment_name(name)
    unreachable = database_unreachable(store_uri)
    if unreachable is not None:
        return f"the UI's experiments: {base}/#/experiments?{ML_VIEW} (the store: {unreachable})"
    try:
        experiment = mlflow.MlflowClient(store_uri).get_experiment_by_name(name)
    except Exception as error:  # noqa: BLE001 (any store's fault: the server says it next)
        # A courtesy line must not keep the UI from starting, nor print a traceback: the
        # store's own fault (PostgreSQL down, a typo) is the server's to report, in full.
        why = str(error).splitlines()[0]
        return f"the UI's experiments: {base}/#/experiments?{ML_VIEW} (the store: {why})"
    if experiment is None:
        return (
            f"no experiment '{name}' in {without_credentials(store_uri)} yet "
            f"(make sweep makes it); the UI's experiments: {base}/#/experiments?{ML_VIEW}"
        )
    return f"postag's runs ({name}): {experiment_url(base, experiment.experiment_id)}"


def database_unreachable(store_uri: str) -> str | None:
    """Why a database server the store URI names cannot be reached, in words; None where it
    answers or the store is no server's (sqlite, a folder, a Unix socket). A TCP connect of
    a few seconds, where MLflow's engine would retry for about two minutes first."""
    parts = urlsplit(store_uri)
    engine = parts.scheme.partition("+")[0]
    if engine not in DATABASE_PORTS or not parts.hostname:
        return None
    address = (parts.hostname, parts.port or DATABASE_PORTS[engine])
    try:
        socket.create_connection(address, timeout=DATABASE_PROBE_S).close()
    except OSError as error:
        return f"cannot reach {engine} at {address[0]}:{address[1]} ({error.strerror or error})"
    return None


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_base(uri)}/#/experiments/{experiment_id}/runs/{run_id}?{ML_VIEW}"


def artifact_url(uri: str, experiment_id: str, run_id: str, path: str) -> str:
    """A run's page opened on one of its artifacts (the UI's `artifactPath` route)."""
    return (
        f"{ui_base(uri)}/#/experiments/{experiment_id}/runs/{run_id}/artifactPath/{path}?{ML_VIEW}"
    )


def compare_runs_url(uri: str, experiment_id: str, run_ids: list[str]) -> str:
    """The UI's comparison of `run_ids` (parallel coordinates, the metrics side by side)."""
    runs = quote(json.dumps(run_ids, separators=(",", ":")), safe="")
    experiments = quote(json.dumps([experiment_id]), safe="")
    return f"{ui_base(uri)}/#/compare-runs?runs={runs}&experiments={experiments}&{ML_VIEW}"
