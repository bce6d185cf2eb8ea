"""The README's Quick Start, as shipped in examples/, runs to completion in an empty folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["offline", None])
def test_quickstart_runs_and_prints_the_search_result(tmp_path: Path, mode: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    if mode is not None:
        env["WANDB_MODE"] = mode
    workdir = tmp_path / "work"
    workdir.mkdir()
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "[Searching for 'accuracy > 0.95']" in out
    search = out.split("[Searching for 'accuracy > 0.95']", 1)[1]
    assert "| BERT" in search
    assert "0.96" in search
    assert "| CNN" not in search.split("[Loading best run")[0]
    assert "Metrics: {'accuracy': 0.96, 'f1_score': 0.95, 'epoch': 5}" in out
    assert len(list((workdir / "checkpoints" / "my-demo-project").iterdir())) == 2
    # Library messages go to stderr; stdout holds only what the example prints.
    assert "wandb:" not in out
    assert "MLManagerWarning" not in out
