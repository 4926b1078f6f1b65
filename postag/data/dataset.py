"""Prepared datasets: treebank text parsed once into Parquet, keyed by a hash of its inputs.

A prepared directory holds `train.parquet`, `dev.parquet`, `test.parquet` (columns `words`,
`token_ids`, `tag_ids`, `length`, and `<column>_ids` for each joint column) and `meta.json`
(vocabulary, tag sets, fingerprint, sources).
It is the only contract between data preparation and training: trials read it, never text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from postag.config import DataConfig, to_dict
from postag.data.readers import DataFormatError, Sentence, read_sentences
from postag.data.sources import TreebankFiles, ewt_files, sha256_of

log = logging.getLogger(__name__)
META_FILE = "meta.json"

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1
# Marks a gold tag that the training tag set lacks; it counts as an error, never a match.
UNKNOWN_TAG_ID = -1
SPLITS = ("train", "dev", "test")
# Bump when the prepared layout or its meaning changes, so old caches are not reused.
# 2: a character vocabulary for the char encoder; 3: checksums and the validation digest;
# 4: the source files' sha256, which MLflow records as each dataset's digest.
PREPARE_VERSION = 4
SCHEMA = pa.schema(
    [
        ("words", pa.list_(pa.string())),
        ("token_ids", pa.list_(pa.int32())),
        ("tag_ids", pa.list_(pa.int16())),
        ("length", pa.int32()),
    ]
)


@dataclass(frozen=True)
class Vocabulary:
    """Ids for strings; id 0 is padding, and for words id 1 is the unknown word."""

    items: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.items)

    def index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.items)}


@dataclass(frozen=True)
class WordLookup:
    """How a word finds its row in the word vocabulary: `data.lowercase_words` and
    `data.lowercase_unseen`."""

    lowercase: bool = False
    lowercase_unseen: bool = False

    @classmethod
    def of(cls, config: DataConfig) -> WordLookup:
        return cls(config.lowercase_words, config.lowercase_unseen)

    def form(self, word: str) -> str:
        """The form the vocabulary is built from and first looked up by."""
        return word.lower() if self.lowercase else word

    def id(self, index: dict[str, int], word: str) -> int:
        found = index.get(self.form(word))
        if found is None and self.lowercase_unseen:
            found = index.get(word.lower())
        return UNK_ID if found is None else found


def build_vocabularies(
    train: list[Sentence], form: Callable[[str], str] = str
) -> tuple[Vocabulary, Vocabulary]:
    """Word and tag vocabularies from the training sentences, most frequent first."""
    word_counts = Counter(form(w) for s in train for w in s.words)
    tag_counts = Counter(t for s in train for t in s.tags)
    words = [PAD, UNK, *_by_frequency(word_counts)]
    tags = [PAD, *_by_frequency(tag_counts)]
    return Vocabulary(tuple(words)), Vocabulary(tuple(tags))


def build_joint_vocabularies(
    train: list[Sentence], columns: tuple[str, ...]
) -> dict[str, Vocabulary]:
    """Per joint column, its labels in the training sentences, most frequent first."""
    return {
        column: Vocabulary((PAD, *_by_frequency(Counter(t for s in train for t in s.joint[i]))))
        for i, column in enumerate(columns)
    }


def build_char_vocabulary(train: list[Sentence]) -> Vocabulary:
    """Characters of the training words, most frequent first; 0 padding, 1 unknown."""
    counts = Counter(c for s in train for w in s.words for c in w)
    return Vocabulary((PAD, UNK, *_by_frequency(counts)))


@dataclass(frozen=True)
class Spellings:
    """Each token's spelling, as an id into a table of the distinct spellings.

    Token j is spelled chars[offsets[ids[j]]:offsets[ids[j] + 1]]. A word is spelled once
    in the table however often it occurs, so the char encoder can run once per distinct
    word of a batch rather than once per token.
    """

    ids: np.ndarray  # (N,) int64 spelling id of each token
    chars: np.ndarray  # (total chars,) int64 char ids of the distinct spellings, end to end
    offsets: np.ndarray  # (distinct spellings + 1,) int64

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.ids, self.chars, self.offsets


def spell(words: list[str], char_index: dict[str, int]) -> Spellings:
    """The spelling table of `words` (one entry per token), chars outside the index UNK_ID."""
    first_seen: dict[str, int] = {}
    ids = np.fromiter((first_seen.setdefault(w, len(first_seen)) for w in words), dtype=np.int64)
    chars = np.fromiter((char_index.get(c, UNK_ID) for w in first_seen for c in w), dtype=np.int64)
    offsets = np.zeros(len(first_seen) + 1, dtype=np.int64)
    np.cumsum([len(w) for w in first_seen], out=offsets[1:])
    return Spellings(ids=ids, chars=chars, offsets=offsets)


def _by_frequency(counts: Counter) -> list[str]:
    # Ties broken alphabetically so the same data always gives the same ids.
    return [item for item, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


@dataclass(frozen=True)
class Split:
    """One split as flat arrays: sentence i is tokens[offsets[i]:offsets[i + 1]]."""

    tokens: np.ndarray  # (N,) int64 word ids
    tags: np.ndarray  # (N,) int64 tag ids, UNKNOWN_TAG_ID where the tag set lacks the tag
    offsets: np.ndarray  # (S + 1,) int64
    spellings: Spellings | None = None  # for the char encoder
    # (N,) int64 label ids of each joint column (DataConfig.joint_columns), as `tags`.
    joint: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def num_sentences(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class SourceFile:
    """One treebank file a dataset was prepared from: where, its sha256, how big."""

    split: str
    path: Path
    sha256: str
    sentences: int
    tokens: int


@dataclass(frozen=True)
class PreparedDataset:
    directory: Path
    fingerprint: str
    words: Vocabulary
    tags: Vocabulary
    chars: Vocabulary
    splits: dict[str, Split]
    meta: dict
    # The label set of each joint column, as `tags` is for the tag column.
    joint_tags: dict[str, Vocabulary] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.tags)

    @property
    def validation_digest(self) -> str:
        return self.meta["validation_digest"]

    def source(self, split: str) -> SourceFile:
        """The text file `split` was prepared from, as it was when prepared."""
        stats = self.meta["splits"][split]
        return SourceFile(
            split=split,
            path=Path(self.meta["sources"][split]),
            sha256=self.meta["source_sha256"][split],
            sentences=stats["sentences"],
            tokens=stats["tokens"],
        )

    def content_digest(self) -> str:
        """sha256 of what training reads (vocabularies and arrays), wherever the data lies.

        The fingerprint names the inputs; this checks the content itself, so a copy that
        travelled to another machine (Ray's object store) can be checked on arrival.
        """
        digest = hashlib.sha256()
        joint = [self.joint_tags[column] for column in sorted(self.joint_tags)]
        for vocabulary in (self.words, self.tags, self.chars, *joint):
            digest.update(json.dumps(vocabulary.items).encode())
        for name in sorted(self.splits):
            split = self.splits[name]
            digest.update(name.encode())
            arrays = (split.tokens, split.tags, split.offsets)
            if split.spellings is not None:
                arrays += split.spellings.arrays()
            arrays += tuple(split.joint[column] for column in sorted(split.joint))
            for array in arrays:
                digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        return digest.hexdigest()


class DatasetMismatch(RuntimeError):
    """A prepared dataset whose content is not what the sender hashed."""


def check_arrival(dataset: PreparedDataset, expected_digest: str) -> None:
    """Refuse a dataset that changed on its way to this process."""
    actual = dataset.content_digest()
    if actual != expected_digest:
        raise DatasetMismatch(
            f"prepared dataset {dataset.fingerprint} arrived with content sha256 {actual}, "
            f"but the driver sent {expected_digest}"
        )


def split_file(config: DataConfig, split: str) -> Path:
    """The file `config` names for `split` ("train", "dev" or "test"); EWT's, the default
    treebank, where CoNLL-U data names none."""
    named = getattr(config, split)
    if named is not None:
        return Path(named)
    if config.format != "conllu":
        raise DataFormatError(Path(f"data.{split}"), None, f"{config.format} data names no file")
    return getattr(ewt_files(), split)


def source_files(config: DataConfig) -> dict[str, Path]:
    """The train/dev/test files a data config names, EWT where it names none."""
    given = {"train": config.train, "dev": config.dev, "test": config.test}
    if given["train"] is None or given["dev"] is None:
        if config.format != "conllu":
            raise ValueError("data.train and data.dev are required for the seed-ids format")
        ewt: TreebankFiles = ewt_files()
        defaults = {"train": ewt.train, "dev": ewt.dev, "test": ewt.test}
        given = {k: v if v is not None else defaults[k] for k, v in given.items()}
    files = {split: Path(path).resolve() for split, path in given.items() if path is not None}
    for split, path in files.items():
        if not path.is_file():
            raise DataFormatError(path, None, f"no such file (data.{split})")
    return files


def fingerprint(config: DataConfig, files: dict[str, Path]) -> str:
    """A hash of everything that decides the prepared content (not where files lie)."""
    key = {
        "version": PREPARE_VERSION,
        "format": config.format,
        "tag_column": config.tag_column,
        "max_train_sentences": config.max_train_sentences,
        "lowercase_words": config.lowercase_words,
        "files": {split: sha256_of(path) for split, path in sorted(files.items())},
    }
    # Keyed only when on, so that data prepared before these options existed stays valid.
    if config.lowercase_unseen:
        key["lowercase_unseen"] = True
    if config.joint_columns:
        key["joint_columns"] = list(config.joint_columns)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def validation_digest(config: DataConfig, dev_file: Path, tags: Vocabulary) -> str:
    """What a validation accuracy was measured on: the dev file's content and the tag set.

    Two models compare by validation accuracy only when this digest is the same.
    """
    key = {
        "dev": sha256_of(dev_file),
        "format": config.format,
        "tag_column": config.tag_column,
        "tags": sorted(tags.items),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def prepare(config: DataConfig) -> Path:
    """Parse the data once into `<cache_dir>/prepared/<fingerprint>/`; reuse it if intact."""
    files = source_files(config)
    digest = fingerprint(config, files)
    target = Path(config.cache_dir).resolve() / "prepared" / digest
    if target.exists():
        damage = cache_damage(target)
        if damage is None:
            return target
        log.warning("prepared data %s is damaged (%s); preparing it again", target, damage)
    sentences = {
        split: read_sentences(path, config.format, config.tag_column, config.joint_columns)
        for split, path in files.items()
    }
    if config.max_train_sentences is not None:
        sentences["train"] = sentences["train"][: config.max_train_sentences]
    lookup = WordLookup.of(config)
    words, tags = build_vocabularies(sentences["train"], lookup.form)
    joint_tags = build_joint_vocabularies(sentences["train"], config.joint_columns)
    meta = {
        "fingerprint": digest,
        "prepare_version": PREPARE_VERSION,
        "data_config": to_dict(config),
        "sources": {split: str(path) for split, path in files.items()},
        "source_sha256": {split: sha256_of(path) for split, path in files.items()},
        "validation_digest": validation_digest(config, files["dev"], tags),
        "words": list(words.items),
        "tags": list(tags.items),
        "chars": list(build_char_vocabulary(sentences["train"]).items),
        "joint_tags": {column: list(labels.items) for column, labels in joint_tags.items()},
        "splits": {},
        "sha256": {},
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written to a temporary folder and renamed, so concurrent readers never see a half.
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{digest}-"))
    try:
        for split, split_sentences in sentences.items():
            table, stats = _encode(split_sentences, words, tags, lookup, joint_tags)
            pq.write_table(table, staging / f"{split}.parquet")
            meta["splits"][split] = stats
            meta["sha256"][f"{split}.parquet"] = sha256_of(staging / f"{split}.parquet")
        (staging / META_FILE).write_text(json.dumps(meta, indent=1))
        _replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def cache_damage(folder: Path) -> str | None:
    """What is wrong with a prepared folder (unreadable meta, a file missing or changed)."""
    try:
        meta = json.loads((folder / META_FILE).read_text())
        checksums = meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{META_FILE} is missing or unreadable"
    if meta.get("prepare_version") != PREPARE_VERSION:
        return f"prepared by layout version {meta.get('prepare_version')}, not {PREPARE_VERSION}"
    for name, expected in checksums.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if sha256_of(path) != expected:
            return f"{name} does not match its sha256 in {META_FILE}"
    return None


def _replace_folder(staging: Path, target: Path) -> None:
    """Move `staging` to `target`, putting aside what was there; a racing writer may win."""
    if target.exists():
        condemned = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-old-"))
        with contextlib.suppress(FileNotFoundError):  # another process moved it first
            os.replace(target, condemned / target.name)
        shutil.rmtree(condemned, ignore_errors=True)
    try:
        os.replace(staging, target)
    except OSError:
        # Another process prepared the same data at the same moment: keep theirs if intact.
        if cache_damage(target) is not None:
            raise


def joint_field(column: str) -> str:
    """The Parquet column of a joint column's label ids."""
    return f"{column}_ids"


def _encode(
    sentences: list[Sentence],
    words: Vocabulary,
    tags: Vocabulary,
    lookup: WordLookup,
    joint_tags: dict[str, Vocabulary],
) -> tuple[pa.Table, dict]:
    word_ids, tag_ids = words.index(), tags.index()
    token_column = [[lookup.id(word_ids, w) for w in s.words] for s in sentences]
    tag_column = [[tag_ids.get(t, UNKNOWN_TAG_ID) for t in s.tags] for s in sentences]
    unknown_tags = Counter(t for s in sentences for t in s.tags if t not in tag_ids)
    columns = {
        "words": [list(s.words) for s in sentences],
        "token_ids": token_column,
        "tag_ids": tag_column,
        "length": [len(s.words) for s in sentences],
    }
    schema = SCHEMA
    for i, (column, labels) in enumerate(joint_tags.items()):
        ids = labels.index()
        columns[joint_field(column)] = [
            [ids.get(t, UNKNOWN_TAG_ID) for t in s.joint[i]] for s in sentences
        ]
        schema = schema.append(pa.field(joint_field(column), pa.list_(pa.int16())))
    table = pa.table(columns, schema=schema)
    stats = {
        "sentences": len(sentences),
        "tokens": sum(len(s.words) for s in sentences),
        "unknown_words": sum(ids.count(UNK_ID) for ids in token_column),
        "unknown_tags": dict(unknown_tags),
    }
    return table, stats


def load_prepared(directory: str | Path) -> PreparedDataset:
    directory = Path(directory)
    meta = json.loads((directory / META_FILE).read_text())
    chars = Vocabulary(tuple(meta["chars"]))
    joint_tags = {
        column: Vocabulary(tuple(labels)) for column, labels in meta.get("joint_tags", {}).items()
    }
    splits = {
        split: _load_split(directory / f"{split}.parquet", chars.index(), tuple(joint_tags))
        for split in SPLITS
        if (directory / f"{split}.parquet").is_file()
    }
    return PreparedDataset(
        directory=directory,
        fingerprint=meta["fingerprint"],
        words=Vocabulary(tuple(meta["words"])),
        tags=Vocabulary(tuple(meta["tags"])),
        chars=chars,
        splits=splits,
        meta=meta,
        joint_tags=joint_tags,
    )


def _load_split(path: Path, char_index: dict[str, int], joint_columns: tuple[str, ...]) -> Split:
    joint_fields = [joint_field(column) for column in joint_columns]
    table = pq.read_table(path, columns=["words", "token_ids", "tag_ids", *joint_fields])
    tokens = table.column("token_ids").combine_chunks()
    words = table.column("words").combine_chunks().values.to_pylist()
    return Split(
        tokens=tokens.values.to_numpy().astype(np.int64),
        tags=_flat_ids(table, "tag_ids"),
        offsets=tokens.offsets.to_numpy().astype(np.int64),
        spellings=spell(words, char_index),
        joint={c: _flat_ids(table, f) for c, f in zip(joint_columns, joint_fields, strict=True)},
    )


def _flat_ids(table: pa.Table, name: str) -> np.ndarray:
    """A list<int> column's ids, every sentence's end to end, as int64."""
    return table.column(name).combine_chunks().values.to_numpy().astype(np.int64)


def load(config: DataConfig) -> PreparedDataset:
    return load_prepared(prepare(config))
