"""Child process for the crash tests: a writer that may SIGKILL itself at a chosen instant.

Usage: python _crash_writer.py BASE_DIR RUN_ID NAME CALLS KILL_AT WHERE ACK_FILE

Logs ``{NAME}_{i}: i`` for i in range(CALLS) and appends ``i`` to ACK_FILE only after ``add_metrics``
returned.  At call KILL_AT it kills itself with SIGKILL at WHERE (before the rename, it first writes the
path of the temp file it strands to ACK_FILE.stranded):

    before-lock     before add_metrics takes the lock
    in-lock         inside the lock, after reading and merging metrics.toml, before writing anything
    before-rename   inside the lock, after the temp file is written and fsynced, before os.replace
    after-rename    after os.replace, before the directory fsync (which follows the unlock)
    after-return    after add_metrics returned, before the acknowledgement is recorded
    never           runs to the end (the test may still kill it from outside)

The hooks only decide *when* to die; the kill is a real SIGKILL and everything else is the real library.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from ml_manager import MLRun, _atomic, _storage

base_dir, run_id, name, calls, kill_at, where, ack_file = sys.argv[1:8]
armed = False


def die_if(point: str) -> None:
    if armed and where == point:
        os.kill(os.getpid(), signal.SIGKILL)


real_write_toml, real_replace, real_dir_fsync = _storage.write_toml, os.replace, _atomic._fsync_directory


def write_after_maybe_dying(path: Any, document: Any, **options: Any) -> None:
    die_if("in-lock")
    real_write_toml(path, document, **options)


def replace_after_maybe_dying(src: Any, dst: Any) -> None:
    if armed and where == "before-rename":
        # Leave word of the temp file this kill strands, so the test can prove the window was hit.
        with open(f"{ack_file}.stranded", "w") as note:
            note.write(str(src))
    die_if("before-rename")
    real_replace(src, dst)


def dir_fsync_after_maybe_dying(directory: Any) -> None:
    die_if("after-rename")
    real_dir_fsync(directory)


_storage.write_toml = write_after_maybe_dying
os.replace = replace_after_maybe_dying
_atomic._fsync_directory = dir_fsync_after_maybe_dying

run = MLRun.load(run_id, base_dir)
with open(ack_file, "a", buffering=1) as acks:
    for i in range(int(calls)):
        armed = i == int(kill_at)
        die_if("before-lock")
        run.add_metrics({f"{name}_{i}": i})
        die_if("after-return")
        acks.write(f"{i}\n")
