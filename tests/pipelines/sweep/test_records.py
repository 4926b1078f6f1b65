"""A trial's MLflow run: one per trial, whole, however its creation was cut off."""

from __future__ import annotations

import errno
from pathlib import Path

import mlflow
import pytest

from pipelines.sweep.records import TrialRecords
from pipelines.tracking import DataInput

PARAMS = {"hidden_size": "8", "epochs": "3"}
CONFIG = {"model": {"hidden_size": 8}}
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


def test_a_run_cut_off_mid_creation_is_found_again_and_filled_in(store, monkeypatch):
    client, experiment, parent = store
    first = TrialRecords(experiment, parent)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # The store fills just after the run is made: its tags are in, its params are not.
    with monkeypatch.context() as patch, pytest.raises(OSError):
        patch.setattr(first.client, "log_batch", disk_full)
        first.create("t1", "h8", "trial", PARAMS, CONFIG, [TRAIN])

    resumed = TrialRecords(experiment, parent)  # the next driver
    found = resumed.find("t1")
    assert found is not None and not resumed.complete(found)
    resumed.fill(found.info.run_id, PARAMS, CONFIG, [TRAIN])
    resumed.fill(found.info.run_id, PARAMS, CONFIG, [TRAIN])  # a second cut-off, say

    run = client.get_run(found.info.run_id)
    assert resumed.complete(run) and run.data.params == PARAMS
    assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["train.conllu"]
    assert mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/config.json") == CONFIG
    assert len(client.search_runs([experiment], "tags.ray_trial_id = 't1'")) == 1
