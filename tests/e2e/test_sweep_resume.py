"""A sweep stopped mid-way (SIGTERM, Ctrl-C, or its driver killed outright), then the same
command again: it resumes, with no run made twice and no epoch logged twice, and each trial
logs the figures it would have logged without a stop. One sweep is walked through every
stop in turn; while it is interrupted its file gains a value on an axis (Tune's own saved
state resumed, then only the new trial trained); the last stop leaves a trial's checkpoint
cut short."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import mlflow
import pytest

from pipelines.cli import INTERRUPTED_EXIT_CODE
from pipelines.commands.reproduce import replay
from pipelines.sweep.lifecycle.state import RESUME_HINT
from pipelines.sweep.trial.trainable import RESUMED_KEY
from tests.helpers import SCENARIO_LIMIT_SECONDS, trial_runs, wait_for, write_experiment

# Several sweeps in one scenario (tests/helpers.py).
pytestmark = pytest.mark.timeout(SCENARIO_LIMIT_SECONDS)

STOP_LIMIT_SECONDS = 240
# A scheduler's grace between SIGTERM and SIGKILL is often 30 s; the sweep must be out well
# within it (it waited 61 s when Ray's processes shared the driver's group).
GRACE_SECONDS = 20
SWEEP = {
    # Dropout on, as in every real configuration: a resumed trial must draw the masks a
    # straight one would have drawn.
    "model": {
        "embedding_dim": 16,
        "num_layers": 1,
        "ff_dims": [16],
        "dropout": 0.3,
        "word_dropout": 0.1,
    },
    "train": {"epochs": 3, "batch_size": 16},
    "sweep": {
        "name": "resume",
        "space": {"model.hidden_size": [8, 12, 16, 20, 24, 28, 32]},
        "baseline": {"model.hidden_size": 4, "model.num_layers": 3, "train.epochs": 1},
        "max_concurrent_trials": 1,
        "cpus_per_trial": 1,
    },
}
# The grid and the baseline, and the value its file gains while the sweep is interrupted.
EXPECTED_TRIALS = 9
GAINED = {"model.hidden_size": [*SWEEP["sweep"]["space"]["model.hidden_size"], 36]}
ADDED = {**SWEEP, "sweep": {**SWEEP["sweep"], "space": GAINED}}


@pytest.fixture
def sweep_setup(ewt_slice, tmp_path, sqlite_store):
    config = write_experiment(tmp_path, ewt_slice, SWEEP)
    uri = sqlite_store(tmp_path)
    # "local": each driver starts a Ray of its own, whatever else runs on this machine.
    env = {"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"}
    return config, env, mlflow.MlflowClient(uri)


def finished(client) -> int:
    return sum(run.info.status == "FINISHED" for run in trial_runs(client))


def assert_resumed_completely(client, before: dict[str, str]) -> None:
    after = trial_runs(client)
    trial_ids = Counter(r.data.tags["ray_trial_id"] for r in after)
    assert len(after) == EXPECTED_TRIALS and set(trial_ids.values()) == {1}
    assert {r.info.status for r in after} == {"FINISHED"}
    # Runs finished before the interruption were kept, not made again.
    assert {k for k, v in before.items() if v == "FINISHED"} <= {r.info.run_id for r in after}
    for run in after:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == list(range(1, int(run.data.params["train.epochs"]) + 1))
    parent = client.search_runs([after[0].info.experiment_id], "tags.role = 'sweep'")
    assert [p.info.status for p in parent] == ["FINISHED"]
    assert client.get_model_version_by_alias("postag-tagger", "best").tags["sweep"] == "resume"


def stop(driver, how: signal.Signals) -> None:
    """Signal the driver's whole process group, as a terminal's Ctrl-C, `timeout`, Slurm,
    systemd and a container stop do: it must stop as cleanly and as soon as Ctrl-C."""
    sent = time.monotonic()
    os.killpg(driver.pid, how)
    assert driver.wait(timeout=STOP_LIMIT_SECONDS) == INTERRUPTED_EXIT_CODE
    took = time.monotonic() - sent
    print(f"{how.name} to the group: exit {INTERRUPTED_EXIT_CODE} after {took:.1f} s")
    assert took < GRACE_SECONDS, f"{how.name} took {took:.0f} s to stop the sweep"


def assert_nothing_left_running(client) -> dict[str, str]:
    runs = {r.info.run_id: r.info.status for r in trial_runs(client)}
    assert list(runs.values()).count("FINISHED") < EXPECTED_TRIALS  # stopped mid-sweep
    assert "RUNNING" not in runs.values()
    experiment = trial_runs(client)[0].info.experiment_id
    assert [p.info.status for p in client.search_runs([experiment], "tags.role = 'sweep'")] == [
        "KILLED"
    ]
    return runs


def mid_trial(client) -> bool:
    """A run has logged epochs while its trial goes on: what Tune's snapshot may not know."""
    return any(r.info.status == "RUNNING" and r.data.metrics for r in trial_runs(client))


def tune_knows_a_checkpoint_of_the_trial_mid_way(client, storage: Path) -> bool:
    """Tune's snapshot in storage names a checkpoint of the trial whose run is open. Until it
    does, a driver killed outright restarts that trial from epoch 1 with no checkpoint to
    read: the snapshot is written after the epoch's MLflow record, and uploaded after that.

    The snapshot holds the checkpoint's path inside a pickle, written out in hex."""
    running = [r for r in trial_runs(client) if r.info.status == "RUNNING" and r.data.metrics]
    if not running:
        return False
    trial_id = running[0].data.tags["ray_trial_id"]
    checkpoints = [
        f"{path.parent.name}/{path.name}".encode().hex()
        for path in storage.rglob("checkpoint_*")
        if trial_id in path.parent.name
    ]
    snapshots = [path.read_text() for path in storage.rglob("experiment_state-*.json")]
    return any(checkpoint in snapshot for checkpoint in checkpoints for snapshot in snapshots)


def kill_mid_trial(client, driver, bucket: Path):
    """SIGKILL the driver's group once Tune has noted a checkpoint of the open trial; that
    trial's run."""
    wait_for(lambda: tune_knows_a_checkpoint_of_the_trial_mid_way(client, bucket), driver)
    (run,) = [r for r in trial_runs(client) if r.info.status == "RUNNING"]
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    return run


def assert_each_trial_repeats_a_straight_run(client, uri: str, monkeypatch) -> None:
    """Each trial, resumed or not, trained again without a stop (`postag reproduce`, in this
    process) logs the very figures the sweep logged: losses and accuracies to the last digit."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    for run in trial_runs(client):
        replayed = replay(run.info.run_id, say=lambda _: None)
        assert replayed.equal, f"{run.info.run_name}: {replayed.difference}"


def damage_the_checkpoint_of_the_trial_mid_way(client, storage: Path):
    """Truncate the checkpoints of the trial whose run is still open; its run. Every one of
    them: a driver killed between a new checkpoint and Tune's note of it restores the trial
    from the one before, which Tune had not yet deleted."""
    (run,) = [r for r in trial_runs(client) if r.info.status == "RUNNING"]
    trial_id = run.data.tags["ray_trial_id"]
    states = [p for p in storage.rglob("state.pt") if trial_id in str(p.parent.parent.name)]
    assert states, f"no checkpoint of trial {trial_id} in {storage}"
    for state in states:
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    return run


def test_a_sweep_stopped_every_way_resumes_with_no_run_made_twice(
    sweep_setup, sweep_driver, tmp_path, monkeypatch, ewt_slice
):
    """One sweep through every way a driver stops, each followed by the same command."""
    config, env, client = sweep_setup
    log = tmp_path / "driver.log"
    # Storage as a URI, the way a cluster names a bucket (s3://...) all nodes reach.
    storage = ("--storage", f"file://{tmp_path}/bucket")
    first = sweep_driver(config, tmp_path, env, *storage)
    wait_for(lambda: finished(client) >= 1, first)

    # A second driver of the same sweep stops at once, before touching its runs.
    second = sweep_driver(config, tmp_path, env, *storage)
    assert second.wait(timeout=STOP_LIMIT_SECONDS) == 2
    assert "sweep 'resume' is already running in another driver" in log.read_text()
    assert first.poll() is None

    # SIGTERM to the whole group (`timeout`, a job scheduler) stops it as Ctrl-C does.
    stop(first, signal.SIGTERM)
    before = assert_nothing_left_running(client)

    # A changed configuration is not silently resumed as the old one.
    changed = sweep_driver(config, tmp_path, env, *storage, "--set", "train.epochs=4")
    assert changed.wait(timeout=STOP_LIMIT_SECONDS) == 2
    assert "its configuration has changed since" in log.read_text()

    # Its file gains a value on an axis while it is interrupted: from here on, each driver
    # resumes Tune's saved search, then trains the one new trial under the same parent run.
    config = write_experiment(tmp_path, ewt_slice, ADDED)
    third = sweep_driver(config, tmp_path, env, *storage)
    # Stopped mid-trial with another still to come: stopped later, the last trial could
    # conclude during Tune's graceful stop and the sweep end complete, not interrupted.
    wait_for(lambda: mid_trial(client) and finished(client) < EXPECTED_TRIALS - 1, third)
    stop(third, signal.SIGINT)  # what Ctrl-C sends
    before = assert_nothing_left_running(client)

    # Killed outright mid-trial: no handler runs, the driver and its Ray just vanish. The
    # trial goes on from its checkpoint on disk, read back by the next driver.
    bucket = tmp_path / "bucket"
    killed = kill_mid_trial(client, sweep_driver(config, tmp_path, env, *storage), bucket)

    # Killed again, mid-trial.
    fifth = sweep_driver(config, tmp_path, env, *storage)
    wait_for(lambda: client.get_run(killed.info.run_id).info.status == "FINISHED", fifth)
    kill_mid_trial(client, fifth, bucket)
    before = {r.info.run_id: r.info.status for r in trial_runs(client)}
    assert list(before.values()).count("FINISHED") < EXPECTED_TRIALS
    # And the checkpoint that trial left is cut short, as a full disk or a broken copy does.
    damaged = damage_the_checkpoint_of_the_trial_mid_way(client, bucket)

    last = sweep_driver(config, tmp_path, env, *storage)
    assert last.wait(timeout=STOP_LIMIT_SECONDS) == 0, log.read_text()
    assert_resumed_completely(client, before)
    assert any(bucket.rglob("state.pt")), "checkpoints went to the URI"
    assert int(client.get_run(killed.info.run_id).data.tags[RESUMED_KEY]) >= 1
    assert_each_trial_repeats_a_straight_run(client, env["MLFLOW_TRACKING_URI"], monkeypatch)

    # What the person at the console read: our lines only, ending with the answer.
    console = log.read_text()
    assert "resuming" in console
    assert "its file adds trials (sweep.space.model.hidden_size + [36]); only they train" in (
        console
    )
    assert "WARNING" not in console and "Traceback" not in console
    assert (
        f"trial {EXPECTED_TRIALS - 1}/{EXPECTED_TRIALS - 1}" in console
        and "starting 1 trial on cpu" in console  # the one its file added, a stage of its own
        and "trial 1/1  h36" in console
        and "sweep 'resume' done: registered version 1" in console
    )
    assert "compare its runs: http://127.0.0.1:5000/#/compare-runs?runs=" in console
    # Each stop by a signal said how to resume, in one line.
    assert console.count(RESUME_HINT) == 2
    # The trial whose checkpoint was damaged trained again from epoch 1, and said so once.
    line = f"trial {damaged.info.run_name}: its last checkpoint could not be read (state.pt: "
    assert console.count(line) == 1 and "it trained again from epoch 1" in console
    tags = client.get_run(damaged.info.run_id).data.tags
    assert tags["restarted_after_damaged_checkpoint"].startswith("state.pt: ")
