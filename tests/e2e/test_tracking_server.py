"""`make mlflow-server AUTH=1`: a tracking server that asks for a login, and sweeps against it.

The real MLflow basic-auth app on loopback; the sweeps are real drivers in their own
processes, logging in with MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from pipelines.cli import sweep_command
from tests.helpers import MlflowServer, trial_runs, write_experiment

PASSWORD = "pa55-for-admin-only"
SWEEP = {
    "model": {"embedding_dim": 16, "hidden_size": 16, "num_layers": 1, "ff_dims": [16]},
    "train": {"epochs": 2, "batch_size": 32},
    "sweep": {
        "name": "login",
        "space": {"train.lr": [0.003, 0.005]},
        "baseline": {"train.lr": 0.001, "model.num_layers": 3, "train.epochs": 1},
        "max_concurrent_trials": 1,
        "cpus_per_trial": 1,
    },
}


@pytest.fixture(scope="module")
def login_server(tmp_path_factory, sqlite_store):
    folder = tmp_path_factory.mktemp("auth-server")
    sqlite_store(folder)  # where the server keeps its runs
    server = MlflowServer(folder, admin_password=PASSWORD)
    server.start()
    yield server
    server.stop()


def sweep_as(user: str, password: str, server: MlflowServer, folder: Path, ewt_slice):
    config = write_experiment(folder, ewt_slice, SWEEP)
    env = {
        "MLFLOW_TRACKING_URI": server.uri,
        "MLFLOW_TRACKING_USERNAME": user,
        "MLFLOW_TRACKING_PASSWORD": password,
        "RAY_ADDRESS": "local",
    }
    return subprocess.run(
        sweep_command(config, folder / "tune"),
        env={**os.environ, **env},
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=420,
    )


def test_a_wrong_password_stops_the_sweep_before_any_trial(login_server, tmp_path, ewt_slice):
    done = sweep_as("admin", "not-the-password", login_server, tmp_path, ewt_slice)
    assert done.returncode == 2
    assert "refused the login of user 'admin' (HTTP 401)" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "tune").exists()  # no trial, no Tune state


def test_a_sweep_logs_in_and_its_password_reaches_no_record(login_server, tmp_path, ewt_slice):
    done = sweep_as("admin", PASSWORD, login_server, tmp_path, ewt_slice)
    assert done.returncode == 0, done.stderr
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        client = mlflow.MlflowClient(login_server.uri)
        runs = trial_runs(client)
        assert {run.info.status for run in runs} == {"FINISHED"} and len(runs) == 3
        parents = client.search_runs([runs[0].info.experiment_id], "tags.role = 'sweep'")
        assert client.get_model_version_by_alias("postag-tagger", "best").run_id
    for run in [*runs, *parents]:
        assert PASSWORD not in repr(run.data.params) + repr(run.data.tags)
    assert PASSWORD not in done.stdout + done.stderr
    for folder in (login_server.folder / "artifacts", tmp_path / "tune", tmp_path / "runs"):
        for path in Path(folder).rglob("*"):
            if path.is_file():
                assert PASSWORD.encode() not in path.read_bytes(), path


def test_a_new_login_server_needs_the_admin_password_from_the_environment(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.servers.tracking_server",
            "--auth",
            "--auth-folder",
            str(tmp_path),
            "--backend-store",
            f"sqlite:///{tmp_path / 'db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        env={"PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "set MLFLOW_AUTH_ADMIN_PASSWORD" in done.stderr


def test_make_mlflow_server_auth_runs_the_basic_auth_app():
    dry = subprocess.run(
        ["make", "-n", "mlflow-server", "AUTH=1"], capture_output=True, text=True, check=True
    )
    assert "postag mlflow-server" in dry.stdout and "--auth" in dry.stdout
