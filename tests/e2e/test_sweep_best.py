"""`make sweep EXPERIMENT=experiments/best.yaml` at CI size: the file's own sweep section, its
model shrunk. Its seeds train side by side as trials of one sweep, and are registered as one
model, the ensemble of the three; `make evaluate BEST`, `postag tag` and the model as MLflow
serves it then all take that version. The same sweep, told to register its best seed
instead, concludes again without training anything. A confirmation stage's seeds make an
ensemble the same way."""

from __future__ import annotations

import statistics
from pathlib import Path

import mlflow
import pandas as pd
import yaml

from pipelines.cli import main
from postag.config import read_yaml
from postag.models.ensemble import TaggerEnsemble
from postag.serving.names import REGISTERED_MODEL
from postag.serving.registry import BEST_ALIAS, load_tagger
from tests.helpers import (
    SWEEP_LIMIT_SECONDS,
    TINY_SWEEP,
    most_at_once,
    trial_runs,
    write_experiment,
)

BEST = Path(__file__).parents[2] / "experiments" / "best.yaml"


def ci_sized(values: dict) -> dict:
    """best.yaml with its model and steps shrunk; its data options and sweep kept."""
    model = {"embedding_dim": 16, "hidden_size": 16, "ff_dims": [16], "char_filters": 16}
    values["model"] = {**values["model"], **model, "char_dim": 8}
    # Enough to learn something (13% against 9% after 2 epochs of 8 batches at best.yaml's
    # rate), so that the seeds' ensemble beats its best seed, as it must to be registered.
    values["train"] = {**values["train"], "epochs": 3, "lr": 0.01}
    values["sweep"]["baseline"] = {
        **values["sweep"]["baseline"],
        "model.hidden_size": 8,
        "model.num_layers": 6,
        "train.epochs": 1,
        "train.max_batches_per_epoch": 2,
    }
    return values


def test_best_yaml_trains_its_seeds_side_by_side_and_registers_them_as_one_model(
    ewt_slice, tmp_path, sweep_driver, monkeypatch, capsys, sqlite_store
):
    values = ci_sized(read_yaml(BEST))
    assert values["sweep"]["space"] == {"train.seed": [1, 2, 3]}
    assert values["sweep"]["register"] == "ensemble"
    values["data"] = {**values["data"], "test": str(ewt_slice["test"])}
    config = write_experiment(tmp_path, ewt_slice, values)
    uri = sqlite_store(tmp_path)
    environment = {"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"}
    driver = sweep_driver(config, tmp_path, environment)
    log = tmp_path / "driver.log"
    assert driver.wait(timeout=SWEEP_LIMIT_SECONDS) == 0, log.read_text()

    client = mlflow.MlflowClient(uri)
    runs = trial_runs(client)
    seeds = {r.data.params["train.seed"]: r for r in runs if r.data.tags["role"] == "trial"}
    assert sorted(seeds) == ["1", "2", "3"] and len(runs) == 4  # and the 40 x 256 baseline
    assert most_at_once(list(seeds.values())) >= 2  # side by side, not one after another
    accuracies = [seeds[s].data.metrics["best_val_accuracy"] for s in sorted(seeds)]

    # One version, the ensemble's own run: its members recorded, validated on the same data.
    version = client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS)
    ensemble = client.get_run(version.run_id)
    assert ensemble.data.tags["role"] == "ensemble"
    assert ensemble.data.tags["mlflow.parentRunId"] == seeds["1"].data.tags["mlflow.parentRunId"]
    members = ",".join(seeds[s].info.run_id for s in sorted(seeds))
    assert ensemble.data.tags["member_run_ids"] == version.tags["member_run_ids"] == members
    assert version.tags["seeds"] == "1,2,3" and version.tags["members"] == "3"
    score = ensemble.data.metrics["best_val_accuracy"]
    assert float(version.tags["val_accuracy"]) == round(score, 6)
    assert float(version.tags["seeds_mean"]) == round(statistics.fmean(accuracies), 6)
    assert ensemble.data.params["validation_digest"] == seeds["1"].data.params["validation_digest"]
    member_ms = ensemble.data.metrics["member_tagging_ms_per_sentence"]
    assert ensemble.data.metrics["tagging_ms_per_sentence"] > member_ms > 0
    console = log.read_text()
    assert f"sweep 'best' done: registered version {version.version}" in console
    assert f"ensemble of seeds 1,2,3: best val {100 * score:.2f}%" in console, console
    assert "against one member's" in console

    # It tags as the mean of its members' probabilities, in every path that loads it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    tagger, _ = load_tagger(f"models:/{REGISTERED_MODEL}@{BEST_ALIAS}")
    assert isinstance(tagger.model, TaggerEnsemble) and len(tagger.model.members) == 3
    served = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL}@{BEST_ALIAS}")
    answer = served.predict(pd.DataFrame({"text": ["I saw her duck. It flew away."]}))
    assert answer["tokens"][0][:4] == ["I", "saw", "her", "duck"]
    assert len(answer["tags"][0]) == len(answer["tokens"][0])

    # `make evaluate BEST` reports that version, as an ensemble, timed beside one member.
    assert main(["evaluate", "--data", str(ewt_slice["test"]), "--timing"]) == 0
    report = capsys.readouterr().out
    assert f"models:/{REGISTERED_MODEL}@{BEST_ALIAS} (version {version.version}," in report
    assert "ensemble            3 taggers, the mean of their tag probabilities" in report
    assert "ms per sentence, one member" in report
    text = tmp_path / "text.txt"
    text.write_text("I saw her duck.\n")
    assert main(["tag", "--input", str(text), "--output", str(tmp_path / "tagged.conllu")]) == 0

    # Told to register its best seed instead, the finished sweep concludes again: nothing
    # trains, and the new version is that seed's own model, under the same parent run.
    values["sweep"]["register"] = "run"
    config.write_text(yaml.safe_dump(values | {"data": read_yaml(config)["data"]}))
    before = len(log.read_text())
    again = sweep_driver(config, tmp_path, environment)
    assert again.wait(timeout=SWEEP_LIMIT_SECONDS) == 0, log.read_text()
    assert len(trial_runs(client)) == 4
    console = log.read_text()[before:]
    assert "its file changes only how it concludes (sweep.register ensemble -> run)" in console
    single = client.get_model_version_by_alias(REGISTERED_MODEL, "sweep-best")
    assert single.version != version.version
    best_seed = max(seeds.values(), key=lambda r: r.data.metrics["best_val_accuracy"])
    assert single.run_id == best_seed.info.run_id


def test_a_confirmation_registers_the_winning_configurations_new_seeds_as_one_model(
    ewt_slice, tmp_path, sweep_driver, sqlite_store, monkeypatch, capsys
):
    values = {
        **TINY_SWEEP,
        "sweep": {
            **TINY_SWEEP["sweep"],
            "name": "confirm-ensemble",
            "space": {"train.lr": [0.02, 0.005]},
            "confirm": {"top_k": 1, "seeds": 2},
            "register": "ensemble",
        },
    }
    config = write_experiment(tmp_path, ewt_slice, values)
    uri = sqlite_store(tmp_path)
    driver = sweep_driver(config, tmp_path, {"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"})
    assert driver.wait(timeout=SWEEP_LIMIT_SECONDS) == 0, (tmp_path / "driver.log").read_text()

    client = mlflow.MlflowClient(uri)
    version = client.get_model_version_by_alias(REGISTERED_MODEL, "sweep-confirm-ensemble")
    ensemble = client.get_run(version.run_id)
    assert ensemble.data.tags["role"] == "ensemble"
    members = [client.get_run(run_id) for run_id in version.tags["member_run_ids"].split(",")]
    # The members are the confirmation's two new seeds of the search's best configuration.
    assert [run.data.tags["role"] for run in members] == ["confirmation", "confirmation"]
    assert len({run.data.params["train.seed"] for run in members}) == 2
    assert len({run.data.params["train.lr"] for run in members}) == 1
    # It trained nothing itself: a replay names its members instead.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["reproduce", f"models:/{REGISTERED_MODEL}/{version.version}"]) == 2
    assert f"is an ensemble of runs {members[0].info.run_id}, " in capsys.readouterr().err
