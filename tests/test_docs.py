"""docs/options.md lists every `make` target and variable and every key of an experiment
file's data, model, train and sweep sections: one left out, or added to the code without
a line there, fails here."""

from __future__ import annotations

import dataclasses
import re

import pytest

from pipelines.sweep.setup.settings import AshaConfig, ConfirmConfig, SweepSettings
from postag.config import DataConfig, ModelConfig, TrainConfig
from postag.training.objective import Objective
from tests.helpers import PROJECT_ROOT

OPTIONS = PROJECT_ROOT / "docs" / "options.md"
# Nested sections are documented by their own keys (sweep.asha.grace_period, ...).
NESTED = {"asha": AshaConfig, "confirm": ConfirmConfig, "objective": Objective}


def documented_keys(text: str) -> set[str]:
    """The keys a table row of options.md names in its first cell, each in backticks."""
    keys = set()
    for line in text.splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2:
            keys.update(re.findall(r"`([^`]+)`", cells[1]))
    return keys


def config_keys() -> list[str]:
    """Every key of the run sections and of the sweep section, dotted."""
    keys = []
    for section, config in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
        keys += [f"{section}.{field.name}" for field in dataclasses.fields(config)]
    for field in dataclasses.fields(SweepSettings):
        nested = NESTED.get(field.name)
        if nested is None:
            keys.append(f"sweep.{field.name}")
            continue
        keys += [f"sweep.{field.name}.{inner.name}" for inner in dataclasses.fields(nested)]
    return keys


def make_targets_and_variables() -> tuple[list[str], list[str]]:
    text = (PROJECT_ROOT / "Makefile").read_text()
    targets = re.search(r"^\.PHONY: (.*)$", text, re.MULTILINE).group(1).split()
    variables = re.findall(r"^(?:export )?([A-Z_]+) \?=", text, re.MULTILINE)
    return [t for t in targets if t != "BEST"], [*variables, "SWEEP_ARGS"]


def test_every_config_key_is_documented_with_its_default():
    documented = documented_keys(OPTIONS.read_text())
    missing = [key for key in config_keys() if key not in documented]
    assert not missing, f"docs/options.md lacks {missing}"


@pytest.mark.parametrize("kind", ["targets", "variables"])
def test_every_make_target_and_variable_is_documented(kind):
    targets, variables = make_targets_and_variables()
    documented = documented_keys(OPTIONS.read_text())
    if kind == "targets":
        named = {" ".join(key.split()[:2]) for key in documented if key.startswith("make ")}
        missing = [t for t in targets if f"make {t}" not in named]
    else:
        missing = [v for v in variables if v not in documented]
    assert not missing, f"docs/options.md lacks the make {kind} {missing}"


def test_a_key_left_out_of_the_docs_is_found():
    """The check itself: options.md without one row no longer documents that key."""
    text = OPTIONS.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `train.label_smoothing`"))
    assert "train.label_smoothing" in documented_keys(text)
    assert "train.label_smoothing" not in documented_keys(text.replace(row, ""))
