"""The seed's tagger: word embedding -> bidirectional LSTM -> ReLU feed-forward -> tag scores."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from postag.config import ModelConfig
from postag.dataset import PAD_ID


class Tagger(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, num_classes: int):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(
            input_size=config.embedding_dim,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=True,
        )
        layers: list[nn.Module] = []
        width = 2 * config.hidden_size
        for ff_dim in config.ff_dims:
            layers += [nn.Linear(width, ff_dim), nn.ReLU()]
            width = ff_dim
        layers.append(nn.Linear(width, num_classes))
        self.head = nn.Sequential(*layers)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> PackedSequence:
        """Tag scores for the real tokens only.

        tokens: (B, T) word ids; lengths: (B,) on the CPU. Returns a PackedSequence whose
        data is (N, C) for the N = lengths.sum() real tokens: neither the LSTM nor the
        feed-forward layers spend work on padding.
        """
        embedded = self.embedding(tokens)  # (B, T, E)
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        encoded, _ = self.lstm(packed)  # data: (N, 2H)
        return encoded._replace(data=self.head(encoded.data))  # data: (N, C)

    def lstm_layer_parameters(self, layer: int) -> list[nn.Parameter]:
        """Both directions' weights and biases of LSTM layer `layer` (negative counts back)."""
        layer %= self.config.num_layers
        suffixes = (f"_l{layer}", f"_l{layer}_reverse")
        return [p for name, p in self.lstm.named_parameters() if name.endswith(suffixes)]
