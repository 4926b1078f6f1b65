"""Two projects on one tracking store: a sweep that names its own MLflow experiment
(MLflow's $MLFLOW_EXPERIMENT_NAME) and registered model (sweep.registered_model) keeps its
runs and its `best` apart from postag's, and evaluate, reproduce and a rerun follow the
names. On a copy of the tiny sweep's store, which holds postag's; in-process, on real Ray.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json

import mlflow
import pytest

from pipelines.cli import main as postag
from pipelines.sweep.driver import main as sweep_main
from postag.serving.names import REGISTERED_MODEL
from postag.serving.registry import BEST_ALIAS
from tests.helpers import TINY_SWEEP, write_sweep

TEAM_EXPERIMENT = "team-b-runs"
TEAM_MODEL = "team-b-tagger"


def team_sweep() -> dict:
    """One trial and the baseline, an epoch each; the registered model named in the file."""
    values = copy.deepcopy(TINY_SWEEP)
    values["train"]["epochs"] = 1
    values["sweep"].update(name="team-b", space={"train.lr": [0.005]}, registered_model=TEAM_MODEL)
    return values


@pytest.fixture(scope="module")
def two_projects(copy_of_swept, ewt_slice, tmp_path_factory):
    """The team's sweep, run into the copy of the tiny sweep's store; (its file, its folder,
    the client, the store's URI, postag's `best` before it, what it printed)."""
    outcome, _, client, uri = copy_of_swept
    before = client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS).version
    folder = tmp_path_factory.mktemp("team-b")
    config = write_sweep(folder, ewt_slice, team_sweep())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("RAY_ADDRESS", "local")
        patch.setenv("MLFLOW_EXPERIMENT_NAME", TEAM_EXPERIMENT)
        console = io.StringIO()
        with contextlib.redirect_stdout(console):
            code = sweep_main(["--config", str(config), "--storage", str(folder / "tune")])
    mlflow.set_tracking_uri(None)
    assert code == 0, console.getvalue()
    return config, folder, client, uri, before, console.getvalue()


def runs_of(client, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def test_each_project_keeps_its_runs_and_its_best(two_projects, copy_of_swept):
    _, _, client, _, postag_best, console = two_projects
    outcome = copy_of_swept[0]
    assert f"as models:/{TEAM_MODEL}@sweep-team-b" in console
    assert f"then: make evaluate MODEL=models:/{TEAM_MODEL}@best" in console
    team_runs = runs_of(client, TEAM_EXPERIMENT)
    roles = sorted(run.data.tags.get("role") for run in team_runs)
    # The sweep's own test is an evaluation run; the other tests here may add more.
    assert [role for role in roles if role != "evaluation"] == ["deep-baseline", "sweep", "trial"]
    assert "evaluation" in roles
    # postag's experiment holds no run of the team's sweep.
    assert not [r for r in runs_of(client, "postag") if r.data.tags.get("sweep") == "team-b"]

    team_best = client.get_model_version_by_alias(TEAM_MODEL, BEST_ALIAS)
    assert team_best.run_id in {run.info.run_id for run in team_runs}
    assert client.get_model_version_by_alias(TEAM_MODEL, "sweep-team-b").version == (
        team_best.version
    )
    # postag-tagger's `best` stayed where the tiny sweep put it.
    assert client.get_model_version_by_alias(REGISTERED_MODEL, BEST_ALIAS).version == (postag_best)
    assert str(outcome["version"]) == str(postag_best)


def test_evaluate_and_reproduce_follow_the_experiment_files_model(
    two_projects, ewt_slice, monkeypatch, capsys
):
    config, folder, client, uri, _, _ = two_projects
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = folder / "evaluated.json"
    args = ["--data", str(ewt_slice["test"]), "--reports", str(folder / "reports")]
    assert postag(["evaluate", "--experiment", str(config), *args, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["model"] == f"models:/{TEAM_MODEL}@{BEST_ALIAS}"
    evaluation = client.get_run(json.loads(out.read_text())["mlflow_run_id"])
    team = client.get_experiment_by_name(TEAM_EXPERIMENT).experiment_id
    assert evaluation.info.experiment_id == team

    # Without the file, `best` of postag-tagger, as before.
    assert postag(["evaluate", *args, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["model"] == f"models:/{REGISTERED_MODEL}@{BEST_ALIAS}"

    capsys.readouterr()
    assert postag(["reproduce", "--experiment", str(config)]) == 0
    assert "repeated: every epoch's figures equal" in capsys.readouterr().out


def test_the_same_sweep_under_another_experiment_is_refused_not_mixed(
    two_projects, monkeypatch, capsys
):
    """The sweep's state is kept by its name: run again under another experiment, it is
    neither resumed nor called up to date there, and nothing is written."""
    config, folder, client, uri, _, _ = two_projects
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RAY_ADDRESS", "local")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "another")
    assert sweep_main(["--config", str(config), "--storage", str(folder / "tune")]) == 2
    err = capsys.readouterr().err
    assert "sweep 'team-b'" in err and "not to 'another'" in err and "sweep.name" in err
    assert runs_of(client, "another") == []
