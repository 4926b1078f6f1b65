from dataclasses import replace

import pyarrow.parquet as pq
import pytest
import ray

from postag.config import ConfigError, DataConfig
from postag.data.dataset import (
    PAD,
    UNK,
    UNK_ID,
    UNKNOWN_TAG_ID,
    DatasetMismatch,
    WordLookup,
    build_vocabularies,
    check_arrival,
    load,
    load_prepared,
    prepare,
    split_file,
)
from postag.data.readers import DataFormatError, Sentence, read_conllu


def test_vocabularies_come_from_train_with_padding_and_unknown_first():
    train = [Sentence(("the", "dog", "the"), ("DT", "NN", "DT")), Sentence(("a",), ("DT",))]
    words, tags = build_vocabularies(train)
    assert words.items == (PAD, UNK, "the", "a", "dog")
    assert tags.items == (PAD, "DT", "NN")


def write_conllu(path, sentences):
    blocks = []
    for words, tags in sentences:
        lines = [
            f"{i}\t{w}\t_\tX\t{t}\t_\t_\t_\t_\t_"
            for i, (w, t) in enumerate(zip(words, tags, strict=True), 1)
        ]
        blocks.append("\n".join(lines))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return str(path)


def test_prepare_encodes_unseen_words_and_tags(tmp_path):
    config = DataConfig(
        train=write_conllu(tmp_path / "train.conllu", [(["a", "b"], ["X", "Y"])]),
        dev=write_conllu(tmp_path / "dev.conllu", [(["a", "zebra"], ["X", "NEW"])]),
        cache_dir=str(tmp_path / "cache"),
    )
    prepared = load(config)
    assert set(prepared.splits) == {"train", "dev"}
    dev = prepared.splits["dev"]
    assert dev.tokens.tolist() == [prepared.words.index()["a"], UNK_ID]
    assert dev.tags.tolist() == [prepared.tags.index()["X"], UNKNOWN_TAG_ID]
    assert prepared.meta["splits"]["dev"]["unknown_tags"] == {"NEW": 1}
    assert prepared.meta["splits"]["dev"]["unknown_words"] == 1


def test_lowercase_words_share_one_vocabulary_entry_and_keep_their_spelling(tmp_path):
    config = DataConfig(
        train=write_conllu(
            tmp_path / "train.conllu", [(["The", "dog", "the"], ["DT", "NN", "DT"])]
        ),
        dev=write_conllu(tmp_path / "dev.conllu", [(["THE", "Dog", "cat"], ["DT", "NN", "NN"])]),
        cache_dir=str(tmp_path / "cache"),
        lowercase_words=True,
    )
    prepared = load(config)
    assert prepared.words.items == (PAD, UNK, "the", "dog")
    index = prepared.words.index()
    assert prepared.splits["dev"].tokens.tolist() == [index["the"], index["dog"], UNK_ID]
    assert prepared.meta["splits"]["dev"]["unknown_words"] == 1
    # The char encoder still sees the case: "THE" and "The" are spelled apart.
    train_spellings = prepared.splits["train"].spellings
    assert len(set(train_spellings.ids.tolist())) == 3
    assert prepare(config) != prepare(replace(config, lowercase_words=False))


def test_lowercase_unseen_keeps_each_seen_form_and_finds_unseen_ones_lowercased(tmp_path):
    config = DataConfig(
        train=write_conllu(
            tmp_path / "train.conllu",
            [(["Apple", "sells", "an", "apple", "found"], ["NNP", "VBZ", "DT", "NN", "VBN"])],
        ),
        dev=write_conllu(
            tmp_path / "dev.conllu",
            [(["FOUND", "Apple", "apple", "Pear"], ["VBN", "NNP", "NN", "NN"])],
        ),
        cache_dir=str(tmp_path / "cache"),
        lowercase_unseen=True,
    )
    prepared = load(config)
    index = prepared.words.index()
    # "Apple" and "apple" keep rows of their own; "FOUND" is unseen and finds "found".
    assert index["Apple"] != index["apple"]
    assert prepared.splits["dev"].tokens.tolist() == [
        index["found"],
        index["Apple"],
        index["apple"],
        UNK_ID,
    ]
    assert prepare(config) != prepare(replace(config, lowercase_unseen=False))
    # A tagger loaded from a checkpoint looks words up the same way.
    lookup = WordLookup.of(config)
    assert [lookup.id(index, w) for w in ("FOUND", "Apple", "Pear")] == [
        index["found"],
        index["Apple"],
        UNK_ID,
    ]
    with pytest.raises(ConfigError, match="'data.lowercase_unseen' does nothing with"):
        replace(config, lowercase_words=True)


def test_prepared_parquet_keeps_words_ids_and_lengths(ewt_slice, tmp_path):
    directory = prepare(
        DataConfig(
            train=str(ewt_slice["train"]), dev=str(ewt_slice["dev"]), cache_dir=str(tmp_path)
        )
    )
    table = pq.read_table(directory / "train.parquet")
    assert table.column_names == ["words", "token_ids", "tag_ids", "length"]
    assert table.num_rows == 600
    first = table.slice(0, 1).to_pylist()[0]
    assert (
        len(first["words"]) == len(first["token_ids"]) == len(first["tag_ids"]) == first["length"]
    )


def test_joint_columns_are_prepared_as_label_ids_aligned_with_the_tags(ewt_slice, tmp_path):
    base = DataConfig(
        train=str(ewt_slice["train"]), dev=str(ewt_slice["dev"]), cache_dir=str(tmp_path)
    )
    joint = replace(base, joint_columns=("upos", "feats"))
    directory = prepare(joint)
    assert directory != prepare(base)
    table = pq.read_table(directory / "train.parquet")
    assert table.column_names[-2:] == ["upos_ids", "feats_ids"]
    dataset = load_prepared(directory)
    train = dataset.splits["train"]
    gold = read_conllu(ewt_slice["train"], "xpos", ("upos", "feats"))
    for column, i in (("upos", 0), ("feats", 1)):
        labels = dataset.joint_tags[column].items
        assert labels[0] == PAD
        decoded = [labels[j] for j in train.joint[column]]
        assert decoded == [label for s in gold for label in s.joint[i]]
    assert "Number=Sing" in dataset.joint_tags["feats"].items
    # Every copy is checked on arrival with its joint labels too.
    assert dataset.content_digest() != load_prepared(prepare(base)).content_digest()


def test_prepare_is_reused_for_the_same_inputs_and_redone_for_new_settings(ewt_slice, tmp_path):
    base = DataConfig(
        train=str(ewt_slice["train"]), dev=str(ewt_slice["dev"]), cache_dir=str(tmp_path)
    )
    first = prepare(base)
    stamp = (first / "train.parquet").stat().st_mtime_ns
    assert prepare(base) == first
    assert (first / "train.parquet").stat().st_mtime_ns == stamp
    upos = prepare(DataConfig(**{**base.__dict__, "tag_column": "upos"}))
    assert upos != first
    upos_tags = {t for s in read_conllu(ewt_slice["train"], "upos") for t in s.tags}
    assert len(upos_tags) <= 17
    assert set(load_prepared(upos).tags.items) == {PAD} | upos_tags


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda folder: _truncate(folder / "train.parquet"), "train.parquet does not match"),
        (lambda folder: (folder / "dev.parquet").unlink(), "dev.parquet is missing"),
        (lambda folder: (folder / "meta.json").write_text('{"fingerp'), "meta.json is missing"),
    ],
)
def test_a_damaged_prepared_cache_is_noticed_and_prepared_again(
    ewt_slice, tmp_path, caplog, damage, why
):
    config = DataConfig(
        train=str(ewt_slice["train"]), dev=str(ewt_slice["dev"]), cache_dir=str(tmp_path)
    )
    folder = prepare(config)
    intact = load_prepared(folder).content_digest()
    damage(folder)
    assert prepare(config) == folder
    assert f"prepared data {folder} is damaged ({why}" in caplog.text
    assert load_prepared(folder).content_digest() == intact
    assert [p.name for p in tmp_path.joinpath("prepared").iterdir()] == [folder.name]


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_validation_digest_follows_the_dev_file_and_tag_set_not_the_training_data(
    ewt_slice, tmp_path
):
    base = DataConfig(
        train=str(ewt_slice["train"]), dev=str(ewt_slice["dev"]), cache_dir=str(tmp_path)
    )
    digest = load(base).validation_digest
    # Less training data (the same tags) and lowercased lookup: the same validation data.
    assert load(replace(base, max_train_sentences=500)).validation_digest == digest
    assert load(replace(base, lowercase_words=True)).validation_digest == digest
    assert load(replace(base, dev=str(ewt_slice["test"]))).validation_digest != digest
    assert load(replace(base, tag_column="upos")).validation_digest != digest


def test_max_train_sentences_slices_train_only(ewt_slice, tmp_path):
    config = DataConfig(
        train=str(ewt_slice["train"]),
        dev=str(ewt_slice["dev"]),
        cache_dir=str(tmp_path),
        max_train_sentences=10,
    )
    prepared = load(config)
    assert prepared.splits["train"].num_sentences == 10
    assert prepared.splits["dev"].num_sentences == 150


def test_seed_format_goes_through_the_same_vocabulary(tmp_path):
    (tmp_path / "train.txt").write_text("5 8 0\n3 4 0\n8\n4\n")
    (tmp_path / "dev.txt").write_text("8 9\n4 3\n")
    prepared = load(
        DataConfig(
            train=str(tmp_path / "train.txt"),
            dev=str(tmp_path / "dev.txt"),
            format="seed-ids",
            cache_dir=str(tmp_path / "cache"),
        )
    )
    assert prepared.words.items == (PAD, UNK, "8", "5")
    assert prepared.splits["dev"].tokens.tolist() == [2, UNK_ID]
    assert prepared.splits["train"].lengths.tolist() == [2, 1]


def test_a_dataset_that_travelled_through_ray_is_checked_on_arrival(ewt_slice, tmp_path):
    config = DataConfig(
        train=str(ewt_slice["train"]), dev=str(ewt_slice["dev"]), cache_dir=str(tmp_path)
    )
    dataset = load(config)
    digest = dataset.content_digest()
    ray.init("local", num_cpus=1, include_dashboard=False)
    try:
        arrived = ray.get(ray.put(dataset))
    finally:
        ray.shutdown()
    check_arrival(arrived, digest)  # the same content, whatever the copy

    train = arrived.splits["train"]
    one_tag_changed = train.tags.copy()
    one_tag_changed[0] = (one_tag_changed[0] + 1) % dataset.num_classes
    damaged = replace(
        arrived, splits={**arrived.splits, "train": replace(train, tags=one_tag_changed)}
    )
    with pytest.raises(DatasetMismatch, match="arrived with content sha256"):
        check_arrival(damaged, digest)


def test_a_missing_data_file_is_an_error_that_names_it_and_its_setting(ewt_slice, tmp_path):
    missing = tmp_path / "moved" / "dev.conllu"
    config = DataConfig(train=str(ewt_slice["train"]), dev=str(missing), cache_dir=str(tmp_path))
    with pytest.raises(DataFormatError, match=rf"{missing}: no such file \(data\.dev\)"):
        prepare(config)


def test_a_split_is_the_file_the_data_names_and_ewt_fills_in_for_conllu(ewt_source, ewt_slice):
    named = DataConfig(train=str(ewt_slice["train"]), dev=str(ewt_slice["dev"]))
    assert split_file(named, "train") == ewt_slice["train"]
    assert split_file(named, "test") == ewt_source.test  # CoNLL-U naming no test file
    seed = DataConfig(train="train.txt", dev="dev.txt", format="seed-ids")
    with pytest.raises(DataFormatError, match="^data.test: seed-ids data names no file$"):
        split_file(seed, "test")
