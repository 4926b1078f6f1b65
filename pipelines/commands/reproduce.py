"""`postag reproduce`: train a logged run again from its MLflow record alone, and check
that every epoch repeats what the run logged.

    postag reproduce 3f6b0c...                       # a trial's run id
    postag reproduce models:/postag-tagger@best      # the run behind a registered version
    make reproduce RUN=models:/postag-tagger@best

What it takes from the run: its config (config.json), its data (refused if the files here
are not the ones it trained on: the prepared data's fingerprint, over every file's sha256
and the preparation settings, must match) and its code (a different git commit is a
warning, not a refusal). It trains with deterministic kernels, compares each epoch's
figures with the logged ones as the epoch ends, and stops at the first difference: which
epoch, which metric, both values. The timings (seconds, tokens a second) are not compared.

On the CPU a replay repeats every figure to the last digit, with the run's thread count
(its config's train.num_threads). A run trained on a GPU is not expected to: its trials ran
without deterministic kernels (cuDNN's LSTM and scatter kernels may add in any order), so
give it `--tolerance`; no GPU tolerance has been measured yet (docs/experiments.md).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

from pipelines.cli import (
    INTERRUPTED_EXIT_CODE,
    add_experiment_file_argument,
    chosen_model,
    command_parser,
    fail,
    not_found_message,
)
from pipelines.names import (
    DATASET_FINGERPRINT_PARAM,
    GIT_DIRTY_TAG,
    MEMBERS_TAG,
    REUSED_TAG,
)
from pipelines.provenance import code_tags
from pipelines.tracking import CONTEXTS, tracking_uri, training_inputs
from postag.config import ConfigError, RunConfig, build, with_values
from postag.data import dataset as datasets
from postag.data.readers import DataFormatError
from postag.data.sources import DataSourceError
from postag.serving.registry import ModelNotFound, find_version
from postag.training.trainer import REPLAYED_METRICS, EpochResult, TrainingState, fit

PROG = "postag reproduce"
CONFIG_ARTIFACT = "config.json"


class ReplayRefused(ValueError):
    """The run cannot be replayed here: no config, or other data than it trained on."""


@dataclass(frozen=True)
class Difference:
    epoch: int
    metric: str
    logged: float
    replayed: float

    def __str__(self) -> str:
        return (
            f"epoch {self.epoch}, {self.metric}: logged {self.logged!r}, replayed {self.replayed!r}"
        )


@dataclass(frozen=True)
class Replay:
    run_id: str
    run_name: str
    epochs: int  # compared
    difference: Difference | None
    # Compared metrics the run did not log (made before they existed).
    unlogged: tuple[str, ...] = ()

    @property
    def equal(self) -> bool:
        return self.difference is None


class _Stop(Exception):
    """Ends the replay's training early: a difference found, or the run's epochs done."""


def run_id_of(target: str) -> str:
    """A run id, or the run behind a `models:/` URI."""
    version = find_version(target)
    if version is None:
        return target
    if not version.run_id:
        raise ReplayRefused(f"{target} (version {version.version}) names no run to replay")
    return version.run_id


def run_to_replay(client: mlflow.MlflowClient, target: str) -> Run:
    """The run `target` names; the run that trained it, when it is the record of a trial
    that a sweep took from an earlier one (it trained nothing itself)."""
    run_id = run_id_of(target)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ReplayRefused(f"no run {run_id} in {mlflow.get_tracking_uri()}") from None
    members = run.data.tags.get(MEMBERS_TAG)
    if members:
        raise ReplayRefused(
            f"run {run_id} is an ensemble of runs {members.replace(',', ', ')}, which trained "
            f"it; it trained nothing itself: replay a member (make reproduce RUN=<run id>)"
        )
    origin = run.data.tags.get(REUSED_TAG)
    return client.get_run(origin) if origin else run


def logged_config(client: mlflow.MlflowClient, run_id: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, CONFIG_ARTIFACT, folder)
        except (MlflowException, OSError):
            raise ReplayRefused(
                f"run {run_id} holds no {CONFIG_ARTIFACT}: only a sweep's trial runs carry "
                "the config they trained with"
            ) from None
        return json.loads(Path(path).read_text())


def logged_epochs(client: mlflow.MlflowClient, run_id: str) -> dict[int, dict[str, float]]:
    """{epoch: {metric: value}} of every compared metric the run logged."""
    epochs: dict[int, dict[str, float]] = {}
    for name in REPLAYED_METRICS:
        for metric in client.get_metric_history(run_id, name):
            epochs.setdefault(metric.step, {})[name] = metric.value
    return epochs


def first_difference(
    logged: dict[str, float], result: EpochResult, tolerance: float
) -> Difference | None:
    """The first compared metric of the epoch whose replayed value is not the logged one
    (within a relative `tolerance`; 0: to the last digit). NaN equals NaN."""
    replayed = result.metrics()
    for name in REPLAYED_METRICS:
        if name not in logged:
            continue
        old, new = logged[name], replayed[name]
        if math.isnan(old) and math.isnan(new):
            continue
        if not (old == new or math.isclose(old, new, rel_tol=tolerance, abs_tol=0.0)):
            return Difference(result.epoch, name, old, new)
    return None


def data_mismatch(run, prepared: datasets.PreparedDataset) -> str | None:
    """Why the prepared data is not what the run trained on, naming both digests; None if
    it is. The fingerprint covers every file's sha256 and the preparation settings."""
    logged = run.data.params.get(DATASET_FINGERPRINT_PARAM)
    if logged is None or logged == prepared.fingerprint:
        return None
    was = {
        entry.tags[0].value if entry.tags else "": entry.dataset
        for entry in run.inputs.dataset_inputs
    }
    lines = [
        f"run {run.info.run_id} trained on data with fingerprint {logged}; the data here has "
        f"fingerprint {prepared.fingerprint}"
    ]
    for split, now in training_inputs(prepared).items():
        before = was.get(CONTEXTS[split])
        if before is not None and before.digest != now.digest:
            lines.append(
                f"  {split}: the run's {before.name} has digest {before.digest}, "
                f"{now.path} has {now.digest}"
            )
    lines.append("  give the run's files with --train / --dev, as they lie on this machine")
    return "\n".join(lines)


def code_warning(run) -> str | None:
    """A line saying that the run's code is not this code, or None if it is."""
    tags, here = run.data.tags, code_tags()
    commit = tags.get(MLFLOW_GIT_COMMIT)
    if commit is None:
        return f"run {run.info.run_id} records no git commit (made before runs recorded one)"
    theirs = f"commit {commit[:10]}" + (
        " with uncommitted changes" if tags.get(GIT_DIRTY_TAG) == "true" else ""
    )
    ours = here.get(MLFLOW_GIT_COMMIT, "outside a git checkout")[:10] + (
        " with uncommitted changes" if here.get(GIT_DIRTY_TAG) == "true" else ""
    )
    if theirs == f"commit {ours}":
        return None
    return f"run {run.info.run_id} was trained by {theirs}; this code is {ours}"


@contextlib.contextmanager
def deterministic_kernels() -> Iterator[None]:
    """torch's deterministic kernels, and its thread count, as they were afterwards."""
    was, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)
        torch.set_num_threads(threads)


def replay(
    target: str,
    data: dict[str, str] | None = None,
    tolerance: float = 0.0,
    say=print,
) -> Replay:
    """Train the run `target` names again and compare it, epoch by epoch, with its record.

    data: where the run's files lie here, by split (`train`, `dev`), if not where they lay.
    """
    client = mlflow.MlflowClient()
    run = run_to_replay(client, target)
    run_id = run.info.run_id
    values = logged_config(client, run_id)
    moved = {f"data.{split}": path for split, path in (data or {}).items()}
    config = build(RunConfig, with_values(values, moved))
    prepared = datasets.load(config.data)
    if (why := data_mismatch(run, prepared)) is not None:
        raise ReplayRefused(why)
    if (warning := code_warning(run)) is not None:
        say(f"{PROG}: warning: {warning}; going on")
    logged = logged_epochs(client, run_id)
    if not logged:
        raise ReplayRefused(f"run {run_id} logged no epochs to compare")
    last, name = max(logged), run.info.run_name
    threads = config.train.num_threads or torch.get_num_threads()
    say(
        f"replaying run {name} ({run_id}): {last} of {config.train.epochs} epochs logged, "
        f"on {config.train.device} with {threads} thread{'s' if threads > 1 else ''} "
        "and deterministic kernels"
    )
    found: list[Difference] = []

    def compare(result: EpochResult, _: TrainingState) -> None:
        difference = first_difference(logged.get(result.epoch, {}), result, tolerance)
        if difference is not None:
            found.append(difference)
            raise _Stop
        say(f"  epoch {result.epoch}/{last}: {len(logged.get(result.epoch, {}))} figures equal")
        if result.epoch >= last:
            raise _Stop

    with deterministic_kernels(), contextlib.suppress(_Stop):
        fit(config, prepared, callbacks=[compare])
    difference = found[0] if found else None
    unlogged = tuple(m for m in REPLAYED_METRICS if m not in logged[min(logged)])
    return Replay(run_id, name, difference.epoch if difference else last, difference, unlogged)


def summary(result: Replay, tolerance: float) -> str:
    if result.difference is not None:
        return f"run {result.run_name} did not repeat: first difference at {result.difference}"
    within = f"within {tolerance:g} (relative)" if tolerance else "to the last digit"
    compared = len(REPLAYED_METRICS) - len(result.unlogged)
    unlogged = f"; not logged by the run: {', '.join(result.unlogged)}" if result.unlogged else ""
    return (
        f"run {result.run_name} repeated: every epoch's figures equal {within} "
        f"({result.epochs} epochs x {compared} metrics{unlogged})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(PROG, __doc__)
    parser.add_argument(
        "run",
        nargs="?",
        help="an MLflow run id, or models:/NAME@ALIAS or models:/NAME/N (default: the run behind "
        "`best` of the registered model --experiment names, else postag-tagger's)",
    )
    add_experiment_file_argument(parser, "whose sweep.registered_model names the default model")
    parser.add_argument("--train", help="the run's training file, where it lies here")
    parser.add_argument("--dev", help="the run's validation file, where it lies here")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="relative difference allowed (default 0: equal to the last digit, as on a CPU)",
    )
    args = parser.parse_args(argv)
    # One line an epoch is the progress; MLflow's download bar would split it.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri(Path.cwd()))
    data = {split: getattr(args, split) for split in ("train", "dev") if getattr(args, split)}
    try:
        result = replay(chosen_model(args.run, args.experiment), data, args.tolerance)
    except ModelNotFound as error:
        return fail(PROG, not_found_message(error), 2)
    except (ReplayRefused, ConfigError, DataFormatError, DataSourceError) as error:
        return fail(PROG, error, 2, kind="refused")
    except KeyboardInterrupt:
        return fail(PROG, "stopped", INTERRUPTED_EXIT_CODE, kind="interrupted")
    print(summary(result, args.tolerance))
    return 0 if result.equal else 1


if __name__ == "__main__":
    sys.exit(main())
