"""The code a run records: this checkout's commit, and whether its tree held changes."""

from __future__ import annotations

import subprocess

import pytest

from pipelines import provenance


@pytest.fixture
def fresh_cache():
    provenance.code_tags.cache_clear()
    yield
    provenance.code_tags.cache_clear()


def test_the_commit_is_this_checkout_s_head_and_the_flag_follows_git_status(fresh_cache):
    root = provenance.PROJECT_DIR

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    tags = provenance.code_tags()
    assert tags["mlflow.source.git.commit"] == git("rev-parse", "HEAD")
    assert tags["git_dirty"] == ("true" if git("status", "--porcelain") else "false")


def test_a_tree_with_a_change_is_dirty_and_a_copy_without_git_claims_no_commit(
    fresh_cache, tmp_path, monkeypatch
):
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (
        ["init", "-q"],
        ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    monkeypatch.setattr(provenance, "PROJECT_DIR", repo)
    assert provenance.code_tags()["git_dirty"] == "false"
    (repo / "edited.py").write_text("x = 1\n")
    provenance.code_tags.cache_clear()
    assert provenance.code_tags()["git_dirty"] == "true"
    monkeypatch.setattr(provenance, "PROJECT_DIR", tmp_path / "not-a-checkout")
    (tmp_path / "not-a-checkout").mkdir()
    provenance.code_tags.cache_clear()
    assert provenance.code_tags() == {}
