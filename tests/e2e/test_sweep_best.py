"""`make sweep EXPERIMENT=experiments/best.yaml` at CI size: the file's own sweep section, its
model shrunk. Its seeds train side by side as trials of one sweep, the configuration is
registered by its mean over them, and `make evaluate BEST` then reports that version."""

from __future__ import annotations

import statistics
from pathlib import Path

import mlflow

from pipelines.cli import main
from postag.config import read_yaml
from postag.registry import BEST_ALIAS, REGISTERED_MODEL
from tests.helpers import SWEEP_LIMIT_SECONDS, most_at_once, trial_runs, write_experiment

BEST = Path(__file__).parents[2] / "experiments" / "best.yaml"


def ci_sized(values: dict) -> dict:
    """best.yaml with its model and steps shrunk; its data options and sweep kept."""
    model = {"embedding_dim": 16, "hidden_size": 16, "ff_dims": [16], "char_filters": 16}
    values["model"] = {**values["model"], **model, "char_dim": 8}
    values["train"] = {**values["train"], "epochs": 2, "max_batches_per_epoch": 8}
    values["sweep"]["baseline"] = {
        **values["sweep"]["baseline"],
        "model.hidden_size": 8,
        "model.num_layers": 6,
        "train.epochs": 1,
        "train.max_batches_per_epoch": 2,
    }
    return values


def test_best_yaml_trains_its_seeds_side_by_side_and_registers_their_mean(
    ewt_slice, tmp_path, sweep_driver, monkeypatch, capsys, sqlite_store
):
    values = ci_sized(read_yaml(BEST))
    assert values["sweep"]["space"] == {"train.seed": [1, 2, 3]}
    values["data"] = {**values["data"], "test": str(ewt_slice["test"])}
    config = write_experiment(tmp_path, ewt_slice, values)
    uri = sqlite_store(tmp_path)
    driver = sweep_driver(config, tmp_path, {"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"})
    log = tmp_path / "driver.log"
    assert driver.wait(timeout=SWEEP_LIMIT_SECONDS) == 0, log.read_text()

    client = mlflow.MlflowClient(uri)
    runs = trial_runs(client)
    seeds = {r.data.params["train.seed"]: r for r in runs if r.data.tags["role"] == "trial"}
    assert sorted(seeds) == ["1", "2", "3"] and len(runs) == 4  # and the 40 x 256 baseline
    assert most_at_once(list(seeds.values())) >= 2  # side by side, not one after another
    accuracies = [r.data.metrics["best_val_accuracy"] for r in seeds.values()]
    mean, sd = statistics.fmean(accuracies), statistics.stdev(accuracies)

    # Registered by the mean of its seeds: the best seed's model, the mean on the version.
    version = client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS)
    assert version.tags["sweep"] == "best"
    assert version.tags["seeds"] == "1,2,3"
    assert float(version.tags["val_mean"]) == float(version.tags["val_accuracy"])
    assert float(version.tags["val_mean"]) == round(mean, 6)
    best_seed = max(seeds.values(), key=lambda r: r.data.metrics["best_val_accuracy"])
    assert version.run_id == best_seed.info.run_id
    console = log.read_text()
    line = f"confirmed its configuration: {100 * mean:.2f}% ± {100 * sd:.2f} over 3 seeds"
    assert line in console, console
    assert f"sweep 'best' done: registered version {version.version}" in console

    # `make evaluate BEST` reports that version.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["evaluate", "--data", str(ewt_slice["test"])]) == 0
    mlflow.set_tracking_uri(None)
    report = capsys.readouterr().out
    assert f"models:/{REGISTERED_MODEL}@{BEST_ALIAS} (version {version.version}," in report
