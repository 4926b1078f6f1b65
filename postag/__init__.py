"""postag: part-of-speech taggers as a library (data, model, training, metrics).

Orchestration (Ray Tune, MLflow runs, the command line) lives in `pipelines/`, which this
package never imports.
"""
