"""The offline bundle for a GPU node without network: which pins travel, in one part or in
parts of a size the user gives, each wheel whole and checked once its pieces are joined
there."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import zipfile

import pytest

from pipelines.bench.gpu import bundle as offline_bundle
from pipelines.bench.gpu.bundle import install, join_wheels, pack, provided, wanted


def test_postag_and_its_test_runner_travel_at_the_locks_versions_less_the_nodes_torch(
    tmp_path,
):
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "# a comment\nmlflow==3.17.2\ntorch==2.13.0\nnvidia-cudnn-cu12==9.1\n"
        "ray==2.60.0 ; python_version >= '3.10'\npytest==9.2.0\npytest-timeout==2.4.0\n"
    )
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["torch==2.13.0", "ray[tune]==2.60.0", "mlflow[auth]==3.17.2"]\n'
    )
    assert wanted(pyproject, lock) == [
        "ray[tune]==2.60.0",
        "mlflow[auth]==3.17.2",
        "pytest==9.2.0",
        "pytest-timeout==2.4.0",
    ]
    assert provided("torch") and provided("nvidia-cudnn-cu12") and provided("Triton")
    assert not provided("mlflow") and not provided("pyarrow")
    everything = wanted(offline_bundle.PROJECT / "pyproject.toml", offline_bundle.LOCK)
    assert not [pin for pin in everything if pin.startswith("torch")]
    assert [pin for pin in everything if pin.startswith("pyarrow==")]


def fake_wheels(tmp_path):
    """Three fake wheels, one of 1,700 bytes, and an EWT of 100."""
    wheels = tmp_path / "download"
    wheels.mkdir()
    sizes = {"big-1.0-py3-none-any.whl": 1700, "a-1.0-py3-none-any.whl": 300, "b-1.0.whl": 600}
    for name, size in sizes.items():
        (wheels / name).write_bytes(os.urandom(size))
    ewt = tmp_path / "ewt"
    ewt.mkdir()
    (ewt / "dev.conllu").write_bytes(b"x" * 100)
    return sorted(wheels.glob("*.whl")), ewt


@pytest.fixture
def bundled(tmp_path):
    """The fake wheels in parts of 1,000 bytes: the large one in pieces."""
    wheels, ewt = fake_wheels(tmp_path)
    folders = pack(wheels, ewt, tmp_path / "parts", part_bytes=1000)
    return tmp_path / "parts", folders, tmp_path / "download"


def test_by_default_the_bundle_is_one_part_and_a_part_too_small_is_refused(tmp_path):
    wheels, ewt = fake_wheels(tmp_path)
    (folder,) = pack(wheels, ewt, tmp_path / "parts")
    assert sorted(p.name for p in (folder / "wheels").iterdir()) == [w.name for w in wheels]
    with pytest.raises(SystemExit, match="a part of 0 MiB cannot hold EWT"):
        pack(wheels, ewt, tmp_path / "parts", part_bytes=100)


def test_parts_hold_no_more_than_the_size_given_and_join_back_whole(bundled):
    parts, folders, originals = bundled
    for folder in folders:
        assert sum(p.stat().st_size for p in (folder / "wheels").iterdir()) <= 1000
    assert (folders[0] / "ewt" / "dev.conllu").is_file()
    # The large wheel went in pieces.
    assert not any(p.name == "big-1.0-py3-none-any.whl" for p in parts.glob("part*/wheels/*"))
    joined = join_wheels(parts)
    assert sorted(p.name for p in joined) == sorted(p.name for p in originals.iterdir())
    for wheel in joined:
        assert wheel.read_bytes() == (originals / wheel.name).read_bytes()


def test_a_part_left_behind_or_damaged_is_said_before_anything_installs(bundled):
    parts, folders, _ = bundled
    piece = next(parts.glob("part*/wheels/big-1.0-py3-none-any.whl.01"))
    piece.write_bytes(b"damaged")
    with pytest.raises(SystemExit, match="big-1.0-py3-none-any.whl does not match its sha256"):
        join_wheels(parts)
    last = folders[-1]
    last.rename(last.with_name("elsewhere"))
    with pytest.raises(SystemExit, match=f"{last.name} not in .*: copy every part there first"):
        join_wheels(parts)


def a_wheel(folder, name: str, source: str):
    """A pure-Python wheel of one module, `name`, written as pip expects one."""
    path = folder / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": source,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{file},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).decode().rstrip('=')},{len(text.encode())}"
        for file, text in files.items()
    ]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(path, "w") as archive:
        for file, text in files.items():
            archive.writestr(file, text)
    return path


def test_installed_there_it_imports_the_bundle_postag_and_the_installers_own_torch(tmp_path):
    # A node's torch often lives in a virtual environment of its own, as this suite's .venv
    # holds torch: the environment made from it must still see that torch.
    wheels = tmp_path / "download"
    wheels.mkdir()
    bundled = a_wheel(wheels, "bundled_module", "ORIGIN = 'bundle'\n")
    ewt = tmp_path / "ewt"
    ewt.mkdir()
    (ewt / "dev.conllu").write_text("# sent_id = 1\n")
    pack([bundled], ewt, tmp_path / "parts")
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(offline_bundle.PROJECT / "pyproject.toml", project / "pyproject.toml")
    for package in ("postag", "pipelines"):
        shutil.copytree(
            offline_bundle.PROJECT / package,
            project / package,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    environment = install(tmp_path / "parts", project)
    code = "import bundled_module, torch, postag; print(bundled_module.ORIGIN, postag.__file__)"
    seen = subprocess.run(
        [environment / "bin" / "python", "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.split() == ["bundle", str(project / "postag" / "__init__.py")]
    assert (environment / ".installed-stamp").is_file()
