"""The names the pipeline stores in MLflow: MLflow's own, spelled out so that a trial's
worker need not import mlflow, are MLflow's."""

from mlflow.entities import RunStatus
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from pipelines import names


def test_the_names_spelled_out_for_the_trial_worker_are_mlflows():
    for status in ("FINISHED", "FAILED", "KILLED", "RUNNING"):
        assert getattr(names, status) == RunStatus.to_string(getattr(RunStatus, status))
    assert names.MLFLOW_RUN_NAME == MLFLOW_RUN_NAME
