"""`make bench-scale` / `postag bench-scale`: the same eight small trials on one node with
1 CPU, on two nodes with 1 CPU each, and packed on one node with 2 CPUs.

Each layout is a real Ray cluster on this machine (a raylet per node, on loopback), started
for its run and stopped after; the sweep's driver is a process of its own, with a
throwaway MLflow store. The figures are wall times
from the sweep's start to its registered winner, and ratios against one node with 1 CPU
measured in the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
from ray.cluster_utils import Cluster

from pipelines.cli import command_parser, sweep_command
from pipelines.names import EXPERIMENT_NAME, FINISHED, ROLE_TAG, SWEEP_ROLE
from pipelines.sweep.setup.job import load_sweep
from pipelines.sweep.trial.trainable import NODE_KEY

# The eight small trials it times.
SCALE_EXPERIMENT = Path("experiments/scale-out.yaml")


@dataclass
class ScaleTiming:
    name: str
    trials: int  # finished, of the sweep's
    wall_seconds: float
    nodes_used: int  # Ray nodes the trials ran on


@dataclass(frozen=True)
class Layout:
    """Ray nodes on this machine, by their CPU counts: (1,), (1, 1), (2,)."""

    key: str  # what --layout calls it
    name: str
    node_cpus: tuple[int, ...]


LAYOUTS = (
    Layout("1cpu", "one node, 1 CPU", (1,)),
    Layout("2nodes", "two nodes, 1 CPU each", (1, 1)),
    Layout("2cpus", "one node, 2 CPUs", (2,)),
)


def time_on(layout: Layout, config: Path, trials: int, log: Path) -> ScaleTiming:
    """The sweep's wall time on a fresh cluster of `layout`, its driver a process of its
    own that connects to the cluster, as `make sweep` with RAY_ADDRESS does."""
    head, *workers = layout.node_cpus
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": head, "num_gpus": 0})
    try:
        for cpus in workers:
            cluster.add_node(num_cpus=cpus, num_gpus=0)
        cluster.wait_for_nodes()
        with tempfile.TemporaryDirectory(prefix="postag-bench-scale-") as folder:
            env = {
                **os.environ,
                "RAY_ADDRESS": cluster.address,
                "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db",
            }
            command = sweep_command(
                config, f"{folder}/tune", "--set", f"sweep.max_concurrent_trials={trials}"
            )
            with log.open("a") as console:
                started = time.perf_counter()
                done = subprocess.run(command, env=env, stdout=console, stderr=subprocess.STDOUT)
                seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(
                    f"the sweep on {layout.name} failed (exit {done.returncode}): {log}"
                )
            finished, nodes = trials_and_nodes(env["MLFLOW_TRACKING_URI"])
    finally:
        cluster.shutdown()
    return ScaleTiming(layout.name, finished, seconds, nodes)


def trials_and_nodes(uri: str) -> tuple[int, int]:
    """How many trials of the store's one sweep finished, and on how many Ray nodes."""
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    runs = client.search_runs([experiment.experiment_id], f"tags.{ROLE_TAG} != '{SWEEP_ROLE}'")
    finished = [run for run in runs if run.info.status == FINISHED]
    return len(finished), len({run.data.tags.get(NODE_KEY) for run in finished})


def format_table(timings: list[ScaleTiming]) -> str:
    reference = timings[0].wall_seconds
    lines = [
        f"The same {timings[0].trials} trials on Ray clusters on this machine:",
        "",
        f"| layout | nodes used | wall time | speed-up against {timings[0].name} |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {t.name} | {t.nodes_used} | {t.wall_seconds:,.0f} s | "
        f"{reference / t.wall_seconds:.2f}x |"
        for t in timings
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("postag bench-scale", __doc__)
    parser.add_argument("--config", type=Path, default=SCALE_EXPERIMENT)
    parser.add_argument("--output", type=Path, default=Path("runs/bench_scale.json"))
    parser.add_argument(
        "--layout",
        action="append",
        choices=[layout.key for layout in LAYOUTS],
        help="time only this layout (repeatable; default: all three, in this order: "
        + ", ".join(f"{layout.key} = {layout.name}" for layout in LAYOUTS)
        + "); speed-ups are against the first timed",
    )
    args = parser.parse_args(argv)
    layouts = [layout for layout in LAYOUTS if args.layout is None or layout.key in args.layout]
    _, _, sweep = load_sweep(args.config, [])
    trials = sweep.expected_trials()
    log = args.output.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"bench-scale: {args.config}, {trials} trials on each of {len(layouts)} layouts; "
        f"each sweep's own output: {log}",
        flush=True,
    )
    timings = []
    for layout in layouts:
        timings.append(time_on(layout, args.config, trials, log))
        print(f"  {layout.name}: {timings[-1].wall_seconds:,.0f} s", flush=True)
    table = format_table(timings)
    print(table, flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {"config": str(args.config), "runs": [asdict(t) for t in timings], "table": table},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
