"""Taggers as MLflow models: logged from code, registered, loaded back by alias.

The model is logged "from code" (`postag/mlflow_model.py`) with the checkpoint as an
artifact: loading runs no pickled Python, and the weights load with weights_only=True.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array

from postag.checkpoint import LoadedTagger, load_checkpoint
from postag.inference import tag_sentences

REGISTERED_MODEL = "postag-tagger"
BEST_ALIAS = "best"
MODEL_ARTIFACT = "model"
CHECKPOINT_ARTIFACT = "checkpoint"
TOKENS_COLUMN = "tokens"
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
# Input: a DataFrame with a `tokens` column holding one list of tokens per sentence.
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(Array(DataType.string), TOKENS_COLUMN)]),
)


class TaggerModel(PythonModel):
    """pyfunc wrapper: DataFrame with a `tokens` column -> a list of tag lists."""

    def __init__(self) -> None:
        self.tagger: LoadedTagger | None = None

    def load_context(self, context: PythonModelContext) -> None:
        self.tagger = load_checkpoint(context.artifacts[CHECKPOINT_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[list[str]]:
        if TOKENS_COLUMN not in model_input.columns:
            raise ValueError(f"input needs a '{TOKENS_COLUMN}' column of token lists")
        sentences = [list(tokens) for tokens in model_input[TOKENS_COLUMN]]
        return tag_sentences(self.tagger, sentences)


def log_tagger(checkpoint: str | Path) -> mlflow.models.model.ModelInfo:
    """Log a checkpoint as this run's model, named `model`."""
    return mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=str(MODEL_CODE),
        artifacts={CHECKPOINT_ARTIFACT: str(checkpoint)},
        signature=SIGNATURE,
    )


def register_best(model_uri: str, description: str, tags: dict[str, str]) -> str:
    """Register `model_uri` as a new version of postag-tagger and point `best` at it."""
    client = mlflow.MlflowClient()
    version = mlflow.register_model(model_uri, REGISTERED_MODEL, tags=tags)
    client.update_model_version(REGISTERED_MODEL, version.version, description=description)
    client.set_registered_model_alias(REGISTERED_MODEL, BEST_ALIAS, version.version)
    return version.version


def best_model_uri() -> str:
    return f"models:/{REGISTERED_MODEL}@{BEST_ALIAS}"
