"""The confirmation stage at CI size: the search's top 2 configurations trained again with
2 new seeds each, on real Ray and a real sqlite MLflow store, and the best mean registered.
Its objective is one to minimise, validation loss, from Tune's mode through the confirmation
to the registration. The one sweep is stopped at each of its parts in turn, each time by a
signal, and resumed."""

from __future__ import annotations

import os
import signal
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import pytest

from pipelines.cli import INTERRUPTED_EXIT_CODE
from pipelines.sweep.lifecycle.state import RESUME_HINT
from postag.serving.names import REGISTERED_MODEL
from tests.e2e.paused_driver import PAUSED
from tests.helpers import (
    SCENARIO_LIMIT_SECONDS,
    TINY_SWEEP,
    start_sweep,
    wait_for,
    write_experiment,
)

# Several sweeps in one scenario (tests/helpers.py).
pytestmark = pytest.mark.timeout(SCENARIO_LIMIT_SECONDS)

STOP_LIMIT_SECONDS = 240
# A scheduler's grace between SIGTERM and SIGKILL is often 30 s.
GRACE_SECONDS = 20
RAY_STARTED = "Started a local Ray instance"
# The tiny sweep, over three learning rates that all train, its objective the lowest
# validation loss, with its top 2 confirmed.
SWEEP = {
    **TINY_SWEEP,
    "sweep": {
        **TINY_SWEEP["sweep"],
        "name": "confirm",
        "space": {"train.lr": [0.02, 0.01, 0.005]},
        "objective": {"metric": "val_loss", "mode": "min"},
        "confirm": {"top_k": 2, "seeds": 2},
    },
}


def runs_by_role(client, experiment_id: str) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for run in client.search_runs([experiment_id]):
        grouped.setdefault(run.data.tags.get("role"), []).append(run)
    return grouped


def lr_of(run) -> float:
    return float(run.data.params["train.lr"])


def best_val(run) -> float:
    """The run's figure on the sweep's objective: its lowest validation loss."""
    return run.data.metrics["best_val_loss"]


@dataclass(frozen=True)
class Stop:
    """One stop of the sweep: where, how, and what it left."""

    part: str
    signal: str
    to: str  # "driver" or "group"
    exit_code: int
    seconds: float
    running: list[str]  # runs left RUNNING
    line: str  # the console's last line about it
    versions_after_rerun: int | None = None


def stop(driver, part: str, how: signal.Signals, group: bool, client, log: Path) -> Stop:
    """Signal the driver (or its whole group, as `timeout` and schedulers do) and wait."""
    sent = time.monotonic()
    (os.killpg if group else os.kill)(driver.pid, how)
    code = driver.wait(timeout=STOP_LIMIT_SECONDS)
    seconds = time.monotonic() - sent
    experiment = client.get_experiment_by_name("postag").experiment_id
    running = [
        r.info.run_name for r in client.search_runs([experiment]) if r.info.status == "RUNNING"
    ]
    said = [t for t in log.read_text().splitlines() if RESUME_HINT in t or STOPPED_WHEN_DONE in t]
    line = said[-1]
    return Stop(part, how.name, "group" if group else "driver", code, seconds, running, line)


def versions(client) -> int:
    return len(client.search_model_versions(f"name = '{REGISTERED_MODEL}'"))


# Each part of the conclusion, where the paused driver stops (tests/e2e/paused_driver.py),
# the signal sent there, and to whom.
CONCLUSION_STOPS = [
    ("registering", signal.SIGTERM, True),
    ("testing", signal.SIGINT, False),
    ("weighing", signal.SIGTERM, False),
    ("writing", signal.SIGINT, True),
    ("answered", signal.SIGTERM, True),
]
# What the driver says of a stop that came once the sweep had finished.
STOPPED_WHEN_DONE = "had finished when the stop came"


@pytest.fixture(scope="module")
def confirmed_sweep(ewt_slice, tmp_path_factory, sqlite_store):
    """The confirmation sweep, stopped at each of its parts in turn (its search, its
    confirmation, and each part of its conclusion), and run again after each, to its end."""
    tmp_path = tmp_path_factory.mktemp("confirm")
    uri = sqlite_store(tmp_path)
    env = {"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"}
    # With a test file, so that the conclusion tests the new version.
    config = write_experiment(
        tmp_path, ewt_slice, {**SWEEP, "data": {"test": str(ewt_slice["test"])}}
    )
    client = mlflow.MlflowClient(uri)
    log = tmp_path / "driver.log"
    ray_log = tmp_path / "tune" / "confirm.log"

    def confirmation_runs() -> list:
        experiment = client.get_experiment_by_name("postag")
        if experiment is None:
            return []
        return runs_by_role(client, experiment.experiment_id).get("confirmation", [])

    drivers = [start_sweep(config, tmp_path, env)]
    stops = []
    try:
        # Its search: as soon as a trial has concluded, Ctrl-C to the whole group.
        wait_for(lambda: "trial 1/" in log.read_text(), drivers[-1])
        stops.append(stop(drivers[-1], "search", signal.SIGINT, True, client, log))
        ray_starts_before = ray_log.read_text().count(RAY_STARTED)
        drivers.append(start_sweep(config, tmp_path, env))
        wait_for(lambda: any(r.info.status == "FINISHED" for r in confirmation_runs()), drivers[-1])
        stops.append(stop(drivers[-1], "confirmation", signal.SIGTERM, False, client, log))
        stops[-2] = replace(stops[-2], versions_after_rerun=versions(client))
        stopped = log.read_text()
        # The libraries' messages, Ray's among them, go to the sweep's own log.
        ray_starts = ray_log.read_text().count(RAY_STARTED) - ray_starts_before
        experiment = client.get_experiment_by_name("postag").experiment_id
        search_before = {r.info.run_id for r in runs_by_role(client, experiment)["trial"]}
        for part, how, group in CONCLUSION_STOPS:
            drivers.append(start_sweep(config, tmp_path, env, pause=part))
            wait_for(lambda: f"{PAUSED} {part}" in log.read_text(), drivers[-1])  # noqa: B023
            stops.append(stop(drivers[-1], part, how, group, client, log))
            stops[-2] = replace(stops[-2], versions_after_rerun=versions(client))
        # Finished, and stopped only after its answer: the same command again is up to date.
        held = {r.info.run_id for r in client.search_runs([experiment])}
        before_rerun = log.read_text()
        drivers.append(start_sweep(config, tmp_path, env))
        assert drivers[-1].wait(timeout=STOP_LIMIT_SECONDS) == 0, log.read_text()
        stops[-1] = replace(stops[-1], versions_after_rerun=versions(client))
        rerun = log.read_text().removeprefix(before_rerun)
        runs_after_rerun = {r.info.run_id for r in client.search_runs([experiment])} - held
    finally:
        for driver in drivers:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
    console = log.read_text().removeprefix(stopped)
    roles = runs_by_role(client, experiment)
    return Confirmed(
        stopped, console, search_before, roles, client, ray_starts, stops, rerun, runs_after_rerun
    )


@dataclass(frozen=True)
class Confirmed:
    stopped: str  # the console of the driver stopped in the confirmation
    console: str  # and of the one that resumed it
    search_before: set[str]  # the search's runs when it stopped
    roles: dict[str, list]
    client: mlflow.MlflowClient
    ray_starts: int  # by the driver that ran the search and began the confirmation
    stops: list[Stop]
    rerun: str  # the console of the same command once the sweep had finished
    runs_after_rerun: set[str]  # the runs it made

    @property
    def version(self):
        return self.client.get_model_version_by_alias(REGISTERED_MODEL, "sweep-confirm")


def test_the_top_two_configurations_are_trained_again_with_two_new_seeds(confirmed_sweep):
    roles = confirmed_sweep.roles
    search = sorted(roles["trial"], key=best_val)  # lowest loss first
    top_two = {lr_of(run) for run in search[:2]}
    seeds = roles["confirmation"]
    assert len(seeds) == 4 and {run.info.status for run in seeds} == {"FINISHED"}
    # Seeds other than the search's own (0), two for each of the two best configurations.
    assert sorted((lr_of(r), r.data.params["train.seed"]) for r in seeds) == sorted(
        (lr, seed) for lr in top_two for seed in ("1", "2")
    )
    assert {r.info.run_name for r in seeds} == {
        f"lr{lr:g}-seed{seed}" for lr in top_two for seed in (1, 2)
    }
    # Every seed run is complete: all its epochs, and a model of its own.
    for run in seeds:
        assert "model_uri" in run.data.tags and int(run.data.metrics["best_epoch"]) >= 1


def test_registration_takes_the_best_mean_and_records_its_seeds(confirmed_sweep):
    roles = confirmed_sweep.roles
    by_lr: dict[float, list] = {}
    for run in roles["confirmation"]:
        by_lr.setdefault(lr_of(run), []).append(run)
    means = {lr: statistics.fmean(best_val(r) for r in runs) for lr, runs in by_lr.items()}
    winner_lr = min(means, key=means.get)
    winner_runs = by_lr[winner_lr]

    version = confirmed_sweep.version
    assert f"registered version {version.version} as" in confirmed_sweep.console
    # The model registered is the best seed run of the configuration with the best mean.
    assert version.tags["run_id"] == min(winner_runs, key=best_val).info.run_id
    assert (version.tags["objective_metric"], version.tags["objective_mode"]) == ("val_loss", "min")
    assert float(version.tags["seeds_mean"]) == pytest.approx(means[winner_lr], abs=1e-6)
    sd = statistics.stdev(best_val(r) for r in winner_runs)
    assert float(version.tags["seeds_sd"]) == pytest.approx(sd, abs=1e-6)
    assert set(version.tags["seed_run_ids"].split(",")) == {r.info.run_id for r in winner_runs}
    assert sorted(version.tags["seeds"].split(",")) == ["1", "2"]
    assert "Best mean of sweep 'confirm'" in version.description and "± " in version.description


def test_each_confirmed_configuration_shows_its_mean_and_spread_in_mlflow(confirmed_sweep):
    roles, client = confirmed_sweep.roles, confirmed_sweep.client
    confirmed_search_runs = [r for r in roles["trial"] if "confirmed_mean" in r.data.metrics]
    assert len(confirmed_search_runs) == 2
    for run in confirmed_search_runs:
        seeds = [r for r in roles["confirmation"] if lr_of(r) == lr_of(run)]
        assert run.data.metrics["confirmed_mean"] == pytest.approx(
            statistics.fmean(best_val(r) for r in seeds)
        )
        assert set(run.data.tags["confirmation_runs"].split(",")) == {r.info.run_id for r in seeds}
    (parent,) = roles["sweep"]
    version = confirmed_sweep.version
    # The version's tags hold six decimals; the parent's metrics the full values.
    for field in ("mean", "sd"):
        assert parent.data.metrics[f"confirmed_{field}"] == pytest.approx(
            float(version.tags[f"seeds_{field}"]), abs=5e-7
        )
    text = Path(client.download_artifacts(parent.info.run_id, "trials.md")).read_text()
    assert "## Confirmation: best validation loss over seeds" in text
    best = client.get_run(version.tags["run_id"])
    assert f"| lr{float(best.data.params['train.lr']):g} | 2 |" in text


def test_a_sweep_stopped_in_its_confirmation_resumes_there(confirmed_sweep):
    headline = "the confirmation: the best 2 configurations again with 2 new seeds each, 4 trials"
    assert f"starting {headline}" in confirmed_sweep.stopped
    assert "interrupted in its confirmation" in confirmed_sweep.stopped
    roles = confirmed_sweep.roles
    # The search was not run again, and each confirmation trial has one run.
    assert {r.info.run_id for r in roles["trial"]} == confirmed_sweep.search_before
    assert len(roles["confirmation"]) == 4
    assert {r.info.status for r in roles["confirmation"]} == {"FINISHED"}
    assert len({r.data.tags["ray_trial_id"] for r in roles["confirmation"]}) == 4
    console = confirmed_sweep.console
    assert f"resuming {headline}" in console and "Traceback" not in console
    assert "confirmed lr" in console and "registered version 1" in console


def test_the_search_and_its_confirmation_share_one_ray(confirmed_sweep):
    """Ray starts once a driver, not once a stage: some 5 CPU-s and seconds of start-up."""
    assert confirmed_sweep.ray_starts == 1


def test_a_stop_at_any_part_ends_clean_and_the_rerun_registers_once(confirmed_sweep, capsys):
    """SIGTERM or SIGINT, to the driver or its group, in the search, the confirmation, the
    registration, the test evaluation, the importance and the trial table: exit 130 within
    the grace, one line that says where, no run RUNNING; the reruns register one version."""
    with capsys.disabled():
        print("\n| part | signal | to | exit | seconds | RUNNING | versions after rerun |")
        for item in confirmed_sweep.stops:
            print(
                f"| {item.part} | {item.signal} | {item.to} | {item.exit_code} | "
                f"{item.seconds:.1f} | {len(item.running)} | {item.versions_after_rerun} |"
            )
    wheres = {
        "search": "interrupted in its search with",
        "confirmation": "interrupted in its confirmation with",
        "registering": "stopped while registering its winner",
        "testing": "stopped while testing version 1",
        "weighing": "stopped while weighing what mattered",
        "writing": "stopped while writing its trial table",
    }
    *interrupted, done = confirmed_sweep.stops
    assert [item.part for item in interrupted] == list(wheres)
    for item in interrupted:
        assert item.exit_code == INTERRUPTED_EXIT_CODE, item
        assert item.seconds < GRACE_SECONDS, item
        assert item.running == [], item
        assert wheres[item.part] in item.line and item.line.endswith(RESUME_HINT), item
    # Stopped once its answer was out: said so, its version named, no advice to resume, and
    # exit 0 (its work is done).
    assert done.part == "answered" and done.exit_code == 0, done
    assert done.seconds < GRACE_SECONDS and done.running == [], done
    assert f"sweep 'confirm' {STOPPED_WHEN_DONE}: version 1 is registered" in done.line, done
    assert RESUME_HINT not in done.line, done
    # Stopped after it had made its version, the rerun found it again: one version in all.
    assert [item.versions_after_rerun for item in confirmed_sweep.stops[2:]] == [1] * 5
    client = confirmed_sweep.client
    assert str(client.get_model_version_by_alias(REGISTERED_MODEL, "best").version) == "1"
    # The evaluation stopped mid-way was closed as a stop (each rerun after it tested the
    # version again); the version links the last one.
    roles = confirmed_sweep.roles
    statuses = [r.info.status for r in roles["evaluation"]]
    assert statuses.count("KILLED") == 1 and set(statuses) == {"FINISHED", "KILLED"}
    version = client.get_model_version(REGISTERED_MODEL, "1")
    last = max(roles["evaluation"], key=lambda r: r.info.start_time)
    assert version.tags["evaluation_run_id"] == last.info.run_id
    (parent,) = roles["sweep"]
    assert parent.info.status == "FINISHED"


def test_the_same_command_on_a_finished_sweep_trains_and_writes_nothing(confirmed_sweep):
    """Up to date, as Make says: no run, no version, no evaluation; the answer said again
    from the record, and `--fresh` named as the way to train it anew."""
    rerun = confirmed_sweep.rerun
    assert confirmed_sweep.runs_after_rerun == set()
    assert confirmed_sweep.stops[-1].versions_after_rerun == 1
    assert "sweep 'confirm' is up to date: it finished on " in rerun
    assert "nothing was trained or written" in rerun
    assert "registered version 1 as models:/postag-tagger@sweep-confirm; `best` is version 1" in (
        rerun
    )
    assert "| run | hidden | layers | epochs | status |" in rerun  # the trial table, again
    assert "make sweep SWEEP_ARGS=--fresh" in rerun
    assert "starting" not in rerun and "trial 1/" not in rerun
    assert "Downloading artifacts" not in rerun  # MLflow's bar, amid the answer
