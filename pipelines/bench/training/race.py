"""`make bench`: the seed notebook's training against postag's, same model, data and machine.

(a) The seed's way, reproduced as the notebook did it: every sentence padded (and cut) to
    100 tokens, random batches of 256 with the last partial batch dropped, the LSTM run
    over the padding, and validation by a Python loop over tokens.
(b) postag's way: batches padded only to their own longest sentence, packed sequences (the
    LSTM never runs over padding), every sentence whole, vectorized metrics.

Both train the same model (the seed's, unless --set changes it) on the same data from the
same seed until validation accuracy reaches the target, and the figures are ratios measured
in this one run. The seed's side always trains as the notebook did (experiments/seed.yaml's
optimizer and batch size): --set train.* changes postag's side alone, so that the reference
stays the notebook's loop however postag's training is tuned.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipelines.cli import command_parser, fail
from pipelines.experiment import (
    SEED_EXPERIMENT,
    add_config_arguments,
    config_from_args,
    read_experiment,
    run_config_from,
)
from postag.config import RunConfig, TrainConfig
from postag.data import dataset as datasets
from postag.data.dataset import PAD_ID, PreparedDataset, Split
from postag.models.tagger import Tagger
from postag.training.trainer import EpochResult, TrainingState, fit, make_optimizer, seed_everything

SEED_MAX_LENGTH = 100  # the notebook's MSL
DEFAULT_TARGET = 0.85
DEFAULT_MAX_EPOCHS = 20


@dataclass
class Race:
    name: str
    batch_size: int
    lr: float
    epochs: int = 0
    train_seconds: float = 0.0
    elapsed_seconds: float = 0.0  # training and validation, as a user waits for them
    tokens: int = 0
    best_val_accuracy: float = 0.0
    seconds_to_target: float | None = None
    epochs_to_target: int | None = None

    def record(
        self, epoch_seconds: float, elapsed: float, tokens: int, accuracy: float, target: float
    ):
        self.epochs += 1
        self.train_seconds += epoch_seconds
        self.elapsed_seconds = elapsed
        self.tokens += tokens
        self.best_val_accuracy = max(self.best_val_accuracy, accuracy)
        if accuracy >= target and self.seconds_to_target is None:
            self.seconds_to_target, self.epochs_to_target = elapsed, self.epochs

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "tokens_per_second": self.tokens_per_second}


def padded_matrix(split: Split, values: np.ndarray) -> torch.Tensor:
    """(S, 100) tensor of `values`, each sentence cut or zero-padded to 100 as the seed did."""
    matrix = np.zeros((split.num_sentences, SEED_MAX_LENGTH), dtype=np.int64)
    for i in range(split.num_sentences):
        row = values[split.offsets[i] : split.offsets[i + 1]][:SEED_MAX_LENGTH]
        matrix[i, : len(row)] = row
    return torch.from_numpy(matrix)


def seed_forward(model: Tagger, tokens: torch.Tensor) -> torch.Tensor:
    """The notebook's forward pass: the LSTM runs over every padded position."""
    encoded, _ = model.lstm(model.embedding(tokens))  # (B, 100, 2H)
    return model.head(encoded)  # (B, 100, C)


def seed_validation_accuracy(
    model: Tagger, tokens: torch.Tensor, tags: torch.Tensor, batch_size: int
) -> float:
    """The notebook's evaluation: full batches only, then a Python loop over every token."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for start in range(0, len(tokens) - batch_size + 1, batch_size):
            predicted = seed_forward(model, tokens[start : start + batch_size]).argmax(dim=-1)
            for gold_row, predicted_row in zip(
                tags[start : start + batch_size].tolist(), predicted.tolist(), strict=True
            ):
                for gold, guess in zip(gold_row, predicted_row, strict=True):
                    if gold != PAD_ID:
                        total += 1
                        correct += int(gold == guess)
    return correct / total


class RaceError(Exception):
    """Data the seed's way cannot train or score on."""


def notebook_training(config: RunConfig) -> TrainConfig:
    """How the notebook trained (experiments/seed.yaml's `train`), from the race's seed,
    whatever --set changed in `config.train`."""
    notebook = run_config_from(read_experiment(SEED_EXPERIMENT, []), SEED_EXPERIMENT)
    return replace(notebook.train, seed=config.train.seed)


def race_seed_way(
    config: RunConfig, prepared: PreparedDataset, target: float, max_epochs: int
) -> Race:
    train_config = notebook_training(config)
    train, dev = prepared.splits["train"], prepared.splits["dev"]
    batch_size = train_config.batch_size
    # Before any model is built: the notebook's loop would train or score nothing.
    for split, path in ((train, config.data.train), (dev, config.data.dev)):
        if split.num_sentences < batch_size:
            raise RaceError(
                f"{path}: {split.num_sentences:,} sentences, fewer than the notebook's batch "
                f"of {batch_size:,}; the seed's way trains and scores full batches only"
            )
    seed_everything(train_config.seed)
    model = Tagger(config.model, len(prepared.words), prepared.num_classes)
    optimizer = make_optimizer(model, train_config)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD_ID)
    train_tokens, train_tags = padded_matrix(train, train.tokens), padded_matrix(train, train.tags)
    dev_tokens, dev_tags = padded_matrix(dev, dev.tokens), padded_matrix(dev, dev.tags)
    generator = torch.Generator().manual_seed(train_config.seed)
    race, started = Race("seed's way", batch_size, train_config.lr), time.perf_counter()
    for _ in range(max_epochs):
        model.train()
        epoch_started, tokens = time.perf_counter(), 0
        order = torch.randperm(len(train_tokens), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            rows = order[start : start + batch_size]
            scores = seed_forward(model, train_tokens[rows])
            loss = loss_fn(scores.reshape(-1, scores.shape[-1]), train_tags[rows].reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            tokens += int((train_tags[rows] != PAD_ID).sum())
        epoch_seconds = time.perf_counter() - epoch_started
        accuracy = seed_validation_accuracy(model, dev_tokens, dev_tags, batch_size)
        race.record(epoch_seconds, time.perf_counter() - started, tokens, accuracy, target)
        print(
            f"  seed's way epoch {race.epochs}: val_acc {100 * accuracy:.2f}%, "
            f"{tokens / epoch_seconds:,.0f} tok/s",
            flush=True,
        )
        if race.seconds_to_target is not None:
            break
    return race


class TargetReached(Exception):
    """Raised from a callback to end a postag run once the target accuracy is reached."""


def race_postag_way(
    config: RunConfig, prepared: PreparedDataset, target: float, max_epochs: int
) -> Race:
    race = Race("postag", config.train.batch_size, config.train.lr)
    started = time.perf_counter()

    def record(result: EpochResult, _: TrainingState) -> None:
        tokens = round(result.tokens_per_second * result.epoch_seconds)
        race.record(
            result.epoch_seconds, time.perf_counter() - started, tokens, result.val_accuracy, target
        )
        print(
            f"  postag epoch {race.epochs}: val_acc {100 * result.val_accuracy:.2f}%, "
            f"{result.tokens_per_second:,.0f} tok/s",
            flush=True,
        )
        if race.seconds_to_target is not None:
            raise TargetReached

    with contextlib.suppress(TargetReached):
        fit(
            replace(config, train=replace(config.train, epochs=max_epochs)),
            prepared,
            callbacks=[record],
        )
    return race


def format_table(seed: Race, ours: Race, target: float) -> str:
    def to_target(race: Race) -> str:
        if race.seconds_to_target is None:
            return f"not reached in {race.epochs} epochs"
        return f"{race.seconds_to_target:,.0f} s ({race.epochs_to_target} epochs)"

    lines = [
        "| method | batch, lr | train tokens/s "
        f"| time to {100 * target:.0f}% val acc | best val acc |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for race in (seed, ours):
        lines.append(
            f"| {race.name} | {race.batch_size}, {race.lr:g} | {race.tokens_per_second:,.0f} "
            f"| {to_target(race)} | {100 * race.best_val_accuracy:.2f}% |"
        )
    sooner = (
        f"{seed.seconds_to_target / ours.seconds_to_target:.2f}x sooner"
        if seed.seconds_to_target and ours.seconds_to_target
        else "n/a"
    )
    speed = ours.tokens_per_second / seed.tokens_per_second
    lines.append(f"| ratio (postag / seed) | | {speed:.2f}x | {sooner} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("postag bench", __doc__)
    add_config_arguments(parser, default=SEED_EXPERIMENT)
    parser.add_argument(
        "--target", type=float, default=DEFAULT_TARGET, help="validation accuracy to reach"
    )
    parser.add_argument("--max-epochs", type=int, default=DEFAULT_MAX_EPOCHS)
    parser.add_argument("--output", type=Path, default=Path("runs/bench.json"))
    args = parser.parse_args(argv)
    config = config_from_args(args)
    prepared = datasets.load(config.data)
    print(
        f"bench: {config.model} on {prepared.directory}, {torch.get_num_threads()} torch threads",
        flush=True,
    )
    try:
        seed = race_seed_way(config, prepared, args.target, args.max_epochs)
    except RaceError as error:
        return fail("postag bench", error, 2)
    ours = race_postag_way(config, prepared, args.target, args.max_epochs)
    table = format_table(seed, ours, args.target)
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {"target": args.target, "races": [seed.as_dict(), ours.as_dict()], "table": table},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
