"""`make bench`, sweep level: where one sweep's wall time goes, with trials packed side by side
and the same sweep one trial at a time, measured in this one run on this machine.

With a CUDA GPU it runs the seed study (experiments/seed.yaml, 36 trials and the deep
baseline, a fraction of the GPU each); without one, the CPU study with shortened epochs
(`--config experiments/cpu.yaml` times it as `make sweep` runs it). Each run gets a fresh
MLflow store and Tune storage in a temporary folder, so the user's `mlruns/` and registry
are untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pipelines.bench.sweeps.clock import ClockedRunner, SweepClock, TimeSplit
from pipelines.cli import command_parser
from pipelines.experiment import add_experiment_arguments
from pipelines.sweep.driver import open_sweep, run_stages
from pipelines.sweep.setup.job import load_sweep, sweep_experiment
from pipelines.sweep.setup.settings import SweepSettings

# Without a GPU the CPU study would take ~13 minutes a run: cap each epoch's steps instead.
CPU_BATCHES_PER_EPOCH = 10


@dataclass
class SweepTiming:
    name: str
    max_concurrent_trials: int
    trials: int
    wall_seconds: float
    split: TimeSplit


def default_bench() -> tuple[Path, list[str]]:
    """The experiment to time, and its overrides, when none is given."""
    path, _ = sweep_experiment(os.environ.get("RAY_ADDRESS"))
    if torch.cuda.is_available():
        return path, []
    return path, [f"train.max_batches_per_epoch={CPU_BATCHES_PER_EPOCH}"]


def trial_slots(sweep: SweepSettings, concurrent: int) -> int:
    """How many trials run at once on this machine's CPUs (or GPU shares)."""
    if (torch.cuda.is_available() or sweep.logical_gpus) and sweep.gpus_per_trial > 0:
        fit = int(1 / sweep.gpus_per_trial)
    else:
        fit = int((os.cpu_count() or 1) / sweep.cpus_per_trial)
    return max(1, min(concurrent, fit))


def time_sweep(
    config: Path,
    overrides: list[str],
    name: str,
    concurrent: int,
    log: Path,
    store: Path | None = None,
) -> SweepTiming:
    """Run the sweep to completion in a throwaway store (or in `store`, a folder it keeps:
    its sqlite database, artifacts and Tune storage); its wall time and where it went.

    The sweep's own console goes to `log`: the bench prints only its figures.
    """
    overrides = [*overrides, f"sweep.max_concurrent_trials={concurrent}"]
    _, _, sweep = load_sweep(config, overrides)
    clock = SweepClock()
    log.parent.mkdir(parents=True, exist_ok=True)
    kept = contextlib.nullcontext(str(store)) if store is not None else None
    with (
        kept or tempfile.TemporaryDirectory(prefix="postag-bench-sweep-") as folder,
        log.open("a") as console,
        contextlib.redirect_stdout(console),
    ):
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
        try:
            started = time.time()
            # The sweep as make sweep opens and runs it, its stages timed by the clock.
            tune_dir = Path(folder) / "tune"
            with open_sweep(config, overrides, tune_dir, True, False) as (life, prepared):
                runner = ClockedRunner(prepared, clock=clock)
                outcome = run_stages(life, runner, force_best=False)
            ended = time.time()
        finally:
            if previous is None:
                os.environ.pop("MLFLOW_TRACKING_URI")
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous
    if outcome["interrupted"]:
        raise RuntimeError(f"bench sweep '{name}' was interrupted")
    split = clock.split(started, ended, trial_slots(sweep, concurrent))
    return SweepTiming(name, concurrent, sweep.expected_trials(), ended - started, split)


def as_json(timing: SweepTiming) -> dict:
    values = asdict(timing)
    values["split"]["idle"] = timing.split.idle
    return values


def format_table(timings: list[SweepTiming], device: str) -> str:
    """Slot-seconds by what filled them, each run a column with its share of the total."""
    header = "| where the time went | " + " | ".join(
        f"{t.name} ({t.split.slots} slot{'s' * (t.split.slots > 1)})" for t in timings
    )
    lines = [
        f"Sweep time on {device} ({timings[0].trials} trials), in slot-seconds "
        "(wall seconds x trial slots):",
        "",
        header + " |",
        "| --- |" + " ---: |" * len(timings),
    ]
    labels = [label for label, _ in timings[0].split.rows()]
    for row, label in enumerate(labels):
        cells = [
            f"{t.split.rows()[row][1]:,.0f} s ({100 * t.split.rows()[row][1] / t.split.total:.0f}%)"
            for t in timings
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| wall time | " + " | ".join(f"{t.wall_seconds:,.0f} s" for t in timings) + " |")
    lines.append(
        "| the driver's per-epoch MLflow logging, within reporting | "
        + " | ".join(f"{t.split.epoch_logging:,.1f} s" for t in timings)
        + " |"
    )
    if len(timings) == 2:
        ratio = timings[1].wall_seconds / timings[0].wall_seconds
        lines.append(f"\nWall time ratio ({timings[1].name} / {timings[0].name}): {ratio:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("postag bench-sweep", __doc__)
    add_experiment_arguments(parser, help="experiment YAML with a sweep section")
    parser.add_argument("--output", type=Path, default=Path("runs/bench_sweep.json"))
    parser.add_argument(
        "--packed-only",
        action="store_true",
        help="time the packed sweep alone, not also one trial at a time",
    )
    args = parser.parse_args(argv)
    if args.config is not None:
        config, overrides = args.config, list(args.overrides)
    else:
        config, defaults = default_bench()
        overrides = [*defaults, *args.overrides]
    _, _, sweep = load_sweep(config, overrides)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"bench-sweep: {config} {overrides} on {device}", flush=True)

    log = args.output.with_suffix(".log")
    print(f"  each sweep's own output: {log}", flush=True)
    runs = [("packed", sweep.max_concurrent_trials)]
    if not args.packed_only:
        runs.append(("one at a time", 1))
    timings = []
    for name, concurrent in runs:
        timings.append(time_sweep(config, overrides, name, concurrent, log))
        print(f"  {name}: {timings[-1].wall_seconds:,.0f} s", flush=True)
    table = format_table(timings, device)
    print(table, flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "config": str(config),
                "overrides": overrides,
                "device": device,
                "runs": [as_json(t) for t in timings],
                "table": table,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
