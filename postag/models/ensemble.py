"""Several taggers as one: each token's tag is the one with the highest mean probability
over the members (seeds of one configuration, which err on different tokens).

An ensemble is a `LoadedTagger` whose model is a `TaggerEnsemble`: it scores a batch as a
`Tagger` does, so tagging, evaluation, validation and the cost measures take it unchanged.
Its members must read the same words and tags the same way (one prepared dataset).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from postag.data.batching import Batch
from postag.models.checkpoint import LoadedTagger, load_checkpoint
from postag.models.tagger import Tagger

# The floor of a mean probability before its log: a tag every member rules out entirely
# (a probability that underflows to 0) scores a finite, very low log-probability.
PROBABILITY_FLOOR = torch.finfo(torch.float32).tiny


class TaggerEnsemble(nn.Module):
    """Members' tag scores averaged as probabilities. `score` gives the log of the mean
    probability, so that its argmax is the ensemble's tag and cross-entropy on it is the
    ensemble's own loss."""

    def __init__(self, members: Sequence[Tagger]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs two members at least, got {len(members)}")
        counts = {member.num_tags for member in members}
        if len(counts) > 1:
            raise ValueError(f"the members tag with different tag sets ({sorted(counts)} tags)")
        self.members = nn.ModuleList(members)

    @property
    def uses_chars(self) -> bool:
        return any(member.uses_chars for member in self.members)

    @property
    def num_tags(self) -> int:
        return self.members[0].num_tags

    def score(self, batch: Batch, device: torch.device) -> PackedSequence:
        scored = [member.score(batch, device) for member in self.members]
        # Every member packs the same batch by the same lengths, so rows line up.
        probabilities = torch.stack([s.data.float().softmax(dim=-1) for s in scored]).mean(0)
        return scored[0]._replace(data=probabilities.clamp_min(PROBABILITY_FLOOR).log())


def ensemble_of(members: Sequence[LoadedTagger]) -> LoadedTagger:
    """One tagger of `members`, which must share their vocabulary, alphabet, tag set, word
    lookup and training data; it reads and answers as the first does."""
    first = members[0]
    for number, member in enumerate(members[1:], 2):
        differs = [
            name
            for name, value in (
                ("vocabulary", member.words != first.words),
                ("tag set", member.tags != first.tags),
                ("alphabet", member.chars != first.chars),
                ("word lookup", member.word_lookup != first.word_lookup),
                ("training data", member.dataset_fingerprint != first.dataset_fingerprint),
            )
            if value
        ]
        if differs:
            raise ValueError(
                f"member {number} of the ensemble differs from member 1 in its "
                f"{', '.join(differs)}: an ensemble's members are trained on the same data"
            )
    model = TaggerEnsemble([member.model for member in members])
    return dataclasses.replace(first, model=model)


def load_ensemble(paths: Sequence[str | Path]) -> LoadedTagger:
    """The ensemble of the checkpoints at `paths` (in that order)."""
    return ensemble_of([load_checkpoint(path) for path in paths])


def members_of(tagger: LoadedTagger) -> list[LoadedTagger]:
    """An ensemble's members, each a tagger of its own; a single tagger is its one member."""
    if not isinstance(tagger.model, TaggerEnsemble):
        return [tagger]
    return [dataclasses.replace(tagger, model=model) for model in tagger.model.members]
