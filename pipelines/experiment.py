"""Experiment files: YAML -> validated RunConfig, with command-line overrides applied."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.sweep.config import SweepConfig, build_sweep
from postag.config import ConfigError, RunConfig, apply_overrides, build, read_yaml

SEED_EXPERIMENT = Path("experiments/seed.yaml")  # the seed notebook's configuration
GPU_EXPERIMENT = SEED_EXPERIMENT
CPU_EXPERIMENT = Path("experiments/cpu.yaml")
SCALE_EXPERIMENT = Path("experiments/scale-out.yaml")  # `postag bench-scale`'s eight trials
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
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one field, e.g. --set train.epochs=5 (repeatable)",
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


def sweep_experiment(ray_address: str | None) -> tuple[Path, str]:
    """The sweep to run when none is named, and why: the full study wherever trials get a
    GPU, on this machine or on the Ray cluster that `ray_address` names."""
    import torch  # here, not at the top: `postag --help` need not load torch

    from pipelines.servers.probe import cluster_gpus

    if torch.cuda.is_available():
        return GPU_EXPERIMENT, "a CUDA GPU is visible (the full study)"
    gpus = cluster_gpus(ray_address)
    if gpus > 0:
        return (
            GPU_EXPERIMENT,
            f"the Ray cluster at {ray_address} has {gpus:g} GPU(s) (the full study)",
        )
    return CPU_EXPERIMENT, "no CUDA GPU is visible (the study sized for a small CPU)"


def load_sweep(path: Path, overrides: list[str]) -> tuple[dict, RunConfig, SweepConfig]:
    """An experiment file with a sweep section: raw values, base run config, sweep config."""
    values = read_experiment(path, overrides)
    run = run_config_from(values, path)
    if "sweep" not in values:
        raise ConfigError(f"{path}: no 'sweep' section; `postag train` runs a single config")
    try:
        sweep = build_sweep(values["sweep"], run)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    return values, run, sweep


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
