"""Child process for the queue tests: take a run lock, note the turn, let go.

Usage: python _queue_child.py LOCK_FILE NAME ORDER_FILE TIMEOUT

Inside the lock it appends NAME to ORDER_FILE.  Exit code 0 once done, 3 on a lock timeout.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ml_manager import LockTimeoutError
from ml_manager._locking import run_lock

lock_file, name, order_file, timeout = sys.argv[1:5]
try:
    with run_lock(Path(lock_file), float(timeout)), open(order_file, "a") as order:
        order.write(name + "\n")
except LockTimeoutError:
    sys.exit(3)
