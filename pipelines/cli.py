"""The `postag` command: one sub-command per pipeline module, each a `main(argv)` of its own."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postag.serving.registry import ModelNotFound

# What a shell reports for a command ended by Ctrl-C; the commands return it when stopped.
INTERRUPTED_EXIT_CODE = 130
# Imported on use, so `postag train` does not pay for importing Ray and MLflow.
COMMANDS = {
    "train": "pipelines.commands.train",
    "bench": "pipelines.bench.training.race",
    "bench-chars": "pipelines.bench.training.chars",
    "bench-profile": "pipelines.bench.training.profile",
    "bench-sweep": "pipelines.bench.sweeps.timing",
    "bench-scale": "pipelines.bench.sweeps.scale",
    "bench-text": "pipelines.bench.training.text",
    "bench-serve": "pipelines.bench.serving.load",
    "bench-tracking": "pipelines.bench.sweeps.tracking",
    "sweep": "pipelines.sweep.driver",
    "evaluate": "pipelines.commands.evaluate",
    "reproduce": "pipelines.commands.reproduce",
    "tag": "pipelines.commands.tag",
    "serve": "pipelines.commands.serve",
    "ui": "pipelines.commands.ui",
    "mlflow-server": "pipelines.servers.tracking_server",
    "ray-node": "pipelines.servers.ray_node",
}


def command_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A sub-command's parser: its module docstring, with its layout kept, as the help."""
    return argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def sweep_command(config: Path, storage: str | Path, *extra: str) -> list[str]:
    """The command line that runs a sweep driver in a process of its own."""
    config_and_storage = ["--config", str(config), "--storage", str(storage)]
    return [sys.executable, "-m", "pipelines.sweep", *config_and_storage, *extra]


def mlflow_cli() -> str:
    """This environment's own `mlflow` command."""
    return str(Path(sys.executable).with_name("mlflow"))


def exec_mlflow(command: list[str], env: dict[str, str]) -> None:
    """Replace this process with `command` (an `mlflow` server), this environment's bin first
    on PATH: MLflow starts its web server (uvicorn, gunicorn) by name."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    os.execve(command[0], command, {**env, "PATH": path})


def add_model_arguments(parser: argparse.ArgumentParser, what: str = "MLflow model URI") -> None:
    """--model, and --experiment for the file whose registered model's `best` is the default."""
    parser.add_argument(
        "--model",
        help=f"{what} (default: models:/NAME@best, NAME the registered model that --experiment's "
        "sweep.registered_model, else $POSTAG_REGISTERED_MODEL, names, else postag-tagger)",
    )
    add_experiment_file_argument(parser, "whose sweep.registered_model names the default model")


def add_experiment_file_argument(parser: argparse.ArgumentParser, why: str) -> None:
    parser.add_argument("--experiment", type=Path, metavar="FILE", help=f"an experiment file {why}")


def chosen_model(model: str | None, experiment: Path | None) -> str:
    """`model` (--model, or a run), else `best` of the registered model that experiment
    file (or the environment) names."""
    from pipelines.experiment import configured_names
    from postag.serving.registry import best_model_uri

    if model:
        return model
    return best_model_uri(configured_names(experiment).registered_model)


def fail(prog: str, error: BaseException | str, code: int, kind: str = "error") -> int:
    """One line on stderr in place of a traceback; the exit code to return."""
    print(f"{prog}: {kind}: {error}", file=sys.stderr)
    return code


# What to do about a model the registry lacks, by what is missing.
ADVICE = {
    "model": "run `make sweep` first",
    "alias": "run `make sweep` first",
    "version": "see the versions with `make ui`",
}


def not_found_message(error: ModelNotFound) -> str:
    """The registry's complaint and what to do about it, for a command's error line."""
    advice = ADVICE.get(error.missing)
    return f"{error}: {advice}" if advice else str(error)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: postag {{{','.join(COMMANDS)}}} [options]  (postag COMMAND --help)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
