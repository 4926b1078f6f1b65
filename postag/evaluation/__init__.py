"""Evaluation: the scores (`metrics`), a tagger scored on a test file (`scoring`) or from
the file's raw text as CoNLL 2018 did (`raw`), and what a model costs to run (`cost`)."""
