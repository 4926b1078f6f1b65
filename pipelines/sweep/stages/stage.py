"""One stage of a sweep: a `Stage` is one Ray Tune experiment (the search, or the
confirmation), and `StageRunner` runs it, or resumes it from Tune's saved state, to its end
on the sweep's Ray runtime (pipelines/sweep/lifecycle/ray_runtime.py). Its trials' MLflow runs are
written by the callback in pipelines/sweep/trial/callback.py and closed here once Tune has
concluded them. Which stages a sweep has, and in what order, is the driver's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import mlflow
import ray
from ray import tune
from ray.tune import Callback
from ray.tune.experiment import Trial

from pipelines.console import say
from pipelines.sweep.lifecycle.life import SweepLife
from pipelines.sweep.lifecycle.ray_runtime import start_ray
from pipelines.sweep.lifecycle.signals import fit_stoppably
from pipelines.sweep.lifecycle.state import SweepState
from pipelines.sweep.setup.job import SweepJob
from pipelines.sweep.setup.settings import SweepSettings
from pipelines.sweep.trial.callback import MlflowTrials
from pipelines.sweep.trial.progress import SweepProgress
from pipelines.sweep.trial.trainable import TrialConfigs, train_trial, trial_name
from pipelines.tracking import experiment_url, ui_base, without_credentials
from postag.data.dataset import PreparedDataset


def trial_resources(sweep: SweepSettings) -> tuple[dict, str]:
    """Ray's resources for each trial, and the device they give it (a logical GPU's trial
    trains on its CPU)."""
    if sweep.gpus_per_trial > 0 and ray.cluster_resources().get("GPU", 0) > 0:
        return {"cpu": 1, "gpu": sweep.gpus_per_trial}, "cpu" if sweep.logical_gpus else "cuda"
    return {"cpu": sweep.cpus_per_trial}, "cpu"


@dataclass(frozen=True)
class Stage:
    """One Ray Tune experiment of a sweep (search.py and confirmation.py make theirs)."""

    name: str
    # The sweep's phase while it runs (pipelines/sweep/lifecycle/state.py), saved for a rerun.
    phase: str
    tune_dir: str
    trials: int  # how many a complete stage holds
    role: str  # of its runs (ROLE_TAG), the baseline's apart
    is_baseline: Callable[[dict], bool]
    # What a new experiment starts from; a restored one brings its own from Tune's state.
    param_space: dict
    tune_config: tune.TuneConfig
    # What the console says it starts, for a stage after the search (which says where the
    # sweep's runs and messages go).
    headline: str | None = None


@dataclass(frozen=True)
class StageRunner:
    """How a sweep's stages run: on the prepared data, each trial in the trainable of
    pipelines/sweep/trial/trainable.py, its MLflow run written by the sweep's callback."""

    prepared: PreparedDataset
    verbose: bool = False

    def run(self, life: SweepLife, stage: Stage, then: str) -> bool:
        """Run `stage` if the sweep is in its phase, or resume it from Tune's saved state,
        and move the sweep on to phase `then`; False if a stop came before all of its trials
        concluded (or as its last one did). A stage the sweep has passed is left as it is."""
        if life.phase != stage.phase:
            return True
        if not self.fit(life, stage, resuming=tune.Tuner.can_restore(stage.tune_dir)):
            return False
        life.enter(then)
        return True

    def fit(self, life: SweepLife, stage: Stage, resuming: bool) -> bool:
        """Run (or resume) a Tune stage; whether all of its trials concluded and no stop came
        (a stop that came as its last trial concluded still stops the sweep after it)."""
        job = life.job
        start_ray(self.verbose)
        resources, device = trial_resources(job.sweep)
        configs = TrialConfigs(job.base, job.sweep)
        callback = MlflowTrials(
            life.state.experiment_id,
            life.state.parent_run_id,
            self.prepared.directory,
            configs,
            device,
            stage.is_baseline,
            stage.role,
            new_experiment=not resuming,
        )
        say_start(job, life.state, stage, resuming, device, resources)
        tuner = self.tuner(job, stage, resuming, resources, configs, callback)
        stopped = fit_stoppably(tuner)
        return settled(stage, callback) and not stopped

    def tuner(
        self,
        job: SweepJob,
        stage: Stage,
        resuming: bool,
        resources: dict,
        configs: TrialConfigs,
        callback: Callback,
    ) -> tune.Tuner:
        # with_parameters puts the dataset in Ray's object store once; trials read it there.
        trainable = tune.with_resources(
            tune.with_parameters(
                self.trainable(),
                dataset=self.prepared,
                dataset_digest=self.prepared.content_digest(),
                configs=configs,
                logical_gpus=job.sweep.logical_gpus,
            ),
            resources,
        )
        if resuming:
            # The callbacks come back from Tune's saved state, with the rest of the run config.
            return tune.Tuner.restore(stage.tune_dir, trainable, resume_errored=False)
        progress = SweepProgress(stage.trials, stage.is_baseline, trial_name, job.sweep.primary)
        return tune.Tuner(
            trainable,
            param_space=stage.param_space,
            tune_config=stage.tune_config,
            run_config=tune.RunConfig(
                name=stage.tune_dir.rpartition("/")[2],
                storage_path=job.tune_storage,
                callbacks=self.callbacks(callback, progress),
                failure_config=tune.FailureConfig(max_failures=job.sweep.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                verbose=1 if self.verbose else 0,
            ),
        )

    def trainable(self) -> Callable:
        """The function each trial trains in."""
        return train_trial

    def callbacks(self, records: Callback, progress: Callback) -> list[Callback]:
        """Tune's callbacks of a new stage: its MLflow records, then its console lines."""
        return [records, progress]


def say_start(
    job: SweepJob, state: SweepState, stage: Stage, resuming: bool, device: str, resources
) -> None:
    verb = "resuming" if resuming else "starting"
    limits = f"on {device} ({resources} each, at most {job.sweep.max_concurrent_trials} at once)"
    if stage.headline is not None:
        say(f"sweep '{job.sweep.name}': {verb} {stage.headline}, {trials(stage)} {limits}")
        return
    uri = mlflow.get_tracking_uri()
    say(
        f"sweep '{job.sweep.name}' ({job.config_path}): {verb} {trials(stage)} {limits}\n"
        f"  MLflow {without_credentials(uri)}, parent run {state.parent_run_id}; "
        f"UI {experiment_url(uri, state.experiment_id)}"
        f"{' (make ui)' if ui_base(uri) != uri else ''}\n"
        f"  Ray, Tune and MLflow messages: {job.log_file}"
    )


def trials(stage: Stage) -> str:
    return f"{stage.trials} trial{'s' if stage.trials != 1 else ''}"


def stage_trials(tune_dir: str) -> list[Trial]:
    """Every trial of a saved Tune experiment, read from disk."""
    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it warns of every trial without results yet
    try:
        return tune.ExperimentAnalysis(tune_dir).trials
    finally:
        quiet.setLevel(level)


def settled(stage: Stage, callback: MlflowTrials) -> bool:
    """Close the run of every trial of the stage that is TERMINATED or ERROR; whether all
    of its trials are.

    Read from disk: after Ctrl-C, the ResultGrid that fit() returns counts trials that never
    started as concluded.
    """
    concluded = [
        trial
        for trial in stage_trials(stage.tune_dir)
        if trial.status in (Trial.TERMINATED, Trial.ERROR)
    ]
    callback.settle(concluded)
    return len(concluded) >= stage.trials
