"""The `sweep` section of an experiment file, typed and validated like the run config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from postag.config import ConfigError, RunConfig, build

Value = bool | int | float | str


@dataclass(frozen=True)
class Range:
    """A sampled dimension (Optuna only): integers when both bounds are ints."""

    low: int | float
    high: int | float
    log: bool = False


@dataclass(frozen=True)
class AshaConfig:
    grace_period: int = 2
    reduction_factor: int = 3


@dataclass(frozen=True)
class SweepConfig:
    name: str
    # Keys are dotted config fields (model.hidden_size, train.epochs, ...). A list is a grid
    # axis (search: grid) or a choice (search: optuna); a Range is sampled (optuna only).
    space: dict[str, list[Value] | Range]
    # The seed's failing deep configuration, run in every sweep and never the best. Keys in
    # `space` place it; other keys override its run config only (what a CPU sweep shrinks).
    baseline: dict[str, Value]
    search: Literal["grid", "optuna"] = "grid"
    # optuna: trials to sample (the baseline comes on top); grid: repeats of the grid.
    num_samples: int = 1
    scheduler: Literal["fifo", "asha"] = "fifo"
    asha: AshaConfig = field(default_factory=AshaConfig)
    max_concurrent_trials: int = 2
    # Ray's CPU share per trial; a fraction packs more trials than cores (one torch thread).
    cpus_per_trial: float = 1.0
    # Fraction of one GPU per trial where GPUs exist: several trials share one GPU.
    gpus_per_trial: float = 0.25
    # Retries of a failing trial (from its last checkpoint) before it is recorded FAILED.
    max_failures: int = 1
    optuna_seed: int = 0

    def baseline_point(self) -> dict[str, Value]:
        """The baseline's values on the searched axes: how a trial is known as the baseline."""
        return {k: v for k, v in self.baseline.items() if k in self.space}

    def baseline_overrides(self) -> dict[str, Value]:
        return {k: v for k, v in self.baseline.items() if k not in self.space}

    def is_baseline(self, trial_config: dict) -> bool:
        return all(trial_config.get(k) == v for k, v in self.baseline_point().items())


def build_sweep(values: dict, run: RunConfig) -> SweepConfig:
    """Validate the sweep section, including that every key names a run-config field."""
    sweep = build(SweepConfig, values, "sweep")
    for section in ("space", "baseline"):
        for key in getattr(sweep, section):
            check_field(key, f"sweep.{section}.{key}", run)
    missing = [k for k in sweep.space if k not in sweep.baseline]
    if missing:
        raise ConfigError(f"sweep.baseline needs a value for every space key; missing {missing}")
    if sweep.search == "grid":
        ranges = [k for k, v in sweep.space.items() if isinstance(v, Range)]
        if ranges:
            raise ConfigError(
                f"sweep.space.{ranges[0]}: a range needs search: optuna (grid: lists)"
            )
    return sweep


def check_field(dotted: str, where: str, run: RunConfig) -> None:
    section, _, name = dotted.partition(".")
    sections = {f.name for f in dataclasses.fields(run)}
    if section not in sections or name not in {
        f.name for f in dataclasses.fields(getattr(run, section))
    }:
        raise ConfigError(f"unknown key '{where}': not a field of the run config")
