"""What a tagger costs: its shipped parameters, and its tagging time on one thread."""

from __future__ import annotations

from dataclasses import replace

import torch

from postag.config import ModelConfig, RunConfig
from postag.data import dataset as datasets
from postag.evaluation.cost import measure_costs, num_parameters, tagging_ms_per_sentence
from postag.models.tagger import Tagger
from postag.training.trainer import make_tagger


def test_the_parameter_count_leaves_out_the_joint_heads_that_only_train(tiny_config):
    data = replace(tiny_config.data, joint_columns=("upos",))
    prepared = datasets.load(data)
    model = make_tagger(replace(tiny_config, data=data), prepared)
    shipped = Tagger(tiny_config.model, len(prepared.words), prepared.num_classes, 0)
    everything = sum(p.numel() for p in model.parameters())
    assert num_parameters(model) == sum(p.numel() for p in shipped.parameters()) < everything


def test_tagging_time_is_per_sentence_on_one_thread_and_leaves_threads_as_they_were(
    tiny_config,
):
    prepared = datasets.load(tiny_config.data)
    dev = prepared.splits["dev"]
    small = make_tagger(tiny_config, prepared)
    wide = make_tagger(
        RunConfig(tiny_config.data, ModelConfig(hidden_size=256, num_layers=2), tiny_config.train),
        prepared,
    )
    threads = torch.get_num_threads()
    fast, slow = tagging_ms_per_sentence(small, dev), tagging_ms_per_sentence(wide, dev)
    assert torch.get_num_threads() == threads
    # A 2 x 256 BiLSTM does about 30 times the work of a 1 x 32 one a token.
    assert 0 < fast < slow
    costs = measure_costs(small, dev, ("num_parameters", "tagging_ms_per_sentence"))
    assert costs["num_parameters"] == num_parameters(small) and costs["tagging_ms_per_sentence"] > 0
