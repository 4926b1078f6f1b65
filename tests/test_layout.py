"""Architecture rules: the library stands alone, and every experiment file validates."""

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.experiment import read_experiment, run_config_from
from pipelines.sweep import load_sweep

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
