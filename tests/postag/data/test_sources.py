"""Finding, downloading and checking UD English EWT, with a real HTTP server on loopback."""

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from postag.data.sources import EWT_FILES, DataSourceError, ewt_files, sha256_of
from tests.helpers import PROJECT_ROOT


@pytest.fixture(scope="module")
def release_server(ewt_source, tmp_path_factory):
    """An HTTP server on 127.0.0.1 serving the treebank files as the UD release does."""
    root = tmp_path_factory.mktemp("release")
    source = ewt_source
    for split in ("train", "dev", "test"):
        shutil.copy(getattr(source, split), root / getattr(source, split).name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}/{{name}}"
    server.shutdown()
    server.server_close()


def test_downloads_into_the_cache_once_and_checks_sha256(release_server, tmp_path):
    _, url = release_server
    files = ewt_files(cache_dir=tmp_path, search=[], url=url)
    assert files.train == tmp_path / EWT_FILES["train"][0]
    stamp = files.train.stat().st_mtime_ns
    # A second call finds the cached copy; an unreachable URL proves nothing is fetched.
    again = ewt_files(cache_dir=tmp_path, search=[], url="http://127.0.0.1:9/{name}")
    assert again.train.stat().st_mtime_ns == stamp


@pytest.fixture
def damaged_release(release_server, tmp_path):
    """A server like `release_server` whose dev file lost its last sentence on the way."""
    root = tmp_path / "damaged"
    shutil.copytree(release_server[0], root)
    dev = root / EWT_FILES["dev"][0]
    dev.write_text(dev.read_text(encoding="utf-8").rsplit("\n\n", 2)[0] + "\n\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/{{name}}"
    server.shutdown()
    server.server_close()


def test_a_damaged_download_is_refused_naming_it_and_not_kept(damaged_release, tmp_path):
    with pytest.raises(DataSourceError) as caught:
        ewt_files(cache_dir=tmp_path / "cache", search=[], url=damaged_release)
    message = str(caught.value)
    assert damaged_release.format(name=EWT_FILES["dev"][0]) in message
    assert "en_ewt-ud-dev.conllu has sha256" in message and "it was not kept" in message
    # The good files stay; the damaged one is gone, so the next run fetches it again.
    kept = sorted(path.name for path in (tmp_path / "cache").iterdir())
    assert kept == [EWT_FILES["train"][0]]


def fresh_clone(folder: Path) -> Path:
    """The project's tracked files in `folder`/postag, with no ../shared beside it."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout.decode()
    clone = folder / "postag"
    for name in filter(None, listed.split("\0")):
        if (PROJECT_ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, clone / name)
    return clone


def test_the_suite_on_a_fresh_machine_fetches_the_treebank_once(release_server, tmp_path):
    """`make test` in a clone with no ../shared/ and an empty cache: the session's EWT comes
    from the release (here a server on loopback, $POSTAG_EWT_URL), checked and cached; a
    second session reads the cache and reaches no server."""
    _, url = release_server
    clone, cache = fresh_clone(tmp_path), tmp_path / "xdg-cache"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("POSTAG_")}
    environment.update(XDG_CACHE_HOME=str(cache), POSTAG_EWT_URL=url)
    test = (  # a test that reads the session's EWT (`ewt_source`, `ewt_slice`)
        "tests/postag/data/test_dataset.py::"
        "test_a_split_is_the_file_the_data_names_and_ewt_fills_in_for_conllu"
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
    first = subprocess.run(
        [*command, test], cwd=clone, env=environment, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stdout + first.stderr
    fetched = cache / "postag" / "ud-english-ewt-r2.16"
    for name, sha256 in EWT_FILES.values():
        assert sha256_of(fetched / name) == sha256
    environment["POSTAG_EWT_URL"] = "http://127.0.0.1:9/{name}"  # nothing listens there
    again = subprocess.run(
        [*command, test], cwd=clone, env=environment, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_corrupt_copy_is_refused(release_server, tmp_path):
    root, _ = release_server
    for name, _ in EWT_FILES.values():
        shutil.copy(root / name, tmp_path / name)
    with (tmp_path / EWT_FILES["dev"][0]).open("a") as handle:
        handle.write("# tampered\n")
    with pytest.raises(DataSourceError, match="en_ewt-ud-dev.conllu: sha256 .* does not match"):
        ewt_files(cache_dir=tmp_path / "cache", search=[tmp_path])


def test_no_copy_and_no_network_says_where_to_put_the_files(tmp_path):
    with pytest.raises(DataSourceError) as caught:
        ewt_files(
            cache_dir=tmp_path / "cache",
            search=[tmp_path / "nowhere"],
            url="http://127.0.0.1:9/{name}",
        )
    message = str(caught.value)
    assert "could not be downloaded" in message
    assert str(tmp_path / "nowhere") in message and "POSTAG_EWT_DIR" in message
    assert not list((tmp_path / "cache").glob("*.part"))


def test_without_downloads_a_missing_copy_says_where_to_put_the_files(tmp_path):
    """`download=False`: a copy in place or a clear failure, never the network."""
    with pytest.raises(DataSourceError) as caught:
        ewt_files(
            cache_dir=tmp_path / "cache",
            search=[tmp_path / "nowhere"],
            url="http://127.0.0.1:9/{name}",
            download=False,
        )
    message = str(caught.value)
    assert "not found" in message and "could not be downloaded" not in message
    assert str(tmp_path / "nowhere") in message and "POSTAG_EWT_DIR" in message
    assert not (tmp_path / "cache").exists()
