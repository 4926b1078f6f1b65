"""The full-disk scenario, run by tests/e2e/test_sweep_disk_full.py in a user and mount
namespace of its own (`unshare -rm`), where any user may mount the two small tmpfs it fills:

    unshare -rm --propagation private python -m tests.e2e.disk_full_scenario FOLDER TRAIN DEV

One sweep, stopped by a full disk twice, under Tune's storage and then under the MLflow
store: each time it stops with one line naming the full path, no traceback, its state file
readable; once space is freed, the same command goes on and finishes the sweep. Exits 0 when
every check held; an AssertionError's traceback otherwise.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mlflow

from pipelines.sweep.lifecycle.state import RESUME_HINT
from tests.helpers import small_sweep, start_sweep, trial_runs, wait_for, write_experiment

DISK_BYTES = 48 * 2**20
STOP_LIMIT_SECONDS = 240
SWEEP = small_sweep("full", [8, 12, 16], concurrent=1, cpus=1, epochs=3)
EXPECTED_TRIALS = 4


def mount_small_disks(folder: Path) -> tuple[Path, Path]:
    """Two tmpfs of DISK_BYTES each: one for Tune's storage, one for the MLflow store."""
    disks = folder / "tune-disk", folder / "store-disk"
    for disk in disks:
        disk.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)], check=True
        )
    return disks


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


def run(folder: Path, ewt_slice: dict) -> None:
    """One sweep, stopped by a full disk twice: under Tune's storage, then under the store."""
    tune_disk, store_disk = mount_small_disks(folder)
    config = write_experiment(folder, ewt_slice, SWEEP)
    storage = tune_disk / "runs"
    uri = f"sqlite:///{store_disk / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"}
    client = mlflow.MlflowClient(uri)
    log = folder / "driver.log"
    drivers = []

    def fill_when_finished(count: int, disk: Path) -> str:
        """Start the sweep (again), fill `disk` once `count` trials have finished; the
        driver's last line."""
        drivers.append(start_sweep(config, folder, env, "--storage", str(storage)))
        wait_for(lambda: statuses(client)["FINISHED"] >= count, drivers[-1])
        ballast = fill(disk)
        assert drivers[-1].wait(timeout=STOP_LIMIT_SECONDS) == 1
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
        assert state["phase"] == "searching"
        return line

    try:
        fill_when_finished(1, tune_disk)
        assert "RUNNING" not in statuses(client)
        line = fill_when_finished(2, store_disk)
        # SQLite may still find room to close the runs (an update in place). Where it cannot,
        # the line says so, and the resume closes them; no run is left RUNNING unsaid.
        closed = "RUNNING" not in statuses(client)
        assert closed or "could not close the sweep's MLflow runs" in line, (line, statuses(client))

        drivers.append(start_sweep(config, folder, env, "--storage", str(storage)))
        assert drivers[-1].wait(timeout=STOP_LIMIT_SECONDS) == 0, log.read_text()
    finally:
        for driver in drivers:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
    after = trial_runs(client)
    assert statuses(client) == {"FINISHED": EXPECTED_TRIALS}, [r.data.tags for r in after]
    for trial in after:  # whole however its creation was cut off; no epoch lost or doubled
        assert trial.data.params["train.epochs"] and "postag.config_logged" in trial.data.tags, (
            trial.data
        )
        steps = [m.step for m in client.get_metric_history(trial.info.run_id, "val_accuracy")]
        assert steps == list(range(1, int(trial.data.params["train.epochs"]) + 1))
    assert client.get_model_version_by_alias("postag-tagger", "best").tags["sweep"] == "full"
    print("the full-disk scenario held")


if __name__ == "__main__":
    folder, train, dev = sys.argv[1:]
    run(Path(folder), {"train": Path(train), "dev": Path(dev)})
