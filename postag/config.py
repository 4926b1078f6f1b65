"""Typed, frozen run configuration: defaults live here and nowhere else.

YAML files and `--set key=value` overrides only replace fields; `build` checks every key
and value against the dataclass fields, so an unknown key or a wrong type fails with the
key's dotted name.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from postag.training.objective import DEFAULT, Objective, ObjectiveError

T = TypeVar("T")
YAML12_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
DataFormat = Literal["conllu", "seed-ids"]
TagColumn = Literal["xpos", "upos"]
JointColumn = Literal["upos", "xpos", "feats"]


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema."""


def require_at_least(section: str, config: Any, minimum: int, names: tuple[str, ...]) -> None:
    """Each named field (None allowed for optional ones) must be at least `minimum`."""
    for name in names:
        value = getattr(config, name)
        values = value if isinstance(value, tuple) else (value,)
        if any(v is not None and v < minimum for v in values):
            raise ConfigError(f"'{section}.{name}' must be at least {minimum}, got {value!r}")


def require_above(section: str, config: Any, bound: float, names: tuple[str, ...]) -> None:
    """Each named field must be strictly above `bound` (a rate, a share of a resource)."""
    for name in names:
        value = getattr(config, name)
        if not value > bound:
            raise ConfigError(f"'{section}.{name}' must be above {bound}, got {value!r}")


def require_fraction(section: str, config: Any, names: tuple[str, ...]) -> None:
    """Each named field must lie in [0, 1): a probability that leaves something behind."""
    for name in names:
        value = getattr(config, name)
        values = value if isinstance(value, tuple) else (value,)
        if not all(0.0 <= v < 1.0 for v in values):
            raise ConfigError(f"'{section}.{name}' must be at least 0 and below 1, got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    # None means the default treebank (UD English EWT r2.16), located by postag.data.sources.
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    format: DataFormat = "conllu"
    tag_column: TagColumn = "xpos"
    # Prepared Parquet datasets are cached here, keyed by a hash of inputs and settings.
    cache_dir: str = ".cache/postag"
    # Keep only the first N training sentences (smoke runs, CPU sweeps); None keeps all.
    max_train_sentences: int | None = None
    # Look words up in the vocabulary lowercased. Of the 2,292 EWT test tokens missing from
    # the training vocabulary, 410 are in it lowercased ("FOUND", "Monkey"); the word
    # embedding then knows them, and the char encoder still sees the case.
    lowercase_words: bool = False
    # Keep each word's own form in the vocabulary, and look a form missing from it up
    # lowercased ("FOUND" -> "found"). Merging every form (lowercase_words) also merges
    # "Apple" with "apple": on EWT test, seen capitalized words then made most NNP/NN
    # confusions. This keeps those apart and still finds "FOUND".
    lowercase_unseen: bool = False
    # CoNLL-U columns predicted beside `tag_column`, each by a head of its own on the shared
    # encoder (UDPipe 2's joint UPOS / XPOS / FEATS). They train the encoder only: the tagger
    # is evaluated, selected and shipped on `tag_column` alone. FEATS is one label per word
    # ("Number=Sing|Person=3"), as UDPipe predicts it.
    joint_columns: tuple[JointColumn, ...] = ()

    def __post_init__(self) -> None:
        require_at_least("data", self, 1, ("max_train_sentences",))
        if self.tag_column in self.joint_columns:
            raise ConfigError(
                f"'data.joint_columns' holds {self.tag_column!r}, which is 'data.tag_column'"
            )
        if len(set(self.joint_columns)) != len(self.joint_columns):
            raise ConfigError(f"'data.joint_columns' repeats a column: {self.joint_columns}")
        if self.joint_columns and self.format != "conllu":
            raise ConfigError("'data.joint_columns' needs CoNLL-U data ('data.format: conllu')")
        if self.lowercase_words and self.lowercase_unseen:
            raise ConfigError(
                "'data.lowercase_unseen' does nothing with 'data.lowercase_words': every "
                "form is already looked up lowercased; set one of them"
            )


@dataclass(frozen=True)
class ModelConfig:
    embedding_dim: int = 100
    hidden_size: int = 128
    num_layers: int = 2
    # Widths of the ReLU feed-forward layers between the LSTM and the output layer.
    ff_dims: tuple[int, ...] = (512, 256)
    # Dropout on the word embeddings, and on each LSTM layer's output (the seed has none).
    embedding_dropout: float = 0.0
    dropout: float = 0.0
    # Stacked LSTM layers as pre-norm residual blocks, x + LSTM(LayerNorm(x)): the shortcut
    # carries the gradient past every layer, so a 40-layer stack can train.
    residual: bool = False
    # A char word encoder joined to the word embedding, so that words unseen in training
    # still get a representation from their spelling. 0 leaves it out (the seed).
    char_dim: int = 0
    # "cnn": convolutions over the spelling, max over positions; each width in
    # `char_kernels` gets `char_filters` filters (a suffix like "-ly" is 2-3 chars wide).
    # "lstm": a bidirectional LSTM over the spelling, `char_filters` units each way, whose
    # last states (2 x char_filters in all) see the whole word, prefix and suffix.
    char_encoder: Literal["cnn", "lstm"] = "cnn"
    char_filters: int = 100
    char_kernels: tuple[int, ...] = (3,)
    # In training, each word id is replaced by the unknown-word id with this probability
    # (its spelling stays). Every training word is in the vocabulary, so without this the
    # model never learns what to do with an unknown word; with a char encoder it learns to
    # tag from the spelling alone, as it must for words unseen in training.
    word_dropout: float = 0.0
    # Word dropout aimed at rare words: a word seen c times in training is hidden with
    # probability a / (a + c) for this a (Kiperwasser & Goldberg, 2016). With a = 0.25 a
    # word seen once is hidden 20% of the time and "the" almost never, so the unknown word
    # is learned in the contexts where unseen words occur, at little cost to common ones.
    rare_word_dropout: float = 0.0
    # What a hidden or unseen word reads as. "learned": the unknown word's row, which
    # starts at zero and learns from the words that word dropout hides. "zero": no word
    # vector at all, ever, so the tag of an unseen word comes from its spelling and its
    # context alone, as in UDPipe and Stanza.
    unknown_word_vector: Literal["learned", "zero"] = "learned"

    def __post_init__(self) -> None:
        sizes = ("embedding_dim", "hidden_size", "num_layers", "ff_dims")
        require_at_least("model", self, 1, (*sizes, "char_filters", "char_kernels"))
        if not self.char_kernels:
            raise ConfigError("'model.char_kernels' needs at least one width")
        require_at_least("model", self, 0, ("char_dim", "rare_word_dropout"))
        require_fraction("model", self, ("embedding_dropout", "dropout", "word_dropout"))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    # "cosine" decays the learning rate from `lr` towards 0 by the end of `epochs`;
    # "constant" keeps it (the seed). Both change the rate at every step.
    lr_schedule: Literal["constant", "cosine"] = "constant"
    # The rate rises linearly from near 0 to `lr` over this share of the run's epochs
    # before the schedule takes over: Adam's early steps, taken on moment estimates from a
    # few batches, are then small. A share, not a count, so that any epochs a sweep draws
    # leave room for it.
    warmup_fraction: float = 0.0
    # Validate, select and ship an exponential moving average of the weights instead of the
    # weights themselves; 0 turns it off. Adam at a constant rate ends each epoch wherever
    # its last noisy steps left it, and seeds differ by more than the options a sweep
    # compares; the average of the recent steps sits nearer the middle of that noise. The
    # decay is warmed up, min(ema_decay, (1 + n) / (10 + n)) after n steps, so the average
    # forgets the random initial weights within the first epoch whatever the decay.
    ema_decay: float = 0.0
    # Stochastic weight averaging: once this share of the epochs is done, validate, select
    # and ship the plain mean of the weights at the end of each epoch since; None turns it
    # off. Where the rate stays constant and validation has flattened, the end-of-epoch
    # weights scatter around the same plateau, and their mean over many epochs sits nearer
    # its middle than an average of the last few steps (ema_decay) can.
    swa_start: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01
    # Cross-entropy against gold tags smoothed by this much: the gold tag's target is
    # 1 - label_smoothing, the rest shared evenly by the other tags. 0 is plain (the seed).
    label_smoothing: float = 0.0
    seed: int = 0
    # "auto" picks CUDA when present, else CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch intra-op threads; None leaves torch's default (all cores).
    num_threads: int | None = None
    # Sentences are sorted by length inside pools of this many batches, so a batch holds
    # sentences of similar length; 1 means plain random batches. Packed sequences already
    # spare the LSTM all padding, and measured on EWT (seed model, 2 CPU cores) bigger
    # pools learned more slowly per epoch: 85% dev accuracy after 6 epochs / 119 s with 1,
    # 7 / 140 s with 2, 9-10 / 151-162 s with 4 or 50, at the same ~11k tokens/s.
    length_pool_batches: int = 1
    # Batches sized by tokens: sentences are added while (sentences x longest) stays within
    # this many padded tokens, so a GPU sees an even load; None uses batch_size sentences.
    batch_tokens: int | None = None
    # bfloat16 autocast on CUDA (no loss scaling needed); the CPU path stays float32.
    mixed_precision: bool = False
    # Stop each epoch after this many batches (CPU sweeps shrink steps, never shape).
    max_batches_per_epoch: int | None = None
    output_dir: str = "runs/latest"
    # What chooses the run's best epoch, whose weights are kept and shipped: a validation
    # metric and its mode (postag/training/objective.py). A sweep sets it from `sweep.objective`.
    objective: Objective = DEFAULT

    def __post_init__(self) -> None:
        counts = (
            "epochs",
            "batch_size",
            "num_threads",
            "length_pool_batches",
            "batch_tokens",
            "max_batches_per_epoch",
        )
        require_at_least("train", self, 1, counts)
        require_at_least("train", self, 0, ("weight_decay",))
        require_fraction(
            "train", self, ("betas", "warmup_fraction", "ema_decay", "label_smoothing")
        )
        require_above("train", self, 0, ("lr", "eps"))
        if not self.objective.validates:
            raise ConfigError(
                f"'train.objective.metric': {self.objective.metric} is measured once, on the "
                "final model, so it cannot choose the best epoch; name a validation metric"
            )
        if self.swa_start is not None:
            require_fraction("train", self, ("swa_start",))
            if self.ema_decay:
                raise ConfigError(
                    "'train.swa_start' and 'train.ema_decay' each choose the weights that are "
                    "shipped; set one of them"
                )

    @property
    def averages_weights(self) -> bool:
        """Whether an average of the weights, not the weights themselves, is shipped."""
        return bool(self.ema_decay) or self.swa_start is not None


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def build(cls: type[T], values: Any, where: str = "") -> T:
    """Make a `cls` dataclass from nested mappings, checking every key and value type."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"unknown key '{name}' (expected one of: {', '.join(fields)})")
        kwargs[key] = _coerce(hints[key], value, name)
    missing = [name for name, f in fields.items() if name not in kwargs and _required(f)]
    if missing:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"'{prefix}{missing[0]}' is required and missing")
    try:
        return cls(**kwargs)
    except ObjectiveError as error:
        raise ConfigError(f"'{where}.{error.key}': {error}" if where else str(error)) from None
    except ConfigError as error:
        # A check in __post_init__ that could not know where the values came from.
        if where and where not in str(error):
            raise ConfigError(f"'{where}': {error}") from None
        raise


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _coerce(hint: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, name)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, name)
            except ConfigError as error:
                # A mapping meant the dataclass option: its error says what is wrong.
                errors.append((isinstance(value, dict) and dataclasses.is_dataclass(option), error))
        raise max(errors, key=lambda pair: pair[0])[1]
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"'{name}' must be one of {allowed}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"'{name}' must be a list, got {value!r}")
        return [_coerce(args[0], v, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{name}' must be a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{name}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"'{name}' must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{name}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"'{name}' must have {len(args)} items, got {len(value)}")
        return tuple(
            _coerce(a, v, f"{name}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and YAML12_FLOAT.match(value):
        # PyYAML reads YAML 1.1, where `1e-4` (no dot) is a string; YAML 1.2 and users
        # read it as the number.
        return float(value)
    # bool is an int subclass; `epochs: true` must not pass as 1.
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"'{name}' must be {hint.__name__}, got {value!r}")
    return value


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Return a copy of `values` with `key.sub=value` overrides set (values parsed as YAML)."""
    result = _deep_copy(values)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r} must look like key.sub=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {override!r}: the value is not valid YAML") from None
        _set(result, key, value, f"override {override!r}")
    return result


def with_values(values: dict, dotted: dict[str, Any]) -> dict:
    """A copy of `values` with values already parsed set by dotted key: {"train.epochs": 5}."""
    result = _deep_copy(values)
    for key, value in dotted.items():
        _set(result, key, value, repr(key))
    return result


def _set(values: dict, key: str, value: Any, source: str) -> None:
    """Set `value` at dotted `key` in `values`, making sections on the way."""
    node, parts = values, key.split(".")
    while len(parts) > 1 and not _holds_dotted_keys(node):
        child = node.setdefault(parts[0], {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: '{parts[0]}' is not a section")
        node, parts = child, parts[1:]
    node[".".join(parts)] = value


def _holds_dotted_keys(node: dict) -> bool:
    """A mapping keyed by dotted field names (a sweep's space or baseline): the rest of an
    override's key is one of its keys, `--set sweep.space.train.epochs=[5]`."""
    return any("." in str(k) for k in node)


def _deep_copy(values: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in values.items()}


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return values


def to_dict(config: Any) -> dict:
    """A plain, JSON-ready dict of a config (tuples become lists)."""
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
