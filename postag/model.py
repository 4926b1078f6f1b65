"""The tagger: word embedding -> bidirectional LSTM stack -> ReLU feed-forward -> tag scores.

With the seed's settings (no dropout, no residual) the stack is one multi-layer nn.LSTM, as
in the seed notebook. `residual: true` builds it from single-layer LSTMs joined by pre-norm
residual connections instead.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from postag.config import ModelConfig
from postag.dataset import PAD_ID


class ResidualLSTMStack(nn.Module):
    """Bidirectional LSTM layers, each after the first as x + dropout(LSTM(LayerNorm(x))).

    Pre-norm keeps the shortcut an identity path from the last layer to the first, which is
    what lets the gradient through a 40-layer stack; the final LayerNorm bounds the output.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        width = 2 * hidden_size
        self.layers = nn.ModuleList(
            nn.LSTM(input_size if i == 0 else width, hidden_size, bidirectional=True)
            for i in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(num_layers - 1))
        self.final_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, packed: PackedSequence) -> tuple[PackedSequence, None]:
        """The stack's output, and None for final states (nn.LSTM's return shape)."""
        # LayerNorm, dropout and the sum act per token, so they run on the packed data (N, F).
        x, _ = self.layers[0](packed)
        x = x._replace(data=self.dropout(x.data))
        for lstm, norm in zip(self.layers[1:], self.norms, strict=True):
            h, _ = lstm(x._replace(data=norm(x.data)))
            x = x._replace(data=x.data + self.dropout(h.data))
        return x._replace(data=self.final_norm(x.data)), None

    def layer_parameters(self, layer: int) -> list[nn.Parameter]:
        return list(self.layers[layer].parameters())


class Tagger(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int, num_classes: int):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        if config.residual:
            self.lstm: nn.Module = ResidualLSTMStack(
                config.embedding_dim, config.hidden_size, config.num_layers, config.dropout
            )
        else:
            self.lstm = nn.LSTM(
                input_size=config.embedding_dim,
                hidden_size=config.hidden_size,
                num_layers=config.num_layers,
                batch_first=True,
                bidirectional=True,
                dropout=config.dropout if config.num_layers > 1 else 0.0,
            )
        self.output_dropout = nn.Dropout(config.dropout)
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
        embedded = self.embedding_dropout(self.embedding(tokens))  # (B, T, E)
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        encoded, _ = self.lstm(packed)
        features = self.output_dropout(encoded.data)  # (N, 2H)
        return encoded._replace(data=self.head(features))  # data: (N, C)

    def lstm_layer_parameters(self, layer: int) -> list[nn.Parameter]:
        """Both directions' weights and biases of LSTM layer `layer` (negative counts back)."""
        layer %= self.config.num_layers
        if isinstance(self.lstm, ResidualLSTMStack):
            return self.lstm.layer_parameters(layer)
        suffixes = (f"_l{layer}", f"_l{layer}_reverse")
        return [p for name, p in self.lstm.named_parameters() if name.endswith(suffixes)]
