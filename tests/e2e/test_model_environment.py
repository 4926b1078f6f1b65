"""A logged model installs anywhere: a fresh virtual environment built from the model's own
requirements.txt alone (not the project's lock) loads it and tags as this process does."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd

WORDS = ["I", "saw", "her", "duck", "near", "the", "bank", "."]
INSTALL_SECONDS = 600
TAG = (
    "import json, sys, mlflow, pandas as pd; m = mlflow.pyfunc.load_model(sys.argv[1]);"
    "print(json.dumps(list(m.predict(pd.DataFrame({'tokens': [json.loads(sys.argv[2])]}))"
    "['tags'][0])))"
)


def test_a_fresh_environment_from_the_models_requirements_tags_as_in_process(
    swept_model: Path, tmp_path, capsys
):
    requirements = (swept_model / "requirements.txt").read_text().split()
    env = tmp_path / "env"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    python = str(env / "bin" / "python")
    # No byte-compiling of everything installed: the model imports a small part of it.
    install = [python, "-m", "pip", "install", "--quiet", "--no-compile"]
    install += ["-r", str(swept_model / "requirements.txt")]
    done = subprocess.run(install, capture_output=True, text=True, timeout=INSTALL_SECONDS)
    assert done.returncode == 0, done.stderr[-3000:]
    installed = time.monotonic() - started
    tagged = subprocess.run(
        [python, "-c", TAG, str(swept_model), json.dumps(WORDS)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the project: nothing of it on the path
    )
    assert tagged.returncode == 0, tagged.stderr[-3000:]
    there = json.loads(tagged.stdout.strip().splitlines()[-1])
    here = mlflow.pyfunc.load_model(str(swept_model)).predict(pd.DataFrame({"tokens": [WORDS]}))
    assert there == list(here["tags"][0])
    packages = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    ).stdout.split()
    with capsys.disabled():
        print(
            f"\nfresh environment from {' '.join(requirements)}: {len(packages)} packages "
            f"installed in {installed:.0f} s"
        )
