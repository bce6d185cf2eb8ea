"""Child processes for the per-step logging tests: log records, then end in one of the ways a process ends.

Usage: python _log_child.py RUN_DIR HOW [COUNT]

Nothing here calls ``flush`` or ``finish`` unless HOW says so, and the flush interval is an hour: whatever
reaches the disk was written by the exit hooks.  Each process logs COUNT records ``{"<name>": step}`` with
steps 0..COUNT-1, where <name> says which process logged it.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import sys

from ml_manager import MLRun

HOUR = 3600.0


def log_records(run_dir: str, name: str, count: int) -> str:
    run = MLRun.attach(run_dir, flush_interval=HOUR)
    for step in range(count):
        run.log({name: step}, step=step)
    return name


def _in_child(run_dir: str, method: str, count: int) -> None:
    process = multiprocessing.get_context(method).Process(target=log_records, args=(run_dir, method, count))
    process.start()
    process.join()
    assert process.exitcode == 0, process.exitcode


def _in_pool(run_dir: str, method: str, count: int) -> None:
    context = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        names = [f"pool-{method}-{n}" for n in range(4)]
        assert list(pool.map(log_records, [run_dir] * 4, names, [count] * 4)) == names


def _killed_while_logging(run_dir: str) -> None:
    """Log without end, flushing now and then; report each flush; the test kills this process."""
    run = MLRun.attach(run_dir, flush_interval=0.01)
    step = 0
    while True:
        run.log({"killed": step, "padding": "x" * 100}, step=step)
        step += 1
        if step % 500 == 0:
            run.flush()
            print(f"flushed {step}", flush=True)


def _thread_after_main(run_dir: str, count: int) -> None:
    """A non-daemon thread that goes on logging after the main thread returned, and after the exit hook that
    runs before such threads are joined: only the hook that runs after they are joined can write that."""
    import threading

    # Registered before ml_manager registers its own (at the first log): threading runs these last-in
    # first-out, so this one runs after ml_manager's.
    hooks_ran = threading.Event()
    threading._register_atexit(hooks_ran.set)  # type: ignore[attr-defined]
    first_half = threading.Event()

    def late() -> None:
        run = MLRun.attach(run_dir, flush_interval=HOUR)
        for step in range(count):
            if step == count // 2:
                first_half.set()
                hooks_ran.wait()
            run.log({"late": step}, step=step)

    threading.Thread(target=late).start()
    first_half.wait()


def _interrupted_flushes(run_dir: str, rounds: int) -> None:
    """Ctrl-C (a timer's KeyboardInterrupt) landing anywhere in flush(), again and again; then finish."""
    import random

    armed = False

    def interrupt(signum: int, frame: object) -> None:
        if armed:
            raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, interrupt)
    run = MLRun.attach(run_dir, flush_interval=HOUR)
    step = interrupted = 0
    draw = random.Random(0)
    for _ in range(rounds):
        for _ in range(200):
            run.log({"interrupted": step}, step=step)
            step += 1
        try:
            armed = True
            signal.setitimer(signal.ITIMER_REAL, draw.uniform(0, 0.003))
            try:
                run.flush()
            finally:
                armed = False  # a timer firing after this line does nothing; before it, lands in the try
        except KeyboardInterrupt:
            interrupted += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    run.finish()
    print(f"{step} {interrupted}")


def main() -> None:
    run_dir, how = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    if how == "return":
        log_records(run_dir, "main", count)
    elif how == "raise":
        log_records(run_dir, "main", count)
        raise RuntimeError("the training script failed")
    elif how == "sys-exit":
        log_records(run_dir, "main", count)
        sys.exit(3)
    elif how in ("fork", "spawn", "forkserver"):
        _in_child(run_dir, how, count)
    elif how in ("pool-fork", "pool-spawn"):
        _in_pool(run_dir, how.removeprefix("pool-"), count)
    elif how == "thread-after-main":
        _thread_after_main(run_dir, count)
    elif how == "interrupted-flushes":
        _interrupted_flushes(run_dir, count)
    elif how == "killed":
        _killed_while_logging(run_dir)
    elif how in ("sigterm", "sigterm-handled"):
        if how == "sigterm-handled":
            # The README's advice: SIGTERM as an ordinary exit, so the exit hooks run.
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        log_records(run_dir, "main", count)
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()  # the signal is delivered: the handler exits, or the default action kills
    else:
        raise SystemExit(f"unknown way to end: {how}")


if __name__ == "__main__":
    main()
