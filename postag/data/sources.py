"""Where the default treebank, UD English EWT r2.16, comes from.

Looked for, in order: $POSTAG_EWT_DIR, `../shared/data/ud-english-ewt` beside the working
directory or the project, and the download cache; otherwise downloaded from the release (or
the mirror $POSTAG_EWT_URL names) and checked against the release's sha256 sums before it
is kept. `make sweep` and `make test` both come here, so the first of them on a fresh
machine fetches the files once and neither reaches the network again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

EWT_RELEASE = "r2.16"
EWT_URL = "https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/{release}/{name}"
EWT_FILES = {
    "train": (
        "en_ewt-ud-train.conllu",
        "3fb78e2b55482c8ee00caa653af436c88c9e5bc9a73ce26e4ae3ddc79d2b7e7b",
    ),
    "dev": (
        "en_ewt-ud-dev.conllu",
        "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6",
    ),
    "test": (
        "en_ewt-ud-test.conllu",
        "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd",
    ),
}
SHARED_SUBDIR = Path("shared/data/ud-english-ewt")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOWNLOAD_TIMEOUT_S = 60
HASH_CHUNK_BYTES = 1 << 20


class DataSourceError(RuntimeError):
    """The default treebank could be neither found nor downloaded."""


@dataclass(frozen=True)
class TreebankFiles:
    train: Path
    dev: Path
    test: Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def candidate_dirs() -> list[Path]:
    dirs = []
    if env := os.environ.get("POSTAG_EWT_DIR"):
        dirs.append(Path(env))
    dirs += [Path.cwd().parent / SHARED_SUBDIR, PROJECT_ROOT.parent / SHARED_SUBDIR]
    return dirs


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "postag" / f"ud-english-ewt-{EWT_RELEASE}"


def release_url() -> str:
    """Where the files are fetched from: $POSTAG_EWT_URL (a mirror, a template with {name}
    and optionally {release}) or the UD release on GitHub."""
    return os.environ.get("POSTAG_EWT_URL") or EWT_URL


def ewt_files(
    cache_dir: Path | None = None,
    search: list[Path] | None = None,
    url: str | None = None,
    download: bool = True,
) -> TreebankFiles:
    """Paths to EWT train/dev/test, verified by sha256; downloads into the cache if needed
    and `download` allows it.

    `search` defaults to candidate_dirs(); `url` (a template with {release} and {name})
    to release_url().
    """
    cache_dir = cache_dir or default_cache_dir()
    search = candidate_dirs() if search is None else search
    url = url or release_url()
    for directory in [*search, cache_dir]:
        if all((directory / name).is_file() for name, _ in EWT_FILES.values()):
            return _verified(directory)
    if not download:
        where = _where_to_put([*search, cache_dir])
        raise DataSourceError(f"UD English EWT {EWT_RELEASE} not found. {where}")
    _download(cache_dir, search, url)
    return _verified(cache_dir)


def _where_to_put(search: list[Path]) -> str:
    looked = "\n  ".join(str(d) for d in search)
    return (
        f"Put en_ewt-ud-{{train,dev,test}}.conllu in one of:\n  {looked}\nor set "
        "POSTAG_EWT_DIR to their folder, or pass --train/--dev/--test."
    )


def _verified(directory: Path) -> TreebankFiles:
    paths = {}
    for split, (name, expected) in EWT_FILES.items():
        path = directory / name
        actual = sha256_of(path)
        if actual != expected:
            raise DataSourceError(
                f"{path}: sha256 {actual} does not match the {EWT_RELEASE} release ({expected}); "
                "delete it to download it again"
            )
        paths[split] = path
    return TreebankFiles(**paths)


def _download(cache_dir: Path, search: list[Path], url_template: str) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, expected in EWT_FILES.values():
        target = cache_dir / name
        if target.is_file():
            continue
        url = url_template.format(release=EWT_RELEASE, name=name)
        print(f"downloading {url} into {cache_dir}", file=sys.stderr, flush=True)
        partial = target.with_suffix(".part")
        try:
            with (
                urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
                partial.open("wb") as handle,
            ):
                shutil.copyfileobj(response, handle)
        except (urllib.error.URLError, OSError) as error:
            partial.unlink(missing_ok=True)
            raise DataSourceError(
                f"UD English EWT {EWT_RELEASE} not found and could not be downloaded "
                f"({url}: {error}).\n{_where_to_put([*search, cache_dir])}"
            ) from None
        _keep_if_verified(partial, target, url, expected)


def _keep_if_verified(partial: Path, target: Path, url: str, expected: str) -> None:
    """Moves a finished download into the cache only when its sha256 is the release's: a
    damaged or wrong file is deleted, so the next run fetches it again."""
    actual = sha256_of(partial)
    if actual != expected:
        partial.unlink()
        raise DataSourceError(
            f"{url}: the downloaded {target.name} has sha256 {actual}, not the {EWT_RELEASE} "
            f"release's {expected}; it was not kept. Check the address ($POSTAG_EWT_URL) "
            "or try again."
        )
    partial.replace(target)
