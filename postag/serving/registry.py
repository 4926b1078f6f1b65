"""Taggers as MLflow models: logged from code, registered, loaded back by alias.

The model (`postag/serving/pyfunc.py`) is logged "from code"
(`postag/serving/mlflow_model.py`) with the checkpoint as an artifact: loading runs no
pickled Python, and the weights load with weights_only=True.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import time
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from postag.models.checkpoint import LoadedTagger, load_checkpoint
from postag.serving.names import registered_model_name
from postag.serving.pyfunc import INPUT_EXAMPLE, SIGNATURE, checkpoint_artifacts, member_checkpoints

BEST_ALIAS = "best"
MODEL_ARTIFACT = "model"
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
# The package the model code imports; it travels inside the model (MLflow's code_paths).
PACKAGE_DIR = Path(__file__).parents[1]
CHECKPOINT_SUFFIX = ".pt"  # what `postag train` writes
# Tries of an alias write that lost a race with another writer of the same alias.
ALIAS_WRITE_ATTEMPTS = 3
ALIAS_RETRY_SECONDS = 0.2
REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def log_tagger(
    checkpoint: str | Path | list[Path], params: dict[str, str] | None = None
) -> mlflow.models.model.ModelInfo:
    """Log a checkpoint as this run's model, named `model`; `params` show on its page.
    Several checkpoints are an ensemble's members (postag/models/ensemble.py), one model.

    The model carries the `postag` package itself and names its requirements, so MLflow
    neither guesses them nor refers to a `postag` distribution that no index serves.
    """
    return mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=str(MODEL_CODE),
        artifacts=checkpoint_artifacts(
            [str(path) for path in (checkpoint if isinstance(checkpoint, list) else [checkpoint])]
        ),
        code_paths=[str(PACKAGE_DIR)],
        pip_requirements=model_requirements(),
        signature=SIGNATURE,
        input_example=INPUT_EXAMPLE,
        params=params,
    )


@functools.cache
def model_requirements() -> list[str]:
    """`name==version` for each distribution the model's code imports, as installed here.

    Given rather than left to MLflow: its inference starts a process that imports torch and
    loads the model (7 s a model), and what it found left torch out. Read from the imports
    of the modules the model runs, so a new import cannot be forgotten.
    """
    providers = importlib.metadata.packages_distributions()
    names = {distribution_of(module, providers) for module in third_party_imports(MODEL_CODE)}
    return sorted(f"{name}=={public_version(importlib.metadata.version(name))}" for name in names)


def public_version(version: str) -> str:
    """A version without its local label (PEP 440: `2.13.0+cpu` is `2.13.0`): no public index
    serves a local label, and the machine that installs the model picks its own build (a GPU
    host wants CUDA's torch, not this CPU one)."""
    return version.partition("+")[0]


def third_party_imports(entry: Path) -> set[str]:
    """The top-level modules that `entry` and the package modules it imports, in turn,
    import, less the standard library and the package itself. Modules of the package that
    the model never imports (the raw-text scorer's `udtools`, say) add nothing."""
    package = PACKAGE_DIR.name
    modules: set[str] = set()
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            top = name.partition(".")[0]
            if top == package:
                todo += package_files(name)
            modules.add(top)
    return modules - set(sys.stdlib_module_names) - {package, "__future__"}


def package_files(name: str) -> list[Path]:
    """The package's files that importing `name` runs: each folder's `__init__.py` on the
    way, then the module (`postag.data.dataset` is postag/data/dataset.py); a name that is
    not a module (`postag.serving.TaggerModel`) ends at its folder's `__init__.py`."""
    files, folder = [], PACKAGE_DIR
    for part in name.split(".")[1:]:
        files.append(folder / "__init__.py")
        if (folder / f"{part}.py").is_file():
            files.append(folder / f"{part}.py")
            break
        if not (folder / part).is_dir():
            break
        folder = folder / part
    else:
        files.append(folder / "__init__.py")
    return [path for path in files if path.is_file()]


def imported_modules(path: Path) -> set[str]:
    """The absolute module names one file imports, wherever in the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from postag.data import dataset` imports the module postag.data.dataset
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


# Where a lighter distribution provides the module for a model: MLflow's client without its
# server and UI loads and serves the model (a fresh environment of 83 packages, not 122).
LIGHTER_DISTRIBUTION = {"mlflow": "mlflow-skinny"}


def distribution_of(module: str, providers: dict[str, list[str]]) -> str:
    """The installed distribution that provides `module`: the lighter one where it is
    installed (LIGHTER_DISTRIBUTION), else the one named after it where several do (`mlflow`
    beside `mlflow-tracing`)."""
    candidates = providers.get(module)
    if not candidates:
        raise LookupError(f"no installed distribution provides the module '{module}'")
    lighter = LIGHTER_DISTRIBUTION.get(module)
    if lighter is not None and lighter in candidates:
        return lighter
    named = [name for name in candidates if canonical(name) == canonical(module)]
    return (named or sorted(candidates))[0]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def set_alias(client: mlflow.MlflowClient, name: str, alias: str, version: str | int) -> None:
    """Point registered model `name`'s `alias` at `version`, again if another writer set the
    same alias at the same moment: MLflow's SQL store inserts an alias row without a lock,
    and the loser of such a race gets `UNIQUE constraint failed: registered_model_aliases`
    (seen once in 8 races x 2 runs against a real `mlflow server` on sqlite). The alias
    exists by then, so the second write is an update and goes through."""
    for attempt in range(ALIAS_WRITE_ATTEMPTS):
        try:
            client.set_registered_model_alias(name, alias, version)
            return
        except MlflowException as error:
            if "UNIQUE constraint" not in str(error) or attempt == ALIAS_WRITE_ATTEMPTS - 1:
                raise
            time.sleep(ALIAS_RETRY_SECONDS)


def model_checkpoints(model_uri: str, folder: Path) -> list[Path]:
    """The checkpoint files of a logged model (one, or an ensemble's members), downloaded
    into `folder`."""
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(folder)))
    flavor = mlflow.models.Model.load(local).flavors["python_function"]
    artifacts = {name: str(local / entry["path"]) for name, entry in flavor["artifacts"].items()}
    return [Path(path) for path in member_checkpoints(artifacts)]


def best_model_uri(name: str | None = None) -> str:
    """`best` of registered model `name` (registered_model_name()'s by default)."""
    return f"models:/{registered_model_name(name)}@{BEST_ALIAS}"


class ModelNotFound(LookupError):
    """A model URI that names nothing loadable; `missing` says what: "model", "alias",
    "version" or "files"."""

    def __init__(self, message: str, missing: str):
        super().__init__(message)
        self.missing = missing


def find_version(uri: str) -> ModelVersion | None:
    """The registry version behind a `models:/NAME@ALIAS` or `models:/NAME/N` URI.

    None for other URIs (a run's model, a path); ModelNotFound when the registry lacks it.
    """
    match = REGISTRY_URI.match(uri)
    if not match:
        return None
    name, alias, number = match.group("name", "alias", "version")
    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        raise ModelNotFound(
            f"no registered model '{name}' in {mlflow.get_tracking_uri()} yet", "model"
        ) from None
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, number)
    except MlflowException:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        if alias is not None:
            raise ModelNotFound(
                f"'{name}' has no alias '{alias}' yet (versions: {versions})", "alias"
            ) from None
        raise ModelNotFound(
            f"'{name}' has no version {number} (versions: {versions})", "version"
        ) from None


def load_tagger(uri: str) -> tuple[LoadedTagger, ModelVersion | None]:
    """The tagger behind `uri`, and its registry version where it has one.

    `uri` is an MLflow model URI (`models:/postag-tagger@best`, `runs:/...`) or the path of
    a checkpoint that `postag train` wrote (`runs/seed/best.pt`).
    """
    if uri.endswith(CHECKPOINT_SUFFIX) and "://" not in uri and ":/" not in uri:
        if not Path(uri).is_file():
            raise ModelNotFound(f"no checkpoint file {uri}", "files")
        return load_checkpoint(uri), None
    version = find_version(uri)
    try:
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as error:
        raise ModelNotFound(f"cannot load model {uri}: {error}", "files") from None
    return model.unwrap_python_model().tagger, version
