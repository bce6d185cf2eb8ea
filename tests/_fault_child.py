"""Child process for the fault-injection tests: one add_metrics call with one I/O step made to fail.

Usage: python _fault_child.py BASE_DIR RUN_ID FAULT
Prints one JSON line describing the exception the caller saw (or {"ok": true}).  The fault is a stub that
raises where the real call would run; everything else is the real library on the real filesystem.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import sys
from typing import Any

from ml_manager import MLRun

base_dir, run_id, fault = sys.argv[1:4]
real_write, real_fsync, real_replace = os.write, os.fsync, os.replace


def write_enospc(fd: int, data: Any) -> int:
    real_write(fd, bytes(data[:5]))  # part of the data reaches the temp file first
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fsync_eio(fd: int) -> None:
    raise OSError(errno.EIO, os.strerror(errno.EIO))


def replace_eacces(src: Any, dst: Any) -> None:
    raise OSError(errno.EACCES, os.strerror(errno.EACCES), src, None, dst)


if fault == "write-enospc":
    os.write = write_enospc
elif fault == "fsync-eio":
    os.fsync = fsync_eio
elif fault == "replace-eacces":
    os.replace = replace_eacces
elif fault == "rlimit-fsize":
    # A real limit from the kernel: files this process writes may not exceed 200 bytes.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
elif fault != "none":
    raise SystemExit(f"unknown fault {fault}")

run = MLRun.load(run_id, base_dir, lock_timeout=float(os.environ.get("FAULT_LOCK_TIMEOUT", "30")))
try:
    run.add_metrics({"accuracy": 0.99, "note": "x" * 500})
except Exception as exc:
    print(
        json.dumps(
            {
                "type": type(exc).__name__,
                "classes": [cls.__name__ for cls in type(exc).__mro__],
                "errno": getattr(exc, "errno", None),
                "filename": getattr(exc, "filename", None) or getattr(exc, "lock_file", None),
                "message": str(exc),
            }
        )
    )
else:
    print(json.dumps({"ok": True}))
