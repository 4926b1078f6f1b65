"""The tagger: word embedding -> bidirectional LSTM stack -> ReLU feed-forward -> tag scores.

With the seed's settings (no dropout, no residual) the stack is one multi-layer nn.LSTM, as
in the seed notebook. `residual: true` builds it from single-layer LSTMs joined by pre-norm
residual connections instead.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from postag.config import ModelConfig
from postag.data.batching import Batch
from postag.data.dataset import PAD_ID, UNK_ID


class CharCNN(nn.Module):
    """A word's vector from its spelling: char embeddings, one convolution per kernel width,
    each maxed over positions, side by side."""

    def __init__(self, num_chars: int, char_dim: int, filters: int, kernels: tuple[int, ...]):
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=PAD_ID)
        self.convs = nn.ModuleList(nn.Conv1d(char_dim, filters, kernel) for kernel in kernels)
        self.output_size = filters * len(kernels)

    def forward(self, spellings: torch.Tensor) -> torch.Tensor:
        """spellings: (U, L) char ids, PAD_ID-padded -> (U, output_size); empty rows give 0."""
        embedded = self.embedding(spellings).transpose(1, 2)  # (U, D, L)
        padding = (spellings == PAD_ID).unsqueeze(1)
        features = torch.cat([conv(same_length(embedded, conv)) for conv in self.convs], dim=1)
        features = features.masked_fill(padding, float("-inf")).amax(dim=2)
        return torch.relu(features)  # -inf (a row with no chars) becomes 0


def same_length(embedded: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """`embedded` (U, D, L) zero-padded so that `conv` gives one output per char (L), odd
    width or even, as padding="same" does; by hand, since torch warns of a copy with
    "same" at even widths, and the copy is the same as this one."""
    width = conv.kernel_size[0]
    return F.pad(embedded, ((width - 1) // 2, width // 2))


class CharLSTM(nn.Module):
    """A word's vector from its spelling: the last states of a BiLSTM over its chars."""

    def __init__(self, num_chars: int, char_dim: int, hidden_size: int):
        super().__init__()
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(char_dim, hidden_size, batch_first=True, bidirectional=True)
        self.output_size = 2 * hidden_size

    def forward(self, spellings: torch.Tensor) -> torch.Tensor:
        """spellings: (U, L) char ids, PAD_ID-padded -> (U, output_size); empty rows give 0."""
        lengths = (spellings != PAD_ID).sum(dim=1).cpu()
        packed = pack_padded_sequence(
            self.embedding(spellings),
            lengths.clamp(min=1),
            batch_first=True,
            enforce_sorted=False,
        )
        _, (final, _) = self.lstm(packed)  # final: (2, U, H), forward then backward
        features = torch.cat([final[0], final[1]], dim=1)
        return features.masked_fill((lengths == 0).to(features.device).unsqueeze(1), 0.0)


def char_encoder(config: ModelConfig, num_chars: int) -> CharCNN | CharLSTM:
    """The word-from-spelling encoder `config.char_encoder` names."""
    if config.char_encoder == "lstm":
        return CharLSTM(num_chars, config.char_dim, config.char_filters)
    return CharCNN(num_chars, config.char_dim, config.char_filters, config.char_kernels)


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


def hiding_probability(
    config: ModelConfig, vocab_size: int, word_counts: torch.Tensor | None
) -> torch.Tensor:
    """Per word id, the chance that training shows it as the unknown word: `word_dropout`
    for every word, and a / (a + count) on top for `rare_word_dropout` a when the training
    counts are given (a tagger loaded for tagging has none and hides nothing anyway)."""
    rare = torch.zeros(vocab_size, dtype=torch.float64)
    if word_counts is not None and config.rare_word_dropout > 0:
        rare = config.rare_word_dropout / (config.rare_word_dropout + word_counts.double())
    probability = 1 - (1 - config.word_dropout) * (1 - rare)
    probability[PAD_ID] = probability[UNK_ID] = 0.0
    return probability.float()


def lstm_stack(config: ModelConfig, input_size: int) -> nn.Module:
    """The bidirectional LSTM layers: one multi-layer nn.LSTM as in the seed, or with
    `residual` the pre-norm residual stack."""
    if config.residual:
        return ResidualLSTMStack(input_size, config.hidden_size, config.num_layers, config.dropout)
    return nn.LSTM(
        input_size=input_size,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        batch_first=True,
        bidirectional=True,
        dropout=config.dropout if config.num_layers > 1 else 0.0,
    )


def feed_forward_head(width: int, ff_dims: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """Linear + ReLU for each of `ff_dims`, then a Linear to the tag scores."""
    layers: list[nn.Module] = []
    for ff_dim in ff_dims:
        layers += [nn.Linear(width, ff_dim), nn.ReLU()]
        width = ff_dim
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class Tagger(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        vocab_size: int,
        num_classes: int,
        num_chars: int = 0,
        word_counts: torch.Tensor | None = None,
        joint_classes: dict[str, int] | None = None,
    ):
        """word_counts: (vocab_size,) each word id's count in the training data, which
        `rare_word_dropout` needs; `fit` passes them. joint_classes: the label count of
        each joint column (DataConfig.joint_columns) that training predicts beside the tag;
        a tagger loaded for tagging has none."""
        super().__init__()
        self.config = config
        # Not saved with the weights: it describes the training data, not the model.
        self.register_buffer(
            "hide_probability",
            hiding_probability(config, vocab_size, word_counts),
            persistent=False,
        )
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        # The unknown word starts as no word vector at all. Training without word dropout
        # never shows it, so a random start stayed random and every unseen word read as one
        # arbitrary word: on EWT test that vector alone moved unseen-word accuracy between
        # seeds from 73% to 80%. Zeroed after the random init, so the draws that follow
        # (and so the training itself) stay the same.
        with torch.no_grad():
            self.embedding.weight[UNK_ID].zero_()
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        input_size = config.embedding_dim
        self.chars: CharCNN | CharLSTM | None = None
        if self.uses_chars:
            if num_chars <= 0:
                raise ValueError("model.char_dim > 0 needs the dataset's character vocabulary")
            self.chars = char_encoder(config, num_chars)
            input_size += self.chars.output_size
        self.lstm = lstm_stack(config, input_size)
        self.output_dropout = nn.Dropout(config.dropout)
        self.head = feed_forward_head(2 * config.hidden_size, config.ff_dims, num_classes)
        # One linear layer each, as in UDPipe 2: what they add is the encoder's training.
        self.joint_heads = nn.ModuleDict(
            {
                column: nn.Linear(2 * config.hidden_size, count)
                for column, count in (joint_classes or {}).items()
            }
        )

    @property
    def uses_chars(self) -> bool:
        return self.config.char_dim > 0

    @property
    def num_tags(self) -> int:
        return self.head[-1].out_features

    @property
    def hides_words(self) -> bool:
        return self.config.word_dropout > 0 or self.config.rare_word_dropout > 0

    def forward(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        spellings: torch.Tensor | None = None,
        spelling_index: torch.Tensor | None = None,
    ) -> PackedSequence:
        """Tag scores for the real tokens only.

        tokens: (B, T) word ids; lengths: (B,) on the CPU. With the char encoder on,
        spellings: (U, L) char ids of distinct spellings and spelling_index: (B, T) each
        token's row in them (collate builds both). Returns a PackedSequence whose data is
        (N, C) for the N = lengths.sum() real tokens: neither the LSTM nor the feed-forward
        layers spend work on padding, and the char encoder runs once per distinct word.
        """
        encoded = self.encode(tokens, lengths, spellings, spelling_index)
        return encoded._replace(data=self.head(encoded.data))  # data: (N, C)

    def encode(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        spellings: torch.Tensor | None = None,
        spelling_index: torch.Tensor | None = None,
    ) -> PackedSequence:
        """The shared encoder's output for the real tokens, (N, 2H), that the heads read."""
        if self.training and self.hides_words:
            hidden = torch.rand(tokens.shape, device=tokens.device) < self.hide_probability[tokens]
            tokens = tokens.masked_fill(hidden, UNK_ID)  # PAD and UNK have probability 0
        embedded = self.embedding(tokens)  # (B, T, E)
        if self.config.unknown_word_vector == "zero":
            # Masked here rather than frozen in the table: no gradient ever reaches the row.
            embedded = embedded.masked_fill((tokens == UNK_ID).unsqueeze(-1), 0.0)
        if self.chars is not None:
            if spellings is None or spelling_index is None:
                raise ValueError("this tagger has a char encoder: pass each token's spelling")
            spelled = self.chars(spellings)[spelling_index]  # (B, T, C)
            embedded = torch.cat([embedded, spelled], dim=-1)  # (B, T, E + C)
        embedded = self.embedding_dropout(embedded)
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        encoded, _ = self.lstm(packed)
        return encoded._replace(data=self.output_dropout(encoded.data))

    def score(self, batch: Batch, device: torch.device) -> PackedSequence:
        """forward() on a collated batch, moved to `device`."""
        return self(*self._inputs(batch, device))

    def score_jointly(
        self, batch: Batch, device: torch.device
    ) -> tuple[PackedSequence, dict[str, torch.Tensor]]:
        """The tag scores as score() gives them, and each joint head's (N, classes) scores
        from the same pass through the encoder."""
        encoded = self.encode(*self._inputs(batch, device))
        joint = {column: head(encoded.data) for column, head in self.joint_heads.items()}
        return encoded._replace(data=self.head(encoded.data)), joint

    def _inputs(self, batch: Batch, device: torch.device) -> tuple:
        spellings = spelling_index = None
        if batch.spellings is not None and batch.spelling_index is not None:
            spellings = batch.spellings.to(device)
            spelling_index = batch.spelling_index.to(device)
        return batch.tokens.to(device), batch.lengths, spellings, spelling_index

    def lstm_layer_parameters(self, layer: int) -> list[nn.Parameter]:
        """Both directions' weights and biases of LSTM layer `layer` (negative counts back)."""
        layer %= self.config.num_layers
        if isinstance(self.lstm, ResidualLSTMStack):
            return self.lstm.layer_parameters(layer)
        suffixes = (f"_l{layer}", f"_l{layer}_reverse")
        return [p for name, p in self.lstm.named_parameters() if name.endswith(suffixes)]
