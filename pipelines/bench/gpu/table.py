"""The GPU study's table (pipelines/bench/gpu/study.py): each trial's row read back from
the study's MLflow store, a per-minute timeline of trials at once and of nvidia-smi's
samples, and table.md put together with `make bench`'s split of wall time x slots."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import mlflow

from pipelines.bench.sweeps.clock import TimeSplit
from pipelines.bench.sweeps.timing import SweepTiming, format_table
from pipelines.names import BASELINE_ROLE, EXPERIMENT_NAME, ROLE_TAG, SWEEP_ROLE
from pipelines.tracking import child_runs

# A bin of the timeline: trials at once, GPU utilisation and memory, per minute.
BIN_SECONDS = 60


def trial_rows() -> list[dict]:
    """Each run of the study (the store is MLflow's current one): its shape, status, best
    score, median epoch time and interval."""
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME).experiment_id
    (parent,) = client.search_runs([experiment], f"tags.{ROLE_TAG} = '{SWEEP_ROLE}'")
    rows = []
    for run in child_runs(experiment, parent.info.run_id):
        history = client.get_metric_history(run.info.run_id, "epoch_seconds")
        epochs = sorted(m.value for m in history)
        params, metrics = run.data.params, run.data.metrics
        rows.append(
            {
                "run": run.info.run_name,
                "role": run.data.tags.get(ROLE_TAG),
                "hidden": params.get("model.hidden_size"),
                "layers": params.get("model.num_layers"),
                "epochs": params.get("train.epochs"),
                "status": run.info.status,
                "best_val_accuracy": metrics.get("best_val_accuracy"),
                "median_epoch_seconds": epochs[len(epochs) // 2] if epochs else None,
                "grad_norm_first_lstm": metrics.get("grad_norm_first_lstm"),
                "grad_norm_last_lstm": metrics.get("grad_norm_last_lstm"),
                "started": run.info.start_time / 1000,
                "ended": (run.info.end_time or run.info.start_time) / 1000,
            }
        )
    return rows


def timeline(rows: list[dict], samples: list[dict]) -> list[dict]:
    """Per minute of the study: trials running (mean), GPU utilisation (mean) and memory
    used (max), from the runs' intervals and nvidia-smi's samples."""
    if not rows:
        return []
    start, end = min(r["started"] for r in rows), max(r["ended"] for r in rows)
    bins = []
    for left in range(int(start), int(end) + 1, BIN_SECONDS):
        right = left + BIN_SECONDS
        overlap = sum(max(0.0, min(r["ended"], right) - max(r["started"], left)) for r in rows)
        inside = [s for s in samples if left <= s["time"] < right]
        bins.append(
            {
                "minute": (left - int(start)) // BIN_SECONDS + 1,
                "trials_at_once": overlap / BIN_SECONDS,
                "gpu_utilisation_percent": mean([s["utilisation"] for s in inside]),
                "gpu_memory_used_mib": max((s["memory"] for s in inside), default=None),
            }
        )
    return bins


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def read_samples(path: Path) -> list[dict]:
    """nvidia-smi's CSV as (time, utilisation %, memory used MiB); none from a dry run."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    samples = []
    for row in csv.reader(lines[1:]):
        stamp = time.mktime(time.strptime(row[0].strip().split(".")[0], "%Y/%m/%d %H:%M:%S"))
        samples.append({"time": stamp, "utilisation": float(row[1]), "memory": float(row[2])})
    return samples


def write_trials(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["run"])
        writer.writeheader()
        writer.writerows(rows)


def percent(value: float | None) -> str:
    return f"{100 * value:.2f}%" if value is not None else "-"


def figure(value: float | None, pattern: str = "{:.1f}") -> str:
    return pattern.format(value) if value is not None else "-"


def study_table(
    out: Path, rows: list[dict], bins: list[dict], tested: dict | None, device: str
) -> str:
    """table.md: the study's figures, its time split (and the comparison's), its timeline,
    and each trial's row, the baseline's first."""
    study = timing_of(json.loads((out / "study.json").read_text()))
    lines = [f"# The GPU study: {study.trials} trials, {study.wall_seconds / 60:.1f} min wall", ""]
    if tested is not None:
        lines.append(f"- registered `best`: test accuracy {percent(tested['token_accuracy'])}")
    epoch_times = sorted(r["median_epoch_seconds"] for r in rows if r["median_epoch_seconds"])
    if epoch_times:
        lines.append(
            f"- epoch time per trial (median of its epochs): {epoch_times[0]:.1f} s to "
            f"{epoch_times[-1]:.1f} s, median {epoch_times[len(epoch_times) // 2]:.1f} s"
        )
    lines += ["", format_table([study], device), ""]
    if (out / "compare.json").is_file():
        timings = [timing_of(t) for t in json.loads((out / "compare.json").read_text())]
        lines += [format_table(timings, device), ""]
    return "\n".join([*lines, *timeline_lines(bins), "", *trial_lines(rows)]) + "\n"


def timing_of(values: dict) -> SweepTiming:
    return SweepTiming(**{**values, "split": TimeSplit(**values["split"])})


def timeline_lines(bins: list[dict]) -> list[str]:
    lines = [
        "| minute | trials at once | GPU utilisation | GPU memory used |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for b in bins:
        utilisation = figure(b["gpu_utilisation_percent"], "{:.0f}%")
        memory = figure(b["gpu_memory_used_mib"], "{:,.0f} MiB")
        lines.append(f"| {b['minute']} | {b['trials_at_once']:.1f} | {utilisation} | {memory} |")
    return lines


def trial_lines(rows: list[dict]) -> list[str]:
    lines = [
        "| run | hidden | layers | epochs | status | best val acc | median epoch "
        "| grad norm first / last LSTM layer |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    order = sorted(rows, key=lambda r: (r["role"] != BASELINE_ROLE, -(r["best_val_accuracy"] or 0)))
    for r in order:
        first = figure(r["grad_norm_first_lstm"], "{:.2e}")
        last = figure(r["grad_norm_last_lstm"], "{:.2e}")
        epoch = figure(r["median_epoch_seconds"], "{:.1f} s")
        shape = f"{r['hidden']} | {r['layers']} | {r['epochs']}"
        lines.append(
            f"| {r['run']} | {shape} | {r['status']} | {percent(r['best_val_accuracy'])} "
            f"| {epoch} | {first} / {last} |"
        )
    return lines
