"""Data: treebank files read (`readers`: CoNLL-U and the seed's formats) and fetched with
their checksums checked (`sources`), tag sets (`tagsets`), raw text split into tokens
(`tokenize`), a dataset prepared once for training and cached (`dataset`), and its
batches (`batching`)."""
