"""What the multi-node tests run on each node: one writer, creator or reader process.

Usage::

    _node_child.py create BASE_DIR PROJECT [LOCK]        prints the new run's directory
    _node_child.py kind RUN_DIR                          prints the lock kind a handle joining the run uses
    _node_child.py write RUN_DIR NAME COUNT MODE         COUNT unique keys NAME-i, by add_metrics or log
    _node_child.py hold RUN_DIR NAME COUNT               COUNT keys by add_metrics (each printed once
                                                         acknowledged), then holds the run's lock: "held"
    _node_child.py read RUN_DIR COUNT                    reads the run's files COUNT times; prints the key
                                                         counts seen; fails on any error
"""

from __future__ import annotations

import sys
from pathlib import Path

from ml_manager import MLRun
from ml_manager._locking import run_lock
from ml_manager._storage import RunPaths, read_run_files


def main(argv: list[str]) -> None:
    command, *rest = argv
    if command == "create":
        base_dir, project, *lock = rest
        run = MLRun.create({"nodes": 2}, base_dir, project, mode="disabled", **({"lock": lock[0]} if lock else {}))
        print(run.run_dir)
        run._finished = True  # stays "running": the writers are still to come
    elif command == "kind":
        print(MLRun.attach(rest[0]).lock)
    elif command == "write":
        run_dir, name, count, mode = rest
        run = MLRun.attach(run_dir)
        for i in range(int(count)):
            if mode == "log":
                run.log({f"{name}-{i}": i}, step=i)
            else:
                run.add_metrics({f"{name}-{i}": i})
        run.flush()
        run._finished = True
    elif command == "hold":
        run_dir, name, count = rest
        run = MLRun.attach(run_dir)
        for i in range(int(count)):
            run.add_metrics({f"{name}-{i}": i})
            print(f"{name}-{i}", flush=True)
        with run_lock(RunPaths(Path(run_dir)).lock(run.lock), 60, run.lock):
            print("held", flush=True)
            sys.stdin.read()
    elif command == "read":
        run_dir, count = rest
        seen = []
        for _ in range(int(count)):
            _, metrics, _ = read_run_files(run_dir)
            seen.append(len(metrics))
        print(" ".join(map(str, seen)))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
