"""One sweep as the driver runs it (`SweepJob`): the experiment file it comes from (and
which one runs when none is named), its typed base run and sweep settings, where its state
and Tune's experiments live, and the lock that keeps a second driver away."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from filelock import FileLock, Timeout

from pipelines.experiment import (
    SEED_EXPERIMENT,
    TrackingNames,
    experiment_name,
    read_experiment,
    run_config_from,
)
from pipelines.sweep.setup.settings import SweepSettings, build_sweep
from postag.config import ConfigError, RunConfig
from postag.serving.names import registered_model_name

GPU_EXPERIMENT = SEED_EXPERIMENT
CPU_EXPERIMENT = Path("experiments/cpu.yaml")
# Sweep state files, and Tune's experiments unless --storage names a shared location.
STORAGE_DIR = Path("runs/sweeps")


class SweepBusy(RuntimeError):
    """Another driver is running the same sweep."""


def load_sweep(path: Path, overrides: list[str]) -> tuple[dict, RunConfig, SweepSettings]:
    """An experiment file with a sweep section: raw values, base run config, sweep config."""
    values = read_experiment(path, overrides)
    run = run_config_from(values, path)
    if "sweep" not in values:
        raise ConfigError(f"{path}: no 'sweep' section; `postag train` runs a single config")
    try:
        sweep = with_tracking_names(build_sweep(values["sweep"], run), values["sweep"])
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    refuse_overrides_of_searched_keys(path, overrides, sweep)
    return values, run, sweep


def with_tracking_names(sweep: SweepSettings, section: dict) -> SweepSettings:
    """The sweep with the names its file gives, else those of the environment
    ($MLFLOW_EXPERIMENT_NAME, MLflow's own; $POSTAG_REGISTERED_MODEL), else the defaults."""
    named = TrackingNames.of(section)
    return replace(
        sweep,
        experiment=experiment_name(named.experiment),
        registered_model=registered_model_name(named.registered_model),
    )


def add_warm_start_argument(parser: argparse.ArgumentParser) -> None:
    """`--from SWEEP`, repeatable: `sweep.warm_start` on the command line."""
    parser.add_argument(
        "--from",
        dest="warm_start",
        action="append",
        default=[],
        metavar="SWEEP",
        help="take an earlier sweep's finished trials as trained where they fit, and search "
        "on from them (repeatable; sets sweep.warm_start)",
    )


def warm_start_overrides(args: argparse.Namespace) -> list[str]:
    """The --set overrides of the command line, and --from's as one of them."""
    names = args.warm_start
    return [*args.overrides, *([f"sweep.warm_start={json.dumps(names)}"] if names else [])]


def refuse_overrides_of_searched_keys(
    path: Path, overrides: list[str], sweep: SweepSettings
) -> None:
    """A `--set` of a key the sweep searches would be silently replaced by each trial's value:
    refused, saying how to change what is searched."""
    for override in overrides:
        key = override.partition("=")[0]
        if key in sweep.space:
            raise ConfigError(
                f"{path}: --set {override} would be ignored: the sweep searches {key} "
                f"(sweep.space); give the values to search as --set 'sweep.space.{key}=[...]'"
            )


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


@dataclass(frozen=True)
class SweepJob:
    """One sweep as the driver runs it: its experiment file and values, its typed base run
    and sweep settings, and where its state and Tune's experiments live."""

    config_path: Path
    values: dict
    run: RunConfig
    sweep: SweepSettings
    tune_storage: str
    state_dir: Path

    @property
    def base(self) -> dict:
        """The experiment's run values (data, model, train) that every trial starts from."""
        return {k: v for k, v in self.values.items() if k != "sweep"}

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Held before anything else: a second driver of the sweep is refused at once."""
        return sole_driver(self.state_dir, self.sweep)

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.sweep.name}.log"


def sweep_storage(storage: str | Path) -> tuple[str, Path]:
    """(where Tune keeps experiments and checkpoints, the local folder for sweep state files).

    A URI (s3://bucket/path, gs://..., a path on NFS) goes to Tune as it is: on a cluster,
    every node must reach it to save and restore checkpoints. State files stay local.
    """
    text = str(storage)
    if "://" in text:
        tune_storage, state_dir = text.rstrip("/"), STORAGE_DIR.resolve()
    else:
        state_dir = Path(text).resolve()
        tune_storage = str(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    return tune_storage, state_dir


@contextlib.contextmanager
def sole_driver(state_dir: Path, sweep: SweepSettings) -> Iterator[None]:
    """Hold the sweep's lock file while it runs: two drivers of one sweep would both write
    its state and runs. The OS drops the lock when the holder dies, even by SIGKILL."""
    path = state_dir / f"{sweep.name}.lock"
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise SweepBusy(
            f"sweep '{sweep.name}' is already running in another driver (it holds {path}); "
            "wait for it to end, or stop it (Ctrl-C) and run this command again to resume"
        ) from None
    try:
        yield
    finally:
        lock.release()
