"""Where a sweep's time goes: each trial slot's wall time split into training and validating,
trial start-up, per-epoch reporting and checkpoints, model logging, the sweep's own start and
end, and idle.

Two Tune callbacks bracket the sweep's own (`opening` first, `closing` last): Tune calls
callbacks in order in its one driver thread, so what passes between the two is the time the
driver spent in the sweep's callbacks, during which no trial is started or handed a result.
The trials say when each epoch's report began and how long it trained and validated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ray import tune
from ray.tune import Callback
from ray.tune.experiment import Trial

from pipelines.sweep.stages.stage import StageRunner
from pipelines.sweep.trial.trainable import train_trial

# The wall clock as a trial's report began, added to each of its results by the bench's own
# trainable (`clocked_trial`): where a trial's time went.
REPORTED_AT_KEY = "reported_at"


@dataclass
class TrialTimes:
    started: float
    ended: float | None = None
    # Per epoch: (seconds training and validating, wall time its report began).
    epochs: list[tuple[float, float]] = field(default_factory=list)
    model_logging: float = 0.0


@dataclass(frozen=True)
class TimeSplit:
    """Slot-seconds (wall seconds x trial slots) by what filled them."""

    wall_seconds: float
    slots: int
    training: float
    trial_start_up: float
    reporting: float
    model_logging: float
    sweep_start: float
    sweep_end: float
    # The driver's per-epoch MLflow logging, inside `reporting`: a trial waits for it.
    epoch_logging: float

    @property
    def total(self) -> float:
        return self.wall_seconds * self.slots

    @property
    def idle(self) -> float:
        used = (
            self.training
            + self.trial_start_up
            + self.reporting
            + self.model_logging
            + self.sweep_start
            + self.sweep_end
        )
        return self.total - used

    def rows(self) -> list[tuple[str, float]]:
        return [
            ("trials training and validating", self.training),
            ("trial start-up (process, dataset, model)", self.trial_start_up),
            ("per-epoch reporting and checkpoints", self.reporting),
            ("model logging (driver)", self.model_logging),
            ("sweep start (Ray, data, MLflow), all slots", self.sweep_start),
            ("registration, evaluation and importance, all slots", self.sweep_end),
            ("idle slots", self.idle),
        ]


class SweepClock:
    """Times one sweep, started and finished by one driver, from its Tune callbacks."""

    def __init__(self) -> None:
        self.trials: dict[str, TrialTimes] = {}
        # The driver's time in the sweep's callbacks as a trial starts (its MLflow run made)
        # and as each epoch is reported (logged).
        self.run_creation = 0.0
        self.epoch_logging = 0.0
        self._opened: dict[tuple[str, str], float] = {}
        self.opening, self.closing = _Opening(self), _Closing(self)

    def open(self, hook: str, trial: Trial) -> None:
        self._opened[(hook, trial.trial_id)] = time.time()

    def close(self, hook: str, trial: Trial) -> float:
        """Seconds since the same hook's opening for the same trial."""
        return time.time() - self._opened.pop((hook, trial.trial_id))

    def split(self, sweep_started: float, sweep_ended: float, slots: int) -> TimeSplit:
        """The split of [sweep_started, sweep_ended] (time.time()) over `slots` slots."""
        trials = [t for t in self.trials.values() if t.ended is not None]
        if not trials:
            raise ValueError("no trial concluded while the clock ran")
        training = sum(seconds for t in trials for seconds, _ in t.epochs)
        start_up = sum(
            t.epochs[0][1] - t.epochs[0][0] - t.started if t.epochs else t.ended - t.started
            for t in trials
        )
        occupied = sum(t.ended - t.started for t in trials)
        first_start = min(t.started for t in trials)
        last_end = max(t.ended + t.model_logging for t in trials)
        return TimeSplit(
            wall_seconds=sweep_ended - sweep_started,
            slots=slots,
            training=training,
            trial_start_up=start_up,
            reporting=occupied - start_up - training,
            model_logging=sum(t.model_logging for t in trials),
            sweep_start=(first_start - sweep_started) * slots,
            sweep_end=(sweep_ended - last_end) * slots,
            epoch_logging=self.epoch_logging,
        )


class _Opening(Callback):
    """First in Tune's callback list."""

    def __init__(self, clock: SweepClock):
        self.clock = clock

    def on_trial_start(self, iteration, trials, trial: Trial, **info):
        self.clock.trials[trial.trial_id] = TrialTimes(started=time.time())
        self.clock.open("start", trial)

    def on_trial_result(self, iteration, trials, trial: Trial, result: dict, **info):
        self.clock.open("result", trial)
        if REPORTED_AT_KEY in result:
            seconds = result["epoch_seconds"] + result["validation_seconds"]
            self.clock.trials[trial.trial_id].epochs.append((seconds, result[REPORTED_AT_KEY]))

    def on_trial_complete(self, iteration, trials, trial: Trial, **info):
        self._ended(trial)

    def on_trial_error(self, iteration, trials, trial: Trial, **info):
        self._ended(trial)

    def _ended(self, trial: Trial) -> None:
        times = self.clock.trials.get(trial.trial_id)
        if times is not None:
            times.ended = time.time()
        self.clock.open("end", trial)


class _Closing(Callback):
    """Last in Tune's callback list."""

    def __init__(self, clock: SweepClock):
        self.clock = clock

    def on_trial_start(self, iteration, trials, trial: Trial, **info):
        self.clock.run_creation += self.clock.close("start", trial)

    def on_trial_result(self, iteration, trials, trial: Trial, result: dict, **info):
        self.clock.epoch_logging += self.clock.close("result", trial)

    def on_trial_complete(self, iteration, trials, trial: Trial, **info):
        self._ended(trial)

    def on_trial_error(self, iteration, trials, trial: Trial, **info):
        self._ended(trial)

    def _ended(self, trial: Trial) -> None:
        seconds = self.clock.close("end", trial)
        if trial.trial_id in self.clock.trials:
            self.clock.trials[trial.trial_id].model_logging += seconds


def clocked_trial(point: dict, **parameters) -> None:
    """The sweep's own trainable, each report it sends stamped with the wall clock as it
    began (`REPORTED_AT_KEY`); in the trial's own process, so `tune.report` is replaced for
    it alone."""
    report = tune.report

    def stamped(metrics: dict, *args, **kwargs):
        return report({**metrics, REPORTED_AT_KEY: time.time()}, *args, **kwargs)

    tune.report = stamped
    try:
        train_trial(point, **parameters)
    finally:
        tune.report = report


@dataclass(frozen=True)
class ClockedRunner(StageRunner):
    """The sweep's stage runner, timed: each trial trains in `timed` (the sweep's trainable
    with its reports stamped, or a bench's own), and the clock's callbacks bracket the
    sweep's own."""

    clock: SweepClock = field(default_factory=SweepClock)
    timed: Callable = clocked_trial

    def trainable(self) -> Callable:
        return self.timed

    def callbacks(self, records: Callback, progress: Callback) -> list[Callback]:
        return [self.clock.opening, *super().callbacks(records, progress), self.clock.closing]
