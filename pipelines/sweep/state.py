"""A sweep's saved state: `SweepState` is the file on the driver's disk that says which
phase the sweep is in, which Tune experiments and parent run are its, and whether its last
driver stopped on the way. `open_sweep_state` finds it, or starts a sweep anew. Its only
writer is the sweep's life (pipelines/sweep/life.py), which moves it from phase to phase.

    searching -> [extending-1 -> ...] -> [confirming ->] registering -> finished

A driver that stops on the way leaves the phase as it was and marks the state `halted`:
interrupted (Ctrl-C, SIGTERM, a Tune stage stopped) or failed. A rerun whose file only adds
trials (pipelines/sweep/additions.py) extends the sweep, finished or not: its new trials are
a search stage of their own (`extending-N`), under the same parent run.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from ray import tune

from pipelines.runs import FAILED, TrialRun
from pipelines.sweep.additions import added_trials, concluded_otherwise
from pipelines.sweep.parent_run import ParentRun
from pipelines.sweep.settings import SweepSettings
from postag.config import ConfigError, to_dict
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


def open_sweep_state(
    state_dir: Path,
    tune_storage: str,
    sweep: SweepSettings,
    experiment_id: str,
    fresh: bool,
    config_values: dict,
) -> tuple[SweepState, bool]:
    """The unfinished sweep to resume, or a new one with its parent run; (state, resuming)."""
    path = SweepState.path(state_dir, sweep)
    digest = config_digest(config_values)
    previous = SweepState.read(path) if path.is_file() else None
    if (
        previous is not None
        and not fresh
        and (changed := changed_in_place(previous, config_values))
    ):
        state, what = changed
        state = replace(state, config_digest=digest)
        state.save(path)
        print(
            f"sweep '{sweep.name}': {what}, under its parent run {state.parent_run_id}", flush=True
        )
        return state, True
    if previous is not None and not previous.finished:
        restorable = tune.Tuner.can_restore(previous.tune_dir)
        if restorable and not fresh:
            if previous.config_digest != digest:
                raise ConfigError(
                    f"sweep '{sweep.name}' was interrupted ({path}) and its configuration has "
                    "changed since: run it unchanged to resume, or add --fresh "
                    "(make sweep SWEEP_ARGS=--fresh) to start anew"
                )
            return previous, True
        why = "--fresh" if fresh else f"its Tune state {previous.tune_dir} cannot be restored"
        previous.parent_run().abandon(why)
        print(
            f"sweep '{sweep.name}': the unfinished sweep is abandoned ({why}); its runs are "
            f"closed as KILLED under parent run {previous.parent_run_id}; starting anew",
            flush=True,
        )
    record = ParentRun.start(experiment_id, sweep.name, config_values, to_dict(sweep))
    tune_dir = f"{tune_storage}/{sweep.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    state = SweepState(
        tune_dir, record.parent_run_id, experiment_id, digest, searched=(config_values,)
    )
    state.save(path)
    return state, False


def changed_in_place(previous: SweepState, values: dict) -> tuple[SweepState, str] | None:
    """The sweep `previous` as `values` change it without starting anew, and what they
    change, in words: how it concludes (a finished sweep goes back to its registration, an
    interrupted one resumes where it was), or trials added (only they train). None for any
    other change, or for an interrupted sweep whose Tune state cannot be restored."""
    if not previous.searched:
        return None
    last = previous.searched[-1]
    changed, added = concluded_otherwise(last, values), added_trials(last, values)
    if changed is None and added is None:
        return None
    if not previous.finished and not tune.Tuner.can_restore(previous.tune_dir):
        return None
    if changed is not None:
        searched = (*previous.searched[:-1], values)
        phase = SweepPhase.REGISTERING if previous.finished else previous.phase
        then = "its trials stand" if previous.finished else "it resumes where it stopped"
        state = replace(previous, searched=searched, phase=phase, halted=None)
        return state, f"its file changes only how it concludes ({changed}); {then}"
    return previous.extended(values), f"its file adds trials ({added}); only they train"
