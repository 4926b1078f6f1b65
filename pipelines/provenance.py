"""Which code a run came from: the project's git commit, as MLflow's own
`mlflow.source.git.commit` tag, and beside it whether the tree held changes the commit does
not (`git_dirty`). Every run the pipeline creates carries both: a sweep's parent run, each
trial's run and each evaluation run.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

from pipelines.names import GIT_DIRTY_TAG

PROJECT_DIR = Path(__file__).resolve().parents[1]


@functools.cache
def code_tags() -> dict[str, str]:
    """The commit and the dirty flag, read once a process (the code it loaded at its start).

    Outside a git checkout (a copy without `.git`, no git installed) there is no commit to
    claim, and the runs carry no such tags rather than a made-up one.
    """
    try:
        commit = git("rev-parse", "HEAD")
        changes = git("status", "--porcelain")
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {MLFLOW_GIT_COMMIT: commit, GIT_DIRTY_TAG: "true" if changes else "false"}


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(PROJECT_DIR), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()
