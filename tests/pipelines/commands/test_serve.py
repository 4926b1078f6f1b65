"""`make serve`: the registered tagger over HTTP, from MLflow's own scoring server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException

from postag.data.readers import read_conllu
from postag.serving.inference import tag_sentences
from postag.serving.pyfunc import CHUNK_RECORDS, MAX_RECORDS, MAX_SENTENCE_WORDS
from tests.helpers import ModelServer, command_line, descendants

# A request that takes longer has hung: a tagging of the largest request allowed takes ~1 s.
REQUEST_SECONDS = 30


# `postag serve --workers 2` (`make serve SERVE_WORKERS=2`): every test below is answered
# by one of two server processes, each with the model loaded.
WORKERS = 2


@pytest.fixture(scope="module")
def served(swept, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    server = ModelServer(log, swept[3], workers=WORKERS)
    server.start()
    yield server
    server.stop()


def server_workers(server: ModelServer) -> list[int]:
    """The processes under the server that serve requests: uvicorn's workers, each a
    child its supervisor spawned through multiprocessing (not the resource tracker that
    multiprocessing starts beside them)."""
    parents = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        parents[int(entry.name)] = int(stat[1])
    tree = descendants([server.process.pid], parents)
    return [pid for pid in tree if "multiprocessing.spawn" in command_line(pid)]


def test_two_workers_each_load_the_model_and_answer_requests_side_by_side(served, ewt_slice):
    """`--workers 2` reaches the server: two worker processes, and requests sent at once all
    come back tagged, as the model tags them alone."""
    assert len(server_workers(served)) == WORKERS
    sentences = [list(s.words) for s in read_conllu(ewt_slice["dev"])[:16]]
    bodies = [
        json.dumps({"dataframe_records": [{"tokens": words}]}).encode() for words in sentences
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda body: post(served.url, body), bodies))
    assert [status for status, _ in answers] == [200] * len(sentences)
    for (_, answer), words in zip(answers, sentences, strict=True):
        assert answer["predictions"][0]["tokens"] == words


@pytest.fixture(scope="module")
def best_in_process(swept):
    """The registered `best`, loaded in this process as a batch job would."""
    mlflow.set_tracking_uri(swept[3])
    try:
        return mlflow.pyfunc.load_model("models:/postag-tagger@best")
    finally:
        mlflow.set_tracking_uri(None)


STILL_WORDS = ["The", "dog", "runs", "."]


def assert_still_tags(url: str, model) -> None:
    """The server still tags a plain sentence as the model does in this process."""
    status, answer = post_raw(
        url, json.dumps({"dataframe_records": [{"tokens": STILL_WORDS}]}).encode()
    )
    expected = model.predict(pd.DataFrame({"tokens": [STILL_WORDS]}))["tags"][0]
    assert status == 200 and answer["predictions"][0]["tags"] == list(expected), answer


def test_a_batch_of_5000_records_in_one_call_tags_each_as_alone(best_in_process, ewt_slice):
    """Batch scoring in process has no request limit: 5,000 records in one call, tagged in
    chunks, each as the same sentence tagged on its own."""
    sentences = [list(s.words) for split in ("dev", "test") for s in read_conllu(ewt_slice[split])]
    records = [sentences[i % len(sentences)] for i in range(5_000)]
    assert len(records) > MAX_RECORDS and len(records) % CHUNK_RECORDS == 0
    tagged = best_in_process.predict(pd.DataFrame({"tokens": records}))
    tagger = best_in_process.unwrap_python_model().tagger
    alone = [tag_sentences(tagger, [sentence])[0] for sentence in sentences]
    assert len(tagged) == len(records)
    for i, row in tagged.iterrows():
        assert list(row["tokens"]) == records[i]
        assert list(row["tags"]) == alone[i % len(sentences)], i


def test_a_text_past_the_tokenizers_bound_in_process_is_a_message_naming_the_record(
    best_in_process,
):
    """Without the request limits, a text longer than the tokenizer takes is still refused
    by record, not by spaCy's own error from deep inside."""
    records = pd.DataFrame({"text": ["A short one.", "Some words. " * 100_001]})
    with pytest.raises(MlflowException) as refused:
        best_in_process.predict(records)
    assert "record 1: 'text' holds 1,200,012 characters; the limit is 1,000,000 a record" in str(
        refused.value
    )


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_SECONDS) as response:
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
    assert [row["tokens"] for row in answer["predictions"]] == sentences
    known = {tag for s in read_conllu(ewt_slice["train"]) for tag in s.tags}
    assert all(tag in known for tags in tagged for tag in tags)


def test_raw_text_records_are_split_as_ewt_does_and_tagged_as_their_words(served):
    text = "I don't know, do you? Maybe."
    words = ["I", "do", "n't", "know", ",", "do", "you", "?", "Maybe", "."]
    status, answer = post(served.url, json.dumps({"dataframe_records": [{"text": text}]}).encode())
    assert status == 200, answer
    (from_text,) = answer["predictions"]
    # Two sentences found in the text, each tagged as its words would be given pre-split.
    body = {"dataframe_records": [{"tokens": words[:8]}, {"tokens": words[8:]}]}
    status, answer = post(served.url, json.dumps(body).encode())
    assert status == 200, answer
    assert from_text["tokens"] == words
    assert from_text["tags"] == [tag for row in answer["predictions"] for tag in row["tags"]]


def test_the_signature_offers_tokens_and_text(served, swept):
    _, _, _, uri = swept
    mlflow.set_tracking_uri(uri)
    try:
        signature = mlflow.models.get_model_info("models:/postag-tagger@best").signature
    finally:
        mlflow.set_tracking_uri(None)
    assert {spec.name: spec.required for spec in signature.inputs.inputs} == {
        "tokens": False,
        "text": False,
    }
    assert signature.outputs.input_names() == ["tokens", "tags"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "valid JSON"),
        (b'{"dataframe_records": [{"words": ["I"]}]}', "a 'text' column of raw text"),
        (b'{"dataframe_records": [{"tokens": ["I"], "text": "I"}]}', "record 0: give either"),
        (b'{"dataframe_records": [{"tokens": ["I"]}, {"tokens": []}]}', "record 1: 'tokens' is"),
        # One kind of record a request: MLflow reads an absent list as a number, not as none.
        (b'{"dataframe_records": [{"text": "I"}, {"tokens": ["I"]}]}', "column tokens"),
        (b'{"dataframe_records": [{"text": "   "}]}', "record 0: 'text' holds no words"),
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
    # No --model: the command serves `best` of the registered model (postag-tagger's).
    assert "--host 127.0.0.1 --port 5002" in dry.stdout and "--model" not in dry.stdout
    moved = subprocess.run(
        ["make", "-n", "serve", "SERVE_PORT=6123", "MODEL=models:/x/2"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--port 6123 --model models:/x/2" in moved.stdout


KEYS = st.text(max_size=8)
MLFLOW_KEYS = st.sampled_from(["dataframe_records", "dataframe_split", "inputs", "instances"])
# Any JSON value, nested a few levels.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
# What goes wrong inside a record: items of the wrong type, empty sentences and texts.
WRONG_TOKENS = st.lists(
    st.none()
    | st.integers()
    | st.floats()
    | st.lists(st.text(max_size=3), max_size=2)
    | st.text(max_size=6),
    max_size=5,
)
HOSTILE_BODIES = st.one_of(
    JSON.map(json.dumps),
    st.dictionaries(MLFLOW_KEYS, JSON, min_size=1).map(json.dumps),
    WRONG_TOKENS.map(lambda tokens: json.dumps({"dataframe_records": [{"tokens": tokens}]})),
    st.text(max_size=300).map(lambda text: json.dumps({"dataframe_records": [{"text": text}]})),
    st.just(json.dumps({"dataframe_records": []})),
    st.binary(max_size=64),  # not JSON, not even UTF-8
)


@settings(max_examples=150, deadline=None)
@given(body=HOSTILE_BODIES)
def test_a_hostile_request_gets_a_4xx_or_its_tags_never_a_5xx(served, best_in_process, body):
    status, answer = post_raw(served.url, body if isinstance(body, bytes) else body.encode())
    assert status < 500, answer
    if status == 200:
        for row in answer["predictions"]:
            assert len(row["tokens"]) == len(row["tags"]) > 0
    assert_still_tags(served.url, best_in_process)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        # a sentence past the limit, pre-split and as text
        ({"tokens": ["word"] * (MAX_SENTENCE_WORDS + 1)}, "the limit is 1,000 a sentence"),
        ({"text": "word " * (MAX_SENTENCE_WORDS + 1)}, "the limit is 1,000 a sentence"),
        # a body of several MB
        ({"text": "Some words. " * 400_000}, "the limit is 100,000 a record"),
    ],
)
def test_requests_past_a_limit_get_a_400_that_names_it(served, best_in_process, body, says):
    payload = json.dumps({"dataframe_records": [body]}).encode()
    status, answer = post_raw(served.url, payload)
    assert status == 400 and says in answer["message"], (len(payload), status, answer)
    assert_still_tags(served.url, best_in_process)


def test_too_many_records_and_invalid_utf8_get_a_400_then_good_requests_still_tag(
    served, best_in_process
):
    records = [{"tokens": ["Hi"]}] * (MAX_RECORDS + 1)
    status, answer = post_raw(served.url, json.dumps({"dataframe_records": records}).encode())
    assert status == 400 and "1,001 records; the limit is 1,000 a request" in answer["message"]
    assert_still_tags(served.url, best_in_process)
    status, _ = post_raw(served.url, b'{"dataframe_records": [{"text": "caf\xe9 \xff"}]}')
    assert 400 <= status < 500
    assert_still_tags(served.url, best_in_process)


def post_raw(url: str, body: bytes) -> tuple[int, dict | str]:
    """`post`, for bodies whose answer may not be JSON."""
    try:
        return post(url, body)
    except json.JSONDecodeError as error:
        return 0, f"the answer is not JSON: {error}"
