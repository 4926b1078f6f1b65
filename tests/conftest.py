"""Shared fixtures: small real slices of UD English EWT, written as CoNLL-U files."""

from __future__ import annotations

from pathlib import Path

import pytest

from postag.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from postag.sources import ewt_files

SLICE_SENTENCES = {"train": 600, "dev": 150, "test": 150}


def conllu_blocks(path: Path, count: int) -> str:
    """The first `count` sentences of a CoNLL-U file, comments and all."""
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    return "\n\n".join(blocks[:count]) + "\n\n"


@pytest.fixture(scope="session")
def ewt_slice(tmp_path_factory) -> dict[str, Path]:
    """First sentences of EWT train/dev/test in a temporary folder."""
    source = ewt_files()
    folder = tmp_path_factory.mktemp("ewt-slice")
    paths = {}
    for split, count in SLICE_SENTENCES.items():
        paths[split] = folder / f"{split}.conllu"
        paths[split].write_text(conllu_blocks(getattr(source, split), count), encoding="utf-8")
    return paths


@pytest.fixture(scope="session")
def tiny_config(ewt_slice, tmp_path_factory) -> RunConfig:
    """A configuration that trains on the EWT slice in seconds."""
    tmp_path = tmp_path_factory.mktemp("tiny")
    return RunConfig(
        data=DataConfig(
            train=str(ewt_slice["train"]),
            dev=str(ewt_slice["dev"]),
            test=str(ewt_slice["test"]),
            cache_dir=str(tmp_path / "cache"),
        ),
        model=ModelConfig(embedding_dim=32, hidden_size=32, num_layers=1, ff_dims=(64,)),
        train=TrainConfig(
            epochs=6, batch_size=16, lr=3e-3, device="cpu", output_dir=str(tmp_path / "run")
        ),
    )
