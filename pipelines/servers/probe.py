"""Before a sweep starts: is the MLflow server there, and the Ray cluster? Fail at once if not.

Without these checks an unreachable server shows up minutes later as retries inside trials,
and a wrong RAY_ADDRESS as a hang in ray.init.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import urllib.error
import urllib.request
from urllib.parse import urlencode, urlsplit, urlunsplit

from pipelines.experiment import experiment_name
from pipelines.tracking import without_credentials

PROBE_TIMEOUT_S = 5.0
HTTP_SCHEMES = ("http", "https")
# RAY_ADDRESS values that do not name a host: ray.init resolves them itself.
LOCAL_RAY_ADDRESSES = ("", "auto", "local")
# A read every logged-in user may make: whether it answers 401 tells if the login is good.
LOGIN_PROBE_PATH = "/api/2.0/mlflow/experiments/get-by-name"
# A Ray head (its GCS, or the Ray Client server behind ray://) speaks gRPC, which is HTTP/2:
# sent a client's connection preface, it answers with a SETTINGS frame (RFC 9113, 3.4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(3) + b"\x04" + bytes(5)
HTTP2_FRAME_HEADER_BYTES = 9
HTTP2_SETTINGS_FRAME = 0x04


class UnreachableService(RuntimeError):
    """A tracking server or Ray cluster that did not answer."""


class LoginRefused(UnreachableService):
    """A tracking server that answered, but not to this login."""


def probe_tracking_server(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """An http(s) tracking URI must answer its /health endpoint; file stores need no probe."""
    parts = urlsplit(uri)
    if parts.scheme not in HTTP_SCHEMES:
        return
    # urllib takes user:password@ for part of the host name: send it as a header instead.
    host = parts.netloc.rpartition("@")[2]
    health = urlunsplit(parts._replace(netloc=host, path=parts.path.rstrip("/") + "/health"))
    request = urllib.request.Request(health)
    if parts.username is not None:
        token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as error:
        problem = str(getattr(error, "reason", error))
    raise UnreachableService(
        f"MLflow tracking server {without_credentials(uri)} did not answer /health ({problem}); "
        "start one with `make mlflow-server`, or unset MLFLOW_TRACKING_URI to use the local "
        "sqlite store"
    )


def check_login(uri: str, experiment: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """A tracking server that asks for a login must accept this one, before any trial runs.

    The credentials are MLflow's own variables, MLFLOW_TRACKING_USERNAME and
    MLFLOW_TRACKING_PASSWORD (`tracking_uri` moves a user:password@ part of the URI there).
    """
    parts = urlsplit(uri)
    if parts.scheme not in HTTP_SCHEMES:
        return
    query = urlencode({"experiment_name": experiment_name(experiment)})
    url = urlunsplit(parts._replace(path=parts.path.rstrip("/") + LOGIN_PROBE_PATH, query=query))
    request = urllib.request.Request(url)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if user is not None:
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError as error:
        if error.code not in (401, 403):
            return  # the login passed; what the server thinks of the question does not matter
        raise LoginRefused(login_problem(without_credentials(uri), user, error.code)) from None
    except (urllib.error.URLError, OSError):
        return  # not a login problem: the sweep's own calls will retry and report it


def login_problem(server: str, user: str | None, code: int) -> str:
    if user is None:
        return (
            f"MLflow tracking server {server} asks for a login (HTTP {code}): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    if code == 401:
        return (
            f"MLflow tracking server {server} refused the login of user '{user}' (HTTP "
            "401): check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    return f"MLflow tracking server {server}: user '{user}' may not use it (HTTP {code})"


def probe_ray_cluster(address: str | None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """A RAY_ADDRESS naming host:port (or ray://host:port) must answer as a Ray head does:
    with gRPC, not merely accept a connection (another server's port would, and ray.init
    would then hang)."""
    if address is None or address in LOCAL_RAY_ADDRESSES:
        return
    parts = urlsplit(address if "://" in address else f"gcs://{address}")
    if parts.hostname is None or parts.port is None:
        raise UnreachableService(f"RAY_ADDRESS={address!r} is not host:port or ray://host:port")
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
            sock.sendall(HTTP2_PREFACE)
            answer = receive(sock, HTTP2_FRAME_HEADER_BYTES)
    except OSError as error:
        raise UnreachableService(
            f"Ray cluster at RAY_ADDRESS={address} did not answer ({error}); start its head "
            "with `make ray-head`, or unset RAY_ADDRESS to run Ray on this machine"
        ) from None
    if len(answer) < HTTP2_FRAME_HEADER_BYTES or answer[3] != HTTP2_SETTINGS_FRAME:
        raise UnreachableService(
            f"RAY_ADDRESS={address} answers, but not as a Ray head (no gRPC): name the head's "
            "port (6379 unless `make ray-head RAY_PORT=...` moved it), or ray://host:10001"
        )


def receive(sock: socket.socket, count: int) -> bytes:
    """Up to `count` bytes, fewer if the peer closes first."""
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def cluster_gpus(address: str | None) -> float:
    """The GPUs of the Ray cluster that RAY_ADDRESS names (0 for a local Ray).

    Asked of the cluster, not of this machine: a driver without a GPU may drive workers
    that have them.
    """
    if address is None or address in LOCAL_RAY_ADDRESSES:
        return 0.0
    probe_ray_cluster(address)
    import ray  # here: only a sweep on a named cluster pays for it

    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        return float(ray.cluster_resources().get("GPU", 0.0))
    finally:
        ray.shutdown()
