"""`make bench-serve`: the served model under load, against tagging in process.

Starts `postag serve` (what `make serve` runs) on loopback, with 1 and then 2 server
workers, and drives it with aiohttp clients, each posting its next request as soon as the
last is answered: real EWT test sentences, 1 and 32 a request, at 1, 4 and 16 clients at
once, each cell bounded by a count of requests and a time. For each it prints requests,
sentences and tokens a second, latency at p50, p95 and p99, and errors (any answer but 200).
Beside it, in the same run, the same sentences tagged in this process (`postag tag`'s path,
no HTTP): the ceiling, and the served figure's share of it.

The model has the configuration's architecture (default: experiments/best.yaml) with
untrained weights, logged to a store of the bench's own: its cost does not depend on what
the weights hold, and no sweep needs to have run. `--members 1 3` measures a single tagger
and then an ensemble of three (what `sweep.register: ensemble` ships) in the same run, and
says what the ensemble costs against one, in process and served.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import aiohttp
import mlflow

from pipelines.bench.serving.table import Cell, format_table
from pipelines.bench.training.text import BEST_EXPERIMENT, untrained_tagger
from pipelines.cli import command_parser
from pipelines.console import library_output_to
from pipelines.experiment import add_config_arguments, config_from_args
from pipelines.servers.local import ModelServer
from postag.data import dataset as datasets
from postag.data.readers import read_conllu
from postag.models.checkpoint import LoadedTagger, save_checkpoint
from postag.models.ensemble import ensemble_of, members_of
from postag.serving.inference import tag_sentences
from postag.serving.registry import log_tagger

WORKERS = (1, 2)
# For a server to load the model and answer /ping (each worker loads its own copy).
START_SECONDS = 120
SENTENCES_PER_REQUEST = (1, 32)
CLIENTS = (1, 4, 16)
REQUESTS_PER_CELL = 200  # or fewer, where the time bound comes first
SECONDS_PER_CELL = 20.0
REQUEST_TIMEOUT_SECONDS = 60
CEILING_ROUNDS = 3


def bench_taggers(config, members: int) -> LoadedTagger:
    """Untrained taggers of the configuration's shape: one, or an ensemble of `members`
    (each drawn from its own seed)."""
    taggers = [
        untrained_tagger(replace(config, train=replace(config.train, seed=config.train.seed + i)))
        for i in range(members)
    ]
    return taggers[0] if members == 1 else ensemble_of(taggers)


def log_bench_model(config, tagger: LoadedTagger, folder: Path) -> tuple[str, str]:
    """`tagger` (one, or an ensemble's members) logged to a sqlite store in `folder`; the
    store's URI and the model's."""
    prepared = datasets.load(config.data)
    checkpoints = [
        save_checkpoint(folder / f"bench-{i}.pt", member.model.state_dict(), config, prepared)
        for i, member in enumerate(members_of(tagger), 1)
    ]
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    # No mlflow.set_experiment: it would leave the experiment active in this process, for
    # a caller's next run in another store to be filed under.
    experiment_id = mlflow.MlflowClient(uri).create_experiment("bench-serve")
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name="bench-serve"):
            info = log_tagger(checkpoints)
    finally:
        mlflow.set_tracking_uri(None)
    return uri, info.model_uri


async def drive(url: str, bodies: list[bytes], clients: int, count: int, seconds: float):
    """Post `count` bodies (in turn) from `clients` clients at once, each posting its next
    as soon as its last is answered, stopping early at `seconds`; latencies and errors."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.monotonic() + seconds
    headers = {"Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal sent, errors
        while sent < count and time.monotonic() < deadline:
            body = bodies[sent % len(bodies)]
            sent += 1
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    errors += response.status != 200
            except (TimeoutError, aiohttp.ClientError):
                errors += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return latencies, errors, time.perf_counter() - started


def request_bodies(sentences: list[list[str]], size: int) -> list[tuple[bytes, int, int]]:
    """Requests of `size` sentences each, in order: (body, sentences, tokens)."""
    bodies = []
    for start in range(0, len(sentences) - size + 1, size):
        batch = sentences[start : start + size]
        body = json.dumps({"dataframe_records": [{"tokens": s} for s in batch]}).encode()
        bodies.append((body, len(batch), sum(len(s) for s in batch)))
    return bodies


def measure_cell(
    url: str, workers: int, size: int, clients: int, sentences, bound: tuple[int, float]
) -> Cell:
    bodies = request_bodies(sentences, size)
    count, seconds_bound = bound
    latencies, errors, seconds = asyncio.run(
        drive(url, [b for b, _, _ in bodies], clients, count, seconds_bound)
    )
    done = len(latencies)
    tokens = sum(bodies[i % len(bodies)][2] for i in range(done))
    cuts = statistics.quantiles([1000 * s for s in latencies], n=100) if done > 1 else [0.0] * 99
    return Cell(
        workers=workers,
        sentences_per_request=size,
        clients=clients,
        requests=done,
        errors=errors,
        seconds=seconds,
        requests_per_second=done / seconds,
        sentences_per_second=done * size / seconds,
        tokens_per_second=tokens / seconds,
        p50_ms=cuts[49],
        p95_ms=cuts[94],
        p99_ms=cuts[98],
    )


def in_process_ceiling(tagger, sentences: list[list[str]], size: int) -> float:
    """Sentences a second tagged in this process, `size` at a time, as `postag tag` does
    (the median of a few rounds over the same sentences)."""
    rates = []
    for _ in range(CEILING_ROUNDS):
        started = time.perf_counter()
        for start in range(0, len(sentences), size):
            tag_sentences(tagger, sentences[start : start + size])
        rates.append(len(sentences) / (time.perf_counter() - started))
    return statistics.median(rates)


def measure_server(
    model_uri: str,
    tracking_uri: str,
    workers: int,
    port: int,
    log: Path,
    clients: list[int],
    sentences: list[list[str]],
    bound: tuple[int, float],
) -> list[Cell]:
    """Every cell for one server of `workers` workers, started and stopped here."""
    server = ModelServer(log, tracking_uri, model_uri, workers, port, START_SECONDS)
    server.start()
    cells = []
    try:
        url = f"{server.url}/invocations"
        for size in SENTENCES_PER_REQUEST:
            for count in clients:
                cells.append(measure_cell(url, workers, size, count, sentences, bound))
                print(
                    f"  {workers} worker(s), {size} sentence(s) a request, {count} client(s): "
                    f"{cells[-1].requests} requests",
                    flush=True,
                )
    finally:
        server.stop()
    return cells


def measure_models(
    taggers: dict[int, LoadedTagger], config, args, sentences: list[list[str]], log: Path
) -> list[Cell]:
    """Every cell for each model in turn (by its members), each served from a store of its
    own."""
    cells = []
    with tempfile.TemporaryDirectory(prefix="postag-bench-serve-") as folder:
        for members, tagger in taggers.items():
            store = Path(folder) / f"members-{members}"
            store.mkdir()
            tracking_uri, model_uri = log_bench_model(config, tagger, store)
            cells += [
                replace(cell, members=members)
                for workers in args.workers
                for cell in measure_server(
                    model_uri,
                    tracking_uri,
                    workers,
                    args.port,
                    log,
                    args.clients,
                    sentences,
                    (args.requests, args.seconds),
                )
            ]
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("postag bench-serve", __doc__)
    add_config_arguments(parser, default=BEST_EXPERIMENT)
    parser.add_argument("--output", type=Path, default=Path("runs/bench_serve.json"))
    parser.add_argument("--port", type=int, default=5003)
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKERS))
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS))
    parser.add_argument("--requests", type=int, default=REQUESTS_PER_CELL, help="a cell's most")
    parser.add_argument("--seconds", type=float, default=SECONDS_PER_CELL, help="a cell's most")
    parser.add_argument(
        "--members",
        type=int,
        nargs="+",
        default=[1],
        help="taggers in the model, each count measured in turn: 1, or an ensemble's (1 3)",
    )
    args = parser.parse_args(argv)
    if min(args.members) < 1:
        parser.error("--members: a model holds one tagger at least")
    config = config_from_args(args)
    test = datasets.split_file(config.data, "test")
    sentences = [list(s.words) for s in read_conllu(test, config.data.tag_column)]
    taggers = {members: bench_taggers(config, members) for members in args.members}
    ceilings = {
        members: {
            size: in_process_ceiling(tagger, sentences, size) for size in SENTENCES_PER_REQUEST
        }
        for members, tagger in taggers.items()
    }
    log = args.output.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"bench-serve: the servers' and MLflow's messages go to {log}", flush=True)
    with library_output_to(log, verbose=False):
        cells = measure_models(taggers, config, args, sentences, log)
    table = format_table(cells, ceilings)
    print(table, flush=True)
    args.output.write_text(
        json.dumps({"cells": [asdict(c) for c in cells], "ceilings": ceilings, "table": table})
    )
    return 1 if any(c.errors for c in cells) else 0


if __name__ == "__main__":
    sys.exit(main())
