"""The console: durations a person reads, and libraries' chatter kept in the log file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pipelines.console import LIBRARY_LOGGERS, QUIET_ENVIRONMENT, duration, library_output_to


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0m00s"), (61.9, "1m01s"), (3599, "59m59s"), (3660, "1h01m")]
)
def test_durations_read_as_minutes_or_hours(seconds, text):
    assert duration(seconds) == text


def logger_states() -> list[tuple]:
    return [(logging.getLogger(n).handlers[:], logging.getLogger(n).level) for n in LIBRARY_LOGGERS]


def test_library_messages_go_to_the_log_file_and_everything_is_put_back(tmp_path):
    log = tmp_path / "sweep.log"
    before = [
        (logging.getLogger(n).handlers[:], logging.getLogger(n).level) for n in LIBRARY_LOGGERS
    ]
    environ = dict(os.environ)
    with library_output_to(log, verbose=False):
        logging.getLogger("mlflow").warning("a library speaks")
        assert all(os.environ[k] == v for k, v in QUIET_ENVIRONMENT.items())
    assert "WARNING mlflow: a library speaks" in log.read_text()
    after = [
        (logging.getLogger(n).handlers[:], logging.getLogger(n).level) for n in LIBRARY_LOGGERS
    ]
    assert after == before and dict(os.environ) == environ


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_log_file_on_a_full_disk_puts_no_traceback_on_the_console(capsys):
    # /dev/full answers every write with ENOSPC, as a full disk does.
    with library_output_to(Path("/dev/full"), verbose=False):
        logging.getLogger("ray").warning("a library speaks")
    assert capsys.readouterr().err == ""
