"""Raw text split as UD English EWT splits it, on sentences of the kind EWT's web text holds."""

import pytest

from postag.data.tokenize import sentences_of


def tokens(text: str) -> list[str]:
    return [token.text for sentence in sentences_of(text) for token in sentence.tokens]


def words(text: str) -> list[str]:
    return [word for sentence in sentences_of(text) for word in sentence.words]


def test_the_issue_line_splits_as_ewt_does():
    (sentence,) = sentences_of("I don't know, do you?")
    assert sentence.words == ["I", "do", "n't", "know", ",", "do", "you", "?"]
    # `don't` is one token of two words, as EWT's multi-word tokens.
    assert [t.text for t in sentence.tokens] == ["I", "don't", "know", ",", "do", "you", "?"]
    assert [t.space_after for t in sentence.tokens] == [True, True, False, True, True, False, False]
    assert sentence.text == "I don't know, do you?"


@pytest.mark.parametrize(
    ("text", "expected_words"),
    [
        ("I'm here.", ["I", "'m", "here", "."]),
        ("We've gone and they'll come.", ["We", "'ve", "gone", "and", "they", "'ll", "come", "."]),
        ("You're sure it can't be?", ["You", "'re", "sure", "it", "ca", "n't", "be", "?"]),
        ("I dont know.", ["I", "do", "nt", "know", "."]),
        ("You cannot go.", ["You", "can", "not", "go", "."]),
        ("I'd say so.", ["I", "'d", "say", "so", "."]),
    ],
)
def test_contractions_are_two_words_of_one_token(text, expected_words):
    assert words(text) == expected_words
    clitics = [w for w in expected_words if w.startswith("'") or w in ("n't", "nt", "not")]
    assert len(tokens(text)) == len(expected_words) - len(clitics)


@pytest.mark.parametrize(
    ("text", "expected_tokens", "expected_words"),
    [
        ("Wei's book.", ["Wei's", "book", "."], ["Wei", "'s", "book", "."]),
        ("The parents' car.", ["The", "parents'", "car", "."], ["The", "parents", "'", "car", "."]),
    ],
)
def test_possessives_are_a_second_word(text, expected_tokens, expected_words):
    assert tokens(text) == expected_tokens
    assert words(text) == expected_words


def test_a_quote_after_a_word_stays_a_token_of_its_own():
    assert tokens("He said 'hello' to me.") == ["He", "said", "'", "hello", "'", "to", "me", "."]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Wow!!! Really?!", ["Wow", "!!!", "Really", "?!"]),
        ("Well... maybe (not).", ["Well", "...", "maybe", "(", "not", ")", "."]),
        ("Stop, please; now: go.", ["Stop", ",", "please", ";", "now", ":", "go", "."]),
        ("** Note **", ["**", "Note", "**"]),
        ('"Yes," she said.', ['"', "Yes", ",", '"', "she", "said", "."]),
        ("It costs $5.50 today.", ["It", "costs", "$", "5.50", "today", "."]),
    ],
)
def test_punctuation_splits_off_and_runs_stay_whole(text, expected):
    assert tokens(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Send it by e-mail to counter-terrorism staff.", ["e-mail", "counter-terrorism"]),
        ("Call 732-657-3416 now.", ["732-657-3416"]),
    ],
)
def test_hyphenated_words_stay_whole(text, expected):
    assert all(token in tokens(text) for token in expected), tokens(text)


@pytest.mark.parametrize(
    ("text", "whole"),
    [
        (
            "See http://www.example.com/a-b.html?x=1 for more.",
            "http://www.example.com/a-b.html?x=1",
        ),
        ("Mail duffie@Stanford.EDU today.", "duffie@Stanford.EDU"),
        ("Write to jane.doe+list@mail.example.org, please.", "jane.doe+list@mail.example.org"),
        ("Visit www.google.com now.", "www.google.com"),
    ],
)
def test_urls_and_email_addresses_stay_whole(text, whole):
    assert whole in tokens(text)


def test_alot_is_two_words_as_in_ewt():
    assert words("I like it alot.") == ["I", "like", "it", "a", "lot", "."]


def test_sentences_are_split_and_blank_text_has_none():
    text = "The first one ends here. Does the second?  Yes!"
    assert [s.text for s in sentences_of(text)] == [
        "The first one ends here.",
        "Does the second?",
        "Yes!",
    ]
    assert sentences_of("   ") == []
    assert sentences_of("") == []


def test_the_arabic_article_splits_off_as_in_ewt():
    assert tokens("Attacks by al-Qaeda grew.") == ["Attacks", "by", "al", "-", "Qaeda", "grew", "."]
