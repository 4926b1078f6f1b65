"""Serving: taggers as MLflow models, logged from code, registered and loaded back
(`registry`), the pyfunc model MLflow serves (`pyfunc`, built by `mlflow_model`), and
tagging in process (`inference`).

`TaggerModel` is named here too: a model logged before the library's folders existed runs
`from postag.serving import TaggerModel` as it loads. It is imported only when asked for:
`inference` must not load MLflow (a trial's worker reads it, and MLflow costs it a second).
"""


def __getattr__(name: str):
    if name == "TaggerModel":
        from postag.serving.pyfunc import TaggerModel

        return TaggerModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
