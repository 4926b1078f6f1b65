"""`make serve` / `postag serve`: a registered tagger over HTTP, with MLflow's own server.

    make serve                                    # models:/postag-tagger@best, 127.0.0.1:5002
    make serve EXPERIMENT=experiments/mine.yaml   # best of the model that file registers
    make serve MODEL=models:/postag-tagger/3 SERVE_PORT=8080 SERVE_WORKERS=2
    curl -s 127.0.0.1:5002/invocations -H 'Content-Type: application/json' \\
        -d '{"dataframe_records": [{"tokens": ["I", "saw", "her", "duck", "."]}]}'
    # {"predictions": [{"tokens": ["I", "saw", "her", "duck", "."], "tags": ["PRP", ...]}]}
    curl -s 127.0.0.1:5002/invocations -H 'Content-Type: application/json' \\
        -d '{"dataframe_records": [{"text": "Is it raining? Yes, a lot."}]}'   # raw text

The model is found first, so a missing one is a one-line error, not a server's traceback;
then `mlflow models serve` takes over this process. It runs in this virtual environment
(`--env-manager local`): no conda, nothing downloaded. A malformed request gets a 400 with
MLflow's message.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import mlflow

from pipelines.cli import (
    add_model_arguments,
    chosen_model,
    command_parser,
    exec_mlflow,
    fail,
    mlflow_cli,
    not_found_message,
)
from pipelines.tracking import tracking_uri
from postag.config import ConfigError
from postag.serving.registry import ModelNotFound, find_version

PROG = "postag serve"
DEFAULT_HOST = "127.0.0.1"  # this machine only; put a proxy with TLS in front to share it
DEFAULT_PORT = 5002
EXAMPLE = '{"dataframe_records": [{"tokens": ["I", "saw", "her", "duck", "."]}]}'


def serve_command(uri: str, host: str, port: int, workers: int = 1) -> list[str]:
    """`mlflow models serve` from this environment's own mlflow, with `workers` server
    processes (each loads the model and tags requests on its own)."""
    return [
        mlflow_cli(),
        "models",
        "serve",
        "--model-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--env-manager",
        "local",
        "--workers",
        str(workers),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(PROG, __doc__)
    add_model_arguments(parser, "a models:/ URI")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (make bench-serve compares 1, 2)"
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    uri = tracking_uri(Path.cwd())
    mlflow.set_tracking_uri(uri)
    try:
        args.model = chosen_model(args.model, args.experiment)
        version = find_version(args.model)
    except ModelNotFound as error:
        return fail(PROG, not_found_message(error), 2)
    except ConfigError as error:
        return fail(PROG, error, 2)
    which = f" (version {version.version})" if version is not None else ""
    print(
        f"serving {args.model}{which} at http://{args.host}:{args.port}/invocations; try:\n"
        f"  curl -s http://{args.host}:{args.port}/invocations "
        f"-H 'Content-Type: application/json' -d '{EXAMPLE}'",
        flush=True,
    )
    command = serve_command(args.model, args.host, args.port, args.workers)
    exec_mlflow(command, {**os.environ, "MLFLOW_TRACKING_URI": uri})
    return 0  # not reached: the server replaced this process


if __name__ == "__main__":
    sys.exit(main())
