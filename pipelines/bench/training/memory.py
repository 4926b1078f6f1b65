"""`make bench`, memory: a training process's resident memory at the end of each epoch, for
experiments/best.yaml's model on shortened epochs and for the CPU study's 40 x 256 deep
baseline, each trained as a trial trains (one thread, its state saved every epoch).

Each case runs in a process of its own, so that one's memory is not counted in the other's.
The figures to read: the growth from epoch 2 (the first is still filling the allocator) to
the last, and the peak.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pipelines.cli import command_parser
from pipelines.experiment import add_overrides_argument, read_experiment, run_config_from
from pipelines.sweep.setup.job import CPU_EXPERIMENT, load_sweep
from pipelines.sweep.trial.trainable import STATE_FILE
from postag.config import RunConfig, apply_overrides, with_values
from postag.data import dataset as datasets
from postag.training.resources import MEGABYTE, resident_megabytes
from postag.training.trainer import EpochResult, TrainingState, fit

BEST_EXPERIMENT = Path("experiments/best.yaml")
# Case name -> (what it is, training overrides). Epochs are shortened to keep the bench short.
CASES = {
    "best": (
        "best.yaml's model, 40 batches an epoch",
        ["train.max_batches_per_epoch=40", "train.epochs=10"],
    ),
    "baseline": ("the CPU study's 40 x 256 baseline, 6 batches an epoch", ["train.epochs=6"]),
}


@dataclass
class MemoryTrace:
    case: str
    what: str
    resident_megabytes: list[float]  # at the end of each epoch
    peak_megabytes: list[float]  # the most the process has held, by the end of each epoch

    @property
    def growth(self) -> float:
        """From epoch 2 to the last, as a share of epoch 2's."""
        second, last = self.resident_megabytes[1], self.resident_megabytes[-1]
        return (last - second) / second


def case_config(case: str, extra: list[str]) -> RunConfig:
    """The run config of a case, one torch thread as a trial on one CPU gets; `extra`
    overrides (data.train=...) come last."""
    overrides = [*CASES[case][1], "train.num_threads=1", "train.device=cpu", *extra]
    if case == "best":
        return run_config_from(read_experiment(BEST_EXPERIMENT, overrides))
    values, _, sweep = load_sweep(CPU_EXPERIMENT, [])
    base = {k: v for k, v in values.items() if k != "sweep"}
    return run_config_from(apply_overrides(with_values(base, sweep.baseline), overrides))


def trace_one(case: str, extra: list[str]) -> MemoryTrace:
    """Train the case here, saving its state each epoch as a trial does; memory per epoch."""
    config = case_config(case, extra)
    prepared = datasets.load(config.data)
    trace = MemoryTrace(case, CASES[case][0], [], [])
    with tempfile.TemporaryDirectory(prefix="postag-bench-memory-") as folder:

        def measure_and_checkpoint(result: EpochResult, state: TrainingState) -> None:
            # Read where a trial reads it, before its checkpoint is written.
            trace.resident_megabytes.append(resident_megabytes())
            torch.save(state.to_dict(), Path(folder) / STATE_FILE)
            trace.peak_megabytes.append(peak_megabytes())
            print(
                f"  {case} epoch {result.epoch}: {trace.resident_megabytes[-1]:,.0f} MB, "
                f"peak {trace.peak_megabytes[-1]:,.0f} MB",
                flush=True,
            )

        fit(config, prepared, callbacks=[measure_and_checkpoint])
    return trace


def peak_megabytes() -> float:
    """The most this process has held resident (Linux reports it in kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MEGABYTE


def trace_in_child(case: str, extra: list[str], output: Path) -> MemoryTrace:
    sets = [f"--set={override}" for override in extra]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.bench.training.memory",
            "--case",
            case,
            "--output",
            str(output),
            *sets,
        ],
        check=True,
    )
    return MemoryTrace(**json.loads(output.read_text()))


def format_table(traces: list[MemoryTrace]) -> str:
    def row(label, cells) -> str:
        return f"| {label} | " + " | ".join(cells) + " |"

    epochs = max(len(t.resident_megabytes) for t in traces)
    lines = [
        "Resident memory at the end of each epoch (MB), one process per case:",
        "",
        row("epoch", [t.case for t in traces]),
        "| ---: |" + " ---: |" * len(traces),
    ]
    for epoch in range(epochs):
        cells = [
            f"{t.resident_megabytes[epoch]:,.0f}" if epoch < len(t.resident_megabytes) else ""
            for t in traces
        ]
        lines.append(row(epoch + 1, cells))
    lines.append(row("growth, epoch 2 to last", [f"{100 * t.growth:+.1f}%" for t in traces]))
    lines.append(row("peak", [f"{t.peak_megabytes[-1]:,.0f}" for t in traces]))
    lines += ["", *[f"{t.case}: {t.what}" for t in traces]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("postag bench-memory", __doc__)
    parser.add_argument("--case", choices=sorted(CASES), help="trace this case alone, here")
    parser.add_argument("--output", type=Path, default=Path("runs/bench_memory.json"))
    add_overrides_argument(
        parser, "override a field of every case, e.g. --set data.train=my.conllu (repeatable)"
    )
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.case is not None:
        trace = trace_one(args.case, args.overrides)
        args.output.write_text(json.dumps(asdict(trace)))
        return 0
    print("bench-memory: resident memory per epoch, each case in a process of its own", flush=True)
    traces = [
        trace_in_child(case, args.overrides, args.output.with_name(f"bench_memory_{case}.json"))
        for case in CASES
    ]
    table = format_table(traces)
    print(table, flush=True)
    args.output.write_text(
        json.dumps({"traces": [asdict(t) for t in traces], "table": table}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
