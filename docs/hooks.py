"""Build hooks: the command's help, captured from the command itself when the site is built."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

_MARKER = re.compile(r"<!-- help: (?P<args>[a-z -]*) -->")


def _help(args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ml_manager", *args.split(), "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    return f"```text\n$ ml-manager {args} --help\n{done.stdout.rstrip()}\n```".replace("  --help", " --help")


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace each ``<!-- help: ls -->`` with what ``ml-manager ls --help`` prints."""
    return _MARKER.sub(lambda match: _help(match.group("args").strip()), markdown)
