"""One sweep as the driver runs it: the experiment file it comes from (and which one runs
when none is named), its typed configs, each trial's resolved RunConfig, and where its
state and Tune's experiments live."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.experiment import SEED_EXPERIMENT, read_experiment, run_config_from
from pipelines.sweep.config import SweepConfig, build_sweep, plain_values
from postag.config import ConfigError, RunConfig, apply_values, build

if TYPE_CHECKING:
    from pipelines.sweep.clock import SweepClock

GPU_EXPERIMENT = SEED_EXPERIMENT
CPU_EXPERIMENT = Path("experiments/cpu.yaml")
SCALE_EXPERIMENT = Path("experiments/scale-out.yaml")  # `postag bench-scale`'s eight trials


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
    refuse_overrides_of_searched_keys(path, overrides, sweep)
    return values, run, sweep


def refuse_overrides_of_searched_keys(path: Path, overrides: list[str], sweep: SweepConfig) -> None:
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
class TrialConfigs:
    """The one place a trial's RunConfig is resolved: the sweep's base run, the trial's
    searched values, the baseline's extras, and the device its worker found.

    Plain values only, so that it travels to every trial with the trainable.
    """

    base: dict
    sweep: SweepConfig

    def __call__(self, trial_config: dict, device: str) -> RunConfig:
        overrides = plain_values(trial_config)
        if self.sweep.is_baseline(trial_config):
            overrides.update(self.sweep.baseline_overrides())
        overrides["train.device"] = device
        if device == "cpu":
            # Trials side by side must share the cores, not each spin up all of them.
            overrides["train.num_threads"] = max(1, int(self.sweep.cpus_per_trial))
        return build(RunConfig, apply_values(self.base, overrides))


@dataclass(frozen=True)
class Sweep:
    """One sweep as the driver runs it: its config, where its state lives, how to resume."""

    config_path: Path
    values: dict
    run: RunConfig
    sweep: SweepConfig
    tune_storage: str
    state_dir: Path
    # Times where the sweep's time goes (make bench); None in a plain sweep.
    clock: SweepClock | None = None
    # What each trial runs in place of training (make bench-tracking's no-op, which reports
    # at once); None in a plain sweep: pipelines.sweep.trial.train_trial.
    trainable: Callable | None = None

    @property
    def base(self) -> dict:
        return {k: v for k, v in self.values.items() if k != "sweep"}

    @property
    def trial_configs(self) -> TrialConfigs:
        return TrialConfigs(self.base, self.sweep)

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.sweep.name}.log"
