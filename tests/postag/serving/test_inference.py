from dataclasses import replace

import pytest
import torch

from postag.config import DataConfig, ModelConfig, RunConfig
from postag.data.readers import Sentence
from postag.evaluation.scoring import evaluate_tagger
from postag.models.checkpoint import LoadedTagger
from postag.models.tagger import Tagger
from postag.serving.inference import tag_sentences

WORDS = ("<pad>", "<unk>", "the", "dog", "runs", "fast")
TAGS = ("<pad>", "DT", "NN", "VBZ", "RB")


@pytest.fixture(scope="module")
def tagger():
    torch.manual_seed(0)
    config = RunConfig(
        model=ModelConfig(embedding_dim=8, hidden_size=8, num_layers=1, ff_dims=(8,))
    )
    model = Tagger(config.model, len(WORDS), len(TAGS)).eval()
    return LoadedTagger(model, config, WORDS, TAGS, "test")


@pytest.fixture(scope="module")
def char_tagger():
    torch.manual_seed(0)
    config = RunConfig(
        model=ModelConfig(
            embedding_dim=8, hidden_size=8, num_layers=1, ff_dims=(8,), char_dim=4, char_filters=6
        )
    )
    chars = ("<pad>", "<unk>", *sorted(set("thedogrunsfast")))
    model = Tagger(config.model, len(WORDS), len(TAGS), len(chars)).eval()
    return LoadedTagger(model, config, WORDS, TAGS, "test", chars)


@pytest.mark.parametrize("name", ["tagger", "char_tagger"])
def test_tags_come_back_per_sentence_in_the_given_order(name, request):
    # A char tagger's batch spells each distinct word once; which words share a batch
    # must not change any tag.
    tagger = request.getfixturevalue(name)
    sentences = [["the", "dog", "runs"], ["fast"], ["the", "zebra", "runs", "fast", "the"]]
    together = tag_sentences(tagger, sentences, batch_size=2)
    alone = [tag_sentences(tagger, [s])[0] for s in sentences]
    assert together == alone
    assert [len(t) for t in together] == [3, 1, 5]
    assert all(tag in TAGS[1:] for tags in together for tag in tags)


def test_an_empty_sentence_is_an_error_not_a_silent_drop(tagger):
    with pytest.raises(ValueError, match="sentence 1 has no tokens"):
        tag_sentences(tagger, [["the"], []])


def test_evaluation_counts_tokens_sentences_and_unseen_words(tagger):
    sentences = [
        Sentence(("the", "dog", "runs"), ("DT", "NN", "VBZ")),
        Sentence(("zebra", "runs"), ("NN", "VBZ")),
        Sentence(("fast",), ("NEW",)),
    ]
    report = evaluate_tagger(tagger, sentences)
    predicted = tag_sentences(tagger, [list(s.words) for s in sentences])
    right = [
        [g == p for g, p in zip(s.tags, t, strict=True)]
        for s, t in zip(sentences, predicted, strict=True)
    ]
    assert report.num_tokens == 6 and report.num_sentences == 3
    assert report.token_accuracy == sum(map(sum, right)) / 6
    assert report.sentence_accuracy == sum(all(r) for r in right) / 3
    assert report.num_unseen == 1  # "zebra"
    assert report.unseen_accuracy == float(right[1][0])
    assert report.unknown_tags == {"NEW": 1}
    assert not right[2][0]  # a tag outside the tag set is never right


def test_a_lowercasing_tagger_knows_words_in_any_case(tagger):
    lowercasing = replace(
        tagger, config=replace(tagger.config, data=DataConfig(lowercase_words=True))
    )
    sentences = [
        Sentence(("The", "DOG", "runs"), ("DT", "NN", "VBZ")),
        Sentence(("Zebra",), ("NN",)),
    ]
    assert tag_sentences(lowercasing, [["The", "DOG", "runs"]]) == tag_sentences(
        tagger, [["the", "dog", "runs"]]
    )
    assert evaluate_tagger(lowercasing, sentences).num_unseen == 1  # only "Zebra"
    assert evaluate_tagger(tagger, sentences).num_unseen == 3
