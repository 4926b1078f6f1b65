"""`make bench`, the char encoder: every padded token position against each distinct spelling.

The char CNN used to run over the (B, T, L) grid of a batch: every token, every padding
position, every repeat of "the". postag now runs it once per distinct spelling in the batch
and gathers (`postag.data.batching.collate`). Both ways here run the same module, on the same
training batches, forward and backward; the grid input is rebuilt from the distinct
spellings, so the reference is the old computation exactly, and the figure is their ratio
measured in this run.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipelines.cli import command_parser
from pipelines.experiment import SEED_EXPERIMENT, add_config_arguments, config_from_args
from postag.data import dataset as datasets
from postag.data.batching import Batch, collate, training_order
from postag.models.tagger import char_encoder

DEFAULT_BATCHES = 10
DEFAULT_CHAR_DIM = 50  # what the README's char-model figures use


def time_encoder(encoder: nn.Module, batches: list[Batch], per_position: bool) -> float:
    """Seconds for forward and backward of the char encoder over `batches`."""
    started = time.perf_counter()
    for batch in batches:
        assert batch.spellings is not None and batch.spelling_index is not None
        if per_position:
            grid = batch.spellings[batch.spelling_index]  # (B, T, L), as the old collate built
            features = encoder(grid.reshape(-1, grid.shape[-1]))  # (B*T, F)
        else:
            features = encoder(batch.spellings)[batch.spelling_index]  # (U, F) -> (B, T, F)
        features.sum().backward()
    return time.perf_counter() - started


def format_table(
    batches: int, tokens: int, positions: int, spellings: int, grid: float, distinct: float
) -> str:
    return "\n".join(
        [
            f"| char encoder, {batches} batches of {tokens:,} tokens | rows encoded "
            "| seconds | tokens/s |",
            "| --- | ---: | ---: | ---: |",
            f"| every padded position | {positions:,} | {grid:.2f} | {tokens / grid:,.0f} |",
            f"| each distinct spelling | {spellings:,} | {distinct:.2f} "
            f"| {tokens / distinct:,.0f} |",
            f"| ratio (positions / spellings) | {positions / spellings:.2f}x "
            f"| {grid / distinct:.2f}x | |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("postag bench-chars", __doc__)
    add_config_arguments(parser, default=SEED_EXPERIMENT)
    parser.add_argument("--batches", type=int, default=DEFAULT_BATCHES)
    parser.add_argument("--output", type=Path, default=Path("runs/bench_chars.json"))
    args = parser.parse_args(argv)
    config = config_from_args(args)
    if config.model.char_dim <= 0:
        config = replace(config, model=replace(config.model, char_dim=DEFAULT_CHAR_DIM))
    prepared = datasets.load(config.data)
    train = prepared.splits["train"]
    order = training_order(train.lengths, config.train, np.random.default_rng(config.train.seed))
    batches = [collate(train, indices, with_chars=True) for indices in order[: args.batches]]
    torch.manual_seed(config.train.seed)
    encoder = char_encoder(config.model, len(prepared.chars))
    time_encoder(encoder, batches[:2], per_position=False)  # warm-up: first-call allocations
    grid = time_encoder(encoder, batches, per_position=True)
    distinct = time_encoder(encoder, batches, per_position=False)
    positions = sum(int(b.spelling_index.numel()) for b in batches)
    spellings = sum(len(b.spellings) for b in batches)
    tokens = sum(b.num_tokens for b in batches)
    table = format_table(len(batches), tokens, positions, spellings, grid, distinct)
    print(table, flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "batches": len(batches),
                "tokens": tokens,
                "positions": positions,
                "spellings": spellings,
                "per_position_seconds": grid,
                "per_spelling_seconds": distinct,
                "table": table,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
