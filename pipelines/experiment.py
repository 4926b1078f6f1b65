"""Experiment files: YAML -> validated RunConfig, with command-line overrides applied. A
sweep's own section is read by pipelines/sweep/setup/job.py."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.names import EXPERIMENT_NAME, EXPERIMENT_NAME_ENV
from postag.config import ConfigError, RunConfig, apply_overrides, build, read_yaml

SEED_EXPERIMENT = Path("experiments/seed.yaml")  # the seed notebook's configuration
RUN_SECTIONS = ("data", "model", "train")
# The sweep section belongs to `make sweep`; `postag train` runs the base configuration.
EXPERIMENT_SECTIONS = (*RUN_SECTIONS, "sweep")


def add_experiment_arguments(
    parser: argparse.ArgumentParser, default: Path | None = None, help: str | None = None
) -> None:
    """--config (`default`) and repeatable --set overrides."""
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        help=help or f"experiment YAML (default: {default or 'built-in defaults'})",
    )
    add_overrides_argument(parser, "override one field, e.g. --set train.epochs=5 (repeatable)")


def add_overrides_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """Repeatable --set KEY=VALUE, gathered in `args.overrides`."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def add_config_arguments(parser: argparse.ArgumentParser, default: Path | None = None) -> None:
    """--config, --set and the data flags of a single run."""
    add_experiment_arguments(parser, default)
    data = parser.add_argument_group("data (overrides the YAML's data section)")
    data.add_argument("--train", help="training file")
    data.add_argument("--dev", help="validation file")
    data.add_argument("--test", help="test file")
    data.add_argument("--format", choices=["conllu", "seed-ids"])
    data.add_argument("--tag-column", choices=["xpos", "upos"])


def read_experiment(path: Path | None, overrides: list[str]) -> dict:
    """The experiment's raw values with overrides applied; unknown sections are an error.

    Checked after the overrides, so that a mistyped `--set epochs=3` fails rather than
    leaving train.epochs as it was.
    """
    values = read_yaml(path) if path is not None else {}
    where = f"{path}: " if path is not None else ""
    merged = apply_overrides(values, overrides)
    for key in merged:
        if key not in EXPERIMENT_SECTIONS:
            given = [o for o in overrides if o.partition("=")[0].split(".")[0] == key]
            source = f"--set {given[0]}: " if given else where
            raise ConfigError(
                f"{source}unknown key '{key}' (expected one of: {', '.join(EXPERIMENT_SECTIONS)}"
                f"; a run setting is data.*, model.* or train.*, as in --set train.epochs=3)"
            )
    return merged


@dataclass(frozen=True)
class TrackingNames:
    """The MLflow experiment and registered model an experiment file's sweep section names
    (its keys of the same names); None for each it leaves to the environment and the
    defaults."""

    experiment: str | None = None
    registered_model: str | None = None

    @classmethod
    def of(cls, section: dict) -> TrackingNames:
        return cls(**{field.name: section.get(field.name) for field in dataclasses.fields(cls)})


def configured_names(path: Path | None) -> TrackingNames:
    """The names experiment file `path` gives; none without a file."""
    section = read_experiment(path, []).get("sweep", {}) if path is not None else {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: 'sweep' must be a mapping of settings")
    return TrackingNames.of(section)


def experiment_name(configured: str | None = None) -> str:
    """The MLflow experiment's name: `configured` (an experiment file's), else
    $MLFLOW_EXPERIMENT_NAME, else postag."""
    return configured or os.environ.get(EXPERIMENT_NAME_ENV) or EXPERIMENT_NAME


def run_config_from(values: dict, source: Path | None = None) -> RunConfig:
    run_values = {k: v for k, v in values.items() if k in RUN_SECTIONS}
    try:
        return build(RunConfig, run_values)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}" if source else str(error)) from None


def config_from_args(args: argparse.Namespace) -> RunConfig:
    data_flags = {
        "data.train": args.train,
        "data.dev": args.dev,
        "data.test": args.test,
        "data.format": args.format,
        "data.tag_column": args.tag_column,
    }
    # Paths and names are set as strings, not parsed as YAML (a file named "1" stays "1").
    values = read_experiment(args.config, args.overrides)
    for key, value in data_flags.items():
        if value is not None:
            values.setdefault("data", {})[key.split(".")[1]] = value
    return run_config_from(values, args.config)
