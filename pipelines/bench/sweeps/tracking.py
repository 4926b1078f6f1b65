"""`make bench-tracking` / `postag bench-tracking`: the tracking path at scale, simulated.

A sweep of 100 and then 1,000 trials of 20 epochs each, whose training is a no-op that
reports every epoch at once, with the keys and as many metrics as a real trial. Everything
else is the sweep's own: its driver (the sweep's life, the search stage under Ray Tune) and
its MLflow callback, writing to a real `mlflow server` on a real PostgreSQL (Debian's),
both started on loopback for the bench and thrown away after. Trials that train nothing
leave no model, so the sweep stops after its search, before registration.

Each size runs in a process of its own, so that its peak memory is its own driver's. It
prints epochs logged per second, trials per minute, the driver's peak memory and share of
time spent writing to MLflow, and whether every epoch of every trial arrived exactly once.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from pipelines.bench.sweeps.simulated import (
    CONCURRENT,
    TrackingFigures,
    load_simulated_sweep,
    measure,
)
from pipelines.cli import INTERRUPTED_EXIT_CODE, command_parser, fail
from pipelines.experiment import add_overrides_argument
from pipelines.servers.local import MlflowServer, PostgresServer, ServiceDidNotStart
from pipelines.sweep.lifecycle.signals import stop_signals_as_ctrl_c
from postag.config import ConfigError
from postag.data import dataset as datasets
from postag.data.readers import DataFormatError
from postag.data.sources import DataSourceError

PROG = "postag bench-tracking"
SIZES = (100, 1000)
EPOCHS = 20


def measure_in_own_process(
    trials: int, args: argparse.Namespace, uri: str, folder: Path, log: Path
) -> TrackingFigures:
    """`measure` in a fresh process: its peak memory is that sweep's driver's alone."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        work = pool.submit(measure, trials, args.epochs, args.overrides, uri, folder, log)
        figures = work.result()
    return TrackingFigures(**figures)


def format_table(runs: list[TrackingFigures]) -> str:
    small, large = runs[0], runs[-1]
    lines = [
        f"Simulated sweeps ({small.epochs} epochs a trial, training a no-op, {CONCURRENT} "
        "trials at once), one driver writing to `mlflow server` on PostgreSQL:",
        "",
        "| trials | epochs logged | epochs/s | trials/min | driver busy writing "
        "| a run made / an epoch logged / a run closed "
        "| driver peak memory | its growth in the stage | every epoch exactly once |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    lines += [
        f"| {r.trials:,} | {r.trials * r.epochs:,} | {r.epochs_per_second:,.1f} "
        f"| {r.trials_per_minute:,.0f} | {100 * r.driver_writing_seconds / r.seconds:.0f}% "
        f"| {1000 * r.run_creation_seconds / r.trials:,.0f} / "
        f"{1000 * r.epoch_logging_seconds / (r.trials * r.epochs):,.0f} / "
        f"{1000 * r.run_closing_seconds / r.trials:,.0f} ms "
        f"| {r.driver_peak_megabytes:,.0f} MB | {r.driver_growth_megabytes:+,.0f} MB "
        f"| {'yes' if r.exactly_once else describe_loss(r)} |"
        for r in runs
    ]
    if len(runs) > 1:
        lines.append(
            f"\nFrom {small.trials:,} to {large.trials:,} trials: epochs/s "
            f"x{large.epochs_per_second / small.epochs_per_second:.2f}, driver peak memory "
            f"x{large.driver_peak_megabytes / small.driver_peak_megabytes:.2f}."
        )
    lines.append(
        f"At one epoch a minute per trial, this driver keeps up with about "
        f"{60 * large.epochs_per_second:,.0f} trials at once."
    )
    return "\n".join(lines)


def describe_loss(r: TrackingFigures) -> str:
    return (
        f"NO: {r.trials - r.runs_finished} runs unfinished, {r.epochs_missing} epochs "
        f"missing, {r.epochs_repeated} repeated"
    )


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(PROG, __doc__)
    parser.add_argument("--trials", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    add_overrides_argument(
        parser, "a value of the simulated sweep's experiment (data.train=PATH, ...)"
    )
    parser.add_argument("--output", type=Path, default=Path("runs/bench_tracking.json"))
    args = parser.parse_args(argv)
    try:
        # SIGTERM (`timeout`, a scheduler) as Ctrl-C: the servers started here are stopped.
        with stop_signals_as_ctrl_c():
            return run_bench(args)
    except (ConfigError, DataFormatError, DataSourceError, ServiceDidNotStart) as error:
        return fail(PROG, error, 2)
    except KeyboardInterrupt:  # its servers and their data are gone with it
        why = "stopped before the table; nothing written"
        return fail(PROG, why, INTERRUPTED_EXIT_CODE, kind="interrupted")


def run_bench(args: argparse.Namespace) -> int:
    log = args.output.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    print(f"bench-tracking: the sweeps' and servers' messages go to {log}", flush=True)
    with tempfile.TemporaryDirectory(prefix="postag-bench-tracking-") as work:
        folder = Path(work)
        check_and_prepare(max(args.trials), args, folder)
        # Not under a folder only root may enter: PostgreSQL runs as its own user.
        database = Path(tempfile.mkdtemp(prefix="postag-bench-postgres-"))
        try:
            runs = measure_each_size(args, folder, database, log)
        finally:
            shutil.rmtree(database, ignore_errors=True)
    table = format_table(runs)
    print(table, flush=True)
    args.output.write_text(
        json.dumps({"runs": [asdict(r) for r in runs], "table": table}, indent=2)
    )
    return 0 if all(r.exactly_once for r in runs) else 1


def check_and_prepare(trials: int, args: argparse.Namespace, folder: Path) -> None:
    """The simulated experiment with the user's values, checked and its data prepared here,
    before any server starts: a bad value or a missing file is one line, not a traceback
    from the measuring process."""
    _, _, run, _ = load_simulated_sweep(trials, args.epochs, args.overrides, folder)
    datasets.load(run.data)  # cached for the measuring processes


def measure_each_size(
    args: argparse.Namespace, folder: Path, database: Path, log: Path
) -> list[TrackingFigures]:
    """Each size in turn against one PostgreSQL and one `mlflow server`, started here."""
    postgres = PostgresServer(database)
    postgres.start()
    server = MlflowServer(folder / "server", backend_store=postgres.uri)
    try:
        server.start()
        print(f"  mlflow server {server.uri} on PostgreSQL {postgres.uri}", flush=True)
        runs = []
        for trials in args.trials:
            started = time.monotonic()
            runs.append(measure_in_own_process(trials, args, server.uri, folder, log))
            print(
                f"  {trials:,} trials: {runs[-1].epochs_per_second:,.1f} epochs/s "
                f"({time.monotonic() - started:,.0f} s in all)",
                flush=True,
            )
        return runs
    finally:
        server.stop()
        postgres.stop()


if __name__ == "__main__":
    sys.exit(main())
