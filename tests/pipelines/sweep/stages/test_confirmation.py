"""The confirmation's choice: the configuration with the best mean over its seeds, not the
one with the luckiest single run, on runs written to a real sqlite MLflow store."""

from __future__ import annotations

from types import SimpleNamespace

import mlflow
import pytest

from pipelines.runs import read_trial_runs
from pipelines.sweep.setup.settings import ConfirmConfig
from pipelines.sweep.stages.confirmation import (
    Candidate,
    confirmation_seeds,
    confirmed,
    seed_points,
)
from postag.training.objective import DEFAULT


def test_the_best_mean_beats_the_luckiest_single_run(tmp_path, sqlite_store):
    """Configuration A has the best single run (0.90) and B the best mean (0.86 vs 0.85)."""
    client = mlflow.MlflowClient(sqlite_store(tmp_path))
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
    runs = read_trial_runs(runs, DEFAULT)
    chosen = [
        Candidate(run=runs[0], point={"train.lr": 0.005}),
        Candidate(run=runs[2], point={"train.lr": 0.002}),
    ]
    ranked = confirmed(chosen, runs, trials, DEFAULT)
    assert [item.candidate.point["train.lr"] for item in ranked] == [0.002, 0.005]
    assert ranked[0].mean == pytest.approx(0.86) and ranked[1].mean == pytest.approx(0.85)
    assert ranked[0].best_run.name in ("b-seed1", "b-seed2")


def test_confirmation_seeds_are_new_and_every_configuration_gets_each():
    seeds = confirmation_seeds(ConfirmConfig(top_k=2, seeds=3), search_seed=42)
    assert seeds == [43, 44, 45]  # never the search's own seed, whose run was chosen for luck
    chosen = [Candidate(None, {"train.lr": 0.01}), Candidate(None, {"train.lr": 0.02})]
    points = seed_points(chosen, seeds)
    assert len(points) == 6
    assert {(p["train.lr"], p["train.seed"]) for p in points} == {
        (lr, seed) for lr in (0.01, 0.02) for seed in seeds
    }
