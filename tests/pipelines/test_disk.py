"""A full disk told apart from other failures, whichever writer met it."""

from __future__ import annotations

import errno
import shutil
import sqlite3

from mlflow.exceptions import MlflowException

from pipelines.disk import DiskFull, disk_full


def raised(error: BaseException, during: BaseException | None = None) -> BaseException:
    """`error` as Python leaves it when raised while handling `during`."""
    try:
        try:
            if during is not None:
                raise during
        finally:
            raise error
    except BaseException as caught:
        return caught


def test_an_oserror_names_its_own_file():
    error = OSError(errno.ENOSPC, "No space left on device", "/data/runs/state.pt")
    assert str(disk_full(error, ["/data/runs"])) == (
        "the disk holding /data/runs/state.pt is full (No space left on device)"
    )


def test_a_quota_counts_as_full():
    error = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert disk_full(error, ["/home/me/runs"]).where == "/home/me/runs"


def test_a_message_without_a_path_names_every_place_written_when_none_is_full_now(tmp_path):
    # pyarrow copying a checkpoint to Tune's storage says what, not where; the disks here
    # have room, so the error cannot say which one it was.
    error = OSError("[Errno 28] Error writing bytes to file. Detail: No space left on device")
    places = [str(tmp_path / "runs"), "http://tracking:5000"]
    assert disk_full(error, places).where == f"{tmp_path / 'runs'} or http://tracking:5000"


def test_sqlite_full_is_a_full_disk():
    cause = sqlite3.OperationalError("database or disk is full")
    error = raised(MlflowException(f"(sqlite3.OperationalError) {cause}"), during=cause)
    assert disk_full(error, ["/data/mlflow.db"]).why == "database or disk is full"


def test_the_place_whose_disk_is_full_now_is_named(tmp_path, monkeypatch):
    """Where the error names no file: the place with no free space is the one that filled
    (the e2e test fills a real tmpfs; here only the figure the OS gives is changed)."""
    roomy, full = tmp_path / "roomy", tmp_path / "full"
    full.mkdir()
    real = shutil.disk_usage
    monkeypatch.setattr(
        shutil, "disk_usage", lambda path: real(path)._replace(free=0 if path == full else 1e9)
    )
    error = OSError(errno.ENOSPC, "No space left on device")
    assert disk_full(error, [str(roomy), str(full)]).where == str(full)


def test_a_full_disk_met_while_cleaning_up_is_still_found():
    first = DiskFull("/data/runs/trial_1", "No space left on device")
    later = raised(RuntimeError("could not save the sweep state"), during=first)
    assert disk_full(later, ["/data/runs"]) is first


def test_other_failures_are_not_a_full_disk():
    assert disk_full(OSError(errno.EACCES, "Permission denied", "/data"), ["/data"]) is None
    assert disk_full(MlflowException("RESOURCE_DOES_NOT_EXIST"), ["/data"]) is None
    assert disk_full(raised(ValueError("x"), during=KeyError("y")), ["/data"]) is None
