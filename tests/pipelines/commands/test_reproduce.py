"""`postag reproduce` on the tiny sweep's runs: a trial trained again from its MLflow record
repeats every epoch; other data is refused naming both digests; other code is a warning."""

from __future__ import annotations

import math
import sqlite3
from types import SimpleNamespace

from pipelines.cli import main
from pipelines.commands.reproduce import code_warning, first_difference, replay
from pipelines.provenance import code_tags
from postag.serving.registry import best_model_uri
from postag.training.trainer import REPLAYED_METRICS, EpochResult


def test_the_registered_version_replays_every_epoch_to_the_last_digit(in_swept_store):
    _, runs, client, _ = in_swept_store
    lines = []
    result = replay(best_model_uri(), say=lines.append)
    run = client.get_run(result.run_id)
    assert result.equal and result.unlogged == ()
    assert result.epochs == int(run.data.params["train.epochs"])
    assert len([line for line in lines if "figures equal" in line]) == result.epochs


def test_a_trial_replayed_on_other_data_is_refused_naming_both_digests(
    in_swept_store, ewt_slice, capsys
):
    _, runs, _, _ = in_swept_store
    run = next(r for r in runs if r.info.status == "FINISHED")
    fingerprint = run.data.params["dataset_fingerprint"]
    # The test file where the training file was: other data.
    code = main(["reproduce", run.info.run_id, "--train", str(ewt_slice["test"])])
    error = capsys.readouterr().err
    assert code == 2
    assert f"postag reproduce: refused: run {run.info.run_id} trained on data with " in error
    assert f"fingerprint {fingerprint}; the data here has fingerprint " in error
    assert "train: the run's " in error and str(ewt_slice["test"]) in error


def test_a_run_of_other_code_is_a_warning_naming_both_commits():
    def run(tags):
        return SimpleNamespace(info=SimpleNamespace(run_id="r1"), data=SimpleNamespace(tags=tags))

    other = run({"mlflow.source.git.commit": "0123456789abcdef", "git_dirty": "false"})
    warning = code_warning(other)
    assert warning.startswith("run r1 was trained by commit 0123456789; this code is ")
    assert "records no git commit" in code_warning(run({}))
    if code_tags() and code_tags()["git_dirty"] == "false":
        assert code_warning(run(code_tags())) is None


def epoch(**changes) -> EpochResult:
    values = dict.fromkeys(REPLAYED_METRICS, 0.5) | {
        "epoch": 3,
        "epoch_seconds": 1.0,
        "validation_seconds": 1.0,
        "tokens_per_second": 1.0,
    }
    return EpochResult(**(values | changes))


def test_the_first_difference_names_its_epoch_metric_and_both_values():
    logged = dict.fromkeys(REPLAYED_METRICS, 0.5)
    assert first_difference(logged, epoch(epoch_seconds=9.0), 0.0) is None  # timings aside
    off = math.nextafter(0.5, 1.0)  # one step of the last digit
    difference = first_difference(logged, epoch(val_loss=off), 0.0)
    assert (difference.epoch, difference.metric) == (3, "val_loss")
    assert str(difference) == f"epoch 3, val_loss: logged 0.5, replayed {off!r}"
    assert first_difference(logged, epoch(val_loss=off), 1e-9) is None
    # A metric the run did not log is not compared; NaN repeats NaN.
    assert first_difference({"train_loss": 0.5}, epoch(val_loss=off), 0.0) is None
    nan = {name: math.nan for name in REPLAYED_METRICS}
    assert first_difference(nan, epoch(**nan), 0.0) is None
    assert first_difference(nan, epoch(), 0.0).metric == REPLAYED_METRICS[0]


def nudge_logged_metric(uri: str, run_id: str, metric: str, step: int, factor: float) -> float:
    """Change one epoch's logged figure in the store, as a run of other code or hardware
    would have logged it; the new value."""
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as connection:
        connection.execute(
            "UPDATE metrics SET value = value * ? WHERE run_uuid = ? AND key = ? AND step = ?",
            (factor, run_id, metric, step),
        )
        (value,) = connection.execute(
            "SELECT value FROM metrics WHERE run_uuid = ? AND key = ? AND step = ?",
            (run_id, metric, step),
        ).fetchone()
    return value


def test_the_command_exits_1_naming_the_first_difference_and_tolerance_accepts_it(
    in_copy_of_swept, capsys
):
    """`postag reproduce RUN`: exit 1 and the first difference where a figure does not
    repeat; `--tolerance` lets a relative difference that small pass, and says so."""
    _, runs, client, uri = in_copy_of_swept
    finished = [r for r in runs if r.info.status == "FINISHED"]
    run = next(r for r in finished if r.data.tags.get("role") == "trial")
    name, epochs = run.info.run_name, int(run.data.params["train.epochs"])
    changed = nudge_logged_metric(uri, run.info.run_id, "val_loss", 1, 1 + 1e-6)

    assert main(["reproduce", run.info.run_id]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith(
        f"run {name} did not repeat: first difference at epoch 1, val_loss: "
        f"logged {changed!r}, replayed "
    )

    assert main(["reproduce", run.info.run_id, "--tolerance", "1e-5"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == (
        f"run {name} repeated: every epoch's figures equal within 1e-05 (relative) "
        f"({epochs} epochs x {len(REPLAYED_METRICS)} metrics)"
    )
    # Without a tolerance, an untouched run's summary says to the last digit.
    other = next(r for r in finished if r.info.run_id != run.info.run_id)
    assert main(["reproduce", other.info.run_id]) == 0
    assert "figures equal to the last digit" in capsys.readouterr().out.splitlines()[-1]
