"""A disk that fills mid-sweep, under Tune's storage and then under the MLflow store (two
small tmpfs), in one sweep: each time the sweep stops with one line naming the full path,
no traceback, its state file readable; once space is freed, the same command goes on, and
finishes the sweep."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import mlflow
import pytest

from pipelines.sweep.stages import RESUME_HINT
from tests.helpers import small_sweep, trial_runs, wait_for, write_experiment

DISK_BYTES = 48 * 2**20
STOP_LIMIT_SECONDS = 240
SWEEP = small_sweep("full", [8, 12, 16], concurrent=1, cpus=1, epochs=3)
EXPECTED_TRIALS = 4


@pytest.fixture
def small_disks(tmp_path):
    """Two tmpfs of DISK_BYTES each, mounted for the test: one for Tune's storage, one for
    the MLflow store."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    disks = tmp_path / "tune-disk", tmp_path / "store-disk"
    for disk in disks:
        disk.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)], check=True
        )
    yield disks
    for disk in disks:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """A ballast file that takes every byte left on `disk`."""
    ballast = disk / "ballast"
    with ballast.open("wb", buffering=0) as file:
        for chunk in (2**20, 4096, 1):
            try:
                while True:
                    file.write(b"\0" * chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC
    return ballast


def statuses(client) -> Counter:
    return Counter(run.info.status for run in trial_runs(client))


def test_a_full_disk_stops_the_sweep_cleanly_and_it_resumes_once_space_is_freed(
    small_disks, ewt_slice, sweep_driver, tmp_path, sqlite_store
):
    """One sweep, stopped by a full disk twice: under Tune's storage, then under the store."""
    tune_disk, store_disk = small_disks
    config = write_experiment(tmp_path, ewt_slice, SWEEP)
    storage = tune_disk / "runs"
    uri = sqlite_store(store_disk)
    env = {"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"}
    client = mlflow.MlflowClient(uri)
    log = tmp_path / "driver.log"

    def fill_when_finished(count: int, disk: Path) -> str:
        """Start the sweep (again), fill `disk` once `count` trials have finished; the
        driver's last line."""
        driver = sweep_driver(config, tmp_path, env, "--storage", str(storage))
        wait_for(lambda: statuses(client)["FINISHED"] >= count, driver)
        ballast = fill(disk)
        assert driver.wait(timeout=STOP_LIMIT_SECONDS) == 1
        ballast.unlink()
        console = log.read_text()
        assert "Traceback" not in console and "Logging error" not in console, console
        # One line after the progress, naming what filled and what to do.
        line = console.splitlines()[-1]
        assert line.startswith(f"postag sweep: stopped: the disk holding {disk}/"), console
        assert line.endswith(f"free space there, then {RESUME_HINT}")
        print(line)
        assert statuses(client)["FINISHED"] < EXPECTED_TRIALS
        state = json.loads((storage / "full.json").read_text())  # whole, not cut short
        assert state["stage"] == "searching"
        return line

    fill_when_finished(1, tune_disk)
    assert "RUNNING" not in statuses(client)
    line = fill_when_finished(2, store_disk)
    # SQLite may still find room to close the runs (an update in place). Where it cannot,
    # the line says so, and the resume closes them; no run is left RUNNING unsaid.
    closed = "RUNNING" not in statuses(client)
    assert closed or "could not close the sweep's MLflow runs" in line, (line, statuses(client))

    last = sweep_driver(config, tmp_path, env, "--storage", str(storage))
    assert last.wait(timeout=STOP_LIMIT_SECONDS) == 0, log.read_text()
    after = trial_runs(client)
    assert statuses(client) == {"FINISHED": EXPECTED_TRIALS}, [r.data.tags for r in after]
    for run in after:  # whole however its creation was cut off; no epoch lost or doubled
        assert run.data.params["epochs"] and "postag.created" in run.data.tags, run.data
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == list(range(1, int(run.data.params["epochs"]) + 1))
    assert client.get_model_version_by_alias("postag-tagger", "best").tags["sweep"] == "full"
