"""Tagging tokenized sentences with a loaded tagger."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.utils.rnn import pad_packed_sequence

from postag.batching import collate, sorted_order
from postag.checkpoint import LoadedTagger
from postag.dataset import UNK_ID, Split

DEFAULT_BATCH_SIZE = 256


def encode(sentences: list[list[str]], words: tuple[str, ...]) -> Split:
    """Word ids of `sentences` as a Split (unknown words -> UNK_ID; tags unused)."""
    index = {word: i for i, word in enumerate(words)}
    tokens = np.array([index.get(w, UNK_ID) for s in sentences for w in s], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sentences])]).astype(np.int64)
    return Split(tokens=tokens, tags=np.zeros_like(tokens), offsets=offsets)


@torch.no_grad()
def tag_sentences(
    tagger: LoadedTagger, sentences: list[list[str]], batch_size: int = DEFAULT_BATCH_SIZE
) -> list[list[str]]:
    """One tag per token of each sentence, sentences whole and in their given order."""
    empty = [i for i, s in enumerate(sentences) if not s]
    if empty:
        raise ValueError(f"sentence {empty[0]} has no tokens")
    split = encode(sentences, tagger.words)
    device = next(tagger.model.parameters()).device
    tagger.model.eval()
    tagged: list[list[str]] = [[] for _ in sentences]
    for indices in sorted_order(split.lengths, batch_size):
        batch = collate(split, indices)
        scores = tagger.model(batch.tokens.to(device), batch.lengths)
        predicted = scores._replace(data=scores.data.argmax(dim=-1))
        padded, lengths = pad_packed_sequence(predicted, batch_first=True)  # (B, T)
        for row, sentence_index in enumerate(indices):
            ids = padded[row, : lengths[row]].tolist()
            tagged[sentence_index] = [tagger.tags[i] for i in ids]
    return tagged
