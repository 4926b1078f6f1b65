"""The MLflow model-from-code entry: MLflow runs this file to build the pyfunc model."""

import mlflow

from postag.registry import TaggerModel

mlflow.models.set_model(TaggerModel())
