"""`make bench-profile`: where an epoch of training goes, by part of the step.

One epoch of the configuration (the seed's by default) on this machine's CPU, through the
trainer's own loop (`train_epoch`, whose step parts are named: postag/training/trainer.py,
STEP_PARTS), in two passes:

1. Timed: each step part by the clock (batching, the forward pass by module, the loss, the
   backward pass, the gradient norms, the optimizer), with no profiler to slow it.
2. Profiled: a few more batches under torch.profiler, which tells the backward pass apart
   by the forward part that made each autograd node (matched by sequence number). The
   profiler adds a cost to every op, most where ops are many and small (the packed LSTM
   runs each time step as its own ops), so only its proportions within the backward pass
   are used: the timed backward is split by them.

    make bench-profile
    .venv/bin/postag bench-profile --config experiments/best.yaml --batches 20
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from pipelines.cli import command_parser
from pipelines.experiment import SEED_EXPERIMENT, add_config_arguments, config_from_args
from postag.data import dataset as datasets
from postag.training import trainer
from postag.training.trainer import (
    STEP_PARTS,
    epoch_batches,
    make_optimizer,
    make_tagger,
    resolve_device,
    seed_everything,
    train_epoch,
)

# The modules of the forward pass, by the tagger's attribute names.
FORWARD_MODULES = {
    "embedding": "embedding",
    "chars": "char encoder",
    "lstm": "LSTM",
    "head": "feed-forward",
}
BACKWARD_PREFIX = "autograd::engine::evaluate_function: "
# Batches profiled after the timed epoch: enough to split the backward pass.
PROFILED_BATCHES = 3
OTHER_BACKWARD = "other (packing, accumulating gradients, the engine)"


class Clock:
    """Seconds by scope name, summed: a stand-in for `record_function` that times."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started


def scoped(model: nn.Module, enter: Callable[[str], contextlib.AbstractContextManager]) -> list:
    """Each call of the tagger's modules inside a scope `enter("forward: <module>")`; the
    hooks' handles, to remove them."""
    handles = []
    for attribute, name in FORWARD_MODULES.items():
        module = getattr(model, attribute, None)
        if module is None:
            continue
        open_scopes: list[contextlib.AbstractContextManager] = []

        def before(*_, name=name, open_scopes=open_scopes):
            open_scopes.append(enter(f"forward: {name}"))
            open_scopes[-1].__enter__()

        def after(*_, open_scopes=open_scopes):
            open_scopes.pop().__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    return handles


def timed(model, optimizer, split, batches, device) -> tuple[dict[str, float], float, int]:
    """(seconds by part, wall seconds, tokens) of `batches` trained with clocks, not a
    profiler: the trainer's step scopes and the modules' forward calls timed."""
    clock = Clock()
    handles = scoped(model, clock.scope)
    try:
        with patched(trainer, "record_function", clock.scope):
            started = time.perf_counter()
            trained = train_epoch(model, optimizer, split, batches, device, "timed epoch")
            wall = time.perf_counter() - started
    finally:
        for handle in handles:
            handle.remove()
    names = {scope: part for part, scope in STEP_PARTS.items()}
    seconds = {names.get(name, name): value for name, value in clock.seconds.items()}
    forward_parts = sum(v for k, v in seconds.items() if k.startswith("forward: "))
    seconds["forward: packing, dropout, other"] = (
        seconds.pop("forward") - seconds["loss"] - forward_parts
    )
    seconds["outside the step's parts (loop, Python)"] = wall - sum(seconds.values())
    return seconds, wall, trained["tokens"]


@contextlib.contextmanager
def patched(owner, attribute: str, value) -> Iterator[None]:
    original = getattr(owner, attribute)
    setattr(owner, attribute, value)
    try:
        yield
    finally:
        setattr(owner, attribute, original)


def backward_split(model, optimizer, split, batches, device) -> dict[str, float]:
    """The backward pass's shares by the forward part that made each autograd node, from
    torch.profiler over `batches`; nodes made outside a part go to OTHER_BACKWARD."""
    handles = scoped(model, record_function)
    try:
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            train_epoch(model, optimizer, split, batches, device, "profiled batches")
    finally:
        for handle in handles:
            handle.remove()
    events = profiler.events()
    owners = forward_owners(events)
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.name.startswith(BACKWARD_PREFIX):
            totals[owners.get(event.sequence_nr, OTHER_BACKWARD)] += event.cpu_time_total
        elif event.name == STEP_PARTS["backward"]:
            totals["all"] += event.cpu_time_total
    whole = totals.pop("all")
    totals[OTHER_BACKWARD] += whole - sum(totals.values())
    return {part: value / whole for part, value in totals.items()}


def forward_owners(events) -> dict[int, str]:
    """Each autograd node's sequence number -> the forward part that made it (a module's
    scope, or the loss)."""
    owners = {}
    for event in events:
        if event.name.startswith("forward: "):
            part = event.name.removeprefix("forward: ")
        elif event.name == STEP_PARTS["loss"]:
            part = "loss"
        else:
            continue
        stack = list(event.cpu_children)
        while stack:
            child = stack.pop()
            if child.sequence_nr >= 0:
                owners[child.sequence_nr] = part
            stack.extend(child.cpu_children)
    return owners


def combined(seconds: dict[str, float], split: dict[str, float]) -> dict[str, float]:
    """The timed parts, the backward pass split by the profiler's proportions."""
    parts = dict(seconds)
    backward = parts.pop("backward")
    for part, share in split.items():
        parts[f"backward: {part}"] = backward * share
    return parts


def table(seconds: dict[str, float], wall: float, tokens: int) -> str:
    lines = ["| part of the step | seconds | share |", "| --- | ---: | ---: |"]
    for part, value in sorted(seconds.items(), key=lambda item: -item[1]):
        lines.append(f"| {part} | {value:.2f} | {100 * value / wall:.1f}% |")
    lines.append(f"| the epoch | {wall:.2f} | {tokens / wall:,.0f} tokens/s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("postag bench-profile", __doc__)
    add_config_arguments(parser, default=SEED_EXPERIMENT)
    parser.add_argument("--batches", type=int, help="time this many batches (default: an epoch)")
    parser.add_argument("--output", type=Path, default=Path("runs/bench-profile.json"))
    args = parser.parse_args(argv)
    config = config_from_args(args)
    prepared = datasets.load(config.data)
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    seed_everything(config.train.seed)
    device = resolve_device(config.train.device)
    model = make_tagger(config, prepared).to(device)
    optimizer = make_optimizer(model, config.train)
    train = prepared.splits["train"]
    batches = epoch_batches(train, config.train, epoch=1)[: args.batches]
    print(
        f"bench-profile: {len(batches)} batches timed, {PROFILED_BATCHES} profiled, on "
        f"{device} with {torch.get_num_threads()} torch threads; {config.model}",
        flush=True,
    )
    seconds, wall, tokens = timed(model, optimizer, train, batches, device)
    profiled = epoch_batches(train, config.train, epoch=2)[:PROFILED_BATCHES]
    parts = combined(seconds, backward_split(model, optimizer, train, profiled, device))
    print(table(parts, wall, tokens))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"seconds": parts, "wall": wall, "tokens": tokens}, indent=2))
    print(f"bench-profile: figures in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
