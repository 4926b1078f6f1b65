"""A sweep's life across drivers (`SweepLife`): the only writer of its state file
(pipelines/sweep/lifecycle/state.py) and of its parent run's status
(pipelines/sweep/lifecycle/parent_run.py). It opens the sweep: resumed where the state file
says, started anew, or, where the experiment file changed, what that change means for it
(below: trials added extend it, a new `sweep.register` concludes it again, anything else
to an interrupted sweep is refused). Each move from phase to phase is a method, and
whatever stops a driver leaves no run RUNNING.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import mlflow
from ray import tune

from pipelines.names import FAILED, KILLED
from pipelines.runs import TrialRun
from pipelines.servers.probe import probe_tracking_server
from pipelines.sweep.lifecycle.parent_run import ParentRun, sweeps_named
from pipelines.sweep.lifecycle.state import (
    EXTENDING,
    Halt,
    SweepPhase,
    SweepState,
    config_digest,
)
from pipelines.sweep.setup.job import SweepJob
from pipelines.sweep.setup.settings import SweepSettings
from pipelines.tracking import DataInput
from postag.config import ConfigError, to_dict

# Where a stop finds a sweep, by phase, until the conclusion names its parts (`SweepLife.now`).
PHASE_PARTS = {
    SweepPhase.SEARCHING: "in its search",
    SweepPhase.CONFIRMING: "in its confirmation",
    SweepPhase.REGISTERING: "while registering its winner",
    SweepPhase.FINISHED: "at its end",
}


class SweepInterrupted(KeyboardInterrupt):
    """A stop signal, and where it found the sweep; its runs are closed by then."""


class StoppedWhenDone(Exception):
    """A stop signal that came once the sweep had finished (its version registered, its
    parent run closed): its work is done, and there is nothing to resume."""

    def __init__(self, name: str, version: str, parent_run_id: str):
        super().__init__(
            f"sweep '{name}' had finished when the stop came: version {version} is registered "
            f"(parent run {parent_run_id}); nothing to resume, and the same command prints its "
            "answer again"
        )


class SweepUpToDate(Exception):
    """The sweep finished with this very experiment file: nothing to train or write."""

    def __init__(self, state: SweepState, sweep: SweepSettings):
        super().__init__(state.parent_run_id)
        self.state = state
        self.sweep = sweep


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
        # The version this driver registered as it finished the sweep.
        self._registered: str | None = None

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
            if life.done and isinstance(error, KeyboardInterrupt):
                raise life.stopped_when_done() from error
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
    def done(self) -> bool:
        """Whether this driver finished the sweep: its version registered, its runs closed."""
        return self.phase == SweepPhase.FINISHED and self._registered is not None

    def stopped_when_done(self) -> StoppedWhenDone:
        assert self._registered is not None
        return StoppedWhenDone(self.job.sweep.name, self._registered, self.state.parent_run_id)

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
        """Registered: the parent run closes with the sweep's summary. A rerun of the same
        file finds it up to date; a changed one extends it, concludes it again or starts
        anew (`open_sweep_state`)."""
        self.parent.close_with_summary(summary, winner, version, reason, metrics, figures)
        self._move(phase=SweepPhase.FINISHED, halted=None)
        self._registered = version

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


# Opening: resumed, anew, or as a changed file says ------------------------------------


def open_sweep_state(
    state_dir: Path,
    tune_storage: str,
    sweep: SweepSettings,
    experiment_id: str,
    fresh: bool,
    config_values: dict,
) -> tuple[SweepState, bool]:
    """The unfinished sweep to resume, or a new one with its parent run; (state, resuming).
    A sweep that finished with these very values is up to date (`SweepUpToDate`): nothing
    is started, and nothing written."""
    path = SweepState.path(state_dir, sweep)
    digest = config_digest(config_values)
    previous = SweepState.read(path) if path.is_file() else None
    if previous is not None:
        refuse_another_experiments_sweep(previous, sweep, experiment_id, path)
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
    if previous is not None and not fresh and up_to_date(previous, digest):
        raise SweepUpToDate(previous, sweep)
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
        abandon(previous, sweep.name, fresh)
    record = ParentRun.start(experiment_id, sweep.name, config_values, to_dict(sweep))
    tune_dir = f"{tune_storage}/{sweep.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    state = SweepState(
        tune_dir, record.parent_run_id, experiment_id, digest, searched=(config_values,)
    )
    state.save(path)
    return state, False


def refuse_another_experiments_sweep(
    previous: SweepState, sweep: SweepSettings, experiment_id: str, path: Path
) -> None:
    """A sweep's state is kept by its name (`path`): one of the same name in another MLflow
    experiment (sweep.experiment, $MLFLOW_EXPERIMENT_NAME) is another sweep, which this one
    must neither resume, nor call up to date, nor abandon."""
    if previous.experiment_id == experiment_id:
        return
    raise ConfigError(
        f"sweep '{sweep.name}' ({path}) belongs to MLflow experiment id "
        f"{previous.experiment_id}, not to '{sweep.experiment}' (id {experiment_id}): give "
        f"this one a name of its own (sweep.name, or --set sweep.name=...)"
    )


def abandon(previous: SweepState, name: str, fresh: bool) -> None:
    """An unfinished sweep that will never resume: its runs closed KILLED, and why."""
    why = "--fresh" if fresh else f"its Tune state {previous.tune_dir} cannot be restored"
    previous.parent_run().abandon(why)
    print(
        f"sweep '{name}': the unfinished sweep is abandoned ({why}); its runs are closed as "
        f"KILLED under parent run {previous.parent_run_id}; starting anew",
        flush=True,
    )


def up_to_date(previous: SweepState, digest: str) -> bool:
    """Whether the sweep finished, a version registered, with the experiment values whose
    digest is `digest` (a sweep whose every trial failed registered none)."""
    return (
        previous.finished
        and previous.config_digest == digest
        and previous.parent_run().registered_version() is not None
    )


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


# What a changed experiment file does -----------------------------------------------------
#
# Whether an experiment file changed only by adding trials to its sweep: more samples
# (`sweep.num_samples`), or, for a grid, more values on an axis. Such a change extends the
# sweep, finished or interrupted: the same command trains just the new trials under the same
# parent run. A change to what it registers alone (`sweep.register`) concludes it again, with
# its trials as they stand. Any other change to an interrupted sweep is refused; to a
# finished one, it starts a sweep anew.


def added_trials(before: dict, after: dict) -> str | None:
    """What `after` (an experiment file's values) adds to `before`, in words, when adding
    trials is all it does; None otherwise (no change, or another one)."""
    old, new = copy.deepcopy(before), copy.deepcopy(after)
    old_sweep, new_sweep = old.get("sweep", {}), new.get("sweep", {})
    if not extendable(old_sweep):
        return None
    added = []
    samples = old_sweep.get("num_samples", 1), new_sweep.get("num_samples", 1)
    if isinstance(samples[1], int) and samples[1] > samples[0]:
        added.append(f"sweep.num_samples {samples[0]} -> {samples[1]}")
        new_sweep.pop("num_samples")
        if "num_samples" in old_sweep:
            new_sweep["num_samples"] = samples[0]
    if old_sweep.get("search", "grid") == "grid" == new_sweep.get("search", "grid"):
        for key, axis in new_sweep.get("space", {}).items():
            values = old_sweep.get("space", {}).get(key)
            if grows(values, axis):
                more = [value for value in axis if value not in values]
                added.append(f"sweep.space.{key} + {json.dumps(more)}")
                new_sweep["space"][key] = values
    return ", ".join(added) if added and new == old else None


# The settings of how a sweep concludes, not of what it trains; and their defaults.
CONCLUSION_SETTINGS = {"register": "run"}


def concluded_otherwise(before: dict, after: dict) -> str | None:
    """What `after` changes in how the sweep concludes, in words, when that is all it
    changes; None otherwise."""
    old, new = copy.deepcopy(before), copy.deepcopy(after)
    changed = []
    for key, default in CONCLUSION_SETTINGS.items():
        was = old.get("sweep", {}).pop(key, default)
        now = new.get("sweep", {}).pop(key, default)
        if was != now:
            changed.append(f"sweep.{key} {was} -> {now}")
    return ", ".join(changed) if changed and new == old else None


def grows(before, after) -> bool:
    """`after` is the list `before` with values added (anywhere), none repeated."""
    return (
        isinstance(before, list)
        and isinstance(after, list)
        and len(after) > len(before)
        and all(value in after for value in before)
        and len({json.dumps(value) for value in after}) == len(after)
    )


def extendable(sweep: dict) -> bool:
    """A sweep whose later trials can run in a Tune experiment of their own: not one whose
    winner comes from seeds it trains itself (a confirmation, a search over seeds), which
    read their trials from the search's own experiment."""
    return sweep.get("confirm") is None and "train.seed" not in sweep.get("space", {})
