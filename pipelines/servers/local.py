"""Throwaway services on loopback, for benchmarks and tests: Debian's PostgreSQL in a data
folder of its own, `mlflow server` started as `make mlflow-server` starts it, and a model
served as `make serve` serves it.

Each listens on a free port of 127.0.0.1, can be stopped and started again on the same port
and data (a restart), and is killed with everything it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# How long a service may take to answer after its start (a cold `mlflow server` imports a lot).
START_LIMIT_SECONDS = 90
POLL_SECONDS = 0.5
POSTGRES_PROGRAMS = Path("/usr/lib/postgresql")  # Debian keeps them off PATH


class ServiceDidNotStart(RuntimeError):
    """A local service ended, or did not answer, on its start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_answers(
    process: subprocess.Popen, url: str, log: Path, limit: float = START_LIMIT_SECONDS
) -> None:
    """Return once `url` answers 200; raise, naming the log, if the process ends first or
    `limit` seconds pass."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceDidNotStart(
                f"the process to answer {url} ended (exit {process.returncode}); the end of "
                f"its log, {log}:\n{log.read_text()[-4000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(POLL_SECONDS)
    stop_group(process)
    raise ServiceDidNotStart(f"{url} did not answer in {limit:.0f} s; its log: {log}")


def stop_group(process: subprocess.Popen | None) -> None:
    """Kill a service started in a session of its own, with the workers it started."""
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class MlflowServer:
    """`mlflow server` on loopback through `postag mlflow-server` (what `make mlflow-server`
    runs): sqlite unless told otherwise, artifacts proxied by the server, logins if asked."""

    def __init__(
        self, folder: Path, backend_store: str | None = None, admin_password: str | None = None
    ):
        self.folder = folder
        self.backend_store = backend_store or f"sqlite:///{folder / 'mlflow.db'}"
        # With a password, logins are required (`make mlflow-server AUTH=1`) and it is admin's.
        self.admin_password = admin_password
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "pipelines.servers.tracking_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store",
            self.backend_store,
            "--artifacts-destination",
            str(self.folder / "artifacts"),
        ]
        env = dict(os.environ)
        if self.admin_password is not None:
            command += ["--auth", "--auth-folder", str(self.folder)]
            env["MLFLOW_AUTH_ADMIN_PASSWORD"] = self.admin_password
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        wait_until_answers(self.process, f"{self.uri}/health", self.log)

    def stop(self) -> None:
        stop_group(self.process)


class ModelServer:
    """`postag serve` (what `make serve` runs) on loopback: a model of a tracking store, with
    `workers` server processes; its output goes to `log`. It must answer /ping, the model
    loaded, within `start_limit` seconds."""

    def __init__(
        self,
        log: Path,
        tracking_uri: str,
        model: str = "models:/postag-tagger@best",
        workers: int = 1,
        port: int | None = None,
        start_limit: float = START_LIMIT_SECONDS,
    ):
        self.log, self.tracking_uri, self.model, self.workers = log, tracking_uri, model, workers
        self.port = port or free_port()
        self.start_limit = start_limit
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pipelines.commands.serve", "--model", self.model]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", str(self.workers)]
        env = {**os.environ, "MLFLOW_TRACKING_URI": self.tracking_uri}
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        wait_until_answers(self.process, f"{self.url}/ping", self.log, self.start_limit)

    def stop(self) -> None:
        stop_group(self.process)


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's programs; None where Debian's package is missing."""
    found = sorted(POSTGRES_PROGRAMS.glob("*/bin/initdb"))
    return found[-1].parent if found else None


class PostgresServer:
    """Debian's PostgreSQL on loopback, in a data folder of its own, one database `mlflow`.

    PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user that
    Debian's package creates, so the folder must not be one only root can enter.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.data = folder / "pgdata"
        self.port = free_port()
        programs = postgres_bin()
        if programs is None:
            raise ServiceDidNotStart(
                f"PostgreSQL is not installed (no {POSTGRES_PROGRAMS}/*/bin/initdb): "
                "apt-get install postgresql"
            )
        self.bin = programs

    @property
    def uri(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/mlflow"

    def run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_LIMIT_SECONDS)
        if done.returncode != 0:
            raise ServiceDidNotStart(
                f"{program} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"
            )

    def start(self) -> None:
        if self.data.exists():
            self.pg_ctl("start")
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust")
        self.pg_ctl("start")
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "mlflow")

    def pg_ctl(self, action: str, *args: str) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder}"
        log = str(self.folder / "postgres.log")
        self.run("pg_ctl", action, "-D", str(self.data), "-w", "-o", options, "-l", log, *args)

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "immediate")
