"""Batches of sentences, each padded only to its own longest sentence.

With length pools (TrainConfig.length_pool_batches > 1) a batch holds sentences of similar
length; with 1 (the default) batches are plain random samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from postag.config import TrainConfig
from postag.data.dataset import PAD_ID, Split


@dataclass(frozen=True)
class Batch:
    indices: np.ndarray  # (B,) sentence indices into the split
    tokens: torch.Tensor  # (B, T) word ids, PAD_ID after each sentence's end
    tags: torch.Tensor  # (B, T) tag ids, PAD_ID after each sentence's end
    lengths: torch.Tensor  # (B,) int64 on the CPU, as pack_padded_sequence wants
    # For the char encoder: the batch's distinct spellings as (U, L) char ids, row 0 empty,
    # and (B, T) the row of each token's spelling (0 for padding).
    spellings: torch.Tensor | None = None
    spelling_index: torch.Tensor | None = None
    # (B, T) label ids of each joint column, padded as `tags`.
    joint: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())


def length_pooled_order(
    lengths: np.ndarray, batch_size: int, pool_batches: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Random batches; with `pool_batches` > 1, of similar-length sentences.

    Shuffle, sort by length within pools of `pool_batches` batches, cut into batches and
    shuffle the batch order: padding stays small while every epoch sees new batches.
    """
    order = rng.permutation(len(lengths))
    pool_size = batch_size * pool_batches
    batches = []
    for start in range(0, len(order), pool_size):
        pool = order[start : start + pool_size]
        pool = pool[np.argsort(lengths[pool], kind="stable")]
        batches += [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def token_budget_order(
    lengths: np.ndarray, max_tokens: int, pool_batches: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Random batches cut so that (sentences x longest sentence) stays within `max_tokens`.

    The padded size is what a GPU pays for, so batches of long sentences hold fewer of them.
    A sentence longer than the budget gets a batch of its own: it is never dropped or cut.
    `pool_batches` > 1 sorts by length within pools of about that many batches first.
    """
    order = rng.permutation(len(lengths))
    if pool_batches > 1:
        mean_batch = max(1, max_tokens // max(1, int(lengths.mean())))
        pool_size = mean_batch * pool_batches
        pools = [order[i : i + pool_size] for i in range(0, len(order), pool_size)]
        order = np.concatenate([pool[np.argsort(lengths[pool], kind="stable")] for pool in pools])
    batches, current, longest = [], [], 0
    for index in order:
        length = int(lengths[index])
        if current and (len(current) + 1) * max(longest, length) > max_tokens:
            batches.append(np.array(current))
            current, longest = [], 0
        current.append(index)
        longest = max(longest, length)
    if current:
        batches.append(np.array(current))
    return [batches[i] for i in rng.permutation(len(batches))]


def training_order(
    lengths: np.ndarray, config: TrainConfig, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch's batches as `config` asks: by sentence count, or by token budget."""
    if config.batch_tokens is not None:
        return token_budget_order(lengths, config.batch_tokens, config.length_pool_batches, rng)
    return length_pooled_order(lengths, config.batch_size, config.length_pool_batches, rng)


def sorted_order(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Every sentence once, longest first, for evaluation (no randomness needed)."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(split: Split, indices: np.ndarray, with_chars: bool = False) -> Batch:
    """Gather sentences `indices` of `split` into padded (B, T) tensors, vectorized.

    With `with_chars`, also the spellings the char encoder reads (see Batch).
    """
    starts = split.offsets[indices]
    lengths = split.offsets[indices + 1] - starts
    rows = np.repeat(np.arange(len(indices)), lengths)
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    columns = np.arange(lengths.sum()) - first
    sources = np.repeat(starts, lengths) + columns
    shape = (len(indices), int(lengths.max()))

    def padded(flat: np.ndarray) -> torch.Tensor:
        """(B, T) of the batch's entries of a per-token array, PAD_ID after each end."""
        grid = np.full(shape, PAD_ID, dtype=np.int64)
        grid[rows, columns] = flat[sources]
        return torch.from_numpy(grid)

    spellings = spelling_index = None
    if with_chars:
        spellings, token_rows = _collate_spellings(split, sources)
        spelling_index = np.zeros(shape, dtype=np.int64)
        spelling_index[rows, columns] = token_rows
        spelling_index = torch.from_numpy(spelling_index)
    return Batch(
        indices=indices,
        tokens=padded(split.tokens),
        tags=padded(split.tags),
        lengths=torch.from_numpy(lengths),
        spellings=spellings,
        spelling_index=spelling_index,
        joint={column: padded(labels) for column, labels in split.joint.items()},
    )


def _collate_spellings(split: Split, sources: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """The distinct spellings of the tokens at flat positions `sources`, as (U + 1, L) char
    ids padded with PAD_ID after an all-padding row 0, and each token's row in it."""
    if split.spellings is None:
        raise ValueError("this split carries no spellings; the char encoder needs them")
    table = split.spellings
    distinct, inverse = np.unique(table.ids[sources], return_inverse=True)
    starts = table.offsets[distinct]
    word_lengths = table.offsets[distinct + 1] - starts
    longest = max(int(word_lengths.max()), 1) if len(word_lengths) else 1
    chars = np.full((len(distinct) + 1, longest), PAD_ID, dtype=np.int64)
    first = np.repeat(np.cumsum(word_lengths) - word_lengths, word_lengths)
    positions = np.arange(word_lengths.sum()) - first
    chars[np.repeat(np.arange(1, len(distinct) + 1), word_lengths), positions] = table.chars[
        np.repeat(starts, word_lengths) + positions
    ]
    return torch.from_numpy(chars), inverse.reshape(-1) + 1
