"""postag: part-of-speech taggers as a library, by concern:

- `data/`: treebanks read, fetched and checked (`readers`, `sources`, `tagsets`), raw text
  tokenized (`tokenize`), prepared for training (`dataset`) and batched (`batching`).
- `models/`: the tagger (`tagger`), its checkpoints (`checkpoint`), seeds as one model
  (`ensemble`).
- `training/`: the training loop (`trainer`), what it optimises (`objective`), its progress
  and the resources a process uses (`progress`, `resources`).
- `evaluation/`: scores (`metrics`), a tagger on a test file (`scoring`) or on raw text
  (`raw`), and what a model costs to run (`cost`).
- `serving/`: taggers as MLflow models (`registry`, `pyfunc`, `mlflow_model`) and tagging
  in process (`inference`).
- `config.py`: the typed run config every part reads; `files.py`: atomic writes.

Orchestration (Ray Tune, MLflow runs, the command line) lives in `pipelines/`, which this
package never imports.
"""
