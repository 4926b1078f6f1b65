"""A Pareto search end to end at CI size: two objectives (validation macro F1 against the
tagging time per sentence) through Optuna's multi-objective sampler in Ray Tune; each
trial's best epoch chosen by macro F1; the front registered, tagged, tabled and plotted."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipelines.sweep.driver import run_sweep
from postag.serving.names import REGISTERED_MODEL
from postag.serving.registry import BEST_ALIAS, load_tagger
from tests.helpers import trial_runs, write_experiment

SAMPLES = 3
F1, TIME = "val_macro_f1", "tagging_ms_per_sentence"
# A learning rate too small to learn anything in 2 epochs: a trial that takes it is beaten
# on F1 by every trial that learns, and on time by any that learns with a smaller model.
STILL = 1e-7
# Optuna's seed: its draws then hold a learning trial (16 wide, 1 layer) and a still one
# twice as deep at the same width, which the first beats on both objectives, so the front
# cannot be every trial (these draws come before any result: TPE's first are random).
OPTUNA_SEED = 14


def pareto_experiment() -> dict:
    return {
        "model": {"embedding_dim": 16, "ff_dims": [16], "char_filters": 8},
        "train": {"batch_size": 32, "lr": 0.005, "epochs": 2},
        "sweep": {
            "name": "pareto-ci",
            "search": "optuna",
            "num_samples": SAMPLES,
            # Integer ranges, not choices: Optuna takes the baseline's depth outside them.
            "space": {
                "model.hidden_size": {"low": 8, "high": 32, "log": True},
                "model.num_layers": {"low": 1, "high": 2},
                "model.char_dim": [0, 8],
                "train.lr": [0.005, STILL],
            },
            "baseline": {
                "model.hidden_size": 8,
                "model.num_layers": 6,
                "model.char_dim": 0,
                "train.lr": 0.005,
                "train.epochs": 1,
            },
            "optuna_seed": OPTUNA_SEED,
            "objectives": [{"metric": F1, "mode": "max"}, {"metric": TIME, "mode": "min"}],
            "max_concurrent_trials": 1,
            "cpus_per_trial": 1,
        },
    }


def dominated(figures: tuple[float, float], by: tuple[float, float]) -> bool:
    """Whether `by` is at least as good on both (F1 up, time down) and better on one."""
    return by[0] >= figures[0] and by[1] <= figures[1] and by != figures


def test_a_pareto_search_registers_its_front_chosen_on_both_objectives(
    ewt_slice, tmp_path, monkeypatch, sqlite_store, capsys
):
    uri = sqlite_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RAY_ADDRESS", "local")
    mlflow.set_tracking_uri(uri)
    config = write_experiment(tmp_path, ewt_slice, pareto_experiment())
    outcome = run_sweep(config, [], tmp_path / "tune", fresh=False)
    console = capsys.readouterr().out
    assert not outcome["interrupted"]

    client = mlflow.MlflowClient(uri)
    runs = trial_runs(client)
    searched = [r for r in runs if r.data.tags["role"] == "trial"]
    (baseline,) = [r for r in runs if r.data.tags["role"] == "deep-baseline"]
    assert len(searched) == SAMPLES
    # Each trial measured its final model's tagging time in its own process; the baseline,
    # never a candidate, did not.
    assert all(r.data.metrics[TIME] > 0 for r in searched)
    assert TIME not in baseline.data.metrics
    # The trainer chose each trial's best epoch by macro F1, the first objective.
    for run in searched:
        history = client.get_metric_history(run.info.run_id, F1)
        best = max(history, key=lambda m: (m.value, -m.step))
        assert run.data.metrics["best_epoch"] == best.step
        assert run.data.metrics[f"best_{F1}"] == best.value
        assert run.data.params["train.objective"] == str({"metric": F1, "mode": "max"})

    # The front is exactly the trials no other beats on both objectives.
    figures = {
        r.info.run_id: (r.data.metrics[f"best_{F1}"], r.data.metrics[TIME]) for r in searched
    }
    undominated = {
        run_id
        for run_id, mine in figures.items()
        if not any(dominated(mine, other) for other in figures.values())
    }
    on_front = {r.info.run_id: r for r in searched if "pareto_front_rank" in r.data.tags}
    assert set(on_front) == undominated
    # The trial that learned nothing lies off the front, beaten on both objectives.
    off_front = [r for r in searched if r.info.run_id not in undominated]
    assert STILL in {float(r.data.params["train.lr"]) for r in off_front}
    registered = {v.run_id for v in client.search_model_versions(f"name = '{REGISTERED_MODEL}'")}
    assert not registered & {r.info.run_id for r in off_front}
    members = outcome["front"]
    assert [m.run.run_id for m in members] == sorted(
        undominated, key=lambda run_id: -figures[run_id][0]
    )
    # Each member is registered and loads from the registry; `best` is the best on F1.
    for member in members:
        version = client.get_model_version(REGISTERED_MODEL, member.version)
        assert version.tags["run_id"] == member.run.run_id
        assert version.tags["objective_metric"] == F1
        assert float(version.tags[TIME]) == pytest.approx(figures[member.run.run_id][1], rel=1e-5)
        tagger, _ = load_tagger(member.uri)
        assert tagger.config.train.objective.metric == F1
    best = client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS)
    assert best.version == members[0].version

    # The console and the parent run show the front; the parent holds its plot.
    assert f"Pareto front, {len(members)} of {SAMPLES} trials" in console
    assert "| best val macro F1 | ms / sentence |" in console
    parent = client.get_run(searched[0].data.tags[MLFLOW_PARENT_RUN_ID])
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"pareto_front.png", "trials.md"} <= artifacts
    trials_md = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/trials.md")
    assert "## Pareto front" in trials_md
