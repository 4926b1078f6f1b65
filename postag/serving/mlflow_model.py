"""The MLflow model-from-code entry: MLflow runs this file to build the pyfunc model."""

import mlflow

from postag.serving.pyfunc import TaggerModel

mlflow.models.set_model(TaggerModel())
