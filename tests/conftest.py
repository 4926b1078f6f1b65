"""Shared fixtures: small real slices of UD English EWT, written as CoNLL-U files."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import yaml

from pipelines.sweep import run_sweep
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


TINY_SWEEP = {
    "model": {"embedding_dim": 16, "num_layers": 1, "ff_dims": [16]},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.005},
    "sweep": {
        "name": "tiny",
        "space": {
            # hidden_size 0 makes torch raise: the trial that fails while the sweep goes on.
            "model.hidden_size": [8, 24, 0],
            "model.num_layers": [1],
        },
        "baseline": {"model.hidden_size": 8, "model.num_layers": 6, "train.epochs": 1},
        "max_concurrent_trials": 2,
        "cpus_per_trial": 1,
        "max_failures": 1,
    },
}


def write_sweep(tmp_path, ewt_slice, values=TINY_SWEEP):
    values = {**values, "data": {"train": str(ewt_slice["train"]), "dev": str(ewt_slice["dev"]),
                                 "cache_dir": str(tmp_path / "cache")}}  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="session")
def swept(ewt_slice, tmp_path_factory):
    """A real tiny sweep (Ray, sqlite MLflow) that registered `postag-tagger@best`."""
    tmp_path = tmp_path_factory.mktemp("sweep")
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    outcome = run_sweep(write_sweep(tmp_path, ewt_slice), [], tmp_path / "tune", fresh=False)
    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [outcome["state"]["experiment_id"]],
        filter_string=f"tags.mlflow.parentRunId = '{outcome['state']['parent_run_id']}'",
    )
    yield outcome, runs, client
    patch.undo()
