"""A sweep's saved state: `SweepState` is the file on the driver's disk that says which
phase the sweep is in, which Tune experiments and parent run are its, and whether its last
driver stopped on the way. This module says what the file holds and how it reads and
saves; its only writer is the sweep's life (pipelines/sweep/lifecycle/life.py), which
opens it, moves it from phase to phase and decides what a changed experiment file does.

    searching -> [extending-1 -> ...] -> [confirming ->] registering -> finished

A driver that stops on the way leaves the phase as it was and marks the state `halted`:
interrupted (Ctrl-C, SIGTERM, a Tune stage stopped) or failed. A rerun whose file only adds
trials extends the sweep, finished or not: its new trials are
a search stage of their own (`extending-N`), under the same parent run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from pipelines.names import FAILED
from pipelines.runs import TrialRun
from pipelines.sweep.lifecycle.parent_run import ParentRun
from pipelines.sweep.setup.settings import SweepSettings
from postag.files import write_text_atomically


class SweepPhase(StrEnum):
    """Where a sweep is; saved with its state. A Tune stage's phase is its `Stage.phase`
    (these, or a stage's own), the stages' order the driver's."""

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
    phase: str = SweepPhase.SEARCHING
    halted: Halt | None = None
    # The experiment values of each search stage: the search's, then each extension's. A
    # stage's settings come from them. Empty in states written before extensions existed.
    searched: tuple[dict, ...] = ()
    # Trials each search stage plans, by its Tune folder's name: fixed as it starts, since
    # what it plans depends on the runs that the sweep held then.
    planned: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def path(state_dir: Path, sweep: SweepSettings) -> Path:
        return state_dir / f"{sweep.name}.json"

    @classmethod
    def read(cls, path: Path) -> SweepState:
        values = json.loads(path.read_text())
        # States written before the phase was explicit said only whether they had finished;
        # before it had its name, it was the `stage`.
        if "stage" in values:
            values["phase"] = values.pop("stage")
        if "finished" in values:
            finished, confirming = values.pop("finished"), values.get("confirm_dir")
            values["phase"] = (
                SweepPhase.FINISHED
                if finished
                else SweepPhase.CONFIRMING
                if confirming
                else SweepPhase.SEARCHING
            )
        # The confirmation's folder is derived from the search's now (`stage_dir`).
        values.pop("confirm_dir", None)
        values["halted"] = Halt(values["halted"]) if values.get("halted") else None
        values["searched"] = tuple(values.get("searched", ()))
        return cls(**values)

    def save(self, path: Path) -> None:
        # Whole or not at all: a driver killed mid-write must leave a state a rerun can read.
        write_text_atomically(path, json.dumps(asdict(self), indent=1))

    @property
    def finished(self) -> bool:
        return self.phase == SweepPhase.FINISHED

    def stage_dir(self, suffix: str) -> str:
        """Where a Tune stage after the search keeps its experiment: beside the search's."""
        return f"{self.tune_dir}-{suffix}"

    def parent_run(self) -> ParentRun:
        return ParentRun(self.experiment_id, self.parent_run_id)

    def search_dir(self, stage: int) -> str:
        """Where search stage `stage` keeps its Tune experiment: the search's own, then one
        beside it for each extension."""
        return self.tune_dir if stage == 0 else self.stage_dir(f"added{stage}")

    def extended(self, values: dict) -> SweepState:
        """The state once `values`, which only add trials, are the sweep's: a search stage
        more. A sweep past its search goes back to it, for the new stage; one still in it
        first concludes the stage it was in."""
        searched = (*self.searched, values)
        searching = self.phase == SweepPhase.SEARCHING or self.phase.startswith(EXTENDING)
        phase = self.phase if searching else search_phase(len(searched) - 1)
        return replace(self, searched=searched, phase=phase, halted=None)


# The phase of a search stage after the first: `extending-1`, `extending-2`, ...
EXTENDING = "extending-"


def search_phase(stage: int) -> str:
    return SweepPhase.SEARCHING if stage == 0 else f"{EXTENDING}{stage}"


def config_digest(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


# What a stopped sweep's last line ends with.
RESUME_HINT = "run the same command again to resume"


class SweepFailed(RuntimeError):
    """The sweep concluded but left nothing to register (every trial failed)."""


def nothing_to_register(runs: list[TrialRun], sweep: SweepSettings) -> str:
    failed = [run for run in runs if run.status == FAILED]
    last_error = next((r.error for r in failed if r.error is not None), "")
    return (
        f"sweep '{sweep.name}': no trial finished with a model to register "
        f"({len(failed)} of {len(runs)} failed); the last lines of one error:\n"
        + "\n".join(last_error.strip().splitlines()[-3:])
    )
