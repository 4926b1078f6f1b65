"""Tagging with a loaded tagger: token lists, CoNLL-U files and raw text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_packed_sequence

from postag.batching import collate, sorted_order
from postag.checkpoint import LoadedTagger
from postag.config import TagColumn
from postag.dataset import Split, WordLookup, spell
from postag.readers import (
    CONLLU_COLUMNS,
    TAG_COLUMN_INDEX,
    DataFormatError,
    is_word_line,
    read_conllu,
    read_lines,
)

DEFAULT_BATCH_SIZE = 256


def encode(
    sentences: list[list[str]],
    words: tuple[str, ...],
    chars: tuple[str, ...] = (),
    lookup: WordLookup | None = None,
) -> Split:
    """Word ids of `sentences` as a Split (unknown -> UNK_ID; tags unused), words looked up
    by `lookup`, and their spellings when given an alphabet (for a char encoder); without
    one, none are built."""
    lookup = lookup or WordLookup()
    index = {word: i for i, word in enumerate(words)}
    flat = [w for s in sentences for w in s]
    tokens = np.array([lookup.id(index, w) for w in flat], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sentences])]).astype(np.int64)
    spellings = spell(flat, {c: i for i, c in enumerate(chars)}) if chars else None
    return Split(tokens=tokens, tags=np.zeros_like(tokens), offsets=offsets, spellings=spellings)


@torch.no_grad()
def tag_sentences(
    tagger: LoadedTagger, sentences: list[list[str]], batch_size: int = DEFAULT_BATCH_SIZE
) -> list[list[str]]:
    """One tag per token of each sentence, sentences whole and in their given order."""
    empty = [i for i, s in enumerate(sentences) if not s]
    if empty:
        raise ValueError(f"sentence {empty[0]} has no tokens")
    uses_chars = tagger.model.uses_chars
    split = encode(sentences, tagger.words, tagger.chars if uses_chars else (), tagger.word_lookup)
    device = next(tagger.model.parameters()).device
    tagger.model.eval()
    tagged: list[list[str]] = [[] for _ in sentences]
    for indices in sorted_order(split.lengths, batch_size):
        batch = collate(split, indices, with_chars=uses_chars)
        scores = tagger.model.score(batch, device)
        predicted = scores._replace(data=scores.data.argmax(dim=-1))
        padded, lengths = pad_packed_sequence(predicted, batch_first=True)  # (B, T)
        for row, sentence_index in enumerate(indices):
            ids = padded[row, : lengths[row]].tolist()
            tagged[sentence_index] = [tagger.tags[i] for i in ids]
    return tagged


def retag_conllu(path: str | Path, tagger: LoadedTagger, tag_column: TagColumn = "xpos") -> str:
    """The CoNLL-U file with `tag_column` set by the tagger and every other byte unchanged."""
    sentences = read_conllu(path, tag_column)  # validates the whole file first
    predicted = iter(tag_sentences(tagger, [list(s.words) for s in sentences]))
    column = TAG_COLUMN_INDEX[tag_column]
    lines, tags, position = [], next(predicted), 0
    for _, line in read_lines(path):
        columns = line.split("\t")
        if is_word_line(columns):
            if position == len(tags):
                tags, position = next(predicted), 0
            columns[column] = tags[position]
            position += 1
            line = "\t".join(columns)
        lines.append(line)
    return "\n".join(lines) + "\n"


def text_to_conllu(path: str | Path, tagger: LoadedTagger, tag_column: TagColumn = "xpos") -> str:
    """Raw text, one sentence per line of whitespace-separated tokens, tagged as CoNLL-U.

    Blank lines hold no sentence and are not carried over.
    """
    sentences = [(number, line.split()) for number, line in read_lines(path) if line.strip()]
    if not sentences:
        raise DataFormatError(path, None, "no sentences found")
    predicted = tag_sentences(tagger, [tokens for _, tokens in sentences])
    blocks = []
    for (number, tokens), tags in zip(sentences, predicted, strict=True):
        rows = [f"# sent_id = {Path(path).name}:{number}", f"# text = {' '.join(tokens)}"]
        for i, (token, tag) in enumerate(zip(tokens, tags, strict=True), start=1):
            columns = [str(i), token] + ["_"] * (CONLLU_COLUMNS - 2)
            columns[TAG_COLUMN_INDEX[tag_column]] = tag
            rows.append("\t".join(columns))
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + "\n\n"
