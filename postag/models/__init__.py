"""Models: the tagger itself (`tagger`: embeddings, char encoder, BiLSTM, feed-forward
head), saved and loaded with its vocabulary and config (`checkpoint`), and several seeds
averaged as one model (`ensemble`)."""
