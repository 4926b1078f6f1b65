"""experiments/search.yaml end to end at CI size: Optuna through Ray Tune, ASHA, the fixed
deep baseline, and a registered best model that carries its char encoder."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import yaml
from matplotlib.image import imread

from pipelines.sweep.driver import run_sweep
from postag.serving.registry import best_model_uri, load_tagger
from tests.helpers import trial_runs, write_experiment

SEARCH = Path(__file__).resolve().parents[2] / "experiments" / "search.yaml"
SAMPLES = 4


def shrunk_search() -> dict:
    """search.yaml as written, with sizes a CI machine trains in seconds."""
    values = yaml.safe_load(SEARCH.read_text())
    values["model"].update({"embedding_dim": 16, "ff_dims": [16], "char_dim": 8})
    values["train"].update({"batch_size": 32, "lr": 0.005})
    sweep = values["sweep"]
    sweep["space"].update(
        {
            "model.hidden_size": {"low": 8, "high": 32, "log": True},
            "model.num_layers": {"low": 1, "high": 2},
            "train.epochs": {"low": 2, "high": 4},
            "model.char_filters": {"low": 8, "high": 16},
        }
    )
    sweep["baseline"].update({"model.hidden_size": 8, "model.num_layers": 6, "train.epochs": 1})
    sweep["asha"]["grace_period"] = 1
    sweep.update(
        {
            "num_samples": SAMPLES,
            "max_concurrent_trials": 1,
            "cpus_per_trial": 1,
            "confirm": {"top_k": 1, "seeds": 2},
        }
    )
    return values


def test_search_yaml_samples_with_optuna_and_registers_a_char_tagger(
    ewt_slice, tmp_path, monkeypatch, sqlite_store
):
    uri = sqlite_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RAY_ADDRESS", "local")
    mlflow.set_tracking_uri(uri)
    values = shrunk_search()
    config = write_experiment(tmp_path, ewt_slice, values)
    outcome = run_sweep(config, [], tmp_path / "tune", fresh=False)
    assert not outcome["interrupted"]

    runs = trial_runs(mlflow.MlflowClient(uri))
    baseline = [r for r in runs if r.data.tags["role"] != "trial"]
    searched = [r for r in runs if r.data.tags["role"] == "trial"]
    assert len(baseline) == 1 and len(searched) == SAMPLES
    # The baseline keeps search.yaml's word-only seed settings; every sampled trial has
    # the char encoder and values Optuna drew inside the searched ranges.
    assert baseline[0].data.params["model.char_dim"] == "0"
    assert baseline[0].data.params["model.num_layers"] == "6"
    for run in searched:
        params = run.data.params
        assert params["model.char_dim"] == "8"
        assert (
            8 <= int(params["model.hidden_size"]) <= 32
            and 8 <= int(params["model.char_filters"]) <= 16
        )
        assert 0.0 <= float(params["model.word_dropout"]) <= 0.3
        assert 0.0 <= float(params["model.rare_word_dropout"]) <= 1.0
        assert params["data.lowercase_words"] == "True"
        assert 0.0003 <= float(params["train.lr"]) <= 0.003
        assert params["model.char_encoder"] in ("cnn", "lstm")
        assert 0.0 <= float(params["train.warmup_fraction"]) <= 0.1
        # ASHA may stop a trial early, never let it run past the epochs it drew.
        epochs = mlflow.MlflowClient(uri).get_metric_history(run.info.run_id, "val_accuracy")
        assert 1 <= len(epochs) <= int(params["train.epochs"])
    assert len({run.data.params["model.hidden_size"] for run in searched}) > 1

    tagger, version = load_tagger(best_model_uri())
    assert version is not None and tagger.model.uses_chars
    # The confirmation (top 1 x 2 seeds) trained the best searched configuration again, and
    # the version is one of those seed runs: the same values but the seed.
    best = max(searched, key=lambda run: run.data.metrics["best_val_accuracy"])
    registered = mlflow.MlflowClient(uri).get_run(version.tags["run_id"])
    assert registered.data.tags["role"] == "confirmation"
    assert registered.data.params["train.seed"] in ("1", "2")
    for name in (
        "model.hidden_size",
        "model.num_layers",
        "train.epochs",
        "train.lr",
        "model.char_encoder",
        "train.warmup_fraction",
        "model.char_filters",
    ):
        assert registered.data.params[name] == best.data.params[name], name

    # What mattered: fANOVA shares out the searched axes' variance (the seed is not one),
    # recorded as metrics, in trials.md, and as Optuna's two plots.
    client = mlflow.MlflowClient(uri)
    parent = outcome["state"]["parent_run_id"]
    metrics = client.get_run(parent).data.metrics
    shares = {k: v for k, v in metrics.items() if k.startswith("importance.")}
    assert {"importance.hidden_size", "importance.lr"} <= shares.keys()
    assert "importance.seed" not in shares and sum(shares.values()) == pytest.approx(1.0)
    summary = Path(client.download_artifacts(parent, "trials.md", str(tmp_path))).read_text()
    assert f"fANOVA importance for best validation accuracy over {SAMPLES} finished" in summary
    for name in ("param_importance.png", "parallel_coordinates.png"):
        figure = client.download_artifacts(parent, name, str(tmp_path))
        height, width, _ = imread(figure).shape
        assert height > 300 and width > 300, name
