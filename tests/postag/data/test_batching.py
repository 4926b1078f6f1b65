from dataclasses import replace

import numpy as np
import torch

from postag.data.batching import collate, length_pooled_order, sorted_order, token_budget_order
from postag.data.dataset import PAD_ID, Split, spell


def make_split(lengths):
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = np.arange(2, 2 + offsets[-1])
    return Split(tokens=tokens, tags=tokens + 100, offsets=offsets)


def test_collate_pads_to_the_longest_in_the_batch():
    split = make_split([3, 1, 2])
    batch = collate(split, np.array([2, 0]))
    assert batch.tokens.tolist() == [[6, 7, PAD_ID], [2, 3, 4]]
    assert batch.tags.tolist() == [[106, 107, PAD_ID], [102, 103, 104]]
    assert batch.lengths.tolist() == [2, 3]
    assert batch.num_tokens == 5
    assert batch.lengths.dtype == torch.int64


def test_length_pooled_order_covers_every_sentence_once_in_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, size=1000)
    batches = length_pooled_order(
        lengths, batch_size=32, pool_batches=8, rng=np.random.default_rng(1)
    )
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    # Padding: tokens in padded batches over real tokens; random batches of 32 waste ~50%.
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded / lengths.sum() < 1.15


def test_length_pooled_order_is_random_per_epoch_and_repeatable_per_seed():
    lengths = np.arange(1, 200)
    first = length_pooled_order(lengths, 16, 4, np.random.default_rng([0, 1]))
    again = length_pooled_order(lengths, 16, 4, np.random.default_rng([0, 1]))
    other = length_pooled_order(lengths, 16, 4, np.random.default_rng([0, 2]))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_sorted_order_keeps_every_sentence():
    lengths = np.array([5, 1, 9, 3, 3])
    batches = sorted_order(lengths, batch_size=2)
    assert [b.tolist() for b in batches] == [[2, 0], [3, 4], [1]]


def test_token_budget_batches_stay_within_budget_and_keep_every_sentence():
    lengths = np.random.default_rng(0).integers(1, 80, size=1000)
    lengths[7] = 500  # longer than the whole budget: a batch of its own, never cut
    for pools in (1, 8):
        batches = token_budget_order(lengths, 400, pools, np.random.default_rng(1))
        assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
        for batch in batches:
            assert len(batch) * lengths[batch].max() <= 400 or batch.tolist() == [7]
    # Short sentences make big batches and long ones small: sizes follow the budget.
    sizes = {int(lengths[b].max()) // 20: len(b) for b in batches}
    assert sizes[0] > sizes[3]


def test_collate_with_chars_gives_each_token_its_spelling_once_per_batch():
    words = ["a", "dog", "ran", "dog", "yes"]
    char_index = {c: i + 2 for i, c in enumerate(sorted(set("".join(words))))}
    split = replace(make_split([3, 2]), spellings=spell(words, char_index))
    batch = collate(split, np.array([1, 0]), with_chars=True)
    # "dog" occurs twice but is spelled once: an empty row 0, then a, dog, ran, yes.
    assert batch.spellings.shape == (5, 3)
    letter = {i: c for c, i in char_index.items()}
    table = ["".join(letter[i] for i in row if i != PAD_ID) for row in batch.spellings.tolist()]
    assert table[0] == "" and sorted(table[1:]) == ["a", "dog", "ran", "yes"]
    spelled = [[table[i] for i in row] for row in batch.spelling_index.tolist()]
    assert spelled == [["dog", "yes", ""], ["a", "dog", "ran"]]  # padding -> the empty row
    assert collate(split, np.array([1, 0])).spellings is None  # only when asked
