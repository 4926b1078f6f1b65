"""Architecture rules: the library stands alone, and every experiment file validates."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.experiment import read_experiment, run_config_from
from pipelines.sweep.job import load_sweep
from postag.objective import VALIDATION_METRICS

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "experiments").rglob("*.yaml"))


def test_importing_postag_loads_neither_ray_nor_pipelines():
    code = (
        "import sys, postag, postag.train, postag.checkpoint, postag.dataset;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'pipelines')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_experiment_files_are_found():
    assert len(EXPERIMENTS) >= 1


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_experiment_file_validates_and_says_how_to_run_it(path):
    assert path.read_text().startswith("#"), "experiment files open with a comment on their use"
    values = read_experiment(path, [])
    run_config_from(values, path)
    if "sweep" in values:
        load_sweep(path, [])


def test_the_sweeps_the_makefile_picks_hold_the_deep_baseline():
    for name in ("seed.yaml", "cpu.yaml", "search.yaml"):
        _, _, sweep = load_sweep(ROOT / "experiments" / name, [])
        assert (sweep.baseline["model.num_layers"], sweep.baseline["model.hidden_size"]) == (
            40,
            256,
        )


@pytest.mark.parametrize(
    "module", ["pipelines.commands.tag", "pipelines.commands.evaluate", "pipelines.tracking"]
)
def test_tagging_and_evaluating_load_no_ray(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('ray')))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# A reader holds a function in mind at about this length; longer ones are split.
MAX_FUNCTION_LINES = 50
# An orchestration module past this length holds more than one concern.
MAX_PIPELINE_MODULE_LINES = 300
# The sweep driver only opens the sweep, runs its stages in order and answers.
MAX_DRIVER_LINES = 250
SOURCES = sorted([*(ROOT / "postag").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py")])


# Where an objective's metric may be named: where the trainer logs it, and the objective's
# own module. Everything else asks an Objective (a sweep's `primary`, a run's
# train.objective), so a new objective metric touches the trainer and postag/objective.py.
METRIC_NAMED_IN = {"postag/train.py", "postag/objective.py"}


def test_the_objective_metrics_are_named_only_where_logged_and_where_defined():
    named = []
    for path in SOURCES:
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            metric = isinstance(node, ast.Constant) and node.value in VALIDATION_METRICS
            if metric and where not in METRIC_NAMED_IN:
                named.append(f"{where}:{node.lineno} {node.value!r}")
    assert named == []


def test_no_function_is_longer_than_a_reader_holds_in_mind():
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == []


def test_no_pipeline_module_holds_more_than_one_concern():
    long = [
        f"{path.relative_to(ROOT)} ({lines})"
        for path in sorted((ROOT / "pipelines").rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_PIPELINE_MODULE_LINES
    ]
    assert long == []


def test_the_sweep_driver_only_drives():
    driver = ROOT / "pipelines" / "sweep" / "driver.py"
    assert len(driver.read_text().splitlines()) <= MAX_DRIVER_LINES


def test_loading_the_tests_shared_fixtures_loads_no_ray():
    """A test that needs no sweep pays for no Ray: conftest and helpers import none."""
    code = (
        "import sys, tests.conftest; print(sorted(m for m in sys.modules if m.startswith('ray')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


def test_the_library_gives_no_advice_about_orchestration_commands():
    for path in (ROOT / "postag").glob("*.py"):
        assert "make " not in path.read_text(), path
