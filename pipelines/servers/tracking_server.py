"""`make mlflow-server` / `postag mlflow-server`: one MLflow tracking server for a team or a
cluster, artifacts proxied by the server so that trials need no shared disk.

    make mlflow-server                                            # sqlite, on 127.0.0.1:5001
    make mlflow-server BACKEND_STORE=postgresql://mlflow@db-host:5432/mlflow
    MLFLOW_AUTH_ADMIN_PASSWORD=... make mlflow-server AUTH=1      # logins required

With AUTH=1 it runs MLflow's basic-auth app: every request needs a user and password. The
first start creates the admin user (MLFLOW_AUTH_ADMIN_USERNAME, default `admin`) with the
password in MLFLOW_AUTH_ADMIN_PASSWORD: an environment variable, never a command-line
argument that `ps` would show. Sweeps log in with MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD. Basic auth sends the password with every request: over anything
but loopback, put TLS in front (README, Scaling out).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from pipelines.cli import command_parser, exec_mlflow, fail, mlflow_cli
from pipelines.tracking import experiment_page

PROG = "postag mlflow-server"
AUTH_APP = "basic-auth"
AUTH_CONFIG = "basic_auth.ini"
AUTH_DATABASE = "basic_auth.db"
CSRF_SECRET_FILE = "flask_secret_key"
DEFAULT_ADMIN = "admin"
# What a user who is not granted more may do: read every experiment, change none.
DEFAULT_PERMISSION = "READ"
# Every request carries the password, and checking it against its hash costs tens of
# milliseconds by design: MLflow's cache of good logins makes that once a minute per user
# and server worker. A changed password reaches the other workers within this time.
LOGIN_CACHE_SECONDS = 60
# MLflow's job runner serves its GenAI features (scorers, trace roll-ups), which this project
# does not use; it starts seven more processes that each import MLflow. Set the variable to
# true to have it.
SERVER_ENVIRONMENT = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def auth_config(folder: Path, admin: str) -> str:
    """MLflow's basic-auth settings: its user store beside the server's files, no password."""
    return (
        "[mlflow]\n"
        f"default_permission = {DEFAULT_PERMISSION}\n"
        f"database_uri = sqlite:///{(folder / AUTH_DATABASE).resolve()}\n"
        f"admin_username = {admin}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {LOGIN_CACHE_SECONDS}\n"
    )


def server_command(args) -> list[str]:
    command = [
        mlflow_cli(),
        "server",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        str(args.workers),
        "--backend-store-uri",
        args.backend_store,
        "--artifacts-destination",
        args.artifacts_destination,
        "--serve-artifacts",
    ]
    if args.auth:
        command += ["--app-name", AUTH_APP]
    return command


def auth_environment(folder: Path) -> dict[str, str]:
    """The variables MLflow's auth app reads; the admin password must be there on first start."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / AUTH_CONFIG
    admin = os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME", DEFAULT_ADMIN)
    config.write_text(auth_config(folder, admin))
    if not (folder / AUTH_DATABASE).exists() and not os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD"):
        raise ValueError(
            "AUTH=1 starts a new user store, which needs the admin's password: set "
            "MLFLOW_AUTH_ADMIN_PASSWORD (not on the command line, where `ps` shows it)"
        )
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": csrf_secret(folder),
    }


def csrf_secret(folder: Path) -> str:
    """The key the auth app signs its CSRF tokens with: the user's, else one made once and
    kept beside the user store (mode 600), so that a restart keeps sessions valid."""
    given = os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
    if given:
        return given
    path = folder / CSRF_SECRET_FILE
    if not path.exists():
        path.write_text(secrets.token_hex(32))
    path.chmod(0o600)
    return path.read_text().strip()


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(PROG, __doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--backend-store", required=True, help="sqlite:///... or postgresql://...")
    parser.add_argument("--artifacts-destination", required=True)
    parser.add_argument("--auth", action="store_true", help="require logins (basic auth)")
    parser.add_argument(
        "--auth-folder",
        type=Path,
        default=Path("mlruns/server"),
        help="where the auth app keeps its settings and users",
    )
    args = parser.parse_args(argv)
    env = {**SERVER_ENVIRONMENT, **os.environ}
    if args.auth:
        try:
            env.update(auth_environment(args.auth_folder))
        except ValueError as error:
            return fail(PROG, error, 2)
    print(experiment_page(args.backend_store, args.host, args.port), flush=True)
    exec_mlflow(server_command(args), env)
    return 0  # not reached: the server replaced this process


if __name__ == "__main__":
    sys.exit(main())
