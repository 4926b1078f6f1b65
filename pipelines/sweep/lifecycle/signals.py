"""How a sweep's driver takes a stop: SIGTERM (a job scheduler, `timeout`, `kill`, a
container stop) as Ctrl-C, from the driver's first line to its last.

The libraries on the way install handlers of their own and leave them behind: `ray.init`
makes SIGTERM call `sys.exit` (it ended the process during the conclusion, leaving the
parent run RUNNING), and Tune's `fit` leaves its SIGINT handler, which only sets a flag
that nobody reads once `fit` has returned (a Ctrl-C in the conclusion did nothing). So the
driver takes both signals back before and after each of them, here.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator


def _as_ctrl_c(*_) -> None:
    signal.raise_signal(signal.SIGINT)


def take_stop_signals() -> None:
    """SIGTERM does what SIGINT does; SIGINT raises KeyboardInterrupt (Python's own), except
    inside Tune's `fit`, which stops its trials gracefully on it."""
    signal.signal(signal.SIGTERM, _as_ctrl_c)
    signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def stop_signals_as_ctrl_c() -> Iterator[None]:
    """The driver's stop signals for the block; those it found are put back after."""
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    take_stop_signals()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def fit_stoppably(tuner) -> bool:
    """`tuner.fit()`; whether a stop signal came while it ran.

    Tune's handler, on the first SIGINT, saves its experiment, ends `fit` and puts back the
    handler it found (ours); so ours in place after `fit` means that a stop came. A stop
    that came as the last trial concluded ends `fit` as if nothing had happened: the caller
    must still stop the sweep.
    """
    take_stop_signals()
    tuner.fit()
    # Read as Tune reads it (ray/tune/tune.py): set, Tune leaves SIGINT to us all along.
    tune_caught_sigint = int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0")) == 0
    stopped = tune_caught_sigint and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    take_stop_signals()
    return stopped
