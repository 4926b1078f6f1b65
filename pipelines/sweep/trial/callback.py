"""The Ray Tune callback that records every trial in MLflow: the only per-epoch writer.

Ray's MLflowLoggerCallback is close but cannot find a trial's run again after a restore (it
would duplicate runs), log the trial's model, or mark the deep baseline, hence this one.
It turns Tune's hooks into calls of `TrialRuns` (pipelines/sweep/trial/records.py), where the
MLflow side lives. A trial's config reaches its run from the trial itself: with its first
report (params, config.json) and in its checkpoint (the logged model).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from ray.tune import Callback
from ray.tune.experiment import Trial

from pipelines.console import say
from pipelines.disk import DiskFull, full_text
from pipelines.names import (
    BASELINE_ROLE,
    DAMAGED_CHECKPOINT_TAG,
    FAILED,
    FINISHED,
    PID_TAG,
    TRIAL_ROLE,
)
from pipelines.sweep.trial.records import ModelFiles, TrialRuns
from pipelines.sweep.trial.trainable import (
    DAMAGED_CHECKPOINT_KEY,
    DEVICE_KEY,
    NODE_KEY,
    PID_KEY,
    RESUMED_KEY,
    RUN_CONFIG_KEY,
    TrialConfigs,
    final_figure_keys,
    load_trial_checkpoint,
    trial_name,
)
from pipelines.tracking import DataInput, training_inputs
from postag.config import to_dict
from postag.data.dataset import PreparedDataset, load_prepared

# The run status a concluded trial ends in.
CLOSED_STATUS = {Trial.TERMINATED: FINISHED, Trial.ERROR: FAILED}


def error_text(trial: Trial) -> str:
    """The trial's error trace, read from the driver's copy.

    Tune writes it beside the trial's local results and copies it to storage later;
    trial.get_error() reads storage, so on a busy machine it can come back empty.
    """
    local = trial.error_file
    if local is not None and Path(local).is_file():
        return Path(local).read_text()
    return str(trial.get_error() or "trial failed (no error text recorded)")


def stop_if_disk_full(trial: Trial, error: str) -> None:
    """A trial that failed for want of space stops the sweep: every trial after it would
    fail the same way, and retrying would spend its failures. The trial is left to resume
    from its last checkpoint once space is freed."""
    if why := full_text(error):
        raise DiskFull(trial.path or trial.local_path or "the trial's storage", why)


class MlflowTrials(Callback):
    """One nested MLflow run per Tune trial under the sweep's parent run."""

    # Ray pickles callbacks into the experiment state and restores them with it: keep only
    # plain values here and open the MLflow records and the dataset lazily. The client uses
    # the process's tracking URI, so the URI (which may carry credentials) is never pickled.
    def __init__(
        self,
        experiment_id: str,
        parent_run_id: str,
        dataset_dir: Path,
        configs: TrialConfigs,
        device: str,
        is_baseline: Callable[[dict], bool],
        role: str = TRIAL_ROLE,
        new_experiment: bool = False,
    ):
        """role: what its runs are (ROLE_TAG), the baseline's apart; new_experiment: the
        callback of a Tune experiment started now, not restored."""
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.dataset_dir = dataset_dir
        # What a trial that never reported would have resolved (see `fail`).
        self.configs = configs
        self.device = device
        self.is_baseline = is_baseline
        self.role = role
        self.run_ids: dict[str, str] = {}
        # Whether a trial this callback has not seen may already have a run: not in a Tune
        # experiment it starts (`new_experiment`); always once Tune restores it.
        self.runs_may_exist = not new_experiment

    @cached_property
    def records(self) -> TrialRuns:
        return TrialRuns(self.experiment_id, self.parent_run_id)

    @cached_property
    def dataset(self) -> PreparedDataset:
        return load_prepared(self.dataset_dir)

    @cached_property
    def inputs(self) -> dict[str, DataInput]:
        """The sweep's train and dev files as MLflow inputs, worked out once."""
        return training_inputs(self.dataset)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for cached in ("records", "dataset", "inputs"):
            state.pop(cached, None)
        # A snapshot can lag what was logged before a hard kill: after a restore, runs and
        # their logged epochs are read again from MLflow, the record that cannot lag.
        state["run_ids"] = {}
        state["runs_may_exist"] = True  # what is pickled is what a restore brings back
        return state

    # Tune hooks ------------------------------------------------------------------------

    def on_trial_start(self, iteration, trials, trial: Trial, **info):
        self.run_id(trial)

    def on_trial_result(self, iteration, trials, trial: Trial, result: dict, **info):
        run_id = self.run_id(trial)
        # Where the epoch ran is tagged with the epoch, so a reader who sees the epoch also
        # sees its node and process (an operator acting on a running trial).
        where = {
            NODE_KEY: result.get(NODE_KEY),
            DEVICE_KEY: result.get(DEVICE_KEY),
            PID_TAG: result.get(PID_KEY),
            RESUMED_KEY: result.get(RESUMED_KEY),
        }
        tags = {k: str(v) for k, v in where.items() if v}
        if damaged := result.get(DAMAGED_CHECKPOINT_KEY):
            tags[DAMAGED_CHECKPOINT_TAG] = damaged
            name = trial_name(trial.config, self.is_baseline(trial.config))
            say(
                f"trial {name}: its last checkpoint could not be read ({damaged}); "
                "it trained again from epoch 1"
            )
        if RUN_CONFIG_KEY in result:
            self.records.fill(run_id, result[RUN_CONFIG_KEY], self.dataset, self.inputs.values())
        # A trial resumed from a checkpoint repeats epochs the run already holds.
        self.records.log_epochs(run_id, [result], int(result["timestamp"] * 1000), tags)

    def on_trial_complete(self, iteration, trials, trial: Trial, **info):
        self.close_run(trial)

    def on_trial_recover(self, iteration, trials, trial: Trial, **info):
        error = error_text(trial)
        stop_if_disk_full(trial, error)
        self.records.note_retry(self.run_id(trial), error)

    def on_trial_error(self, iteration, trials, trial: Trial, **info):
        error = error_text(trial)
        stop_if_disk_full(trial, error)
        self.fail(trial, error)

    # Closing runs ----------------------------------------------------------------------

    def close_run(self, trial: Trial) -> None:
        """Close a completed trial's run: any epoch MLflow missed, best figures, the model.

        The trial's last checkpoint holds its whole history and the config it resolved, so
        epochs and a config that went unlogged (MLflow unreachable, the driver restarted)
        are back-filled from it.
        """
        run_id = self.run_id(trial)
        result = trial.last_result or {}
        model = None
        if trial.checkpoint is not None:
            state, config = load_trial_checkpoint(trial.checkpoint)
            self.records.fill(run_id, config, self.dataset, self.inputs.values())
            self.records.log_epochs(run_id, state.history, int(result.get("timestamp", 0) * 1000))
            model = ModelFiles(state.best_state, config, self.dataset)
        self.records.close_with_model(run_id, self.best_figures(result), model, self.inputs["dev"])

    def best_figures(self, result: dict) -> dict[str, float]:
        """A trial's last result as its run closes with it: its best epoch, and its figure
        on each objective (a cost measured on its final model); none if it never scored."""
        settings = self.configs.settings
        if settings.primary.best_metric not in result:
            return {}
        keys = final_figure_keys(settings)
        # A figure never measured (the baseline's costs) is NaN in the result, and left out.
        return {key: result[key] for key in keys if not math.isnan(result.get(key, math.nan))}

    def fail(self, trial: Trial, error: str) -> None:
        """Close a failed trial's run. A trial that failed before its first report never
        sent the config it resolved: the driver resolves it here, as the trial did, so
        that the run still says what it tried; it has no model to disagree with."""
        run_id = self.run_id(trial)
        if run_id not in self.records.configured:
            config = to_dict(self.configs.resolve(trial.config, self.device))
            self.records.fill(run_id, config, self.dataset, self.inputs.values())
        self.records.fail(run_id, error)

    def settle(self, trials: list[Trial]) -> int:
        """Close the run of every concluded trial whose run is still open; how many.

        A trial that concluded while MLflow could not be reached, or just before the driver
        died, is not run again on resume, so no Tune hook would ever close its run.
        """
        settled = 0
        for trial in trials:
            closed = CLOSED_STATUS.get(trial.status)
            if closed is None or self.run_ids.get(trial.trial_id) in self.records.closed:
                continue
            found = self.records.find(trial.trial_id)
            if found is not None and found.info.status == closed:
                continue
            if trial.status == Trial.TERMINATED:
                self.close_run(trial)
            else:
                self.fail(trial, error_text(trial))
            settled += 1
        return settled

    # Runs ------------------------------------------------------------------------------

    def run_id(self, trial: Trial) -> str:
        """The trial's run: found again by its trial-id tag after a restore, else created."""
        if trial.trial_id not in self.run_ids:
            # A search MLflow answers more slowly the more runs it holds: skipped in a
            # Tune experiment this driver started, where a trial it has not seen is new.
            found = self.records.find(trial.trial_id) if self.runs_may_exist else None
            if found is None:
                self.run_ids[trial.trial_id] = self._create_run(trial)
            else:
                self.run_ids[trial.trial_id] = self.records.reopen(found)
        return self.run_ids[trial.trial_id]

    def _create_run(self, trial: Trial) -> str:
        baseline = self.is_baseline(trial.config)
        return self.records.create(
            trial.trial_id,
            trial_name(trial.config, baseline),
            BASELINE_ROLE if baseline else self.role,
        )
