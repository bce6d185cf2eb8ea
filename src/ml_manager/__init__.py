"""ml_manager: a local-first experiment tracker where every process may log into the same run.

Runs are plain TOML files under ``base_dir/project_name/run_id``; ``MLRun`` writes them lock-safely and
atomically (and logs to Weights & Biases), ``MLProject`` loads a whole project into a pandas DataFrame.
"""

import importlib.metadata as _metadata

from ._forward import ForwarderStats
from .errors import (
    AmbiguousRunError,
    CorruptRunFileError,
    LockTimeoutError,
    MLManagerError,
    MLManagerWarning,
    RunNotFoundError,
)
from .project import MLProject
from .run import MLRun

try:
    __version__ = _metadata.version("ml_manager")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AmbiguousRunError",
    "CorruptRunFileError",
    "ForwarderStats",
    "LockTimeoutError",
    "MLManagerError",
    "MLManagerWarning",
    "MLProject",
    "MLRun",
    "RunNotFoundError",
    "__version__",
]
