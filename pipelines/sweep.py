"""`make sweep`: a Ray Tune sweep of taggers, every trial in MLflow, the best one registered.

    make sweep                                   # seed.yaml with a CUDA GPU, cpu.yaml without
    make sweep EXPERIMENT=experiments/search.yaml
    .venv/bin/python -m pipelines.sweep --config experiments/cpu.yaml \\
        --set sweep.max_concurrent_trials=1

Ray runs locally unless RAY_ADDRESS names a cluster; MLflow writes to the project's sqlite
store unless MLFLOW_TRACKING_URI names another. Run it again after an interruption and the
same sweep resumes (Ray Tune's restore); `--fresh` abandons it and starts anew.

Where things live: the trial trains in pipelines/trial.py; MLflow is written in
pipelines/tracking.py (per epoch, by the Tune callback in pipelines/trial_logger.py); the
winner is registered in pipelines/registration.py. This file only drives.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import ray
from mlflow.entities import Run
from ray import tune
from ray.tune.experiment import Trial

from pipelines.cli import INTERRUPTED_EXIT_CODE, command_parser, fail
from pipelines.confirm import (
    Candidate,
    Confirmed,
    confirmation_markdown,
    confirmation_param_space,
    confirmation_seeds,
    confirmation_tune_config,
    confirmed,
    never_baseline,
    seed_points,
    top_candidates,
)
from pipelines.console import SweepProgress, duration, library_output_to, say
from pipelines.evaluate import Evaluated, evaluate_model
from pipelines.experiment import add_experiment_arguments, load_sweep, sweep_experiment
from pipelines.importance import (
    Importance,
    importance_figures,
    importance_markdown,
    parameter_importance,
)
from pipelines.probe import (
    UnreachableService,
    check_login,
    probe_ray_cluster,
    probe_tracking_server,
)
from pipelines.registration import (
    Registered,
    SweepFailed,
    nothing_to_register,
    register_confirmed,
    register_winner,
    trial_table,
)
from pipelines.search import param_space, tune_config
from pipelines.sweep_clock import SweepClock
from pipelines.sweep_config import SweepConfig
from pipelines.sweep_state import (
    STORAGE_DIR,
    SweepBusy,
    SweepState,
    mark_finished,
    open_sweep_state,
    sole_driver,
    start_confirmation,
    sweep_storage,
)
from pipelines.tracking import (
    CONFIRMATION_ROLE,
    FAILED,
    KILLED,
    ROLE_TAG,
    TRIAL_ROLE,
    SweepRecord,
    compare_runs_url,
    ensure_experiment,
    tracking_uri,
    training_inputs,
    ui_base,
    without_credentials,
)
from pipelines.trial import train_trial, trial_run_config
from pipelines.trial_logger import MlflowTrials, trial_name
from postag import dataset as datasets
from postag.config import ConfigError, RunConfig
from postag.dataset import PreparedDataset
from postag.readers import DataFormatError
from postag.sources import DataSourceError

PROG = "postag sweep"
RESUME_HINT = "run the same command again to resume"


@dataclass(frozen=True)
class Sweep:
    """One sweep as the driver runs it: its config, where its state lives, how to resume."""

    config_path: Path
    values: dict
    run: RunConfig
    sweep: SweepConfig
    tune_storage: str
    state_dir: Path
    # Times where the sweep's time goes (make bench); None in a plain sweep.
    clock: SweepClock | None = None

    @property
    def base(self) -> dict:
        return {k: v for k, v in self.values.items() if k != "sweep"}

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.sweep.name}.log"


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (a job scheduler, `timeout`, `kill`) stops the sweep as Ctrl-C does.

    Tune stops gracefully on SIGINT, saving its state; outside Tune, Ctrl-C raises
    KeyboardInterrupt, which closes the sweep's runs. Set again after ray.init, whose own
    SIGTERM handler would end the process at once.
    """
    previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def trial_resources(sweep: SweepConfig) -> tuple[dict, str]:
    if sweep.gpus_per_trial > 0 and ray.cluster_resources().get("GPU", 0) > 0:
        return {"cpu": 1, "gpu": sweep.gpus_per_trial}, "cuda"
    return {"cpu": sweep.cpus_per_trial}, "cpu"


def run_sweep(
    config_path: Path,
    overrides: list[str],
    storage: str | Path,
    fresh: bool,
    force_best: bool = False,
    verbose: bool = False,
    clock: SweepClock | None = None,
) -> dict:
    """Run (or resume) the sweep to its end: every trial in MLflow, the winner registered."""
    values, run, sweep = load_sweep(config_path, overrides)
    uri = tracking_uri(Path.cwd())
    probe_tracking_server(uri)
    check_login(uri)
    probe_ray_cluster(os.environ.get("RAY_ADDRESS"))
    job = Sweep(config_path, values, run, sweep, *sweep_storage(storage), clock)
    with sole_driver(job.state_dir, sweep), library_output_to(job.log_file, verbose):
        mlflow.set_tracking_uri(uri)
        experiment_id = ensure_experiment()
        prepared = datasets.load(run.data)
        state, resuming = open_sweep_state(
            job.state_dir, job.tune_storage, sweep, experiment_id, fresh, values
        )
        if not resuming:
            state.record().log_data(training_inputs(prepared).values())
        try:
            return run_stages(job, state, resuming, prepared, force_best, verbose)
        except BaseException as error:
            close_after_failure(state, error)
            raise


@dataclass(frozen=True)
class Stage:
    """One Ray Tune experiment of a sweep: the search, or the confirmation of its best."""

    name: str
    tune_dir: str
    trials: int  # how many a complete stage holds
    role: str  # of its runs (ROLE_TAG), the baseline's apart
    is_baseline: Callable[[dict], bool]
    # What a new experiment starts from; a restored one brings its own from Tune's state.
    param_space: dict
    tune_config: tune.TuneConfig


def search_stage(job: Sweep, state: SweepState) -> Stage:
    return Stage(
        "search",
        state.tune_dir,
        job.sweep.expected_trials(),
        TRIAL_ROLE,
        job.sweep.is_baseline,
        param_space(job.sweep),
        tune_config(job.sweep, job.run),
    )


def confirmation_stage(job: Sweep, state: SweepState, chosen: list[Candidate]) -> Stage:
    assert job.sweep.confirm is not None and state.confirm_dir is not None
    seeds = confirmation_seeds(job.sweep.confirm, job.run.train.seed)
    points = seed_points(chosen, seeds)
    return Stage(
        "confirmation",
        state.confirm_dir,
        len(points),
        CONFIRMATION_ROLE,
        never_baseline,
        confirmation_param_space(points),
        confirmation_tune_config(job.sweep, points),
    )


def run_stages(
    job: Sweep,
    state: SweepState,
    resuming: bool,
    prepared: PreparedDataset,
    force_best: bool,
    verbose: bool,
) -> dict:
    """The search, then its confirmation if the sweep asks, then the conclusion; a stage
    interrupted ends the sweep there, and a rerun resumes that stage."""
    if state.confirm_dir is None:
        stage = search_stage(job, state)
        callback = fit_trials(job, state, stage, resuming, prepared, verbose)
        if not settled(stage, callback):
            return interrupted(job, state, stage)
    confirmation = None
    if job.sweep.confirm is not None:
        runs = state.record().trial_runs()
        chosen = top_candidates(runs, stage_trials(state.tune_dir), job.sweep.confirm.top_k)
        if not chosen:
            mark_finished(state, job.state_dir, job.sweep)  # nothing to resume
            raise SweepFailed(nothing_to_register(runs, job.sweep))
        restoring = state.confirm_dir is not None and tune.Tuner.can_restore(state.confirm_dir)
        if not restoring:
            state = start_confirmation(state, job.state_dir, job.sweep)
        stage = confirmation_stage(job, state, chosen)
        callback = fit_trials(job, state, stage, restoring, prepared, verbose)
        if not settled(stage, callback):
            return interrupted(job, state, stage)
        runs = state.record().trial_runs()
        confirmation = confirmed(chosen, runs, stage_trials(stage.tune_dir))
    return conclude(job, state, confirmation, force_best)


def fit_trials(
    job: Sweep,
    state: SweepState,
    stage: Stage,
    resuming: bool,
    prepared: PreparedDataset,
    verbose: bool,
) -> MlflowTrials:
    """Run (or resume) a stage's Tune experiment; the MLflow callback, to settle runs."""
    # "local" when RAY_ADDRESS names no cluster: ray.init would otherwise join the last one
    # `ray start` made on this machine, or wait on it if it is gone.
    address = os.environ.get("RAY_ADDRESS") or "local"
    ray.init(address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=verbose)
    try:
        resources, device = trial_resources(job.sweep)
        make_config = functools.partial(trial_run_config, job.base, job.sweep)
        # with_parameters puts the dataset in Ray's object store once; trials read it there.
        trainable = tune.with_resources(
            tune.with_parameters(
                train_trial,
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
        )
        say_start(job, state, stage, resuming, device, resources)
        tuner = make_tuner(job, state, stage, resuming, trainable, callback, verbose)
        with sigterm_as_ctrl_c():
            tuner.fit()
    finally:
        # A caller in this process (a test, a notebook) must not inherit our Ray instance.
        ray.shutdown()
    return callback


def make_tuner(
    job: Sweep,
    state: SweepState,
    stage: Stage,
    resuming: bool,
    trainable,
    callback,
    verbose: bool,
) -> tune.Tuner:
    if resuming:
        state.record().resume()
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
    if stage.name == "confirmation":
        confirm = job.sweep.confirm
        assert confirm is not None
        say(
            f"sweep '{job.sweep.name}': {verb} the confirmation: the best "
            f"{stage.trials // confirm.seeds} configurations again with {confirm.seeds} new "
            f"seeds each, {stage.trials} trials {limits}"
        )
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


def interrupted(job: Sweep, state: SweepState, stage: Stage) -> dict:
    state.record().stop(KILLED)
    done = sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in stage_trials(stage.tune_dir))
    say(
        f"sweep '{job.sweep.name}' interrupted in its {stage.name} with {done} of "
        f"{stage.trials} trials concluded; {RESUME_HINT}"
    )
    return {"state": asdict(state), "interrupted": True}


def conclude(
    job: Sweep, state: SweepState, confirmation: list[Confirmed] | None, force_best: bool
) -> dict:
    """Register the winner, test it, say what mattered, and close the parent run."""
    record = state.record()
    runs = record.trial_runs()
    try:
        registered = register(job, runs, confirmation, force_best)
    except SweepFailed:
        mark_finished(state, job.state_dir, job.sweep)  # nothing to resume
        raise
    for item in confirmation or []:
        record.log_confirmation(item.candidate.run.info.run_id, item.mean, item.sd, item.runs)
    tested = evaluate_version(job, registered)
    importance, why = parameter_importance(runs, job.sweep)
    finish_record(record, runs, job.sweep, registered, tested, importance, why, confirmation)
    state = mark_finished(state, job.state_dir, job.sweep)
    say_end(job, state, runs, registered, findings(tested, importance, why, confirmation))
    return {
        "state": asdict(state),
        "version": registered.version,
        "registered": registered,
        "confirmation": confirmation,
        "interrupted": False,
    }


def register(
    job: Sweep, runs: list[Run], confirmation: list[Confirmed] | None, force_best: bool
) -> Registered:
    """The search's best run, or with a confirmation stage the best of the configuration
    with the best mean over seeds."""
    source = f"{job.config_path}"
    if confirmation is None:
        return register_winner(runs, job.sweep, source, force_best)
    if not confirmation:
        raise SweepFailed(nothing_to_register(runs, job.sweep))
    best = confirmation[0]
    return register_confirmed(
        best.best_run, best.runs, best.mean, best.sd, job.sweep, source, force_best
    )


def evaluate_version(job: Sweep, registered: Registered) -> Evaluated | None:
    """The new version on the data's test file, logged as an evaluation run nested under its
    trial, so that its registry page shows test accuracy beside validation accuracy."""
    test = datasets.source_files(job.run.data).get("test")
    if test is None:
        return None
    data = job.run.data
    return evaluate_model(registered.version_uri, test, data.format, data.tag_column, None)


def finish_record(
    record: SweepRecord,
    runs: list[Run],
    sweep: SweepConfig,
    registered: Registered,
    tested: Evaluated | None,
    importance: Importance | None,
    why: str,
    confirmation: list[Confirmed] | None,
) -> None:
    """Close the parent run with the trial table, what mattered and the winner's figures."""
    parts = [trial_table(runs), importance_markdown(importance, why)]
    metrics = importance.metrics() if importance else {}
    if confirmation:
        parts.insert(1, confirmation_markdown(confirmation))
        metrics.update(confirmed_val_mean=confirmation[0].mean, confirmed_val_sd=confirmation[0].sd)
    summary = "\n\n".join(parts) + "\n"
    if tested is not None:
        metrics["test_token_accuracy"] = tested.report.token_accuracy
    with tempfile.TemporaryDirectory() as folder:
        figures = importance_figures(runs, sweep, Path(folder)) if importance else []
        record.finish(
            summary, registered.winner, registered.version, registered.reason, metrics, figures
        )


def say_end(
    job: Sweep, state: SweepState, runs: list[Run], registered: Registered, findings: list[str]
) -> None:
    uri = mlflow.get_tracking_uri()
    # The searched trials only: the baseline's own overrides would otherwise be among the
    # parameters that differ, which the compare view plots first.
    run_ids = [run.info.run_id for run in runs if run.data.tags.get(ROLE_TAG) == TRIAL_ROLE]
    say(
        f"\n{trial_table(runs)}\n\n"
        f"sweep '{job.sweep.name}' done: registered version {registered.version} as "
        f"{registered.uri}; {registered.reason}\n"
        + "".join(f"  {line}\n" for line in findings)
        + f"  compare its runs: {compare_runs_url(uri, state.experiment_id, run_ids)}\n"
        f"  then: make evaluate BEST, or make serve to tag over HTTP"
    )


def findings(
    tested: Evaluated | None,
    importance: Importance | None,
    why: str,
    confirmation: list[Confirmed] | None,
) -> list[str]:
    """What the seeds confirmed, the winner's test accuracy and what mattered, a line each."""
    lines = []
    for rank, item in enumerate(confirmation or []):
        lines.append(f"{'confirmed' if rank == 0 else '         '} {item.line()}")
    if tested is not None:
        lines.append(
            f"test accuracy of version {tested.version.version}: "
            f"{100 * tested.report.token_accuracy:.2f}% on {tested.data.name}"
        )
    lines.append(f"what mattered (fANOVA): {importance.line() if importance else why}")
    return lines


def close_after_failure(state: SweepState, error: BaseException) -> None:
    """Leave no run RUNNING after whatever stopped the driver; say so if MLflow is away too."""
    interrupted = isinstance(error, KeyboardInterrupt | SystemExit)
    try:
        state.record().stop(KILLED if interrupted else FAILED, None if interrupted else repr(error))
    except Exception as closing:  # the tracking server may be what failed
        print(
            f"postag sweep: could not close the sweep's MLflow runs ({type(closing).__name__}); "
            "they are closed when the sweep resumes",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    started = time.monotonic()
    try:
        with sigterm_as_ctrl_c():
            config = args.config or say_default_experiment()
            outcome = run_sweep(
                config, args.overrides, args.storage, args.fresh, args.force_best, args.verbose
            )
    except (ConfigError, DataFormatError, DataSourceError, UnreachableService, SweepBusy) as error:
        return fail(PROG, error, 2)
    except SweepFailed as error:
        return fail(PROG, error, 1, kind="failed")
    except KeyboardInterrupt:
        return fail(PROG, RESUME_HINT, INTERRUPTED_EXIT_CODE, kind="interrupted")
    except Exception as error:
        log = write_crash_log(args.storage)
        error = wrapped_by_tune(error)
        why = (
            f"{type(error).__name__}: {error}\nThe traceback is in {log}. The sweep's runs are "
            "closed; once the cause is fixed, the same command resumes the sweep."
        )
        return fail(PROG, why, 1, kind="failed")
    say(f"  ({duration(time.monotonic() - started)} in all)")
    return INTERRUPTED_EXIT_CODE if outcome["interrupted"] else 0


def say_default_experiment() -> Path:
    path, why = sweep_experiment(os.environ.get("RAY_ADDRESS"))
    say(f"sweep: {why}, so {path}")
    return path


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = command_parser(PROG, __doc__)
    add_experiment_arguments(
        parser,
        help="experiment YAML with a sweep section "
        "(default: seed.yaml with a CUDA GPU, cpu.yaml without)",
    )
    parser.add_argument(
        "--storage",
        default=str(STORAGE_DIR),
        help="where Ray Tune keeps experiments and checkpoints: a folder, or a URI every "
        "node of a cluster reaches (s3://bucket/path)",
    )
    parser.add_argument("--fresh", action="store_true", help="start anew, do not resume")
    parser.add_argument(
        "--force-best",
        action="store_true",
        help="point the `best` alias at this sweep's winner even if it does not beat the "
        "current best, or was validated on other data",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="Ray's, Tune's and MLflow's output on the console"
    )
    return parser.parse_args(argv)


def wrapped_by_tune(error: BaseException) -> BaseException:
    """The exception a user should read: Tune re-raises one from a callback (the tracking
    server gone, say) as a TuneError whose message is the whole traceback."""
    while isinstance(error, tune.TuneError) and error.__context__ is not None:
        error = error.__context__
    return error


def write_crash_log(storage: str) -> Path:
    """The current exception's traceback, in a file beside the sweep states."""
    _, state_dir = sweep_storage(storage)
    path = state_dir / "driver-error.log"
    path.write_text(traceback.format_exc())
    return path


if __name__ == "__main__":
    sys.exit(main())
