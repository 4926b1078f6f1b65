"""A sweep's saved state: the file on the driver's disk that says which stage the sweep is
in, which Tune experiments and parent run are its, and whether its last driver stopped on
the way. Only the sweep's life (pipelines/sweep/life.py) moves it; a rerun reads it to resume.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from pipelines.sweep.config import SweepConfig
from pipelines.sweep.records import SweepRecord
from postag.files import write_text_atomically


class SweepStage(StrEnum):
    """Where a sweep is; saved with its state."""

    SEARCHING = "searching"
    CONFIRMING = "confirming"
    REGISTERING = "registering"
    FINISHED = "finished"


class Halt(StrEnum):
    """Why the last driver of an unfinished sweep stopped."""

    INTERRUPTED = "interrupted"
    FAILED = "failed"


@dataclass(frozen=True)
class SweepState:
    tune_dir: str
    parent_run_id: str
    experiment_id: str
    # The experiment values the sweep was started with: a resume must run the same sweep.
    config_digest: str
    stage: SweepStage = SweepStage.SEARCHING
    halted: Halt | None = None
    # The confirmation stage's Tune experiment, once the search is over (sweep.confirm).
    confirm_dir: str | None = None

    @staticmethod
    def path(state_dir: Path, sweep: SweepConfig) -> Path:
        return state_dir / f"{sweep.name}.json"

    @classmethod
    def read(cls, path: Path) -> SweepState:
        values = json.loads(path.read_text())
        # States written before the stage was explicit said only whether they had finished.
        if "finished" in values:
            finished, confirming = values.pop("finished"), values.get("confirm_dir")
            values["stage"] = (
                SweepStage.FINISHED
                if finished
                else SweepStage.CONFIRMING
                if confirming
                else SweepStage.SEARCHING
            )
        values["stage"] = SweepStage(values["stage"])
        values["halted"] = Halt(values["halted"]) if values.get("halted") else None
        return cls(**values)

    def save(self, path: Path) -> None:
        # Whole or not at all: a driver killed mid-write must leave a state a rerun can read.
        write_text_atomically(path, json.dumps(asdict(self), indent=1))

    @property
    def finished(self) -> bool:
        return self.stage == SweepStage.FINISHED

    def record(self) -> SweepRecord:
        return SweepRecord(self.experiment_id, self.parent_run_id)


def config_digest(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()
