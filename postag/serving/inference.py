"""Tagging with a loaded tagger: token lists, CoNLL-U files and raw text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_packed_sequence

from postag.config import TagColumn
from postag.data.batching import collate, sorted_order
from postag.data.dataset import Split, WordLookup, spell
from postag.data.readers import (
    CONLLU_COLUMNS,
    TAG_COLUMN_INDEX,
    DataFormatError,
    is_word_line,
    read_conllu,
    read_lines,
)
from postag.data.tokenize import TextSentence, sentences_of
from postag.models.checkpoint import LoadedTagger

DEFAULT_BATCH_SIZE = 256
MISC_COLUMN = 9


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


def tagger_split(tagger: LoadedTagger, sentences: list[list[str]]) -> Split:
    """`sentences` encoded as `tagger` reads them: its vocabulary and lookup, and its
    alphabet where it has a char encoder."""
    chars = tagger.chars if tagger.model.uses_chars else ()
    return encode(sentences, tagger.words, chars, tagger.word_lookup)


@torch.no_grad()
def tag_sentences(
    tagger: LoadedTagger, sentences: list[list[str]], batch_size: int = DEFAULT_BATCH_SIZE
) -> list[list[str]]:
    """One tag per token of each sentence, sentences whole and in their given order."""
    empty = [i for i, s in enumerate(sentences) if not s]
    if empty:
        raise ValueError(f"sentence {empty[0]} has no tokens")
    uses_chars = tagger.model.uses_chars
    split = tagger_split(tagger, sentences)
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


def tag_text(
    tagger: LoadedTagger, paragraphs: list[str]
) -> tuple[list[TextSentence], list[list[str]]]:
    """Raw text, split into sentences, tokens and words, and the words' tags."""
    sentences = [sentence for paragraph in paragraphs for sentence in sentences_of(paragraph)]
    return sentences, tag_sentences(tagger, [sentence.words for sentence in sentences])


def text_to_conllu(path: str | Path, tagger: LoadedTagger, tag_column: TagColumn = "xpos") -> str:
    """Raw text tagged as CoNLL-U: each line a paragraph of one or more sentences, split into
    tokens and words as EWT splits them (`postag.data.tokenize`). Blank lines hold no text."""
    paragraphs = [line for _, line in read_lines(path) if line.strip()]
    sentences, tags = tag_text(tagger, paragraphs)
    if not sentences:
        raise DataFormatError(path, None, "no text found")
    return sentences_to_conllu(sentences, {tag_column: tags}, Path(path).name)


def sentences_to_conllu(
    sentences: list[TextSentence], columns: dict[TagColumn, list[list[str]]], name: str
) -> str:
    """Tagged sentences as CoNLL-U, with their text, multi-word tokens and SpaceAfter=No;
    `columns` holds each tag column's tags, a list a sentence."""
    blocks = []
    for number, sentence in enumerate(sentences, 1):
        rows = [f"# sent_id = {name}:{number}", f"# text = {sentence.text}"]
        word_tags = zip(*(iter(tags[number - 1]) for tags in columns.values()), strict=True)
        word_id = 1
        for token in sentence.tokens:
            misc = "_" if token.space_after else "SpaceAfter=No"
            last = word_id + len(token.words) - 1
            if len(token.words) > 1:
                rows.append(conllu_row(f"{word_id}-{last}", token.text, misc=misc))
                misc = "_"  # a multi-word token's line carries its spacing
            for word in token.words:
                tags = dict(zip(columns, next(word_tags), strict=True))
                rows.append(conllu_row(str(word_id), word, tags, misc))
                word_id += 1
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + "\n\n"


def tokens_to_conllu(path: str | Path, tagger: LoadedTagger, tag_column: TagColumn = "xpos") -> str:
    """Pre-split text, one sentence per line of whitespace-separated tokens, tagged as
    CoNLL-U. Blank lines hold no sentence and are not carried over."""
    sentences = [(number, line.split()) for number, line in read_lines(path) if line.strip()]
    if not sentences:
        raise DataFormatError(path, None, "no sentences found")
    predicted = tag_sentences(tagger, [tokens for _, tokens in sentences])
    blocks = []
    for (number, tokens), tags in zip(sentences, predicted, strict=True):
        rows = [f"# sent_id = {Path(path).name}:{number}", f"# text = {' '.join(tokens)}"]
        for i, (token, tag) in enumerate(zip(tokens, tags, strict=True), start=1):
            rows.append(conllu_row(str(i), token, {tag_column: tag}))
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + "\n\n"


def conllu_row(
    word_id: str, form: str, tags: dict[TagColumn, str] | None = None, misc: str = "_"
) -> str:
    """One CoNLL-U line: ID, FORM, the tags in their columns, MISC; the rest unknown ("_")."""
    columns = [word_id, form] + ["_"] * (CONLLU_COLUMNS - 2)
    for column, tag in (tags or {}).items():
        columns[TAG_COLUMN_INDEX[column]] = tag
    columns[MISC_COLUMN] = misc
    return "\t".join(columns)
