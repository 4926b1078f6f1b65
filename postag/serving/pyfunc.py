"""The tagger as MLflow serves it: the pyfunc model, its signature, and what a request may hold.

A request is a DataFrame, each row one record: `tokens`, a sentence already split into words,
or `text`, raw text that the model splits into sentences and words as EWT does
(`postag.data.tokenize`). The answer gives, per record, the words tagged and their tags. A record
the model cannot tag is an error that names the record and the problem, which MLflow's
scoring server returns as a 400.

Any number of records can be tagged in one call in process (`mlflow.pyfunc`, `mlflow models
predict`, `spark_udf`): they are tagged in chunks, so memory stays that of one chunk. The
limits on what one request holds are the HTTP server's, not the model's: `mlflow models
serve` (and `postag serve`, which runs it) calls this same `predict`, so the model applies
them only in a process that MLflow's scoring server has marked as serving
(`in_scoring_server`). MLflow's server offers no hook of its own to bound a request's records.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pandas as pd
from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array

from postag.data.tokenize import max_text_characters, sentences_of
from postag.models.checkpoint import LoadedTagger, load_checkpoint
from postag.models.ensemble import load_ensemble
from postag.serving.inference import tag_sentences

CHECKPOINT_ARTIFACT = "checkpoint"
# An ensemble's members' checkpoints: member-1, member-2, ... (postag/models/ensemble.py).
MEMBER_ARTIFACT = "member-{}"
TOKENS_COLUMN = "tokens"
TEXT_COLUMN = "text"
TAGS_COLUMN = "tags"
# Over HTTP: {"predictions": [{"tokens": [...], "tags": [...]}]}.
SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec(Array(DataType.string), TOKENS_COLUMN, required=False),
            ColSpec(DataType.string, TEXT_COLUMN, required=False),
        ]
    ),
    outputs=Schema(
        [
            ColSpec(Array(DataType.string), TOKENS_COLUMN),
            ColSpec(Array(DataType.string), TAGS_COLUMN),
        ]
    ),
)
# Shown in the MLflow UI as how to call the model (and checked against it when logged).
INPUT_EXAMPLE = pd.DataFrame({TOKENS_COLUMN: [["I", "saw", "her", "duck", "."]]})


# What one HTTP request may hold: enough for any real text (EWT's longest sentence has 159
# words), small enough that no request holds a server worker for long or takes its memory.
MAX_RECORDS = 1_000
MAX_SENTENCE_WORDS = 1_000
MAX_TEXT_CHARACTERS = 100_000
# Records tagged together in process: a batch of any size takes one chunk's memory at a time.
CHUNK_RECORDS = 500


def in_scoring_server() -> bool:
    """Whether MLflow's scoring server runs this process: it sets this variable as it starts
    (MLflow 3.17, `mlflow.pyfunc.scoring_server.init`), before the first request."""
    return bool(_MLFLOW_IS_IN_SERVING_ENVIRONMENT.get())


class BadRecord(MlflowException):
    """A request record the model cannot tag; the scoring server answers it with a 400."""

    def __init__(self, index: int, problem: str):
        super().__init__(f"record {index}: {problem}", error_code=INVALID_PARAMETER_VALUE)


def present(value) -> bool:
    """Whether a record holds a value in a column (pandas fills absent ones with NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def record_sentences(index: int, record: dict, limited: bool) -> list[list[str]]:
    """The sentences of one record, each a list of words; within the request limits where
    `limited` (over HTTP)."""
    tokens, text = record.get(TOKENS_COLUMN), record.get(TEXT_COLUMN)
    if present(tokens) and present(text):
        raise BadRecord(index, f"give either '{TOKENS_COLUMN}' or '{TEXT_COLUMN}', not both")
    if present(tokens):
        words = list(tokens)
        if not words:
            raise BadRecord(index, f"'{TOKENS_COLUMN}' is empty")
        if not all(isinstance(word, str) and word for word in words):
            raise BadRecord(index, f"every item of '{TOKENS_COLUMN}' must be a non-empty string")
        sentences = [words]
    elif present(text):
        if not isinstance(text, str):
            raise BadRecord(index, f"'{TEXT_COLUMN}' must be a string")
        # In process, the tokenizer's own bound still holds: past it spaCy raises its own error.
        limit = MAX_TEXT_CHARACTERS if limited else max_text_characters()
        if len(text) > limit:
            raise BadRecord(
                index,
                f"'{TEXT_COLUMN}' holds {len(text):,} characters; the limit is {limit:,} a record",
            )
        sentences = [sentence.words for sentence in sentences_of(text)]
        if not sentences:
            raise BadRecord(index, f"'{TEXT_COLUMN}' holds no words")
    else:
        raise BadRecord(index, f"holds neither '{TOKENS_COLUMN}' nor '{TEXT_COLUMN}'")
    longest = max(len(sentence) for sentence in sentences)
    if limited and longest > MAX_SENTENCE_WORDS:
        raise BadRecord(
            index,
            f"a sentence of {longest:,} words; the limit is {MAX_SENTENCE_WORDS:,} a sentence",
        )
    return sentences


class TaggerModel(PythonModel):
    """pyfunc wrapper: a DataFrame of `tokens` or `text` records -> `tokens` and `tags`."""

    def __init__(self) -> None:
        self.tagger: LoadedTagger | None = None

    def load_context(self, context: PythonModelContext) -> None:
        self.tagger = tagger_of(context.artifacts)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if not {TOKENS_COLUMN, TEXT_COLUMN} & set(model_input.columns):
            raise MlflowException(
                f"input needs a '{TOKENS_COLUMN}' column of token lists "
                f"or a '{TEXT_COLUMN}' column of raw text",
                error_code=INVALID_PARAMETER_VALUE,
            )
        limited = in_scoring_server()
        if limited and len(model_input) > MAX_RECORDS:
            raise MlflowException(
                f"{len(model_input):,} records; the limit is {MAX_RECORDS:,} a request",
                error_code=INVALID_PARAMETER_VALUE,
            )
        words, tagged = [], []
        for first, chunk in chunks(model_input, CHUNK_RECORDS):
            records = [
                record_sentences(first + i, record, limited)
                for i, record in enumerate(chunk.to_dict("records"))
            ]
            # One call for every sentence of the chunk's records, so they batch together.
            tags = iter(tag_sentences(self.tagger, [s for sentences in records for s in sentences]))
            for sentences in records:
                words.append([word for sentence in sentences for word in sentence])
                tagged.append([tag for _ in sentences for tag in next(tags)])
        return pd.DataFrame({TOKENS_COLUMN: words, TAGS_COLUMN: tagged})


def checkpoint_artifacts(checkpoints: list[str]) -> dict[str, str]:
    """A model's artifacts: one checkpoint, or an ensemble's members in order."""
    if len(checkpoints) == 1:
        return {CHECKPOINT_ARTIFACT: checkpoints[0]}
    return {MEMBER_ARTIFACT.format(n): path for n, path in enumerate(checkpoints, 1)}


def member_checkpoints(artifacts: dict[str, str]) -> list[str]:
    """The checkpoints of a model's artifacts (`checkpoint_artifacts`), in order."""
    if CHECKPOINT_ARTIFACT in artifacts:
        return [artifacts[CHECKPOINT_ARTIFACT]]
    members = []
    while (name := MEMBER_ARTIFACT.format(len(members) + 1)) in artifacts:
        members.append(artifacts[name])
    if not members:
        raise MlflowException(f"the model holds no tagger checkpoint: {sorted(artifacts)}")
    return members


def tagger_of(artifacts: dict[str, str]) -> LoadedTagger:
    """The tagger a model's artifacts hold: one, or an ensemble of its members."""
    checkpoints = member_checkpoints(artifacts)
    if len(checkpoints) == 1:
        return load_checkpoint(checkpoints[0])
    return load_ensemble(checkpoints)


def chunks(frame: pd.DataFrame, size: int) -> Iterator[tuple[int, pd.DataFrame]]:
    """(index of its first row, rows) for each `size` rows of `frame` in turn."""
    for first in range(0, len(frame), size):
        yield first, frame.iloc[first : first + size]
