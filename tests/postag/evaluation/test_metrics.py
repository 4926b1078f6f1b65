import math

import pytest
import torch

from postag.evaluation.metrics import (
    confusion_matrix,
    evaluate_predictions,
    macro_f1,
    per_tag_scores,
    token_accuracy,
)

# Classes: 0 padding, 1 NN, 2 VB, 3 DT. Six tokens, by hand:
#   gold      NN NN VB DT DT VB
#   predicted NN VB VB DT NN VB
GOLD = torch.tensor([1, 1, 2, 3, 3, 2])
PREDICTED = torch.tensor([1, 2, 2, 3, 1, 2])
TAGS = ["<pad>", "NN", "VB", "DT"]


def test_token_accuracy_by_hand():
    assert token_accuracy(GOLD, PREDICTED) == pytest.approx(4 / 6)
    assert math.isnan(token_accuracy(GOLD[:0], PREDICTED[:0]))


def test_confusion_matrix_rows_are_gold():
    confusion = confusion_matrix(GOLD, PREDICTED, num_classes=4)
    assert confusion.tolist() == [
        [0, 0, 0, 0],
        [0, 1, 1, 0],
        [0, 0, 2, 0],
        [0, 1, 0, 1],
    ]


def test_per_tag_scores_by_hand():
    scores = {s.tag: s for s in per_tag_scores(confusion_matrix(GOLD, PREDICTED, 4), TAGS)}
    assert set(scores) == {"NN", "VB", "DT"}
    # NN: predicted twice, right once; gold twice.
    assert (scores["NN"].precision, scores["NN"].recall, scores["NN"].f1) == pytest.approx(
        (0.5, 0.5, 0.5)
    )
    # VB: predicted three times, right twice; gold twice.
    assert (scores["VB"].precision, scores["VB"].recall) == pytest.approx((2 / 3, 1.0))
    assert scores["VB"].f1 == pytest.approx(0.8)
    # DT: predicted once, right once; gold twice.
    assert (scores["DT"].precision, scores["DT"].recall, scores["DT"].f1) == pytest.approx(
        (1.0, 0.5, 2 / 3)
    )
    assert [s.support for s in scores.values()] == [2, 2, 2]
    assert macro_f1(list(scores.values())) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_a_tag_never_predicted_scores_zero_not_nan():
    scores = per_tag_scores(
        confusion_matrix(torch.tensor([1, 2]), torch.tensor([1, 1]), 3), TAGS[:3]
    )
    assert scores[1].precision == 0.0 and scores[1].f1 == 0.0


def test_seen_and_unseen_accuracy_and_unknown_gold_tags():
    unseen = torch.tensor([False, False, True, True, False, False])
    gold = GOLD.clone()
    gold[0] = -1  # a tag the model's tag set lacks: always an error
    result = evaluate_predictions(gold, PREDICTED, unseen, num_classes=4)
    assert result.num_tokens == 6
    assert result.accuracy == pytest.approx(3 / 6)
    assert result.unseen_accuracy == pytest.approx(2 / 2)
    assert result.seen_accuracy == pytest.approx(1 / 4)
    assert result.num_unseen == 2
    assert result.confusion.sum() == 5
