"""The simulated sweep of `make bench-tracking`: trials that train nothing, reporting every
epoch at once with the keys and as many metrics as a real trial, driven as `make sweep`
drives a sweep (its life, its search stage under Ray Tune, its MLflow callback); and what
they left in MLflow, read back."""

from __future__ import annotations

import contextlib
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import ray
import yaml
from ray import tune

from pipelines.bench.sweeps.clock import REPORTED_AT_KEY, ClockedRunner, SweepClock
from pipelines.console import library_output_to
from pipelines.names import BEST_EPOCH, FINISHED
from pipelines.sweep.lifecycle.life import SweepLife
from pipelines.sweep.lifecycle.ray_runtime import one_ray_for_the_stages
from pipelines.sweep.lifecycle.state import SweepPhase
from pipelines.sweep.setup.job import SweepJob, load_sweep, sweep_storage
from pipelines.sweep.setup.settings import SweepSettings
from pipelines.sweep.stages.search import search_stages
from pipelines.sweep.trial.trainable import DEVICE_KEY, NODE_KEY, RESUMED_KEY
from pipelines.tracking import child_runs, ensure_experiment, training_inputs
from postag.config import ConfigError, RunConfig
from postag.data import dataset as datasets
from postag.training.resources import ProcessUsage, resident_megabytes
from postag.training.trainer import EPOCH_METRICS

# Trials at once: Ray's CPU share each, so that 2 cores hold them (a no-op barely runs).
CONCURRENT = 8
CPUS_PER_TRIAL = 0.25
# The trials' data: enough sentences to be a dataset; the trials never read it.
TRAIN_SENTENCES = 200
KILOBYTE = 1024


@dataclass
class TrackingFigures:
    trials: int
    epochs: int  # each trial's
    # From the first trial's start to the last one's run closed, as the driver saw them.
    seconds: float
    driver_peak_megabytes: float
    # The driver's resident memory from just before the Tune stage to its peak.
    driver_growth_megabytes: float
    # Seconds the driver spent in the sweep's callbacks (while it does, Tune hands no trial
    # a result): making trials' runs, logging their epochs, closing them.
    run_creation_seconds: float
    epoch_logging_seconds: float
    run_closing_seconds: float
    runs_finished: int
    epochs_missing: int
    epochs_repeated: int

    @property
    def epochs_per_second(self) -> float:
        return self.trials * self.epochs / self.seconds

    @property
    def trials_per_minute(self) -> float:
        return 60 * self.trials / self.seconds

    @property
    def driver_writing_seconds(self) -> float:
        return self.run_creation_seconds + self.epoch_logging_seconds + self.run_closing_seconds

    @property
    def exactly_once(self) -> bool:
        return (
            self.runs_finished == self.trials
            and self.epochs_missing == 0
            and self.epochs_repeated == 0
        )


def simulated_trial(point: dict, *, configs, **_unused) -> None:
    """A trial that trains nothing: its epochs reported at once, each with the keys and the
    number of metrics a real trial reports (pipelines/sweep/trial/trainable.py), and no
    checkpoint."""
    config = configs.resolve(point, "cpu")
    usage = ProcessUsage()
    node = ray.get_runtime_context().get_node_id()
    objective = config.train.objective
    for epoch in range(1, config.train.epochs + 1):
        score = 1 - 1 / (epoch + 1)  # rises every epoch: the best so far on a max objective
        tune.report(
            {
                "epoch": epoch,
                **dict.fromkeys(EPOCH_METRICS, 0.0),
                objective.metric: score,
                **usage.sample(),
                objective.best_metric: score,
                BEST_EPOCH: epoch,
                RESUMED_KEY: 0,
                NODE_KEY: node,
                DEVICE_KEY: "cpu",
                REPORTED_AT_KEY: time.time(),
            }
        )


def simulated_experiment(trials: int, epochs: int) -> dict:
    """A grid over the seed, one value a trial, beside the baseline that every sweep holds."""
    return {
        "data": {"max_train_sentences": TRAIN_SENTENCES},
        "train": {"epochs": epochs},
        "sweep": {
            "name": f"tracking-{trials}",
            "space": {"train.seed": list(range(1, trials))},
            "baseline": {"train.seed": 0},
            "max_concurrent_trials": CONCURRENT,
            "cpus_per_trial": CPUS_PER_TRIAL,
            "max_failures": 0,
        },
    }


def load_simulated_sweep(
    trials: int, epochs: int, overrides: list[str], folder: Path
) -> tuple[Path, dict, RunConfig, SweepSettings]:
    """The simulated experiment with the user's --set values, written to `folder` and
    loaded as `make sweep` loads one: (its file, raw values, base run, sweep config)."""
    path = folder / f"tracking-{trials}.yaml"
    path.write_text(yaml.safe_dump(simulated_experiment(trials, epochs)))
    try:
        return path, *load_sweep(path, overrides)
    except ConfigError as error:  # said of the bench's own file, which the user never saw
        why = str(error).removeprefix(f"{path}: ")
        raise ConfigError(f"the simulated sweep, with --set {overrides}: {why}") from None


def measure(
    trials: int, epochs: int, overrides: list[str], uri: str, folder: Path, log: Path
) -> dict:
    """One simulated sweep's search, as `make sweep` drives it; its figures (as a dict, to
    cross back from the process it runs in)."""
    path, values, run, sweep = load_simulated_sweep(trials, epochs, overrides, folder)
    clock = SweepClock()
    job = SweepJob(path, values, run, sweep, *sweep_storage(folder / "tune"))
    with (
        log.open("a") as console,
        contextlib.redirect_stdout(console),
        job.lock(),
        library_output_to(log, verbose=False),
    ):
        mlflow.set_tracking_uri(uri)
        experiment_id = ensure_experiment()
        prepared = datasets.load(run.data)
        # The sweep's own stage runner, each trial a no-op, timed by the clock's callbacks.
        runner = ClockedRunner(prepared, clock=clock, timed=simulated_trial)
        # The store is thrown away after the bench: the sweep is left where its search ends.
        with SweepLife.open(job, experiment_id, fresh=True) as life:
            life.log_data(training_inputs(prepared).values())
            before = resident_megabytes()
            with one_ray_for_the_stages():
                stages = search_stages(life, prepared, after=SweepPhase.REGISTERING)
                if not all(runner.run(life, stage, then=then) for stage, then in stages):
                    raise KeyboardInterrupt  # Ctrl-C or SIGTERM stopped Tune: no figures
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KILOBYTE
            runs = child_runs(experiment_id, life.state.parent_run_id)
            missing, repeated = epochs_missing_and_repeated(runs, epochs)
    closed = [times for times in clock.trials.values() if times.ended is not None]
    first = min(times.started for times in closed)
    last = max(times.ended + times.model_logging for times in closed)
    return asdict(
        TrackingFigures(
            trials=trials,
            epochs=epochs,
            seconds=last - first,
            driver_peak_megabytes=peak,
            driver_growth_megabytes=peak - before,
            run_creation_seconds=clock.run_creation,
            epoch_logging_seconds=clock.epoch_logging,
            run_closing_seconds=sum(times.model_logging for times in closed),
            runs_finished=sum(r.info.status == FINISHED for r in runs),
            epochs_missing=missing,
            epochs_repeated=repeated,
        )
    )


def epochs_missing_and_repeated(runs, epochs: int) -> tuple[int, int]:
    """Read back from the server: epochs of a trial's run that are not there, and epochs
    there more than once (counted on one epoch metric, logged in one request with the rest)."""
    client = mlflow.MlflowClient()
    missing = repeated = 0
    for run in runs:
        history = client.get_metric_history(run.info.run_id, EPOCH_METRICS[0])
        steps = [m.step for m in history]
        missing += len(set(range(1, epochs + 1)) - set(steps))
        repeated += len(steps) - len(set(steps))
    return missing, repeated
