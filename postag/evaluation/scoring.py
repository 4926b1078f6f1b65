"""Evaluating a loaded tagger on tagged sentences: every token of every sentence, whole."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from postag.data.dataset import UNK_ID, UNKNOWN_TAG_ID
from postag.data.readers import Sentence
from postag.evaluation.metrics import TagScore, evaluate_predictions, macro_f1, per_tag_scores
from postag.models.checkpoint import LoadedTagger
from postag.serving.inference import encode, tag_sentences

# How many of the leading gold -> predicted confusions a report lists.
TOP_CONFUSIONS = 10


@dataclass(frozen=True)
class Confusion:
    """One gold -> predicted tag pair and where its errors fall."""

    gold: str
    predicted: str
    count: int
    capitalized: int  # on words that start with a capital letter
    unseen: int  # on words the tagger's vocabulary lacks


@dataclass(frozen=True)
class EvaluationReport:
    num_sentences: int
    num_tokens: int
    token_accuracy: float
    seen_accuracy: float
    unseen_accuracy: float
    num_unseen: int
    sentence_accuracy: float
    macro_f1: float
    per_tag: list[TagScore]
    # Gold tags the model's tag set lacks, with counts: each such token counts as an error.
    unknown_tags: dict[str, int]
    confusion: torch.Tensor  # (C, C) over the model's tags, rows gold
    tag_names: tuple[str, ...]
    # The most frequent errors, most first: where the tagger goes wrong, and on what words.
    confusions: list[Confusion]

    def headline(self) -> dict:
        return {
            "num_sentences": self.num_sentences,
            "num_tokens": self.num_tokens,
            "token_accuracy": self.token_accuracy,
            "seen_accuracy": self.seen_accuracy,
            "unseen_accuracy": self.unseen_accuracy,
            "num_unseen": self.num_unseen,
            "sentence_accuracy": self.sentence_accuracy,
            "macro_f1": self.macro_f1,
            "unknown_tags": self.unknown_tags,
        }


def evaluate_tagger(tagger: LoadedTagger, sentences: list[Sentence]) -> EvaluationReport:
    words = [list(s.words) for s in sentences]
    predicted = tag_sentences(tagger, words)
    tag_ids = {tag: i for i, tag in enumerate(tagger.tags)}
    gold = torch.tensor([tag_ids.get(t, UNKNOWN_TAG_ID) for s in sentences for t in s.tags])
    guess = torch.tensor([tag_ids[t] for tags in predicted for t in tags])
    # Unseen as the tagger sees it: the word ids its own lookup gives (as in training).
    word_ids = encode(words, tagger.words, lookup=tagger.word_lookup).tokens
    unseen = torch.from_numpy(word_ids == UNK_ID)
    tokens = evaluate_predictions(gold, guess, unseen, len(tagger.tags))
    starts = np.cumsum([0] + [len(s.words) for s in sentences[:-1]])
    # A sentence is right when its least-right token is right.
    sentence_right = np.minimum.reduceat((gold == guess).numpy(), starts)
    scores = per_tag_scores(tokens.confusion, list(tagger.tags))
    return EvaluationReport(
        num_sentences=len(sentences),
        num_tokens=tokens.num_tokens,
        token_accuracy=tokens.accuracy,
        seen_accuracy=tokens.seen_accuracy,
        unseen_accuracy=tokens.unseen_accuracy,
        num_unseen=tokens.num_unseen,
        sentence_accuracy=float(sentence_right.mean()),
        macro_f1=macro_f1(scores),
        per_tag=scores,
        unknown_tags=dict(Counter(t for s in sentences for t in s.tags if t not in tag_ids)),
        confusion=tokens.confusion,
        tag_names=tagger.tags,
        confusions=leading_confusions(sentences, predicted, unseen.numpy()),
    )


def leading_confusions(
    sentences: list[Sentence], predicted: list[list[str]], unseen: np.ndarray
) -> list[Confusion]:
    """The TOP_CONFUSIONS most frequent gold -> predicted errors; unseen: (tokens,) bool."""
    counts: Counter = Counter()
    flat = (
        (word, gold, guess)
        for sentence, tags in zip(sentences, predicted, strict=True)
        for word, gold, guess in zip(sentence.words, sentence.tags, tags, strict=True)
    )
    for (word, gold, guess), is_unseen in zip(flat, unseen, strict=True):
        if gold != guess:
            counts[(gold, guess, "total")] += 1
            counts[(gold, guess, "capitalized")] += word[:1].isupper()
            counts[(gold, guess, "unseen")] += bool(is_unseen)
    pairs = sorted({(g, p) for g, p, _ in counts}, key=lambda pair: -counts[(*pair, "total")])[
        :TOP_CONFUSIONS
    ]
    return [
        Confusion(
            g, p, counts[(g, p, "total")], counts[(g, p, "capitalized")], counts[(g, p, "unseen")]
        )
        for g, p in pairs
    ]
