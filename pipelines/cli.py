"""The `postag` command: one sub-command per pipeline, each a `main(argv)` of its own."""

from __future__ import annotations

import sys

from pipelines import bench, train

COMMANDS = {"train": train.main, "bench": bench.main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: postag {{{','.join(COMMANDS)}}} [options]  (postag COMMAND --help)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
