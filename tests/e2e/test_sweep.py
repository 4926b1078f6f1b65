"""The sweep end to end on real Ray and a real sqlite MLflow store, CI-sized."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from postag.data.readers import read_conllu
from postag.data.sources import sha256_of
from postag.serving.names import REGISTERED_MODEL
from postag.serving.registry import best_model_uri
from tests.helpers import DIVERGING_LR, PROJECT_ROOT


def by_lr(runs, lr):
    return [r for r in runs if float(r.data.params["train.lr"]) == lr]


def test_every_trial_has_a_nested_run_with_params_and_epoch_metrics(swept):
    _, runs, client, _ = swept
    assert len(runs) == 4  # three grid trials and the baseline
    (run,) = by_lr(runs, 0.005)
    params = run.data.params
    assert (params["model.hidden_size"], params["model.num_layers"], params["train.epochs"]) == (
        "24",
        "1",
        "2",
    )
    assert {
        "dataset_fingerprint",
        "validation_digest",
        "vocabulary_size",
        "num_classes",
        "data.train",
    } <= set(params)
    for metric in (
        "train_loss",
        "val_accuracy",
        "epoch_seconds",
        "validation_seconds",
        "tokens_per_second",
        "grad_norm_first_lstm",
        "grad_norm_last_lstm",
        "system/process_resident_megabytes",
        "system/process_cpu_utilization_percentage",
    ):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
        assert steps == [1, 2], metric


def test_each_trial_logs_what_its_own_process_costs_per_epoch(swept):
    _, runs, client, _ = swept
    for run in [r for r in runs if r.info.status == "FINISHED"]:
        resident = client.get_metric_history(run.info.run_id, "system/process_resident_megabytes")
        cpu = client.get_metric_history(
            run.info.run_id, "system/process_cpu_utilization_percentage"
        )
        # A trial process holds torch and its data: hundreds of MB, not nothing.
        assert all(100 < m.value < 10_000 for m in resident), run.info.run_name
        # It trained on one thread, so it used some of one core, and not many.
        assert all(0 < m.value < 400 for m in cpu), run.info.run_name


def test_baseline_is_tagged_recorded_and_keeps_its_shape(swept):
    _, runs, _, _ = swept
    baseline = [r for r in runs if r.data.tags["role"] == "deep-baseline"]
    assert len(baseline) == 1
    assert (
        baseline[0].data.params["model.num_layers"],
        baseline[0].data.params["train.epochs"],
    ) == ("6", "1")
    assert baseline[0].info.status == "FINISHED"
    # Runs are named by what varies, so a reader tells them apart in the UI's table.
    assert baseline[0].info.run_name == "baseline-lr0.001"
    names = {r.info.run_name for r in runs if r.data.tags["role"] == "trial"}
    assert names == {"lr0.005", "lr0.002", "lr1e+30"}
    assert "grad_norm_first_lstm" in baseline[0].data.metrics


def test_a_diverging_trial_fails_naming_the_epoch_and_the_sweep_completes(swept):
    _, runs, client, _ = swept
    (failed,) = by_lr(runs, DIVERGING_LR)
    assert failed.info.status == "FAILED"
    assert "epoch 1: the training loss is nan" in failed.data.tags["error"]
    assert "retried_after_error" in failed.data.tags
    assert {r.info.status for r in runs if r is not failed} == {"FINISHED"}
    # The whole error, as Ray reported it from the trial, is the run's error.txt.
    error = Path(client.download_artifacts(failed.info.run_id, "error.txt")).read_text()
    assert "ray::ImplicitFunc.train()" in error and "epoch 1: the training loss is nan" in error
    # Among good trials, the failed one is never registered, under any alias.
    versions = client.search_model_versions(f"name = '{REGISTERED_MODEL}'")
    assert versions and failed.info.run_id not in {v.run_id for v in versions}
    assert "model_uri" not in failed.data.tags


def test_best_alias_points_at_the_best_non_baseline_trial(swept):
    outcome, runs, client, _ = swept
    trials = [r for r in runs if r.data.tags["role"] == "trial" and r.info.status == "FINISHED"]
    best = max(trials, key=lambda r: r.data.metrics["best_val_accuracy"])
    version = client.get_model_version_by_alias(REGISTERED_MODEL, "best")
    assert version.version == outcome["version"]
    assert version.tags["run_id"] == best.info.run_id
    assert version.tags["validation_digest"] == best.data.params["validation_digest"]
    assert "tiny" in version.description and "validation accuracy" in version.description
    # The sweep's own alias names the same version.
    assert client.get_model_version_by_alias(REGISTERED_MODEL, "sweep-tiny").version == (
        version.version
    )


def test_registered_model_loads_by_alias_and_tags_sentences(in_swept_store, ewt_slice):
    model = mlflow.pyfunc.load_model(best_model_uri())
    sentences = [list(s.words) for s in read_conllu(ewt_slice["test"])[:5]]
    tagged = model.predict(pd.DataFrame({"tokens": sentences}))["tags"]
    assert [len(t) for t in tagged] == [len(s) for s in sentences]
    train_tags = {t for s in read_conllu(ewt_slice["train"]) for t in s.tags}
    assert all(tag in train_tags for sentence in tagged for tag in sentence)


def test_every_run_records_the_code_that_made_it(swept):
    outcome, runs, client, _ = swept
    commit = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parent = client.get_run(runs[0].data.tags[MLFLOW_PARENT_RUN_ID])
    for run in [*runs, parent]:
        assert run.data.tags["mlflow.source.git.commit"] == commit, run.info.run_name
        assert run.data.tags["git_dirty"] in ("true", "false")


def test_trial_runs_record_their_training_and_validation_data(swept, ewt_slice):
    _, runs, _, _ = swept
    (run,) = by_lr(runs, 0.005)
    inputs = {
        {t.key: t.value for t in given.tags}["mlflow.data.context"]: given.dataset
        for given in run.inputs.dataset_inputs
    }
    assert set(inputs) == {"training", "validation"}
    assert inputs["training"].name == ewt_slice["train"].name
    assert inputs["validation"].name == ewt_slice["dev"].name
    dev_sha256 = sha256_of(ewt_slice["dev"])
    assert inputs["validation"].digest == dev_sha256[:16]
    profile = json.loads(inputs["validation"].profile)
    assert profile["sha256"] == dev_sha256
    assert profile["num_rows"] == len(read_conllu(ewt_slice["dev"]))


def test_each_model_is_complete_and_linked_to_its_figures(in_swept_store):
    _, runs, client, _ = in_swept_store
    (run,) = by_lr(runs, 0.005)
    # get_logged_model reads MLflow's global tracking URI whatever the client's (hence
    # in_swept_store).
    model = client.get_logged_model(run.outputs.model_outputs[0].model_id)
    signature = mlflow.models.get_model_info(run.data.tags["model_uri"]).signature
    assert signature.inputs.input_names() == ["tokens", "text"]
    assert signature.outputs.input_names() == ["tokens", "tags"]
    linked = {m.key: m for m in model.metrics}
    assert linked["best_val_accuracy"].value == run.data.metrics["best_val_accuracy"]
    assert linked["best_val_accuracy"].dataset_name == Path(run.data.params["data.dev"]).name
    assert model.params["model.hidden_size"] == run.data.params["model.hidden_size"]


def test_the_registered_version_shows_validation_and_test_accuracy_and_its_sweep(swept):
    outcome, _, client, _ = swept
    version = client.get_model_version(REGISTERED_MODEL, outcome["version"])
    assert version.tags["sweep"] == "tiny"
    assert 0 < float(version.tags["val_accuracy"]) <= 1
    evaluation = client.get_run(version.tags["evaluation_run_id"])
    assert evaluation.data.tags["mlflow.parentRunId"] == version.run_id
    assert float(version.tags["test_token_accuracy"]) == pytest.approx(
        evaluation.data.metrics["token_accuracy"], abs=1e-6
    )


def test_a_sweep_of_one_axis_says_it_holds_all_the_variance(swept, tmp_path):
    """Only lr varied: fANOVA would give it a share of 1 whatever the trials scored, so the
    sweep says so rather than record a figure that tells nothing (test_sweep_search has the
    fANOVA of several axes)."""
    outcome, _, client, _ = swept
    parent = outcome["state"]["parent_run_id"]
    assert not any(name.startswith("importance.") for name in client.get_run(parent).data.metrics)
    summary = Path(client.download_artifacts(parent, "trials.md", str(tmp_path))).read_text()
    assert (
        "## What mattered\n\nNot measured: only lr varied, so it holds all the variance" in summary
    )
    assert {a.path for a in client.list_artifacts(parent)}.isdisjoint(
        {"param_importance.png", "parallel_coordinates.png"}
    )


def test_each_trials_config_is_resolved_once_and_travels_in_its_checkpoint(swept, tmp_path):
    """A trial's RunConfig is resolved once, in the trial's own process; the trial stores it
    in each checkpoint, and the driver logs the run's params, its config.json and the model
    from what the trial carried. Only a trial that failed before its first report, which
    sent none, is resolved by the driver, for its run's record."""
    outcome, runs, client, _ = swept
    resolutions = outcome["config_resolutions"]
    points = Counter(json.dumps(r["point"], sort_keys=True) for r in resolutions)
    once = {json.dumps({"train.lr": lr}) for lr in (0.001, 0.002, 0.005)}
    assert {key: points[key] for key in once} == dict.fromkeys(once, 1), resolutions
    # The diverging trial: its first try, its retry (the sweep's one; no checkpoint to carry
    # it from), and the driver's, for the run of a trial that never reported.
    diverging = json.dumps({"train.lr": DIVERGING_LR})
    assert points[diverging] == 3, resolutions
    by_driver = [r for r in resolutions if r["pid"] == outcome["driver_pid"]]
    assert [json.dumps(r["point"], sort_keys=True) for r in by_driver] == [diverging]
    (failed,) = by_lr(runs, DIVERGING_LR)
    assert failed.data.params["model.hidden_size"] == "24" and failed.info.status == "FAILED"
    saved = {
        path.parent.parent.name: json.loads(path.read_text())
        for path in Path(outcome["state"]["tune_dir"]).glob("*/checkpoint_*/config.json")
    }
    finished = [run for run in runs if run.info.status == "FINISHED"]
    assert len(saved) == len(finished)
    for run in finished:
        (trial_config,) = [c for d, c in saved.items() if run.data.tags["ray_trial_id"] in d]
        artifact = client.download_artifacts(run.info.run_id, "config.json", str(tmp_path))
        assert json.loads(Path(artifact).read_text()) == trial_config, run.info.run_name
        model = client.get_logged_model(run.data.tags["model_uri"].removeprefix("models:/"))
        assert model.params == run.data.params, run.info.run_name
        assert run.data.params["model.hidden_size"] == str(trial_config["model"]["hidden_size"])
