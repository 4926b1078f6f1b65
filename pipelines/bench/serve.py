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
the weights hold, and no sweep needs to have run.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import mlflow

from pipelines.bench.text import BEST_EXPERIMENT, untrained_tagger
from pipelines.cli import command_parser
from pipelines.console import library_output_to
from pipelines.experiment import add_config_arguments, config_from_args
from pipelines.servers.local import ModelServer
from postag import dataset as datasets
from postag.checkpoint import save_checkpoint
from postag.inference import tag_sentences
from postag.readers import read_conllu
from postag.registry import log_tagger

WORKERS = (1, 2)
# For a server to load the model and answer /ping (each worker loads its own copy).
START_SECONDS = 120
SENTENCES_PER_REQUEST = (1, 32)
CLIENTS = (1, 4, 16)
REQUESTS_PER_CELL = 200  # or fewer, where the time bound comes first
SECONDS_PER_CELL = 20.0
REQUEST_TIMEOUT_SECONDS = 60
CEILING_ROUNDS = 3


@dataclass(frozen=True)
class Cell:
    workers: int
    sentences_per_request: int
    clients: int
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    sentences_per_second: float
    tokens_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def log_bench_model(config, folder: Path) -> tuple[str, str]:
    """An untrained tagger of the configuration's shape, logged to a sqlite store in
    `folder`; the store's URI and the model's."""
    tagger = untrained_tagger(config)
    prepared = datasets.load(config.data)
    checkpoint = save_checkpoint(folder / "bench.pt", tagger.model.state_dict(), config, prepared)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    # No mlflow.set_experiment: it would leave the experiment active in this process, for
    # a caller's next run in another store to be filed under.
    experiment_id = mlflow.MlflowClient(uri).create_experiment("bench-serve")
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name="bench-serve"):
            info = log_tagger(checkpoint)
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


def format_table(cells: list[Cell], ceilings: dict[int, float]) -> str:
    lines = [
        "| workers | sentences a request | clients | requests/s | sentences/s | tokens/s "
        "| p50 ms | p95 ms | p99 ms | errors | of the in-process ceiling |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cells:
        share = c.sentences_per_second / ceilings[c.sentences_per_request]
        lines.append(
            f"| {c.workers} | {c.sentences_per_request} | {c.clients} | "
            f"{c.requests_per_second:,.1f} | {c.sentences_per_second:,.0f} | "
            f"{c.tokens_per_second:,.0f} | {c.p50_ms:.0f} | {c.p95_ms:.0f} | {c.p99_ms:.0f} "
            f"| {c.errors} | {100 * share:.0f}% |"
        )
    lines.append("")
    lines += [
        f"in process, {size} sentence{'s' if size > 1 else ''} at a time: "
        f"{rate:,.0f} sentences/s (the ceiling)"
        for size, rate in ceilings.items()
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("postag bench-serve", __doc__)
    add_config_arguments(parser, default=BEST_EXPERIMENT)
    parser.add_argument("--output", type=Path, default=Path("runs/bench_serve.json"))
    parser.add_argument("--port", type=int, default=5003)
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKERS))
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS))
    parser.add_argument("--requests", type=int, default=REQUESTS_PER_CELL, help="a cell's most")
    parser.add_argument("--seconds", type=float, default=SECONDS_PER_CELL, help="a cell's most")
    args = parser.parse_args(argv)
    bound = (args.requests, args.seconds)
    config = config_from_args(args)
    test = datasets.split_file(config.data, "test")
    sentences = [list(s.words) for s in read_conllu(test, config.data.tag_column)]
    tagger = untrained_tagger(config)
    ceilings = {size: in_process_ceiling(tagger, sentences, size) for size in SENTENCES_PER_REQUEST}
    log = args.output.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"bench-serve: the servers' and MLflow's messages go to {log}", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="postag-bench-serve-") as folder,
        library_output_to(log, verbose=False),
    ):
        tracking_uri, model_uri = log_bench_model(config, Path(folder))
        cells = [
            cell
            for workers in args.workers
            for cell in measure_server(
                model_uri, tracking_uri, workers, args.port, log, args.clients, sentences, bound
            )
        ]
    table = format_table(cells, ceilings)
    print(table, flush=True)
    args.output.write_text(
        json.dumps({"cells": [asdict(c) for c in cells], "ceilings": ceilings, "table": table})
    )
    return 1 if any(c.errors for c in cells) else 0


if __name__ == "__main__":
    sys.exit(main())
