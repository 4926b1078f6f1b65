"""Before a sweep starts: is the MLflow server there, and the Ray cluster? Fail at once if not.

Without these checks an unreachable server shows up minutes later as retries inside trials,
and a wrong RAY_ADDRESS as a hang in ray.init.
"""

from __future__ import annotations

import base64
import socket
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

from pipelines.tracking import without_credentials

PROBE_TIMEOUT_S = 5.0
HTTP_SCHEMES = ("http", "https")
# RAY_ADDRESS values that do not name a host: ray.init resolves them itself.
LOCAL_RAY_ADDRESSES = ("", "auto", "local")


class UnreachableService(RuntimeError):
    """A tracking server or Ray cluster that did not answer."""


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


def probe_ray_cluster(address: str | None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """A RAY_ADDRESS naming host:port (or ray://host:port) must accept a connection."""
    if address is None or address in LOCAL_RAY_ADDRESSES:
        return
    parts = urlsplit(address if "://" in address else f"gcs://{address}")
    if parts.hostname is None or parts.port is None:
        raise UnreachableService(f"RAY_ADDRESS={address!r} is not host:port or ray://host:port")
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
            return
    except OSError as error:
        raise UnreachableService(
            f"Ray cluster at RAY_ADDRESS={address} did not answer ({error}); start its head "
            "with `make ray-head`, or unset RAY_ADDRESS to run Ray on this machine"
        ) from None
