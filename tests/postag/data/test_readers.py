from pathlib import Path

import pytest

from postag.data.readers import DataFormatError, read_conllu, read_seed_ids

CONLLU = """\
# sent_id = one
# text = I can't go.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_
2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
4.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t_\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def write(tmp_path: Path, text: str | bytes, name: str = "data.txt") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_conllu_reads_words_and_xpos_skipping_comments_ranges_and_empty_nodes(tmp_path):
    sentences = read_conllu(write(tmp_path, CONLLU))
    assert [s.words for s in sentences] == [("I", "ca", "n't", "go", "."), ("Yes",)]
    assert sentences[0].tags == ("PRP", "MD", "RB", "VB", ".")
    # The last sentence has no blank line after it and is still read.
    assert sentences[1].tags == ("UH",)


def test_conllu_reads_upos_by_option(tmp_path):
    sentences = read_conllu(write(tmp_path, CONLLU), tag_column="upos")
    assert sentences[0].tags == ("PRON", "AUX", "PART", "VERB", "PUNCT")


def test_conllu_reads_joint_columns_beside_the_tag(tmp_path):
    (first, second) = read_conllu(write(tmp_path, CONLLU), "xpos", ("upos", "feats"))
    assert first.tags == ("PRP", "MD", "RB", "VB", ".")
    assert first.joint == (("PRON", "AUX", "PART", "VERB", "PUNCT"), ("_",) * 5)
    assert second.joint == (("INTJ",), ("_",))
    assert read_conllu(write(tmp_path, CONLLU))[0].joint == ()


def test_an_empty_joint_column_is_an_error_naming_the_line(tmp_path):
    path = write(tmp_path, "1\tok\tok\tX\tNN\t\t_\t_\t_\t_\n")
    with pytest.raises(DataFormatError) as caught:
        read_conllu(path, "xpos", ("feats",))
    assert str(caught.value) == f"{path}:1: empty FEATS column"


def test_conllu_keeps_long_sentences_whole(tmp_path):
    lines = [f"{i}\tw{i}\t_\tX\tNN\t_\t_\t_\t_\t_" for i in range(1, 161)]
    sentences = read_conllu(write(tmp_path, "\n".join(lines) + "\n"))
    assert len(sentences[0].words) == 160


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("2\tbad\tbad\tX\tNN\t_\t_\t_", "expected 10 tab-separated columns, found 8"),
        ("x\tbad\tbad\tX\tNN\t_\t_\t_\t_\t_", "token id 'x' is not an integer"),
        ("7\tbad\tbad\tX\tNN\t_\t_\t_\t_\t_", "token id 7 out of order (expected 2)"),
    ],
)
def test_conllu_errors_name_file_line_and_problem(tmp_path, line, problem):
    text = "# c\n1\tok\tok\tX\tNN\t_\t_\t_\t_\t_\n" + line + "\n"
    path = write(tmp_path, text)
    with pytest.raises(DataFormatError) as caught:
        read_conllu(path)
    assert str(caught.value) == f"{path}:3: {problem}"


def test_empty_file_is_an_error(tmp_path):
    path = write(tmp_path, "")
    with pytest.raises(DataFormatError, match="the file is empty"):
        read_conllu(path)
    with pytest.raises(DataFormatError, match="the file is empty"):
        read_seed_ids(path)


def test_file_of_comments_only_has_no_sentences(tmp_path):
    with pytest.raises(DataFormatError, match="no sentences found"):
        read_conllu(write(tmp_path, "# only a comment\n\n"))


def test_non_utf8_file_is_an_error_naming_the_line(tmp_path):
    path = write(tmp_path, "1\tok\tok\tX\tNN\t_\t_\t_\t_\t_\n2\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataFormatError) as caught:
        read_conllu(path)
    assert str(caught.value).startswith(f"{path}:2: not UTF-8 (byte 0xe9")


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(DataFormatError, match="no such file"):
        read_conllu(tmp_path / "absent.conllu")


def test_seed_ids_strip_trailing_padding_only(tmp_path):
    sentences = read_seed_ids(write(tmp_path, "5 8 2 0 0\n3 4 3 0 0\n7\n9\n"))
    assert [s.words for s in sentences] == [("5", "8", "2"), ("7",)]
    assert [s.tags for s in sentences] == [("3", "4", "3"), ("9",)]


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("5 8 2\n3 4\n", 2, "2 tag ids for 3 word ids on line 1"),
        ("5 x 2\n3 4 3\n", 1, "item 2 ('x') is not a non-negative integer"),
        ("5 8\n3 -4\n", 2, "item 2 ('-4') is not a non-negative integer"),
        ("5 0 2\n3 4 3\n", 1, "padding id 0 at position 2, inside the sentence"),
        ("5 8 2\n3 0 3\n", 2, "padding id 0 at position 2, inside the sentence"),
        ("5 8 2\n3 4 3\n6 6\n", 3, "word line without a tag line after it"),
        ("0 0\n0 0\n", 1, "sentence holds only padding"),
        ("5\n3\n\n6\n7\n", 3, "blank line (each sentence is a word line and a tag line)"),
    ],
)
def test_seed_ids_errors_name_file_line_and_problem(tmp_path, text, line, problem):
    path = write(tmp_path, text)
    with pytest.raises(DataFormatError) as caught:
        read_seed_ids(path)
    assert str(caught.value) == f"{path}:{line}: {problem}"


def test_reads_the_real_ewt_slice(ewt_slice):
    sentences = read_conllu(ewt_slice["train"])
    assert len(sentences) == 600
    assert all(len(s.words) == len(s.tags) > 0 for s in sentences)
