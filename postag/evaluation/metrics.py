"""Tagging metrics as pure, vectorized functions of flat gold/predicted tag-id tensors.

Every token counts: callers pass all tokens of all sentences. A gold id below 0 marks a tag
the model's tag set lacks; such a token is always an error and appears in no tag's row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TagScore:
    tag: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Evaluation:
    num_tokens: int
    accuracy: float
    seen_accuracy: float
    unseen_accuracy: float
    num_unseen: int
    confusion: torch.Tensor  # (C, C) counts, rows gold, columns predicted

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the tags present in the gold data (the padding id 0 left out)."""
        names = [str(i) for i in range(self.confusion.shape[0])]
        return macro_f1(per_tag_scores(self.confusion, names))

    def as_dict(self) -> dict[str, float]:
        return {
            "accuracy": self.accuracy,
            "seen_accuracy": self.seen_accuracy,
            "unseen_accuracy": self.unseen_accuracy,
            "num_tokens": self.num_tokens,
            "num_unseen": self.num_unseen,
        }


def token_accuracy(gold: torch.Tensor, predicted: torch.Tensor) -> float:
    """Fraction of tokens tagged right; NaN when there are none."""
    if gold.numel() == 0:
        return float("nan")
    return (gold == predicted).double().mean().item()


def confusion_matrix(gold: torch.Tensor, predicted: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts of (gold, predicted) pairs; tokens with unknown gold are left out."""
    known = gold >= 0
    pairs = gold[known] * num_classes + predicted[known]
    return torch.bincount(pairs, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_tag_scores(confusion: torch.Tensor, tag_names: list[str], skip: int = 1) -> list[TagScore]:
    """Precision, recall, F1 and support of each tag, leaving out the first `skip` (padding)."""
    confusion = confusion.double()
    true_positive = confusion.diagonal()
    predicted = confusion.sum(dim=0)
    support = confusion.sum(dim=1)
    precision = _safe_divide(true_positive, predicted)
    recall = _safe_divide(true_positive, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return [
        TagScore(tag_names[i], precision[i].item(), recall[i].item(), f1[i].item(), int(support[i]))
        for i in range(skip, len(tag_names))
    ]


def macro_f1(scores: list[TagScore]) -> float:
    """Mean F1 over the tags that occur in the gold data."""
    present = [s.f1 for s in scores if s.support > 0]
    return sum(present) / len(present) if present else float("nan")


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-12), 0.0)


def evaluate_predictions(
    gold: torch.Tensor, predicted: torch.Tensor, unseen: torch.Tensor, num_classes: int
) -> Evaluation:
    """All headline figures at once; `unseen` marks tokens whose word was not in training."""
    return Evaluation(
        num_tokens=gold.numel(),
        accuracy=token_accuracy(gold, predicted),
        seen_accuracy=token_accuracy(gold[~unseen], predicted[~unseen]),
        unseen_accuracy=token_accuracy(gold[unseen], predicted[unseen]),
        num_unseen=int(unseen.sum()),
        confusion=confusion_matrix(gold, predicted, num_classes),
    )
