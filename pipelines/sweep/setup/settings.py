"""The `sweep` section of an experiment file, typed and validated like the run config:
each key's value as the section is built, then the checks across keys (where the baseline
lies against the space, what a confirmation, a warm start, an ensemble and the objectives
need of the rest)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Literal

from pipelines.names import EXPERIMENT_NAME
from postag.config import (
    ConfigError,
    RunConfig,
    build,
    require_above,
    require_at_least,
    to_dict,
    with_values,
)
from postag.serving.names import REGISTERED_MODEL
from postag.training.objective import DEFAULT, VALIDATION_METRICS, Objective

# A list is the value of a tuple field (model.char_kernels: [[3], [2, 3, 4]]).
Value = bool | int | float | str | list[int]
OBJECTIVE_KEY = "train.objective"
SEED_KEY = "train.seed"


class ListValue(str):
    """A list value (a tuple field's: model.char_kernels [2, 3, 4]) as Tune's fixed trial
    points carry it, as JSON text.

    Ray Tune 2.60 reads a list in `points_to_evaluate` as one nested key per item and the
    trial fails; text passes through whole, and a str subclass survives Tune's pickled
    experiment state. `plain_values` turns it back into the list.
    """

    @classmethod
    def of(cls, value: list | tuple) -> ListValue:
        return cls(json.dumps(list(value)))

    def value(self) -> list:
        return json.loads(self)


def fixed_point(point: dict) -> dict:
    """`point` ready for Tune's points_to_evaluate: list values as ListValue."""
    return {k: ListValue.of(v) if isinstance(v, list | tuple) else v for k, v in point.items()}


def plain_values(point: dict) -> dict:
    """A trial's values as the sweep config has them: each ListValue back to its list."""
    return {k: v.value() if isinstance(v, ListValue) else v for k, v in point.items()}


@dataclass(frozen=True)
class Range:
    """A sampled dimension (Optuna only): integers when both bounds are ints."""

    low: int | float
    high: int | float
    log: bool = False

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ConfigError(f"low {self.low!r} is above high {self.high!r}")
        if self.log and self.low <= 0:
            raise ConfigError(f"a log range needs low above 0, got {self.low!r}")


@dataclass(frozen=True)
class AshaConfig:
    grace_period: int = 2
    reduction_factor: int = 3

    def __post_init__(self) -> None:
        require_at_least("sweep.asha", self, 1, ("grace_period",))
        require_at_least("sweep.asha", self, 2, ("reduction_factor",))


@dataclass(frozen=True)
class ConfirmConfig:
    """After the search, its `top_k` configurations are trained again with `seeds` new
    seeds each, and the winner is the best mean: one run's lead of a few tenths can be
    its seed's luck (EWT runs differ by about 0.2 points between seeds)."""

    top_k: int = 2
    seeds: int = 3

    def __post_init__(self) -> None:
        require_at_least("sweep.confirm", self, 1, ("top_k",))
        # A spread needs two runs at least.
        require_at_least("sweep.confirm", self, 2, ("seeds",))


@dataclass(frozen=True)
class SweepSettings:
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
    # Fraction of one GPU per trial where GPUs exist: several trials share one GPU. 0 keeps
    # trials on the CPU even there.
    gpus_per_trial: float = 0.25
    # True: the cluster's GPUs may be logical (a node started with --num-gpus, no CUDA), and
    # a trial given a share trains on its CPU. Only for testing GPU packing without a GPU;
    # otherwise such a trial fails, rather than quietly training on the CPU.
    logical_gpus: bool = False
    # Retries of a failing trial (from its last checkpoint) before it is recorded FAILED.
    max_failures: int = 1
    # A finished trial's process (torch loaded, the dataset fetched) takes the next trial
    # rather than a new process starting (Tune's reuse_actors); make bench measures it.
    reuse_actors: bool = True
    optuna_seed: int = 0
    # The confirmation stage; None registers the search's best single run.
    confirm: ConfirmConfig | None = None
    # What the sweep optimises (postag/training/objective.py): a validation metric and its
    # mode; None is the seed's, validation accuracy, max.
    objective: Objective | None = None
    # Two objectives instead, for a Pareto search (a validation metric first, then another
    # or a cost): the sweep ends with the front of the trials that nothing beats on both.
    objectives: tuple[Objective, ...] = ()
    # Earlier sweeps (by name) whose finished trials this one takes as trained where they fit
    # (pipelines/sweep/stages/held.py); `--from NAME` on the command line sets it.
    warm_start: tuple[str, ...] = ()
    # What is registered where the winner is a configuration with seeds (a confirmation, or
    # a search over train.seed): `run`, its best seed's model; `ensemble`, one model that
    # averages all its seeds' tag probabilities (pipelines/sweep/end/seed_ensemble.py).
    register: Literal["run", "ensemble"] = "run"
    # Where the sweep's runs and its model go: the MLflow experiment, and the registered
    # model whose `best` the champion rule moves. Two projects on one tracking server take a
    # name each. Where the file names none, $MLFLOW_EXPERIMENT_NAME and
    # $POSTAG_REGISTERED_MODEL do (pipelines/sweep/setup/job.py, `with_tracking_names`).
    experiment: str = EXPERIMENT_NAME
    registered_model: str = REGISTERED_MODEL

    def __post_init__(self) -> None:
        check_names(self)
        require_at_least("sweep", self, 1, ("num_samples", "max_concurrent_trials"))
        require_at_least("sweep", self, 0, ("max_failures",))
        require_above("sweep", self, 0, ("cpus_per_trial",))
        require_at_least("sweep", self, 0, ("gpus_per_trial",))
        check_objectives(self)

    @property
    def goals(self) -> tuple[Objective, ...]:
        """What the sweep optimises: its two objectives, or its one."""
        return self.objectives or (self.objective or DEFAULT,)

    @property
    def primary(self) -> Objective:
        """The objective that chooses each trial's best epoch, the winner and `best`: the
        only one, or the first of two."""
        return self.goals[0]

    @property
    def pareto(self) -> bool:
        return len(self.goals) > 1

    @property
    def costs(self) -> tuple[str, ...]:
        """The objectives that a trial measures once, on its final model."""
        return tuple(goal.metric for goal in self.goals if not goal.validates)

    def baseline_point(self) -> dict[str, Value]:
        """The baseline's values on the searched axes: how a trial is known as the baseline."""
        return {k: v for k, v in self.baseline.items() if k in self.space}

    def baseline_overrides(self) -> dict[str, Value]:
        return {k: v for k, v in self.baseline.items() if k not in self.space}

    def is_baseline(self, point: dict) -> bool:
        values = plain_values(point)
        return all(values.get(k) == v for k, v in self.baseline_point().items())

    @property
    def ensembles(self) -> bool:
        """Whether the winner's seeds are registered as one model."""
        return self.register == "ensemble"

    def searches_seeds(self) -> bool:
        """train.seed is an axis of the search: each configuration is then ranked, and
        registered, by its mean over its seeds (experiments/best.yaml)."""
        return SEED_KEY in self.space

    def expected_trials(self) -> int:
        """Trials a complete sweep holds: the baseline and the samples (each a grid, for grid)."""
        per_sample = 1
        if self.search == "grid":
            per_sample = math.prod(len(axis) for axis in self.space.values())
        return 1 + self.num_samples * per_sample

    def max_epochs(self, run: RunConfig) -> int:
        """The most epochs a trial trains: the epochs axis, the baseline, else `run`'s own."""
        axis = self.space.get("train.epochs")
        if axis is None:
            values = [run.train.epochs]
        else:
            values = [axis.high] if isinstance(axis, Range) else list(axis)
        return int(max([*values, self.baseline.get("train.epochs", 0)]))


def check_names(sweep: SweepSettings) -> None:
    """An experiment needs a name; a registered model's goes into models:/NAME@ALIAS URIs,
    so it cannot hold '/' or '@'."""
    if not sweep.experiment.strip():
        raise ConfigError("'sweep.experiment' must be a name, got an empty one")
    if not re.fullmatch(r"[^/@\s][^/@]*", sweep.registered_model):
        raise ConfigError(
            f"'sweep.registered_model' {sweep.registered_model!r}: a name without '/' or '@' "
            "(it is read in models:/NAME@ALIAS)"
        )


def build_sweep(values: dict, run: RunConfig) -> SweepSettings:
    """Validate the sweep section: every key a run-config field, every value one it accepts.

    Each value a trial can take is checked here, so that a bad one stops the sweep before
    any work rather than failing its trials one by one.
    """
    sweep = build(SweepSettings, values, "sweep")
    if run.train.objective != DEFAULT and run.train.objective != sweep.primary:
        raise ConfigError(
            f"'train.objective' ({run.train.objective}) is not the sweep's objective "
            f"({sweep.primary}): a sweep's trials choose their best epoch by the sweep's; "
            "set it once, in 'sweep.objective'"
        )
    for section in ("space", "baseline"):
        for key in getattr(sweep, section):
            check_field(key, f"sweep.{section}.{key}", run)
    missing = [k for k in sweep.space if k not in sweep.baseline]
    if missing:
        raise ConfigError(f"sweep.baseline needs a value for every space key; missing {missing}")
    check_baseline_stands_apart(sweep)
    if sweep.confirm is not None:
        check_confirmable(sweep)
    check_warm_start(sweep)
    check_ensemble(sweep)
    if sweep.search == "grid":
        ranges = [k for k, v in sweep.space.items() if isinstance(v, Range)]
        if ranges:
            raise ConfigError(
                f"sweep.space.{ranges[0]}: a range needs search: optuna (grid: lists)"
            )
    for key, axis in sweep.space.items():
        values = [axis.low, axis.high] if isinstance(axis, Range) else axis
        if not values:
            raise ConfigError(f"sweep.space.{key}: an axis needs at least one value")
        for value in values:
            check_value(run, {key: value}, f"sweep.space.{key}")
    check_value(run, sweep.baseline, "sweep.baseline")
    check_baseline_in_choices(sweep)
    return sweep


def check_field(dotted: str, where: str, run: RunConfig) -> None:
    section, _, name = dotted.partition(".")
    sections = {f.name for f in dataclasses.fields(run)}
    if section not in sections or name not in {
        f.name for f in dataclasses.fields(getattr(run, section))
    }:
        raise ConfigError(f"unknown key '{where}': not a field of the run config")
    if dotted == OBJECTIVE_KEY:
        raise ConfigError(
            f"'{where}': the sweep's trials are all judged by one objective; set it in "
            "'sweep.objective'"
        )
    if section == "data":
        # Data is prepared once, before any trial, and shared by all of them.
        raise ConfigError(
            f"'{where}': data settings cannot vary between trials (the data is prepared once "
            f"for the whole sweep); set {dotted} in the experiment's data section instead"
        )


def check_value(run: RunConfig, values: dict[str, Value], where: str) -> None:
    """The run config with `values` (dotted keys) set must be valid."""
    try:
        build(RunConfig, with_values(to_dict(run), values))
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


# Checks across keys ------------------------------------------------------------------


def check_baseline_stands_apart(sweep: SweepSettings) -> None:
    """The baseline is known by its values on the searched axes: they must not name a point
    the search can also pick, or that trial would be taken for the baseline."""
    point = sweep.baseline_point()
    if not all(isinstance(axis, list) for axis in sweep.space.values()):
        return  # a sampled value equal to the baseline's is vanishingly unlikely
    if all(point[key] in axis for key, axis in sweep.space.items()):
        values = ", ".join(f"{key}={value}" for key, value in point.items())
        raise ConfigError(
            f"sweep.baseline: its values on the searched axes ({values}) are also a point of "
            "sweep.space, so that trial would be taken for the baseline; give the baseline a "
            "value outside at least one axis"
        )


def check_baseline_in_choices(sweep: SweepSettings) -> None:
    """Optuna takes the baseline as a point of its space: on a choice axis its value must be
    a choice (a range may leave it outside, as the 40-layer stack does)."""
    for key, axis in sweep.space.items():
        if sweep.search == "optuna" and isinstance(axis, list) and sweep.baseline[key] not in axis:
            raise ConfigError(
                f"sweep.baseline.{key}: {sweep.baseline[key]!r} is not one of the choices "
                f"{axis}, and Optuna takes only a choice there; search {key} as a range "
                "({low: ..., high: ...}), which the baseline may lie outside"
            )


def check_confirmable(sweep: SweepSettings) -> None:
    """The confirmation stage re-runs searched points with new seeds: the seed must not be
    searched."""
    if SEED_KEY in sweep.space:
        raise ConfigError(
            f"sweep.confirm trains the best configurations with new values of {SEED_KEY}: "
            f"leave sweep.space.{SEED_KEY} out, or sweep.confirm"
        )


def check_warm_start(sweep: SweepSettings) -> None:
    if sweep.name in sweep.warm_start:
        raise ConfigError(
            f"sweep.warm_start names the sweep itself ('{sweep.name}'): to add "
            "trials to it, add them to its file; only the new ones train"
        )
    if sweep.warm_start and sweep.searches_seeds():
        raise ConfigError(
            f"sweep.warm_start: a search over {SEED_KEY} ranks each configuration by its mean "
            "over the seeds it trains itself; it cannot take earlier trials as its own"
        )


def check_ensemble(sweep: SweepSettings) -> None:
    """An ensemble is made of the winning configuration's seeds: a sweep needs some."""
    if not sweep.ensembles:
        return
    if sweep.confirm is None and not sweep.searches_seeds():
        raise ConfigError(
            "sweep.register: 'ensemble' averages the seeds of the winning configuration, and "
            f"this sweep trains none: add sweep.confirm, or search {SEED_KEY}"
        )
    if sweep.pareto:
        raise ConfigError(
            "sweep.register: 'ensemble' is for one objective; a Pareto search registers "
            "each member of its front"
        )


# The objectives -----------------------------------------------------------------------


def check_objectives(sweep: SweepSettings) -> None:
    """One objective or two; the first chooses epochs, so it is a validation metric."""
    if sweep.objective is not None and sweep.objectives:
        raise ConfigError(
            "'sweep.objective' and 'sweep.objectives' both given: set one objective, or two "
            "for a Pareto search"
        )
    if sweep.objectives and len(sweep.objectives) != 2:
        raise ConfigError(
            f"'sweep.objectives' takes two entries (a Pareto search), got "
            f"{len(sweep.objectives)}; a single one goes in 'sweep.objective'"
        )
    where = "sweep.objectives[0]" if sweep.objectives else "sweep.objective"
    if not sweep.primary.validates:
        raise ConfigError(
            f"'{where}.metric': {sweep.primary.metric} is measured once, on a trial's final "
            f"model, so it cannot choose a trial's best epoch; name a validation metric "
            f"first ({', '.join(VALIDATION_METRICS)})"
        )
    if sweep.pareto:
        check_pareto(sweep)


def check_pareto(sweep: SweepSettings) -> None:
    first, second = sweep.objectives
    if first.metric == second.metric:
        raise ConfigError(f"'sweep.objectives' names {first.metric} twice")
    if sweep.scheduler == "asha":
        raise ConfigError(
            "'sweep.scheduler: asha' stops trials on one metric, and a Pareto search "
            "('sweep.objectives') judges every trial on two at its end: use scheduler: fifo"
        )
    if sweep.confirm is not None:
        raise ConfigError(
            "'sweep.confirm' retrains the single best configurations, and a Pareto search "
            "('sweep.objectives') keeps a front of them: leave sweep.confirm out"
        )
