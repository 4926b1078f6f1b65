"""UPOS from XPOS, as the training data pairs them, on slices of EWT."""

import pytest

from postag.data.readers import DataFormatError, read_conllu
from postag.data.tagsets import UposFromXpos


def test_the_word_decides_where_the_penn_tag_does_not(ewt_slice):
    pairing = UposFromXpos.learn(ewt_slice["train"])
    assert pairing.upos("is", "VBZ") == "AUX"
    assert pairing.upos("Is", "VBZ") == "AUX"  # looked up lowercased
    assert pairing.upos("of", "IN") == "ADP"
    assert pairing.upos("unseenword", "NN") == "NOUN"  # a word it never saw: the tag's own
    assert pairing.upos("unseenword", "NEWTAG") == "X"


def test_gold_xpos_maps_to_gold_upos_almost_always(ewt_slice):
    pairing = UposFromXpos.learn(ewt_slice["train"])
    xpos, upos = read_conllu(ewt_slice["test"], "xpos"), read_conllu(ewt_slice["test"], "upos")
    right = total = 0
    for by_xpos, by_upos in zip(xpos, upos, strict=True):
        mapped = pairing.tag(list(by_xpos.words), list(by_xpos.tags))
        right += sum(m == g for m, g in zip(mapped, by_upos.tags, strict=True))
        total += len(mapped)
    assert right / total > 0.95  # 96.9% on this slice; 97.6% on EWT test learned from all of train


def test_a_file_without_tagged_words_is_an_error_that_names_it(tmp_path):
    empty = tmp_path / "comments.conllu"
    empty.write_text("# text = nothing here\n\n")
    with pytest.raises(DataFormatError, match=r"comments\.conllu.*no tagged words"):
        UposFromXpos.learn(empty)
