"""A sweep's saved state and its life, owned by one object.

`SweepState` is the file on the driver's disk that says which phase the sweep is in, which
Tune experiments and parent run are its, and whether its last driver stopped on the way.
`SweepLife` is its only writer, and the only writer of the parent run's status
(pipelines/sweep/parent_run.py): each move from phase to phase is a method, and a rerun
resumes where the file says.

    searching -> [confirming ->] registering -> finished

A driver that stops on the way leaves the phase as it was and marks the state `halted`:
interrupted (Ctrl-C, SIGTERM, a Tune stage stopped) or failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path

import mlflow
from ray import tune

from pipelines.runs import FAILED, KILLED, TrialRun
from pipelines.servers.probe import probe_tracking_server
from pipelines.sweep.job import SweepJob
from pipelines.sweep.parent_run import ParentRun
from pipelines.sweep.settings import SweepSettings
from pipelines.tracking import DataInput
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


def config_digest(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


# What a stopped sweep's last line ends with.
RESUME_HINT = "run the same command again to resume"

# Where a stop finds a sweep, by phase, until the conclusion names its parts (`SweepLife.now`).
PHASE_PARTS = {
    SweepPhase.SEARCHING: "in its search",
    SweepPhase.CONFIRMING: "in its confirmation",
    SweepPhase.REGISTERING: "while registering its winner",
    SweepPhase.FINISHED: "at its end",
}


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


class SweepInterrupted(KeyboardInterrupt):
    """A stop signal, and where it found the sweep; its runs are closed by then."""


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
    state = SweepState(tune_dir, record.parent_run_id, experiment_id, digest)
    state.save(path)
    return state, False


class SweepLife:
    """One sweep from its first phase to its last, across drivers: the only writer of its
    state file and of its parent run's status."""

    def __init__(self, job: SweepJob, state: SweepState, resuming: bool):
        self.job = job
        self.state = state
        # Whether this driver took the sweep over from an earlier one.
        self.resuming = resuming
        self.parent = state.parent_run()
        self._part: str | None = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, job: SweepJob, experiment_id: str, fresh: bool) -> Iterator[SweepLife]:
        """The sweep (its lock held): resumed where its state file says, or new.

        Whatever stops the driver inside leaves no run RUNNING and marks the state halted.
        """
        state, resuming = open_sweep_state(
            job.state_dir, job.tune_storage, job.sweep, experiment_id, fresh, job.values
        )
        life = cls(job, state, resuming)
        if resuming:
            life.parent.resume()
            life._move(halted=None)
        try:
            yield life
        except BaseException as error:
            life.stopped_by(error)
            if isinstance(error, KeyboardInterrupt) and not isinstance(error, SweepInterrupted):
                where = SweepInterrupted(f"sweep '{job.sweep.name}' stopped {life.part}")
                where.__notes__ = getattr(error, "__notes__", [])
                raise where from error
            raise

    @property
    def phase(self) -> SweepPhase:
        return self.state.phase

    @property
    def part(self) -> str:
        """Where the sweep is, in words: its phase's, or the part of the conclusion it is in."""
        return self._part or PHASE_PARTS.get(self.phase, f"while {self.phase}")

    def now(self, part: str) -> None:
        """Name the part of the conclusion the sweep is in, for the line a stop there prints."""
        self._part = part

    def trial_runs(self) -> list[TrialRun]:
        """The sweep's runs, scored on its objective (the first of two)."""
        return self.parent.trial_runs(self.job.sweep.primary)

    def log_data(self, inputs: Iterable[DataInput]) -> None:
        self.parent.log_data(inputs)

    def log_confirmation(self, run_id: str, mean: float, sd: float, seeds: list[TrialRun]) -> None:
        self.parent.log_confirmation(run_id, mean, sd, seeds)

    # Transitions ---------------------------------------------------------------------

    def enter(self, phase: str) -> None:
        """A Tune stage is over: the sweep is in `phase`, the next stage's or registering."""
        self._move(phase=phase)

    def finished(
        self,
        summary: str,
        winner: TrialRun,
        version: str,
        reason: str,
        metrics: dict[str, float],
        figures: list[Path],
    ) -> None:
        """Registered: the parent run closes with the sweep's summary; a rerun starts anew."""
        self.parent.close_with_summary(summary, winner, version, reason, metrics, figures)
        self._move(phase=SweepPhase.FINISHED, halted=None)

    def gave_up(self) -> None:
        """Nothing to register (every trial failed): nothing to resume either, so a rerun
        starts anew. The parent run closes FAILED as the error leaves `open`."""
        self._move(phase=SweepPhase.FINISHED)

    def interrupted(self) -> None:
        """A Tune stage stopped before its trials concluded: runs closed KILLED; the same
        command resumes the stage."""
        self.parent.stop(KILLED)
        self._move(halted=Halt.INTERRUPTED)

    def stopped_by(self, error: BaseException) -> None:
        """Leave no run RUNNING after whatever stopped the driver; say so if MLflow is away
        too (the rerun closes them)."""
        interrupted = isinstance(error, KeyboardInterrupt | SystemExit)
        status, why = (KILLED, None) if interrupted else (FAILED, repr(error))
        try:
            # A server that is down answers no faster for being asked: one quick look, not
            # another round of the client's retries (about 4 minutes by default).
            probe_tracking_server(mlflow.get_tracking_uri())
            self.parent.stop(status, why)
        except Exception as closing:  # the tracking server, or its disk, may be what failed
            # Said with the error, in the driver's one line about it.
            error.add_note(
                f"could not close the sweep's MLflow runs ({type(closing).__name__}); "
                "they are closed when the sweep resumes"
            )
        # After the runs: a state file that cannot be written (a full disk) must not keep
        # them RUNNING. Written whole or not at all, the state it had still resumes the sweep.
        with contextlib.suppress(OSError):
            self._move(halted=Halt.INTERRUPTED if interrupted else Halt.FAILED)

    def _move(self, **changes) -> None:
        self.state = replace(self.state, **changes)
        self.state.save(SweepState.path(self.job.state_dir, self.job.sweep))
