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
from collections.abc import Iterator

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SQLITE_FULL = "database or disk is full"
FULL_TEXTS = ("No space left on device", SQLITE_FULL, "Disk quota exceeded")


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


def disk_full(error: BaseException, where: str, database: str | None = None) -> DiskFull | None:
    """The full disk behind `error`, if one is: from anywhere in its chain of causes (a
    failed write often surfaces as a later error in code that was cleaning up). `where` is
    named when the error itself names no file, `database` (the MLflow store) when it is
    SQLite's own complaint."""
    chain = list(causes(error))
    for cause in chain:
        if isinstance(cause, DiskFull):
            return cause
    for cause in chain:
        if isinstance(cause, OSError) and cause.errno in FULL_ERRNOS:
            return DiskFull(str(cause.filename or where), cause.strerror or "no space left")
    phrase = full_text("\n".join(str(cause) for cause in chain))
    if phrase is None:
        return None
    return DiskFull(database if phrase == SQLITE_FULL and database else where, phrase)


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what caused it, then what caused that, ... once each."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
