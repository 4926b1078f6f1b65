"""Shared fixtures: small real slices of UD English EWT, written as CoNLL-U files."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import os
import pickle
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
import torch
from filelock import FileLock
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import fluent as mlflow_fluent
from mlflow.tracking._tracking_service import utils as mlflow_tracking

from postag.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from postag.data.sources import DataSourceError, TreebankFiles, ewt_files
from postag.serving.names import REGISTERED_MODEL
from tests.helpers import conllu_blocks, copy_store, start_sweep, write_sweep

SLICE_SENTENCES = {"train": 600, "dev": 150, "test": 150}


# Test files that run whole sweeps or servers: minutes each where the rest take seconds.
LONG_FOLDERS = ("tests/e2e/", "tests/pipelines/bench/")


# Threads each test process, and each process it starts, gives torch. `make test` runs test
# files side by side, one process per core (pytest-xdist): a torch spreading the tests' tiny
# models over every core as well only spins. One thread halved the CPU of test_train.py
# alone and took its wall time from 97 s to 77 s. Trials set their own (cpus_per_trial).
TORCH_THREADS = "1"
# Nothing the tests start reports usage home (Ray's usage stats, MLflow's telemetry), run
# through `make test` (whose Makefile exports these) or pytest alone.
NO_TELEMETRY = {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}


def pytest_configure(config):
    """One torch thread a test process unless OMP_NUM_THREADS says otherwise; the processes
    the tests start (sweep drivers, `postag` commands, servers) inherit the setting, and
    no usage reporting (NO_TELEMETRY)."""
    for name, value in NO_TELEMETRY.items():
        os.environ.setdefault(name, value)
    threads = os.environ.setdefault("OMP_NUM_THREADS", TORCH_THREADS)
    if threads.isdigit():  # OpenMP also takes a list per nesting level ("4,2"); torch does not
        torch.set_num_threads(int(threads))


def pytest_collection_modifyitems(items):
    """The long files first, so that the two `make test` workers (pytest-xdist, in this
    order: `--no-loadscope-reorder`) do not end with one of them alone on a long one. The
    sort is stable: pytest-randomly's shuffled order holds within each group.

    Tests marked `gpu` skip, saying why, where torch sees no CUDA device (CI never does)."""
    items.sort(key=lambda item: not item.nodeid.startswith(LONG_FOLDERS))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; torch sees none")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ewt_source() -> TreebankFiles:
    """The treebank where `make sweep` finds it ($POSTAG_EWT_DIR, ../shared/data, the
    download cache), else fetched once into the cache, sha256-checked, as `make sweep`
    fetches it: a fresh machine's first `make test` needs nothing put in place."""
    try:
        return ewt_files()
    except DataSourceError as error:
        problem = str(error)  # said on its own: a traceback would bury it
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def ewt_slice(ewt_source, tmp_path_factory) -> dict[str, Path]:
    """First sentences of EWT train/dev/test in a temporary folder."""
    folder = tmp_path_factory.mktemp("ewt-slice")
    paths = {}
    for split, count in SLICE_SENTENCES.items():
        paths[split] = folder / f"{split}.conllu"
        paths[split].write_text(conllu_blocks(getattr(ewt_source, split), count), encoding="utf-8")
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


@pytest.fixture(scope="session")
def sqlite_store(tmp_path_factory) -> Callable[[Path], str]:
    """Makes a new, empty MLflow sqlite store in a folder and gives its URI.

    MLflow builds a new store's schema by running each of its migrations, 0.8-1.6 CPU-s a
    store, paid by whichever sweep, server or command opens it first. Each test process
    pays it once here: the stores are copies of one it made (`copy_store`, which moves the
    default experiment's artifacts beside each copy, where MLflow would put them)."""
    template = tmp_path_factory.mktemp("empty-store")
    uri = f"sqlite:///{template / 'mlflow.db'}"
    SqlAlchemyStore(uri, str(template / "mlruns"))
    return functools.partial(copy_store, uri)


@pytest.fixture(autouse=True)
def no_leaks_between_tests():
    """Each test leaves the process as it found it: environment, MLflow URI, no active run,
    no active experiment (mlflow.set_experiment's, which a later run in another store would
    be filed under: `No Experiment with id=1 exists`)."""
    environ = dict(os.environ)
    # What mlflow.set_tracking_uri set (None: unset); MLflow has no public getter for it.
    uri = mlflow_tracking._tracking_uri
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    assert mlflow_fluent._active_experiment_id is None, "the test left an active experiment"
    os.environ.clear()
    os.environ.update(environ)
    mlflow.set_tracking_uri(uri)


def session_folder(tmp_path_factory, worker_id: str) -> Path:
    """The temporary folder of the whole test session: with pytest-xdist, the one above
    every worker's own."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def swept(ewt_slice, tmp_path_factory, worker_id):
    """A real tiny sweep (Ray, sqlite MLflow) that registered `postag-tagger@best`, run once
    per test session: the first worker to need it sweeps, the others wait and read it.

    Yields (outcome, runs, client, uri); tests that use the store through MLflow's global
    tracking URI take `in_swept_store` as well. The outcome also counts, by trial point, how
    often and where a trial's RunConfig was resolved (`config_resolutions`).
    """
    shared = session_folder(tmp_path_factory, worker_id)
    folder = shared / "sweep"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with FileLock(shared / "sweep.lock"):
        if not (folder / SWEPT_OUTCOME).exists():
            outcome = sweep_once(folder, uri, ewt_slice)
            (folder / SWEPT_OUTCOME).write_bytes(pickle.dumps(outcome))
    outcome = pickle.loads((folder / SWEPT_OUTCOME).read_bytes())
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs(
        [outcome["state"]["experiment_id"]],
        filter_string=f"tags.mlflow.parentRunId = '{outcome['state']['parent_run_id']}'",
    )
    yield outcome, runs, client, uri


SWEPT_OUTCOME = "outcome.pickle"


# On PYTHONPATH, it counts each resolution of a trial's RunConfig in every process.
RESOLUTION_COUNTER = Path(__file__).parent / "resolution_counter"


def sweep_once(folder: Path, uri: str, ewt_slice: dict) -> dict:
    """The tiny sweep, counting the RunConfig resolutions of the driver (this process) and
    of the trials' workers: `config_resolutions` (process id, point), `driver_pid`; and
    its `console`."""
    # Here: a test that needs no sweep loads no Ray.
    from pipelines.sweep.driver import run_sweep
    from pipelines.sweep.trial.trainable import TrialConfigs

    counter = load_module(RESOLUTION_COUNTER / "sitecustomize.py")
    folder.mkdir(exist_ok=True)  # a worker's failed try may have left it
    log = folder / "resolutions.jsonl"
    log.unlink(missing_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("RAY_ADDRESS", "local")
        patch.setenv("POSTAG_TEST_RESOLUTIONS", str(log))
        # Ray's workers start from this environment, and run the counter as they start.
        paths = [str(RESOLUTION_COUNTER), *filter(None, [os.environ.get("PYTHONPATH")])]
        patch.setenv("PYTHONPATH", os.pathsep.join(paths))
        patch.setattr(TrialConfigs, "resolve", counter.counting(TrialConfigs.resolve))
        console = io.StringIO()  # what the person at the console read, links and all
        with contextlib.redirect_stdout(console):
            outcome = run_sweep(write_sweep(folder, ewt_slice), [], folder / "tune", fresh=True)
    outcome["console"] = console.getvalue()
    mlflow.set_tracking_uri(None)
    lines = log.read_text().splitlines() if log.exists() else []
    outcome["config_resolutions"] = [json.loads(line) for line in lines]
    outcome["driver_pid"] = os.getpid()
    return outcome


def load_module(path: Path):
    """A Python file as a module, imported by its path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def swept_model(swept, tmp_path_factory) -> Path:
    """The tiny sweep's registered model as its files: a real tagger that a sweep logged."""
    outcome, _, _, uri = swept
    mlflow.set_tracking_uri(uri)  # the registry's too, which models:/ URIs resolve in
    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{REGISTERED_MODEL}/{outcome['version']}",
                dst_path=str(tmp_path_factory.mktemp("registry")),
            )
        )
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture
def in_swept_store(swept, monkeypatch):
    """The tiny sweep's store as this test's tracking URI (environment and MLflow's global).

    Read it only: tests that write to a swept store take `copy_of_swept` instead, so that
    no test depends on which ran before it.
    """
    uri = swept[3]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return swept


@pytest.fixture(scope="module")
def copy_of_swept(swept, tmp_path_factory):
    """The tiny sweep's outcome and runs over a copy of its store, for a module that writes
    to it: (outcome, runs, client, uri) as `swept` has them, the client and URI the copy's."""
    outcome, runs, _, uri = swept
    copy = copy_store(uri, tmp_path_factory.mktemp("swept-copy") / "store")
    return outcome, runs, mlflow.MlflowClient(copy), copy


@pytest.fixture
def in_copy_of_swept(copy_of_swept, monkeypatch):
    """`copy_of_swept` as this test's tracking URI (environment and MLflow's global)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", copy_of_swept[3])
    mlflow.set_tracking_uri(copy_of_swept[3])
    return copy_of_swept


@pytest.fixture
def sweep_driver():
    """Starts sweep drivers (tests.servers.start_sweep); any still running at the end of the
    test, failed or not, is killed with its whole process group."""
    started: list[subprocess.Popen] = []

    def start(*args, **kwargs) -> subprocess.Popen:
        started.append(start_sweep(*args, **kwargs))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
