"""Where runs go: the default store, the experiment's kind, a sweep's runs read back, and
links into the UI."""

from __future__ import annotations

import json
from urllib.parse import unquote

import mlflow
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipelines import tracking
from pipelines.names import EXPERIMENT_KIND_TAG, MODEL_TRAINING
from pipelines.tracking import (
    child_runs,
    compare_runs_url,
    database_unreachable,
    ensure_experiment,
    experiment_page,
    run_url,
    tracking_uri,
    ui_base,
)
from tests.helpers import free_port


def test_without_a_uri_runs_go_to_the_projects_sqlite_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


def test_the_experiment_is_made_once_and_tagged_as_model_training(tmp_path, sqlite_store):
    mlflow.set_tracking_uri(sqlite_store(tmp_path))
    first = ensure_experiment("postag")
    assert ensure_experiment("postag") == first
    experiment = mlflow.get_experiment(first)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    # Artifacts sit beside the database, so the store is one folder.
    assert experiment.artifact_location.startswith(f"file://{tmp_path}")


def test_every_run_of_a_sweep_is_read_back_however_many_pages_it_takes(
    tmp_path, monkeypatch, sqlite_store
):
    mlflow.set_tracking_uri(sqlite_store(tmp_path))
    experiment_id = ensure_experiment("postag")
    client = mlflow.MlflowClient()
    parent = client.create_run(experiment_id).info.run_id
    nested = {MLFLOW_PARENT_RUN_ID: parent}
    made = {client.create_run(experiment_id, tags=nested).info.run_id for _ in range(7)}
    client.create_run(experiment_id)  # another sweep's, or none's
    # Seven runs in pages of three: a sweep of 1,000 trials in MLflow's pages of 1,000.
    monkeypatch.setattr(tracking, "RUNS_PER_PAGE", 3)
    assert {run.info.run_id for run in child_runs(experiment_id, parent)} == made


def test_ui_links_point_at_the_server_or_at_make_ui():
    assert ui_base("http://team:5001/") == "http://team:5001"
    assert run_url("http://team:5001", "3", "abc").startswith(
        "http://team:5001/#/experiments/3/runs/abc"
    )
    local = ui_base("sqlite:////tmp/x.db")
    url = compare_runs_url("sqlite:////tmp/x.db", "1", ["a", "b"])
    assert url.startswith(f"{local}/#/compare-runs?")
    assert json.loads(unquote(url.split("runs=")[1].split("&")[0])) == ["a", "b"]


def test_the_uis_first_line_names_the_configured_experiment_or_says_why_not(
    tmp_path, sqlite_store, monkeypatch
):
    store = sqlite_store(tmp_path)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "team-runs")
    line = experiment_page(store, "0.0.0.0", 5055)
    assert line.startswith("no experiment 'team-runs' in ") and "http://127.0.0.1:5055/" in line
    mlflow.set_tracking_uri(store)
    experiment = tracking.ensure_experiment()
    mlflow.set_tracking_uri(None)
    assert experiment_page(store, "127.0.0.1", 5055) == (
        f"postag's runs (team-runs): http://127.0.0.1:5055/#/experiments/{experiment}/runs?"
        "workflowType=machine_learning"
    )
    assert experiment_page(store, "127.0.0.1", 5055, "other").startswith("no experiment 'other'")


def test_a_database_that_does_not_answer_is_said_at_once(monkeypatch):
    """PostgreSQL down: a line naming it within the probe's seconds, not after the two
    minutes MLflow's engine retries for, and no traceback."""
    port = free_port()  # nothing listens there
    line = experiment_page(f"postgresql://postag:secret@127.0.0.1:{port}/mlflow", "127.0.0.1", 1)
    assert line.startswith("the UI's experiments: http://127.0.0.1:1/#/experiments?")
    assert f"cannot reach postgresql at 127.0.0.1:{port}" in line and "secret" not in line
    assert database_unreachable("sqlite:///mlruns/mlflow.db") is None
    assert database_unreachable("postgresql:///mlflow?host=/var/run/postgresql") is None
