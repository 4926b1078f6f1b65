"""`make gpu-study` on this CPU before any GPU time is spent: the same command, end to end,
on a Ray node that declares a logical GPU (`sweep.logical_gpus`), the seed study cut by
--set to one trial and the baseline, two batches an epoch, on the EWT slice.

A test of its own, in `make test-slow`: 70-87 s alone here, but 237 s beside the other
file's tests in `make test` (three sweeps, each with its Ray connection and store, and the
gpu tests' collection), a fifth of the suite's bound. Run it before a GPU session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest
from ray.cluster_utils import Cluster

from tests.helpers import PROJECT_ROOT

# What a GPU machine would run, cut: the seed study's file, its packing and its steps.
CUT = [
    "sweep.logical_gpus=true",
    "sweep.space.model.hidden_size=[16]",
    "sweep.space.model.num_layers=[1]",
    "sweep.space.train.epochs=[1]",
    "sweep.baseline.model.hidden_size=16",
    "sweep.baseline.train.epochs=1",
    "sweep.baseline.train.max_batches_per_epoch=2",
    "train.max_batches_per_epoch=2",
]
FILES = {
    "tests.log",
    "study.log",
    "evaluate.log",
    "gpu.csv",
    "trials.csv",
    "table.md",
    "figures.json",
    "mlruns.tar.gz",
}


@pytest.fixture(scope="module")
def logical_gpu():
    """A Ray node that declares one GPU: trials are given GPU shares, and train on the CPU."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1})
    yield cluster.address
    cluster.shutdown()


# A whole study in one test: about 80 s alone, past pytest's 300 s on a busy 2-core machine.
STUDY_LIMIT_SECONDS = 900


@pytest.mark.slow
@pytest.mark.timeout(STUDY_LIMIT_SECONDS)
def test_the_gpu_study_runs_end_to_end_on_a_logical_gpu(logical_gpu, ewt_slice, tmp_path):
    data = [f"data.{split}={ewt_slice[split]}" for split in ("train", "dev", "test")]
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    overrides = [arg for value in [*CUT, *data, cache] for arg in ("--set", value)]
    # A process of its own, as `make gpu-study` runs it: a sweep in a test process that an
    # earlier test's Ray session ran in can fail its trials at start.
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pipelines.bench.gpu.study", "--out", str(out), *overrides]
    env = {**os.environ, "RAY_ADDRESS": logical_gpu}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # Eight files in the study's folder: these, and nothing else.
    assert {path.name for path in out.iterdir()} == FILES
    console = done.stdout
    assert "gpu-study: make evaluate BEST: exit 0" in console
    assert "gpu-study: one at a time / packed: " in console
    table = (out / "table.md").read_text()
    assert "registered `best`: test accuracy " in table
    assert "| trials training and validating |" in table
    assert "Wall time ratio (one at a time / packed): " in table
    # The baseline's row first, with its gradient evidence; then the trial.
    rows = [
        line
        for line in table.splitlines()
        if line.startswith("| baseline-") or line.startswith("| h16")
    ]
    assert rows[0].startswith("| baseline-h16-l40-e1 |") and "e-" in rows[0]
    assert len((out / "trials.csv").read_text().splitlines()) == 3  # header, trial, baseline
    assert "no nvidia-smi" in (out / "gpu.csv").read_text()
    # The gpu tests were collected and, without CUDA, skipped or deselected: none failed.
    assert " failed" not in (out / "tests.log").read_text()
    with tarfile.open(out / "mlruns.tar.gz") as tar:
        names = tar.getnames()
    assert {"mlruns/mlflow.db", "mlruns/evaluation.json"} <= set(names)
    # Not the weights, nor Tune's checkpoints: they do not fit what comes back.
    assert not [name for name in names if name.endswith(".pt") or "/tune" in name]


# best.yaml's study as a GPU machine would run it for the ensemble's figures, cut as
# tests/e2e/test_sweep_best.py cuts it: its three seeds, small, three epochs at a high rate
# (so that their ensemble beats the best of them, and is registered).
ENSEMBLE_CUT = [
    "sweep.logical_gpus=true",
    "model.embedding_dim=16",
    "model.hidden_size=16",
    "model.ff_dims=[16]",
    "model.char_dim=8",
    "model.char_filters=16",
    "train.epochs=3",
    "train.lr=0.01",
    "sweep.baseline.model.hidden_size=8",
    "sweep.baseline.model.num_layers=6",
    "sweep.baseline.train.epochs=1",
    "sweep.baseline.train.max_batches_per_epoch=2",
]


@pytest.mark.slow
@pytest.mark.timeout(STUDY_LIMIT_SECONDS)
def test_an_ensembles_study_run_detached_gives_it_and_each_seed_on_test_and_dev(
    logical_gpu, ewt_slice, tmp_path
):
    data = [f"data.{split}={ewt_slice[split]}" for split in ("train", "dev", "test")]
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    overrides = [arg for value in [*ENSEMBLE_CUT, *data, cache] for arg in ("--set", value)]
    study = ["--experiment", "experiments/best.yaml", "--steps", "study,members,table"]
    # Detached, as on a cluster node: started in a session of its own, waited for from later
    # shells, each copying what is done into a folder of its own.
    script = str(PROJECT_ROOT / "pipelines" / "bench" / "gpu" / "detached.sh")
    env = {**os.environ, "RAY_ADDRESS": logical_gpu, "PYTHON": sys.executable}
    env["GPU_STUDY_OUT"] = str(tmp_path / "study")
    env.pop("MLFLOW_TRACKING_URI", None)
    started = subprocess.run(
        [script, "start", *study, *overrides], env=env, capture_output=True, text=True
    )
    assert "gpu-detached: started" in started.stdout, started.stdout + started.stderr
    first = subprocess.run([script, "wait", "1", tmp_path / "first"], env=env, text=True,
                           capture_output=True)  # fmt: skip
    assert "still running after 1 s: wait again" in first.stdout
    out = tmp_path / "last"
    last = subprocess.run([script, "wait", "240", out], env=env, capture_output=True, text=True)
    assert "gpu-detached: done, exit 0" in last.stdout, last.stdout + last.stderr
    console = (out / "console.log").read_text()
    assert "gpu-study: 8 of 8 evaluations, 4 models on test and dev (evaluate.log)" in console
    # Eight files in the wait's folder: the study's seven and the console.
    assert {path.name for path in out.iterdir()} == FILES - {"tests.log"} | {"console.log"}
    members = json.loads((out / "figures.json").read_text())["members"]
    assert sorted(members) == ["registered", "seed1", "seed2", "seed3"]
    test_tokens = sum(
        len(line.split("\t")) == 10 and line.split("\t")[0].isdigit()
        for line in ewt_slice["test"].read_text().splitlines()
    )
    for splits in members.values():
        assert sorted(splits) == ["dev", "test"]
        assert splits["test"]["num_tokens"] == test_tokens
        assert 0 < splits["test"]["token_accuracy"] <= 1
    # The registered version is the ensemble of the three seeds, as its evaluation says.
    assert "ensemble            3 taggers" in (out / "evaluate.log").read_text()


def test_where_the_bundle_is_gpu_study_never_starts_makes_install_step(tmp_path):
    # On an offline node, a copy of the project newer than the .venv that make
    # offline-install made there must not start make's install step (it reaches for the
    # network).
    def planned(bundle: str) -> str:
        newer = ["make", "-n", "--no-print-directory", "-W", "requirements.lock", "gpu-study"]
        return subprocess.run(
            [*newer, f"BUNDLED_EWT={bundle}"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    assert "pip install" in planned("")  # without a bundle, make installs first
    bundled = planned(str(tmp_path))
    assert "pip install" not in bundled
    assert f"POSTAG_EWT_DIR={tmp_path} .venv/bin/python -m pipelines.bench.gpu.study" in bundled
