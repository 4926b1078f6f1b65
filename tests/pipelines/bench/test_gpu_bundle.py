"""The GPU machine's packages: which pins travel, in parts a call can carry, each wheel
whole and checked once its pieces are joined there."""

from __future__ import annotations

import os

import pytest

from pipelines.bench import gpu_bundle
from pipelines.bench.gpu_bundle import join_wheels, pack, provided, wanted


def test_postag_and_its_test_runner_travel_at_the_locks_versions_less_what_the_gpu_has(
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
    assert provided("torch") and provided("nvidia-cudnn-cu12") and provided("PyArrow")
    assert not provided("mlflow")
    everything = wanted(gpu_bundle.PROJECT / "pyproject.toml", gpu_bundle.LOCK)
    assert not [pin for pin in everything if pin.startswith(("torch", "pyarrow"))]


@pytest.fixture
def bundled(tmp_path, ewt_slice, monkeypatch):
    """Three fake wheels, one larger than half a part, in parts of 1,000 bytes."""
    monkeypatch.setattr(gpu_bundle, "PART_BYTES", 1000)
    wheels = tmp_path / "download"
    wheels.mkdir()
    sizes = {"big-1.0-py3-none-any.whl": 1700, "a-1.0-py3-none-any.whl": 300, "b-1.0.whl": 600}
    for name, size in sizes.items():
        (wheels / name).write_bytes(os.urandom(size))
    ewt = tmp_path / "ewt"
    ewt.mkdir()
    (ewt / "dev.conllu").write_bytes(b"x" * 100)
    folders = pack(sorted(wheels.glob("*.whl")), ewt, tmp_path / "parts")
    return tmp_path / "parts", folders, wheels


def test_parts_hold_no_more_than_a_call_carries_and_join_back_whole(bundled):
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
    with pytest.raises(SystemExit, match=f"{last.name} not here: carry each part first"):
        join_wheels(parts)
