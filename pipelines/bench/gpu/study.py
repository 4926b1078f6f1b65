"""`make gpu-study`: the GPU study in one command, on a machine with a CUDA GPU and postag
installed (`make install`, or `make offline-install` on a node without network). In this
order:

1. `tests`: the gpu-marked tests (pytest -m gpu);
2. `study`: `make sweep EXPERIMENT=experiments/seed.yaml` in full (36 grid trials and the
   40 x 256 baseline, packed as the file says) into a fresh MLflow store, timed by the
   sweep clock (`make bench`'s), the GPU sampled by nvidia-smi every second;
3. `evaluate`: `make evaluate BEST` on that store;
4. `members`: where the version registered is an ensemble (`sweep.register: ensemble`), it
   and each of its members on EWT test and dev;
5. `compare`: a few trials of the study packed, then one at a time: the ratio;
6. `table`: where the GPU's time went.

Everything it writes is under one folder (`--out`, default runs/gpu-study), 8 files, the
store packed as one: tests.log, study.log, evaluate.log, gpu.csv, trials.csv, table.md,
figures.json, mlruns.tar.gz. Tune's checkpoints stay beside it, outside it.

    make gpu-study                                   # on a CUDA machine
    make gpu-study GPU_STUDY_ARGS="--steps study,evaluate,table"
    make gpu-study GPU_STUDY_ARGS="--experiment experiments/best.yaml --steps study,members,table"
    .venv/bin/python -m pipelines.bench.gpu.study --set sweep.logical_gpus=true ...   # a dry run

On a CPU with a logical GPU (`sweep.logical_gpus`, a Ray node that declares one) and the
study cut by --set, the same command runs end to end (tests/pipelines/bench/gpu/test_study.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import mlflow

from pipelines.bench.gpu.table import read_samples, study_table, timeline, trial_rows, write_trials
from pipelines.bench.sweeps.timing import SweepTiming, time_sweep
from pipelines.cli import command_parser
from pipelines.experiment import SEED_EXPERIMENT, add_overrides_argument
from pipelines.names import (
    MEMBERS_TAG,
    MODEL_URI_TAG,
    SEED_RUNS_TAG,
    SEEDS_TAG,
)
from postag.data.dataset import split_file
from postag.serving.registry import best_model_uri, find_version

STEPS = ("tests", "study", "evaluate", "members", "compare", "table")
# Left out of the packed store: model weights and Tune's checkpoints.
WEIGHTS_SUFFIXES = (".pt", ".pth")
OUT = Path("runs/gpu-study")
STORE = "mlruns"
GPU_QUERY = "timestamp,utilization.gpu,memory.used,memory.total"
# The few trials timed packed and then one at a time: 8, one per slot of seed.yaml's GPU
# shares, two epochs each, and the baseline cut to 6 batches of one epoch.
COMPARISON = [
    "sweep.name=gpu-compare",
    "sweep.space.model.hidden_size=[256, 128]",
    "sweep.space.model.num_layers=[3, 2]",
    "sweep.space.train.epochs=[2, 1]",
    "sweep.baseline.train.epochs=1",
    "sweep.baseline.train.max_batches_per_epoch=6",
]


@contextlib.contextmanager
def gpu_samples(path: Path) -> Iterator[None]:
    """nvidia-smi's utilisation and memory every second into `path` while the block runs;
    a line saying why not where there is no nvidia-smi (a CPU dry run)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        path.write_text("# no nvidia-smi on this machine: no GPU samples\n")
        yield
        return
    with path.open("w") as out:
        sampler = subprocess.Popen(
            [smi, f"--query-gpu={GPU_QUERY}", "--format=csv,nounits", "-l", "1"], stdout=out
        )
        try:
            yield
        finally:
            sampler.terminate()
            sampler.wait()


def run_tests(out: Path) -> int:
    """The gpu-marked tests, their output in tests.log; their exit code (5: none ran)."""
    with (out / "tests.log").open("w") as log:
        command = [sys.executable, "-m", "pytest", "-m", "gpu", "-rs", "-q", "-p", "no:randomly"]
        return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode


def run_study(out: Path, experiment: Path, overrides: list[str]) -> SweepTiming:
    """The experiment's sweep (seed.yaml's by default), packed as the file says, into
    out/mlruns; its timing."""
    store = out / STORE
    store.mkdir(parents=True, exist_ok=True)
    log = out / "study.log"
    at_once = packed(experiment, overrides)
    timing = time_sweep(experiment, overrides, "study", at_once, log, store)
    (out / "study.json").write_text(json.dumps(asdict(timing)))
    return timing


def packed(experiment: Path, overrides: list[str]) -> int:
    """The trials at once that the experiment file (with `overrides`) asks for."""
    from pipelines.sweep.setup.job import load_sweep

    return load_sweep(experiment, overrides)[2].max_concurrent_trials


def run_evaluation(out: Path) -> int:
    """`make evaluate BEST` on the study's store: its console in evaluate.log, its figures in
    the store (evaluation.json, reports/)."""
    from pipelines.commands.evaluate import main as evaluate

    store = out / STORE
    with (out / "evaluate.log").open("w") as log, contextlib.redirect_stdout(log):
        arguments = ["--json", str(store / "evaluation.json"), "--reports", str(store / "reports")]
        return evaluate(arguments)


def evaluate_members(out: Path, experiment: Path, overrides: list[str]) -> tuple[dict, int]:
    """The registered version and, where it is an ensemble, each member, on the experiment's
    test and dev files (EWT's by default): {model: {split: headline figures}} in
    members.json, and how many evaluations were asked for; their consoles (a failed one's
    error too) go to evaluate.log."""
    from pipelines.commands.evaluate import main as evaluate
    from pipelines.sweep.setup.job import load_sweep

    models = {"registered": best_model_uri()}
    version = find_version(models["registered"])
    client = mlflow.MlflowClient()
    # An ensemble's members, or the seeds of a configuration registered by its best seed.
    members = version.tags.get(MEMBERS_TAG, version.tags.get(SEED_RUNS_TAG, ""))
    for seed, run_id in zip(
        version.tags.get(SEEDS_TAG, "").split(","), members.split(","), strict=True
    ):
        if run_id:
            models[f"seed{seed}"] = client.get_run(run_id).data.tags[MODEL_URI_TAG]
    data = load_sweep(experiment, overrides)[1].data
    files = {split: split_file(data, split) for split in ("test", "dev")}
    figures: dict[str, dict[str, dict]] = {}
    reports = out / STORE / "reports"
    # Test first, and members.json written after each model: a study stopped early still
    # leaves whatever is done.
    with (out / "evaluate.log").open("a") as log, contextlib.redirect_stdout(log):
        for split, path in files.items():
            for name, uri in models.items():
                found = reports / f"{name}-{split}.json"
                arguments = ["--model", uri, "--data", str(path)]
                arguments += ["--json", str(found)]
                if evaluate([*arguments, "--reports", str(reports / f"{name}-{split}")]) == 0:
                    figures.setdefault(name, {})[split] = json.loads(found.read_text())
                (out / "members.json").write_text(json.dumps(figures))
    return figures, len(files) * len(models)


def run_comparison(out: Path, overrides: list[str]) -> list[SweepTiming]:
    """A few of the study's trials packed, then one at a time, in throwaway stores."""
    settings = [*COMPARISON, *overrides]
    log = out / "study.log"
    at_once = packed(SEED_EXPERIMENT, settings)
    timings = [time_sweep(SEED_EXPERIMENT, settings, "packed", at_once, log)]
    timings.append(time_sweep(SEED_EXPERIMENT, settings, "one at a time", 1, log))
    (out / "compare.json").write_text(json.dumps([asdict(t) for t in timings]))
    return timings


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"


def pack_store(out: Path) -> Path:
    """The store as one file: its database (every run, param and metric), its small
    artifacts (config.json, trials.md, plots, the evaluation's reports); not the models'
    weights nor Tune's checkpoints, which stay on the machine (the seed study's come to
    about 800 MB; a file that comes back holds 16 MiB)."""
    archive = out / f"{STORE}.tar.gz"

    def small(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        weights = member.name.endswith(WEIGHTS_SUFFIXES)
        return None if weights or f"{STORE}/tune" in member.name else member

    with tarfile.open(archive, "w:gz") as tar:
        tar.add(out / STORE, arcname=STORE, filter=small)
    shutil.rmtree(out / STORE)
    return archive


def make_table(out: Path) -> str:
    """trials.csv, table.md and figures.json, from the study's store, its timing and the
    GPU samples."""
    rows = trial_rows()
    write_trials(rows, out / "trials.csv")
    samples = read_samples(out / "gpu.csv") if (out / "gpu.csv").is_file() else []
    evaluation = out / STORE / "evaluation.json"
    tested = json.loads(evaluation.read_text()) if evaluation.is_file() else None
    table = study_table(out, rows, timeline(rows, samples), tested, device_name())
    (out / "table.md").write_text(table)
    figures = {"study": json.loads((out / "study.json").read_text()), "tested": tested}
    if (out / "members.json").is_file():
        figures["members"] = json.loads((out / "members.json").read_text())
    (out / "figures.json").write_text(json.dumps(figures, indent=1))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("postag gpu-study", __doc__)
    add_overrides_argument(parser, "override a field of the study (and of the comparison)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--experiment", type=Path, default=SEED_EXPERIMENT, help="the sweep studied"
    )
    parser.add_argument("--steps", default=",".join(STEPS), help=f"of {','.join(STEPS)}")
    args = parser.parse_args(argv)
    steps = args.steps.split(",")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{out / STORE / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    started = time.monotonic()
    if "tests" in steps:
        print(f"gpu-study: gpu tests: exit {run_tests(out)} (tests.log)", flush=True)
    with gpu_samples(out / "gpu.csv"):
        if "study" in steps:
            timing = run_study(out, args.experiment, args.overrides)
            print(
                f"gpu-study: the study, {timing.wall_seconds / 60:.1f} min (study.log)", flush=True
            )
        if "evaluate" in steps:
            print(
                f"gpu-study: make evaluate BEST: exit {run_evaluation(out)} (evaluate.log)",
                flush=True,
            )
        if "members" in steps:
            figures, asked = evaluate_members(out, args.experiment, args.overrides)
            done = sum(len(splits) for splits in figures.values())
            print(
                f"gpu-study: {done} of {asked} evaluations, {len(figures)} models on test and "
                "dev (evaluate.log)",
                flush=True,
            )
        if "compare" in steps:
            timings = run_comparison(out, args.overrides)
            ratio = timings[1].wall_seconds / timings[0].wall_seconds
            print(f"gpu-study: one at a time / packed: {ratio:.2f}x", flush=True)
    if "table" in steps:
        print(make_table(out), flush=True)
        pack_store(out)
        for name in ("study.json", "compare.json", "members.json"):
            (out / name).unlink(missing_ok=True)
    print(f"gpu-study: {(time.monotonic() - started) / 60:.1f} min in all; everything in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
