"""The training frameworks the integration tests need: skipped with the reason where one is missing, except in
CI, which sets ``ML_MANAGER_REQUIRE_FRAMEWORKS`` and installs them: there a missing one fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType

_INSTALL = "pip install torch==2.13.0 lightning transformers accelerate (torch first: its CPU build)"


def need(module: str) -> ModuleType:
    """Import ``module`` for the calling test module, or skip it (fail in CI) naming what to install."""
    try:
        return pytest.importorskip(module, reason=f"{module} is not installed ({_INSTALL})")
    except pytest.skip.Exception as exc:
        if os.environ.get("ML_MANAGER_REQUIRE_FRAMEWORKS"):
            pytest.fail(f"the integration tests must run here: {exc}", pytrace=False)
        raise


def run_job(script: str, *args: str, fails: bool = False) -> str:
    """Run one of the tests' training jobs (``tests/_*_child.py``) in a fresh interpreter; returns its stdout.

    A job that should ``fail`` must have died of the failing training step the jobs inject.
    """
    here = Path(__file__).resolve().parent
    done = subprocess.run(
        [sys.executable, str(here / script), *args], capture_output=True, text=True, timeout=240, check=False, cwd=here
    )
    if fails:
        assert done.returncode != 0
        assert "a training step that fails" in done.stderr, done.stderr[-4000:]
    else:
        assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout
