"""What every training job the integration tests run in a fresh interpreter sets up first.

Forking ranks out of pytest's own process would copy its threads (wandb's among them, from earlier tests) in
whatever state they are in, which can hang the ranks: the jobs run in interpreters of their own.  Warnings
are errors there as in the test suite.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def strict_warnings() -> None:
    warnings.filterwarnings("error")
    warnings.filterwarnings("ignore", ".*LeafSpec.*", FutureWarning)  # lightning 2.6 on torch 2.13
    # A second fit into the same run saves beside the first one's checkpoints, as it should.
    warnings.filterwarnings("ignore", "Checkpoint directory .* exists and is not empty", UserWarning)
    for package in ("wandb", "google", "pydantic"):
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=f"{package}.*")
    # accelerate warns when these are unset on CPU; the ranks share two cores anyway.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
