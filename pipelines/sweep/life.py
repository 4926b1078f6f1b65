"""A sweep's life across drivers (`SweepLife`): the only writer of its state file
(pipelines/sweep/state.py) and of its parent run's status (pipelines/sweep/parent_run.py).
Each move from phase to phase is a method; a rerun resumes where the state file says, and
whatever stops a driver leaves no run RUNNING.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import mlflow
from mlflow.entities import Run

from pipelines.runs import FAILED, KILLED, ROLE_TAG, SWEEP_ROLE, TrialRun
from pipelines.servers.probe import probe_tracking_server
from pipelines.sweep.job import SweepJob
from pipelines.sweep.state import (
    EXTENDING,
    Halt,
    SweepPhase,
    SweepState,
    open_sweep_state,
)
from pipelines.tracking import DataInput
from postag.config import ConfigError

# Where a stop finds a sweep, by phase, until the conclusion names its parts (`SweepLife.now`).
PHASE_PARTS = {
    SweepPhase.SEARCHING: "in its search",
    SweepPhase.CONFIRMING: "in its confirmation",
    SweepPhase.REGISTERING: "while registering its winner",
    SweepPhase.FINISHED: "at its end",
}


class SweepInterrupted(KeyboardInterrupt):
    """A stop signal, and where it found the sweep; its runs are closed by then."""


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
        sweeps_named(experiment_id, job.sweep.warm_start)  # said before a run opens
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
        if self._part is None and self.phase.startswith(EXTENDING):
            return "in its added trials"
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

    def plan(self, tune_dir: str, trials: int) -> None:
        """A search stage starts with `trials` planned."""
        name = tune_dir.rpartition("/")[2]
        self._move(planned={**self.state.planned, name: trials})

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


def sweeps_named(experiment_id: str, names: Iterable[str]) -> dict[str, list[Run]]:
    """Each named sweep's parent runs in this store (one a `--fresh` start); a ConfigError
    names the first sweep with none (`sweep.warm_start`, `--from`)."""
    client = mlflow.MlflowClient()
    found = {}
    for name in names:
        found[name] = client.search_runs(
            [experiment_id],
            filter_string=f"tags.{ROLE_TAG} = '{SWEEP_ROLE}' and tags.sweep = '{name}'",
        )
        if not found[name]:
            raise ConfigError(
                f"sweep.warm_start: no sweep named '{name}' in this MLflow store "
                f"({mlflow.get_tracking_uri()})"
            )
    return found
