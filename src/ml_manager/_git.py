"""What git says about the working directory: commit, branch, dirty flag.  Never raises."""

from __future__ import annotations

import os
import subprocess
from typing import Any

_TIMEOUT = 10.0


def _git(*args: str, cwd: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            stdin=subprocess.DEVNULL,
            # No pager, no prompt for credentials, no lock taken on the index by a status refresh.
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"},
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_info(cwd: str | None = None) -> dict[str, Any]:
    """``git_commit``, ``git_dirty`` and ``git_branch`` of the repository around ``cwd``.

    Keys are absent when there is no repository, no commit yet, a detached HEAD (branch only), or no git
    binary; the caller records what is known and carries on.
    """
    where = cwd if cwd is not None else os.getcwd()
    commit = _git("rev-parse", "--verify", "-q", "HEAD", cwd=where)
    if not commit:
        return {}
    info: dict[str, Any] = {"git_commit": commit}
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=where)
    if status is not None:
        info["git_dirty"] = bool(status)
    branch = _git("symbolic-ref", "-q", "--short", "HEAD", cwd=where)
    if branch:
        info["git_branch"] = branch
    return info
