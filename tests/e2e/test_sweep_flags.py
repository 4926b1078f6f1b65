"""The sweep's command-line flags, each through `python -m pipelines.sweep` as `make sweep
SWEEP_ARGS=...` passes them: a refused configuration starts nothing; `--verbose` puts the
libraries' messages on the console; `--fresh` abandons an unfinished sweep and starts anew;
`--force-best` moves `best` to a weaker winner."""

from __future__ import annotations

import copy
import json

import mlflow

from postag.serving.names import REGISTERED_MODEL
from postag.serving.registry import BEST_ALIAS
from tests.helpers import SWEEP_LIMIT_SECONDS, TINY_SWEEP, write_sweep

SWEEP = copy.deepcopy(TINY_SWEEP)
SWEEP["train"].update(epochs=1, max_batches_per_epoch=15)
SWEEP["sweep"].update(name="flags", space={"train.lr": [0.02]}, max_concurrent_trials=1)
SWEEP["sweep"]["baseline"].update({"train.max_batches_per_epoch": 2})
# MLflow's own line on registering, which goes to the sweep's log file unless --verbose.
MLFLOW_LINE = "Created version '1' of model 'postag-tagger'"


def test_a_refused_configuration_trains_nothing_and_starts_no_ray(
    ewt_slice, tmp_path, sweep_driver, sqlite_store
):
    config = write_sweep(tmp_path, ewt_slice, SWEEP)
    uri = sqlite_store(tmp_path)
    env = {"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"}
    driver = sweep_driver(config, tmp_path, env, "--set", "model.hidden_siz=32", forked=False)
    assert driver.wait(timeout=SWEEP_LIMIT_SECONDS) == 2
    console = (tmp_path / "driver.log").read_text()
    assert "hidden_siz" in console and "Traceback" not in console
    # Nothing started: no Ray session, no Tune experiment, no sweep state, no run.
    assert "Ray" not in console
    assert not (tmp_path / "tune").exists() or not any((tmp_path / "tune").iterdir())
    experiment = mlflow.MlflowClient(uri).get_experiment_by_name("postag")
    assert experiment is None or not mlflow.MlflowClient(uri).search_runs(
        [experiment.experiment_id]
    )


def test_verbose_fresh_and_force_best_through_the_command_line(
    ewt_slice, tmp_path, sweep_driver, sqlite_store
):
    config = write_sweep(tmp_path, ewt_slice, SWEEP)
    uri = sqlite_store(tmp_path)
    env = {"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"}
    client = mlflow.MlflowClient(uri)
    log = tmp_path / "driver.log"

    # The command itself, as `make sweep` runs it (the other scenarios fork their drivers).
    first = sweep_driver(config, tmp_path, env, "--verbose", forked=False)
    assert first.wait(timeout=SWEEP_LIMIT_SECONDS) == 0, log.read_text()
    verbose = log.read_text()
    assert MLFLOW_LINE in verbose and "registered version 1" in verbose
    state_file = tmp_path / "tune" / "flags.json"
    first_parent = json.loads(state_file.read_text())["parent_run_id"]

    # As if the sweep had been interrupted in its search: --fresh abandons it and starts
    # anew, with a weaker learning rate that --force-best promotes all the same.
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "phase": "searching", "halted": "interrupted"}))
    weaker = ("--set", "sweep.space.train.lr=[0.00001]", "--fresh", "--force-best")
    second = sweep_driver(config, tmp_path, env, *weaker, forked=False)
    assert second.wait(timeout=SWEEP_LIMIT_SECONDS) == 0, log.read_text()
    console = log.read_text().removeprefix(verbose)
    assert "the unfinished sweep is abandoned (--fresh)" in console
    assert MLFLOW_LINE.replace("'1'", "'2'") not in console  # not --verbose: in the log file
    assert json.loads(state_file.read_text())["parent_run_id"] != first_parent
    assert "registered version 2" in console and "as forced" in console
    best = client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS)
    first_best = float(client.get_model_version(REGISTERED_MODEL, "1").tags["val_accuracy"])
    assert str(best.version) == "2" and float(best.tags["val_accuracy"]) < first_best
    assert best.tags["forced_best"] == "true"
