"""Scoring a tagger from raw text, as the CoNLL 2018 shared task scored its systems.

The gold file's `# text =` lines are the input. The system's sentences, tokens and words are
aligned to the gold ones by character offsets (whitespace aside) and scored as F1, with
the official scorer from UD's own tools (`udtools.udeval`, the CoNLL 2018 script), so our
figures are comparable with the published ones (UDPipe, Stanza). Tags are scored on the
words aligned.
"""

from __future__ import annotations

import bisect
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from udtools import udeval

from postag.config import TagColumn
from postag.data.readers import DataFormatError, is_word_line, read_lines

TEXT_PREFIX = "# text = "
# A new document or paragraph: the raw text breaks there.
BREAK_PREFIXES = ("# newdoc", "# newpar")
HEAD, DEPREL = 6, 7
# The scorer reads trees; a tagger's output has none, so each word is written as a root
# (and several roots allowed) for the scorer alone. Empty nodes are skipped, not refused.
SCORER_OPTIONS = {"no_empty_nodes": False, "multiple_roots_okay": True}
# Our names for the scorer's levels; a tag column's F1 is over the words aligned.
SEGMENTATION = {"sentences": "Sentences", "tokens": "Tokens", "words": "Words"}
TAG_LEVELS = {"upos": "UPOS", "xpos": "XPOS"}


def gold_paragraphs(path: str | Path) -> list[str]:
    """The raw text of a CoNLL-U file, one string a paragraph, from its `# text =` lines.

    Sentences of one paragraph are joined by a space; a file without paragraph marks is one
    paragraph a document, or one in all.
    """
    paragraphs: list[list[str]] = [[]]
    for _, line in read_lines(path):
        if line.startswith(BREAK_PREFIXES) and paragraphs[-1]:
            paragraphs.append([])
        elif line.startswith(TEXT_PREFIX):
            paragraphs[-1].append(line.removeprefix(TEXT_PREFIX).strip())
    texts = [" ".join(sentences) for sentences in paragraphs if sentences]
    if not texts:
        raise DataFormatError(path, None, "no '# text =' lines: there is no raw text to tag")
    return texts


@dataclass(frozen=True)
class TokenizationError:
    gold: str  # the gold tokens, separated by spaces
    system: str  # the system's tokens over the same characters
    count: int


@dataclass(frozen=True)
class RawScores:
    """F1 (with precision and recall) per level, and the leading tokenization errors."""

    f1: dict[str, float]
    precision: dict[str, float]
    recall: dict[str, float]
    gold_sentences: int
    gold_words: int
    tokenization_errors: list[TokenizationError]  # every one, the most frequent first

    def headline(self) -> dict[str, float]:
        return {f"raw_{level}_f1": value for level, value in self.f1.items()}


def scorer_view(system_conllu: str) -> io.StringIO:
    """The system's CoNLL-U with every word a root, as the scorer needs a tree."""
    lines = []
    for line in system_conllu.splitlines():
        columns = line.split("\t")
        if is_word_line(columns):
            columns[HEAD], columns[DEPREL] = "0", "root"
        lines.append("\t".join(columns))
    return io.StringIO("\n".join(lines) + "\n")


def score_raw(
    gold_path: str | Path, system_conllu: str, tag_columns: tuple[TagColumn, ...]
) -> RawScores:
    """Score a system's CoNLL-U, made from the gold file's raw text, against the gold file:
    its segmentation, and the tag columns it fills."""
    try:
        with open(gold_path, encoding="utf-8") as handle:
            gold = udeval.load_conllu(handle, str(gold_path), SCORER_OPTIONS)
    except udeval.UDError as error:
        raise DataFormatError(gold_path, None, f"the scorer cannot read it: {error}") from None
    system = udeval.load_conllu(scorer_view(system_conllu), "system", SCORER_OPTIONS)
    try:
        scores = udeval.evaluate(gold, system)
    except udeval.UDError as error:
        raise DataFormatError(gold_path, None, f"the tagged text does not match: {error}") from None
    levels = {**SEGMENTATION, **{column: TAG_LEVELS[column] for column in tag_columns}}
    return RawScores(
        f1={level: scores[name].f1 for level, name in levels.items()},
        precision={level: scores[name].precision for level, name in levels.items()},
        recall={level: scores[name].recall for level, name in levels.items()},
        gold_sentences=scores["Sentences"].gold_total,
        gold_words=scores["Words"].gold_total,
        tokenization_errors=tokenization_errors(gold, system),
    )


def tokenization_errors(gold, system) -> list[TokenizationError]:
    """The places where gold and system tokens disagree: each a stretch of
    characters whose token boundaries differ, as gold tokens -> system tokens."""
    gold_spans = {(t.start, t.end) for t in gold.tokens}
    system_spans = {(t.start, t.end) for t in system.tokens}
    # Stretches of characters covered by a token one side has and the other lacks.
    stretches: list[list[int]] = []
    for start, end in sorted(gold_spans ^ system_spans):
        if stretches and start < stretches[-1][1]:
            stretches[-1][1] = max(stretches[-1][1], end)
        else:
            stretches.append([start, end])
    counts: Counter = Counter()
    text = "".join(gold.characters)
    gold_sorted, system_sorted = sorted(gold_spans), sorted(system_spans)
    for start, end in stretches:
        gold_tokens = spelled(covered(gold_sorted, start, end), text)
        counts[(gold_tokens, spelled(covered(system_sorted, start, end), text))] += 1
    return [TokenizationError(g, s, n) for (g, s), n in counts.most_common()]


def covered(spans: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """The sorted `spans` that lie within [start, end)."""
    inside = []
    for index in range(bisect.bisect_left(spans, (start, start)), len(spans)):
        if spans[index][1] > end:
            break
        inside.append(spans[index])
    return inside


def spelled(spans: list[tuple[int, int]], text: str) -> str:
    return " ".join(text[start:end] for start, end in spans)
