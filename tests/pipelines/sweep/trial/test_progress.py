"""The progress line a person reads during a sweep: counts, the best so far, and time left
that follows the running trials' pace."""

from __future__ import annotations

import re

import pytest
from ray.tune.experiment import Trial

from pipelines.sweep.trial import progress
from pipelines.sweep.trial.progress import SweepProgress
from pipelines.sweep.trial.trainable import PLANNED_EPOCHS_KEY
from postag.training.objective import DEFAULT


def trial(status: str, epoch: int = 0, epochs: int = 40, per_epoch: float = 0.0, **config):
    """A Tune trial as the driver sees it, its last epoch `per_epoch` seconds long."""
    made = Trial("train_tagger", config=config, stub=True)
    made.set_status(status)
    if epoch:
        made.update_last_result(
            {
                "epoch": epoch,
                PLANNED_EPOCHS_KEY: epochs,
                "time_this_iter_s": per_epoch,
                "time_total_s": per_epoch * epoch,
                "best_val_accuracy": 0.9,
            }
        )
    return made


def progress_line(trials: list[Trial], total: int, monkeypatch, capsys) -> str:
    monkeypatch.setattr(progress, "PROGRESS_EVERY_S", 0.0)
    sweep = SweepProgress(
        total, lambda config: config.get("baseline", False), lambda *_: "t", DEFAULT
    )
    sweep.bar = None  # pytest's stdout is no terminal, but say so
    sweep.on_step_end(0, trials)
    return capsys.readouterr().out


def minutes_left(line: str) -> float:
    found = re.search(r"~(?:(\d+)h)?(\d+)m(?:\d+s)? left", line)
    assert found, line
    hours, minutes = found.groups()
    return 60 * int(hours or 0) + int(minutes)


def test_a_short_baseline_done_first_does_not_make_the_sweep_look_a_quarter_done(
    monkeypatch, capsys
):
    # best.yaml's sweep: the baseline done after 3 epochs, three seeds side by side at epoch
    # 11 of 40, 3 minutes an epoch. They end together, 29 epochs from now: 87 minutes.
    trials = [
        trial(Trial.TERMINATED, epoch=3, epochs=3, per_epoch=360.0, baseline=True),
        *(trial(Trial.RUNNING, epoch=11, per_epoch=180.0, seed=s) for s in (1, 2, 3)),
    ]
    line = progress_line(trials, 4, monkeypatch, capsys)
    assert "1/4 done, 3 running, 0 pending" in line
    assert minutes_left(line) == 87


def test_pending_trials_wait_for_the_slots_the_running_ones_free(monkeypatch, capsys):
    # Two slots, each trial 10 epochs of a minute: the running two need 5 more minutes, the
    # two pending ones 10 each, two at a time: 5 + 10 = 15 minutes in all.
    trials = [trial(Trial.RUNNING, epoch=5, epochs=10, per_epoch=60.0, h=h) for h in (8, 16)]
    line = progress_line(trials, 4, monkeypatch, capsys)
    assert "0/4 done, 2 running, 2 pending" in line
    assert minutes_left(line) == 15


def test_the_estimate_follows_the_last_epoch_when_epochs_slow_down(monkeypatch, capsys):
    running = trial(Trial.RUNNING, epoch=20, epochs=40, per_epoch=180.0)
    # The weight averaging began: the last epoch took 4 minutes, the earlier ones 3.
    running.update_last_result({**running.last_result, "epoch": 21, "time_this_iter_s": 240.0})
    line = progress_line([running], 1, monkeypatch, capsys)
    assert minutes_left(line) == 19 * 4


@pytest.mark.parametrize("reported", [False, True])
def test_no_estimate_before_a_running_trial_has_trained_an_epoch(reported, monkeypatch, capsys):
    # A result from before the trials reported their planned epochs gives no estimate either.
    running = trial(Trial.RUNNING)
    if reported:
        running.update_last_result({"epoch": 1, "time_total_s": 60.0})
    line = progress_line([running], 2, monkeypatch, capsys)
    assert "0/2 done, 1 running, 1 pending" in line and "left" not in line


def test_a_long_sweep_in_a_log_gets_tens_of_progress_lines_not_hundreds(monkeypatch, capsys):
    """best.yaml's 2 h 17 min sweep printed 270 lines at one every 30 s; the first minutes
    still get one every 30 s. Tune's steps, one a second, on a clock the test moves."""
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    sweep = SweepProgress(3, lambda config: False, lambda *_: "t", DEFAULT)
    sweep.bar = None  # pytest's stdout is no terminal, but say so
    printed = []
    for second in range(1, 137 * 60):
        clock[0] = float(second)
        sweep.on_step_end(0, [])
        if capsys.readouterr().out:
            printed.append(second)
    assert printed[:4] == [30, 60, 90, 120]
    assert 30 <= len(printed) <= 60
