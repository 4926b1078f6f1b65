"""experiments/deep.yaml's question at CI size: one sweep, the same deep stack with and without
residual connections, both recorded in MLflow; only the residual one learns."""

from __future__ import annotations

import mlflow

from pipelines.sweep.driver import run_sweep
from tests.helpers import trial_runs, write_experiment

# The shape of deep.yaml shrunk to seconds: deep enough that the plain stack's gradient
# vanishes before the first layer (see test_model), narrow enough for a CI machine.
DEEP_SWEEP = {
    "model": {"embedding_dim": 16, "ff_dims": [32]},
    # Batches of 64 take a third of the time of 16 a token; by a fifth epoch at this rate the
    # plain stack's first layer starts to learn (1e-4), so four.
    "train": {"epochs": 4, "batch_size": 64, "lr": 0.01},
    "sweep": {
        "name": "deep",
        "space": {"model.hidden_size": [16], "model.num_layers": [12], "model.residual": [True]},
        "baseline": {"model.hidden_size": 16, "model.num_layers": 12, "model.residual": False},
        "max_concurrent_trials": 1,
        "cpus_per_trial": 1,
    },
}


def test_residual_deep_stack_learns_where_the_plain_one_stays_at_the_majority_tag(
    ewt_slice, tmp_path, monkeypatch, sqlite_store
):
    uri = sqlite_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RAY_ADDRESS", "local")
    config = write_experiment(tmp_path, ewt_slice, DEEP_SWEEP)
    outcome = run_sweep(config, [], tmp_path / "tune", fresh=False)
    assert not outcome["interrupted"]

    runs = {run.data.params["model.residual"]: run for run in trial_runs(mlflow.MlflowClient(uri))}
    plain, residual = runs["False"], runs["True"]
    assert plain.data.tags["role"] == "deep-baseline" and residual.data.tags["role"] == "trial"
    assert plain.data.params["model.num_layers"] == residual.data.params["model.num_layers"] == "12"
    assert plain.data.metrics["best_val_accuracy"] < 0.25
    assert residual.data.metrics["best_val_accuracy"] > 0.4
    # The evidence of why: the plain stack's first layer gets almost no gradient.
    assert plain.data.metrics["grad_norm_first_lstm"] < 1e-5
    assert residual.data.metrics["grad_norm_first_lstm"] > 1e-2
