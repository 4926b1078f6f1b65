"""One sweep as the driver runs it: the experiment's values, its typed configs, and where
its state and Tune's experiments live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.sweep.config import SweepConfig
from postag.config import RunConfig

if TYPE_CHECKING:
    from pipelines.sweep.clock import SweepClock


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

    @property
    def base(self) -> dict:
        return {k: v for k, v in self.values.items() if k != "sweep"}

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.sweep.name}.log"
