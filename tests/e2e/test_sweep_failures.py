"""Sweeps that go wrong end clean: no run left RUNNING, a clear message, and `best` kept.

In-process (pipelines.sweep.driver.main), on real Ray and real sqlite MLflow stores; the signal,
second-driver and server-outage cases run drivers as processes (test_sweep_resume.py,
test_sweep_faults.py).
"""

from __future__ import annotations

import copy
import json
from itertools import pairwise

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from pipelines.sweep.driver import main
from pipelines.sweep.end import winner
from pipelines.sweep.lifecycle.life import open_sweep_state
from pipelines.sweep.lifecycle.state import SweepState
from pipelines.sweep.setup.job import load_sweep
from pipelines.tracking import ensure_experiment
from postag.serving.names import REGISTERED_MODEL
from postag.serving.registry import BEST_ALIAS
from tests.helpers import DIVERGING_LR, TINY_SWEEP, trial_runs, write_sweep


def small_sweep(name: str, lrs: list[float], baseline_lr: float, **sweep_settings) -> dict:
    values = copy.deepcopy(TINY_SWEEP)
    values["train"]["epochs"] = 1
    values["sweep"].update(name=name, space={"train.lr": lrs}, max_failures=0, **sweep_settings)
    values["sweep"]["baseline"].update({"train.lr": baseline_lr, "model.num_layers": 2})
    return values


@pytest.fixture
def local_store(tmp_path, monkeypatch, sqlite_store):
    uri = sqlite_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RAY_ADDRESS", "local")
    return mlflow.MlflowClient(uri)


def run_main(tmp_path, ewt_slice, values: dict) -> int:
    config = write_sweep(tmp_path, ewt_slice, values)
    return main(["--config", str(config), "--storage", str(tmp_path / "tune")])


def statuses(client) -> dict[str, list[str]]:
    experiment = client.get_experiment_by_name("postag")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r.info.status for r in runs if r.data.tags.get("role") == "sweep"]
    return {"parents": parents, "trials": sorted(r.info.status for r in trial_runs(client))}


def test_every_trial_failing_ends_the_sweep_with_a_clear_error(
    ewt_slice, tmp_path, local_store, capsys
):
    values = small_sweep("all-fail", [DIVERGING_LR], baseline_lr=2 * DIVERGING_LR)
    assert run_main(tmp_path, ewt_slice, values) == 1
    err = capsys.readouterr().err
    assert "no trial finished with a model to register (2 of 2 failed)" in err
    assert "epoch 1: the training loss is nan" in err and "Traceback" not in err
    assert statuses(local_store) == {"parents": ["FAILED"], "trials": ["FAILED", "FAILED"]}
    assert local_store.search_model_versions(f"name = '{REGISTERED_MODEL}'") == []
    # Nothing is left to resume: the same command starts a new sweep.
    assert json.loads((tmp_path / "tune" / "all-fail.json").read_text())["phase"] == "finished"


def test_an_exception_in_the_driver_closes_its_runs_and_the_rerun_registers(
    ewt_slice, tmp_path, local_store, capsys
):
    values = small_sweep("crash", [0.005, 0.002], baseline_lr=0.001)

    def registry_down(*args, **kwargs):
        raise MlflowException("the model registry is unavailable")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winner, "register_candidate", registry_down)
        assert run_main(tmp_path, ewt_slice, values) == 1
    err = capsys.readouterr().err
    assert "failed: MlflowException: the model registry is unavailable" in err
    log = tmp_path / "tune" / "driver-error.log"
    assert f"The traceback is in {log}" in err and "Traceback" not in err
    assert "registry_down" in log.read_text()
    before = statuses(local_store)
    assert before == {"parents": ["FAILED"], "trials": ["FINISHED"] * 3}

    # The same command resumes the concluded sweep: no trial runs again, the winner is
    # registered and the parent run finishes.
    assert run_main(tmp_path, ewt_slice, values) == 0
    assert statuses(local_store) == {"parents": ["FINISHED"], "trials": ["FINISHED"] * 3}
    best = local_store.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS)
    assert best.tags["sweep"] == "crash"


def test_a_weaker_second_sweep_keeps_best_and_runs_no_more_trials_at_once_than_allowed(
    ewt_slice, tmp_path, in_copy_of_swept, monkeypatch, capsys
):
    outcome, _, client, _ = in_copy_of_swept
    monkeypatch.setenv("RAY_ADDRESS", "local")
    # A quarter CPU each would let all three trials run side by side on 2 cores; the sweep
    # allows one at a time, and a grid search must honour that too.
    values = small_sweep(
        "weaker", [1e-5, 2e-5], baseline_lr=1e-3, cpus_per_trial=0.25, max_concurrent_trials=1
    )
    values["model"]["hidden_size"] = 8
    assert run_main(tmp_path, ewt_slice, values) == 0
    out = capsys.readouterr().out
    best = client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS)
    assert best.version == outcome["version"]
    assert f"`best` stays at version {best.version}" in out
    assert "does not beat it" in out
    weaker = client.get_model_version_by_alias(REGISTERED_MODEL, "sweep-weaker")
    assert weaker.version != best.version

    experiment = client.get_experiment_by_name("postag").experiment_id
    (parent,) = client.search_runs([experiment], "tags.sweep = 'weaker' and tags.role = 'sweep'")
    runs = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert len(spans) == 3
    assert all(end <= next_start for (_, end), (next_start, _) in pairwise(spans))


def test_a_sweep_state_that_cannot_be_restored_is_closed_not_orphaned(
    ewt_slice, tmp_path, local_store, capsys
):
    config = write_sweep(tmp_path, ewt_slice, small_sweep("lost", [0.005], baseline_lr=0.001))
    _, _, sweep = load_sweep(config, [])
    mlflow.set_tracking_uri(local_store.tracking_uri)
    experiment = ensure_experiment("postag")
    # An unfinished sweep whose Tune folder is gone (a wiped disk, a deleted bucket).
    lost = local_store.create_run(experiment, tags={"role": "sweep", "sweep": "lost"})
    trial = local_store.create_run(experiment, tags={"mlflow.parentRunId": lost.info.run_id})
    state_dir = tmp_path / "tune"
    state_dir.mkdir()
    SweepState(str(tmp_path / "gone"), lost.info.run_id, experiment, "digest").save(
        SweepState.path(state_dir, sweep)
    )
    state, resuming = open_sweep_state(state_dir, str(state_dir), sweep, experiment, False, {})
    assert not resuming and state.parent_run_id != lost.info.run_id
    assert "the unfinished sweep is abandoned (its Tune state" in capsys.readouterr().out
    for run_id in (lost.info.run_id, trial.info.run_id):
        assert local_store.get_run(run_id).info.status == "KILLED"
    assert "cannot be restored" in local_store.get_run(lost.info.run_id).data.tags["abandoned"]
