"""The sweep end to end on real Ray and a real sqlite MLflow store, CI-sized."""

from __future__ import annotations

import mlflow
import pandas as pd

from postag.readers import read_conllu
from postag.registry import REGISTERED_MODEL, best_model_uri
from tests.conftest import DIVERGING_LR


def by_lr(runs, lr):
    return [r for r in runs if float(r.data.params["lr"]) == lr]


def test_every_trial_has_a_nested_run_with_params_and_epoch_metrics(swept):
    _, runs, client, _ = swept
    assert len(runs) == 4  # three grid trials and the baseline
    (run,) = by_lr(runs, 0.005)
    params = run.data.params
    assert (params["hidden_size"], params["num_layers"], params["epochs"]) == ("24", "1", "2")
    assert {"dataset_fingerprint", "validation_digest", "vocabulary_size", "num_classes",
            "data.train"} <= set(params)  # fmt: skip
    for metric in ("train_loss", "val_accuracy", "epoch_seconds", "tokens_per_second",
                   "grad_norm_first_lstm", "grad_norm_last_lstm"):  # fmt: skip
        steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
        assert steps == [1, 2], metric


def test_baseline_is_tagged_recorded_and_keeps_its_shape(swept):
    _, runs, _, _ = swept
    baseline = [r for r in runs if r.data.tags["role"] == "deep-baseline"]
    assert len(baseline) == 1
    assert (baseline[0].data.params["num_layers"], baseline[0].data.params["epochs"]) == ("6", "1")
    assert baseline[0].info.status == "FINISHED"
    # Runs are named by what varies, so a reader tells them apart in the UI's table.
    assert baseline[0].info.run_name == "baseline-lr0.001"
    names = {r.info.run_name for r in runs if r.data.tags["role"] == "trial"}
    assert names == {"lr0.005", "lr0.002", "lr1e+30"}
    assert "grad_norm_first_lstm" in baseline[0].data.metrics


def test_a_diverging_trial_fails_naming_the_epoch_and_the_sweep_completes(swept):
    _, runs, _, _ = swept
    (failed,) = by_lr(runs, DIVERGING_LR)
    assert failed.info.status == "FAILED"
    assert "epoch 1: the training loss is nan" in failed.data.tags["error"]
    assert "retried_after_error" in failed.data.tags
    assert {r.info.status for r in runs if r is not failed} == {"FINISHED"}


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
    tagged = model.predict(pd.DataFrame({"tokens": sentences}))
    assert [len(t) for t in tagged] == [len(s) for s in sentences]
    train_tags = {t for s in read_conllu(ewt_slice["train"]) for t in s.tags}
    assert all(tag in train_tags for sentence in tagged for tag in sentence)
