"""Self-contained tagger checkpoints: weights, resolved config, vocabulary and tag set.

Only tensors and plain containers are saved, so loading works with
`torch.load(weights_only=True)` and never unpickles code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from postag.config import RunConfig, build, to_dict
from postag.data.dataset import PreparedDataset, WordLookup
from postag.files import replaced_atomically
from postag.models.tagger import Tagger

CHECKPOINT_FORMAT = 1
JOINT_HEADS = "joint_heads."


@dataclass(frozen=True)
class LoadedTagger:
    # A Tagger, or several as one (postag/models/ensemble.py's TaggerEnsemble, which scores a
    # batch as a Tagger does); named by their base class, since the ensemble is made of these.
    model: nn.Module
    config: RunConfig
    words: tuple[str, ...]
    tags: tuple[str, ...]
    dataset_fingerprint: str
    # The char encoder's alphabet; empty for taggers without one (and older checkpoints).
    chars: tuple[str, ...] = ()

    @property
    def word_lookup(self) -> WordLookup:
        """How this tagger looks a word up in `words` (as its training data did)."""
        return WordLookup.of(self.config.data)


def save_checkpoint(
    path: str | Path, model_state: dict, config: RunConfig | dict, dataset: PreparedDataset
) -> Path:
    """`config`: the RunConfig, or its plain form as a sweep's trial carried it (`to_dict`)."""
    path = Path(path)
    # The joint heads trained the encoder; the shipped tagger predicts the tag alone.
    shipped = {k: v for k, v in model_state.items() if not k.startswith(JOINT_HEADS)}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": config if isinstance(config, dict) else to_dict(config),
        "model_state": shipped,
        "words": list(dataset.words.items),
        "tags": list(dataset.tags.items),
        "chars": list(dataset.chars.items),
        "dataset_fingerprint": dataset.fingerprint,
    }
    # A run killed while saving keeps its previous best.pt rather than half of a new one.
    with replaced_atomically(path) as temporary:
        torch.save(payload, temporary)
    return path


def upgrade(payload: dict) -> None:
    """Bring a checkpoint saved by an earlier postag up to date, in place, so that the
    models already registered keep loading: the char CNN's one width (`char_kernel`, one
    `chars.conv`) became a list of widths (`char_kernels`, `chars.convs.N`)."""
    model = payload["config"].get("model", {})
    if "char_kernel" in model:
        model["char_kernels"] = [model.pop("char_kernel")]
        state = payload["model_state"]
        for key in [k for k in state if k.startswith("chars.conv.")]:
            state[key.replace("chars.conv.", "chars.convs.0.")] = state.pop(key)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedTagger:
    payload = torch.load(Path(path), map_location=device, weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a postag checkpoint of format {CHECKPOINT_FORMAT}")
    upgrade(payload)
    config = build(RunConfig, payload["config"])
    chars = tuple(payload.get("chars", ()))
    model = Tagger(config.model, len(payload["words"]), len(payload["tags"]), len(chars))
    model.load_state_dict(payload["model_state"])
    model.to(device).eval()
    return LoadedTagger(
        model=model,
        config=config,
        words=tuple(payload["words"]),
        tags=tuple(payload["tags"]),
        dataset_fingerprint=payload["dataset_fingerprint"],
        chars=chars,
    )
