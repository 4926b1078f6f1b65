"""Sweeps that build on each other, on real Ray and a real sqlite MLflow store, CI-sized.

One store, three sweeps in order: a 2 x 2 grid; the same file with a value added to an axis
(only the two new points train, under the same parent run); then an Optuna search warm-started
from it (the trials that fit are reused, not trained again, and the search samples two more).
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import mlflow
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipelines.commands.reproduce import replay
from pipelines.names import REUSED_TAG
from pipelines.runs import read_trial_runs
from pipelines.sweep.driver import parse_arguments, run_sweep
from pipelines.sweep.end.importance import parameter_importance
from pipelines.sweep.setup.job import load_sweep
from pipelines.sweep.stages.stage import stage_trials
from postag.config import ConfigError
from tests.helpers import SCENARIO_LIMIT_SECONDS, write_sweep

pytestmark = pytest.mark.timeout(SCENARIO_LIMIT_SECONDS)

GRID = {
    "model": {"embedding_dim": 16, "num_layers": 1, "ff_dims": [16]},
    "train": {"epochs": 1, "batch_size": 32, "lr": 0.01},
    "sweep": {
        "name": "first",
        "space": {"model.hidden_size": [8, 12], "train.epochs": [1, 2]},
        "baseline": {"model.hidden_size": 4, "model.num_layers": 3, "train.epochs": 1},
        "max_concurrent_trials": 1,
        "cpus_per_trial": 1,
    },
}


def with_sweep(values: dict, **changes) -> dict:
    changed = copy.deepcopy(values)
    changed["sweep"].update(changes)
    return changed


def children(client, outcome: dict) -> list:
    state = outcome["state"]
    return client.search_runs(
        [state["experiment_id"]], f"tags.{MLFLOW_PARENT_RUN_ID} = '{state['parent_run_id']}'"
    )


def trial_table(client, outcome: dict) -> str:
    path = client.download_artifacts(outcome["state"]["parent_run_id"], "trials.md")
    return Path(path).read_text()


def shape(run) -> tuple[int, int]:
    return int(run.data.params["model.hidden_size"]), int(run.data.params["train.epochs"])


@pytest.fixture(scope="module")
def built_on(ewt_slice, tmp_path_factory, sqlite_store):
    """(client, the grid's outcome with its runs then, its extension's, the warm start's)."""
    folder = tmp_path_factory.mktemp("reuse")
    uri = sqlite_store(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("RAY_ADDRESS", "local")
        storage = folder / "tune"
        grid = run_sweep(write_sweep(folder, ewt_slice, GRID), [], storage, fresh=False)
        client = mlflow.MlflowClient(uri)
        grid["runs"] = {run.info.run_id: shape(run) for run in children(client, grid)}
        space = {"model.hidden_size": [8, 12, 16], "train.epochs": [1, 2]}
        more = write_sweep(folder, ewt_slice, with_sweep(GRID, space=space))
        extended = run_sweep(more, [], storage, fresh=False)
        warm_values = with_sweep(
            GRID,
            name="second",
            search="optuna",
            num_samples=2,
            space={"model.hidden_size": {"low": 10, "high": 24}, "train.epochs": [1, 2]},
        )
        warm_file = write_sweep(folder, ewt_slice, warm_values)
        # Warm-started from the command line (`postag sweep --from first`), not the file.
        args = parse_arguments(["--config", str(warm_file), "--from", "first"])
        warm = run_sweep(args.config, args.overrides, storage, fresh=args.fresh)
        warm["sweep"] = load_sweep(warm_file, args.overrides)[2]
    mlflow.set_tracking_uri(None)
    return client, grid, extended, warm, uri


def test_a_grid_given_another_value_trains_only_the_new_points_under_the_same_parent(built_on):
    client, grid, extended, _, _ = built_on
    assert extended["state"]["parent_run_id"] == grid["state"]["parent_run_id"]
    before = grid["runs"]
    runs = children(client, extended)
    # The first sweep's runs, untouched, and the two new points: no point trained twice.
    assert len(before) == 5 and len(runs) == 7
    assert {run.info.run_id for run in runs} >= set(before)
    new = sorted(shape(run) for run in runs if run.info.run_id not in before)
    assert new == [(16, 1), (16, 2)]
    assert {run.info.status for run in runs} == {"FINISHED"}
    added = f"{extended['state']['tune_dir']}-added1"
    assert len(stage_trials(added)) == 2
    # The parent's trial table holds every run, old and new.
    text = trial_table(client, extended)
    assert text.count("| h16-e") == 2 and text.count("| h8-e") == 2


def test_a_warm_start_reuses_the_trials_that_fit_and_samples_the_rest(built_on):
    client, _, extended, warm, _ = built_on
    runs = children(client, warm)
    reused = [run for run in runs if REUSED_TAG in run.data.tags]
    trained = [run for run in runs if REUSED_TAG not in run.data.tags]
    earlier = {run.info.run_id: run for run in children(client, extended)}
    # h8 lies outside the new range (10-24): left out. The rest, and the baseline, reused.
    assert sorted(shape(run) for run in reused) == [(4, 1), (12, 1), (12, 2), (16, 1), (16, 2)]
    for run in reused:
        origin = earlier[run.data.tags[REUSED_TAG]]
        assert run.data.tags["reused_from_sweep"] == "first"
        assert run.data.params == origin.data.params
        for key in ("val_accuracy", "train_loss"):
            history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
            kept = [(m.step, m.value) for m in client.get_metric_history(origin.info.run_id, key)]
            assert history == kept
        assert run.data.tags["model_uri"] == origin.data.tags["model_uri"]
        assert origin.info.run_id in run.data.tags["mlflow.note.content"]
    # Two new samples, within the new range; no baseline trained again.
    assert len(trained) == 2 and all(10 <= shape(run)[0] <= 24 for run in trained)
    assert {run.data.tags["role"] for run in trained} == {"trial"}
    assert len(stage_trials(warm["state"]["tune_dir"])) == 2


def test_the_warm_started_sweep_ranks_and_weighs_every_trial_it_holds(built_on):
    client, _, _, warm, _ = built_on
    table = trial_table(client, warm)
    assert table.count("(reused: first run ") == 5
    # Ranked: every run, reused or new, in one table, best validation accuracy first.
    runs = {run.info.run_id[:8]: run for run in children(client, warm)}
    lines = table.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| run |"))
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), lines[header + 2 :]))
    assert len(rows) == len(runs) == 7
    shown = [float(row.split(" | ")[5].rstrip("%")) for row in rows]
    assert shown == sorted(shown, reverse=True)
    accuracies = sorted((r.data.metrics["best_val_accuracy"] for r in runs.values()), reverse=True)
    assert shown == [round(100 * accuracy, 2) for accuracy in accuracies]
    # Weighed: fANOVA over the reused and the new trials together (4 reused, 2 new; the
    # baseline aside), as the parent run's metrics and the table give it.
    sweep = warm["sweep"]
    expected, why = parameter_importance(read_trial_runs(list(runs.values()), sweep.primary), sweep)
    assert expected is not None, why
    assert expected.trials == 6 and "over 6 finished" in table
    parent = client.get_run(warm["state"]["parent_run_id"]).data.metrics
    for axis, share in expected.shares.items():
        assert parent[f"importance.{axis}"] == pytest.approx(share, abs=1e-9)
        assert f"| {axis} | {share:.3f} |" in table
    assert sum(expected.shares.values()) == pytest.approx(1.0)


def test_a_reused_trial_replays_as_the_run_that_trained_it(built_on, monkeypatch):
    client, _, _, warm, uri = built_on
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    record = next(run for run in children(client, warm) if REUSED_TAG in run.data.tags)
    replayed = replay(record.info.run_id, say=lambda _: None)
    assert replayed.run_id == record.data.tags[REUSED_TAG] and replayed.equal


def test_a_warm_start_from_a_sweep_the_store_lacks_is_refused_before_any_run_opens(
    ewt_slice, tmp_path, sqlite_store, monkeypatch
):
    uri = sqlite_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RAY_ADDRESS", "local")
    typo = write_sweep(tmp_path, ewt_slice, with_sweep(GRID, name="third", warm_start=["frist"]))
    try:
        with pytest.raises(ConfigError, match="sweep.warm_start: no sweep named 'frist' in this"):
            run_sweep(typo, [], tmp_path / "tune", fresh=False)
    finally:
        mlflow.set_tracking_uri(None)
    client = mlflow.MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments) == []
