"""The confirmation stage at CI size: the search's top 2 configurations trained again with
2 new seeds each, on real Ray and a real sqlite MLflow store, and the best mean registered."""

from __future__ import annotations

import signal
import statistics
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest

from pipelines.cli import INTERRUPTED_EXIT_CODE
from pipelines.confirm import Candidate, confirmed
from pipelines.sweep import run_sweep
from postag.registry import REGISTERED_MODEL
from tests.conftest import TINY_SWEEP
from tests.servers import wait_for, write_experiment

STOP_LIMIT_SECONDS = 240
# The tiny sweep, over three learning rates that all train, with its top 2 confirmed.
SWEEP = {
    **TINY_SWEEP,
    "sweep": {
        **TINY_SWEEP["sweep"],
        "name": "confirm",
        "space": {"train.lr": [0.02, 0.01, 0.005]},
        "confirm": {"top_k": 2, "seeds": 2},
    },
}


def runs_by_role(client, experiment_id: str) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for run in client.search_runs([experiment_id]):
        grouped.setdefault(run.data.tags.get("role"), []).append(run)
    return grouped


def lr_of(run) -> float:
    return float(run.data.params["lr"])


def best_val(run) -> float:
    return run.data.metrics["best_val_accuracy"]


@pytest.fixture(scope="module")
def confirmed_sweep(ewt_slice, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("confirm")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("RAY_ADDRESS", "local")
        config = write_experiment(tmp_path, ewt_slice, SWEEP)
        outcome = run_sweep(config, [], tmp_path / "tune", fresh=False)
    mlflow.set_tracking_uri(None)
    client = mlflow.MlflowClient(uri)
    return outcome, runs_by_role(client, outcome["state"]["experiment_id"]), client


def test_the_top_two_configurations_are_trained_again_with_two_new_seeds(confirmed_sweep):
    _, roles, _ = confirmed_sweep
    search = sorted(roles["trial"], key=best_val, reverse=True)
    top_two = {lr_of(run) for run in search[:2]}
    seeds = roles["confirmation"]
    assert len(seeds) == 4 and {run.info.status for run in seeds} == {"FINISHED"}
    # Seeds other than the search's own (0), two for each of the two best configurations.
    assert sorted((lr_of(r), r.data.params["seed"]) for r in seeds) == sorted(
        (lr, seed) for lr in top_two for seed in ("1", "2")
    )
    assert {r.info.run_name for r in seeds} == {
        f"lr{lr:g}-seed{seed}" for lr in top_two for seed in (1, 2)
    }
    # Every seed run is complete: all its epochs, and a model of its own.
    for run in seeds:
        assert "model_uri" in run.data.tags and int(run.data.metrics["best_epoch"]) >= 1


def test_registration_takes_the_best_mean_and_records_its_seeds(confirmed_sweep):
    outcome, roles, client = confirmed_sweep
    by_lr: dict[float, list] = {}
    for run in roles["confirmation"]:
        by_lr.setdefault(lr_of(run), []).append(run)
    means = {lr: statistics.fmean(best_val(r) for r in runs) for lr, runs in by_lr.items()}
    winner_lr = max(means, key=means.get)
    winner_runs = by_lr[winner_lr]

    version = client.get_model_version_by_alias(REGISTERED_MODEL, "sweep-confirm")
    assert version.version == outcome["version"]
    # The model registered is the best seed run of the configuration with the best mean.
    assert version.tags["run_id"] == max(winner_runs, key=best_val).info.run_id
    assert float(version.tags["val_mean"]) == pytest.approx(means[winner_lr], abs=1e-6)
    sd = statistics.stdev(best_val(r) for r in winner_runs)
    assert float(version.tags["val_sd"]) == pytest.approx(sd, abs=1e-6)
    assert set(version.tags["seed_run_ids"].split(",")) == {r.info.run_id for r in winner_runs}
    assert sorted(version.tags["seeds"].split(",")) == ["1", "2"]
    assert "Best mean of sweep 'confirm'" in version.description and "± " in version.description


def test_each_confirmed_configuration_shows_its_mean_and_spread_in_mlflow(confirmed_sweep):
    outcome, roles, client = confirmed_sweep
    confirmed_search_runs = [r for r in roles["trial"] if "confirmed_val_mean" in r.data.metrics]
    assert len(confirmed_search_runs) == 2
    for run in confirmed_search_runs:
        seeds = [r for r in roles["confirmation"] if lr_of(r) == lr_of(run)]
        assert run.data.metrics["confirmed_val_mean"] == pytest.approx(
            statistics.fmean(best_val(r) for r in seeds)
        )
        assert set(run.data.tags["confirmation_runs"].split(",")) == {r.info.run_id for r in seeds}
    (parent,) = roles["sweep"]
    best = outcome["confirmation"][0]
    assert parent.data.metrics["confirmed_val_mean"] == pytest.approx(best.mean)
    assert parent.data.metrics["confirmed_val_sd"] == pytest.approx(best.sd)
    text = Path(client.download_artifacts(parent.info.run_id, "trials.md")).read_text()
    assert "## Confirmation: best validation accuracy over seeds" in text
    assert f"| {best.name} | 2 |" in text


def test_the_best_mean_beats_the_luckiest_single_run(tmp_path):
    """Configuration A has the best single run (0.90) and B the best mean (0.86 vs 0.85)."""
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("confirm")
    runs, trials = [], []
    for name, lr, scores in (("a", 0.005, (0.90, 0.80)), ("b", 0.002, (0.86, 0.86))):
        for seed, score in enumerate(scores, start=1):
            run = client.create_run(
                experiment,
                run_name=f"{name}-seed{seed}",
                tags={"role": "confirmation", "ray_trial_id": f"{name}{seed}", "model_uri": "m"},
            )
            client.log_metric(run.info.run_id, "best_val_accuracy", score)
            client.set_terminated(run.info.run_id)
            runs.append(client.get_run(run.info.run_id))
            # What the stage reads of a Tune trial: its id and its config.
            config = {"train.lr": lr, "train.seed": seed}
            trials.append(SimpleNamespace(trial_id=f"{name}{seed}", config=config))
    chosen = [Candidate(run=runs[0], point={"train.lr": 0.005}),
              Candidate(run=runs[2], point={"train.lr": 0.002})]  # fmt: skip
    ranked = confirmed(chosen, runs, trials)
    assert [item.candidate.point["train.lr"] for item in ranked] == [0.002, 0.005]
    assert ranked[0].mean == pytest.approx(0.86) and ranked[1].mean == pytest.approx(0.85)
    assert ranked[0].best_run.info.run_name in ("b-seed1", "b-seed2")


def test_a_sweep_stopped_in_its_confirmation_resumes_there(ewt_slice, tmp_path, sweep_driver):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"}
    values = {**SWEEP, "sweep": {**SWEEP["sweep"], "max_concurrent_trials": 1}}
    config = write_experiment(tmp_path, ewt_slice, values)
    client = mlflow.MlflowClient(uri)
    log = tmp_path / "driver.log"

    def confirmation_runs() -> list:
        experiment = client.get_experiment_by_name("postag")
        if experiment is None:
            return []
        return runs_by_role(client, experiment.experiment_id).get("confirmation", [])

    first = sweep_driver(config, tmp_path, env)
    wait_for(lambda: any(r.info.status == "FINISHED" for r in confirmation_runs()), first)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=STOP_LIMIT_SECONDS) == INTERRUPTED_EXIT_CODE
    assert "interrupted in its confirmation" in log.read_text()
    search_before = {
        r.info.run_id
        for r in client.search_runs([client.get_experiment_by_name("postag").experiment_id])
        if r.data.tags.get("role") == "trial"
    }

    second = sweep_driver(config, tmp_path, env)
    assert second.wait(timeout=STOP_LIMIT_SECONDS) == 0, log.read_text()
    roles = runs_by_role(client, client.get_experiment_by_name("postag").experiment_id)
    # The search was not run again, and each confirmation trial has one run.
    assert {r.info.run_id for r in roles["trial"]} == search_before
    assert len(roles["confirmation"]) == 4
    assert {r.info.status for r in roles["confirmation"]} == {"FINISHED"}
    assert len({r.data.tags["ray_trial_id"] for r in roles["confirmation"]}) == 4
    console = log.read_text()
    assert "resuming the confirmation" in console and "Traceback" not in console
    assert "confirmed lr" in console and "registered version 1" in console
