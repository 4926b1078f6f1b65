"""The Makefile's variables reach the commands it runs: each one, as `make -n` prints the
command, lands as the argument it stands for, and the sweep's line parses with the driver's
own parser (a flag the driver does not know would fail there)."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from pipelines.sweep.driver import parse_arguments
from tests.helpers import PROJECT_ROOT


def planned(target: str, *variables: str) -> str:
    """The command line `make -n TARGET VARIABLES...` prints for the target itself (the
    install step it may print before it aside)."""
    printed = subprocess.run(
        ["make", "-n", "--no-print-directory", target, *variables],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
    ).stdout
    # A recipe's continued lines (ending in a backslash) are one command; ours is the last.
    return printed.replace("\\\n", " ").strip().splitlines()[-1]


def arguments_after(line: str, program: str) -> list[str]:
    words = shlex.split(line)
    return words[words.index(program) + 1 :]


def test_experiment_storage_and_sweep_args_reach_the_sweep_driver():
    line = planned(
        "sweep",
        "EXPERIMENT=experiments/best.yaml",
        "STORAGE=s3://bucket/sweeps",
        "SWEEP_ARGS=--fresh --set train.epochs=2 --from cpu-study",
    )
    args = parse_arguments(arguments_after(line, "pipelines.sweep"))
    assert str(args.config) == "experiments/best.yaml"
    assert args.storage == "s3://bucket/sweeps"
    assert args.fresh
    assert "train.epochs=2" in args.overrides
    assert 'sweep.warm_start=["cpu-study"]' in args.overrides


def test_without_variables_the_sweep_picks_its_experiment_and_storage_itself():
    args = parse_arguments(arguments_after(planned("sweep"), "pipelines.sweep"))
    assert args.config is None and not args.fresh  # the driver says which it picked, and why


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (("EXPERIMENT=experiments/mine.yaml",), "--experiment experiments/mine.yaml"),
        (("DATA=gum-test.conllu",), "--data gum-test.conllu"),
        (("RAW=1",), "--raw"),
        (("TIMING=1",), "--timing"),
        (("MODEL=models:/postag-tagger/3",), "--model models:/postag-tagger/3"),
    ],
)
def test_data_raw_timing_and_model_reach_the_evaluation(variables, expected):
    line = planned("evaluate", *variables)
    assert expected in line
    flags = (
        ("--data", "DATA="),
        ("--raw", "RAW="),
        ("--timing", "TIMING="),
        ("--model", "MODEL="),
        ("--experiment", "EXPERIMENT="),
    )
    for flag, variable in flags:
        # Unset, each is left out, not passed empty.
        if not any(v.startswith(variable) for v in variables):
            assert flag not in line


def test_run_names_the_run_that_reproduce_replays_and_defaults_to_the_model():
    assert arguments_after(planned("reproduce", "RUN=0123abcd"), "reproduce") == ["0123abcd"]
    # Unset, the command replays `best`'s run, of the model EXPERIMENT's file names if given.
    assert arguments_after(planned("reproduce"), "reproduce") == []
    named = planned("reproduce", "EXPERIMENT=experiments/mine.yaml")
    assert arguments_after(named, "reproduce") == ["--experiment", "experiments/mine.yaml"]
    moved = planned("reproduce", "MODEL=models:/postag-tagger/2")
    assert arguments_after(moved, "reproduce") == ["models:/postag-tagger/2"]


def test_model_and_experiment_reach_make_serve():
    assert "--model" not in planned("serve") and "--experiment" not in planned("serve")
    line = planned("serve", "MODEL=models:/team-tagger/4")
    assert "--model models:/team-tagger/4" in line
    line = planned("serve", "EXPERIMENT=experiments/mine.yaml")
    assert "--experiment experiments/mine.yaml" in line


def test_config_names_the_file_postag_train_trains():
    assert arguments_after(planned("train"), "train") == ["--config", "experiments/seed.yaml"]
    line = planned("train", "CONFIG=experiments/cpu.yaml")
    assert arguments_after(line, "train") == ["--config", "experiments/cpu.yaml"]


def test_ui_and_mlflow_server_run_postags_commands_that_print_the_runs_link_first():
    line = planned("ui", "UI_PORT=5055")
    assert arguments_after(line, "ui")[:4] == ["--host", "127.0.0.1", "--port", "5055"]
    assert "/.venv/bin/postag ui " in line or line.startswith(".venv/bin/postag ui ")
    line = planned("mlflow-server", "SERVER_PORT=5066")
    assert arguments_after(line, "mlflow-server")[:4] == ["--host", "127.0.0.1", "--port", "5066"]
