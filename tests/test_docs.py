"""The documentation's Python code runs as written: each block of the site's pages in a fresh interpreter, in a
directory of its own; a block marked as a fragment of a larger program at least compiles."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)```", re.S)


def _blocks() -> list[tuple[str, str, bool]]:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for number, match in enumerate(_BLOCK.finditer(page.read_text(encoding="utf-8"))):
            fragment = match.group("before").startswith("<!-- fragment")
            found.append((f"{page.relative_to(DOCS)}#{number}", match.group("code"), fragment))
    return found


BLOCKS = _blocks()


def test_the_pages_have_code_to_run() -> None:
    assert sum(not fragment for _, _, fragment in BLOCKS) >= 3


@pytest.mark.parametrize(("where", "code", "fragment"), BLOCKS, ids=[where for where, _, _ in BLOCKS])
def test_a_code_block_of_the_docs_runs(where: str, code: str, fragment: bool, tmp_path: Path) -> None:
    if fragment:
        compile(code, where, "exec")
        return
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stderr}"
