"""What tests share besides fixtures (tests/conftest.py): real services (`mlflow server` and
PostgreSQL from pipelines/servers/local.py, `postag serve`) and sweep drivers, experiment
files written from dicts, slices of CoNLL-U, and copies of a swept MLflow store."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from pipelines.cli import sweep_command
from pipelines.servers.local import (  # noqa: F401 (MlflowServer, free_port: for the tests)
    MlflowServer,
    ModelServer,
    PostgresServer,
    free_port,
    postgres_bin,
    stop_group,
    wait_until_answers,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.5
# A sweep test's longest wait for a driver, within pytest's 300 s bound on a whole test.
SWEEP_LIMIT_SECONDS = 240
# A scenario that runs several sweeps in one test (stops, reruns, faults): their limits add
# up past pytest's own 300 s on a slow machine, so its test gets this much.
SCENARIO_LIMIT_SECONDS = 900


def command_line(pid: int) -> str:
    """A process's command line, its arguments joined by spaces (Linux's /proc)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None


def stop_ray_cluster(gcs_port: int, grace_seconds: float = 10.0) -> None:
    """End the processes of the Ray cluster whose head listens on `gcs_port`, and no others.

    `ray stop` ends every Ray on the machine, another program's too. Each node's processes
    name the head's port on their command line (the GCS its `--gcs_server_port`, the raylet
    `--gcs-address=host:port`); the agents a raylet starts are its children.
    """
    marks = (f":{gcs_port} ", f"--gcs_server_port={gcs_port} ")
    parents = {}
    named = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            pid = int(entry.name)
            line = command_line(pid) + " "
            parents[pid] = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
        if "ray" in line and any(mark in line for mark in marks):
            named.append(pid)
    ours = descendants(named, parents)
    signal_all(ours, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(alive(pid) for pid in ours):
        time.sleep(POLL_SECONDS)
    signal_all([pid for pid in ours if alive(pid)], signal.SIGKILL)
    # As `ray stop` does: `ray start` names its cluster here for ray.init() to join.
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    with contextlib.suppress(FileNotFoundError):
        if current.read_text().strip().endswith(f":{gcs_port}"):
            current.unlink()


def descendants(pids: list[int], parents: dict[int, int]) -> list[int]:
    """`pids` and every process below them, from a map of each process to its parent."""
    found, frontier = set(pids), list(pids)
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        frontier = [child for child in children if child not in found]
        found.update(frontier)
    return sorted(found)


def signal_all(pids: list[int], how: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, how)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


def write_experiment(folder: Path, ewt_slice: dict, values: dict) -> Path:
    """An experiment file over the EWT slice, its prepared data cached in `folder`; the
    experiment's other data settings (`lowercase_words`) are kept."""
    data = {
        "train": str(ewt_slice["train"]),
        "dev": str(ewt_slice["dev"]),
        "cache_dir": str(folder / "cache"),
    }
    path = folder / f"{values['sweep']['name']}.yaml"
    path.write_text(yaml.safe_dump({**values, "data": {**values.get("data", {}), **data}}))
    return path


def start_sweep(
    config: Path,
    folder: Path,
    env: dict,
    *extra: str,
    pause: str | None = None,
    gate: int | None = None,
    forked: bool = True,
) -> subprocess.Popen:
    """A sweep driver in a session and process group of its own, its output in driver.log;
    with `pause`, the driver pauses at that part of its conclusion (tests/e2e/paused_driver.py);
    with `gate`, its trials wait until that many have begun (tests/e2e/gated_driver.py).

    Forked (tests/e2e/forked_driver.py) from a process that imported the driver once, unless
    `forked` is false: then the command itself, `python -m pipelines.sweep`."""
    command = sweep_command(config, folder / "tune", *extra)
    environment = {**os.environ, **env}
    if forked:
        from tests.e2e import forked_driver  # its server starts with the first driver

        return forked_driver.start(
            command[3:], environment, folder, folder / "driver.log", pause, gate
        )
    wrapper = (
        ["tests.e2e.paused_driver", pause]
        if pause is not None
        else ["tests.e2e.gated_driver", str(gate)]
        if gate is not None
        else None
    )
    if wrapper is not None:
        command[1:3] = ["-m", *wrapper]
        environment["PYTHONPATH"] = str(PROJECT_ROOT)
    with (folder / "driver.log").open("a") as log:
        return subprocess.Popen(
            command,
            env=environment,
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(condition, process: subprocess.Popen, limit: float = SWEEP_LIMIT_SECONDS) -> None:
    """Poll `condition` while the sweep runs; fail if it ends first or time runs out."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.poll() is None, "the sweep ended before the condition held"
        time.sleep(POLL_SECONDS)
    raise AssertionError("timed out waiting for the sweep")


def most_at_once(runs) -> int:
    """The most runs open at the same time, from MLflow's start and end times."""
    # At equal times an end comes before a start: a slot freed and taken is not an overlap.
    events = sorted([(r.info.end_time, -1) for r in runs] + [(r.info.start_time, 1) for r in runs])
    open_runs = peak = 0
    for _, change in events:
        open_runs += change
        peak = max(peak, open_runs)
    return peak


def trial_runs(client) -> list:
    """Every trial and baseline run of experiment `postag` (not sweeps' parent runs, nor the
    evaluation runs nested under registered trials)."""
    experiment = client.get_experiment_by_name("postag")
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], "tags.role != 'sweep'")
    return [run for run in runs if run.data.tags.get("role") in ("trial", "deep-baseline")]


def postgres_server(folder: Path) -> PostgresServer:
    """A PostgreSQL for a test; Debian's package must be installed (`.ci/run` does)."""
    require_postgres()
    return PostgresServer(folder)


def require_postgres() -> None:
    """Debian's PostgreSQL, for a test that starts one itself or through a benchmark."""
    if postgres_bin() is None:
        missing("PostgreSQL's programs", "postgresql")


def missing(what: str, *packages: str) -> None:
    """A program a test needs is not installed: skip it, naming what to install, or fail it
    under CI, whose .ci/run installs every one (tests install nothing themselves)."""
    reason = f"needs {what}: apt-get install {' '.join(packages)} (as .ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def conllu_blocks(path: Path, count: int) -> str:
    """The first `count` sentences of a CoNLL-U file, comments and all."""
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    return "\n\n".join(blocks[:count]) + "\n\n"


# A learning rate this size makes the loss NaN in epoch 1: the trial that fails (and is
# retried, and fails again) while the sweep goes on.
DIVERGING_LR = 1.0e30
TINY_SWEEP = {
    "model": {"embedding_dim": 16, "hidden_size": 24, "num_layers": 1, "ff_dims": [16]},
    "train": {"epochs": 2, "batch_size": 32},
    "sweep": {
        "name": "tiny",
        "space": {"train.lr": [0.005, 0.002, DIVERGING_LR]},
        "baseline": {
            "train.lr": 0.001,
            "model.hidden_size": 8,
            "model.num_layers": 6,
            "train.epochs": 1,
        },
        # One trial at a time: Ray's second trial process costs about 5 CPU-s a driver,
        # and what these sweeps test is not concurrency (test_sweep_sqlite.py is).
        "max_concurrent_trials": 1,
        "cpus_per_trial": 1,
        "max_failures": 1,
    },
}


def write_sweep(tmp_path, ewt_slice, values=TINY_SWEEP):
    values = {
        **values,
        "data": {
            "train": str(ewt_slice["train"]),
            "dev": str(ewt_slice["dev"]),
            "test": str(ewt_slice["test"]),
            "cache_dir": str(tmp_path / "cache"),
        },
    }
    path = tmp_path / f"{values['sweep']['name']}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def copy_store(uri: str, folder: Path) -> str:
    """A copy of a sqlite MLflow store (its database and the artifacts beside it) in
    `folder`, new or not; its URI. Paths recorded in the database are moved to the copy."""
    source = Path(uri.removeprefix("sqlite:///")).parent
    ignore = shutil.ignore_patterns("tune", "cache")
    shutil.copytree(source, folder, ignore=ignore, dirs_exist_ok=True)
    database = folder / "mlflow.db"
    with sqlite3.connect(database) as connection:
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        for (table,) in tables.fetchall():
            for column in connection.execute(f"PRAGMA table_info('{table}')").fetchall():
                name, kind = column[1], column[2].upper()
                if kind.startswith(("VARCHAR", "TEXT")):
                    connection.execute(
                        f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?)',
                        (str(source), str(folder)),
                    )
    return f"sqlite:///{database}"


def small_sweep(name: str, hidden_sizes: list[int], concurrent: int, cpus: float, epochs: int):
    """Trials of `epochs` epochs over `hidden_sizes`, and a 3-layer baseline as long as them."""
    return {
        "model": {"embedding_dim": 16, "num_layers": 1, "ff_dims": [16]},
        "train": {"epochs": epochs, "batch_size": 16},
        "sweep": {
            "name": name,
            "space": {"model.hidden_size": hidden_sizes},
            "baseline": {"model.hidden_size": 4, "model.num_layers": 3, "train.epochs": epochs},
            "max_concurrent_trials": concurrent,
            "cpus_per_trial": cpus,
        },
    }


def assert_every_epoch_logged_once(client, runs) -> None:
    for run in runs:
        assert run.info.status == "FINISHED", run.info.run_name
        for metric in ("val_accuracy", "train_loss", "tokens_per_second"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert steps == list(range(1, int(run.data.params["train.epochs"]) + 1)), metric
