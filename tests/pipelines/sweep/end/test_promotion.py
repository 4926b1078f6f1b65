"""Promotion: every winner is registered once under its sweep's own alias, and `best` moves
only by the champion rule (tests/pipelines/sweep/end/test_winner.py), even in a race."""

from __future__ import annotations

import threading
from pathlib import Path

import mlflow
import pytest

from pipelines.names import MEMBER_TAGGING_TIME, VALIDATION_DIGEST_PARAM
from pipelines.runs import TrialRun
from pipelines.sweep.end import winner
from pipelines.sweep.end.conclusion import Outcome, findings
from pipelines.sweep.end.registration import alias_for
from pipelines.sweep.end.seed_ensemble import Ensemble
from pipelines.sweep.end.winner import register, register_candidate
from pipelines.sweep.setup.job import SweepJob, load_sweep, sweep_storage
from pipelines.sweep.stages.confirmation import Candidate, Confirmed
from postag.serving.names import REGISTERED_MODEL
from postag.serving.registry import BEST_ALIAS, log_tagger
from postag.training.objective import DEFAULT, TAGGING_TIME, Objective
from tests.helpers import PROJECT_ROOT, MlflowServer

SAME, OTHER = "dev-a", "dev-b"
BEST_EXPERIMENT = PROJECT_ROOT / "experiments" / "best.yaml"


@pytest.fixture(scope="module")
def checkpoint(swept_model) -> Path:
    (path,) = (swept_model / "artifacts").glob("*.pt")
    return path


def register_as(
    model_uri: str,
    sweep: str,
    accuracy: float,
    digest: str = SAME,
    force: bool = False,
    objective: Objective = DEFAULT,
):
    """`model_uri` registered as sweep `sweep`'s winner at `accuracy`, validated on data
    `digest`: its Promotion."""
    return register_candidate(
        model_uri,
        sweep,
        {"sweep": sweep},
        name=REGISTERED_MODEL,
        objective=objective,
        score=accuracy,
        validation_digest=digest,
        alias=alias_for(sweep),
        force=force,
    )


def log_and_register(checkpoint: Path, sweep: str, accuracy: float, *args, **kwargs):
    """The checkpoint logged as a new run's model, then registered as `register_as` says."""
    with mlflow.start_run():
        model_uri = log_tagger(checkpoint).model_uri
    return register_as(model_uri, sweep, accuracy, *args, **kwargs)


def test_registering_keeps_best_unless_the_newcomer_beats_it_on_the_same_data(
    checkpoint, tmp_path, sqlite_store
):
    uri = sqlite_store(tmp_path)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()

    def register(sweep: str, accuracy: float, digest: str, force: bool = False, objective=DEFAULT):
        return log_and_register(checkpoint, sweep, accuracy, digest, force, objective)

    def best() -> str:
        return client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS).version

    first = register("gpu search", 0.94, SAME)
    assert first.moved and best() == first.version
    weaker = register("cpu-study", 0.80, SAME)
    assert not weaker.moved and best() == first.version
    # The weaker winner is still a version of its own, under the sweep's alias.
    assert client.get_model_version_by_alias(REGISTERED_MODEL, "sweep-cpu-study").version == (
        weaker.version
    )
    assert alias_for("gpu search") == "sweep-gpu-search"
    elsewhere = register("other-dev", 0.99, OTHER)
    assert not elsewhere.moved and best() == first.version
    # A sweep that chose its winner by macro F1 does not compare with one chosen by accuracy.
    by_f1 = register("f1-study", 0.99, SAME, objective=Objective("val_macro_f1", "max"))
    assert not by_f1.moved and best() == first.version
    assert "chosen by val_accuracy (max), this sweep's best by val_macro_f1 (max)" in by_f1.reason
    assert client.get_model_version(REGISTERED_MODEL, by_f1.version).tags["val_macro_f1"] == (
        "0.990000"
    )
    forced = register("other-dev", 0.99, OTHER, force=True)
    assert forced.moved and best() == forced.version
    assert client.get_model_version(REGISTERED_MODEL, forced.version).tags == {
        "sweep": "other-dev",
        "val_accuracy": "0.990000",
        "objective_metric": "val_accuracy",
        "objective_mode": "max",
        "validation_digest": OTHER,
        "forced_best": "true",
    }
    # A sweep on the forced version's data that scores lower does not undo the force.
    later = register("after-force", 0.98, OTHER)
    assert not later.moved and best() == forced.version


def test_a_model_registered_again_keeps_its_one_version(checkpoint, tmp_path, sqlite_store):
    """A sweep stopped after registering its winner, then run again, finds the version it
    made: one version a model, and `best` where it was."""
    mlflow.set_tracking_uri(sqlite_store(tmp_path))
    client = mlflow.MlflowClient()
    with mlflow.start_run():
        model_uri = log_tagger(checkpoint).model_uri

    def register():
        return register_candidate(
            model_uri,
            "the winner",
            {"sweep": "again"},
            name=REGISTERED_MODEL,
            objective=DEFAULT,
            score=0.75051234,
            validation_digest=SAME,
            alias=alias_for("again"),
        )

    first, again = register(), register()
    assert first.moved and (again.version, again.moved) == (first.version, False)
    assert again.reason == "`best` is this version already (75.05%)"
    assert [v.version for v in client.search_model_versions(f"name = '{REGISTERED_MODEL}'")] == [
        first.version
    ]


def test_the_weaker_write_landing_last_is_repaired_back_to_the_stronger(
    checkpoint, tmp_path, sqlite_store, monkeypatch
):
    """The race's losing interleaving, forced: both sweeps read the same old champion, the
    stronger one promotes and is done, then the weaker one, which also beats that champion,
    writes `best` last. The repair step must move `best` back, and say so."""
    mlflow.set_tracking_uri(sqlite_store(tmp_path))
    client = mlflow.MlflowClient()

    old = log_and_register(checkpoint, "old", 0.50)
    read_by_both = winner.current_champion(REGISTERED_MODEL)
    stronger = log_and_register(checkpoint, "strong", 0.62)
    monkeypatch.setattr(winner, "current_champion", lambda name: read_by_both)
    weaker = log_and_register(checkpoint, "weak", 0.58)
    assert stronger.moved and not weaker.moved
    best = client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS)
    assert best.version == stronger.version != old.version
    assert weaker.reason.endswith(
        f"then `best` went to version {stronger.version} (62.00%), registered at the same time"
    )


RACES = 8


def test_two_sweeps_promoting_at_once_leave_best_on_the_better_one(
    checkpoint, tmp_path, capsys, sqlite_store
):
    """Two sweeps on one tracking server finish at the same moment, many times over: each
    may read the old champion before the other writes, and whichever alias write lands
    last, `best` ends on the better version (the compare-and-repair step)."""
    sqlite_store(tmp_path / "server")  # where the server keeps its runs
    server = MlflowServer(tmp_path / "server")
    server.start()
    try:
        mlflow.set_tracking_uri(server.uri)
        client = mlflow.MlflowClient()
        repaired = 0
        for race in range(RACES):
            # Each race's pair beats the one before, so both of them have something to take.
            weaker, stronger = 0.50 + 0.02 * race, 0.51 + 0.02 * race
            outcome = promote_at_once(
                checkpoint, {f"weak-{race}": weaker, f"strong-{race}": stronger}
            )
            best = client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS)
            assert best.version == outcome[f"strong-{race}"].version, race
            repaired += "registered at the same time" in outcome[f"weak-{race}"].reason
    finally:
        mlflow.set_tracking_uri(None)
        server.stop()
    with capsys.disabled():
        print(f"\n{RACES} races for `best`: the repair step moved it back in {repaired}")


def promote_at_once(checkpoint: Path, accuracies: dict[str, float]) -> dict:
    """Register a model of its own per sweep name from threads released together; their
    outcomes."""
    model_uris = {}
    for name in accuracies:
        with mlflow.start_run():
            model_uris[name] = log_tagger(checkpoint).model_uri
    start = threading.Barrier(len(accuracies))
    outcome, errors = {}, []

    def promote(name: str, accuracy: float) -> None:
        start.wait()
        try:
            outcome[name] = register_as(model_uris[name], name, accuracy)
        except Exception as error:  # a thread's failure must fail the test
            errors.append(error)

    threads = [threading.Thread(target=promote, args=item) for item in accuracies.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(outcome) == len(accuracies)
    return outcome


def test_seeds_as_one_model_are_registered_only_where_they_beat_their_best_seed(
    checkpoint, tmp_path, sqlite_store
):
    mlflow.set_tracking_uri(sqlite_store(tmp_path))
    values, run, sweep = load_sweep(BEST_EXPERIMENT, [])
    job = SweepJob(BEST_EXPERIMENT, values, run, sweep, *sweep_storage(tmp_path / "tune"))

    def logged(name: str, accuracy: float, **metrics: float) -> TrialRun:
        with mlflow.start_run(run_name=name) as started:
            model_uri = log_tagger(checkpoint).model_uri
        params = {"train.seed": name[-1], VALIDATION_DIGEST_PARAM: SAME}
        return TrialRun(
            started.info.run_id, name, "FINISHED", None, None, model_uri, accuracy, 1,
            params, metrics, {},
        )  # fmt: skip

    seeds = [logged("seed1", 0.90), logged("seed2", 0.92)]
    confirmed = Confirmed(Candidate(seeds[0], {"train.seed": 1}), seeds, sweep.primary)
    timed = {TAGGING_TIME: 3.0, MEMBER_TAGGING_TIME: 1.0}
    no_gain = Ensemble(logged("ensemble-seeds-1-2", 0.92, **timed), seeds)
    # No better than seed 2 on the validation data: seed 2 is registered, as without it,
    # and the sweep's last lines say so.
    registered = register(job, seeds, [confirmed], False, no_gain)
    assert registered.winner.name == "seed2"
    outcome = Outcome(seeds, registered, None, None, "-", None, [], no_gain)
    assert (
        "ensemble: not registered, as its validation accuracy is no better than its best "
        "member's (92.00%); seed2's run is registered instead"
    ) in findings(outcome, sweep)
    gain = Ensemble(logged("ensemble-seeds-1-2", 0.925, **timed), seeds)
    registered = register(job, seeds, [confirmed], False, gain)
    assert registered.winner.run_id == gain.run.run_id
    version = mlflow.MlflowClient().get_model_version(REGISTERED_MODEL, registered.version)
    assert version.tags["member_run_ids"] == f"{seeds[0].run_id},{seeds[1].run_id}"
