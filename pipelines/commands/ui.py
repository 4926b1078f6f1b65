"""MLflow's UI over a tracking store on this machine (what `make ui` runs): its first line
is the link to postag's runs, on the UI's model-training pages; then MLflow's own server
takes over the process. Ctrl-C stops it."""

from __future__ import annotations

import os
import sys

from pipelines.cli import add_experiment_file_argument, command_parser, exec_mlflow, mlflow_cli
from pipelines.experiment import configured_names
from pipelines.tracking import experiment_page
from postag.config import ConfigError

PROG = "postag ui"


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(PROG, __doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--backend-store-uri", required=True)
    parser.add_argument("--default-artifact-root", required=True)
    add_experiment_file_argument(parser, "whose sweep.experiment is the one to link")
    args = parser.parse_args(argv)
    try:
        name = configured_names(args.experiment).experiment
    except ConfigError as error:
        parser.error(str(error))
    print(experiment_page(args.backend_store_uri, args.host, args.port, name), flush=True)
    command = [mlflow_cli(), "ui", "--host", args.host, "--port", str(args.port)]
    command += ["--backend-store-uri", args.backend_store_uri]
    command += ["--default-artifact-root", args.default_artifact_root]
    exec_mlflow(command, dict(os.environ))
    return 0  # not reached: the UI replaced this process


if __name__ == "__main__":
    sys.exit(main())
