"""A sweep as the driver runs it; which Tune experiment and MLflow parent run it owns, kept
on the driver's disk; and the lock that keeps a second driver of the same sweep away."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout
from ray import tune

from pipelines.sweep_config import SweepConfig
from pipelines.tracking import SweepRecord
from postag.config import ConfigError, RunConfig, to_dict
from postag.files import write_text_atomically

if TYPE_CHECKING:
    from pipelines.sweep_clock import SweepClock

# Sweep state files, and Tune's experiments unless --storage names a shared location.
STORAGE_DIR = Path("runs/sweeps")


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


class SweepBusy(RuntimeError):
    """Another driver is running the same sweep."""


@dataclass(frozen=True)
class SweepState:
    tune_dir: str
    parent_run_id: str
    experiment_id: str
    # The experiment values the sweep was started with: a resume must run the same sweep.
    config_digest: str
    finished: bool = False
    # The confirmation stage's Tune experiment, once the search is over (sweep.confirm).
    confirm_dir: str | None = None

    @staticmethod
    def path(state_dir: Path, sweep: SweepConfig) -> Path:
        return state_dir / f"{sweep.name}.json"

    def save(self, path: Path) -> None:
        # Whole or not at all: a driver killed mid-write must leave a state a rerun can read.
        write_text_atomically(path, json.dumps(asdict(self), indent=1))

    def record(self) -> SweepRecord:
        return SweepRecord(self.experiment_id, self.parent_run_id)


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
    digest = hashlib.sha256(json.dumps(config_values, sort_keys=True).encode()).hexdigest()
    previous = SweepState(**json.loads(path.read_text())) if path.is_file() else None
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


def start_confirmation(state: SweepState, state_dir: Path, sweep: SweepConfig) -> SweepState:
    """The search is over and its confirmation starts: a resume goes on with the latter."""
    name = f"{state.tune_dir.rpartition('/')[2]}-confirm"
    started = replace(state, confirm_dir=f"{state.tune_dir.rpartition('/')[0]}/{name}")
    started.save(SweepState.path(state_dir, sweep))
    return started


def mark_finished(state: SweepState, state_dir: Path, sweep: SweepConfig) -> SweepState:
    """The sweep is over (registered, or nothing to register): a rerun starts a new one."""
    done = replace(state, finished=True)
    done.save(SweepState.path(state_dir, sweep))
    return done
