"""A sweep's life, owned by one object: `SweepLife` holds the lock that keeps a second
driver away, the state file on the driver's disk (pipelines/sweep/state.py), the MLflow
parent run, and the stage the sweep is in. Each move from stage to stage is a method; the
state file records the stage, so a rerun resumes there.

    searching -> [confirming ->] registering -> finished

A driver that stops on the way leaves the stage as it was and marks the state `halted`:
interrupted (Ctrl-C, SIGTERM, a Tune stage stopped) or failed. No other module closes,
abandons or finishes a sweep's runs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import mlflow
from filelock import FileLock, Timeout
from ray import tune

from pipelines.runs import FAILED, KILLED, TrialRun
from pipelines.servers.probe import probe_tracking_server
from pipelines.sweep.config import SweepConfig
from pipelines.sweep.job import Sweep
from pipelines.sweep.records import SweepRecord
from pipelines.sweep.state import Halt, SweepStage, SweepState, config_digest
from pipelines.tracking import DataInput
from postag.config import ConfigError, to_dict

# Sweep state files, and Tune's experiments unless --storage names a shared location.
STORAGE_DIR = Path("runs/sweeps")


# Where a stop finds a sweep, by stage, until the conclusion names its parts (`SweepLife.now`).
STAGE_PARTS = {
    SweepStage.SEARCHING: "in its search",
    SweepStage.CONFIRMING: "in its confirmation",
    SweepStage.REGISTERING: "while registering its winner",
    SweepStage.FINISHED: "at its end",
}


class SweepBusy(RuntimeError):
    """Another driver is running the same sweep."""


class SweepInterrupted(KeyboardInterrupt):
    """A stop signal, and where it found the sweep; its runs are closed by then."""


def sweep_storage(storage: str | Path) -> tuple[str, Path]:
    """(where Tune keeps experiments and checkpoints, the local folder for sweep state files).

    A URI (s3://bucket/path, gs://..., a path on NFS) goes to Tune as it is: on a cluster,
    every node must reach it to save and restore checkpoints. State files stay local.
    """
    text = str(storage)
    if "://" in text:
        tune_storage, state_dir = text.rstrip("/"), STORAGE_DIR.resolve()
    else:
        state_dir = Path(text).resolve()
        tune_storage = str(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    return tune_storage, state_dir


@contextlib.contextmanager
def sole_driver(state_dir: Path, sweep: SweepConfig) -> Iterator[None]:
    """Hold the sweep's lock file while it runs: two drivers of one sweep would both write
    its state and runs. The OS drops the lock when the holder dies, even by SIGKILL."""
    path = state_dir / f"{sweep.name}.lock"
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise SweepBusy(
            f"sweep '{sweep.name}' is already running in another driver (it holds {path}); "
            "wait for it to end, or stop it (Ctrl-C) and run this command again to resume"
        ) from None
    try:
        yield
    finally:
        lock.release()


def open_sweep_state(
    state_dir: Path,
    tune_storage: str,
    sweep: SweepConfig,
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
        previous.record().abandon(why)
        print(
            f"sweep '{sweep.name}': the unfinished sweep is abandoned ({why}); its runs are "
            f"closed as KILLED under parent run {previous.parent_run_id}; starting anew",
            flush=True,
        )
    record = SweepRecord.start(experiment_id, sweep.name, config_values, to_dict(sweep))
    tune_dir = f"{tune_storage}/{sweep.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    state = SweepState(tune_dir, record.parent_run_id, experiment_id, digest)
    state.save(path)
    return state, False


class SweepLife:
    """One sweep from its first stage to its last, across drivers: the only writer of its
    state file and of its parent run's status."""

    def __init__(self, job: Sweep, state: SweepState, resuming: bool):
        self.job = job
        self.state = state
        # Whether this driver took the sweep over from an earlier one.
        self.resuming = resuming
        self.record = state.record()
        self._part: str | None = None

    @staticmethod
    def lock(job: Sweep) -> contextlib.AbstractContextManager[None]:
        """Held before anything else: a second driver of the sweep is refused at once."""
        return sole_driver(job.state_dir, job.sweep)

    @classmethod
    @contextlib.contextmanager
    def open(cls, job: Sweep, experiment_id: str, fresh: bool) -> Iterator[SweepLife]:
        """The sweep (its lock held): resumed where its state file says, or new.

        Whatever stops the driver inside leaves no run RUNNING and marks the state halted.
        """
        state, resuming = open_sweep_state(
            job.state_dir, job.tune_storage, job.sweep, experiment_id, fresh, job.values
        )
        life = cls(job, state, resuming)
        if resuming:
            life.record.resume()
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
    def stage(self) -> SweepStage:
        return self.state.stage

    @property
    def part(self) -> str:
        """Where the sweep is, in words: its stage's, or the part of the conclusion it is in."""
        return self._part or STAGE_PARTS[self.stage]

    def now(self, part: str) -> None:
        """Name the part of the conclusion the sweep is in, for the line a stop there prints."""
        self._part = part

    def trial_runs(self) -> list[TrialRun]:
        return self.record.trial_runs()

    def log_data(self, inputs: Iterable[DataInput]) -> None:
        self.record.log_data(inputs)

    def log_confirmation(self, run_id: str, mean: float, sd: float, seeds: list[TrialRun]) -> None:
        self.record.log_confirmation(run_id, mean, sd, seeds)

    # Transitions ---------------------------------------------------------------------

    def searched(self) -> None:
        """The search is over: its best are confirmed next if the sweep asks, else the
        winner is registered."""
        if self.job.sweep.confirm is None:
            self._move(stage=SweepStage.REGISTERING)
            return
        name = f"{self.state.tune_dir.rpartition('/')[2]}-confirm"
        confirm_dir = f"{self.state.tune_dir.rpartition('/')[0]}/{name}"
        self._move(stage=SweepStage.CONFIRMING, confirm_dir=confirm_dir)

    def confirmed(self) -> None:
        self._move(stage=SweepStage.REGISTERING)

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
        self.record.finish(summary, winner, version, reason, metrics, figures)
        self._move(stage=SweepStage.FINISHED, halted=None)

    def gave_up(self) -> None:
        """Nothing to register (every trial failed): nothing to resume either, so a rerun
        starts anew. The parent run closes FAILED as the error leaves `open`."""
        self._move(stage=SweepStage.FINISHED)

    def interrupted(self) -> None:
        """A Tune stage stopped before its trials concluded: runs closed KILLED; the same
        command resumes the stage."""
        self.record.stop(KILLED)
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
            self.record.stop(status, why)
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
