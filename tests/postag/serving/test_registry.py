"""The tagger as an MLflow model: its pinned requirements and the code it ships with."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

from packaging.version import Version

from postag.serving.registry import model_requirements


def test_a_logged_model_pins_what_it_imports_to_the_installed_versions(swept_model):
    pinned = dict(
        line.split("==") for line in (swept_model / "requirements.txt").read_text().split()
    )
    assert {"torch", "mlflow-skinny", "pandas", "numpy", "pyarrow", "PyYAML", "spacy"} <= set(
        pinned
    )
    # Only what the model's code imports: the raw-text scorer's UD tools are not served.
    assert "udtools" not in pinned
    assert "postag" not in pinned  # the package travels as code, not as a name to install
    for name, version in pinned.items():
        # The installed release, as a public index serves it: `torch==2.13.0`, not `+cpu`.
        assert "+" not in version and Version(version) == Version(
            Version(importlib.metadata.version(name)).public
        ), name
    assert sorted(f"{k}=={v}" for k, v in pinned.items()) == model_requirements()


def test_a_logged_model_carries_the_code_it_runs(swept_model, ewt_slice):
    """Loaded in a process of its own, the model runs the postag package it carries."""
    assert (swept_model / "code" / "postag" / "serving" / "registry.py").is_file()
    load = (
        "import sys, mlflow, pandas as pd; m = mlflow.pyfunc.load_model(sys.argv[1]);"
        "print(sys.modules['postag.serving.pyfunc'].__file__);"
        "print(m.predict(pd.DataFrame({'tokens': [['I', 'saw', 'her', '.']]}))['tags'][0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", load, str(swept_model)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    module, tags = done.stdout.strip().splitlines()[-2:]
    assert Path(module).is_relative_to(swept_model / "code")
    assert len(eval(tags)) == 4
