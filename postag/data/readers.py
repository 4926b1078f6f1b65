"""Readers for tagged sentences: CoNLL-U and the seed notebook's id-pair format.

Both return every sentence whole (no length cut) or raise DataFormatError naming the
file, the line and the problem; nothing is skipped silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from postag.config import DataFormat, JointColumn, TagColumn

CONLLU_COLUMNS = 10
# Column index (0-based) of each tag column in CoNLL-U.
TAG_COLUMN_INDEX = {"upos": 3, "xpos": 4, "feats": 5}
FORM_INDEX = 1
# ASCII digits only: str.isdigit() also accepts characters such as "²" that int() refuses.
WORD_ID = re.compile(r"[0-9]+")
MULTIWORD_ID = re.compile(r"[0-9]+-[0-9]+")
EMPTY_NODE_ID = re.compile(r"[0-9]+\.[0-9]+")
# The seed format pads with id 0 in both the word and the tag line.
SEED_PADDING_ID = 0


class DataFormatError(ValueError):
    """Input data that does not follow its format; the message names file and line."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path, self.line, self.problem = Path(path), line, problem
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Sentence:
    words: tuple[str, ...]
    tags: tuple[str, ...]
    # One tuple of labels per joint column asked for (DataConfig.joint_columns), in order.
    joint: tuple[tuple[str, ...], ...] = ()


def is_word_line(columns: list[str]) -> bool:
    """A CoNLL-U line of a syntactic word (not a comment, range or empty node)."""
    return len(columns) == CONLLU_COLUMNS and WORD_ID.fullmatch(columns[0]) is not None


def read_sentences(
    path: str | Path,
    fmt: DataFormat,
    tag_column: TagColumn,
    joint_columns: tuple[JointColumn, ...] = (),
) -> list[Sentence]:
    if fmt == "conllu":
        return read_conllu(path, tag_column, joint_columns)
    return read_seed_ids(path)


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text without newline) for each line; UTF-8 or a DataFormatError."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "no such file")
    empty = True
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataFormatError(
                    path,
                    number,
                    f"not UTF-8 (byte {raw[error.start]:#04x} at column {error.start + 1})",
                ) from None
            empty = False
            yield number, text.rstrip("\r\n")
    if empty:
        raise DataFormatError(path, None, "the file is empty")


def read_conllu(
    path: str | Path, tag_column: TagColumn = "xpos", joint_columns: tuple[JointColumn, ...] = ()
) -> list[Sentence]:
    """Sentences of a CoNLL-U file: FORM as the word, XPOS or UPOS as the tag, and the
    labels of `joint_columns` beside it.

    Comment lines, multi-word token ranges (`3-4`) and empty nodes (`8.1`) are not words.
    """
    tag_index = TAG_COLUMN_INDEX[tag_column]
    joint_indices = [TAG_COLUMN_INDEX[column] for column in joint_columns]
    sentences: list[Sentence] = []
    # Each word line's FORM, tag and joint labels, for the sentence being read.
    rows: list[list[str]] = []
    for number, line in read_lines(path):
        if not line.strip():
            if rows:
                sentences.append(_sentence(rows))
                rows = []
            continue
        if line.startswith("#"):
            continue
        columns = _word_columns(path, number, line, len(rows) + 1)
        if columns is None:
            continue
        word, tag = columns[FORM_INDEX], columns[tag_index]
        if not word or not tag:
            raise DataFormatError(path, number, "empty FORM or tag column")
        for column, index in zip(joint_columns, joint_indices, strict=True):
            if not columns[index]:
                raise DataFormatError(path, number, f"empty {column.upper()} column")
        rows.append([word, tag, *(columns[index] for index in joint_indices)])
    if rows:
        sentences.append(_sentence(rows))
    if not sentences:
        raise DataFormatError(path, None, "no sentences found")
    return sentences


def _word_columns(path: str | Path, number: int, line: str, expected_id: int) -> list[str] | None:
    """A word line's columns; None for a multi-word range or an empty node. Its id must be
    `expected_id`, the next in the sentence."""
    columns = line.split("\t")
    if len(columns) != CONLLU_COLUMNS:
        raise DataFormatError(
            path, number, f"expected {CONLLU_COLUMNS} tab-separated columns, found {len(columns)}"
        )
    token_id = columns[0]
    if MULTIWORD_ID.fullmatch(token_id) or EMPTY_NODE_ID.fullmatch(token_id):
        return None
    if not WORD_ID.fullmatch(token_id):
        raise DataFormatError(path, number, f"token id {token_id!r} is not an integer")
    if int(token_id) != expected_id:
        raise DataFormatError(
            path, number, f"token id {token_id} out of order (expected {expected_id})"
        )
    return columns


def _sentence(rows: list[list[str]]) -> Sentence:
    """A sentence from its word lines' (FORM, tag, joint labels...) rows."""
    words, tags, *joint = zip(*rows, strict=True)
    return Sentence(words, tags, tuple(joint))


def read_seed_ids(path: str | Path) -> list[Sentence]:
    """Sentences of the seed's format: a line of word ids, then a line of tag ids.

    Ids are kept as strings ("17"), so the seed's files go through the same vocabulary and
    tag set as a treebank. Trailing padding (id 0 in both lines) ends a sentence; a 0 inside
    a sentence, or in one line only, is an error.
    """
    sentences: list[Sentence] = []
    pending: tuple[int, list[int]] | None = None
    for number, line in read_lines(path):
        if not line.strip():
            raise DataFormatError(
                path, number, "blank line (each sentence is a word line and a tag line)"
            )
        ids = _parse_ids(path, number, line)
        if pending is None:
            pending = (number, ids)
            continue
        word_line, word_ids = pending
        pending = None
        sentences.append(_seed_sentence(path, word_line, word_ids, number, ids))
    if pending is not None:
        raise DataFormatError(path, pending[0], "word line without a tag line after it")
    return sentences


def _parse_ids(path: str | Path, number: int, line: str) -> list[int]:
    ids = []
    for position, item in enumerate(line.split(), start=1):
        if not WORD_ID.fullmatch(item):
            raise DataFormatError(
                path, number, f"item {position} ({item!r}) is not a non-negative integer"
            )
        ids.append(int(item))
    return ids


def _seed_sentence(
    path: str | Path, word_line: int, word_ids: list[int], tag_line: int, tag_ids: list[int]
) -> Sentence:
    if len(word_ids) != len(tag_ids):
        raise DataFormatError(
            path,
            tag_line,
            f"{len(tag_ids)} tag ids for {len(word_ids)} word ids on line {word_line}",
        )
    length = len(word_ids)
    while (
        length
        and word_ids[length - 1] == SEED_PADDING_ID
        and tag_ids[length - 1] == SEED_PADDING_ID
    ):
        length -= 1
    if length == 0:
        raise DataFormatError(path, word_line, "sentence holds only padding")
    for position in range(length):
        if word_ids[position] == SEED_PADDING_ID or tag_ids[position] == SEED_PADDING_ID:
            line = word_line if word_ids[position] == SEED_PADDING_ID else tag_line
            raise DataFormatError(
                path, line, f"padding id 0 at position {position + 1}, inside the sentence"
            )
    return Sentence(
        tuple(str(i) for i in word_ids[:length]), tuple(str(i) for i in tag_ids[:length])
    )
