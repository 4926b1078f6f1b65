"""Scoring from raw text as CoNLL 2018 did, on a slice of EWT test."""

import re
from collections import Counter

import pytest

from postag.data.readers import DataFormatError, read_conllu
from postag.data.tokenize import TextSentence, Token, sentences_of
from postag.evaluation.raw import gold_paragraphs, score_raw
from postag.serving.inference import sentences_to_conllu

MULTIWORD = re.compile(r"^\d+-\d+\t")


def xpos_conllu(sentences, tags) -> str:
    return sentences_to_conllu(sentences, {"xpos": tags}, "test")


def gold_as_system(path) -> tuple[list[TextSentence], list[list[str]]]:
    """The gold file's own words and tags, as a perfect system would give them."""
    sentences = [
        TextSentence(" ".join(s.words), tuple(Token(w, (w,), True) for w in s.words))
        for s in read_conllu(path)
    ]
    return sentences, [list(s.tags) for s in read_conllu(path)]


def test_the_raw_text_is_the_text_lines_joined_by_paragraph(ewt_slice):
    paragraphs = gold_paragraphs(ewt_slice["test"])
    texts = [
        line.removeprefix("# text = ")
        for line in ewt_slice["test"].read_text().splitlines()
        if line.startswith("# text = ")
    ]
    assert " ".join(paragraphs) == " ".join(texts)
    assert 1 < len(paragraphs) < len(texts)  # the slice's first document has paragraphs


def test_the_gold_words_score_full_marks_except_where_tokens_merge(ewt_slice):
    sentences, tags = gold_as_system(ewt_slice["test"])
    scores = score_raw(ewt_slice["test"], xpos_conllu(sentences, tags), ("xpos",))
    assert scores.f1["sentences"] == 1.0
    assert scores.f1["words"] == 1.0
    assert scores.f1["xpos"] == 1.0
    assert scores.gold_sentences == len(sentences)
    assert scores.gold_words == sum(len(s.words) for s in read_conllu(ewt_slice["test"]))
    assert set(scores.f1) == {"sentences", "tokens", "words", "xpos"}
    # EWT writes `don't` as one token of two words, `do` and `n't`; given as two tokens, they
    # align as words but miss as tokens, and are listed as tokenization errors.
    lines = ewt_slice["test"].read_text().splitlines()
    multiword = Counter(line.split("\t")[1] for line in lines if MULTIWORD.match(line))
    assert multiword, "the slice holds multi-word tokens"
    assert Counter({e.gold: e.count for e in scores.tokenization_errors}) == multiword
    assert scores.f1["tokens"] < 1.0


def test_tokenization_errors_and_wrong_tags_lower_the_scores(ewt_slice, tmp_path):
    gold = tmp_path / "gold.conllu"
    gold.write_text(
        "# text = Send an e-mail now.\n"
        "1\tSend\t_\tVERB\tVB\t_\t0\troot\t_\t_\n"
        "2\tan\t_\tDET\tDT\t_\t3\tdet\t_\t_\n"
        "3\te-mail\t_\tNOUN\tNN\t_\t1\tobj\t_\t_\n"
        "4\tnow\t_\tADV\tRB\t_\t1\tadvmod\t_\tSpaceAfter=No\n"
        "5\t.\t_\tPUNCT\t.\t_\t1\tpunct\t_\t_\n\n"
    )
    split = ("Send", "an", "e", "-", "mail", "now", ".")
    sentence = TextSentence("Send an e-mail now.", tuple(Token(w, (w,), True) for w in split))
    tags = [["VB", "DT", "NN", "HYPH", "NN", "RB", "NN"]]
    scores = score_raw(gold, sentences_to_conllu([sentence], {"xpos": tags}, "t"), ("xpos",))
    assert scores.f1["tokens"] == pytest.approx(2 * (4 / 7) * (4 / 5) / (4 / 7 + 4 / 5))
    assert scores.recall["xpos"] == pytest.approx(3 / 5)  # Send, an, now right; . wrong
    (error,) = scores.tokenization_errors
    assert (error.gold, error.system, error.count) == ("e-mail", "e - mail", 1)


def test_our_own_tokenizer_on_the_slice_matches_nearly_every_token(ewt_slice):
    paragraphs = gold_paragraphs(ewt_slice["test"])
    sentences = [s for p in paragraphs for s in sentences_of(p)]
    tags = [["NN"] * len(s.words) for s in sentences]
    scores = score_raw(ewt_slice["test"], xpos_conllu(sentences, tags), ("xpos",))
    assert scores.f1["tokens"] > 0.97
    assert scores.f1["words"] > 0.97


def test_a_file_without_raw_text_is_an_error_that_names_it(tmp_path):
    gold = tmp_path / "no-text.conllu"
    gold.write_text("1\tHi\t_\tINTJ\tUH\t_\t0\troot\t_\t_\n\n")
    with pytest.raises(DataFormatError, match=r"no-text\.conllu.*no '# text =' lines"):
        gold_paragraphs(gold)


def test_text_that_does_not_match_the_gold_is_an_error_not_a_score(ewt_slice):
    sentence = TextSentence("Other text.", (Token("Other", ("Other",), True),))
    with pytest.raises(DataFormatError, match="does not match"):
        score_raw(ewt_slice["test"], xpos_conllu([sentence], [["JJ"]]), ("xpos",))
