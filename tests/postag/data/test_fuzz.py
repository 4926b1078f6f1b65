"""Property-based tests: readers and config either read exactly what the input says or fail
with the module's own clear error; never another exception, never a silent drop."""

from __future__ import annotations

import contextlib
import string
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postag.config import ConfigError, RunConfig, apply_overrides, build
from postag.data.readers import DataFormatError, Sentence, read_conllu, read_seed_ids

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Words and tags as CoNLL-U allows them: no tab, no line break, not empty, not only spaces.
token = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=8
).filter(lambda t: t.strip() == t and t != "")
sentences = st.lists(
    st.lists(st.tuples(token, token), min_size=1, max_size=6), min_size=1, max_size=5
)


def conllu_text(sentences_: list[list[tuple[str, str]]]) -> str:
    blocks = []
    for sentence in sentences_:
        rows = ["# a comment"]
        for i, (word, tag) in enumerate(sentence, start=1):
            rows.append("\t".join([str(i), word, "_", "X", tag, "_", "_", "_", "_", "_"]))
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + "\n"


@FUZZ
@given(sentences)
def test_conllu_reads_back_exactly_what_was_written(tmp_path, written):
    path = tmp_path / "f.conllu"
    path.write_text(conllu_text(written), encoding="utf-8")
    expected = [Sentence(tuple(w for w, _ in s), tuple(t for _, t in s)) for s in written]
    assert read_conllu(path) == expected


@FUZZ
@given(sentences, st.data())
def test_mutated_conllu_reads_or_fails_with_a_format_error(tmp_path, written, data):
    original = conllu_text(written).encode("utf-8")
    raw = bytearray(original)
    mutated = set()
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
        mutated.add(position)
    path = tmp_path / "m.conllu"
    path.write_bytes(bytes(raw))
    try:
        result = read_conllu(path)
    except DataFormatError as error:
        assert str(path) in str(error)
        return
    # Nothing silently dropped: every word line we wrote that the mutation left whole (its
    # bytes and the line breaks around it) is read as its word.
    read = Counter(word for sentence in result for word in sentence.words)
    assert untouched_words(original, mutated) <= read
    # And nothing made up: no more words than the file has lines.
    assert read.total() <= bytes(raw).count(b"\n") + 1


def untouched_words(original: bytes, mutated: set[int]) -> Counter:
    """The words of the word lines `conllu_text` wrote (neither comments nor blank) whose
    bytes, and the line breaks before and after them, no mutation touched."""
    words: Counter = Counter()
    start = 0
    for line in original.split(b"\n"):
        end = start + len(line)
        whole = not any(start - 1 <= position <= end for position in mutated)
        if whole and line and not line.startswith(b"#"):
            words[line.split(b"\t")[1].decode("utf-8")] += 1
        start = end + 1
    return words


ids = st.lists(st.integers(1, 10**6), min_size=1, max_size=8)


@FUZZ
@given(st.lists(st.tuples(ids, st.integers(0, 3)), min_size=1, max_size=5), st.data())
def test_seed_format_reads_back_exactly_and_strips_only_padding(tmp_path, rows, data):
    lines, expected = [], []
    for words, padding in rows:
        tags = data.draw(st.lists(st.integers(1, 49), min_size=len(words), max_size=len(words)))
        lines.append(" ".join(map(str, words + [0] * padding)))
        lines.append(" ".join(map(str, tags + [0] * padding)))
        expected.append(Sentence(tuple(map(str, words)), tuple(map(str, tags))))
    path = tmp_path / "s.txt"
    path.write_text("\n".join(lines) + "\n")
    assert read_seed_ids(path) == expected


@FUZZ
@given(st.binary(min_size=0, max_size=200))
def test_random_bytes_never_crash_the_readers(tmp_path, raw):
    path = tmp_path / "r.bin"
    path.write_bytes(raw)
    for reader in (read_conllu, read_seed_ids):
        with contextlib.suppress(DataFormatError):
            reader(path)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
section_keys = st.sampled_from(["data", "model", "train", "hidden_size", "epochs", "lr", "x"])


@FUZZ
@given(
    st.dictionaries(
        section_keys,
        st.dictionaries(
            st.sampled_from(
                [
                    "hidden_size",
                    "num_layers",
                    "epochs",
                    "lr",
                    "betas",
                    "ff_dims",
                    "format",
                    "max_train_sentences",
                    "device",
                    "bogus",
                ]
            ),
            yaml_values,
            max_size=4,
        ),
        max_size=3,
    )
)
def test_config_builds_or_names_what_is_wrong(values):
    try:
        config = build(RunConfig, values)
    except ConfigError as error:
        assert "'" in str(error) or "expected a mapping" in str(error)
        return
    for section, fields in values.items():
        for key, value in fields.items():
            built = getattr(getattr(config, section), key)
            assert built == (tuple(value) if isinstance(value, list) else value)


@FUZZ
@given(st.text(alphabet=string.printable, max_size=30))
def test_any_override_text_applies_or_fails_clearly(text):
    try:
        apply_overrides({}, [text])
    except ConfigError as error:
        assert repr(text) in str(error)
