"""A disk that fills mid-sweep, under Tune's storage and then under the MLflow store, in
one sweep (tests/e2e/disk_full_scenario.py): each time the sweep stops with one line naming
the full path; once space is freed, the same command finishes it.

The scenario mounts two small tmpfs, so it runs in a user and mount namespace of its own
(`unshare -rm`): as root or not, no mount is left behind, and nothing needs root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import PROJECT_ROOT

SCENARIO_SECONDS = 280


def namespaces_work() -> str | None:
    """Why this machine cannot give the scenario a namespace of its own; None if it can."""
    if shutil.which("unshare") is None:
        return "needs util-linux's unshare"
    tried = subprocess.run(
        ["unshare", "-rm", "--propagation", "private", "true"], capture_output=True, text=True
    )
    if tried.returncode != 0:
        return f"cannot make a user and mount namespace here: {tried.stderr.strip()}"
    return None


def test_a_full_disk_stops_the_sweep_cleanly_and_it_resumes_once_space_is_freed(
    ewt_slice, tmp_path
):
    why = namespaces_work()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    command = [
        *("unshare", "-rm", "--propagation", "private"),
        *(sys.executable, "-m", "tests.e2e.disk_full_scenario"),
        *(str(tmp_path), str(ewt_slice["train"]), str(ewt_slice["dev"])),
    ]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=SCENARIO_SECONDS, cwd=tmp_path
    )
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert done.stdout.count("postag sweep: stopped: the disk holding") == 2
    assert "the full-disk scenario held" in done.stdout
