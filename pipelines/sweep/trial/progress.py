"""A sweep's progress as a person reads it: a line per finished trial, and in a terminal a
bar (tqdm), elsewhere (CI, a log) a line every so often, with the best so far and time left.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ray.tune import Callback
from ray.tune.experiment import Trial
from tqdm import tqdm

from pipelines.console import duration, say
from pipelines.sweep.trial.trainable import PLANNED_EPOCHS_KEY
from postag.training.objective import Objective

# How often a non-terminal console gets a progress line: every 30 s at first, then every
# tenth of the time elapsed, so that a log holds about 40 lines for a 2-hour sweep, not 240.
PROGRESS_EVERY_S = 30.0
PROGRESS_SHARE_OF_ELAPSED = 0.1
BAR_EVERY_S = 1.0


def line_interval(elapsed: float) -> float:
    """Seconds between progress lines on a console that is not a terminal."""
    return max(PROGRESS_EVERY_S, PROGRESS_SHARE_OF_ELAPSED * elapsed)


class SweepProgress(Callback):
    """Trials done / running / pending, the best score on the objective so far, time left."""

    def __init__(
        self,
        total: int,
        is_baseline: Callable[[dict], bool],
        name: Callable[..., str],
        objective: Objective,
    ):
        self.total = total
        self.is_baseline = is_baseline
        self.name = name
        self.objective = objective
        self._start()

    def _start(self) -> None:
        self.started = time.monotonic()
        self.last_line = self.started
        self.interactive = sys.stdout.isatty()
        self.bar = (
            tqdm(total=self.total, unit="trial", dynamic_ncols=True) if self.interactive else None
        )

    # Tune pickles callbacks into its experiment state: a bar and clocks do not travel.
    def __getstate__(self) -> dict:
        return {k: self.__dict__[k] for k in ("total", "is_baseline", "name", "objective")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._start()

    def on_trial_complete(self, iteration, trials, trial: Trial, **info):
        result = trial.last_result or {}
        score = result.get(self.objective.best_metric)
        figure = self._figure(score) if score is not None else "no result"
        self._concluded(trials, trial, figure)

    def on_trial_error(self, iteration, trials, trial: Trial, **info):
        error = str(trial.get_error() or "").strip().splitlines()
        self._concluded(trials, trial, f"FAILED  {error[-1] if error else ''}")

    def on_step_end(self, iteration, trials, **info):
        # Tune steps many times a second: redraw the bar once a second, a line more rarely.
        now = time.monotonic()
        every = BAR_EVERY_S if self.bar is not None else line_interval(now - self.started)
        if now - self.last_line < every:
            return
        self.last_line = now
        counts = self._counts(trials)
        if self.bar is not None:
            self.bar.n = counts["done"]
            self.bar.set_postfix_str(self._summary(trials, counts), refresh=True)
        else:
            say(f"progress: {self._summary(trials, counts)}")

    def on_experiment_end(self, trials, **info):
        if self.bar is not None:
            self.bar.n = self._counts(trials)["done"]
            self.bar.close()

    def _concluded(self, trials, trial: Trial, outcome: str) -> None:
        # Tune calls this hook before it marks the trial itself as concluded.
        done = self._counts([t for t in trials if t is not trial])["done"] + 1
        say(
            f"trial {done}/{self.total}  {self._label(trial)}  {outcome}  "
            f"({duration(time.monotonic() - self.started)})"
        )

    def _figure(self, score: float) -> str:
        return f"{self.objective.label} {self.objective.shown(score)}"

    def _label(self, trial: Trial) -> str:
        return self.name(trial.config, self.is_baseline(trial.config))

    def _counts(self, trials: list[Trial]) -> dict[str, int]:
        done = sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials)
        running = sum(t.status == Trial.RUNNING for t in trials)
        return {"done": done, "running": running, "pending": self.total - done - running}

    def _summary(self, trials: list[Trial], counts: dict[str, int]) -> str:
        key = self.objective.best_metric
        scores = [
            t.last_result[key]
            for t in trials
            if not self.is_baseline(t.config) and key in (t.last_result or {})
        ]
        best = self._figure(self.objective.best(scores)) if scores else "no result yet"
        elapsed = time.monotonic() - self.started
        left = self._time_left(trials, counts)
        left = f", ~{duration(left)} left" if left is not None else ""
        return (
            f"{counts['done']}/{self.total} done, {counts['running']} running, "
            f"{counts['pending']} pending; {best}; {duration(elapsed)} elapsed{left}"
        )

    def _time_left(self, trials: list[Trial], counts: dict[str, int]) -> float | None:
        running = [t for t in trials if t.status == Trial.RUNNING]
        finished = [t for t in trials if t.status == Trial.TERMINATED]
        return time_left(
            [p for t in running if (p := pace(t, self.is_baseline(t.config)))],
            [p for t in finished if (p := pace(t, self.is_baseline(t.config)))],
            pending=counts["pending"],
            slots=max(counts["running"], 1),
        )


@dataclass(frozen=True)
class Pace:
    """A trial's pace, read from its last result."""

    seconds_per_epoch: float
    epochs_done: int
    epochs: int
    baseline: bool

    @property
    def seconds_left(self) -> float:
        return self.seconds_per_epoch * (self.epochs - self.epochs_done)

    @property
    def seconds_in_all(self) -> float:
        return self.seconds_per_epoch * self.epochs


def pace(trial: Trial, baseline: bool) -> Pace | None:
    """None until the trial has reported an epoch."""
    result = trial.last_result or {}
    if not {"epoch", PLANNED_EPOCHS_KEY, "time_total_s"} <= result.keys():
        return None
    epoch = int(result["epoch"])
    # A running trial's last epoch follows the cores' load now: a neighbour that finished,
    # the weight averaging that began. The first epoch also holds the trial's start-up.
    last = result.get("time_this_iter_s")
    recent = trial.status == Trial.RUNNING and epoch > 1 and last is not None
    per_epoch = last if recent else result["time_total_s"] / epoch
    return Pace(per_epoch, epoch, int(result[PLANNED_EPOCHS_KEY]), baseline)


def time_left(running: list[Pace], finished: list[Pace], pending: int, slots: int) -> float | None:
    """Seconds until the stage ends, or None before any running trial has an epoch.

    Not the finished trials' share of the whole: trials side by side finish together, and a
    short baseline done in the first minutes would make that share say the sweep is a
    quarter done. The running trials end at their own pace; each pending one takes as long
    as a searched trial in all, and they share the slots the running trials free.
    """
    if not running:
        return None
    searched = [p for p in [*running, *finished] if not p.baseline] or running
    per_pending = statistics.fmean(p.seconds_in_all for p in searched)
    work = sum(p.seconds_left for p in running) + pending * per_pending
    return max(max(p.seconds_left for p in running), work / slots)
