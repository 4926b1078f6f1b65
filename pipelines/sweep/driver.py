"""`make sweep`: a Ray Tune sweep of taggers, every trial in MLflow, the best one registered.

    make sweep                                   # seed.yaml with a CUDA GPU, cpu.yaml without
    make sweep EXPERIMENT=experiments/search.yaml
    .venv/bin/python -m pipelines.sweep --config experiments/cpu.yaml \\
        --set sweep.max_concurrent_trials=1

Ray runs locally unless RAY_ADDRESS names a cluster; MLflow writes to the project's sqlite
store unless MLFLOW_TRACKING_URI names another. Run it again after an interruption and the
same sweep resumes (Ray Tune's restore); `--fresh` abandons it and starts anew.
"""

# This module opens the sweep, runs its stages in their order (the search, the
# confirmation if the sweep asks, the conclusion) and answers; pipelines/sweep/__init__.py
# maps the rest.

from __future__ import annotations

import argparse
import contextlib
import os
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import mlflow
from ray import tune
from ray.tune.experiment import Trial

from pipelines.cli import INTERRUPTED_EXIT_CODE, command_parser, fail
from pipelines.console import QUIET_ENVIRONMENT, duration, environment, library_output_to, say
from pipelines.disk import disk_full
from pipelines.experiment import add_experiment_arguments
from pipelines.servers.probe import (
    UnreachableService,
    check_login,
    probe_ray_cluster,
    probe_tracking_server,
)
from pipelines.sweep.end.conclusion import conclude, say_again
from pipelines.sweep.lifecycle.life import StoppedWhenDone, SweepLife, SweepUpToDate
from pipelines.sweep.lifecycle.ray_runtime import one_ray_for_the_stages
from pipelines.sweep.lifecycle.signals import stop_signals_as_ctrl_c
from pipelines.sweep.lifecycle.state import RESUME_HINT, SweepFailed, SweepPhase
from pipelines.sweep.setup.job import (
    STORAGE_DIR,
    SweepBusy,
    SweepJob,
    add_warm_start_argument,
    load_sweep,
    sweep_experiment,
    sweep_storage,
    warm_start_overrides,
)
from pipelines.sweep.stages.confirmation import (
    best_of_the_search,
    confirmation_stage,
    confirmed,
    seeds_of_the_search,
)
from pipelines.sweep.stages.search import search_stages
from pipelines.sweep.stages.stage import Stage, StageRunner, stage_trials
from pipelines.tracking import (
    ensure_experiment,
    sqlite_database,
    tracking_uri,
    training_inputs,
    without_credentials,
)
from postag.config import ConfigError
from postag.data import dataset as datasets
from postag.data.dataset import PreparedDataset
from postag.data.readers import DataFormatError
from postag.data.sources import DataSourceError

PROG = "postag sweep"


def run_sweep(
    config_path: Path,
    overrides: list[str],
    storage: str | Path,
    fresh: bool,
    force_best: bool = False,
    verbose: bool = False,
) -> dict:
    """Run (or resume) the sweep to its end: every trial in MLflow, the winner registered.
    A sweep that finished with this very file is up to date: its answer is said again from
    its record, and nothing is trained or written. A stop that comes once the sweep has
    finished is a `StoppedWhenDone`, not an interruption."""
    life = None
    try:
        with open_sweep(config_path, overrides, storage, fresh, verbose) as (life, prepared):
            return run_stages(life, StageRunner(prepared, verbose), force_best)
    except SweepUpToDate as finished:
        with environment(QUIET_ENVIRONMENT):  # no download bar amid its lines
            say_again(finished.state, finished.sweep)
        return {"state": asdict(finished.state), "interrupted": False, "up_to_date": True}
    except KeyboardInterrupt as stop:
        # Ray's shutdown, after the sweep's runs were closed, can take the stop too.
        if life is not None and life.done:
            raise life.stopped_when_done() from stop
        raise


@contextlib.contextmanager
def open_sweep(
    config_path: Path, overrides: list[str], storage: str | Path, fresh: bool, verbose: bool
) -> Iterator[tuple[SweepLife, PreparedDataset]]:
    """The sweep an experiment file defines, opened: its services checked, its lock held,
    its data prepared, its life resumed or begun; with the data its trials train on."""
    values, run, sweep = load_sweep(config_path, overrides)
    uri = tracking_uri(Path.cwd())
    probe_tracking_server(uri)
    check_login(uri, sweep.experiment)
    probe_ray_cluster(os.environ.get("RAY_ADDRESS"))
    job = SweepJob(config_path, values, run, sweep, *sweep_storage(storage))
    with job.lock(), library_output_to(job.log_file, verbose):
        mlflow.set_tracking_uri(uri)
        experiment_id = ensure_experiment(sweep.experiment)
        prepared = datasets.load(run.data)
        # Ray, once a Tune stage starts it, lives on through the conclusion and is shut down
        # after the sweep's runs are closed: its shutdown takes about a second, in which a
        # stop must find nothing left open (ray_runtime.one_ray_for_the_stages).
        with one_ray_for_the_stages(), SweepLife.open(job, experiment_id, fresh) as life:
            if not life.resuming:
                life.log_data(training_inputs(prepared).values())
            yield life, prepared


def run_stages(life: SweepLife, runner: StageRunner, force_best: bool) -> dict:
    """The search, then its confirmation if the sweep asks, then the conclusion, each from
    the phase the sweep is in; a Tune stage interrupted ends the sweep there, and the same
    command resumes it. A search over seeds is its own confirmation.

    A stage after these is made in a module of pipelines/sweep/stages/ and given its place
    here."""
    job = life.job
    if life.phase == SweepPhase.REGISTERING and life.resuming:
        say(f"sweep '{job.sweep.name}': every trial concluded; resuming at registration")
    stages = []
    for stage, then in search_stages(life, runner.prepared, after=next_phase(job)):
        stages.append(stage)
        if not runner.run(life, stage, then=then):
            return interrupted(life, stage)
    confirmation = None
    if job.sweep.confirm is not None:
        chosen = best_of_the_search(life)
        stages.append(confirmation_stage(job, life.state, chosen))
        if not runner.run(life, stages[-1], then=SweepPhase.REGISTERING):
            return interrupted(life, stages[-1])
        trials = stage_trials(stages[-1].tune_dir)
        confirmation = confirmed(chosen, life.trial_runs(), trials, job.sweep.primary)
    elif job.sweep.searches_seeds():
        trials = stage_trials(life.state.tune_dir)
        confirmation = seeds_of_the_search(life.trial_runs(), trials, job.sweep.primary)
    return conclude(life, confirmation, force_best, runner.prepared)


def next_phase(job: SweepJob) -> str:
    """The phase after the search."""
    return SweepPhase.CONFIRMING if job.sweep.confirm is not None else SweepPhase.REGISTERING


def interrupted(life: SweepLife, stage: Stage) -> dict:
    life.interrupted()
    done = sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in stage_trials(stage.tune_dir))
    say(
        f"sweep '{life.job.sweep.name}' interrupted in its {stage.name} with {done} of "
        f"{stage.trials} trials concluded; {RESUME_HINT}"
    )
    return {"state": asdict(life.state), "interrupted": True}


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    started = time.monotonic()
    try:
        with stop_signals_as_ctrl_c():
            config = args.config or say_default_experiment()
            outcome = run_sweep(
                config, args.overrides, args.storage, args.fresh, args.force_best, args.verbose
            )
    except (ConfigError, DataFormatError, DataSourceError, UnreachableService, SweepBusy) as error:
        return fail(PROG, error, 2)
    except SweepFailed as error:
        return fail(PROG, error, 1, kind="failed")
    except StoppedWhenDone as done:
        # Its work is done: a scheduler that stopped it at its last line sees success.
        say(f"{PROG}: stopped: {done}")
        return 0
    except KeyboardInterrupt as error:
        # A SweepInterrupted says where the sweep stopped; a bare Ctrl-C came before it opened.
        where = f"{error}; " if str(error) else ""
        why = noted(where + RESUME_HINT, error)
        return fail(PROG, why, INTERRUPTED_EXIT_CODE, kind="interrupted")
    except Exception as error:
        cause = wrapped_by_tune(error)
        if full := disk_full(cause, [args.storage, mlflow_store()]):
            why = noted(str(full), error)
            return fail(PROG, f"{why}; free space there, then {RESUME_HINT}", 1, kind="stopped")
        log = write_crash_log(args.storage)
        why = noted(
            f"{type(cause).__name__}: {cause}\nThe traceback is in {log}. Once the cause is "
            "fixed, the same command resumes the sweep",
            error,
        )
        return fail(PROG, why, 1, kind="failed")
    say(f"  ({duration(time.monotonic() - started)} in all)")
    return INTERRUPTED_EXIT_CODE if outcome["interrupted"] else 0


def noted(text: str, error: BaseException) -> str:
    """`text`, then what the driver added to the error on its way out (runs it could not
    close), in the same line."""
    return "; ".join([text, *getattr(error, "__notes__", [])])


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
    add_warm_start_argument(parser)
    parser.add_argument(
        "--force-best",
        action="store_true",
        help="point the `best` alias at this sweep's winner even if it does not beat the "
        "current best, or was validated on other data",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="Ray's, Tune's and MLflow's output on the console"
    )
    args = parser.parse_args(argv)
    args.overrides = warm_start_overrides(args)
    return args


def wrapped_by_tune(error: BaseException) -> BaseException:
    """The exception a user should read: Tune re-raises one from a callback (the tracking
    server gone, say) as a TuneError whose message is the whole traceback."""
    while isinstance(error, tune.TuneError) and error.__context__ is not None:
        error = error.__context__
    return error


def mlflow_store() -> str:
    """Where MLflow writes: a SQLite file's path (its artifacts lie beside it), else the
    store's URI."""
    uri = mlflow.get_tracking_uri()
    database = sqlite_database(uri)
    return str(database.resolve()) if database is not None else without_credentials(uri)


def write_crash_log(storage: str) -> Path:
    """The current exception's traceback, in a file beside the sweep states."""
    _, state_dir = sweep_storage(storage)
    path = state_dir / "driver-error.log"
    path.write_text(traceback.format_exc())
    return path
