"""Where runs go: the default store, the experiment's kind, and links into the UI."""

from __future__ import annotations

import json
from urllib.parse import unquote

import mlflow

from pipelines.tracking import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING,
    compare_runs_url,
    ensure_experiment,
    run_url,
    tracking_uri,
    ui_base,
)


def test_without_a_uri_runs_go_to_the_projects_sqlite_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


def test_the_experiment_is_made_once_and_tagged_as_model_training(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    first = ensure_experiment("postag")
    assert ensure_experiment("postag") == first
    experiment = mlflow.get_experiment(first)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    # Artifacts sit beside the database, so the store is one folder.
    assert experiment.artifact_location.startswith(f"file://{tmp_path}")


def test_ui_links_point_at_the_server_or_at_make_ui():
    assert ui_base("http://team:5001/") == "http://team:5001"
    assert run_url("http://team:5001", "3", "abc").startswith(
        "http://team:5001/#/experiments/3/runs/abc"
    )
    local = ui_base("sqlite:////tmp/x.db")
    url = compare_runs_url("sqlite:////tmp/x.db", "1", ["a", "b"])
    assert url.startswith(f"{local}/#/compare-runs?")
    assert json.loads(unquote(url.split("runs=")[1].split("&")[0])) == ["a", "b"]
