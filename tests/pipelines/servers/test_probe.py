"""Probes against real sockets on loopback: a server of the right kind passes, another kind
or a closed port fails fast."""

import http.server
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from pipelines.servers.probe import UnreachableService, probe_ray_cluster, probe_tracking_server
from pipelines.sweep.driver import main as sweep_main
from pipelines.tracking import tracking_uri, without_credentials

FAST_SECONDS = 3.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HealthServer(http.server.ThreadingHTTPServer):
    """An HTTP server on loopback that answers /health and records each path asked."""

    def __init__(self):
        self.asked: list[str] = []

        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(handler):  # noqa: N802, N805 (the name http.server calls)
                self.asked.append(handler.path)
                handler.send_response(200 if handler.path == "/health" else 404)
                handler.end_headers()
                handler.wfile.write(b"OK")

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Health)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


@pytest.fixture
def health_server():
    server = HealthServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_live_tracking_server_passes_once_its_health_answers(health_server):
    probe_tracking_server(health_server.url)
    assert health_server.asked == ["/health"]


def test_local_stores_and_a_local_ray_are_not_probed(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a local store or Ray was probed over the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    probe_tracking_server("sqlite:////tmp/x.db")
    for address in (None, "", "auto", "local"):
        probe_ray_cluster(address)


def test_a_ray_address_that_is_not_a_ray_head_fails_fast(health_server):
    """A real Ray head passes (test_ray_node); the MLflow server's port in RAY_ADDRESS
    answers, but not with gRPC, and ray.init would hang on it."""
    http_address = health_server.url.removeprefix("http://")
    started = time.monotonic()
    for address in (http_address, f"ray://{http_address}"):
        with pytest.raises(UnreachableService, match="answers, but not as a Ray head"):
            probe_ray_cluster(address)
    assert time.monotonic() - started < FAST_SECONDS


def test_a_port_that_accepts_but_never_answers_fails_within_the_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        with pytest.raises(UnreachableService, match="did not answer"):
            probe_ray_cluster(f"127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
    assert time.monotonic() - started < FAST_SECONDS


def test_unreachable_services_fail_fast_with_the_fix():
    started = time.monotonic()
    with pytest.raises(UnreachableService, match="make mlflow-server"):
        probe_tracking_server(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(UnreachableService, match="make ray-head"):
        probe_ray_cluster(f"127.0.0.1:{closed_port()}")
    with pytest.raises(UnreachableService, match="is not host:port"):
        probe_ray_cluster("nonsense")
    assert time.monotonic() - started < FAST_SECONDS


def test_the_sweep_stops_before_starting_anything(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
    code = sweep_main(["--config", "experiments/cpu.yaml", "--storage", str(tmp_path)])
    assert code == 2
    assert "did not answer" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_credentials_in_a_tracking_uri_are_sent_but_never_shown(health_server, monkeypatch):
    secret_uri = health_server.url.replace("http://", "http://alice:pa%2Fss@")
    probe_tracking_server(secret_uri)  # userinfo goes in a header, not the host name
    assert health_server.asked == ["/health"]
    assert without_credentials(secret_uri) == health_server.url.replace("http://", "http://***@")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", secret_uri)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert tracking_uri(Path.cwd()) == health_server.url
    assert os.environ["MLFLOW_TRACKING_URI"] == health_server.url
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == (
        "alice",
        "pa/ss",
    )
