import torch

from postag.config import ModelConfig
from postag.dataset import PAD_ID
from postag.model import Tagger


def test_seed_architecture_by_default():
    model = Tagger(ModelConfig(), vocab_size=51459, num_classes=50)
    assert model.embedding.embedding_dim == 100 and model.embedding.padding_idx == PAD_ID
    assert (model.lstm.hidden_size, model.lstm.num_layers, model.lstm.bidirectional) == (
        128,
        2,
        True,
    )
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256, 512), (512, 256), (256, 50)]
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.head) == 2


def test_scores_cover_real_tokens_only_and_ignore_padding_content():
    torch.manual_seed(0)
    model = Tagger(
        ModelConfig(embedding_dim=8, hidden_size=4, num_layers=2, ff_dims=(6,)), 20, 5
    ).eval()
    tokens = torch.tensor([[3, 4, 5], [6, 7, PAD_ID]])
    lengths = torch.tensor([3, 2])
    scores = model(tokens, lengths)
    assert scores.data.shape == (5, 5)
    # Whatever sits in the padding must not change any real token's scores.
    noisy = tokens.clone()
    noisy[1, 2] = 9
    assert torch.allclose(model(noisy, lengths).data, scores.data)


def test_lstm_layer_parameters_select_both_directions_of_one_layer():
    model = Tagger(ModelConfig(hidden_size=4, num_layers=3, embedding_dim=4, ff_dims=()), 10, 3)
    first, last = model.lstm_layer_parameters(0), model.lstm_layer_parameters(-1)
    assert len(first) == len(last) == 8  # w_ih, w_hh, b_ih, b_hh x 2 directions
    assert first[0] is model.lstm.weight_ih_l0
    assert any(p is model.lstm.weight_hh_l2_reverse for p in last)
