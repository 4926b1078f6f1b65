"""`make sweep`: a Ray Tune sweep of taggers, every trial in MLflow, the best one registered.

    make sweep                                   # seed.yaml with a CUDA GPU, cpu.yaml without
    make sweep EXPERIMENT=experiments/search.yaml
    .venv/bin/python -m pipelines.sweep --config experiments/cpu.yaml \
        --set sweep.max_concurrent_trials=1

Ray runs locally unless RAY_ADDRESS names a cluster; MLflow writes to the project's sqlite
store unless MLFLOW_TRACKING_URI names another. Run it again after an interruption and the
same sweep resumes (Ray Tune's restore); `--fresh` abandons it and starts anew.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import mlflow
import ray
import torch
from filelock import FileLock, Timeout
from mlflow.entities import Run, RunStatus
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from pipelines.cli import INTERRUPTED_EXIT_CODE
from pipelines.experiment import SEED_EXPERIMENT, read_experiment, run_config_from
from pipelines.probe import (
    UnreachableService,
    probe_ray_cluster,
    probe_tracking_server,
    without_credentials,
)
from pipelines.sweep_config import Range, SweepConfig, build_sweep
from pipelines.tracking import (
    MODEL_URI_TAG,
    NODE_KEY,
    RESUMED_KEY,
    ROLE_TAG,
    STATE_FILE,
    TRIAL_ROLE,
    MlflowTrials,
    child_runs,
    ensure_experiment,
    tracking_uri,
)
from postag import dataset as datasets
from postag.config import ConfigError, RunConfig, apply_overrides, to_dict
from postag.dataset import PreparedDataset
from postag.files import write_text_atomically
from postag.readers import DataFormatError
from postag.registry import REGISTERED_MODEL, Promotion, alias_for, register_candidate
from postag.sources import DataSourceError
from postag.train import EpochResult, TrainingState, fit

GPU_EXPERIMENT = SEED_EXPERIMENT
CPU_EXPERIMENT = Path("experiments/cpu.yaml")
MLFLOW_EXPERIMENT = "postag"
# Sweep state files, and Tune's experiments unless --storage names a shared location.
STORAGE_DIR = Path("runs/sweeps")
METRIC = "val_accuracy"


# The trial: a thin wrapper around postag.train.fit ------------------------------------


def trial_run_config(base: dict, sweep: SweepConfig, device: str, trial_config: dict) -> RunConfig:
    """The run config of one trial: the base run, the trial's values, baseline extras."""
    overrides = dict(trial_config)
    if sweep.is_baseline(trial_config):
        overrides.update(sweep.baseline_overrides())
    overrides["train.device"] = device
    if device == "cpu":
        # Trials side by side must share the cores, not each spin up all of them.
        overrides["train.num_threads"] = max(1, int(sweep.cpus_per_trial))
    values = apply_overrides(base, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    return run_config_from(values)


def train_trial(
    trial_config: dict, *, dataset: PreparedDataset, dataset_digest: str, make_config
) -> None:
    """Ray Tune function trainable: fit() with a report and a checkpoint per epoch."""
    # The dataset came through Ray's object store, maybe to another machine: check it first.
    datasets.check_arrival(dataset, dataset_digest)
    config = make_config(trial_config)
    resume = None
    if checkpoint := tune.get_checkpoint():
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
        resume = TrainingState.from_dict(state)
    resumed_from_epoch = resume.epoch if resume is not None else 0
    node_id = ray.get_runtime_context().get_node_id()

    def report(result: EpochResult, state: TrainingState) -> None:
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state.to_dict(), Path(folder) / STATE_FILE)
            tune.report(
                {
                    "epoch": result.epoch,
                    **result.metrics(),
                    "best_val_accuracy": state.best_val_accuracy,
                    "best_epoch": state.best_epoch,
                    RESUMED_KEY: resumed_from_epoch,
                    NODE_KEY: node_id,
                },
                checkpoint=tune.Checkpoint.from_directory(folder),
            )

    fit(config, dataset, callbacks=[report], resume=resume)


# Search space, searcher and scheduler from the sweep config ----------------------------


def param_space(sweep: SweepConfig) -> dict:
    space = {}
    for key, axis in sweep.space.items():
        if isinstance(axis, Range):
            space[key] = _range_domain(axis)
        elif sweep.search == "grid":
            space[key] = tune.grid_search(axis)
        else:
            space[key] = tune.choice(axis)
    return space


def _range_domain(axis: Range):
    if isinstance(axis.low, int) and isinstance(axis.high, int):
        # Integer ranges (not choices) so the deep baseline may lie outside them: Optuna
        # accepts an out-of-range fixed point for integers, but not for a categorical.
        sampler = tune.lograndint if axis.log else tune.randint
        return sampler(axis.low, axis.high + 1)
    return (tune.loguniform if axis.log else tune.uniform)(axis.low, axis.high)


def tune_config(sweep: SweepConfig, run: RunConfig) -> tune.TuneConfig:
    point = sweep.baseline_point()
    limit = sweep.max_concurrent_trials
    # The limit goes to the search algorithm itself: Tune ignores TuneConfig's
    # max_concurrent_trials (with a warning) once a BasicVariantGenerator is passed.
    if sweep.search == "optuna":
        searcher = ConcurrencyLimiter(
            OptunaSearch(points_to_evaluate=[point], seed=sweep.optuna_seed), max_concurrent=limit
        )
    else:
        searcher = BasicVariantGenerator(points_to_evaluate=[point], max_concurrent=limit)
    if sweep.scheduler == "asha":
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_epochs(sweep, run),
            grace_period=sweep.asha.grace_period,
            reduction_factor=sweep.asha.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    return tune.TuneConfig(
        metric=METRIC,
        mode="max",
        search_alg=searcher,
        scheduler=scheduler,
        # The baseline point takes the place of one sample.
        num_samples=sweep.num_samples + 1,
    )


def expected_trials(sweep: SweepConfig) -> int:
    """Trials a complete sweep holds: the baseline and the samples (each a grid, for grid)."""
    per_sample = 1
    if sweep.search == "grid":
        per_sample = math.prod(len(axis) for axis in sweep.space.values())
    return 1 + sweep.num_samples * per_sample


def max_epochs(sweep: SweepConfig, run: RunConfig) -> int:
    """The most epochs any trial trains: the epochs axis, the baseline, else the run's own."""
    axis = sweep.space.get("train.epochs")
    if axis is None:
        values = [run.train.epochs]
    else:
        values = [axis.high] if isinstance(axis, Range) else list(axis)
    return int(max([*values, sweep.baseline.get("train.epochs", 0)]))


# Sweep state: which Tune experiment and MLflow parent run an unfinished sweep owns -----


class SweepBusy(RuntimeError):
    """Another driver is running the same sweep."""


class SweepFailed(RuntimeError):
    """The sweep concluded but left nothing to register (every trial failed)."""


@dataclass
class SweepState:
    tune_dir: str
    parent_run_id: str
    experiment_id: str
    # The experiment values the sweep was started with: a resume must run the same sweep.
    config_digest: str
    finished: bool = False

    @staticmethod
    def path(storage: Path, sweep: SweepConfig) -> Path:
        return storage / f"{sweep.name}.json"

    def save(self, path: Path) -> None:
        # Whole or not at all: a driver killed mid-write must leave a state a rerun can read.
        write_text_atomically(path, json.dumps(asdict(self), indent=1))


def sweep_storage(storage: str | Path) -> tuple[str, Path]:
    """(where Tune keeps experiments and checkpoints, the local folder for sweep state files).

    A URI (s3://bucket/path, gs://..., a path on NFS) goes to Tune as it is: on a cluster,
    every node must reach it to save and restore checkpoints. State files stay local.
    """
    text = str(storage)
    if "://" in text:
        tune_storage, state_dir = text.rstrip("/"), STORAGE_DIR.resolve()
    else:
        state_dir = Path(text).resolve()
        tune_storage = str(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    return tune_storage, state_dir


@contextlib.contextmanager
def sole_driver(state_dir: Path, sweep: SweepConfig):
    """Hold the sweep's lock file while it runs: two drivers of one sweep would both write
    its state and runs. The OS drops the lock when the holder dies, even by SIGKILL."""
    path = state_dir / f"{sweep.name}.lock"
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise SweepBusy(
            f"sweep '{sweep.name}' is already running in another driver (it holds {path}); "
            "wait for it to end, or stop it (Ctrl-C) and run this command again to resume"
        ) from None
    try:
        yield
    finally:
        lock.release()


def open_sweep_state(
    state_dir: Path,
    tune_storage: str,
    sweep: SweepConfig,
    experiment_id: str,
    fresh: bool,
    config_values: dict,
) -> tuple[SweepState, bool]:
    """The unfinished sweep to resume, or a new one with its parent run; (state, resuming)."""
    path = SweepState.path(state_dir, sweep)
    digest = hashlib.sha256(json.dumps(config_values, sort_keys=True).encode()).hexdigest()
    previous = SweepState(**json.loads(path.read_text())) if path.is_file() else None
    if previous is not None and not previous.finished:
        restorable = tune.Tuner.can_restore(previous.tune_dir)
        if restorable and not fresh:
            if previous.config_digest != digest:
                raise ConfigError(
                    f"sweep '{sweep.name}' was interrupted ({path}) and its configuration has "
                    "changed since: run it unchanged to resume, or add --fresh "
                    "(make sweep SWEEP_ARGS=--fresh) to start anew"
                )
            return previous, True
        why = "--fresh" if fresh else f"its Tune state {previous.tune_dir} cannot be restored"
        abandon(previous, why)
        print(
            f"sweep '{sweep.name}': the unfinished sweep is abandoned ({why}); its runs are "
            f"closed as KILLED under parent run {previous.parent_run_id}; starting anew",
            flush=True,
        )
    parent = mlflow.MlflowClient().create_run(
        experiment_id,
        tags={"mlflow.runName": f"sweep-{sweep.name}", "sweep": sweep.name, ROLE_TAG: "sweep"},
    )
    tune_dir = f"{tune_storage}/{sweep.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    state = SweepState(tune_dir, parent.info.run_id, experiment_id, digest)
    state.save(path)
    client = mlflow.MlflowClient()
    client.log_dict(parent.info.run_id, config_values, "experiment.json")
    client.log_batch(
        parent.info.run_id,
        params=[
            mlflow.entities.Param(f"sweep.{k}", json.dumps(v)) for k, v in to_dict(sweep).items()
        ],
    )
    return state, False


def abandon(state: SweepState, why: str) -> None:
    """Close an unfinished sweep that will never resume: its open runs become KILLED."""
    close_open_runs(state, RunStatus.KILLED)
    mlflow.MlflowClient().set_tag(state.parent_run_id, "abandoned", why)


def close_open_runs(state: SweepState, parent_status: int) -> None:
    """Every RUNNING trial run becomes KILLED (a resume reopens it); the parent run takes
    `parent_status` unless it is already closed."""
    client = mlflow.MlflowClient()
    killed = RunStatus.to_string(RunStatus.KILLED)
    for run in child_runs(state.experiment_id, state.parent_run_id):
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, killed)
    if client.get_run(state.parent_run_id).info.status == "RUNNING":
        client.set_terminated(state.parent_run_id, RunStatus.to_string(parent_status))


def concluded_trials(state: SweepState) -> list[Trial]:
    """The saved experiment's trials that are TERMINATED or ERROR.

    Read from disk: after Ctrl-C, the ResultGrid that fit() returns counts trials that never
    started as concluded.
    """
    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it warns of every trial without results yet
    try:
        trials = tune.ExperimentAnalysis(state.tune_dir).trials
    finally:
        quiet.setLevel(level)
    return [trial for trial in trials if trial.status in (Trial.TERMINATED, Trial.ERROR)]


# Registration of the best trial --------------------------------------------------------


def register_best_trial(
    state: SweepState, runs: list[Run], sweep: SweepConfig, config_path: Path, force: bool
) -> Promotion:
    """Register the finished non-baseline run with the highest best_val_accuracy.

    It always becomes a new version under the sweep's own alias; `best` follows the
    champion rule (postag.registry.champion_decision) unless `force`.
    """
    candidates = [
        run
        for run in runs
        if run.data.tags.get(ROLE_TAG) == TRIAL_ROLE
        and run.info.status == "FINISHED"
        and MODEL_URI_TAG in run.data.tags
        and "best_val_accuracy" in run.data.metrics
    ]
    if not candidates:
        failed = [run for run in runs if run.info.status == "FAILED"]
        last_error = next((r.data.tags["error"] for r in failed if "error" in r.data.tags), "")
        raise SweepFailed(
            f"sweep '{sweep.name}': no trial finished with a model to register "
            f"({len(failed)} of {len(runs)} failed); the last lines of one error:\n"
            + "\n".join(last_error.strip().splitlines()[-3:])
        )
    best = max(candidates, key=lambda run: run.data.metrics["best_val_accuracy"])
    params = best.data.params
    accuracy = best.data.metrics["best_val_accuracy"]
    description = (
        f"Best trial of sweep '{sweep.name}' ({config_path}; MLflow parent run "
        f"{state.parent_run_id}), run {best.info.run_id}: hidden_size {params['hidden_size']}, "
        f"num_layers {params['num_layers']}, epochs {params['epochs']}; best validation "
        f"accuracy {100 * accuracy:.2f}% at epoch {int(best.data.metrics['best_epoch'])}."
    )
    promotion = register_candidate(
        best.data.tags[MODEL_URI_TAG],
        description,
        tags={"sweep": sweep.name, "run_id": best.info.run_id},
        val_accuracy=accuracy,
        validation_digest=params["validation_digest"],
        alias=alias_for(sweep.name),
        force=force,
    )
    client = mlflow.MlflowClient()
    client.log_metric(state.parent_run_id, "best_val_accuracy", accuracy)
    client.set_tag(state.parent_run_id, "best_run_id", best.info.run_id)
    client.set_tag(state.parent_run_id, "registered_version", promotion.version)
    client.set_tag(state.parent_run_id, "best_alias", promotion.reason)
    return promotion


def trial_table(runs: list[Run]) -> str:
    """A Markdown table of the sweep's runs, best first, the baseline marked."""
    rows = sorted(
        runs,
        key=lambda run: -run.data.metrics.get("best_val_accuracy", -1.0),
    )
    lines = [
        "| role | hidden | layers | epochs | status | best val acc "
        "| grad norm first / last LSTM layer (last epoch) |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for run in rows:
        p, m = run.data.params, run.data.metrics
        accuracy = f"{100 * m['best_val_accuracy']:.2f}%" if "best_val_accuracy" in m else "-"
        grads = (
            f"{m['grad_norm_first_lstm']:.2e} / {m['grad_norm_last_lstm']:.2e}"
            if "grad_norm_first_lstm" in m
            else "-"
        )
        lines.append(
            f"| {run.data.tags.get(ROLE_TAG)} | {p.get('hidden_size')} | {p.get('num_layers')} "
            f"| {p.get('epochs')} | {run.info.status} | {accuracy} | {grads} |"
        )
    return "\n".join(lines)


# The driver --------------------------------------------------------------------------


def default_experiment() -> Path:
    if torch.cuda.is_available():
        print(f"sweep: a CUDA GPU is visible, so {GPU_EXPERIMENT} (the full study)", flush=True)
        return GPU_EXPERIMENT
    print(f"sweep: no CUDA GPU visible, so {CPU_EXPERIMENT} (sized for a small CPU)", flush=True)
    return CPU_EXPERIMENT


def load_sweep(path: Path, overrides: list[str]) -> tuple[dict, RunConfig, SweepConfig]:
    values = read_experiment(path, overrides)
    run = run_config_from(values, path)
    if "sweep" not in values:
        raise ConfigError(f"{path}: no 'sweep' section; `postag train` runs a single config")
    try:
        sweep = build_sweep(values["sweep"], run)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    return values, run, sweep


def trial_resources(sweep: SweepConfig) -> tuple[dict, str]:
    if sweep.gpus_per_trial > 0 and ray.cluster_resources().get("GPU", 0) > 0:
        return {"cpu": 1, "gpu": sweep.gpus_per_trial}, "cuda"
    return {"cpu": sweep.cpus_per_trial}, "cpu"


@contextlib.contextmanager
def sigterm_as_ctrl_c():
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


def run_sweep(
    config_path: Path, overrides: list[str], storage: str | Path, fresh: bool, force_best=False
) -> dict:
    values, run, sweep = load_sweep(config_path, overrides)
    uri = tracking_uri(Path.cwd())
    probe_tracking_server(uri)
    probe_ray_cluster(os.environ.get("RAY_ADDRESS"))
    mlflow.set_tracking_uri(uri)
    experiment_id = ensure_experiment(MLFLOW_EXPERIMENT)
    tune_storage, state_dir = sweep_storage(storage)
    with sole_driver(state_dir, sweep):
        prepared_dir = datasets.prepare(run.data)
        prepared = datasets.load_prepared(prepared_dir)
        state, resuming = open_sweep_state(
            state_dir, tune_storage, sweep, experiment_id, fresh, values
        )
        base = {k: v for k, v in values.items() if k != "sweep"}
        try:
            callback = fit_trials(state, resuming, sweep, run, base, prepared, tune_storage)
            return conclude(state, state_dir, sweep, config_path, callback, force_best)
        except BaseException as error:
            close_after_failure(state, error)
            raise


def fit_trials(
    state: SweepState,
    resuming: bool,
    sweep: SweepConfig,
    run: RunConfig,
    base: dict,
    prepared: PreparedDataset,
    tune_storage: str,
) -> MlflowTrials:
    """Run (or resume) the Tune experiment; the MLflow callback, to settle runs afterwards."""
    ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=True)
    try:
        resources, device = trial_resources(sweep)
        make_config = functools.partial(trial_run_config, base, sweep, device)
        # with_parameters puts the dataset in Ray's object store once; trials read it from there.
        trainable = tune.with_resources(
            tune.with_parameters(
                train_trial,
                dataset=prepared,
                dataset_digest=prepared.content_digest(),
                make_config=make_config,
            ),
            resources,
        )
        callback = MlflowTrials(
            state.experiment_id,
            state.parent_run_id,
            prepared.directory,
            make_config,
            sweep.is_baseline,
        )
        print(
            f"sweep '{sweep.name}': {'resuming' if resuming else 'starting'} {state.tune_dir}; "
            f"MLflow {without_credentials(mlflow.get_tracking_uri())}, parent run "
            f"{state.parent_run_id}; trials on {device} with {resources}",
            flush=True,
        )
        if resuming:
            mlflow.MlflowClient().update_run(
                state.parent_run_id, status=RunStatus.to_string(RunStatus.RUNNING)
            )
            # The callback comes back from Tune's saved state, with the rest of the run config.
            tuner = tune.Tuner.restore(state.tune_dir, trainable, resume_errored=False)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=param_space(sweep),
                tune_config=tune_config(sweep, run),
                run_config=tune.RunConfig(
                    name=state.tune_dir.rpartition("/")[2],
                    storage_path=tune_storage,
                    callbacks=[callback],
                    failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                ),
            )
        with sigterm_as_ctrl_c():
            tuner.fit()
    finally:
        # A caller in this process (a test, a notebook) must not inherit our Ray instance.
        ray.shutdown()
    return callback


def conclude(
    state: SweepState,
    state_dir: Path,
    sweep: SweepConfig,
    config_path: Path,
    callback: MlflowTrials,
    force_best: bool,
) -> dict:
    """After fit(): settle every concluded trial's run, then register, or say it stopped."""
    concluded = concluded_trials(state)
    callback.settle(concluded)
    runs = child_runs(state.experiment_id, state.parent_run_id)
    if len(concluded) < expected_trials(sweep):
        close_open_runs(state, RunStatus.KILLED)
        print(
            f"sweep '{sweep.name}' interrupted with {len(concluded)} of {expected_trials(sweep)} "
            "trials concluded; run the same command again to resume it",
            flush=True,
        )
        return {"state": asdict(state), "interrupted": True}
    client = mlflow.MlflowClient()
    client.log_text(state.parent_run_id, trial_table(runs), "trials.md")
    try:
        promotion = register_best_trial(state, runs, sweep, config_path, force_best)
    except SweepFailed:
        # Every trial failed: nothing is left to resume, so a rerun starts a new sweep.
        replace(state, finished=True).save(SweepState.path(state_dir, sweep))
        raise
    state = replace(state, finished=True)
    state.save(SweepState.path(state_dir, sweep))
    client.set_terminated(state.parent_run_id, RunStatus.to_string(RunStatus.FINISHED))
    table = trial_table(runs)
    print(table)
    print(
        f"sweep '{sweep.name}' done; registered {REGISTERED_MODEL} version "
        f"{promotion.version} as models:/{REGISTERED_MODEL}@{alias_for(sweep.name)}; "
        f"{promotion.reason}",
        flush=True,
    )
    return {
        "state": asdict(state),
        "version": promotion.version,
        "promotion": promotion,
        "table": table,
        "interrupted": False,
    }


def close_after_failure(state: SweepState, error: BaseException) -> None:
    """Leave no run RUNNING after whatever stopped the driver; say so if MLflow is away too."""
    interrupted = isinstance(error, KeyboardInterrupt | SystemExit)
    try:
        close_open_runs(state, RunStatus.KILLED if interrupted else RunStatus.FAILED)
        if not interrupted:
            mlflow.MlflowClient().set_tag(state.parent_run_id, "error", repr(error)[:500])
    except Exception as closing:  # the tracking server may be what failed
        print(
            f"postag sweep: could not close the sweep's MLflow runs ({type(closing).__name__}); "
            "they are closed when the sweep resumes",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="postag sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="experiment YAML with a sweep section")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
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
    args = parser.parse_args(argv)
    try:
        with sigterm_as_ctrl_c():
            outcome = run_sweep(
                args.config or default_experiment(),
                args.overrides,
                args.storage,
                args.fresh,
                args.force_best,
            )
    except (ConfigError, DataFormatError, DataSourceError, UnreachableService, SweepBusy) as error:
        print(f"postag sweep: error: {error}", file=sys.stderr)
        return 2
    except SweepFailed as error:
        print(f"postag sweep: failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("postag sweep: interrupted; run the same command again to resume", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    except Exception as error:
        log = write_crash_log(args.storage)
        print(
            f"postag sweep: failed: {type(error).__name__}: {error}\n"
            f"The traceback is in {log}. The sweep's runs are closed; once the cause is "
            "fixed, the same command resumes the sweep.",
            file=sys.stderr,
        )
        return 1
    return INTERRUPTED_EXIT_CODE if outcome["interrupted"] else 0


def write_crash_log(storage: str) -> Path:
    """The current exception's traceback, in a file beside the sweep states."""
    _, state_dir = sweep_storage(storage)
    path = state_dir / "driver-error.log"
    path.write_text(traceback.format_exc())
    return path


if __name__ == "__main__":
    sys.exit(main())
