"""What a person reads while a sweep runs: a start line, progress, a line per finished trial,
and the answer. Everything Ray, Tune, MLflow and Optuna say goes to a log file instead.

In a terminal progress is a bar (tqdm); elsewhere (CI, a log) a line every so often.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow.utils.logging_utils as mlflow_logging
from ray.tune import Callback
from ray.tune.experiment import Trial
from tqdm import tqdm

from pipelines.sweep.runs import BEST_VAL_ACCURACY

# Libraries whose loggers print to the console unless told otherwise; py.warnings holds
# the warnings module's messages once logging captures them, and urllib3 says each retry
# of MLflow's HTTP client (a tracking server restarting).
LIBRARY_LOGGERS = ("ray", "mlflow", "optuna", "alembic", "urllib3", "py.warnings")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_ENVIRONMENT = {
    # MLflow draws a progress bar for every artifact it downloads (each trial's model).
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Tune's newer console output prints its box and result paths even at verbose=0; the
    # older reporter is silent there, and this module reports progress itself.
    "RAY_AIR_NEW_OUTPUT": "0",
    # Against a tracking server MLflow prints two "View run" lines for every run it ends, after
    # one more request to read the run; the sweep ends with its own link to compare them.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
# How often a non-terminal console gets a progress line.
PROGRESS_EVERY_S = 30.0
BAR_EVERY_S = 1.0


@contextlib.contextmanager
def library_output_to(log_file: Path, verbose: bool) -> Iterator[None]:
    """Send the libraries' logging and warnings to `log_file` for the block (unless
    `verbose`), and put everything back after it: a caller in this process (a test, a
    notebook) must not inherit a silenced MLflow."""
    if verbose:
        yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    logging.captureWarnings(True)
    for logger in loggers:
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(min(logger.level or logging.INFO, logging.INFO))
    # MLflow prints its event lines ("Created version 3") to this stream, not to a logger.
    mlflow_stream = mlflow_logging.MLFLOW_LOGGING_STREAM
    mlflow_logging.MLFLOW_LOGGING_STREAM = handler.stream
    try:
        with environment(QUIET_ENVIRONMENT):
            yield
    finally:
        mlflow_logging.MLFLOW_LOGGING_STREAM = mlflow_stream
        logging.captureWarnings(False)
        for logger, (handlers, propagate, level) in zip(loggers, saved, strict=True):
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
        handler.close()


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Environment variables set for the block, and as they were after it."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def say(text: str) -> None:
    """A line for the person at the console, clear of a progress bar if one is drawn."""
    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class SweepProgress(Callback):
    """Trials done / running / pending, the best validation accuracy so far, time left."""

    def __init__(self, total: int, is_baseline: Callable[[dict], bool], name: Callable[..., str]):
        self.total = total
        self.is_baseline = is_baseline
        self.name = name
        self._start()

    def _start(self) -> None:
        self.started = time.monotonic()
        self.last_line = self.started
        self.done_here = 0  # trials concluded by this driver, for the time estimate
        self.interactive = sys.stdout.isatty()
        self.bar = (
            tqdm(total=self.total, unit="trial", dynamic_ncols=True) if self.interactive else None
        )

    # Tune pickles callbacks into its experiment state: a bar and clocks do not travel.
    def __getstate__(self) -> dict:
        return {k: self.__dict__[k] for k in ("total", "is_baseline", "name")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._start()

    def on_trial_complete(self, iteration, trials, trial: Trial, **info):
        result = trial.last_result or {}
        accuracy = result.get(BEST_VAL_ACCURACY)
        figure = f"best val {100 * accuracy:.2f}%" if accuracy is not None else "no result"
        self._concluded(trials, trial, figure)

    def on_trial_error(self, iteration, trials, trial: Trial, **info):
        error = str(trial.get_error() or "").strip().splitlines()
        self._concluded(trials, trial, f"FAILED  {error[-1] if error else ''}")

    def on_step_end(self, iteration, trials, **info):
        # Tune steps many times a second: redraw the bar once a second, a line every 30 s.
        every = BAR_EVERY_S if self.bar is not None else PROGRESS_EVERY_S
        if time.monotonic() - self.last_line < every:
            return
        self.last_line = time.monotonic()
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
        self.done_here += 1
        # Tune calls this hook before it marks the trial itself as concluded.
        done = self._counts([t for t in trials if t is not trial])["done"] + 1
        say(
            f"trial {done}/{self.total}  {self._label(trial)}  {outcome}  "
            f"({duration(time.monotonic() - self.started)})"
        )

    def _label(self, trial: Trial) -> str:
        return self.name(trial.config, self.is_baseline(trial.config))

    def _counts(self, trials: list[Trial]) -> dict[str, int]:
        done = sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials)
        running = sum(t.status == Trial.RUNNING for t in trials)
        return {"done": done, "running": running, "pending": self.total - done - running}

    def _summary(self, trials: list[Trial], counts: dict[str, int]) -> str:
        scores = [
            t.last_result[BEST_VAL_ACCURACY]
            for t in trials
            if not self.is_baseline(t.config) and BEST_VAL_ACCURACY in (t.last_result or {})
        ]
        best = f"best val {100 * max(scores):.2f}%" if scores else "no result yet"
        elapsed = time.monotonic() - self.started
        left = ""
        if self.done_here:
            remaining = self.total - counts["done"]
            left = f", ~{duration(elapsed / self.done_here * remaining)} left"
        return (
            f"{counts['done']}/{self.total} done, {counts['running']} running, "
            f"{counts['pending']} pending; {best}; {duration(elapsed)} elapsed{left}"
        )
