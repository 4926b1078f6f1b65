"""A trial's MLflow run: one per trial, holding the config its trial resolved, whole however
its filling was cut off."""

from __future__ import annotations

import errno
from pathlib import Path

import mlflow
import pytest

from pipelines.runs import run_params
from pipelines.sweep.trial.records import TrialRuns
from pipelines.tracking import DataInput
from postag.config import to_dict
from postag.data import dataset as datasets

TRAIN = DataInput(
    "train.conllu", "0123456789ab", Path("train.conllu"), "ab" * 32, 9, 99, "training"
)


@pytest.fixture
def store(tmp_path, monkeypatch, sqlite_store):
    """A sqlite store with a sweep's parent run; (client, experiment id, parent run id)."""
    uri = sqlite_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("postag", artifact_location=str(tmp_path / "artifacts"))
    return client, experiment, client.create_run(experiment).info.run_id


def test_a_run_whose_config_was_cut_off_is_found_again_and_filled_in(
    store, monkeypatch, tiny_config
):
    client, experiment, parent = store
    config, dataset = to_dict(tiny_config), datasets.load(tiny_config.data)
    first = TrialRuns(experiment, parent)
    run_id = first.create("t1", "h8", "trial")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # The store fills as the trial's config arrives: its run is made, its params are not.
    with monkeypatch.context() as patch, pytest.raises(OSError):
        patch.setattr(first.client, "log_batch", disk_full)
        first.fill(run_id, config, dataset, [TRAIN])

    resumed = TrialRuns(experiment, parent)  # the next driver
    found = resumed.find("t1")
    assert found is not None and found.info.run_id == run_id
    resumed.reopen(found)
    assert run_id not in resumed.configured
    resumed.fill(run_id, config, dataset, [TRAIN])
    resumed.fill(run_id, config, dataset, [TRAIN])  # the trial's checkpoint brings it again

    run = client.get_run(run_id)
    assert run.data.params == run_params(config, dataset)
    assert run.data.params["model.hidden_size"] == str(tiny_config.model.hidden_size)
    assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["train.conllu"]
    assert mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/config.json") == config
    assert len(client.search_runs([experiment], "tags.ray_trial_id = 't1'")) == 1
    again = TrialRuns(experiment, parent)  # a driver after that finds it whole
    again.reopen(client.get_run(run_id))
    assert run_id in again.configured
