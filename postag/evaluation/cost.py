"""What a trained tagger costs to ship: its size, and the time it takes to tag.

Both are objectives a Pareto search may trade validation accuracy against (their names are
postag/training/objective.py's COST_METRICS). A sweep's trial measures them on its final
model in its own process; `postag evaluate` measures the time again, by the same function, for a
registered model.
"""

from __future__ import annotations

import statistics
import time

import torch

from postag.data.batching import collate, sorted_order
from postag.data.dataset import Split
from postag.models.checkpoint import JOINT_HEADS, LoadedTagger
from postag.models.tagger import Tagger
from postag.serving.inference import DEFAULT_BATCH_SIZE, tagger_split
from postag.training.objective import NUM_PARAMETERS, TAGGING_TIME

# Timed passes over the sentences, after one untimed pass that warms the allocator up; the
# median of five is steady to a few percent where one pass is not.
TIMED_PASSES = 5


def num_parameters(model: Tagger) -> int:
    """The shipped tagger's parameters: the joint heads, which only train, left out."""
    return sum(
        p.numel() for name, p in model.named_parameters() if not name.startswith(JOINT_HEADS)
    )


@torch.no_grad()
def tagging_ms_per_sentence(
    model: Tagger, split: Split, passes: int = TIMED_PASSES, batch_size: int = DEFAULT_BATCH_SIZE
) -> float:
    """Milliseconds per sentence to tag all of `split` (batches as the served model makes
    them), on one CPU thread: the median of `passes`. `model` must be on the CPU.

    One thread, so that trials that share a machine, and machines of different core
    counts, measure the same thing: what a sentence costs one core.
    """
    model.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _tag_all(model, split, batch_size)
        seconds = [_timed(lambda: _tag_all(model, split, batch_size)) for _ in range(passes)]
    finally:
        torch.set_num_threads(threads)
    return 1000 * statistics.median(seconds) / split.num_sentences


# Each cost by its objective name (postag/training/objective.py's COST_METRICS).
MEASURES = {
    TAGGING_TIME: tagging_ms_per_sentence,
    NUM_PARAMETERS: lambda model, split: float(num_parameters(model)),
}


def measure_costs(model: Tagger, split: Split, names: tuple[str, ...]) -> dict[str, float]:
    """The costs `names` of `model` (on the CPU), the tagging time on `split`."""
    return {name: MEASURES[name](model, split) for name in names}


def tagger_ms_per_sentence(tagger: LoadedTagger, sentences: list[list[str]]) -> float:
    """`tagging_ms_per_sentence` of a loaded tagger on `sentences`, encoded as it encodes
    them (its vocabulary, its lookup, its alphabet); the encoding is not timed."""
    return tagging_ms_per_sentence(tagger.model.cpu(), tagger_split(tagger, sentences))


def _tag_all(model: Tagger, split: Split, batch_size: int) -> None:
    device = torch.device("cpu")
    for indices in sorted_order(split.lengths, batch_size):
        batch = collate(split, indices, with_chars=model.uses_chars)
        model.score(batch, device).data.argmax(dim=-1)


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started
