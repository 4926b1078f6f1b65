"""Raw English text into sentences, tokens and words, as UD English EWT splits them.

spaCy's rule-based English tokenizer and sentencizer do the work: no model, nothing
downloaded. Where EWT's conventions differ from spaCy's, the differences are adapted here:

- a clitic (`'s`, `n't`, `'m`, `'re`, `'ve`, `'ll`, `'d`, and their unapostrophed forms in
  `dont`, `Ive`) stays one *token* with the word before it and becomes a second *word*, as
  EWT's multi-word tokens (`I'm` = `I` + `'m`, `Wei's` = `Wei` + `'s`);
- hyphenated words stay whole (`e-mail`, `counter-terrorism`, `732-657-3416`), but the
  Arabic article splits off (`al` `-` `Qaeda`);
- runs of sentence punctuation or of one symbol stay one token (`!!!`, `?!`, `**`, `____`);
- e-mail addresses stay whole (spaCy already keeps URLs whole);
- `alot` is two tokens, `a` `lot`.

A *token* is what the text shows between spaces and punctuation; a *word* is what the
tagger tags. Most tokens are one word.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# Clitics that EWT writes as a second word of the token before them.
CLITIC = re.compile(r"^(['’´](s|m|re|ve|ll|d)?|n['’]t|nt|not|na|ta|ve|s)$", re.IGNORECASE)
# Only these split off without an apostrophe, and only where spaCy split them (`dont`, `Ive`,
# `cannot`, `gonna`); a bare `s` or `'` must follow a word to be one.
APOSTROPHE_FREE_CLITICS = {"nt", "not", "na", "ta", "ve"}
WORD = re.compile(r"^\w+$")
SENTENCE_PUNCTUATION = re.compile(r"^[.!?]+$")
ELLIPSIS = "..."
REPEATED_SYMBOLS = set("*_=-~#+")
EMAIL = re.compile(r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$")
# spaCy's English infixes by position (spacy/lang/punctuation.py): the digit-operator rule
# and the letter-hyphen-letter rule lose the hyphen; the others are kept as they are.
DIGIT_OPERATOR_INFIX = 3
LETTER_DASH_INFIX = 6
ARABIC_ARTICLE_INFIX = r"(?<=\b[Aa]l)-(?=[A-Z])"
SPLIT_WORDS = {"alot": ("a", "lot")}


@dataclass(frozen=True)
class Token:
    """A stretch of the text; `words` are what the tagger tags (two or more for `I'm`)."""

    text: str
    words: tuple[str, ...]
    space_after: bool


@dataclass(frozen=True)
class TextSentence:
    text: str
    tokens: tuple[Token, ...]

    @property
    def words(self) -> list[str]:
        return [word for token in self.tokens for word in token.words]


@functools.cache
def english_pipeline():
    """spaCy's blank English pipeline, tokenizer adapted to EWT, with a sentencizer."""
    import spacy  # imported here: only raw text needs it, and it costs a second to load
    from spacy.util import compile_infix_regex

    nlp = spacy.blank("en")
    infixes = list(nlp.Defaults.infixes)
    infixes[DIGIT_OPERATOR_INFIX] = infixes[DIGIT_OPERATOR_INFIX].replace(r"\-", "")
    infixes[LETTER_DASH_INFIX] = infixes[LETTER_DASH_INFIX].replace("(?:-|", "(?:")
    infixes.append(ARABIC_ARTICLE_INFIX)
    nlp.tokenizer.infix_finditer = compile_infix_regex(infixes).finditer
    nlp.tokenizer.token_match = EMAIL.match
    for word, parts in SPLIT_WORDS.items():
        nlp.tokenizer.add_special_case(word, [{"ORTH": part} for part in parts])
    nlp.add_pipe("sentencizer")
    return nlp


def is_clitic(piece: str, before: Token | None) -> bool:
    """Whether spaCy's `piece` is a clitic of the token before it, written against it."""
    if before is None or before.space_after or not WORD.match(before.words[-1]):
        return False
    if not CLITIC.match(piece):
        return False
    if piece.lower() in APOSTROPHE_FREE_CLITICS or piece.lower() == "s":
        # spaCy split these off a word it knows (`dont`, `Ive`, `thats`)
        return True
    return piece != "'" or before.text.lower().endswith("s")  # `parents'` but not a quote


def joins_run(piece: str, before: Token | None) -> bool:
    """Whether `piece` continues a run of punctuation or of one symbol (`!!!`, `**`)."""
    if before is None or before.space_after or len(before.words) > 1:
        return False
    both = before.text + piece
    if SENTENCE_PUNCTUATION.match(both):
        return not (before.text.startswith(ELLIPSIS) or piece.startswith(ELLIPSIS))
    return len(set(both)) == 1 and both[0] in REPEATED_SYMBOLS


def ewt_tokens(pieces) -> tuple[Token, ...]:
    """spaCy's tokens of one sentence as EWT's tokens and words."""
    tokens: list[Token] = []
    for piece in pieces:
        text, space_after = piece.text, bool(piece.whitespace_)
        if not text.strip():
            continue  # runs of spaces that spaCy keeps as tokens of their own
        before = tokens[-1] if tokens else None
        if joins_run(text, before):
            tokens[-1] = Token(before.text + text, (before.text + text,), space_after)
        elif is_clitic(text, before):
            tokens[-1] = Token(before.text + text, (*before.words, text), space_after)
        else:
            tokens.append(Token(text, (text,), space_after))
    return tuple(tokens)


def max_text_characters() -> int:
    """The longest text `sentences_of` takes in one piece: spaCy's own bound on a document."""
    return english_pipeline().max_length


def sentences_of(text: str) -> list[TextSentence]:
    """The sentences of a stretch of raw text, in order; none for blank text."""
    sentences = []
    for span in english_pipeline()(text).sents:
        tokens = ewt_tokens(span)
        if tokens:
            sentences.append(TextSentence(span.text.strip(), tokens))
    return sentences
