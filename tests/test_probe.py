"""Probes against real sockets on loopback: a listening port passes, a closed one fails fast."""

import http.server
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from pipelines.probe import UnreachableService, probe_ray_cluster, probe_tracking_server
from pipelines.sweep import main as sweep_main
from pipelines.tracking import tracking_uri, without_credentials

FAST_SECONDS = 3.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def health_server():
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the name http.server calls)
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_live_tracking_server_and_local_stores_pass(health_server):
    probe_tracking_server(health_server)
    probe_tracking_server("sqlite:////tmp/x.db")
    probe_ray_cluster(None)
    probe_ray_cluster("auto")


def test_a_listening_ray_address_passes(health_server):
    probe_ray_cluster(health_server.removeprefix("http://"))
    probe_ray_cluster("ray://" + health_server.removeprefix("http://"))


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
    secret_uri = health_server.replace("http://", "http://alice:pa%2Fss@")
    probe_tracking_server(secret_uri)  # userinfo goes in a header, not the host name
    assert without_credentials(secret_uri) == health_server.replace("http://", "http://***@")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", secret_uri)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert tracking_uri(Path.cwd()) == health_server
    assert os.environ["MLFLOW_TRACKING_URI"] == health_server
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == (
        "alice",
        "pa/ss",
    )
