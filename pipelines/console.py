"""What a person reads: short lines of our own, durations, and everything Ray, Tune, MLflow
and Optuna say sent to a log file instead. A sweep's progress is pipelines/sweep/trial/progress.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow.utils.logging_utils as mlflow_logging
from tqdm import tqdm

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


@contextlib.contextmanager
def library_output_to(log_file: Path, verbose: bool) -> Iterator[None]:
    """Send the libraries' logging and warnings to `log_file` for the block (unless
    `verbose`), and put everything back after it: a caller in this process (a test, a
    notebook) must not inherit a silenced MLflow."""
    if verbose:
        yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = LogFileHandler(log_file)
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
        with contextlib.suppress(OSError):  # its disk full: said by what stopped on it
            handler.close()


class LogFileHandler(logging.FileHandler):
    """The log file's handler: a line it cannot write (its disk full) is dropped, where
    logging's own handler prints a traceback on the console for every one."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


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
