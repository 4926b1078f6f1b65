"""`make ray-head` / `make ray-worker`: Ray cluster nodes that ask every peer for a token.

    make ray-head                          # this machine becomes the head, on port 6379
    make ray-worker HEAD=head-host:6379    # on each other machine, after copying the token

Ray's token authentication (RAY_AUTH_MODE=token) is on for every node these start. The
token lives in a file (RAY_AUTH_TOKEN_PATH, default ~/.ray/auth_token, mode 600): the head
generates it once, and each worker and driver machine gets a copy (scp). It is passed the
way Ray documents, by that file, never on a command line that `ps` would show. A driver
(`make sweep` with RAY_ADDRESS) needs RAY_AUTH_MODE=token and the same file.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from pipelines.cli import command_parser, fail

PROG = "postag ray-node"
DEFAULT_TOKEN_FILE = Path.home() / ".ray" / "auth_token"
TOKEN_BYTES = 32  # 64 hex characters, as Ray's own generated tokens


def token_file() -> Path:
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH", DEFAULT_TOKEN_FILE)).expanduser()


def ensure_token(path: Path) -> bool:
    """The token file, created if missing; readable by its owner only. True if new."""
    created = not path.exists()
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(TOKEN_BYTES))
    path.chmod(0o600)
    return created


def ray_start(role: str, host: str, port: int, address: str | None, extra: list[str]) -> list[str]:
    ray_cli = str(Path(sys.executable).with_name("ray"))
    if role == "head":
        return [
            ray_cli,
            "start",
            "--head",
            "--node-ip-address",
            host,
            "--port",
            str(port),
            "--include-dashboard=false",
            *extra,
        ]
    return [ray_cli, "start", "--address", address, "--node-ip-address", host, *extra]


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(PROG, __doc__)
    parser.add_argument("role", choices=["head", "worker"])
    parser.add_argument("--host", default="127.0.0.1", help="this node's address")
    parser.add_argument("--port", type=int, default=6379, help="the head's port")
    parser.add_argument("--address", help="head-host:port (worker)")
    parser.add_argument("--num-cpus", type=int, help="CPUs this node offers (default: all)")
    parser.add_argument("--num-gpus", type=int, help="GPUs this node offers (default: all)")
    args = parser.parse_args(argv)
    path = token_file()
    if args.role == "worker":
        if not args.address:
            return fail(
                PROG, "a worker needs the head's address: make ray-worker HEAD=host:port", 2
            )
        if not path.is_file():
            return fail(
                PROG,
                f"no Ray token at {path}: copy the head's token file here "
                "(mode 600), or set RAY_AUTH_TOKEN_PATH to where it is",
                2,
            )
    elif ensure_token(path):
        print(f"{PROG}: new Ray token in {path}; copy it to every worker and driver machine")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}
    extra = [
        f"--{name}={value}"
        for name, value in (("num-cpus", args.num_cpus), ("num-gpus", args.num_gpus))
        if value is not None
    ]
    command = ray_start(args.role, args.host, args.port, args.address, extra)
    os.execve(command[0], command, env)
    return 0  # not reached: `ray start` replaced this process


if __name__ == "__main__":
    sys.exit(main())
