"""The registered model's name, apart from the registry's code: a trial's worker reads the
default (through the sweep's settings) and must not load MLflow to do it."""

from __future__ import annotations

import os

# Where neither the experiment file (sweep.registered_model) nor $POSTAG_REGISTERED_MODEL
# names another: projects sharing one registry take a name each.
REGISTERED_MODEL = "postag-tagger"
REGISTERED_MODEL_ENV = "POSTAG_REGISTERED_MODEL"


def registered_model_name(configured: str | None = None) -> str:
    """The registered model's name: `configured` (an experiment file's), else
    $POSTAG_REGISTERED_MODEL, else postag-tagger."""
    return configured or os.environ.get(REGISTERED_MODEL_ENV) or REGISTERED_MODEL
