"""The sweep section's checks across its keys: where the baseline lies against the space,
and what a confirmation or a warm start needs of it. Each key's own value is checked as the
section is built (pipelines/sweep/settings.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from postag.config import ConfigError

if TYPE_CHECKING:
    from pipelines.sweep.settings import SweepSettings

SEED_KEY = "train.seed"


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
