"""Finding, downloading and checking UD English EWT, with a real HTTP server on loopback."""

import functools
import http.server
import shutil
import threading

import pytest

from postag.data.sources import EWT_FILES, DataSourceError, ewt_files


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
    """What the test suite asks for: the shared copy or a clear failure, never the network."""
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
