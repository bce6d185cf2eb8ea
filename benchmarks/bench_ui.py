"""The runs page and the report: what a user waits for, in a real headless Chromium against ``ml-manager ui``.

Every figure is printed next to its goal, as the median of the rounds.  The fixtures are built once per
invocation in a temp dir (history files written directly, in the format ``MLRun.log`` writes) and removed at
the end; the page cache is warm throughout, so "cold" below means a fresh server process, not a cold disk.

1. A project of 10,000 runs (built as ``bench_project.py`` builds it).  One ``ml-manager ui`` process, started
   once and waited for until it answers; each round opens the page in a fresh browser context and reads, from
   the page itself, the time from navigation start to the first ``.row`` in the table and to
   ``window.mlReady`` resolved.  Also printed: the ``/api/runs`` request as the page saw it (time to first
   byte, body size) and the server's start-up (the project load it does before it answers).
2. One run with 1,000,000 history records (one writer, 3 metrics a record).  Cold: a fresh server process
   each time, nothing parsed yet.  (a) The page opened with ``#sel=`` on that run, navigation start to
   ``window.mlReady`` resolved (its three charts drawn, one ``/api/history`` request per metric, made at once);
   (b) the same ``/api/history`` request alone, with urllib, from another fresh server.  Warm: the request
   again on the server of (a) (median of 5 a round).  The floor: reading the history files and parsing them
   with orjson line by line in a fresh process (records kept in a list), so read (b) as a ratio to it.  The
   breakdown: ``read_history``, ``series`` (downsampling) and the JSON body, timed apart in a fresh process,
   and ``read_history`` once more with the cyclic garbage collector off (its share of the parse).
3. Live update: a writer process (a running run, 10 points) logs one point and ``flush()``es; the time from
   asking it to the point being the last x of the page's chart (``window.mlCharts[metric].data[0]``), the
   page polled every 10 ms.  The page asks the server every second, so expect up to a second plus the
   server's work; points are spaced by a random 0-1 s to sample that phase (median of the points a round).
4. ``ml-manager report`` of 100 runs x 10,000 steps x 5 metrics: wall time of the command (its interpreter
   start-up and imports included) and the file's size; the floor, reading and parsing the same 1,000,000
   records in a fresh process, is printed for scale.

Chromium: Debian's package, ``CHROMIUM`` in the environment to use another build.

Usage: python benchmarks/bench_ui.py [--rounds R] [--points P]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson
from _report import print_summary
from bench_project import make_project

from ml_manager import MLRun, _cache

if TYPE_CHECKING:
    from collections.abc import Iterator

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
RUNS = 10_000
RECORDS = 1_000_000
REPORT_RUNS, REPORT_STEPS = 100, 10_000
LONG_METRICS = ("loss", "acc", "lr")
REPORT_METRICS = ("loss", "acc", "lr", "grad_norm", "val_loss")
WAIT_MS = 120_000
Row = tuple[str, str, str]

# Before the page's own script: note when the first table row appears and when window.mlReady resolves.
MARKS = """
(() => {
  const marks = (window.__bench = {});
  new MutationObserver((_, observer) => {
    if (document.querySelector("#table-rows .row")) {
      marks.firstRow = performance.now();
      observer.disconnect();
    }
  }).observe(document, { childList: true, subtree: true });
  let ready;
  Object.defineProperty(window, "mlReady", {
    configurable: true,
    get() { return ready; },
    set(value) { ready = value; value.then(() => { marks.ready = performance.now(); }); },
  });
})();
"""
REQUESTS = """
(part) => performance.getEntriesByType("resource").filter((e) => e.name.includes(part)).map((e) => ({
  url: e.name, took: e.responseEnd - e.startTime, ttfb: e.responseStart - e.requestStart, bytes: e.encodedBodySize,
}))
"""
# In a fresh process: the floor of figures 2 and 4, read + orjson line by line, records kept.
FLOOR = """
import sys, time
from pathlib import Path
import orjson
start = time.perf_counter()
records = []
for path in sorted(Path(sys.argv[1]).glob(sys.argv[2])):
    for line in path.read_bytes().splitlines():
        if line:
            records.append(orjson.loads(line))
print(time.perf_counter() - start, len(records))
"""
# In a fresh process: what the server does for one cold /api/history request, step by step.
BREAKDOWN = """
import json, sys, time
from pathlib import Path
from ml_manager._ui import data
run_dir, metric, width = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
records = data.read_history(run_dir)
t1 = time.perf_counter()
found = data.series(records, metric, width=width)
t2 = time.perf_counter()
body = json.dumps({"metric": metric, "series": found}, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
t3 = time.perf_counter()
del records, found
import gc
gc.collect()
gc.disable()
t4 = time.perf_counter()
data.read_history(run_dir)
t5 = time.perf_counter()
print(json.dumps({"read": t1 - t0, "series": t2 - t1, "json": t3 - t2, "read_no_gc": t5 - t4}))
"""
# The live writer: a running run with 10 points; then one point per line read, logged and flushed.
WRITER = """
import sys, time
from ml_manager import MLRun
run = MLRun.create({"lr": 0.1}, sys.argv[1], "live", mode="disabled")
run.add_metrics({"loss": 1.0})
for step in range(10):
    run.log({"loss": 1.0 / (step + 1)}, step=step)
run.flush()
print(run.run_id, flush=True)
for line in sys.stdin:
    step = int(line)
    start = time.perf_counter()
    run.log({"loss": 1.0 / (step + 1)}, step=step)
    run.flush()
    print(time.perf_counter() - start, flush=True)
run.finish()
"""


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ml_manager_command() -> list[str]:
    script = Path(sys.executable).with_name("ml-manager")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ml_manager"]


# -- fixtures --------------------------------------------------------------------------------------------------


def write_history(run: MLRun, steps: int, metrics: tuple[str, ...], seed: int) -> None:
    """Replace the run's history by ``steps`` records of one writer, as ``MLRun.log`` writes them."""
    rng = random.Random(seed)
    history = run.run_dir / "history"
    shutil.rmtree(history, ignore_errors=True)  # add_metrics's own record: one writer only
    history.mkdir()
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with (history / "bench-1.jsonl").open("wb") as out:
        chunk = bytearray()
        for step in range(steps):
            decay = 1 / (1 + step / 1000)
            values = {"loss": 2 * decay + 0.05 * rng.random(), "acc": 1 - decay, "lr": 1e-3 * (1 - step / steps)}
            values.update({name: decay * rng.random() for name in metrics[3:]})
            chunk += dumps(
                {"step": step, "time": 1.7e9 + step * 0.01, "writer": "bench:1", "metrics": values}, option=newline
            )
            if len(chunk) > 1 << 20:
                out.write(chunk)
                chunk.clear()
        out.write(chunk)


def make_run(base: Path, project: str, config: dict[str, Any], steps: int, metrics: tuple[str, ...]) -> MLRun:
    run = MLRun.create(config, base, project, mode="disabled")
    run.add_metrics(dict.fromkeys(metrics, 0.5))
    run.finish()
    write_history(run, steps, metrics, seed=len(config) + steps)
    return run


def make_report_project(base: Path) -> None:
    for i in range(REPORT_RUNS):
        make_run(base, "report", {"lr": 10 ** -(1 + i % 4), "seed": i}, REPORT_STEPS, REPORT_METRICS)


# -- server and page -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> tuple[float, int]:
    """Seconds for one GET, body read; and the body's size."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=WAIT_MS / 1000) as response:
        size = len(response.read())
    return time.perf_counter() - start, size


@contextlib.contextmanager
def serving(base: Path, log: IO[bytes]) -> Iterator[tuple[str, float]]:
    """A fresh ``ml-manager ui`` on ``base``: its URL and the seconds it took to answer ``/``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    server = subprocess.Popen(
        [*ml_manager_command(), "ui", str(base), "--port", str(port)], stdout=subprocess.DEVNULL, stderr=log
    )
    try:
        while True:
            if server.poll() is not None:
                log.flush()
                said = Path(log.name).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"ml-manager ui exited with {server.returncode}:\n{said}")
            with contextlib.suppress(OSError):
                get(url)
                break
            time.sleep(0.05)
        yield url, time.perf_counter() - start
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def open_page(browser: Any, url: str) -> tuple[Any, Any]:
    """A fresh context (no cache, nothing shared) and the page at ``url``, its marks script installed."""
    # The probes below evaluate strings in the page, which its Content-Security-Policy forbids.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.add_init_script(MARKS)
    page.goto(url, wait_until="commit")
    page.wait_for_function("window.__bench && window.__bench.ready !== undefined", polling=20)
    return context, page


def fresh_floor(root: Path, pattern: str) -> float:
    done = subprocess.run([sys.executable, "-c", FLOOR, str(root), pattern], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[0])


# -- 1. the runs table -----------------------------------------------------------------------------------------


def measure_table(browser: Any, base: Path, rounds: int, log: IO[bytes]) -> dict[str, Any]:
    found: dict[str, Any] = {"first_row": [], "ready": [], "ttfb": [], "bytes": 0}
    with serving(base, log) as (url, startup):
        found["startup"] = startup
        for r in range(rounds):
            context, page = open_page(browser, url)
            marks = page.evaluate("window.__bench")
            runs = page.evaluate(REQUESTS, "api/runs")[0]
            rows = page.evaluate("document.querySelectorAll('#table-rows .row').length")
            context.close()
            found["first_row"].append(marks["firstRow"] / 1e3)
            found["ready"].append(marks["ready"] / 1e3)
            found["ttfb"].append(runs["ttfb"] / 1e3)
            found["bytes"] = runs["bytes"]
            progress(f"1. table, round {r + 1}/{rounds}: {marks['ready'] / 1e3:.2f} s, {rows} rows in the page")
    return found


def report_table(found: dict[str, Any]) -> list[Row]:
    first_row, ready = statistics.median(found["first_row"]), statistics.median(found["ready"])
    print(f"1. {RUNS:,} runs: page opened (navigation start) in a fresh context, one server")
    print(f"   first row in the table      {first_row:7.2f} s   goal ≤ 1.5 s")
    print(f"   window.mlReady resolved     {ready:7.2f} s   goal ≤ 1.5 s")
    print(f"   /api/runs, time to 1st byte {statistics.median(found['ttfb']):7.2f} s   ({found['bytes'] / 1e6:.1f} MB)")
    print(f"   server start-up, until it answers (loads the project) {found['startup']:.2f} s, once")
    return [
        (f"{RUNS:,} runs: page → first row, s", f"{first_row:.2f}", "≤ 1.5"),
        ("  page → window.mlReady, s", f"{ready:.2f}", "≤ 1.5"),
    ]


# -- 2. a long history -----------------------------------------------------------------------------------------


def measure_history(browser: Any, base: Path, run: tuple[str, str], rounds: int, log: IO[bytes]) -> dict[str, Any]:
    project, run_id = run
    found: dict[str, Any] = {key: [] for key in ("page", "slowest", "alone", "warm", "floor", "breakdown")}
    for r in range(rounds):
        with serving(base, log) as (url, _):
            context, page = open_page(browser, f"{url}#sel={project}%2F{run_id}")
            marks = page.evaluate("window.__bench")
            requests = page.evaluate(REQUESTS, "api/history")
            points = page.evaluate("Object.values(window.mlCharts).map((c) => c.data[0].length)")
            context.close()
            request = requests[0]["url"].split("/", 3)[3]  # its path: each server has its own port
            found["request"] = request
            found["page"].append(marks["ready"] / 1e3)
            found["slowest"].append(max(q["took"] for q in requests) / 1e3)
            found["warm"].append(statistics.median(get(url + request)[0] for _ in range(5)))
            found["bytes"] = get(url + request)[1]
        with serving(base, log) as (url, _):
            found["alone"].append(get(url + request)[0])
        found["floor"].append(fresh_floor(base / project / run_id / "history", "*.jsonl"))
        width = request.rsplit("width=", 1)[1].split("&")[0]
        done = subprocess.run(
            [sys.executable, "-c", BREAKDOWN, str(base / project / run_id), LONG_METRICS[0], width],
            capture_output=True,
            text=True,
            check=True,
        )
        found["breakdown"].append(json.loads(done.stdout))
        progress(
            f"2. history, round {r + 1}/{rounds}: page {found['page'][-1]:.2f} s ({len(requests)} requests, "
            f"points drawn {points}), alone {found['alone'][-1]:.2f} s, warm {found['warm'][-1] * 1e3:.1f} ms"
        )
    return found


def report_history(found: dict[str, Any]) -> list[Row]:
    page, alone, warm, floor = (statistics.median(found[k]) for k in ("page", "alone", "warm", "floor"))
    parts = {k: statistics.median(b[k] for b in found["breakdown"]) for k in ("read", "series", "json", "read_no_gc")}
    print(f"\n2. one run of {RECORDS:,} history records, one writer, {len(LONG_METRICS)} metrics a record")
    print(f"   cold page (#sel=), navigation start → charts drawn {page:7.2f} s   goal ≤ 2 s")
    slowest = statistics.median(found["slowest"])
    print(f"     slowest of its {len(LONG_METRICS)} /api/history requests {slowest:13.2f} s")
    print(f"   cold /api/history alone (urllib) {alone:25.2f} s   goal ≤ 2 s   = {alone / floor:.2f} x the floor")
    print(f"   warm, the same request again {warm * 1e3:26.1f} ms  goal ≤ 100 ms   ({found['bytes'] / 1e3:.0f} kB)")
    print(f"   floor: read + orjson line by line, fresh process {floor:8.2f} s")
    print(
        f"   breakdown, fresh process: read_history {parts['read']:.2f} s, series (downsampling) "
        f"{parts['series']:.2f} s, JSON body {parts['json'] * 1e3:.1f} ms"
    )
    print(f"     read_history again with the cyclic garbage collector off {parts['read_no_gc']:.2f} s")
    print(f"   request: {found['request']}")
    return [
        (f"{RECORDS:,} records: cold page → charts, s", f"{page:.2f}", "≤ 2"),
        ("  cold /api/history alone, s", f"{alone:.2f}", "≤ 2"),
        ("  cold alone ÷ floor (read + orjson a line)", f"{alone / floor:.2f}", ""),
        ("  warm /api/history, ms", f"{warm * 1e3:.1f}", "≤ 100"),
    ]


# -- 3. live update --------------------------------------------------------------------------------------------


def measure_live(browser: Any, base: Path, rounds: int, points: int, log: IO[bytes]) -> dict[str, Any]:
    found: dict[str, Any] = {"seen": [], "flush": [], "all": []}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(base)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdin is not None
    assert writer.stdout is not None
    rng = random.Random(3)
    try:
        run_id = writer.stdout.readline().strip()
        with serving(base, log) as (url, _):
            context, page = open_page(browser, f"{url}#sel=live%2F{run_id}")
            step = 10
            for r in range(rounds):
                seen = []
                for _ in range(points):
                    time.sleep(rng.uniform(0, 1))
                    start = time.perf_counter()
                    writer.stdin.write(f"{step}\n")
                    writer.stdin.flush()
                    page.wait_for_function(
                        "(s) => { const c = window.mlCharts.loss; return c && c.data[0][c.data[0].length - 1] === s; }",
                        arg=step,
                        polling=10,
                    )
                    seen.append(time.perf_counter() - start)
                    found["flush"].append(float(writer.stdout.readline()))
                    step += 1
                found["seen"].append(statistics.median(seen))
                found["all"] += seen
                progress(f"3. live, round {r + 1}/{rounds}: {', '.join(f'{s:.2f}' for s in seen)} s")
            context.close()
    finally:
        writer.stdin.close()
        writer.wait(30)
    return found


def report_live(found: dict[str, Any], points: int) -> list[Row]:
    seen = statistics.median(found["seen"])
    print(f"\n3. live: a writer logs one point and flushes → the point in the page's chart ({points} points a round)")
    low, high = min(found["all"]), max(found["all"])
    print(f"   median {seen:.2f} s   goal ≤ 2 s   (every point: min {low:.2f}, max {high:.2f})")
    print(f"   the writer's log + flush alone, median {statistics.median(found['flush']) * 1e3:.1f} ms")
    return [("live: log + flush → in the chart, s", f"{seen:.2f}", "≤ 2")]


# -- 4. the report ---------------------------------------------------------------------------------------------


def measure_report(base: Path, out: Path, rounds: int) -> dict[str, Any]:
    found: dict[str, Any] = {"wall": [], "size": 0, "floor": []}
    for r in range(rounds):
        out.unlink(missing_ok=True)
        start = time.perf_counter()
        subprocess.run([*ml_manager_command(), "report", str(base), "-o", str(out)], check=True)
        found["wall"].append(time.perf_counter() - start)
        found["size"] = out.stat().st_size
        found["floor"].append(fresh_floor(base, "*/*/history/*.jsonl"))
        progress(f"4. report, round {r + 1}/{rounds}: {found['wall'][-1]:.2f} s, {found['size'] / 1e6:.2f} MB")
    return found


def report_report(found: dict[str, Any]) -> list[Row]:
    wall, floor = statistics.median(found["wall"]), statistics.median(found["floor"])
    size = found["size"] / 1e6
    label = f"{REPORT_RUNS} runs x {REPORT_STEPS:,} steps x {len(REPORT_METRICS)} metrics"
    print(f"\n4. ml-manager report of {label}")
    print(f"   wall time, the command {wall:8.2f} s   goal ≤ 5 s")
    print(f"   file size              {size:8.2f} MB  goal ≤ 5 MB")
    print(f"   for scale: read + orjson of its {REPORT_RUNS * REPORT_STEPS:,} records, fresh process {floor:.2f} s")
    return [
        ("report 100 x 10,000 x 5: wall time, s", f"{wall:.2f}", "≤ 5"),
        ("  file size, MB", f"{size:.2f}", "≤ 5"),
    ]


# -- main ------------------------------------------------------------------------------------------------------


def build(tmp: Path) -> tuple[Path, Path, Path, tuple[str, str]]:
    start = time.perf_counter()
    table, long, report = tmp / "table", tmp / "long", tmp / "report"
    make_project(table, RUNS)
    run = make_run(long, "long", {"lr": 1e-3}, RECORDS, LONG_METRICS)
    make_report_project(report)
    time.sleep(_cache.SETTLE_NS / 1e9 + 0.5)  # let the files settle, as any project older than 2 s has
    progress(f"fixtures built in {time.perf_counter() - start:.0f} s")
    return table, long, report, (run.project_name, run.run_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--points", type=int, default=5, help="figure 3: live points a round")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-ui-") as name, sync_playwright() as playwright:
        tmp = Path(name)
        table, long, report, run = build(tmp)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        version = browser.version
        with (tmp / "server.log").open("wb") as log:
            try:
                results = (
                    measure_table(browser, table, args.rounds, log),
                    measure_history(browser, long, run, args.rounds, log),
                    measure_live(browser, tmp / "live", args.rounds, args.points, log),
                    measure_report(report, tmp / "report.html", args.rounds),
                )
            finally:
                browser.close()
    print(f"medians of {args.rounds} rounds; Chromium {version}, headless")
    rows = report_table(results[0]) + report_history(results[1])
    rows += report_live(results[2], args.points) + report_report(results[3])
    print_summary(rows, args.rounds)


if __name__ == "__main__":
    os.environ.setdefault("WANDB_SILENT", "true")
    main()
