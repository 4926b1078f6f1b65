"""The throwaway services that benchmarks and tests start: a clear error, never a hang, when
one cannot start."""

import subprocess
import sys

import pytest

from pipelines.servers import local
from pipelines.servers.local import PostgresServer, ServiceDidNotStart, free_port


def test_a_service_that_ends_on_its_start_is_reported_with_its_log(tmp_path):
    log = tmp_path / "service.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", "print('port already in use'); raise SystemExit(3)"],
            stdout=output,
        )
    url = f"http://127.0.0.1:{free_port()}/health"
    with pytest.raises(ServiceDidNotStart, match="exit 3") as raised:
        local.wait_until_answers(process, url, log, limit=30)
    assert str(log) in str(raised.value)
    assert "port already in use" in str(raised.value)


def test_a_service_that_never_answers_is_stopped_after_the_limit(tmp_path):
    log = tmp_path / "service.log"
    log.write_text("")
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    url = f"http://127.0.0.1:{free_port()}/health"
    with pytest.raises(ServiceDidNotStart, match="did not answer in 1 s"):
        local.wait_until_answers(process, url, log, limit=1)
    assert process.poll() is not None  # killed, not left behind


def test_postgresql_missing_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "POSTGRES_PROGRAMS", tmp_path / "no-postgresql")
    with pytest.raises(ServiceDidNotStart, match="apt-get install postgresql"):
        PostgresServer(tmp_path / "data")
