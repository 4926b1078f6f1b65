import pytest

from postag.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    build,
    to_dict,
)


def test_defaults_are_the_seed_notebook():
    config = RunConfig()
    assert config.model == ModelConfig(
        embedding_dim=100, hidden_size=128, num_layers=2, ff_dims=(512, 256)
    )
    assert (config.train.lr, config.train.weight_decay, config.train.batch_size) == (
        1e-3,
        0.01,
        256,
    )
    assert (config.train.betas, config.train.eps) == ((0.9, 0.999), 1e-8)
    assert config.data == DataConfig()


def test_build_fills_nested_sections_and_keeps_defaults():
    config = build(RunConfig, {"model": {"hidden_size": 64, "ff_dims": [32]}, "train": {"lr": 1}})
    assert config.model.hidden_size == 64
    assert config.model.ff_dims == (32,)
    assert config.model.num_layers == 2
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model": {"hiden_size": 64}}, "unknown key 'model.hiden_size'"),
        ({"trian": {}}, "unknown key 'trian'"),
        ({"model": {"hidden_size": "big"}}, "'model.hidden_size' must be int, got 'big'"),
        ({"train": {"epochs": True}}, "'train.epochs' must be int, got True"),
        ({"train": {"epochs": 2.5}}, "'train.epochs' must be int, got 2.5"),
        ({"data": {"format": "csv"}}, "'data.format' must be one of 'conllu', 'seed-ids'"),
        ({"train": {"betas": [0.9]}}, "'train.betas' must have 2 items, got 1"),
        ({"model": {"ff_dims": [512, "x"]}}, "'model.ff_dims[1]' must be int"),
        ({"model": 3}, "model: expected a mapping, got int"),
        ({"model": {"dropout": 1.0}}, "'model.dropout' must be at least 0 and below 1, got 1.0"),
        ({"model": {"word_dropout": -0.1}}, "'model.word_dropout' must be at least 0"),
        (
            {"data": {"joint_columns": ["upos", "xpos"]}},
            "'data.joint_columns' holds 'xpos', which is 'data.tag_column'",
        ),
        ({"data": {"joint_columns": ["upos", "upos"]}}, "'data.joint_columns' repeats a column"),
        ({"data": {"joint_columns": ["lemma"]}}, "'data.joint_columns[0]' must be one of"),
        (
            {"data": {"format": "seed-ids", "joint_columns": ["upos"]}},
            "'data.joint_columns' needs CoNLL-U data",
        ),
        ({"train": {"label_smoothing": 1.0}}, "'train.label_smoothing' must be at least 0"),
        ({"model": {"unknown_word_vector": "random"}}, "'model.unknown_word_vector' must be one"),
        ({"model": {"rare_word_dropout": -1}}, "'model.rare_word_dropout' must be at least 0"),
        ({"train": {"epochs": 0}}, "'train.epochs' must be at least 1, got 0"),
        ({"train": {"batch_size": -4}}, "'train.batch_size' must be at least 1, got -4"),
        (
            {"train": {"max_batches_per_epoch": 0}},
            "'train.max_batches_per_epoch' must be at least 1",
        ),
        ({"train": {"lr": -1}}, "'train.lr' must be above 0, got -1.0"),
        ({"train": {"lr": 0}}, "'train.lr' must be above 0, got 0.0"),
        ({"train": {"betas": [0.9, 1.0]}}, "'train.betas' must be at least 0 and below 1"),
        ({"model": {"hidden_size": 0}}, "'model.hidden_size' must be at least 1, got 0"),
        ({"model": {"num_layers": 0}}, "'model.num_layers' must be at least 1, got 0"),
        ({"model": {"ff_dims": [512, 0]}}, "'model.ff_dims' must be at least 1, got \\(512, 0\\)"),
        ({"model": {"embedding_dropout": 1.5}}, "'model.embedding_dropout' must be at least 0"),
        ({"data": {"max_train_sentences": 0}}, "'data.max_train_sentences' must be at least 1"),
        ({"model": {"char_kernels": []}}, "'model.char_kernels' needs at least one width"),
        ({"model": {"char_kernels": [3, 0]}}, "'model.char_kernels' must be at least 1"),
        ({"model": {"char_encoder": "gru"}}, "'model.char_encoder' must be one of 'cnn', 'lstm'"),
        (
            {"train": {"warmup_fraction": 1.0}},
            "'train.warmup_fraction' must be at least 0 and below 1",
        ),
        (
            {"train": {"ema_decay": 1.0}},
            "'train.ema_decay' must be at least 0 and below 1",
        ),
        ({"train": {"swa_start": 1.0}}, "'train.swa_start' must be at least 0 and below 1"),
        (
            {"train": {"swa_start": 0.5, "ema_decay": 0.999}},
            "'train.swa_start' and 'train.ema_decay' each choose the weights that are shipped",
        ),
    ],
)
def test_bad_values_fail_naming_the_key(values, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(RunConfig, values)


def test_floats_in_exponent_form_need_no_dot():
    # PyYAML (YAML 1.1) reads `1e-4` as a string; a user writing --set train.lr=1e-4 means
    # the number.
    values = apply_overrides({}, ["train.lr=1e-4", "train.eps=2E-9"])
    config = build(RunConfig, values)
    assert (config.train.lr, config.train.eps) == (1e-4, 2e-9)
    with pytest.raises(ConfigError, match="'train.lr' must be float, got 'fast'"):
        build(RunConfig, {"train": {"lr": "fast"}})


def test_overrides_reach_dotted_keys_of_a_sweep_space():
    values = {"sweep": {"space": {"train.epochs": [5, 10]}}}
    changed = apply_overrides(values, ["sweep.space.train.epochs=[1]", "sweep.name=x"])
    assert changed["sweep"] == {"space": {"train.epochs": [1]}, "name": "x"}


def test_optional_fields_take_none_or_their_type():
    assert build(TrainConfig, {"num_threads": None}).num_threads is None
    assert build(TrainConfig, {"num_threads": 2}).num_threads == 2
    with pytest.raises(ConfigError, match="'num_threads' must be int"):
        build(TrainConfig, {"num_threads": "two"})


def test_overrides_parse_yaml_values_into_nested_keys():
    values = apply_overrides({"train": {"epochs": 30}}, ["train.epochs=5", "model.ff_dims=[8, 4]"])
    assert values == {"train": {"epochs": 5}, "model": {"ff_dims": [8, 4]}}


def test_overrides_leave_the_original_untouched():
    original = {"train": {"epochs": 30}}
    apply_overrides(original, ["train.epochs=5"])
    assert original == {"train": {"epochs": 30}}


@pytest.mark.parametrize("override", ["train.epochs", "=5", "train.epochs.x=1"])
def test_malformed_overrides_fail(override):
    with pytest.raises(ConfigError):
        apply_overrides({"train": {"epochs": 30}}, [override])


def test_configs_are_frozen():
    with pytest.raises(AttributeError):
        RunConfig().train.epochs = 3  # type: ignore[misc]


def test_to_dict_round_trips():
    config = build(RunConfig, {"model": {"hidden_size": 64}})
    assert to_dict(config)["model"]["ff_dims"] == [512, 256]
    assert build(RunConfig, to_dict(config)) == config
