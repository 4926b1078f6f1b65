"""`make serve`: the registered tagger over HTTP, from MLflow's own scoring server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from postag.readers import read_conllu
from tests.helpers import ModelServer


@pytest.fixture(scope="module")
def served(swept, tmp_path_factory):
    server = ModelServer(tmp_path_factory.mktemp("serve"), swept[3])
    server.start()
    yield server
    server.stop()


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_posted_sentences_come_back_tagged(served, ewt_slice):
    sentences = [list(s.words) for s in read_conllu(ewt_slice["test"])[:3]]
    body = {"dataframe_records": [{"tokens": tokens} for tokens in sentences]}
    started = time.perf_counter()
    status, answer = post(served.url, json.dumps(body).encode())
    print(f"round trip of {len(sentences)} sentences: {time.perf_counter() - started:.3f} s")
    assert status == 200
    tagged = [row["tags"] for row in answer["predictions"]]
    assert [len(tags) for tags in tagged] == [len(tokens) for tokens in sentences]
    known = {tag for s in read_conllu(ewt_slice["train"]) for tag in s.tags}
    assert all(tag in known for tags in tagged for tag in tags)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "valid JSON"),
        (b'{"dataframe_records": [{"words": ["I"]}]}', "missing inputs ['tokens']"),
        (b'{"dataframe_records": [{"tokens": "I saw her"}]}', "Array(string)"),
    ],
)
def test_a_malformed_request_gets_a_400_that_says_what_is_wrong(served, body, says):
    status, answer = post(served.url, body)
    assert status == 400
    assert says in answer["message"]


def test_a_missing_model_is_one_line_not_a_server_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.commands.serve", "--model", "models:/postag-tagger@best"],
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}", "PATH": "/usr/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "no registered model 'postag-tagger'" in done.stderr
    assert "make sweep" in done.stderr and "Traceback" not in done.stderr


def test_make_serve_binds_loopback_on_port_5002_unless_moved():
    dry = subprocess.run(["make", "-n", "serve"], capture_output=True, text=True, check=True)
    assert "--host 127.0.0.1 --port 5002 --model models:/postag-tagger@best" in dry.stdout
    moved = subprocess.run(
        ["make", "-n", "serve", "SERVE_PORT=6123", "MODEL=models:/x/2"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--port 6123 --model models:/x/2" in moved.stdout
