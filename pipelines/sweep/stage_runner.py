"""How one stage of a sweep runs: a `Stage` is one Ray Tune experiment, run (or resumed
from Tune's saved state) to its end on a local Ray runtime or a cluster. Its trials' MLflow
runs are written by the callback in pipelines/sweep/trial_logger.py and closed here once Tune
has concluded them. Which stages a sweep has, and in what order, is pipelines/sweep/stages.py.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import mlflow
import ray
import ray._private.services as ray_services
import ray._private.utils as ray_utils
import ray._private.worker as ray_worker
from ray import tune
from ray.tune.experiment import Trial

from pipelines.console import say
from pipelines.sweep.config import SweepConfig
from pipelines.sweep.job import Sweep
from pipelines.sweep.life import SweepLife
from pipelines.sweep.progress import SweepProgress
from pipelines.sweep.state import SweepState
from pipelines.sweep.stop_signals import fit_stoppably, take_stop_signals
from pipelines.sweep.trial import train_trial
from pipelines.sweep.trial_logger import MlflowTrials, trial_name
from pipelines.tracking import ui_base, without_credentials
from postag.dataset import PreparedDataset


@contextlib.contextmanager
def ray_processes_in_groups_of_their_own() -> Iterator[None]:
    """The local Ray runtime that ray.init starts, each process in a process group of its
    own, so that a stop signal sent to the driver's whole group (`timeout`, Slurm, systemd,
    a container stop) reaches the driver alone, and it stops Tune as Ctrl-C does.

    In the driver's group, Ray's processes died at once on such a SIGTERM; the driver then
    waited 60 s for them and left runs RUNNING. Ray does the same on Windows, where it starts
    them with CREATE_NEW_PROCESS_GROUP; on Linux they still end with the driver, through the
    kernel's parent-death signal (Ray's fate sharing). Ray 2.60 starts every one of them
    through `services.ConsolePopen`, replaced here for the call: no option of ray.init does
    it.
    """
    if not ray_utils.detect_fate_sharing_support():
        yield  # without fate sharing, Ray reaps its processes by their group: leave them
        return
    original = ray_services.ConsolePopen

    class InAGroupOfItsOwn(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "process_group": 0})

    ray_services.ConsolePopen = InAGroupOfItsOwn
    try:
        yield
    finally:
        ray_services.ConsolePopen = original


@contextlib.contextmanager
def one_ray_for_the_stages() -> Iterator[None]:
    """The Ray runtime that the first Tune stage inside starts (or the cluster it joins),
    kept for the stages after it and shut down when the block ends. When each stage started
    its own, a sweep with a confirmation started Ray twice: 5 CPU-s and 4.5 s each time."""
    try:
        yield
    finally:
        # A caller in this process (a test, a notebook) must not inherit our Ray instance.
        shutdown_ray()


class _SignalsTakenBack:
    """Ray's core worker, whose driver shutdown gives the stop signals back to the driver.

    That shutdown sets SIGTERM to the kernel's default, in C, behind Python's back (Ray
    2.60), and Ray then takes about a second to stop its processes: a SIGTERM in that
    second ended the driver on the spot (exit 143, no line). No option of Ray's avoids it."""

    def __init__(self, core_worker):
        self._core_worker = core_worker

    def __getattr__(self, name):
        return getattr(self._core_worker, name)

    def shutdown_driver(self) -> None:
        self._core_worker.shutdown_driver()
        take_stop_signals()


def shutdown_ray() -> None:
    """ray.shutdown(), with the driver's stop signals its own again as soon as Ray lets go."""
    worker = ray_worker.global_worker
    core_worker = getattr(worker, "core_worker", None)
    # Signal handlers are the main thread's to set; a driver's core worker is the one reset.
    if core_worker is not None and threading.current_thread() is threading.main_thread():
        worker.core_worker = _SignalsTakenBack(core_worker)
    ray.shutdown()


def start_ray(verbose: bool) -> None:
    """Start Ray, or join the cluster RAY_ADDRESS names; nothing if this process has."""
    if ray.is_initialized():
        return
    # "local" when RAY_ADDRESS names no cluster: ray.init would otherwise join the last one
    # `ray start` made on this machine, or wait on it if it is gone.
    address = os.environ.get("RAY_ADDRESS") or "local"
    with ray_processes_in_groups_of_their_own():
        ray.init(address, include_dashboard=False, log_to_driver=verbose)
    take_stop_signals()  # ray.init's SIGTERM handler would end the process at once


def trial_resources(sweep: SweepConfig) -> tuple[dict, str]:
    if sweep.gpus_per_trial > 0 and ray.cluster_resources().get("GPU", 0) > 0:
        return {"cpu": 1, "gpu": sweep.gpus_per_trial}, "cuda"
    return {"cpu": sweep.cpus_per_trial}, "cpu"


@dataclass(frozen=True)
class Stage:
    """One Ray Tune experiment of a sweep (pipelines/sweep/stages.py makes each)."""

    name: str
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


def run_stage(
    life: SweepLife, stage: Stage, resuming: bool, prepared: PreparedDataset, verbose: bool
) -> bool:
    """Run (or resume) a Tune stage; whether all of its trials concluded and no stop came
    (a stop that came as its last trial concluded still stops the sweep after the stage)."""
    callback, stopped = fit_trials(life.job, life.state, stage, resuming, prepared, verbose)
    return settled(stage, callback) and not stopped


def fit_trials(
    job: Sweep,
    state: SweepState,
    stage: Stage,
    resuming: bool,
    prepared: PreparedDataset,
    verbose: bool,
) -> tuple[MlflowTrials, bool]:
    """Run (or resume) a stage's Tune experiment; the MLflow callback, to settle runs, and
    whether a stop signal came while it ran."""
    start_ray(verbose)
    resources, device = trial_resources(job.sweep)
    make_config = job.trial_configs
    # with_parameters puts the dataset in Ray's object store once; trials read it there.
    trainable = tune.with_resources(
        tune.with_parameters(
            job.trainable or train_trial,
            dataset=prepared,
            dataset_digest=prepared.content_digest(),
            make_config=make_config,
            logical_gpus=job.sweep.logical_gpus,
        ),
        resources,
    )
    callback = MlflowTrials(
        state.experiment_id,
        state.parent_run_id,
        prepared.directory,
        # The driver's view of a trial's config; the trial reports the device it found.
        functools.partial(make_config, device=device),
        stage.is_baseline,
        stage.role,
        new_experiment=not resuming,
    )
    say_start(job, state, stage, resuming, device, resources)
    tuner = make_tuner(job, stage, resuming, trainable, callback, verbose)
    return callback, fit_stoppably(tuner)


def make_tuner(
    job: Sweep, stage: Stage, resuming: bool, trainable, callback, verbose: bool
) -> tune.Tuner:
    if resuming:
        # The callbacks come back from Tune's saved state, with the rest of the run config.
        return tune.Tuner.restore(stage.tune_dir, trainable, resume_errored=False)
    callbacks = [callback, SweepProgress(stage.trials, stage.is_baseline, trial_name)]
    if job.clock is not None:
        callbacks = [job.clock.opening, *callbacks, job.clock.closing]
    return tune.Tuner(
        trainable,
        param_space=stage.param_space,
        tune_config=stage.tune_config,
        run_config=tune.RunConfig(
            name=stage.tune_dir.rpartition("/")[2],
            storage_path=job.tune_storage,
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=job.sweep.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=1 if verbose else 0,
        ),
    )


def say_start(
    job: Sweep, state: SweepState, stage: Stage, resuming: bool, device: str, resources
) -> None:
    verb = "resuming" if resuming else "starting"
    limits = f"on {device} ({resources} each, at most {job.sweep.max_concurrent_trials} at once)"
    if stage.headline is not None:
        say(f"sweep '{job.sweep.name}': {verb} {stage.headline}, {stage.trials} trials {limits}")
        return
    uri = mlflow.get_tracking_uri()
    say(
        f"sweep '{job.sweep.name}' ({job.config_path}): {verb} {stage.trials} trials {limits}\n"
        f"  MLflow {without_credentials(uri)}, parent run {state.parent_run_id}; "
        f"UI {ui_base(uri)}{' (make ui)' if ui_base(uri) != uri else ''}\n"
        f"  Ray, Tune and MLflow messages: {job.log_file}"
    )


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
