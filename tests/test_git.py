"""git facts for _meta: recorded when there is a repository, absent (never an error) otherwise."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from ml_manager._git import git_info

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def _repo(path: Path) -> list[str]:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(path)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    (path / "train.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    return git


def test_commit_branch_and_clean_tree(tmp_path: Path) -> None:
    git = _repo(tmp_path)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert git_info(str(tmp_path)) == {"git_commit": head, "git_branch": "main", "git_dirty": False}


def test_a_modified_tracked_file_makes_the_tree_dirty(tmp_path: Path) -> None:
    _repo(tmp_path)
    (tmp_path / "train.py").write_text("x = 2\n")
    assert git_info(str(tmp_path))["git_dirty"] is True


def test_detached_head_has_no_branch(tmp_path: Path) -> None:
    git = _repo(tmp_path)
    subprocess.run([*git, "checkout", "-q", "--detach"], check=True)
    info = git_info(str(tmp_path))
    assert "git_commit" in info
    assert "git_branch" not in info


def test_outside_a_repository_nothing_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_info(str(tmp_path)) == {}


def test_a_repository_without_commits_records_nothing(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert git_info(str(tmp_path)) == {}


def test_without_a_git_binary_nothing_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _repo(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert git_info(str(tmp_path)) == {}
