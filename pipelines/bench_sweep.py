"""`make bench`, sweep level: one sweep's wall time with trials packed side by side against
the same sweep run one trial at a time, measured in this one run on this machine.

With a CUDA GPU it runs the seed study (experiments/seed.yaml, 36 trials and the deep
baseline, a fraction of the GPU each); without one, the CPU study with shortened epochs.
Each run gets a fresh MLflow store and Tune storage in a temporary folder, so the user's
`mlruns/` and registry are untouched.
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

from pipelines.cli import command_parser
from pipelines.experiment import add_experiment_arguments, load_sweep, sweep_experiment
from pipelines.sweep import run_sweep

# Without a GPU the CPU study would take ~15 minutes a run: cap each epoch's steps instead.
CPU_BATCHES_PER_EPOCH = 10


@dataclass
class SweepTiming:
    name: str
    max_concurrent_trials: int
    trials: int
    wall_seconds: float


def default_bench() -> tuple[Path, list[str]]:
    """The experiment to time, and its overrides, when none is given."""
    path, _ = sweep_experiment(os.environ.get("RAY_ADDRESS"))
    if torch.cuda.is_available():
        return path, []
    return path, [f"train.max_batches_per_epoch={CPU_BATCHES_PER_EPOCH}"]


def time_sweep(
    config: Path, overrides: list[str], name: str, concurrent: int, trials: int, log: Path
) -> SweepTiming:
    """Run the sweep to completion in a throwaway store; its wall time from start to end.

    The sweep's own console goes to `log`: the bench prints only its figures.
    """
    overrides = [*overrides, f"sweep.max_concurrent_trials={concurrent}"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="postag-bench-sweep-") as folder,
        log.open("a") as console,
        contextlib.redirect_stdout(console),
    ):
        previous = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
        try:
            started = time.perf_counter()
            outcome = run_sweep(config, overrides, Path(folder) / "tune", fresh=True)
            seconds = time.perf_counter() - started
        finally:
            if previous is None:
                os.environ.pop("MLFLOW_TRACKING_URI")
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous
    if outcome["interrupted"]:
        raise RuntimeError(f"bench sweep '{name}' was interrupted")
    return SweepTiming(name, concurrent, trials, seconds)


def format_table(packed: SweepTiming, serial: SweepTiming, device: str) -> str:
    lines = [
        f"Sweep wall time on {device} ({packed.trials} trials):",
        "",
        "| run | trials at once | wall time |",
        "| --- | ---: | ---: |",
    ]
    for timing in (serial, packed):
        lines.append(
            f"| {timing.name} | {timing.max_concurrent_trials} | {timing.wall_seconds:,.0f} s |"
        )
    ratio = serial.wall_seconds / packed.wall_seconds
    lines.append(f"| ratio (one at a time / packed) | | {ratio:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("postag bench-sweep", __doc__)
    add_experiment_arguments(parser, help="experiment YAML with a sweep section")
    parser.add_argument("--output", type=Path, default=Path("runs/bench_sweep.json"))
    args = parser.parse_args(argv)
    if args.config is not None:
        config, overrides = args.config, list(args.overrides)
    else:
        config, defaults = default_bench()
        overrides = [*defaults, *args.overrides]
    _, _, sweep = load_sweep(config, overrides)
    trials = sweep.expected_trials()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"bench-sweep: {config} {overrides} on {device}", flush=True)

    log = args.output.with_suffix(".log")
    print(f"  each sweep's own output: {log}", flush=True)
    packed = time_sweep(config, overrides, "packed", sweep.max_concurrent_trials, trials, log)
    serial = time_sweep(config, overrides, "one at a time", 1, trials, log)
    table = format_table(packed, serial, device)
    print(table, flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {"config": str(config), "overrides": overrides, "device": device,
             "runs": [asdict(packed), asdict(serial)], "table": table},
            indent=2,
        )
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
