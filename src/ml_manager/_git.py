"""What git says about the working directory: commit, branch, dirty flag.  Never raises.

One ``git status --porcelain=v2 --branch`` answers all three, so a run pays for one subprocess, not one per
fact.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

_TIMEOUT = 10.0


def git_info(cwd: str | None = None) -> dict[str, Any]:
    """``git_commit``, ``git_dirty`` and ``git_branch`` of the repository around ``cwd``.

    ``git_dirty`` is true when a tracked file differs from the commit (untracked files do not count).  Keys are
    absent when there is no repository, no commit yet, a detached HEAD (branch only), or no git binary; the
    caller records what is known and carries on.
    """
    return start_git_info(cwd)()


def start_git_info(cwd: str | None = None) -> Callable[[], dict[str, Any]]:
    """Start asking git now; the function returned waits for the answer and gives what :func:`git_info` gives.

    Lets the caller do other work (start wandb) while git runs.
    """
    import subprocess  # imported on first use: only MLRun.create asks git

    try:
        process = subprocess.Popen(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            cwd=cwd if cwd is not None else os.getcwd(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            # No prompt for credentials, no lock taken on the index by a status refresh.
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return dict

    def collect() -> dict[str, Any]:
        try:
            stdout, _ = process.communicate(timeout=_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            return {}
        return _parse(process.returncode, stdout)

    return collect


def _parse(returncode: int, stdout: str) -> dict[str, Any]:
    if returncode != 0:
        return {}
    info: dict[str, Any] = {}
    dirty = False
    for line in stdout.splitlines():
        if line.startswith("# branch.oid "):
            commit = line.removeprefix("# branch.oid ").strip()
            if commit != "(initial)":
                info["git_commit"] = commit
        elif line.startswith("# branch.head "):
            branch = line.removeprefix("# branch.head ").strip()
            if branch != "(detached)":
                info["git_branch"] = branch
        elif line and not line.startswith("#"):
            dirty = True
    if "git_commit" not in info:
        return {}
    info["git_dirty"] = dirty
    return {key: info[key] for key in ("git_commit", "git_dirty", "git_branch") if key in info}
