import pytest
import torch

from postag.config import ModelConfig
from postag.data.dataset import PAD_ID, UNK_ID
from postag.models.tagger import Tagger
from postag.training.trainer import gradient_norm


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


def first_to_last_gradient_ratio(residual: bool) -> float:
    """|grad| of the first LSTM layer over the last, after one backward pass at init."""
    torch.manual_seed(0)
    config = ModelConfig(
        embedding_dim=16, hidden_size=16, num_layers=24, ff_dims=(16,), residual=residual
    )
    model = Tagger(config, vocab_size=50, num_classes=10)
    scores = model(torch.randint(2, 50, (8, 12)), torch.full((8,), 12))
    torch.nn.functional.cross_entropy(scores.data, torch.randint(0, 10, (96,))).backward()
    first, last = (model.lstm_layer_parameters(i) for i in (0, -1))
    return (gradient_norm(first) / gradient_norm(last)).item()


def test_residual_connections_carry_the_gradient_down_a_deep_stack():
    # Plain: the gradient shrinks by ~1e-10 over 24 layers (the seed's deep failure).
    assert first_to_last_gradient_ratio(residual=False) < 1e-6
    assert first_to_last_gradient_ratio(residual=True) > 1e-1


def test_dropout_is_active_in_training_and_off_in_evaluation():
    torch.manual_seed(0)
    config = ModelConfig(
        embedding_dim=8,
        hidden_size=8,
        num_layers=2,
        ff_dims=(8,),
        embedding_dropout=0.3,
        dropout=0.3,
    )
    model = Tagger(config, vocab_size=20, num_classes=5)
    tokens, lengths = torch.randint(2, 20, (3, 6)), torch.tensor([6, 4, 2])
    model.train()
    assert not torch.equal(model(tokens, lengths).data, model(tokens, lengths).data)
    model.eval()
    assert torch.equal(model(tokens, lengths).data, model(tokens, lengths).data)


def test_seed_settings_keep_the_seed_state_dict():
    # Checkpoints and registered models of the seed architecture keep loading.
    names = set(Tagger(ModelConfig(), vocab_size=10, num_classes=5).state_dict())
    assert {"lstm.weight_ih_l1_reverse", "head.0.weight", "embedding.weight"} <= names
    assert not any("norm" in name for name in names)


CHAR_ENCODERS = [
    {"char_encoder": "cnn", "char_kernels": (3,)},
    {"char_encoder": "cnn", "char_kernels": (2, 3, 4)},
    {"char_encoder": "lstm"},
]


@pytest.mark.parametrize("encoder", CHAR_ENCODERS, ids=lambda e: str(tuple(e.values())))
def test_the_char_encoder_tells_unseen_words_apart_by_their_spelling(encoder):
    torch.manual_seed(0)
    tokens, lengths = torch.tensor([[UNK_ID, UNK_ID]]), torch.tensor([2])
    spellings = torch.tensor([[0, 0, 0, 0], [5, 6, 7, 0], [8, 9, 9, 9]])  # two unseen words
    # A word-only tagger sees both as the same UNK id; the char encoder sees their letters.
    config = ModelConfig(
        embedding_dim=8,
        hidden_size=8,
        num_layers=1,
        ff_dims=(),
        char_dim=4,
        char_filters=6,
        **encoder,
    )
    with_chars = Tagger(config, vocab_size=20, num_classes=5, num_chars=10).eval()
    alone = [
        with_chars(tokens[:, :1], torch.tensor([1]), spellings, torch.tensor([[row]])).data
        for row in (1, 2)
    ]
    assert not torch.allclose(alone[0], alone[1])
    with pytest.raises(ValueError, match="pass each token's spelling"):
        with_chars(tokens, lengths)


@pytest.mark.parametrize("encoder", CHAR_ENCODERS, ids=lambda e: str(tuple(e.values())))
def test_a_spelling_reads_the_same_however_much_padding_follows(encoder):
    """Spellings are padded to the longest word of the batch: that must not change a word's
    vector. A row with no chars (padding) gives zeros."""
    torch.manual_seed(0)
    config = ModelConfig(char_dim=4, char_filters=6, **encoder)
    chars = Tagger(config, vocab_size=20, num_classes=5, num_chars=12).chars.eval()
    # The CNN gives char_filters per kernel width; the LSTM char_filters each way.
    widths = len(config.char_kernels) if config.char_encoder == "cnn" else 2
    assert chars.output_size == 6 * widths
    short = chars(torch.tensor([[5, 6, 7], [0, 0, 0]]))
    long = chars(torch.tensor([[5, 6, 7, 0, 0, 0], [8, 9, 10, 11, 9, 8]]))
    assert torch.allclose(short[0], long[0], atol=1e-6)
    assert torch.equal(short[1], torch.zeros(chars.output_size))


def test_word_dropout_hides_words_as_unknown_in_training_only():
    config = ModelConfig(embedding_dim=4, hidden_size=4, num_layers=1, ff_dims=(), word_dropout=0.5)
    model = Tagger(config, vocab_size=20, num_classes=3)
    seen: list[torch.Tensor] = []
    model.embedding.register_forward_hook(lambda _, args, __: seen.append(args[0].clone()))
    torch.manual_seed(0)
    tokens, lengths = torch.randint(2, 20, (16, 10)), torch.full((16,), 10)
    tokens[0, 4:], lengths[0] = PAD_ID, 4
    model.train()
    model(tokens, lengths)
    model.eval()
    model(tokens, lengths)
    trained, evaluated = seen
    hidden = trained != tokens
    assert (trained[hidden] == UNK_ID).all()  # hidden words become the unknown word
    assert (trained[tokens == PAD_ID] == PAD_ID).all()  # padding stays padding
    assert 0.35 < hidden[tokens != PAD_ID].float().mean() < 0.65
    assert torch.equal(evaluated, tokens)  # evaluation sees every word


def test_rare_word_dropout_hides_rare_words_far_more_often_than_common_ones():
    config = ModelConfig(
        embedding_dim=4, hidden_size=4, num_layers=1, ff_dims=(), rare_word_dropout=0.25
    )
    counts = torch.tensor([0, 0, 1000, 1])  # PAD, UNK, a common word, a word seen once
    model = Tagger(config, vocab_size=4, num_classes=3, word_counts=counts).train()
    seen: list[torch.Tensor] = []
    model.embedding.register_forward_hook(lambda _, args, __: seen.append(args[0].clone()))
    torch.manual_seed(0)
    tokens = torch.tensor([[2, 3] * 2000])
    model(tokens, torch.tensor([tokens.shape[1]]))
    hidden = seen[0] == UNK_ID
    assert hidden[tokens == 3].float().mean() == pytest.approx(0.25 / 1.25, abs=0.03)
    assert hidden[tokens == 2].float().mean() < 0.01  # 0.25 / 1000.25
    assert model.hide_probability[[PAD_ID, UNK_ID]].tolist() == [0.0, 0.0]
    assert "hide_probability" not in model.state_dict()  # training data, not weights


def train_briefly(model: Tagger) -> None:
    """Five AdamW steps on random sentences of 6 words, every target tag 0."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    tokens, lengths = torch.randint(2, 20, (8, 6)), torch.full((8,), 6)
    for _ in range(5):
        scores = model.train()(tokens, lengths).data
        loss = torch.nn.functional.cross_entropy(scores, torch.zeros(len(scores)).long())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_an_unknown_word_has_no_vector_of_its_own_until_word_dropout_trains_one():
    def unknown_vector_after_training(word_dropout: float) -> torch.Tensor:
        config = ModelConfig(
            embedding_dim=4, hidden_size=4, num_layers=1, ff_dims=(), word_dropout=word_dropout
        )
        torch.manual_seed(0)
        model = Tagger(config, vocab_size=20, num_classes=3)
        assert torch.equal(model.embedding.weight[UNK_ID], torch.zeros(4))
        train_briefly(model)
        return model.embedding.weight[UNK_ID].detach()

    # Unseen words at test time then all read as "no word", not as one random word.
    assert torch.equal(unknown_vector_after_training(0.0), torch.zeros(4))
    assert unknown_vector_after_training(0.5).abs().sum() > 0


def test_a_zero_unknown_word_vector_reads_hidden_and_unseen_words_as_no_vector():
    config = ModelConfig(
        embedding_dim=4,
        hidden_size=4,
        num_layers=1,
        ff_dims=(),
        word_dropout=0.5,
        unknown_word_vector="zero",
    )
    torch.manual_seed(0)
    model = Tagger(config, vocab_size=20, num_classes=3)
    train_briefly(model)
    # Word dropout hid words in every step, and yet the row never learned a vector.
    assert torch.equal(model.embedding.weight[UNK_ID], torch.zeros(4))
    # An unknown word scores as a word whose vector is zero, whatever its row holds.
    with torch.no_grad():
        model.embedding.weight[UNK_ID] = 5.0
    seen: list[torch.Tensor] = []
    model.lstm.register_forward_hook(lambda _, args, __: seen.append(args[0].data.clone()))
    model.eval()(torch.tensor([[UNK_ID, 5]]), torch.tensor([2]))
    assert torch.equal(seen[0][0], torch.zeros(4))
    assert seen[0][1].abs().sum() > 0
