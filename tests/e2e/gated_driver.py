"""A sweep driver whose trials wait at a gate until COUNT of them have begun, so that a test
sees the sweep's concurrency limit reached however slowly a busy machine starts the trials'
processes:

    python -m tests.e2e.gated_driver COUNT [sweep arguments...]

Each trial, before it trains, leaves a mark in the folder `gate` beside the driver and
waits there until COUNT marks are in it, or GATE_SECONDS have passed: then it trains
anyway, and a test's count of runs open at once falls short of COUNT and fails. Trials
that begin once the gate is open pass straight through.

This module's functions travel to Ray's workers by value (cloudpickle), the gate's folder
and count with them: a worker on another node of a cluster needs neither this module on its
path nor the driver's environment.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ray import cloudpickle

from pipelines.sweep import driver
from pipelines.sweep.stages.stage import StageRunner
from pipelines.sweep.trial.trainable import train_trial

GATE_SECONDS = 180
POLL_SECONDS = 0.2


def wait_at_gate(gate: Path, count: int) -> None:
    """In the trial's process: mark this trial begun, and wait for `count` marks."""
    (gate / uuid.uuid4().hex).touch()
    deadline = time.monotonic() + GATE_SECONDS
    while len(list(gate.iterdir())) < count and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)


def gated(gate: Path, count: int) -> Callable:
    """StageRunner.trainable: the sweep's own trainable, after the gate."""

    def trainable(runner: StageRunner) -> Callable:
        def gated_trial(point: dict, **parameters) -> None:
            wait_at_gate(gate, count)
            train_trial(point, **parameters)

        return gated_trial

    return trainable


def gate_trials(gate: Path, count: int) -> None:
    """In the driver, before it starts: every trial it runs waits at `gate` for `count`."""
    gate.mkdir(exist_ok=True)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    StageRunner.trainable = gated(gate, count)


if __name__ == "__main__":
    count, *arguments = sys.argv[1:]
    gate_trials(Path.cwd() / "gate", int(count))
    sys.exit(driver.main(arguments))
