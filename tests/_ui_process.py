"""``ml-manager ui`` in a process of its own, on a free port, until the block ends."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def ui_process(*where: str) -> Iterator[str]:
    """``ml-manager ui *where`` on a free port; yields its URL once it answers, stops it afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "ml_manager", "ui", *where, "--port", str(port)]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as server:
        try:
            deadline = time.monotonic() + 60
            while True:  # until it answers (or dies): a condition, not a guess
                try:
                    with urllib.request.urlopen(url + "api/runs", timeout=5):
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        said = server.stderr.read() if server.stderr else ""
                        raise AssertionError(f"the server did not start: {said}") from None
                    time.sleep(0.05)
            yield url
        finally:
            server.terminate()
            server.communicate(timeout=30)
