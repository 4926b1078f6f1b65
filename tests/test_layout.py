"""Architecture rules: the library stands alone, and every experiment file validates."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.experiment import read_experiment, run_config_from
from pipelines.sweep.setup.job import load_sweep
from postag.training.objective import VALIDATION_METRICS

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "experiments").rglob("*.yaml"))


def test_importing_postag_loads_neither_ray_nor_pipelines():
    code = (
        "import sys, postag, postag.training.trainer, postag.models.checkpoint,"
        " postag.data.dataset;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'pipelines')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_experiment_files_are_found():
    assert len(EXPERIMENTS) >= 1


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_experiment_file_validates_and_says_how_to_run_it(path):
    assert path.read_text().startswith("#"), "experiment files open with a comment on their use"
    values = read_experiment(path, [])
    run_config_from(values, path)
    if "sweep" in values:
        load_sweep(path, [])


def test_the_sweeps_the_makefile_picks_hold_the_deep_baseline():
    for name in ("seed.yaml", "cpu.yaml", "search.yaml"):
        _, _, sweep = load_sweep(ROOT / "experiments" / name, [])
        assert (sweep.baseline["model.num_layers"], sweep.baseline["model.hidden_size"]) == (
            40,
            256,
        )


@pytest.mark.parametrize(
    "module", ["pipelines.commands.tag", "pipelines.commands.evaluate", "pipelines.tracking"]
)
def test_tagging_and_evaluating_load_no_ray(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('ray')))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# A reader holds a function in mind at about this length; longer ones are split. A module
# is as long as its concern: where one ends is the folders' and the imports' business below.
MAX_FUNCTION_LINES = 50
SOURCES = sorted([*(ROOT / "postag").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py")])


# Where an objective's metric may be named: where the trainer logs it, and the objective's
# own module. Everything else asks an Objective (a sweep's `primary`, a run's
# train.objective), so a new objective metric touches the trainer and postag/training/objective.py.
METRIC_NAMED_IN = {"postag/training/trainer.py", "postag/training/objective.py"}


def test_the_objective_metrics_are_named_only_where_logged_and_where_defined():
    named = []
    for path in SOURCES:
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            metric = isinstance(node, ast.Constant) and node.value in VALIDATION_METRICS
            if metric and where not in METRIC_NAMED_IN:
                named.append(f"{where}:{node.lineno} {node.value!r}")
    assert named == []


def test_no_function_is_longer_than_a_reader_holds_in_mind():
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == []


# The import graph ------------------------------------------------------------------------


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> set[str]:
    """The project modules a file imports, anywhere in it (under `if TYPE_CHECKING:` too:
    a reader follows those arrows as well)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.split(".")[0] in ("postag", "pipelines")}


def import_graph() -> dict[str, set[str]]:
    """Each project module and the project modules it imports."""
    modules = {module_name(path): path for path in SOURCES}
    return {
        name: {found for found in project_imports(path) if found in modules and found != name}
        for name, path in modules.items()
    }


def test_no_module_imports_itself_round_a_circle():
    graph = import_graph()
    circles = []

    def visit(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in trail:
                circles.append(" -> ".join(trail[trail.index(nxt) :] + [nxt]))
            elif nxt not in done:
                visit(nxt, [*trail, nxt])
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    assert circles == []


# pipelines/sweep/'s folders, each importing only those it builds on: the set-up and the
# life import no stage, and nothing imports the driver but its command line.
SWEEP_BUILDS_ON = {
    "setup": set(),
    "lifecycle": {"setup"},
    "trial": {"setup"},
    "stages": {"setup", "lifecycle", "trial"},
    "end": {"setup", "lifecycle", "trial", "stages"},
    "driver": {"setup", "lifecycle", "trial", "stages", "end"},
    "__main__": {"driver"},
}


def sweep_part(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if parts[:2] == ["pipelines", "sweep"] and len(parts) > 2 else None


def test_the_sweeps_folders_import_only_the_folders_they_build_on():
    assert {sweep_part(m) for m in import_graph()} - {None} == set(SWEEP_BUILDS_ON)
    wrong = [
        f"{module} imports {found}"
        for module, imported in import_graph().items()
        if (part := sweep_part(module)) is not None
        for found in imported
        if (other := sweep_part(found)) not in (None, part) and other not in SWEEP_BUILDS_ON[part]
    ]
    assert wrong == []


def test_only_the_benches_import_the_benches_and_the_library_imports_no_pipeline():
    wrong = [
        f"{module} imports {found}"
        for module, imported in import_graph().items()
        for found in imported
        if (found.startswith("pipelines.bench") and not module.startswith("pipelines.bench"))
        or (module.startswith("postag") and found.startswith("pipelines"))
    ]
    assert wrong == []


# The names MLflow stores ----------------------------------------------------------------

NAMES = ROOT / "pipelines" / "names.py"
# Calls whose string argument at this position names a tag, metric or param.
NAME_ARGUMENT = {
    "set_tag": (0, 1),
    "set_tags": (),
    "log_metric": (0, 1),
    "log_param": (0, 1),
    "set_model_version_tag": (2,),
    "RunTag": (0,),
    "Param": (0,),
    "Metric": (0,),
}


def tag_names() -> set[str]:
    """The tag names pipelines/names.py defines (its `..._TAG`s)."""
    tree = ast.parse(NAMES.read_text())
    return {
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and node.targets[0].id.endswith("_TAG")
        and isinstance(node.value, ast.Constant)
    }


def spelled_names(tree: ast.AST) -> list[tuple[int, str]]:
    """String literals where a tag, metric or param name goes: a call's name argument, a
    key of a `tags=` dict, a `.tags.get(...)` or `.tags[...]`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            places = [node.args[i] for i in NAME_ARGUMENT.get(name, ()) if i < len(node.args)]
            if name == "get" and getattr(node.func.value, "attr", "") == "tags":
                places += node.args[:1]
            for keyword in node.keywords:
                if keyword.arg == "tags" and isinstance(keyword.value, ast.Dict):
                    places += keyword.value.keys
            found += [(node.lineno, place) for place in places]
        elif isinstance(node, ast.Subscript) and getattr(node.value, "attr", "") == "tags":
            found.append((node.lineno, node.slice))
    return [
        (line, place.value)
        for line, place in found
        if isinstance(place, ast.Constant) and isinstance(place.value, str)
    ]


def test_every_name_mlflow_stores_is_spelled_only_in_its_home():
    tags = tag_names()
    spelled = []
    for path in (ROOT / "pipelines").rglob("*.py"):
        if path == NAMES:
            continue
        where = path.relative_to(ROOT)
        tree = ast.parse(path.read_text())
        spelled += [f"{where}:{line} {value!r}" for line, value in spelled_names(tree)]
        # A tag name spelled anywhere else, as any string: only the distinctive ones (a word
        # such as "sweep" or "data" is also a YAML section's or a variable's).
        spelled += [
            f"{where}:{node.lineno} {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and node.value in tags
            and ("_" in node.value or "." in node.value)
        ]
    assert sorted(set(spelled)) == []


def test_the_names_guard_finds_a_tag_spelled_out():
    tree = ast.parse('client.set_tag(run_id, "abandoned", why)\nrun.tags.get("seeds")')
    assert [value for _, value in spelled_names(tree)] == ["abandoned", "seeds"]


def test_loading_the_tests_shared_fixtures_loads_no_ray():
    """A test that needs no sweep pays for no Ray: conftest and helpers import none."""
    code = (
        "import sys, tests.conftest; print(sorted(m for m in sys.modules if m.startswith('ray')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


def test_the_library_gives_no_advice_about_orchestration_commands():
    for path in (ROOT / "postag").glob("*.py"):
        assert "make " not in path.read_text(), path
