"""Real services for the scaling-out tests: an `mlflow server` process and sweep drivers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

START_LIMIT_SECONDS = 90
POLL_SECONDS = 0.5
SWEEP_LIMIT_SECONDS = 420


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """`mlflow server` on loopback, as `make mlflow-server` starts it: sqlite, proxied artifacts.

    It can be stopped and started again on the same port and store, as a restart would.
    """

    def __init__(self, folder: Path, backend_store: str | None = None):
        self.folder = folder
        self.backend_store = backend_store or f"sqlite:///{folder / 'mlflow.db'}"
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).with_name("mlflow")), "server",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", self.backend_store,
            "--artifacts-destination", str(self.folder / "artifacts"), "--serve-artifacts",
        ]  # fmt: skip
        with (self.folder / "server.log").open("a") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        answers(self.process, f"{self.uri}/health", self.folder / "server.log")

    def stop(self) -> None:
        stop_group(self.process)


def answers(process: subprocess.Popen, url: str, log: Path) -> None:
    """Wait until `url` answers 200; fail with the log if the process ends first."""
    deadline = time.monotonic() + START_LIMIT_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(POLL_SECONDS)
    raise AssertionError(f"{url} did not answer in {START_LIMIT_SECONDS} s: {log}")


def stop_group(process: subprocess.Popen | None) -> None:
    """Kill a server started in a session of its own, with the workers it started."""
    if process is not None and process.poll() is None:
        os.killpg(process.pid, 9)
        process.wait()


class ModelServer:
    """`postag serve` (what `make serve` runs) on loopback, serving a store's model."""

    def __init__(self, folder: Path, tracking_uri: str, model: str = "models:/postag-tagger@best"):
        self.folder, self.tracking_uri, self.model = folder, tracking_uri, model
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pipelines.serve", "--model", self.model,
                   "--port", str(self.port)]  # fmt: skip
        env = {**os.environ, "MLFLOW_TRACKING_URI": self.tracking_uri}
        with (self.folder / "serve.log").open("a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True)  # fmt: skip
        answers(self.process, f"{self.url}/ping", self.folder / "serve.log")

    def stop(self) -> None:
        stop_group(self.process)


def write_experiment(folder: Path, ewt_slice: dict, values: dict) -> Path:
    """An experiment file over the EWT slice, its prepared data cached in `folder`; the
    experiment's other data settings (`lowercase_words`) are kept."""
    data = {"train": str(ewt_slice["train"]), "dev": str(ewt_slice["dev"]),
            "cache_dir": str(folder / "cache")}  # fmt: skip
    path = folder / f"{values['sweep']['name']}.yaml"
    path.write_text(yaml.safe_dump({**values, "data": {**values.get("data", {}), **data}}))
    return path


def start_sweep(config: Path, folder: Path, env: dict, *extra: str) -> subprocess.Popen:
    """`python -m pipelines.sweep` in its own process group, its output in driver.log."""
    command = [sys.executable, "-m", "pipelines.sweep", "--config", str(config),
               "--storage", str(folder / "tune"), *extra]  # fmt: skip
    with (folder / "driver.log").open("a") as log:
        return subprocess.Popen(
            command,
            env={**os.environ, **env},
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(condition, process: subprocess.Popen, limit: float = SWEEP_LIMIT_SECONDS) -> None:
    """Poll `condition` while the sweep runs; fail if it ends first or time runs out."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.poll() is None, "the sweep ended before the condition held"
        time.sleep(POLL_SECONDS)
    raise AssertionError("timed out waiting for the sweep")


def trial_runs(client) -> list:
    """Every trial and baseline run of experiment `postag` (not sweeps' parent runs, nor the
    evaluation runs nested under registered trials)."""
    experiment = client.get_experiment_by_name("postag")
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], "tags.role != 'sweep'")
    return [run for run in runs if run.data.tags.get("role") in ("trial", "deep-baseline")]
