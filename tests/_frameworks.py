"""The training frameworks the integration tests need: skipped with the reason where one is missing, except in
CI, which sets ``ML_MANAGER_REQUIRE_FRAMEWORKS`` and installs them: there a missing one fails."""

from __future__ import annotations

import os
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
