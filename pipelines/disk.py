"""A full disk, told apart from other failures: what stopped says which folder filled and
what to do, in one line, where another failure gets a traceback in a log file.

What "full" looks like depends on who wrote:
- Python: an OSError with errno ENOSPC, or EDQUOT for a quota, and usually the file's path;
- pyarrow, copying a Tune checkpoint to storage: an OSError whose text says so, but no path;
- SQLite under MLflow's SQL store: "database or disk is full", wrapped by SQLAlchemy, then
  by MLflow;
- PostgreSQL, or a tracking server on a full disk: its own text, passed on by MLflow.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
FULL_TEXTS = ("No space left on device", "database or disk is full", "Disk quota exceeded")
# Free space under this counts as full: a write has just failed there for want of space.
FULL_BELOW_BYTES = 2**20


class DiskFull(OSError):
    """A write failed for want of space; `where` names the folder or file it went to."""

    def __init__(self, where: str, why: str):
        super().__init__(errno.ENOSPC, why, where)
        self.where, self.why = where, why

    def __str__(self) -> str:
        return f"the disk holding {self.where} is full ({self.why})"


def full_text(text: str) -> str | None:
    """The phrase by which `text` (an error message, a trial's error file) says a disk is
    full, or None."""
    return next((phrase for phrase in FULL_TEXTS if phrase.lower() in text.lower()), None)


def disk_full(error: BaseException, places: list[str]) -> DiskFull | None:
    """The full disk behind `error`, if one is: from anywhere in its chain of causes (a
    failed write often surfaces as a later error in code that was cleaning up).

    `places` are where the failed work writes (folders, files, a server's URI): when the
    error names no file, the one whose disk is full now is named, else all of them."""
    chain = list(causes(error))
    for cause in chain:
        if isinstance(cause, DiskFull):
            return cause
    for cause in chain:
        if isinstance(cause, OSError) and cause.errno in FULL_ERRNOS:
            where = str(cause.filename) if cause.filename else full_place(places)
            return DiskFull(where, cause.strerror or "no space left")
    phrase = full_text("\n".join(str(cause) for cause in chain))
    return DiskFull(full_place(places), phrase) if phrase else None


def full_place(places: list[str]) -> str:
    """The first of `places` on a local disk that is full now, else all of them."""
    for place in places:
        if "://" in place:
            continue
        path = Path(place).resolve()
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is not None and shutil.disk_usage(existing).free < FULL_BELOW_BYTES:
            return place
    return " or ".join(places)


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what caused it, then what caused that, ... once each."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
