"""ml_manager: a local-first experiment tracker where every process may log into the same run.

Runs are plain TOML files under ``base_dir/project_name/run_id``; ``MLRun`` writes them lock-safely and
atomically (and logs to Weights & Biases), ``MLProject`` loads a whole project into a pandas DataFrame.
"""

from typing import Any as _Any

from ._forward import ForwarderStats
from ._writer import LogStats
from .errors import (
    AmbiguousRunError,
    CorruptRunFileError,
    FlushError,
    LockTimeoutError,
    MLManagerError,
    MLManagerWarning,
    RunNotFoundError,
)
from .project import MLProject
from .run import MLRun


def __getattr__(name: str) -> _Any:
    # Looked up on first use: importlib.metadata costs more to import than the rest of the package.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("ml_manager")
        except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
            found = "0+unknown"
        globals()["__version__"] = found  # looked up once: every MLRun.create records it
        return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AmbiguousRunError",
    "CorruptRunFileError",
    "FlushError",
    "ForwarderStats",
    "LockTimeoutError",
    "LogStats",
    "MLManagerError",
    "MLManagerWarning",
    "MLProject",
    "MLRun",
    "RunNotFoundError",
    "__version__",
]
