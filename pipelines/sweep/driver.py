"""`make sweep`: a Ray Tune sweep of taggers, every trial in MLflow, the best one registered.

    make sweep                                   # seed.yaml with a CUDA GPU, cpu.yaml without
    make sweep EXPERIMENT=experiments/search.yaml
    .venv/bin/python -m pipelines.sweep --config experiments/cpu.yaml \\
        --set sweep.max_concurrent_trials=1

Ray runs locally unless RAY_ADDRESS names a cluster; MLflow writes to the project's sqlite
store unless MLFLOW_TRACKING_URI names another. Run it again after an interruption and the
same sweep resumes (Ray Tune's restore); `--fresh` abandons it and starts anew.

Where things live (all in pipelines/sweep/ but tracking.py): the sweep's life (its stage,
lock, state file and parent run) is life.py's SweepLife; the trial trains in trial.py; the
Tune stages run in stages.py; MLflow is written by records.py (per epoch, through the Tune
callback in trial_logger.py); conclusion.py registers the winner and reports. This file
only drives.
"""

from __future__ import annotations

import argparse
import os
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import mlflow
from ray import tune
from ray.tune.experiment import Trial

from pipelines.cli import INTERRUPTED_EXIT_CODE, command_parser, fail
from pipelines.console import duration, library_output_to, say
from pipelines.disk import disk_full
from pipelines.experiment import add_experiment_arguments
from pipelines.servers.probe import (
    UnreachableService,
    check_login,
    probe_ray_cluster,
    probe_tracking_server,
)
from pipelines.sweep.clock import SweepClock
from pipelines.sweep.conclusion import conclude
from pipelines.sweep.confirm import Candidate, confirmed, seeds_of_the_search, top_candidates
from pipelines.sweep.job import Sweep, load_sweep, sweep_experiment
from pipelines.sweep.life import (
    STORAGE_DIR,
    SweepBusy,
    SweepLife,
    SweepStage,
    sweep_storage,
)
from pipelines.sweep.promotion import SweepFailed, nothing_to_register
from pipelines.sweep.stages import (
    Stage,
    confirmation_stage,
    fit_trials,
    search_stage,
    settled,
    sigterm_as_ctrl_c,
    stage_trials,
)
from pipelines.tracking import (
    ensure_experiment,
    sqlite_database,
    tracking_uri,
    training_inputs,
    without_credentials,
)
from postag import dataset as datasets
from postag.config import ConfigError
from postag.dataset import PreparedDataset
from postag.readers import DataFormatError
from postag.sources import DataSourceError

PROG = "postag sweep"
RESUME_HINT = "run the same command again to resume"


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
    with SweepLife.lock(job), library_output_to(job.log_file, verbose):
        mlflow.set_tracking_uri(uri)
        experiment_id = ensure_experiment()
        prepared = datasets.load(run.data)
        with SweepLife.open(job, experiment_id, fresh) as life:
            if not life.resuming:
                life.log_data(training_inputs(prepared).values())
            return run_stages(life, prepared, force_best, verbose)


def run_stages(life: SweepLife, prepared: PreparedDataset, force_best: bool, verbose: bool) -> dict:
    """The search, then its confirmation if the sweep asks, then the conclusion, each from
    the stage the sweep is in; a Tune stage interrupted ends the sweep there, and the same
    command resumes it. A search over seeds is its own confirmation."""
    job = life.job
    if life.stage == SweepStage.REGISTERING and life.resuming:
        say(f"sweep '{job.sweep.name}': every trial concluded; resuming at registration")
    if life.stage == SweepStage.SEARCHING:
        stage = search_stage(job, life.state)
        if not run_stage(life, stage, life.resuming, prepared, verbose):
            return interrupted(life, stage)
        life.searched()
    confirmation = None
    if job.sweep.confirm is not None:
        chosen = best_of_the_search(life)
        stage = confirmation_stage(job, life.state, chosen)
        if life.stage == SweepStage.CONFIRMING:
            restoring = tune.Tuner.can_restore(stage.tune_dir)
            if not run_stage(life, stage, restoring, prepared, verbose):
                return interrupted(life, stage)
            life.confirmed()
        confirmation = confirmed(chosen, life.trial_runs(), stage_trials(stage.tune_dir))
    elif job.sweep.searches_seeds():
        confirmation = seeds_of_the_search(life.trial_runs(), stage_trials(life.state.tune_dir))
    return conclude(life, confirmation, force_best)


def run_stage(
    life: SweepLife, stage: Stage, resuming: bool, prepared: PreparedDataset, verbose: bool
) -> bool:
    """Run (or resume) a Tune stage; whether all of its trials concluded."""
    callback = fit_trials(life.job, life.state, stage, resuming, prepared, verbose)
    return settled(stage, callback)


def best_of_the_search(life: SweepLife) -> list[Candidate]:
    """The configurations the confirmation stage trains again; none is a failed sweep."""
    assert life.job.sweep.confirm is not None
    runs = life.trial_runs()
    chosen = top_candidates(runs, stage_trials(life.state.tune_dir), life.job.sweep.confirm.top_k)
    if not chosen:
        life.gave_up()
        raise SweepFailed(nothing_to_register(runs, life.job.sweep))
    return chosen


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
        with sigterm_as_ctrl_c():
            config = args.config or say_default_experiment()
            outcome = run_sweep(
                config, args.overrides, args.storage, args.fresh, args.force_best, args.verbose
            )
    except (ConfigError, DataFormatError, DataSourceError, UnreachableService, SweepBusy) as error:
        return fail(PROG, error, 2)
    except SweepFailed as error:
        return fail(PROG, error, 1, kind="failed")
    except KeyboardInterrupt as error:
        return fail(PROG, noted(RESUME_HINT, error), INTERRUPTED_EXIT_CODE, kind="interrupted")
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
