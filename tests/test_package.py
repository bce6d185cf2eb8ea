"""The package's front door: what it exports and what importing it costs."""

from __future__ import annotations

import subprocess
import sys

import ml_manager
from ml_manager import errors


def test_all_lists_exactly_the_public_names() -> None:
    submodules = {"errors", "project", "run", "integrations", "cli"}  # attributes once imported, not exports
    public = {name for name in vars(ml_manager) if not name.startswith("_")} - submodules
    assert sorted(ml_manager.__all__) == ml_manager.__all__
    assert set(ml_manager.__all__) - {"__version__"} == public


def test_errors_module_all_is_sorted_and_complete() -> None:
    exported = {
        name for name, value in vars(errors).items() if isinstance(value, type) and value.__module__ == errors.__name__
    }
    assert errors.__all__ == sorted(exported)


# What `import ml_manager` must leave for first use: wandb and pandas, and what only a writer (filelock, the
# TOML writer, subprocess for git, orjson for the history) or a reader (the TOML parser, json) needs.
DEFERRED = (
    "wandb",
    "pandas",
    "numpy",
    "filelock",
    "rtoml",
    "tomli_w",
    "tomllib",
    "orjson",
    "logging",
    "subprocess",
    "socket",
    "json",
)


def test_import_defers_what_it_does_not_need_yet() -> None:
    code = f"import sys, ml_manager; print(sorted(m for m in {DEFERRED!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


FRAMEWORKS = ("torch", "lightning", "pytorch_lightning", "transformers", "accelerate")


def test_importing_the_package_and_its_integrations_imports_no_framework() -> None:
    code = (
        "import sys, ml_manager, ml_manager.integrations, ml_manager.integrations._common; "
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    assert ml_manager.__version__ == version("ml_manager")
