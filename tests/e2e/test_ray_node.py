"""`make ray-head` / `make ray-worker`: a real Ray cluster on loopback that asks for a token.

The head and workers are started as the make targets start them (`postag ray-node`), each
`ray start` a real raylet; after the test, the cluster's own processes are stopped, and no
other Ray on the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.servers.probe import probe_ray_cluster
from tests.helpers import free_port, stop_ray_cluster

START_LIMIT_SECONDS = 120
COUNT_NODES = (
    "import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False); "
    "print(sum(node['Alive'] for node in ray.nodes()))"
)


def ray_node(role: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.servers.ray_node", role, *args, "--num-cpus", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=START_LIMIT_SECONDS,
    )


def without_ray_settings() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}


@pytest.fixture
def token_cluster_head(tmp_path):
    """A head started by `postag ray-node head`, its token in a file of this test's own."""
    env = {**without_ray_settings(), "RAY_AUTH_TOKEN_PATH": str(tmp_path / "auth_token")}
    port = free_port()
    started = ray_node("head", env, "--port", str(port))
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield f"127.0.0.1:{port}", env
    finally:
        stop_ray_cluster(port)


def alive_nodes(address: str, env: dict) -> int:
    counted = subprocess.run(
        [sys.executable, "-c", COUNT_NODES, address],
        env={**env, "RAY_AUTH_MODE": "token"},
        capture_output=True,
        text=True,
        timeout=START_LIMIT_SECONDS,
        check=True,
    )
    return int(counted.stdout.strip().splitlines()[-1])


def test_a_worker_with_the_token_joins_and_one_without_is_refused(token_cluster_head, tmp_path):
    address, env = token_cluster_head
    token = Path(env["RAY_AUTH_TOKEN_PATH"])
    assert token.stat().st_mode & 0o777 == 0o600
    probe_ray_cluster(address)  # what a sweep checks first: a Ray head answers there

    joined = ray_node("worker", env, "--address", address)
    assert joined.returncode == 0, joined.stdout + joined.stderr
    assert alive_nodes(address, env) == 2

    (tmp_path / "other_token").write_text("f" * 64)
    wrong = {**env, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "other_token")}
    refused = ray_node("worker", wrong, "--address", address)
    assert refused.returncode != 0
    assert "authentication" in (refused.stdout + refused.stderr).lower()
    assert alive_nodes(address, env) == 2

    # The token is in no process's command line, where `ps` would show it.
    secret = token.read_text().strip()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert secret not in cmdline.read_bytes().decode(errors="replace"), cmdline
        except OSError:
            continue  # a process that ended while we looked


def test_a_worker_without_a_token_file_is_told_what_to_copy(tmp_path):
    env = {**without_ray_settings(), "RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")}
    done = ray_node("worker", env, "--address", "127.0.0.1:6379")
    assert done.returncode == 2
    assert "copy the head's token file here" in done.stderr


def test_stopping_a_cluster_ends_its_processes_and_spares_another_ray():
    """Stand-ins for two clusters' processes: only the named head's port is ended."""
    ports = [free_port(), free_port()]
    sleeping = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import time; time.sleep(60)",
                "ray::raylet",
                f"--gcs-address=127.0.0.1:{port}",
            ]
        )
        for port in ports
    ]
    try:
        stop_ray_cluster(ports[0], grace_seconds=5)
        assert sleeping[0].wait(timeout=10) != 0
        assert sleeping[1].poll() is None, "another cluster's process was stopped"
    finally:
        for process in sleeping:
            process.kill()
            process.wait()
