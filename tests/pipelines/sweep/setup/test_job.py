"""What a sweep is, read from its experiment file and the command line's overrides."""

from __future__ import annotations

import pytest

from pipelines.sweep.setup.job import load_sweep
from postag.config import ConfigError
from tests.helpers import TINY_SWEEP, write_sweep


def test_an_override_of_a_searched_key_is_refused_not_silently_replaced(tmp_path, ewt_slice):
    config = write_sweep(tmp_path, ewt_slice, TINY_SWEEP)
    with pytest.raises(ConfigError) as refused:
        load_sweep(config, ["train.lr=0.1"])
    assert "--set train.lr=0.1 would be ignored: the sweep searches train.lr" in str(refused.value)
    assert str(config) in str(refused.value)


def test_what_is_searched_is_changed_through_the_sweep_space(tmp_path, ewt_slice):
    config = write_sweep(tmp_path, ewt_slice, TINY_SWEEP)
    _, run, sweep = load_sweep(config, ["sweep.space.train.lr=[0.1, 0.2]", "train.epochs=3"])
    assert sweep.space["train.lr"] == [0.1, 0.2] and run.train.epochs == 3


def test_the_file_names_the_experiment_and_model_else_the_environment_else_the_defaults(
    tmp_path, ewt_slice, monkeypatch
):
    config = write_sweep(tmp_path, ewt_slice, TINY_SWEEP)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("POSTAG_REGISTERED_MODEL", raising=False)
    _, _, sweep = load_sweep(config, [])
    assert (sweep.experiment, sweep.registered_model) == ("postag", "postag-tagger")

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "team-runs")
    monkeypatch.setenv("POSTAG_REGISTERED_MODEL", "team-tagger")
    _, _, sweep = load_sweep(config, [])
    assert (sweep.experiment, sweep.registered_model) == ("team-runs", "team-tagger")

    named = ["sweep.experiment=file-runs", "sweep.registered_model=file-tagger"]
    _, _, sweep = load_sweep(config, named)
    assert (sweep.experiment, sweep.registered_model) == ("file-runs", "file-tagger")
