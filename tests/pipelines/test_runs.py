"""The read model of a sweep's runs: a config's params under its dotted keys, and a trial
run read once into a TrialRun."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from pipelines.names import BASELINE_ROLE, FINISHED, TRIAL_ROLE
from pipelines.runs import read_trial_runs, run_params
from postag.config import to_dict
from postag.data import dataset as datasets
from postag.training.objective import DEFAULT


def test_the_params_a_trial_logs_are_its_config_under_its_dotted_keys(tiny_config):
    params = run_params(to_dict(tiny_config), datasets.load(tiny_config.data))
    # Every field of the config is there, under the key the experiment file and --set use.
    fields = [
        f"{section}.{name}" for section, values in to_dict(tiny_config).items() for name in values
    ]
    assert set(fields) <= set(params)
    # As the MLflow UI shows them: the tiny config's own values, written out by hand.
    keys = ("model.hidden_size", "train.lr", "model.ff_dims", "train.swa_start", "train.betas")
    assert {key: params[key] for key in keys} == {
        "model.hidden_size": "32",
        "train.lr": "0.003",
        "model.ff_dims": "[64]",
        "train.swa_start": "None",
        "train.betas": "[0.9, 0.999]",
    }
    assert params["data.dev"] == tiny_config.data.dev
    assert params["validation_digest"] == datasets.load(tiny_config.data).validation_digest


def test_a_swept_trial_reads_back_typed(swept):
    outcome, runs, _, _ = swept
    read = {run.run_id: run for run in read_trial_runs(runs, DEFAULT)}
    assert len(read) == len(runs)
    for raw in runs:
        run = read[raw.info.run_id]
        assert run.name == raw.info.run_name and run.status == raw.info.status
        assert run.value("train.lr") == raw.data.params["train.lr"]
        assert run.value("model.hidden_size") == raw.data.params.get("model.hidden_size")
        if run.status == FINISHED:
            assert run.score == raw.data.metrics["best_val_accuracy"]
            assert run.best_epoch == int(raw.data.metrics["best_epoch"])
            assert run.model_uri == raw.data.tags["model_uri"]
    roles = {run.role for run in read.values()}
    assert {TRIAL_ROLE, BASELINE_ROLE} <= roles
    winner = read[outcome["registered"].winner.run_id]
    assert winner.is_candidate() and not winner.is_candidate(BASELINE_ROLE)


@pytest.mark.parametrize("missing", ["score", "model_uri"])
def test_a_run_without_a_score_or_a_model_is_no_candidate(swept, missing):
    _, runs, _, _ = swept
    run = next(r for r in read_trial_runs(runs, DEFAULT) if r.is_candidate())
    assert not dataclasses.replace(run, **{missing: None}).is_candidate()


def test_a_trial_worker_does_not_import_mlflow():
    """The trial's module loads in each Ray worker: mlflow would add a second to its start."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pipelines.sweep.trial.trainable; print('mlflow' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "False"
