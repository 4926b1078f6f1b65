"""Several taggers as one: the mean of their tag probabilities, wherever a tagger is used."""

from __future__ import annotations

import dataclasses

import mlflow
import pandas as pd
import pytest
import torch

from postag.config import RunConfig
from postag.data import dataset as datasets
from postag.data.batching import collate, sorted_order
from postag.models.checkpoint import LoadedTagger, save_checkpoint
from postag.models.ensemble import TaggerEnsemble, ensemble_of, load_ensemble, members_of
from postag.models.tagger import Tagger
from postag.serving.inference import tag_sentences, tagger_split
from postag.serving.registry import load_tagger, log_tagger, model_checkpoints
from postag.training.trainer import evaluate, predict
from tests.postag.serving.test_inference import TAGS, WORDS

SENTENCES = [["the", "dog", "runs"], ["fast"], ["the", "zebra", "runs", "fast", "the"]]


def random_tagger(seed: int, words=WORDS) -> LoadedTagger:
    torch.manual_seed(seed)
    config = RunConfig()
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(
            config.model, embedding_dim=8, hidden_size=8, num_layers=1, ff_dims=(8,)
        ),
    )
    model = Tagger(config.model, len(words), len(TAGS)).eval()
    # Scores far apart, so that members disagree as trained ones do (a fresh head's are
    # near zero, and every member's argmax is the same tag).
    torch.nn.init.normal_(model.head[-1].weight, std=3.0)
    return LoadedTagger(model, config, words, TAGS, "test")


def mean_probability_tags(members: list[LoadedTagger], sentences) -> list[list[str]]:
    """Each sentence tagged alone by each member, the members' softmaxes averaged by hand."""
    tagged = []
    for sentence in sentences:
        split = tagger_split(members[0], [sentence])
        batch = collate(split, next(iter(sorted_order(split.lengths, 1))), with_chars=False)
        mean = sum(m.model.score(batch, torch.device("cpu")).data.softmax(-1) for m in members)
        tagged.append([TAGS[i] for i in (mean / len(members)).argmax(-1).tolist()])
    return tagged


def test_an_ensemble_tags_each_token_by_the_members_mean_probability():
    members = [random_tagger(seed) for seed in (1, 2, 3)]
    ensemble = ensemble_of(members)
    assert tag_sentences(ensemble, SENTENCES) == mean_probability_tags(members, SENTENCES)
    # Not simply one member's answer (the three random taggers disagree somewhere).
    singles = [tag_sentences(member, SENTENCES) for member in members]
    assert len({str(tags) for tags in singles}) > 1
    assert [m.model for m in members_of(ensemble)] == [m.model for m in members]


def test_an_ensemble_of_one_tagger_twice_answers_as_that_tagger(tiny_config):
    prepared = datasets.load(tiny_config.data)
    torch.manual_seed(0)
    model = Tagger(tiny_config.model, len(prepared.words), prepared.num_classes).eval()
    twice = TaggerEnsemble([model, model])
    dev, cpu = prepared.splits["dev"], torch.device("cpu")
    alone, together = predict(model, dev, 16, cpu), predict(twice, dev, 16, cpu)
    assert torch.equal(alone.predicted, together.predicted)
    # The ensemble's loss is the cross-entropy of its mean probability: the member's own.
    assert together.loss == pytest.approx(alone.loss, rel=1e-5)
    assert evaluate(twice, dev, 16, cpu).accuracy == evaluate(model, dev, 16, cpu).accuracy


def test_members_trained_on_other_data_are_refused_by_name():
    other = random_tagger(2, words=(*WORDS, "cat"))
    with pytest.raises(ValueError, match="member 2 of the ensemble differs .* vocabulary"):
        ensemble_of([random_tagger(1), other])
    with pytest.raises(ValueError, match="two members at least"):
        TaggerEnsemble([random_tagger(1).model])


def test_a_logged_ensemble_loads_and_answers_as_one_model(tiny_config, tmp_path, sqlite_store):
    prepared = datasets.load(tiny_config.data)
    checkpoints = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = Tagger(tiny_config.model, len(prepared.words), prepared.num_classes)
        path = tmp_path / f"seed{seed}.pt"
        checkpoints.append(save_checkpoint(path, model.state_dict(), tiny_config, prepared))
    expected = load_ensemble(checkpoints)
    mlflow.set_tracking_uri(sqlite_store(tmp_path / "store"))
    with mlflow.start_run():
        info = log_tagger(checkpoints)
    # The registry's loader, the pyfunc model MLflow serves, and the files themselves.
    tagger, _ = load_tagger(info.model_uri)
    assert isinstance(tagger.model, TaggerEnsemble) and len(tagger.model.members) == 2
    words = [["I", "saw", "her", "duck", "."]]
    assert tag_sentences(tagger, words) == tag_sentences(expected, words)
    served = mlflow.pyfunc.load_model(info.model_uri)
    answer = served.predict(pd.DataFrame({"tokens": words}))
    assert list(answer["tags"][0]) == tag_sentences(expected, words)[0]
    files = model_checkpoints(info.model_uri, tmp_path / "download")
    assert [path.read_bytes() for path in files] == [path.read_bytes() for path in checkpoints]
