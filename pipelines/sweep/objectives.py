"""A sweep's objectives checked as its settings load: one, or two for a Pareto search, the
first always a validation metric (it chooses each trial's best epoch), and nothing else in
the sweep that needs a single one (ASHA, the confirmation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from postag.config import ConfigError
from postag.objective import VALIDATION_METRICS

if TYPE_CHECKING:
    from pipelines.sweep.settings import SweepSettings


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
