"""Sweep drivers forked from a process that has imported them once, for the scenarios that
start driver after driver.

`python -m pipelines.sweep` spends about 8 CPU-s importing torch, MLflow and Ray before its
first line, and a scenario that stops and resumes a sweep starts up to eight of them: on a
2-core machine, a good part of the suite. Here each driver is forked from a server that
imported them once (multiprocessing's forkserver, preloaded): it is still a process of its
own, in a session and process group of its own, with its own environment, folder and Ray,
its output in driver.log, signalled and waited for as a `subprocess.Popen` is. What it runs
is what `python -m pipelines.sweep` runs: `driver.main(argv)`, then the interpreter's exit
handlers.

`tests.helpers.start_sweep` starts these unless told to start the command itself (the flags
scenario keeps that path under test).
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

# What the server imports once, for every driver it forks: the driver, and what its sqlite
# store, its conclusion's fANOVA and its evaluation import when they first run (1.3, 1.4 and
# 0.8 CPU-s on the developers' 2-core machine).
PRELOAD = [
    "pipelines.sweep.driver",
    "tests.e2e.paused_driver",
    "tests.e2e.gated_driver",
    "mlflow.store.tracking.sqlalchemy_store",
    "sklearn.ensemble",
    "spacy",
]


@functools.cache
def forkserver() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


class ForkedDriver:
    """A forked driver, with the part of `subprocess.Popen` the tests use."""

    def __init__(self, process: multiprocessing.process.BaseProcess, argv: list[str]):
        self._process, self.args = process, argv

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self._process.exitcode


def start(
    argv: list[str],
    env: dict[str, str],
    folder: Path,
    log: Path,
    pause: str | None = None,
    gate: int | None = None,
) -> ForkedDriver:
    """Fork a driver that runs `argv` in `folder`, with `env` as its whole environment,
    its output appended to `log`; paused or gated as tests/e2e/paused_driver.py and
    gated_driver.py say."""
    log.touch()  # there as soon as this returns, as a Popen's output file is
    process = forkserver().Process(
        target=run_driver, args=(argv, env, str(folder), str(log), pause, gate), daemon=False
    )
    process.start()
    return ForkedDriver(process, argv)


def run_driver(
    argv: list[str], env: dict, folder: str, log: str, pause: str | None, gate: int | None
) -> None:
    """In the forked process: become what `python -m pipelines.sweep ARGV` started from a
    new session would be, and run it."""
    os.setsid()
    os.chdir(folder)
    output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["pipelines.sweep", *argv]
    forget_what_the_server_read()
    from pipelines.sweep import driver
    from tests.e2e import gated_driver, paused_driver

    if pause is not None:
        paused_driver.pause_in(pause)
    if gate is not None:
        gated_driver.gate_trials(Path(folder) / "gate", gate)
    try:
        code = driver.main(argv)
    finally:
        # A process forked by multiprocessing leaves by os._exit: what the interpreter runs
        # at exit (MLflow's and Ray's own handlers among them) is run here.
        atexit._run_exitfuncs()
    sys.exit(code)


def forget_what_the_server_read() -> None:
    """What Ray read from the environment and the home folder when the server imported it
    (its settings, whether an auth token exists) is read again, as a new process reads it:
    a test may have made `~/.ray/auth_token` since, and a driver that still holds "no token"
    starts a Ray whose processes, reading the file, refuse it. Ray's own tests reset the two
    the same way (ray._private.authentication_test_utils)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
