from pathlib import Path

import pytest

from postag.files import replaced_atomically, write_text_atomically


def test_a_write_that_fails_half_way_leaves_the_old_file_whole(tmp_path: Path):
    path = tmp_path / "state.json"
    write_text_atomically(path, '{"finished": false}')
    with pytest.raises(RuntimeError), replaced_atomically(path) as temporary:
        temporary.write_text('{"finis')
        raise RuntimeError("killed mid-write")
    assert path.read_text() == '{"finished": false}'
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left


def test_a_write_that_succeeds_replaces_the_file(tmp_path: Path):
    path = tmp_path / "deep" / "best.pt"
    write_text_atomically(path, "one")
    write_text_atomically(path, "two")
    assert path.read_text() == "two"
