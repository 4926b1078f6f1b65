"""When the MLflow callback must look for a trial's run before making one."""

from __future__ import annotations

import pickle
from pathlib import Path

from pipelines.sweep.trial.callback import MlflowTrials


def test_only_a_restored_callback_looks_for_runs_of_trials_it_has_not_seen():
    callback = MlflowTrials("1", "parent", Path("data"), None, "cpu", bool, new_experiment=True)
    # A Tune experiment it starts: a trial new to it is new, and needs no search in MLflow.
    assert not callback.runs_may_exist
    # Tune restores callbacks from their pickled state: the driver before may have made
    # runs for trials this one never saw, so it finds them again rather than make them twice.
    restored = pickle.loads(pickle.dumps(callback))
    assert restored.runs_may_exist and restored.run_ids == {}
    assert MlflowTrials("1", "parent", Path("data"), None, "cpu", bool).runs_may_exist
