"""A sweep's life: each transition saved in the state file and reflected on the parent run,
on a real sqlite MLflow store (resuming a real Tune experiment is the e2e tests' part)."""

from __future__ import annotations

import json

import mlflow
import pytest

from pipelines.sweep.driver import next_phase
from pipelines.sweep.lifecycle.life import SweepLife
from pipelines.sweep.lifecycle.state import Halt, SweepPhase, SweepState
from pipelines.sweep.setup.job import SweepJob, load_sweep, sweep_storage
from pipelines.sweep.stages.confirmation import Candidate, confirmation_stage
from pipelines.tracking import ensure_experiment
from postag.config import ConfigError
from tests.helpers import TINY_SWEEP, write_sweep


def sweep_job(tmp_path, ewt_slice, values: dict) -> SweepJob:
    config = write_sweep(tmp_path, ewt_slice, values)
    values, run, sweep = load_sweep(config, [])
    return SweepJob(config, values, run, sweep, *sweep_storage(tmp_path / "tune"))


@pytest.fixture
def store(tmp_path, monkeypatch, sqlite_store) -> None:
    uri = sqlite_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)


@pytest.fixture
def job(tmp_path, ewt_slice, store) -> SweepJob:
    return sweep_job(tmp_path, ewt_slice, TINY_SWEEP)


def saved(job: SweepJob) -> dict:
    return json.loads(SweepState.path(job.state_dir, job.sweep).read_text())


def parent_status(life: SweepLife) -> str:
    return mlflow.MlflowClient().get_run(life.state.parent_run_id).info.status


def test_a_new_sweep_searches_then_registers_then_finishes(job):
    with job.lock(), SweepLife.open(job, ensure_experiment(), fresh=False) as life:
        assert not life.resuming and life.phase == SweepPhase.SEARCHING
        assert saved(job)["phase"] == "searching" and parent_status(life) == "RUNNING"
        life.enter(next_phase(job))
        assert saved(job)["phase"] == "registering"
        assert life.trial_runs() == []  # the search here ran no trials
        life.gave_up()
    assert saved(job)["phase"] == "finished" and saved(job)["halted"] is None


def test_a_sweep_with_a_confirmation_confirms_after_its_search(tmp_path, ewt_slice, store):
    confirm = {"top_k": 1, "seeds": 2}
    job = sweep_job(
        tmp_path, ewt_slice, {**TINY_SWEEP, "sweep": {**TINY_SWEEP["sweep"], "confirm": confirm}}
    )
    with SweepLife.open(job, ensure_experiment(), fresh=False) as life:
        life.enter(next_phase(job))
        assert life.phase == SweepPhase.CONFIRMING
        # Its Tune experiment lies beside the search's, found again from the state alone.
        stage = confirmation_stage(job, life.state, [Candidate(None, {"train.lr": 0.01})])
        assert stage.tune_dir == f"{life.state.tune_dir}-confirm" and stage.phase == life.phase
        life.enter(SweepPhase.REGISTERING)
        assert saved(job)["phase"] == "registering"


def test_a_stage_of_its_own_has_a_phase_the_state_keeps_and_a_stop_names(job):
    with SweepLife.open(job, ensure_experiment(), fresh=False) as life:
        life.enter("calibrating")  # a stage after the confirmation, say
        assert life.part == "while calibrating"
        life.interrupted()
    state = SweepState.read(SweepState.path(job.state_dir, job.sweep))
    assert (state.phase, state.halted) == ("calibrating", Halt.INTERRUPTED)


def test_an_interrupted_stage_closes_the_runs_and_stays_to_resume(job):
    with SweepLife.open(job, ensure_experiment(), fresh=False) as life:
        life.interrupted()
    assert saved(job)["phase"] == "searching" and saved(job)["halted"] == Halt.INTERRUPTED
    assert parent_status(life) == "KILLED"


def test_an_error_in_the_driver_leaves_the_sweep_failed_not_running(job):
    with pytest.raises(RuntimeError), SweepLife.open(job, ensure_experiment(), False) as life:
        raise RuntimeError("the disk is gone")
    assert saved(job)["halted"] == "failed" and parent_status(life) == "FAILED"
    tags = mlflow.MlflowClient().get_run(life.state.parent_run_id).data.tags
    assert "the disk is gone" in tags["error"]


@pytest.mark.parametrize(
    ("finished", "confirm_dir", "stage"),
    [(True, None, "finished"), (False, "x-confirm", "confirming"), (False, None, "searching")],
)
def test_a_state_file_from_before_the_explicit_stage_reads_as_its_stage(
    tmp_path, finished, confirm_dir, stage
):
    path = tmp_path / "old.json"
    old = {"tune_dir": "x", "parent_run_id": "p", "experiment_id": "1", "config_digest": "d"}
    path.write_text(json.dumps({**old, "finished": finished, "confirm_dir": confirm_dir}))
    assert SweepState.read(path).phase == stage


def test_a_state_file_that_called_its_phase_a_stage_reads_as_that_phase(tmp_path):
    path = tmp_path / "old.json"
    old = {"tune_dir": "x", "parent_run_id": "p", "experiment_id": "1", "config_digest": "d"}
    path.write_text(json.dumps({**old, "stage": "registering", "halted": "interrupted"}))
    state = SweepState.read(path)
    assert (state.phase, state.halted) == (SweepPhase.REGISTERING, Halt.INTERRUPTED)


def with_value_added(job: SweepJob, tmp_path, ewt_slice) -> SweepJob:
    """The same sweep, its file given one more learning rate: trials added, nothing else."""
    sweep = {
        **TINY_SWEEP["sweep"],
        "space": {"train.lr": [*TINY_SWEEP["sweep"]["space"]["train.lr"], 0.02]},
    }
    return sweep_job(tmp_path, ewt_slice, {**TINY_SWEEP, "sweep": sweep})


@pytest.mark.parametrize("stopped_in", [SweepPhase.SEARCHING, SweepPhase.REGISTERING])
def test_an_interrupted_sweep_whose_file_adds_trials_resumes_then_trains_them(
    job, tmp_path, ewt_slice, monkeypatch, stopped_in
):
    """Still searching, it first concludes its search; past it, it goes back to search the
    added trials. The same parent run either way."""
    with SweepLife.open(job, ensure_experiment(), fresh=False) as life:
        life.enter(stopped_in)
        life.interrupted()
        parent = life.state.parent_run_id
    monkeypatch.setattr("ray.tune.Tuner.can_restore", lambda path: True)  # as if Tune saved it
    more = with_value_added(job, tmp_path, ewt_slice)
    with SweepLife.open(more, ensure_experiment(), fresh=False) as life:
        assert life.resuming and life.state.parent_run_id == parent
        assert len(life.state.searched) == 2
        expected = SweepPhase.SEARCHING if stopped_in == SweepPhase.SEARCHING else "extending-1"
        assert life.phase == expected and parent_status(life) == "RUNNING"
        assert life.state.search_dir(1) == f"{life.state.tune_dir}-added1"


def test_a_finished_sweep_whose_file_adds_trials_goes_back_to_search_them(job, tmp_path, ewt_slice):
    with SweepLife.open(job, ensure_experiment(), fresh=False) as life:
        life.enter(SweepPhase.REGISTERING)
        life.gave_up()
        parent = life.state.parent_run_id
    more = with_value_added(job, tmp_path, ewt_slice)
    with SweepLife.open(more, ensure_experiment(), fresh=False) as life:
        assert (life.resuming, life.phase, life.state.parent_run_id) == (
            True,
            "extending-1",
            parent,
        )
        assert life.part == "in its added trials"
    # The same file again, once finished: a sweep anew, as before extensions existed.
    with SweepLife.open(more, ensure_experiment(), fresh=False) as life:
        life.enter(SweepPhase.REGISTERING)
        life.gave_up()
    with SweepLife.open(more, ensure_experiment(), fresh=False) as life:
        assert not life.resuming and life.state.parent_run_id != parent


def test_any_other_change_to_an_interrupted_sweep_is_still_refused(
    job, tmp_path, ewt_slice, monkeypatch
):
    with SweepLife.open(job, ensure_experiment(), fresh=False) as life:
        life.interrupted()
    monkeypatch.setattr("ray.tune.Tuner.can_restore", lambda path: True)
    sweep = {**TINY_SWEEP["sweep"], "space": {"train.lr": [0.02, 0.01]}}  # values taken away
    changed = sweep_job(tmp_path, ewt_slice, {**TINY_SWEEP, "sweep": sweep})
    opening = SweepLife.open(changed, ensure_experiment(), fresh=False)
    with pytest.raises(ConfigError, match="its configuration has changed since"), opening:
        pass


def seeds_job(tmp_path, ewt_slice, register: str) -> SweepJob:
    sweep = {
        **TINY_SWEEP["sweep"],
        "space": {"train.seed": [1, 2]},
        "baseline": {**TINY_SWEEP["sweep"]["baseline"], "train.seed": 0},
        "register": register,
    }
    return sweep_job(tmp_path, ewt_slice, {**TINY_SWEEP, "sweep": sweep})


@pytest.mark.parametrize("finished", [True, False])
def test_a_sweep_whose_file_changes_only_what_it_registers_concludes_again_in_place(
    tmp_path, ewt_slice, store, monkeypatch, finished
):
    """Finished, it goes back to its registration; interrupted, it resumes where it was. The
    same parent run either way, nothing abandoned, the new file the one it goes on with."""
    with SweepLife.open(seeds_job(tmp_path, ewt_slice, "run"), ensure_experiment(), False) as life:
        life.enter(SweepPhase.REGISTERING)
        life.gave_up() if finished else life.interrupted()
        parent = life.state.parent_run_id
    monkeypatch.setattr("ray.tune.Tuner.can_restore", lambda path: True)  # as if Tune saved it
    ensemble = seeds_job(tmp_path, ewt_slice, "ensemble")
    with SweepLife.open(ensemble, ensure_experiment(), fresh=False) as life:
        assert life.resuming and life.state.parent_run_id == parent
        assert life.phase == SweepPhase.REGISTERING and parent_status(life) == "RUNNING"
        assert [values["sweep"].get("register") for values in life.state.searched] == ["ensemble"]
