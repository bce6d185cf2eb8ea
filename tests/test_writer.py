"""Per-step logging: ``run.log`` buffers, the background writer group-commits, nothing is lost on any exit."""

from __future__ import annotations

import datetime
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ml_manager import FlushError, LogStats, MLProject, MLRun
from ml_manager._history import HISTORY_DIR, writer_file
from ml_manager._storage import read_toml

if TYPE_CHECKING:
    from collections.abc import Callable

CHILD = Path(__file__).with_name("_log_child.py")
HOUR = 3600.0


def _records(run_dir: Path) -> list[dict[str, Any]]:
    """Every line of every history file, parsed strictly: a torn or unreadable line fails the test."""
    records = []
    for path in sorted((run_dir / HISTORY_DIR).glob("*.jsonl")):
        data = path.read_bytes()
        assert data == b"" or data.endswith(b"\n"), f"{path} ends in a partial record"
        records.extend(json.loads(line) for line in data.splitlines())
    return records


def _steps(records: list[dict[str, Any]], key: str) -> list[int]:
    return [r["metrics"][key] for r in records if key in r["metrics"]]


def _child(run_dir: Path, how: str, count: int = 100) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHILD), str(run_dir), how, str(count)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


# -- the call ------------------------------------------------------------------------------------------------


def test_records_are_written_in_order_by_flush(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo", flush_interval=HOUR)
    for step in range(1000):
        run.log({"loss": 1 / (step + 1), "eval": {"acc": step / 1000}}, step=step)
    assert run.log_stats == LogStats(written=0, pending=1000)
    assert not writer_file(run.run_dir).exists()  # nothing touched the disk yet
    run.flush()
    assert run.log_stats == LogStats(written=1000, pending=0, flushes=1)
    records = _records(run.run_dir)
    assert [r["step"] for r in records] == list(range(1000))
    assert records[-1]["metrics"] == {"loss": 1 / 1000, "eval": {"acc": 0.999}}
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)
    assert read_toml(run.run_dir / "metrics.toml") == {"loss": 1 / 1000, "eval": {"acc": 0.999}}
    assert run.metrics == {"loss": 1 / 1000, "eval": {"acc": 0.999}}
    run.finish()


@pytest.mark.parametrize(
    ("metrics", "step", "error", "match"),
    [
        ({"loss": object()}, None, TypeError, r"metrics\['loss'\]"),
        ({"loss": None}, None, TypeError, r"metrics\['loss'\] is None"),
        ({"eval": {"acc": [1.0, None]}}, None, ValueError, r"metrics\['eval'\]\['acc'\]\[1\]"),
        ({1: 0.5}, None, TypeError, "keys must be strings"),
        ({"big": 2**64}, None, ValueError, r"metrics\['big'\]"),
        ({"text": "\ud800"}, None, ValueError, r"metrics\['text'\]"),
        ([("loss", 0.5)], None, TypeError, "must be a mapping"),
        ({"loss": 0.5}, -1, TypeError, "step must be a non-negative int"),
        ({"loss": 0.5}, 1.5, TypeError, "step must be a non-negative int"),
        ({"loss": 0.5}, True, TypeError, "step must be a non-negative int"),
        ({"loss": 0.5}, "3", TypeError, "step must be a non-negative int"),
    ],
)
def test_bad_values_and_steps_raise_at_log_and_leave_nothing(
    base_dir: Path, metrics: Any, step: Any, error: type[Exception], match: str, snapshot: Callable[[Path], Any]
) -> None:
    run = MLRun.create({}, base_dir, "demo", flush_interval=HOUR)
    before = snapshot(run.run_dir)
    with pytest.raises(error, match=match):
        run.log(metrics, step=step)
    run.flush()
    assert run.log_stats == LogStats()
    assert snapshot(run.run_dir) == before
    run.log({"loss": 0.5}, step=0)  # the handle is fine
    run.finish()
    assert [r["metrics"] for r in _records(run.run_dir)] == [{"loss": 0.5}]


def test_the_callers_dict_may_change_after_log(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo", flush_interval=HOUR)
    metrics = {"loss": 1.0, "eval": {"acc": 0.5}}
    run.log(metrics, step=0)
    metrics["loss"] = 2.0
    metrics["eval"]["acc"] = 0.9  # type: ignore[index]
    run.finish()
    assert _records(run.run_dir)[0]["metrics"] == {"loss": 1.0, "eval": {"acc": 0.5}}


def test_every_value_add_metrics_takes_is_recorded_exactly(base_dir: Path) -> None:
    np = pytest.importorskip("numpy")
    run = MLRun.create({}, base_dir, "demo", flush_interval=HOUR)
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=datetime.timezone.utc)
    values = {"nan": math.nan, "inf": -math.inf, "np": np.float32(0.5), "when": when, "text": "ünï", "n": 2**63 - 1}
    run.log(values)
    run.finish()
    (record,) = _records(run.run_dir)
    assert record["step"] is None
    assert math.isnan(record["metrics"]["nan"])
    assert record["metrics"]["inf"] == -math.inf
    assert record["metrics"]["np"] == 0.5
    assert record["metrics"]["when"] == when.isoformat()
    assert (record["metrics"]["text"], record["metrics"]["n"]) == ("ünï", 2**63 - 1)
    on_disk = read_toml(run.run_dir / "metrics.toml")
    assert math.isnan(on_disk["nan"])
    assert on_disk["when"] == when


def test_log_and_add_metrics_keep_their_order(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo", flush_interval=HOUR)
    run.log({"loss": 1.0}, step=0)
    run.add_metrics({"loss": 0.5}, step=1)  # writes what log buffered first
    assert [r["step"] for r in _records(run.run_dir)] == [0, 1]
    assert read_toml(run.run_dir / "metrics.toml") == {"loss": 0.5}
    run.finish()


def test_history_shows_what_this_handle_logged(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo", flush_interval=HOUR)
    run.log({"loss": 1.0}, step=0)
    assert list(run.history()["loss"]) == [1.0]
    run.finish()


def test_many_threads_log_at_once(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo", flush_interval=0.05)
    threads, steps = 8, 3000
    barrier = threading.Barrier(threads)

    def work(name: int) -> None:
        barrier.wait()
        for step in range(steps):
            run.log({f"t{name}": step}, step=step)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    run.finish()
    records = _records(run.run_dir)
    assert len(records) == threads * steps
    for name in range(threads):
        assert _steps(records, f"t{name}") == list(range(steps))
    assert read_toml(run.run_dir / "metrics.toml") == {f"t{n}": steps - 1 for n in range(threads)}


def test_a_log_on_another_thread_while_finish_runs_is_kept(base_dir: Path) -> None:
    for _ in range(30):
        run = MLRun.create({}, base_dir, "demo", flush_interval=HOUR, durable=False)
        run.log({"main": 0}, step=0)
        barrier = threading.Barrier(2)

        def side(run: MLRun = run, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            for step in range(1, 51):
                run.log({"side": step}, step=step)

        thread = threading.Thread(target=side)
        thread.start()
        barrier.wait()
        run.finish()
        thread.join()
        run.flush()  # what came after finish, if anything, is the handle's to write: it is still open
        assert [r["step"] for r in _records(run.run_dir)] == list(range(51))
        run.finish()


def test_threads_logging_first_at_once_share_one_buffer(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo", flush_interval=HOUR)
    barrier = threading.Barrier(8)

    def first(n: int) -> None:
        barrier.wait()
        run.log({f"t{n}": n}, step=n)

    threads = [threading.Thread(target=first, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert run.log_stats.pending == 8  # one buffer for the handle: finish writes all of it
    run.finish()
    assert sorted(r["step"] for r in _records(run.run_dir)) == list(range(8))


@pytest.mark.slow
def test_ctrl_c_during_flush_never_loses_nor_duplicates_a_record(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo")
    done = _child(run.run_dir, "interrupted-flushes", 60)
    assert done.returncode == 0, done.stderr
    logged, interrupted = map(int, done.stdout.split())
    assert interrupted > 0  # the interrupts did land inside flush()
    assert _steps(_records(run.run_dir), "interrupted") == list(range(logged))
    run.finish()


def test_records_of_one_step_reach_wandb_in_one_call(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo", mode="offline", flush_interval=HOUR)
    run.log({"loss": 1.0}, step=0)
    run.log({"acc": 0.5}, step=0)
    run.log({"loss": 0.5}, step=1)
    run.log({"note": 1})
    run.log({"note": 2})
    run.flush()
    assert run.wandb_stats.sent == 4  # steps 0 and 1, then each call without a step
    assert len(_records(run.run_dir)) == 5
    run.finish()


def test_flush_interval_and_buffer_bound_are_checked(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="flush_interval"):
        MLRun.create({}, base_dir, "demo", flush_interval=0)
    with pytest.raises(ValueError, match="max_unflushed"):
        MLRun.create({}, base_dir, "demo", max_unflushed=0)
    monkeypatch.setenv("ML_MANAGER_FLUSH_INTERVAL", "soon")
    with pytest.raises(ValueError, match="ML_MANAGER_FLUSH_INTERVAL"):
        MLRun.create({}, base_dir, "demo")
    monkeypatch.setenv("ML_MANAGER_FLUSH_INTERVAL", "0.25")
    monkeypatch.setenv("ML_MANAGER_MAX_UNFLUSHED", "77")
    run = MLRun.create({}, base_dir, "demo")
    assert (run.flush_interval, run.max_unflushed) == (0.25, 77)
    assert list(base_dir.glob("demo/*")) == [run.run_dir]  # the refused calls created nothing
    run.finish()


def test_a_lock_that_times_out_keeps_the_merge_for_the_next_flush_and_never_duplicates(
    base_dir: Path, lock_held_by_a_thread: Callable[[Path], Any]
) -> None:
    run = MLRun.create({}, base_dir, "demo", flush_interval=HOUR, lock_timeout=0.2)
    run.log({"loss": 1.0}, step=0)
    with lock_held_by_a_thread(run.run_dir / "run.lock"):
        with pytest.raises(FlushError, match="could not lock") as caught:
            run.flush()
        assert caught.value.path == str(run.run_dir / "run.lock")
        assert isinstance(caught.value.__cause__, TimeoutError)
    assert [r["step"] for r in _records(run.run_dir)] == [0]  # the append went through before the lock
    assert not (run.run_dir / "metrics.toml").exists()
    run.log({"loss": 0.5}, step=1)
    run.flush()
    assert [r["step"] for r in _records(run.run_dir)] == [0, 1]
    assert read_toml(run.run_dir / "metrics.toml") == {"loss": 0.5}
    assert run.log_stats == LogStats(written=2, pending=0, flushes=1, failures=1)
    run.finish()


# -- readers ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_reader_sees_a_record_nobody_flushed(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo")
    code = (
        "import sys; from ml_manager import MLRun\n"
        "run = MLRun.attach(sys.argv[1], flush_interval=0.2)\n"
        "run.log({'live': 1.0}, step=7); print('logged', flush=True)\n"
        "sys.stdin.read()\n"  # alive, and never flushing, until the test lets it go
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(run.run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "logged\n"
        seen = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            frame = MLProject(base_dir).df
            if "live" in frame.columns:
                seen = frame
                break
            time.sleep(0.05)
        assert seen is not None, "the record never reached metrics.toml"
        assert child.poll() is None  # the background writer wrote it: the child has not exited
        assert list(run.history()["step"]) == [7]
    finally:
        child.communicate("", timeout=120)
    assert child.returncode == 0
    run.finish()


# -- ends of a process ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "code", "names"),
    [
        ("return", 0, ["main"]),
        ("raise", 1, ["main"]),
        ("sys-exit", 3, ["main"]),
        ("fork", 0, ["fork"]),
        ("spawn", 0, ["spawn"]),
        ("forkserver", 0, ["forkserver"]),
        ("pool-fork", 0, [f"pool-fork-{n}" for n in range(4)]),
        ("pool-spawn", 0, [f"pool-spawn-{n}" for n in range(4)]),
        ("thread-after-main", 0, ["late"]),
        ("sigterm-handled", 128 + signal.SIGTERM, ["main"]),
    ],
)
def test_an_ordinary_exit_loses_nothing(base_dir: Path, how: str, code: int, names: list[str]) -> None:
    run = MLRun.create({}, base_dir, "demo")
    done = _child(run.run_dir, how, 500)
    assert done.returncode == code, done.stderr
    records = _records(run.run_dir)
    for name in names:
        assert _steps(records, name) == list(range(500)), name
    assert len(records) == 500 * len(names)
    assert read_toml(run.run_dir / "metrics.toml") == dict.fromkeys(names, 499)
    run.finish()


@pytest.mark.slow
def test_sigterm_without_a_handler_loses_the_buffer_and_tears_nothing(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo")
    done = _child(run.run_dir, "sigterm", 500)
    assert done.returncode == -signal.SIGTERM
    assert _records(run.run_dir) == []  # an hour's interval: nothing was due yet, and no hook runs
    run.finish()


@pytest.mark.slow
def test_a_writer_killed_while_logging_leaves_a_clean_prefix(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo")
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(run.run_dir), "killed"], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    reports = [child.stdout.readline() for _ in range(5)]
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=120)
    flushed = int(reports[-1].split()[1])
    files = list((run.run_dir / HISTORY_DIR).glob("*.jsonl"))
    assert len(files) == 1
    data = files[0].read_bytes()
    whole = data[: data.rfind(b"\n") + 1]  # a record cut by the kill is skipped by readers
    steps = [json.loads(line)["step"] for line in whole.splitlines()]
    assert steps == list(range(len(steps)))  # no gap, no duplicate
    assert len(steps) >= flushed
    assert run.history()["step"].tolist() == steps
    assert read_toml(run.run_dir / "metrics.toml")["killed"] >= flushed - 1
    run.finish()


@pytest.mark.slow
def test_eight_processes_log_twenty_thousand_records_each_into_one_run(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo")
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, _log_child; _log_child.log_records(sys.argv[1], sys.argv[2], 20_000)",
                str(run.run_dir),
                f"w{n}",
            ],
            cwd=Path(__file__).parent,
        )
        for n in range(8)
    ]
    assert [writer.wait(timeout=240) for writer in writers] == [0] * 8
    records = _records(run.run_dir)
    assert len(records) == 8 * 20_000
    assert len(list((run.run_dir / HISTORY_DIR).glob("*.jsonl"))) == 8
    for n in range(8):
        assert _steps(records, f"w{n}") == list(range(20_000))
    assert read_toml(run.run_dir / "metrics.toml") == {f"w{n}": 19_999 for n in range(8)}
    run.finish()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_while_the_writer_runs_writes_only_its_own_records(
    base_dir: Path, in_fork: Callable[[Callable[[], str]], str]
) -> None:
    run = MLRun.create({}, base_dir, "demo", flush_interval=HOUR)
    for step in range(100):
        run.log({"parent": step}, step=step)

    def child() -> str:
        for step in range(50):
            run.log({"child": step}, step=step)
        run.flush()
        return str(os.getpid())

    child_pid = int(in_fork(child))
    run.finish()
    by_file = {
        path.stem.rsplit("-", 1)[1]: [json.loads(line) for line in path.read_bytes().splitlines()]
        for path in (run.run_dir / HISTORY_DIR).glob("*.jsonl")
    }
    assert set(by_file) == {str(os.getpid()), str(child_pid)}
    assert _steps(by_file[str(os.getpid())], "parent") == list(range(100))
    assert len(by_file[str(os.getpid())]) == 100
    assert _steps(by_file[str(child_pid)], "child") == list(range(50))
    assert len(by_file[str(child_pid)]) == 50


def test_torch_dataloader_workers_lose_nothing(base_dir: Path) -> None:
    pytest.importorskip("torch", reason="torch is a test-only dependency (CPU build)")
    code = (
        "import sys, torch\n"
        "from ml_manager import MLRun\n"
        "class Data(torch.utils.data.Dataset):\n"
        "    def __init__(self, run): self.run = run\n"
        "    def __len__(self): return 64\n"
        "    def __getitem__(self, i):\n"
        "        self.run.log({'item': i}, step=i)\n"
        "        return i\n"
        "run = MLRun.attach(sys.argv[1], flush_interval=3600)\n"
        "loader = torch.utils.data.DataLoader(Data(run), num_workers=2, batch_size=8,"
        " multiprocessing_context='fork')\n"
        "assert sorted(int(x) for batch in loader for x in batch) == list(range(64))\n"
    )
    run = MLRun.create({}, base_dir, "demo")
    done = subprocess.run(
        [sys.executable, "-c", code, str(run.run_dir)], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    records = _records(run.run_dir)
    assert sorted(_steps(records, "item")) == list(range(64))
    assert len({r["writer"] for r in records}) == 2  # one history file per worker
    run.finish()


@pytest.mark.slow
def test_the_worker_pool_example_loses_nothing(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "multiprocess_workers.py"
    done = subprocess.run(
        [sys.executable, str(example), "--base-dir", str(tmp_path / "ck"), "--workers", "4", "--steps", "50"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "logged 200 records" in done.stdout


def test_a_pickled_handle_keeps_its_logging_options(base_dir: Path) -> None:
    import pickle

    run = MLRun.create({}, base_dir, "demo", flush_interval=0.5, max_unflushed=10)
    copy = pickle.loads(pickle.dumps(run))
    assert (copy.flush_interval, copy.max_unflushed) == (0.5, 10)
    run.finish()


# -- failures ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_surfaces_from_flush_and_loses_nothing_once_space_is_freed(
    tmp_path: Path, small_tmpfs: Callable[[Path, str], Any], fill_disk: Callable[[Path], Path]
) -> None:
    with small_tmpfs(tmp_path / "disk", "512k") as disk:
        # An hour's interval and a buffer far from full: the writer thread never runs, flush alone writes.
        run = MLRun.create({}, disk, "demo", mode="disabled", flush_interval=HOUR)
        run.log({"loss": -1.0}, step=0)
        run.flush()
        filler = fill_disk(disk)
        for step in range(1, 1001):
            run.log({"loss": 1 / step, "padding": "x" * 200}, step=step)
        with pytest.raises(FlushError) as caught:
            run.flush()
        assert isinstance(caught.value, OSError)
        assert caught.value.errno == 28  # ENOSPC
        assert caught.value.path == str(writer_file(run.run_dir))
        assert caught.value.pending == 1000
        assert "No space left on device" in str(caught.value)
        assert run.log_stats == LogStats(written=1, pending=1000, flushes=1, failures=1)
        assert [r["step"] for r in _records(run.run_dir)] == [0]  # cut back: no partial record
        filler.unlink()
        run.finish()
        assert [r["step"] for r in _records(run.run_dir)] == list(range(1001))
        assert run.log_stats == LogStats(written=1001, pending=0, flushes=2, failures=1)


@pytest.mark.slow
def test_a_full_buffer_raises_from_log_while_writes_fail(
    tmp_path: Path, small_tmpfs: Callable[[Path, str], Any], fill_disk: Callable[[Path], Path]
) -> None:
    with small_tmpfs(tmp_path / "disk", "512k") as disk:
        run = MLRun.create({}, disk, "demo", mode="disabled", flush_interval=HOUR, max_unflushed=20)
        filler = fill_disk(disk)
        run.log({"loss": 0.0, "padding": "x" * 8192}, step=0)
        with pytest.raises(FlushError):
            run.flush()
        for step in range(1, 20):
            run.log({"loss": float(step)}, step=step)  # buffered: the bound is not reached yet
        with pytest.raises(FlushError, match="No space left on device"):
            run.log({"loss": 20.0}, step=20)  # at the bound while writes fail: raised, not kept, no wait
        filler.unlink()
        run.finish()
        assert [r["step"] for r in _records(run.run_dir)] == list(range(20))


@pytest.mark.slow
def test_a_failure_of_the_background_writer_is_raised_once_from_the_next_log(
    tmp_path: Path, small_tmpfs: Callable[[Path, str], Any], fill_disk: Callable[[Path], Path]
) -> None:
    with small_tmpfs(tmp_path / "disk", "512k") as disk:
        run = MLRun.create({}, disk, "demo", mode="disabled", flush_interval=0.02)
        run.log({"loss": 0.0}, step=0)
        run.flush()
        filler = fill_disk(disk)
        run.log({"loss": 1.0, "padding": "x" * 8192}, step=1)
        deadline = time.monotonic() + 120
        while run.log_stats.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # waiting for the writer's own attempt, which nothing else triggers
        with pytest.raises(FlushError, match="No space left on device"):
            run.log({"loss": 2.0}, step=2)  # kept all the same
        run.log({"loss": 3.0}, step=3)  # raised once: no error now
        filler.unlink()
        run.finish()
        assert [r["step"] for r in _records(run.run_dir)] == [0, 1, 2, 3]
