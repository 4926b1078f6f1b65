"""A progress bar in an interactive terminal; nothing per batch in CI or worker logs."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress(items: Sequence[T], description: str) -> Sequence[T]:
    if not interactive():
        return items
    return tqdm(items, desc=description, leave=False, unit="batch", dynamic_ncols=True)
